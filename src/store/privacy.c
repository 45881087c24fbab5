/* privacy.c - erasure, export and data requests (see privacy.h). */
#include "retentiond/store/privacy.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads (kind, n) rows into *out. */
static int read_counts(PGresult *res, store_erasure *out)
{
    memset(out, 0, sizeof *out);
    for (int r = 0; r < PQntuples(res) && out->n < STORE_ERASE_KINDS; r++) {
        rd_strlcpy(out->counts[out->n].kind, PQgetvalue(res, r, 0), sizeof out->counts[out->n].kind);
        out->counts[out->n].rows = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        if (strcmp(out->counts[out->n].kind, "customers") == 0)
            out->customers = out->counts[out->n].rows;
        out->n++;
    }
    return RD_OK;
}

/* Runs one statement returning (kind, n) rows, in a transaction of its own unless in_txn. */
static int erase_run(PGconn *conn, const char *sql, int nparams, const char *const *params, const char *what,
                     bool in_txn, store_erasure *out)
{
    memset(out, 0, sizeof *out);
    if (!in_txn && db_exec(conn, "BEGIN", what) != RD_OK)
        return RD_ERR;
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 2) {
        db_log_error(res, conn, what);
        PQclear(res);
        if (!in_txn)
            PQclear(PQexec(conn, "ROLLBACK"));
        return RD_ERR;
    }
    read_counts(res, out);
    PQclear(res);
    if (!in_txn && db_exec(conn, "COMMIT", what) != RD_OK) {
        memset(out, 0, sizeof *out);
        return RD_ERR;
    }
    return RD_OK;
}

int store_erase(PGconn *conn, int64_t tenant_id, const char *const *ids, int nids, const char *const *orders,
                int norders, const char *by, bool in_txn, store_erasure *out)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    buf a = {0}, o = {0};
    for (int i = 0; i < nids; i++)
        db_array_add(&a, ids[i]);
    for (int i = 0; i < norders; i++)
        db_array_add(&o, orders[i]);
    const char *params[4] = {tid, db_array_end(&a), db_array_end(&o), by};
    int rc = erase_run(conn, "SELECT kind, n FROM rd_erase($1, $2::text[], $3::text[], $4)", 4, params, "erase", in_txn, out);
    free(a.data);
    free(o.data);
    return rc;
}

int store_erase_shop(PGconn *conn, int64_t tenant_id, const char *by, bool in_txn, store_erasure *out)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *params[2] = {tid, by};
    return erase_run(conn, "SELECT kind, n FROM rd_erase_shop($1, $2)", 2, params, "erase shop", in_txn, out);
}

void store_rows_take(const PGresult *res, store_rows *out)
{
    out->ncols = PQnfields(res);
    out->nrows = PQntuples(res);
    out->names = xcalloc(out->ncols ? (size_t)out->ncols : 1, sizeof *out->names);
    out->types = xcalloc(out->ncols ? (size_t)out->ncols : 1, sizeof *out->types);
    for (int c = 0; c < out->ncols; c++) {
        out->names[c] = xstrdup(PQfname(res, c));
        out->types[c] = (unsigned)PQftype(res, c);
    }
    size_t cells = (size_t)out->nrows * (size_t)out->ncols;
    out->cells = xcalloc(cells ? cells : 1, sizeof *out->cells);
    for (int r = 0; r < out->nrows; r++)
        for (int c = 0; c < out->ncols; c++)
            if (!PQgetisnull(res, r, c))
                out->cells[(size_t)r * (size_t)out->ncols + (size_t)c] = xstrdup(PQgetvalue(res, r, c));
}

void store_rows_free(store_rows *r)
{
    for (int c = 0; c < r->ncols; c++)
        free(r->names[c]);
    for (size_t i = 0; i < (size_t)r->nrows * (size_t)r->ncols; i++)
        free(r->cells[i]);
    free(r->names);
    free(r->types);
    free(r->cells);
    memset(r, 0, sizeof *r);
}

/* The export's parts, each a query of ($1 tenant, $2 customer). Instants as PostgreSQL's JSON
 * writes them; the record's columns are the stored ones, the rollup included. */
