/* ingest.c - sends sets of records to the rd_ingest_* functions as PostgreSQL array
 * parameters (text format), and tallies the per-record outcomes they return. */
#include "retentiond/store/ingest.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parameters of rd_ingest_orders and rd_ingest_events, shared by their *_each forms. */
#define ORDER_ARGS                                                                                \
    "($1, $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::numeric[]," \
    " $8::numeric[], $9::numeric[], $10::numeric[], $11::text[], $12::text[], $13::boolean[], $14::text[])"
#define EVENT_ARGS "($1, $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[], $7)"

/* Customers a flush brings current per transaction: like a chunk of a batch, a few hundred
 * milliseconds of locks. */
#define ROLLUP_FLUSH_CUSTOMERS "5000"

void store_ingest_register(void)
{
    db_register_statement("ingest_orders", "SELECT idx, outcome FROM rd_ingest_orders" ORDER_ARGS, 14);
    db_register_statement("ingest_orders_each", "SELECT idx, outcome FROM rd_ingest_orders_each" ORDER_ARGS, 14);
    db_register_statement("ingest_orders_deferred",
                          "SELECT idx, outcome FROM rd_ingest_orders_deferred" ORDER_ARGS, 14);
    db_register_statement("rollup_flush", "SELECT rd_rollup_flush($1, $2, $3::interval)", 3);
    db_register_statement("pending_tenants",
        "SELECT DISTINCT tenant_id FROM rollup_pending WHERE since < now() - $1::interval", 1);
    db_register_statement("ingest_customers",
        "SELECT idx, outcome FROM rd_ingest_customers($1, $2::text[], $3::text[], $4::timestamptz[],"
        " $5::text[], $6::text[], $7::jsonb[], $8::timestamptz[])", 8);
    db_register_statement("ingest_events", "SELECT idx, outcome FROM rd_ingest_events" EVENT_ARGS, 7);
    db_register_statement("ingest_events_each", "SELECT idx, outcome FROM rd_ingest_events_each" EVENT_ARGS, 7);
    db_register_statement("ingest_spend",
        "SELECT idx, outcome FROM rd_ingest_spend($1, $2::text[], $3::text[], $4::date[], $5::date[],"
        " $6::numeric[])", 6);
}

/* Appends one element to a PostgreSQL array literal under construction ("{" already there
 * when the buffer is empty it is started). NULL becomes an SQL NULL. */
static const char *outcome_name(const char *s)
{
    static const char *const names[] = {"created", "updated", "duplicate", "stale", "superseded"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0)
            return names[i];
    return "duplicate";
}

void ingest_counts_add(ingest_counts *counts, const char *outcome)
{
    if (strcmp(outcome, "created") == 0)
        counts->created++;
    else if (strcmp(outcome, "updated") == 0)
        counts->updated++;
    else
        counts->duplicates++;
}

/* Runs one prepared ingest statement and tallies its outcomes. */
static int run(PGconn *conn, const char *stmt, int nparams, const char *const *params,
               ingest_counts *counts, const char **outcome)
{
    PGresult *res = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_log_error(res, conn, stmt);
        PQclear(res);
        return RD_ERR;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *o = PQgetvalue(res, i, 1);
        ingest_counts_add(counts, o);
        if (outcome && i == 0 && !*outcome)
            *outcome = outcome_name(o);
    }
    PQclear(res);
    return RD_OK;
}

static int write_customers(PGconn *conn, const char *tid, const ingest_set *s, ingest_counts *c, const char **outcome)
{
    buf a[7] = {{0}};
    for (size_t i = 0; i < s->n_customers; i++) {
        const rd_customer *x = &s->customers[i];
        db_array_add(&a[0], x->customer_id);
        db_array_add(&a[1], x->email);
        db_array_add(&a[2], x->created_at);
        db_array_add(&a[3], x->channel);
        db_array_add(&a[4], x->referred_by);
        db_array_add(&a[5], x->attributes);
        db_array_add(&a[6], x->updated_at);
    }
    const char *p[8] = {tid};
    for (int i = 0; i < 7; i++)
        p[i + 1] = db_array_end(&a[i]);
    int rc = run(conn, "ingest_customers", 8, p, c, outcome);
    for (int i = 0; i < 7; i++)
        buf_free(&a[i]);
    return rc;
}

#define ORDER_ARRAYS 13

