/* report_snapshot.c - per-tenant copies of the qualifying orders for the period reports (see
 * report_snapshot.h). */
#include "retentiond/store/report_snapshot.h"

#include "retentiond/config.h"
#include "retentiond/log.h"
#include "retentiond/stats.h"
#include "retentiond/store/pool.h"
#include "retentiond/store/report_rows.h"
#include "retentiond/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define REFRESH_MAX 2000                 /* more changed customers than this: read the tenant whole */
#define FETCH_ROWS 20000
#define UNUSABLE_USEC (600 * INT64_C(1000000)) /* a tenant that did not fit is retried after this */

/* The customers of a copy, laid out one after the other. */
typedef struct {
    rs_customer *c;
    uint32_t n;
} rs_shop;

/* One tenant's copy. The struct lives as long as the process (a tenant's lock must be stable);
 * its data is dropped on eviction, on a failed read, and when it does not fit. */
typedef struct snap {
    int64_t tenant;
    pthread_mutex_t lock; /* held while the copy is read, brought current or reported from */
    bool loaded;
    rs_shop shop;
    uint32_t cap;
    uint32_t *slots, nslots; /* open addressing over shop.c: index + 1, 0 = empty */
    rs_order *pool;          /* the orders of a whole read, customer after customer */
    char *snapshot;          /* the pg_snapshot the copy is current as of */
    size_t bytes;            /* what the copy holds, roughly */
    size_t accounted;        /* bytes as counted in reg.bytes (under reg.lock) */
    int64_t used;            /* now_usec() of the last report, under reg.lock (least recently used goes first) */
    int64_t unusable_until;  /* now_usec() before which reports are streamed */
    uint64_t generation;     /* new whenever the copy's customers change (read, re-read, dropped) */
    struct snap *next;
} snap;

/* The source of snap.generation: unique over all tenants, so one number names one tenant's
 * copy in one state. */
static uint64_t generations;

static struct {
    pthread_mutex_t lock; /* the list and `bytes` */
    snap *head;
    size_t bytes;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t budget_bytes(void)
{
    return (size_t)config.report_snapshot_mb << 20;
}

void report_snapshot_register(void)
{
    db_register_statement("report_changes", "SELECT customer_id FROM rd_report_changes_since($1, $2::pg_snapshot, $3)",
                          3);
    db_register_statement("report_customers",
        "SELECT " REPORT_CUSTOMER_COLUMNS " FROM customers WHERE tenant_id = $1 AND customer_id = ANY ($2::text[])", 2);
    db_register_statement("report_orders",
        "SELECT " REPORT_ORDER_COLUMNS " FROM orders WHERE tenant_id = $1 AND customer_id = ANY ($2::text[]) AND qualifying "
        "ORDER BY customer_id, placed_at", 2);
}

/* ---- the copy ---- */

static void account(snap *s, ptrdiff_t delta)
{
    s->bytes = (size_t)((ptrdiff_t)s->bytes + delta);
}

/* Publishes the copy's size (and use) to the registry, which evict() reads. */
static void publish(snap *s, bool used)
{
    pthread_mutex_lock(&reg.lock);
    reg.bytes = reg.bytes - s->accounted + s->bytes;
    s->accounted = s->bytes;
    if (used)
        s->used = now_usec();
    pthread_mutex_unlock(&reg.lock);
}

static void snap_drop(snap *s)
{
    for (uint32_t i = 0; i < s->shop.n; i++) {
        free(s->shop.c[i].id);
        if (s->shop.c[i].owned)
            free(s->shop.c[i].orders);
    }
    free(s->shop.c);
    free(s->pool);
    s->pool = NULL;
    free(s->slots);
    free(s->snapshot);
    account(s, -(ptrdiff_t)s->bytes);
    s->shop = (rs_shop){0};
    s->cap = s->nslots = 0;
    s->slots = NULL;
    s->snapshot = NULL;
    s->loaded = false;
    s->generation = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED);
    publish(s, false);
}

static void slots_grow(snap *s)
{
    uint32_t n = s->nslots ? s->nslots * 2 : 1024;
    uint32_t *slots = xcalloc(n, sizeof *slots);
    for (uint32_t i = 0; i < s->shop.n; i++) {
        const char *id = s->shop.c[i].id;
        uint32_t k = rd_hash(id, strlen(id)) & (n - 1);
        while (slots[k])
            k = (k + 1) & (n - 1);
        slots[k] = i + 1;
    }
    free(s->slots);
    account(s, ((ptrdiff_t)n - (ptrdiff_t)s->nslots) * (ptrdiff_t)sizeof *slots);
    s->slots = slots;
    s->nslots = n;
}