static const char *const export_sql[] = {
    "SELECT c.customer_id, c.email, to_json(c.created_at) #>> '{}' AS created_at, c.channel, c.referred_by, "
    "c.attributes, c.is_known AS record_received, c.stage, c.order_count, c.net_revenue, "
    "to_json(c.first_order_at) #>> '{}' AS first_order_at, to_json(c.last_order_at) #>> '{}' AS last_order_at, "
    "c.event_count, to_json(c.first_engaged_at) #>> '{}' AS first_engaged_at, "
    "to_json(c.last_engaged_at) #>> '{}' AS last_engaged_at, to_json(c.last_advocacy_at) #>> '{}' AS "
    "last_advocacy_at, c.advocacy_kind, to_json(c.inserted_at) #>> '{}' AS inserted_at "
    "FROM customers c WHERE c.tenant_id = $1 AND c.customer_id = $2",
    "SELECT o.order_id, to_json(o.placed_at) #>> '{}' AS placed_at, to_json(o.updated_at) #>> '{}' AS updated_at, "
    "o.currency, o.total, o.refunded, o.shop_total, o.shop_refunded, o.status, o.source, o.test, o.qualifying, "
    "o.net_value FROM orders o WHERE o.tenant_id = $1 AND o.customer_id = $2 ORDER BY o.placed_at, o.order_id",
    "SELECT e.event_id, e.type, to_json(e.occurred_at) #>> '{}' AS occurred_at, e.properties "
    "FROM events e WHERE e.tenant_id = $1 AND e.customer_id = $2 ORDER BY e.occurred_at, e.event_id",
    "SELECT to_json(h.changed_at) #>> '{}' AS changed_at, h.from_stage, h.to_stage "
    "FROM stage_history h WHERE h.tenant_id = $1 AND h.customer_id = $2 ORDER BY h.seq",
    "SELECT to_json(p.fitted_at) #>> '{}' AS fitted_at, p.p_alive, p.expected_orders, p.predicted_clv "
    "FROM customer_predictions p WHERE p.tenant_id = $1 AND p.customer_id = $2",
};

int store_customer_export(PGconn *conn, int64_t tenant_id, const char *customer_id, store_export *out)
{
    memset(out, 0, sizeof *out);
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *params[2] = {tid, customer_id};
    store_rows *parts[] = {&out->record, &out->orders, &out->events, &out->rung_history, &out->prediction};
    if (db_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "export") != RD_OK)
        return RD_ERR;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        PGresult *res = db_params(conn, export_sql[i], 2, params, PGRES_TUPLES_OK, "export");
        if (!res) {
            PQclear(PQexec(conn, "ROLLBACK"));
            store_export_free(out);
            return RD_ERR;
        }
        store_rows_take(res, parts[i]);
        PQclear(res);
    }
    out->found = out->record.nrows > 0;
    return db_exec(conn, "COMMIT", "export");
}

void store_export_free(store_export *e)
{
    store_rows_free(&e->record);
    store_rows_free(&e->orders);
    store_rows_free(&e->events);
    store_rows_free(&e->rung_history);
    store_rows_free(&e->prediction);
}

int store_privacy_request_add(PGconn *conn, int64_t tenant_id, const char *platform, const char *request_id,
                              const char *customer_id, const char *const *orders, int norders)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    buf o = {0};
    for (int i = 0; i < norders; i++)
        db_array_add(&o, orders[i]);
    const char *params[5] = {tid, platform, request_id, customer_id, db_array_end(&o)};
    int rc = db_command(conn,
        "INSERT INTO privacy_requests (tenant_id, platform, request_id, customer_id, orders) "
        "VALUES ($1, $2, $3, $4, $5::text[]) ON CONFLICT (tenant_id, platform, request_id) DO NOTHING",
                        5, params, "privacy request") < 0
                 ? RD_ERR
                 : RD_OK;
    free(o.data);
    return rc;
}

static const char *const requests_sql =
    "SELECT request_id, platform, customer_id, to_json(orders) AS orders, to_json(received_at) #>> '{}' AS received_at "
    "FROM privacy_requests WHERE tenant_id = $1 ORDER BY received_at DESC, request_id";

int store_privacy_requests(PGconn *conn, int64_t tenant_id, store_rows *out)
{
    memset(out, 0, sizeof *out);
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *params[1] = {tid};
    PGresult *res = db_params(conn, requests_sql, 1, params, PGRES_TUPLES_OK, "privacy requests");
    if (!res)
        return RD_ERR;
    store_rows_take(res, out);
    PQclear(res);
    return RD_OK;
}
