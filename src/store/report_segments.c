/* report_segments.c - breakdowns and filters of the period reports (see report_segments.h). */
#include "retentiond/store/report_segments.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A dimension's value per customers row; NULL or '' is "without the value". The source is that
 * of the first qualifying order (the one at first_order_at, by order id among equals), found
 * through orders_customer; the month is the local one, in the tenant's zone. */
static const char *dim_sql(store_dimension d)
{
    switch (d) {
    case SEG_CHANNEL:
        return "nullif(c.channel, '')";
    case SEG_SOURCE:
        return "(SELECT o.source FROM orders o WHERE o.tenant_id = c.tenant_id AND o.customer_id = c.customer_id"
               " AND o.placed_at = c.first_order_at AND o.qualifying ORDER BY o.order_id LIMIT 1)";
    case SEG_FIRST_ORDER_MONTH:
        /* in the tenant's zone named, not the session's: on Citus the statement runs on a worker */
        return "to_char(c.first_order_at AT TIME ZONE (SELECT t.timezone FROM tenants t WHERE t.tenant_id = $1),"
               " 'YYYY-MM')";
    case SEG_ATTRIBUTE:
        return NULL; /* c.attributes ->> $n */
    }
    return NULL;
}

bool segments_parse_dim(const char *name, store_dim *out)
{
    static const struct {
        const char *name;
        store_dimension dim;
    } dims[] = {{"channel", SEG_CHANNEL}, {"source", SEG_SOURCE}, {"first_order_month", SEG_FIRST_ORDER_MONTH}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (strcmp(name, dims[i].name) == 0) {
            *out = (store_dim){dims[i].dim, NULL};
            return true;
        }
    if (strncmp(name, "attribute:", 10) == 0 && name[10] && strlen(name + 10) <= 100) {
        *out = (store_dim){SEG_ATTRIBUTE, name + 10};
        return true;
    }
    return false;
}

typedef struct {
    char *value;
    int64_t customers;
} value_count;

struct segmenter {
    int ngroups;
    char **values;         /* per group; NULL without a breakdown */
    int64_t *customers;
    int ntop;              /* groups 0 .. ntop - 1: the top values */
    int other_group;       /* "(other)", or -1 when every value is among the top */
    int none_group;        /* customers without the value or without a row; -1: none (filters only) */
    char *channel;         /* without a breakdown: the channel filter's value (a copy: the groups
                              outlive the request, segments_cache_put), or NULL */
    /* customer id -> group + 1 (0: left out by a filter), open addressing */
    uint32_t nslots;
    char **ids;
    int *group;
    /* the groups in the order a snapshot's customers were fed, recorded on the first report of a
     * copy and replayed on the next ones (the same copy feeds the same customers in the same
     * order): a sequential read instead of two cache misses per customer in the id table */
    int *seq;
    size_t nseq, capseq, cursor;
    bool replay;
};

/* An open-addressing table of strings to an int, for the customer ids and the distinct values. */
typedef struct {
    uint32_t n, used;
    char **keys;
    int *vals;
} str_table;

static void table_init(str_table *t, uint32_t expect)
{
    t->n = 1024;
    while (t->n < 2 * expect + 2)
        t->n *= 2;
    t->used = 0;
    t->keys = xcalloc(t->n, sizeof *t->keys);
    t->vals = xcalloc(t->n, sizeof *t->vals);
}

/* The slot of key: where it is, or the empty one where it goes. */
static uint32_t table_slot(const str_table *t, const char *key)
{
    uint32_t k = rd_hash(key, strlen(key)) & (t->n - 1);
    while (t->keys[k] && strcmp(t->keys[k], key) != 0)
        k = (k + 1) & (t->n - 1);
    return k;
}

static int by_customers(const void *a, const void *b)
{
    const value_count *x = a, *y = b;
    if (x->customers != y->customers)
        return x->customers > y->customers ? -1 : 1;
    return strcmp(x->value, y->value);
}

/* The group of a breakdown value (NULL: none): its own among the top ones, else (other). */
static int value_group(const segmenter *s, const str_table *top, const char *v)
{
    if (!v)
        return s->none_group;
    uint32_t k = table_slot(top, v);
    return top->keys[k] ? top->vals[k] : s->other_group;
}

static int lookup(const segmenter *s, const rs_customer *c)
{
    for (uint32_t k = rd_hash(c->id, strlen(c->id)) & (s->nslots - 1); s->ids[k]; k = (k + 1) & (s->nslots - 1))
        if (strcmp(s->ids[k], c->id) == 0)
            return s->group[k] - 1;
    return s->none_group; /* orders without a customers row: no value, so no filter matches */
}

int segments_group_of(void *ctx, const rs_customer *c)
{
    segmenter *s = ctx;
    if (s->replay && s->cursor < s->nseq)
        return s->seq[s->cursor++];
    int g = lookup(s, c);
    if (!s->replay) {
        if (s->nseq == s->capseq) {
            s->capseq = s->capseq ? 2 * s->capseq : 4096;
            s->seq = xrealloc(s->seq, s->capseq * sizeof *s->seq);
        }
        s->seq[s->nseq++] = g;
    }
    return g;
}

void segments_feed_start(segmenter *s, bool replay)
{
    s->replay = replay;
    s->cursor = 0;
    if (!replay)
        s->nseq = 0;
}

/* The value of column col, NULL for SQL NULL. */
static const char *value_at(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* The top values (each its own group) as a table: value -> group. */
static void top_table(const segmenter *s, str_table *top)
{
    table_init(top, (uint32_t)s->ntop);
    for (int g = 0; g < s->ntop; g++) {
        uint32_t k = table_slot(top, s->values[g]);
        top->keys[k] = s->values[g]; /* borrowed */
        top->vals[k] = g;
    }
}

int segments_read(PGconn *conn, const char *tenant_id, const store_segments *sg, segmenter **out)
{
    *out = NULL;
    /* SELECT c.customer_id, <breakdown>, <filter 1>, ... with the attribute keys as parameters */
    char sql[4096];
    const char *params[2 + STORE_MAX_FILTERS] = {tenant_id};
    int np = 1, len = snprintf(sql, sizeof sql, "SELECT c.customer_id");
    int ndims = (sg->has_breakdown ? 1 : 0) + sg->nfilters;
    for (int i = 0; i < ndims; i++) {
        const store_dim *d = sg->has_breakdown ? (i == 0 ? &sg->breakdown : &sg->filters[i - 1]) : &sg->filters[i];
        if (d->dim == SEG_ATTRIBUTE) {
            params[np++] = d->key;
            len += snprintf(sql + len, sizeof sql - (size_t)len, ", nullif(c.attributes ->> $%d, '')", np);
        } else {
            len += snprintf(sql + len, sizeof sql - (size_t)len, ", %s", dim_sql(d->dim));
        }
    }
    snprintf(sql + len, sizeof sql - (size_t)len, " FROM customers c WHERE c.tenant_id = $1");
    PGresult *res = db_params(conn, sql, np, params, PGRES_TUPLES_OK, "report segments");
    if (!res)
        return RD_ERR;
    int n = PQntuples(res), fcol = sg->has_breakdown ? 2 : 1;

    /* the customers the filters keep, and their breakdown values by customers */
    bool *kept = xcalloc(n > 0 ? (size_t)n : 1, sizeof *kept);
    str_table distinct;
    table_init(&distinct, 64);
    value_count *vc = NULL;
    size_t nvc = 0;
    int64_t none = 0, all = 0;
    for (int r = 0; r < n; r++) {
        kept[r] = true;
        for (int f = 0; f < sg->nfilters && kept[r]; f++) {
            const char *v = value_at(res, r, fcol + f);
            kept[r] = v && strcmp(v, sg->filter_values[f]) == 0;
        }
        if (!kept[r])
            continue;
        all++;
        if (!sg->has_breakdown)
            continue;
        const char *v = value_at(res, r, 1);
        if (!v) {
            none++;
            continue;
        }
        uint32_t k = table_slot(&distinct, v);
        if (!distinct.keys[k]) {
            distinct.keys[k] = xstrdup(v);
            distinct.vals[k] = (int)nvc;
            vc = xrealloc(vc, (nvc + 1) * sizeof *vc);
            vc[nvc++] = (value_count){distinct.keys[k], 0};
            if (2 * ++distinct.used + 2 > distinct.n) { /* grow: rehash the keys */
                str_table bigger;
                table_init(&bigger, distinct.n);
                for (uint32_t j = 0; j < distinct.n; j++)
                    if (distinct.keys[j]) {
                        uint32_t m = table_slot(&bigger, distinct.keys[j]);
                        bigger.keys[m] = distinct.keys[j];
                        bigger.vals[m] = distinct.vals[j];
                    }
                bigger.used = distinct.used;
                free(distinct.keys);
                free(distinct.vals);
                distinct = bigger;
            }
            k = table_slot(&distinct, v);
        }
        vc[distinct.vals[k]].customers++;
    }

    segmenter *s = xcalloc(1, sizeof *s);
    s->other_group = -1;
    if (sg->has_breakdown) {
        qsort(vc, nvc, sizeof *vc, by_customers);
        size_t top = nvc < STORE_BREAKDOWN_TOP ? nvc : STORE_BREAKDOWN_TOP;
        s->ntop = (int)top;
        s->ngroups = (int)top + (nvc > top) + 1;
        s->values = xcalloc((size_t)s->ngroups, sizeof *s->values);
        s->customers = xcalloc((size_t)s->ngroups, sizeof *s->customers);
        for (size_t i = 0; i < nvc; i++) {
            if (i < top) {
                s->values[i] = xstrdup(vc[i].value);
                s->customers[i] = vc[i].customers;
            } else {
                s->customers[top] += vc[i].customers;
            }
        }
        if (nvc > top) {
            s->other_group = (int)top;
            s->values[top] = xstrdup(STORE_SEGMENT_OTHER);
        }
        s->none_group = s->ngroups - 1;
        s->values[s->none_group] = xstrdup(STORE_SEGMENT_NONE);
        s->customers[s->none_group] = none;
    } else {
        s->ngroups = 1;
        s->values = xcalloc(1, sizeof *s->values);
        s->customers = xcalloc(1, sizeof *s->customers);
        s->customers[0] = all;
        s->none_group = sg->nfilters ? -1 : 0;
        for (int f = 0; f < sg->nfilters; f++)
            if (sg->filters[f].dim == SEG_CHANNEL)
                s->channel = xstrdup(sg->filter_values[f]);
    }
    for (uint32_t j = 0; j < distinct.n; j++)
        free(distinct.keys[j]);
    free(distinct.keys);
    free(distinct.vals);
    free(vc);

    str_table tops;
    top_table(s, &tops);
    str_table ids;
    table_init(&ids, (uint32_t)n);
    for (int r = 0; r < n; r++) {
        int g = !kept[r] ? -1 : sg->has_breakdown ? value_group(s, &tops, value_at(res, r, 1)) : 0;
        uint32_t k = table_slot(&ids, PQgetvalue(res, r, 0));
        ids.keys[k] = xstrdup(PQgetvalue(res, r, 0));
        ids.vals[k] = g + 1;
    }
    free(tops.keys);
    free(tops.vals);
    s->nslots = ids.n;
    s->ids = ids.keys;
    s->group = ids.vals;
    free(kept);
    PQclear(res);
    *out = s;
    return RD_OK;
}

int segments_count(const segmenter *s)
{
    return s->ngroups;
}

const char *segments_value(const segmenter *s, int group)
{
    return s->values[group];
}

int64_t segments_customers(const segmenter *s, int group)
{
    return s->customers[group];
}

/* The spend of [$2, $3) by channel and kind. $2 and $3 are the period's instants as the frame
 * wrote them (rd_report_frame: ISO 8601 with the tenant's offset), so their first ten
 * characters are the local dates wherever the statement runs (on Citus, on a worker, whose
 * TimeZone is not the transaction's). */
static const char *const spend_sql =
    "SELECT nullif(channel, ''), kind, sum(amount)::text FROM spend WHERE tenant_id = $1"
    " AND period_start >= left($2, 10)::date AND period_start < left($3, 10)::date GROUP BY 1, 2";

int segments_spend(PGconn *conn, const char *tenant_id, const char *from, const char *to, const segmenter *s,
                   double *acq, bool *has_acq, double *ret, bool *has_ret)
{
    for (int g = 0; g < s->ngroups; g++) {
        acq[g] = ret[g] = 0;
        has_acq[g] = has_ret[g] = false;
    }
    const char *params[3] = {tenant_id, from, to};
    PGresult *res = db_params(conn, spend_sql, 3, params, PGRES_TUPLES_OK, "report segment spend");
    if (!res)
        return RD_ERR;
    str_table tops;
    top_table(s, &tops);
    for (int r = 0; r < PQntuples(res); r++) {
        /* a channel no customer has goes to (other) when there is one, else to (none); without a
         * breakdown the one group has the filtered channel's spend */
        const char *channel = value_at(res, r, 0);
        int g = 0;
        if (s->values[0] == NULL) {
            if (s->channel && !(channel && strcmp(channel, s->channel) == 0))
                continue;
        } else if ((g = value_group(s, &tops, channel)) < 0) {
            g = s->none_group;
        }
        double v = strtod(PQgetvalue(res, r, 2), NULL);
        if (strcmp(PQgetvalue(res, r, 1), "acquisition") == 0) {
            acq[g] += v;
            has_acq[g] = true;
        } else {
            ret[g] += v;
            has_ret[g] = true;
        }
    }
    free(tops.keys);
    free(tops.vals);
    PQclear(res);
    return RD_OK;
}

void segments_free(segmenter *s)
{
    if (!s)
        return;
    for (int g = 0; g < s->ngroups; g++)
        free(s->values[g]);
    free(s->values);
    free(s->customers);
    for (uint32_t k = 0; k < s->nslots; k++)
        free(s->ids[k]);
    free(s->ids);
    free(s->group);
    free(s->seq);
    free(s->channel);
    free(s);
}

void segments_key(const store_segments *sg, const char *timezone, char *out, size_t n)
{
    static const char *const names[] = {"channel", "source", "first_order_month", "attribute"};
    int len = snprintf(out, n, "%s|", timezone ? timezone : "");
    for (int i = -1; i < sg->nfilters && len >= 0 && (size_t)len < n; i++) {
        const store_dim *d = i < 0 ? (sg->has_breakdown ? &sg->breakdown : NULL) : &sg->filters[i];
        if (d)
            len += snprintf(out + len, n - (size_t)len, "%s%s:%s=%s\x1f", i < 0 ? "by " : "", names[d->dim],
                            d->key ? d->key : "", i < 0 ? "" : sg->filter_values[i]);
    }
}

#define CACHE_ENTRIES 8

static struct {
    pthread_mutex_t lock;
    struct {
        uint64_t generation;
        char *key;
        segmenter *seg;
    } e[CACHE_ENTRIES];
    int next; /* the slot put fills next: the oldest */
} cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

segmenter *segments_cache_take(uint64_t generation, const char *key)
{
    segmenter *s = NULL;
    pthread_mutex_lock(&cache.lock);
    for (int i = 0; i < CACHE_ENTRIES && !s; i++)
        if (cache.e[i].seg && cache.e[i].generation == generation && strcmp(cache.e[i].key, key) == 0) {
            s = cache.e[i].seg;
            cache.e[i].seg = NULL;
            free(cache.e[i].key);
            cache.e[i].key = NULL;
        }
    pthread_mutex_unlock(&cache.lock);
    return s;
}

void segments_cache_put(uint64_t generation, const char *key, segmenter *s)
{
    pthread_mutex_lock(&cache.lock);
    int i = cache.next;
    cache.next = (cache.next + 1) % CACHE_ENTRIES;
    segmenter *old = cache.e[i].seg;
    free(cache.e[i].key);
    cache.e[i].generation = generation;
    cache.e[i].key = xstrdup(key);
    cache.e[i].seg = s;
    pthread_mutex_unlock(&cache.lock);
    segments_free(old);
}

void segments_cache_free_all(void)
{
    pthread_mutex_lock(&cache.lock);
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        segments_free(cache.e[i].seg);
        free(cache.e[i].key);
        cache.e[i].seg = NULL;
        cache.e[i].key = NULL;
    }
    pthread_mutex_unlock(&cache.lock);
}