/* The customer with this id, added (unknown, without orders) when new. */
static rs_customer *customer(snap *s, const char *id, size_t len)
{
    if (2 * (s->shop.n + 1) > s->nslots)
        slots_grow(s);
    uint32_t k = rd_hash(id, len) & (s->nslots - 1);
    for (; s->slots[k]; k = (k + 1) & (s->nslots - 1)) {
        rs_customer *c = &s->shop.c[s->slots[k] - 1];
        if (strlen(c->id) == len && memcmp(c->id, id, len) == 0)
            return c;
    }
    if (s->shop.n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 1024;
        s->shop.c = xrealloc(s->shop.c, cap * sizeof *s->shop.c);
        account(s, ((ptrdiff_t)cap - (ptrdiff_t)s->cap) * (ptrdiff_t)sizeof *s->shop.c);
        s->cap = cap;
    }
    rs_customer *c = &s->shop.c[s->shop.n];
    *c = (rs_customer){.id = xstrndup(id, len), .since = RS_NONE, .first = RS_NONE};
    account(s, (ptrdiff_t)len + 1);
    s->slots[k] = ++s->shop.n;
    return c;
}

static void add_order(snap *s, rs_customer *c, int64_t t, int64_t v)
{
    if (c->n == c->cap) {
        /* out of its slice of the pool (or its own array): an array of its own, twice as big */
        uint32_t cap = c->cap ? c->cap * 2 : 2;
        rs_order *o = xmalloc(cap * sizeof *o);
        if (c->n)
            memcpy(o, c->orders, c->n * sizeof *o);
        if (c->owned) {
            free(c->orders);
            account(s, -(ptrdiff_t)c->cap * (ptrdiff_t)sizeof *o);
        }
        account(s, (ptrdiff_t)cap * (ptrdiff_t)sizeof *o);
        c->orders = o;
        c->cap = cap;
        c->owned = true;
    }
    c->orders[c->n++] = (rs_order){t, v};
}

/* ---- reading rows (binary results, report_rows.h) ---- */

/* Rows of (customer_id, since, first_order_at[, order_count]). The rollup's order count, when
 * given, sizes the customer's slice of the pool; a count behind the orders (a bulk load's
 * rollup still pending) only means that customer gets an array of its own. */
static void apply_customers(snap *s, const PGresult *res)
{
    for (int r = 0; r < PQntuples(res); r++) {
        rs_customer *c = customer(s, PQgetvalue(res, r, 0), (size_t)PQgetlength(res, r, 0));
        c->known = true;
        c->since = report_instant(res, r, 1);
        c->first = report_instant(res, r, 2);
        if (PQnfields(res) > 3)
            c->cap = (uint32_t)report_be32(PQgetvalue(res, r, 3));
    }
}

/* Lays the pool out in the order of shop.c, so that a report walks memory once from start to end
 * (per-customer allocations scattered over the heap made the reports wait on cache misses). */
static bool pool_make(snap *s)
{
    size_t total = 0;
    for (uint32_t i = 0; i < s->shop.n; i++)
        total += s->shop.c[i].cap;
    if (total > budget_bytes() / sizeof *s->pool)
        return false; /* would not fit: do not even try to allocate it */
    s->pool = xmalloc((total ? total : 1) * sizeof *s->pool);
    account(s, (ptrdiff_t)(total * sizeof *s->pool));
    size_t off = 0;
    for (uint32_t i = 0; i < s->shop.n; i++) {
        s->shop.c[i].orders = s->pool + off;
        off += s->shop.c[i].cap;
    }
    return true;
}

/* Rows of REPORT_ORDER_COLUMNS. Returns false on a value the copy cannot hold (not an int8). */
static bool apply_orders(snap *s, const PGresult *res)
{
    rs_customer *c = NULL;
    for (int r = 0; r < PQntuples(res); r++) {
        if (PQgetisnull(res, r, 2))
            return false;
        const char *id = PQgetvalue(res, r, 0);
        size_t len = (size_t)PQgetlength(res, r, 0);
        if (!c || strlen(c->id) != len || memcmp(c->id, id, len) != 0)
            c = customer(s, id, len);
        add_order(s, c, report_instant(res, r, 1), report_be64(PQgetvalue(res, r, 2)));
    }
    return true;
}

/* READ_UNUSABLE: the copy cannot serve (too big, a value too wide for it): reports are streamed
 * for a while. */
typedef enum { READ_OK, READ_FAILED, READ_UNUSABLE } read_status;