/* Appends one order to the 13 parameter arrays of rd_ingest_orders. */
static void order_add(buf a[ORDER_ARRAYS], const rd_order *x)
{
    db_array_add(&a[0], x->order_id);
    db_array_add(&a[1], x->customer_id);
    db_array_add(&a[2], x->placed_at);
    db_array_add(&a[3], x->updated_at);
    db_array_add(&a[4], x->currency);
    db_array_add(&a[5], x->total);
    db_array_add(&a[6], x->refunded);
    db_array_add(&a[7], x->shop_total);
    db_array_add(&a[8], x->shop_refunded);
    db_array_add(&a[9], x->status);
    db_array_add(&a[10], x->source);
    db_array_add(&a[11], x->test ? "t" : "f");
    db_array_add(&a[12], x->email);
}

#define EVENT_ARRAYS 5

/* Appends one event to the 5 parameter arrays of rd_ingest_events. */
static void event_add(buf a[EVENT_ARRAYS], const rd_event *x)
{
    db_array_add(&a[0], x->event_id);
    db_array_add(&a[1], x->customer_id);
    db_array_add(&a[2], x->type);
    db_array_add(&a[3], x->occurred_at);
    db_array_add(&a[4], x->properties);
}

/* Closes n arrays into params[1..n] (params[0] is the tenant). */
static void close_params(buf *a, int n, const char *tid, const char **params)
{
    params[0] = tid;
    for (int i = 0; i < n; i++)
        params[i + 1] = db_array_end(&a[i]);
}

static void arrays_free(buf *a, int n)
{
    for (int i = 0; i < n; i++)
        buf_free(&a[i]);
}

static int write_orders(PGconn *conn, const char *tid, const ingest_set *s, bool bulk, ingest_counts *c,
                        const char **outcome)
{
    buf a[ORDER_ARRAYS] = {{0}};
    for (size_t i = 0; i < s->n_orders; i++)
        order_add(a, &s->orders[i]);
    const char *p[ORDER_ARRAYS + 1];
    close_params(a, ORDER_ARRAYS, tid, p);
    int rc = run(conn, bulk ? "ingest_orders_deferred" : "ingest_orders", ORDER_ARRAYS + 1, p, c, outcome);
    arrays_free(a, ORDER_ARRAYS);
    return rc;
}

/* Runs one of the *_each statements and gives each of its n records its outcome. */
static int run_each(PGconn *conn, const char *stmt, int nparams, const char *const *params, size_t n,
                    const char **outcomes)
{
    for (size_t i = 0; i < n; i++)
        outcomes[i] = NULL;
    PGresult *res = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_log_error(res, conn, stmt);
        PQclear(res);
        return RD_ERR;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        long idx = strtol(PQgetvalue(res, r, 0), NULL, 10);
        if (idx >= 1 && (size_t)idx <= n)
            outcomes[idx - 1] = outcome_name(PQgetvalue(res, r, 1));
    }
    PQclear(res);
    for (size_t i = 0; i < n; i++)
        if (!outcomes[i]) {
            rd_log(LOG_ERROR, "msg=\"%s returned no outcome for a record\"", stmt);
            return RD_ERR;
        }
    return RD_OK;
}

int store_ingest_orders_each(PGconn *conn, int64_t tenant_id, const rd_order *const *orders, size_t n,
                             const char **outcomes)
{
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    buf a[ORDER_ARRAYS] = {{0}};
    for (size_t i = 0; i < n; i++)
        order_add(a, orders[i]);
    const char *p[ORDER_ARRAYS + 1];
    close_params(a, ORDER_ARRAYS, tid, p);
    int rc = run_each(conn, "ingest_orders_each", ORDER_ARRAYS + 1, p, n, outcomes);
    arrays_free(a, ORDER_ARRAYS);
    return rc;
}

int store_ingest_events_each(PGconn *conn, int64_t tenant_id, const char *source, const rd_event *const *events,
                             size_t n, const char **outcomes)
{
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    buf a[EVENT_ARRAYS] = {{0}};
    for (size_t i = 0; i < n; i++)
        event_add(a, events[i]);
    const char *p[EVENT_ARRAYS + 2];
    close_params(a, EVENT_ARRAYS, tid, p);
    p[EVENT_ARRAYS + 1] = source;
    int rc = run_each(conn, "ingest_events_each", EVENT_ARRAYS + 2, p, n, outcomes);
    arrays_free(a, EVENT_ARRAYS);
    return rc;
}