static void evict(snap *keep);

/* Whether the copy, with every other copy, exceeds the budget after the least recently used
 * others that are not in use were dropped to make room. */
static bool over_budget(snap *s)
{
    if (s->bytes > budget_bytes())
        return true;
    publish(s, false);
    evict(s);
    pthread_mutex_lock(&reg.lock);
    bool over = reg.bytes > budget_bytes();
    pthread_mutex_unlock(&reg.lock);
    return over;
}

/* Reads a cursor declared with `declare` ($1 = the tenant) to its end into the copy. */
enum { ROWS_CUSTOMERS, ROWS_ORDERS };

typedef struct {
    snap *s;
    int rows;
} cursor_into;

/* One fetch into the copy: 0 to go on, 1 when the copy cannot serve. */
static int apply_fetch(const PGresult *res, void *arg)
{
    cursor_into *c = arg;
    bool ok = true;
    if (c->rows == ROWS_ORDERS)
        ok = apply_orders(c->s, res);
    else
        apply_customers(c->s, res);
    return !ok || over_budget(c->s);
}

static read_status read_cursor(PGconn *conn, snap *s, const char *tid, const char *name, const char *declare,
                               int rows)
{
    const char *params[1] = {tid};
    cursor_into c = {s, rows};
    int r = db_cursor_read(conn, name, declare, 1, NULL, params, NULL, NULL, FETCH_ROWS, 1, apply_fetch, &c);
    return r == RD_OK ? READ_OK : r == RD_ERR ? READ_FAILED : READ_UNUSABLE;
}

static read_status load(PGconn *conn, snap *s, const char *tid)
{
    snap_drop(s);
    read_status st = read_cursor(conn, s, tid, "rs_customers",
        "DECLARE rs_customers NO SCROLL CURSOR FOR "
        "SELECT " REPORT_CUSTOMER_COLUMNS ", order_count FROM customers WHERE tenant_id = $1", ROWS_CUSTOMERS);
    if (st == READ_OK) {
        /* before any order: the customers known so far are all there are with a count */
        st = !pool_make(s) || over_budget(s) ? READ_UNUSABLE
                            : read_cursor(conn, s, tid, "rs_orders",
            "DECLARE rs_orders NO SCROLL CURSOR FOR "
            "SELECT " REPORT_ORDER_COLUMNS " FROM orders WHERE tenant_id = $1 AND qualifying ORDER BY placed_at",
            ROWS_ORDERS);
    }
    if (st == READ_OK) {
        s->loaded = true;
        stats_add(&stats.snapshot_loads, 1);
        s->generation = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED);
    }
    return st;
}

/* An array literal of the ids for a text[] parameter. */
static void array_literal(buf *b, const PGresult *res)
{
    buf_puts(b, "{");
    for (int r = 0; r < PQntuples(res); r++) {
        buf_puts(b, r ? ",\"" : "\"");
        for (const char *p = PQgetvalue(res, r, 0); *p; p++) {
            if (*p == '"' || *p == '\\')
                buf_append(b, "\\", 1);
            buf_append(b, p, 1);
        }
        buf_puts(b, "\"");
    }
    buf_puts(b, "}");
}

/* Brings the copy current: the customers written by transactions its snapshot did not see are
 * read again, or the whole tenant when there are many or the horizon passed the snapshot. */
static read_status refresh(PGconn *conn, snap *s, const char *tid)
{
    char limit[16];
    snprintf(limit, sizeof limit, "%d", REFRESH_MAX + 1);
    const char *p3[3] = {tid, s->snapshot, limit};
    PGresult *res = PQexecPrepared(conn, "report_changes", 3, p3, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_log_error(res, conn, "report_changes");
        PQclear(res);
        return READ_FAILED;
    }
    int n = PQntuples(res);
    bool whole = n > REFRESH_MAX;
    for (int r = 0; r < n && !whole; r++)
        whole = PQgetisnull(res, r, 0);
    if (whole || n == 0) {
        PQclear(res);
        return whole ? load(conn, s, tid) : READ_OK;
    }
    for (int r = 0; r < n; r++) {
        rs_customer *c = customer(s, PQgetvalue(res, r, 0), (size_t)PQgetlength(res, r, 0));
        c->known = false;
        c->since = c->first = RS_NONE;
        c->n = 0;
    }
    buf ids = {0};
    array_literal(&ids, res);
    PQclear(res);
    const char *p2[2] = {tid, ids.data};
    read_status st = READ_OK;
    static const char *const stmts[2] = {"report_customers", "report_orders"};
    for (int i = 0; i < 2 && st == READ_OK; i++) {
        res = PQexecPrepared(conn, stmts[i], 2, p2, NULL, NULL, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            db_log_error(res, conn, stmts[i]);
            st = READ_FAILED;
        } else if (i == 0) {
            apply_customers(s, res);
        } else if (!apply_orders(s, res) || over_budget(s)) {
            st = READ_UNUSABLE;
        }
        PQclear(res);
    }
    buf_free(&ids);
    if (st == READ_OK)
        stats_add(&stats.snapshot_refreshed, (uint64_t)n);
    s->generation = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED);
    return st;
}

/* ---- the registry ---- */

static snap *snap_of(int64_t tenant)
{
    pthread_mutex_lock(&reg.lock);
    snap *s = reg.head;
    while (s && s->tenant != tenant)
        s = s->next;
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->tenant = tenant;
        pthread_mutex_init(&s->lock, NULL);
        s->next = reg.head;
        reg.head = s;
    }
    pthread_mutex_unlock(&reg.lock);
    return s;
}

/* Drops the least recently used copies other than keep (and those in use) until all fit. */
static void evict(snap *keep)
{
    size_t budget = budget_bytes();
    for (;;) {
        pthread_mutex_lock(&reg.lock);
        snap *victim = NULL;
        if (reg.bytes > budget)
            for (snap *s = reg.head; s; s = s->next)
                if (s != keep && s->accounted && (!victim || s->used < victim->used))
                    victim = s;
        pthread_mutex_unlock(&reg.lock);
        if (!victim || pthread_mutex_trylock(&victim->lock) != 0)
            return;
        rd_log(LOG_INFO, "msg=\"report snapshot evicted\" tenant=%lld bytes=%zu", (long long)victim->tenant,
               victim->bytes);
        snap_drop(victim);
        pthread_mutex_unlock(&victim->lock);
    }
}

void report_snapshot_free_all(void)
{
    pthread_mutex_lock(&reg.lock);
    snap *s = reg.head;
    reg.head = NULL;
    pthread_mutex_unlock(&reg.lock);
    while (s) {
        snap *next = s->next;
        snap_drop(s);
        pthread_mutex_destroy(&s->lock);
        free(s);
        s = next;
    }
}

/* ---- answering ---- */

int report_snapshot_feed(PGconn *conn, const char *tenant_id, const char *snapshot,
                         rs_acc *(*begin)(void *ctx, uint64_t generation), void *ctx, rs_acc **out)
{
    *out = NULL;
    /* On Citus the copies are off: report_changes would record the coordinator's transaction
     * ids while the rows are read on a worker, whose commits the coordinator's snapshot does not
     * order, so a copy could miss a change for good (docs/scaling.md). Reports stream. */
    if (config.report_snapshot_mb <= 0 || db_is_citus())
        return REPORT_SNAPSHOT_SKIP;
    snap *s = snap_of(strtoll(tenant_id, NULL, 10));
    pthread_mutex_lock(&s->lock);
    if (s->unusable_until > now_usec()) {
        pthread_mutex_unlock(&s->lock);
        return REPORT_SNAPSHOT_SKIP;
    }
    read_status st = s->loaded ? refresh(conn, s, tenant_id) : load(conn, s, tenant_id);
    if (st != READ_OK) {
        snap_drop(s);
        if (st == READ_UNUSABLE) {
            s->unusable_until = now_usec() + UNUSABLE_USEC;
            rd_log(LOG_INFO, "msg=\"report snapshot unusable, reports streamed\" tenant=%s retry_in_s=%lld",
                   tenant_id, (long long)(UNUSABLE_USEC / 1000000));
        }
        pthread_mutex_unlock(&s->lock);
        return st == READ_FAILED ? RD_ERR : REPORT_SNAPSHOT_SKIP;
    }
    free(s->snapshot);
    s->snapshot = xstrdup(snapshot);
    publish(s, true);
    /* the tenant's generation: the same while the copy's customers are the same, so that what
     * is derived from them (the breakdowns' groups) can be kept between reports */
    rs_acc *acc = *out = begin(ctx, s->generation);
    if (!acc) {
        pthread_mutex_unlock(&s->lock);
        return RD_ERR;
    }
    for (uint32_t i = 0; i < s->shop.n; i++)
        reports_add_customer(acc, &s->shop.c[i]);
    pthread_mutex_unlock(&s->lock);
    evict(s);
    stats_add(&stats.snapshot_reports, 1);
    return RD_OK;
}