static int write_events(PGconn *conn, const char *tid, const char *source, const ingest_set *s,
                        ingest_counts *c, const char **outcome)
{
    buf a[EVENT_ARRAYS] = {{0}};
    for (size_t i = 0; i < s->n_events; i++)
        event_add(a, &s->events[i]);
    const char *p[EVENT_ARRAYS + 2];
    close_params(a, EVENT_ARRAYS, tid, p);
    p[EVENT_ARRAYS + 1] = source;
    int rc = run(conn, "ingest_events", EVENT_ARRAYS + 2, p, c, outcome);
    arrays_free(a, EVENT_ARRAYS);
    return rc;
}

static int write_spend(PGconn *conn, const char *tid, const ingest_set *s, ingest_counts *c, const char **outcome)
{
    buf a[5] = {{0}};
    for (size_t i = 0; i < s->n_spend; i++) {
        const rd_spend *x = &s->spend[i];
        db_array_add(&a[0], x->kind);
        db_array_add(&a[1], x->channel);
        db_array_add(&a[2], x->period_start);
        db_array_add(&a[3], x->period_end);
        db_array_add(&a[4], x->amount);
    }
    const char *p[6] = {tid};
    for (int i = 0; i < 5; i++)
        p[i + 1] = db_array_end(&a[i]);
    int rc = run(conn, "ingest_spend", 6, p, c, outcome);
    for (int i = 0; i < 5; i++)
        buf_free(&a[i]);
    return rc;
}

static int ingest_set_write(PGconn *conn, int64_t tenant_id, const ingest_set *set, bool bulk,
                            ingest_counts *counts, const char **outcome)
{
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    if (outcome)
        *outcome = NULL;
    /* customers first, so orders and events of the same set find their records */
    if (set->n_customers && write_customers(conn, tid, set, counts, outcome) != RD_OK)
        return RD_ERR;
    if (set->n_orders && write_orders(conn, tid, set, bulk, counts, outcome) != RD_OK)
        return RD_ERR;
    if (set->n_events && write_events(conn, tid, set->source ? set->source : "api", set, counts, outcome) != RD_OK)
        return RD_ERR;
    if (set->n_spend && write_spend(conn, tid, set, counts, outcome) != RD_OK)
        return RD_ERR;
    return RD_OK;
}

int store_ingest(PGconn *conn, int64_t tenant_id, const ingest_set *set, ingest_counts *counts,
                 const char **outcome)
{
    return ingest_set_write(conn, tenant_id, set, false, counts, outcome);
}

int store_ingest_commit(PGconn *conn, int64_t tenant_id, const ingest_set *set, bool bulk, ingest_counts *counts)
{
    ingest_counts tmp = {0};
    for (int attempt = 0; attempt < 3; attempt++) {
        memset(&tmp, 0, sizeof tmp);
        if (db_exec(conn, "BEGIN", "begin batch") != RD_OK)
            return RD_ERR;
        if (ingest_set_write(conn, tenant_id, set, bulk, &tmp, NULL) == RD_OK &&
            db_exec(conn, "COMMIT", "commit batch") == RD_OK) {
            counts->created += tmp.created;
            counts->updated += tmp.updated;
            counts->duplicates += tmp.duplicates;
            return RD_OK;
        }
        PGresult *res = PQexec(conn, "ROLLBACK");
        PQclear(res);
        if (PQstatus(conn) != CONNECTION_OK)
            return RD_ERR;
        /* a deadlock with a concurrent writer: try again */
    }
    return RD_ERR;
}

int store_rollup_flush(PGconn *conn, int64_t tenant_id, int older_than_s, int64_t *flushed)
{
    char tid[24], age[32];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    snprintf(age, sizeof age, "%d seconds", older_than_s);
    const char *params[3] = {tid, ROLLUP_FLUSH_CUSTOMERS, older_than_s >= 0 ? age : NULL};
    for (int failures = 0;;) {
        PGresult *res = PQexecPrepared(conn, "rollup_flush", 3, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            db_log_error(res, conn, "rollup_flush");
            PQclear(res);
            /* a deadlock with a concurrent writer rolls back one transaction: try again */
            if (PQstatus(conn) != CONNECTION_OK || ++failures == 3)
                return RD_ERR;
            continue;
        }
        long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        if (flushed)
            *flushed += n;
        if (n == 0)
            return RD_OK;
    }
}

int store_pending_tenants(PGconn *conn, int older_than_s, int64_t **ids)
{
    char age[32];
    snprintf(age, sizeof age, "%d seconds", older_than_s);
    const char *params[1] = {age};
    return db_query_ids(conn, "pending_tenants", 1, params, ids);
}
