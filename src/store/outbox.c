/* outbox.c - outgoing webhooks in the database (see outbox.h; the SQL is sql/outbox.sql). */
#include "retentiond/store/outbox.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *cell(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
}

static int64_t cell_id(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? 0 : strtoll(PQgetvalue(res, r, c), NULL, 10);
}

/* Runs `sql` into *out (its rows as text). */
static int rows_query(PGconn *conn, const char *sql, int n, const char *const *params, const char *what,
                      store_rows *out)
{
    PGresult *res = db_params(conn, sql, n, params, PGRES_TUPLES_OK, what);
    if (!res)
        return RD_ERR;
    store_rows_take(res, out);
    PQclear(res);
    return RD_OK;
}

void store_outbox_register(void)
{
    db_register_statement("status_tenants",
                          "SELECT DISTINCT tenant_id FROM subscriptions "
                          "WHERE deleted_at IS NULL AND 'customer.status_changed' = ANY (events) ORDER BY 1", 0);
}

/* ---- subscriptions ---- */

int store_subscription_create(PGconn *conn, int64_t tenant_id, const store_subscription_new *s, int64_t *id,
                              char created_at[48])
{
    char tid[24];
    db_id_text(tid, tenant_id);
    buf ev = {0}, to = {0};
    for (int i = 0; i < s->nevents; i++)
        db_array_add(&ev, s->events[i]);
    for (int i = 0; i < s->nto; i++)
        db_array_add(&to, s->to[i]);
    const char *params[7] = {tid, s->url, db_array_end(&ev), s->to ? db_array_end(&to) : NULL, s->min_clv,
                             s->description, s->secret};
    PGresult *res = db_params(conn,
                              "SELECT subscription_id, to_json(created_at) #>> '{}' FROM "
                              "rd_subscription_create($1, $2, $3::text[], $4::text[], $5::float8, $6, $7)",
                              7, params, PGRES_TUPLES_OK, "subscription create");
    free(ev.data);
    free(to.data);
    if (!res)
        return RD_ERR;
    *id = cell_id(res, 0, 0);
    rd_strlcpy(created_at, PQgetvalue(res, 0, 1), 48);
    PQclear(res);
    return RD_OK;
}

int store_subscriptions_list(PGconn *conn, int64_t tenant_id, int64_t id, store_rows *out)
{
    memset(out, 0, sizeof *out);
    char tid[24], sid[24];
    db_id_text(tid, tenant_id);
    db_id_text(sid, id);
    const char *params[2] = {tid, sid};
    return rows_query(
        conn,
        "SELECT s.subscription_id AS id, s.url, s.events, s.filter_to, s.min_predicted_clv, s.description, "
        "       to_json(s.created_at) #>> '{}' AS created_at, "
        "       (SELECT count(*) FROM subscription_deliveries d WHERE d.tenant_id = s.tenant_id "
        "          AND d.subscription_id = s.subscription_id AND d.status = 'pending') AS pending "
        "FROM subscriptions s WHERE s.tenant_id = $1 AND s.deleted_at IS NULL "
        "  AND ($2::bigint < 0 OR s.subscription_id = $2) ORDER BY s.subscription_id DESC",
        2, params, "subscriptions list", out);
}

int store_subscription_delete(PGconn *conn, int64_t tenant_id, int64_t id, bool *found)
{
    char tid[24], sid[24];
    db_id_text(tid, tenant_id);
    db_id_text(sid, id);
    const char *params[2] = {tid, sid};
    PGresult *res = db_params(conn, "SELECT rd_subscription_delete($1, $2)", 2, params, PGRES_TUPLES_OK,
                              "subscription delete");
    if (!res)
        return RD_ERR;
    *found = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return RD_OK;
}

int store_subscription_test(PGconn *conn, int64_t tenant_id, int64_t id, const char *body, int64_t *delivery_id)
{
    char tid[24], sid[24];
    db_id_text(tid, tenant_id);
    db_id_text(sid, id);
    const char *params[3] = {tid, sid, body};
    PGresult *res = db_params(conn, "SELECT rd_subscription_test($1, $2, $3)", 3, params, PGRES_TUPLES_OK,
                              "subscription test");
    if (!res)
        return RD_ERR;
    *delivery_id = cell_id(res, 0, 0);
    PQclear(res);
    return RD_OK;
}

int store_subscription_deliveries(PGconn *conn, int64_t tenant_id, int64_t id, int limit, bool *found,
                                  store_rows *deliveries, store_rows *attempts)
{
    memset(deliveries, 0, sizeof *deliveries);
    memset(attempts, 0, sizeof *attempts);
    char tid[24], sid[24], lim[24];
    db_id_text(tid, tenant_id);
    db_id_text(sid, id);
    db_id_text(lim, limit);
    const char *params[3] = {tid, sid, lim};
    if (db_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "subscription deliveries") != RD_OK)
        return RD_ERR;
    PGresult *res = db_params(conn, "SELECT 1 FROM subscriptions WHERE tenant_id = $1 AND subscription_id = $2", 2,
                              params, PGRES_TUPLES_OK, "subscription deliveries");
    if (!res)
        goto fail;
    *found = PQntuples(res) > 0;
    PQclear(res);
    if (rows_query(conn,
                    "SELECT d.delivery_id AS id, d.type, d.customer_id, d.status, d.attempts, "
                    "       to_json(d.created_at) #>> '{}' AS created_at, "
                    "       CASE WHEN d.status = 'pending' THEN to_json(d.next_attempt_at) #>> '{}' END "
                    "           AS next_attempt_at, "
                    "       to_json(d.done_at) #>> '{}' AS done_at "
                    "FROM subscription_deliveries d WHERE d.tenant_id = $1 AND d.subscription_id = $2 "
                    "ORDER BY d.delivery_id DESC LIMIT $3",
                    3, params, "subscription deliveries", deliveries) != RD_OK)
        goto fail;
    if (rows_query(conn,
                    "SELECT a.delivery_id, a.attempt, to_json(a.attempted_at) #>> '{}' AS attempted_at, "
                    "       a.http_status, a.error, a.duration_ms "
                    "FROM (SELECT d.delivery_id FROM subscription_deliveries d "
                    "      WHERE d.tenant_id = $1 AND d.subscription_id = $2 "
                    "      ORDER BY d.delivery_id DESC LIMIT $3) d "
                    "JOIN subscription_attempts a ON a.tenant_id = $1 AND a.delivery_id = d.delivery_id "
                    "ORDER BY a.delivery_id DESC, a.attempt",
                    3, params, "subscription attempts", attempts) != RD_OK)
        goto fail;
    return db_exec(conn, "COMMIT", "subscription deliveries");
fail:
    PQclear(PQexec(conn, "ROLLBACK"));
    store_rows_free(deliveries);
    store_rows_free(attempts);
    return RD_ERR;
}

/* ---- the fan-out ---- */

enum { T_TENANT_ID, T_EVENT, T_SUB, T_TENANT, T_CURRENCY, T_CUSTOMER, T_TYPE, T_FROM, T_TO, T_AT, T_EMAIL,
       T_STAGE, T_STATUS, T_ORDERS, T_REVENUE, T_FIRST, T_LAST, T_P_ALIVE, T_EXPECTED, T_CLV, T_COLS };

int store_outbox_take(PGconn *conn, int limit, outbox_batch *b)
{
    memset(b, 0, sizeof *b);
    if (db_exec(conn, "BEGIN", "outbox take") != RD_OK)
        return RD_ERR;
    char lim[24];
    db_id_text(lim, limit);
    const char *params[1] = {lim};
    PGresult *res = db_params(conn,
                              "SELECT tenant_id, event_id, subscription_id, tenant, currency, customer_id, type, "
                              "       from_value, to_value, to_json(occurred_at) #>> '{}', email, stage, status, "
                              "       order_count, net_revenue, to_json(first_order_at) #>> '{}', "
                              "       to_json(last_order_at) #>> '{}', p_alive, expected_orders, predicted_clv "
                              "FROM rd_outbox_take($1)",
                              1, params, PGRES_TUPLES_OK, "outbox take");
    if (!res || PQnfields(res) != T_COLS) {
        PQclear(res);
        PQclear(PQexec(conn, "ROLLBACK"));
        return RD_ERR;
    }
    b->res = res;
    b->n = PQntuples(res);
    if (b->n == 0)
        return db_exec(conn, "COMMIT", "outbox take");
    b->events = xcalloc((size_t)b->n, sizeof *b->events);
    for (int i = 0; i < b->n; i++) {
        outbox_event *e = &b->events[i];
        e->tenant_id = cell_id(res, i, T_TENANT_ID);
        e->event_id = cell_id(res, i, T_EVENT);
        e->subscription_id = cell_id(res, i, T_SUB);
        e->tenant = cell(res, i, T_TENANT);
        e->currency = cell(res, i, T_CURRENCY);
        e->customer_id = cell(res, i, T_CUSTOMER);
        e->type = cell(res, i, T_TYPE);
        e->from = cell(res, i, T_FROM);
        e->to = cell(res, i, T_TO);
        e->occurred_at = cell(res, i, T_AT);
        e->email = cell(res, i, T_EMAIL);
        e->stage = cell(res, i, T_STAGE);
        e->status = cell(res, i, T_STATUS);
        e->order_count = cell(res, i, T_ORDERS);
        e->net_revenue = cell(res, i, T_REVENUE);
        e->first_order_at = cell(res, i, T_FIRST);
        e->last_order_at = cell(res, i, T_LAST);
        e->p_alive = cell(res, i, T_P_ALIVE);
        e->expected_orders = cell(res, i, T_EXPECTED);
        e->predicted_clv = cell(res, i, T_CLV);
    }
    return RD_OK;
}

int store_fan_out(PGconn *conn, const outbox_batch *b, char *const *bodies, int *made)
{
    *made = 0;
    buf t = {0}, e = {0}, s = {0}, c = {0}, ty = {0}, bo = {0}, tt = {0}, te = {0};
    char id[24];
    for (int i = 0; i < b->n; i++) {
        const outbox_event *ev = &b->events[i];
        if (i == 0 || ev->event_id != b->events[i - 1].event_id || ev->tenant_id != b->events[i - 1].tenant_id) {
            db_id_text(id, ev->tenant_id);
            db_array_add(&tt, id);
            db_id_text(id, ev->event_id);
            db_array_add(&te, id);
        }
        if (!ev->subscription_id || !bodies[i])
            continue;
        db_id_text(id, ev->tenant_id);
        db_array_add(&t, id);
        db_id_text(id, ev->event_id);
        db_array_add(&e, id);
        db_id_text(id, ev->subscription_id);
        db_array_add(&s, id);
        db_array_add(&c, ev->customer_id);
        db_array_add(&ty, ev->type);
        db_array_add(&bo, bodies[i]);
    }
    const char *params[8] = {db_array_end(&t), db_array_end(&e), db_array_end(&s), db_array_end(&c),
                             db_array_end(&ty), db_array_end(&bo), db_array_end(&tt), db_array_end(&te)};
    PGresult *res = db_params(conn,
                              "SELECT rd_outbox_fan_out($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], "
                              "$5::text[], $6::text[], $7::bigint[], $8::bigint[])",
                              8, params, PGRES_TUPLES_OK, "outbox fan-out");
    buf *all[] = {&t, &e, &s, &c, &ty, &bo, &tt, &te};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]->data);
    if (!res) {
        PQclear(PQexec(conn, "ROLLBACK"));
        return RD_ERR;
    }
    *made = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return db_exec(conn, "COMMIT", "outbox fan-out");
}

void store_fan_out_abort(PGconn *conn)
{
    PQclear(PQexec(conn, "ROLLBACK"));
}

void outbox_batch_free(outbox_batch *b)
{
    PQclear(b->res);
    free(b->events);
    memset(b, 0, sizeof *b);
}

/* ---- deliveries ---- */

int store_deliveries_claim(PGconn *conn, int limit, int per_sub, int lease_ms, delivery_claim *out)
{
    char lim[24], per[24], lease[40];
    db_id_text(lim, limit);
    db_id_text(per, per_sub);
    snprintf(lease, sizeof lease, "%d milliseconds", lease_ms);
    const char *params[3] = {lim, per, lease};
    PGresult *res = db_params(conn,
                              "SELECT tenant_id, delivery_id, subscription_id, attempt, url, secret, body "
                              "FROM rd_deliveries_claim($1, $2, $3::interval) ORDER BY delivery_id",
                              3, params, PGRES_TUPLES_OK, "deliveries claim");
    if (!res)
        return -1;
    int n = PQntuples(res);
    for (int i = 0; i < n && i < limit; i++) {
        delivery_claim *c = &out[i];
        c->tenant_id = cell_id(res, i, 0);
        c->delivery_id = cell_id(res, i, 1);
        c->subscription_id = cell_id(res, i, 2);
        c->attempt = atoi(PQgetvalue(res, i, 3));
        c->url = xstrdup(PQgetvalue(res, i, 4));
        c->secret = xstrdup(PQgetvalue(res, i, 5));
        c->body = xstrdup(PQgetvalue(res, i, 6));
    }
    PQclear(res);
    return n < limit ? n : limit;
}

void delivery_claim_clear(delivery_claim *c)
{
    free(c->url);
    free(c->secret);
    free(c->body);
    memset(c, 0, sizeof *c);
}

int store_delivery_record(PGconn *conn, const delivery_claim *c, bool ok, int http_status, const char *error,
                          double duration_ms, long retry_ms, long horizon_s, char status[16])
{
    char tid[24], did[24], att[24], code[24], dur[40], retry[40], horizon[40];
    db_id_text(tid, c->tenant_id);
    db_id_text(did, c->delivery_id);
    db_id_text(att, c->attempt);
    db_id_text(code, http_status);
    snprintf(dur, sizeof dur, "%.3f", duration_ms);
    snprintf(retry, sizeof retry, "%ld milliseconds", retry_ms);
    snprintf(horizon, sizeof horizon, "%ld seconds", horizon_s);
    const char *params[9] = {tid, did, att, ok ? "t" : "f", http_status ? code : NULL, error, dur, retry, horizon};
    PGresult *res = db_params(conn, "SELECT rd_delivery_record($1, $2, $3, $4, $5, $6, $7, $8::interval, $9::interval)",
                              9, params, PGRES_TUPLES_OK, "delivery record");
    if (!res)
        return RD_ERR;
    rd_strlcpy(status, PQgetvalue(res, 0, 0), 16);
    PQclear(res);
    return RD_OK;
}

int store_delivery_release(PGconn *conn, const delivery_claim *c)
{
    char tid[24], did[24], att[24];
    db_id_text(tid, c->tenant_id);
    db_id_text(did, c->delivery_id);
    db_id_text(att, c->attempt);
    const char *params[3] = {tid, did, att};
    PGresult *res = db_params(conn, "SELECT rd_delivery_release($1, $2, $3)", 3, params, PGRES_TUPLES_OK,
                              "delivery release");
    PQclear(res);
    return res ? RD_OK : RD_ERR;
}

int store_outbox_backlog(PGconn *conn, int64_t *outbox, int64_t *pending, double *oldest_seconds)
{
    PGresult *res = db_params(conn, "SELECT outbox, pending, oldest_seconds FROM rd_outbox_backlog()", 0, NULL,
                              PGRES_TUPLES_OK, "outbox backlog");
    if (!res)
        return RD_ERR;
    *outbox = cell_id(res, 0, 0);
    *pending = cell_id(res, 0, 1);
    *oldest_seconds = strtod(PQgetvalue(res, 0, 2), NULL);
    PQclear(res);
    return RD_OK;
}

/* Runs `sql` (one row, one integer) into *out. */
static int scalar_int(PGconn *conn, const char *sql, int n, const char *const *params, const char *what, int64_t *out)
{
    PGresult *res = db_params(conn, sql, n, params, PGRES_TUPLES_OK, what);
    if (!res)
        return RD_ERR;
    *out = cell_id(res, 0, 0);
    PQclear(res);
    return RD_OK;
}

int store_deliveries_prune(PGconn *conn, int keep_days, int64_t *n)
{
    char keep[40];
    snprintf(keep, sizeof keep, "%d days", keep_days);
    const char *params[1] = {keep};
    return scalar_int(conn, "SELECT rd_deliveries_prune($1::interval)", 1, params, "deliveries prune", n);
}

int store_status_sweep(PGconn *conn, int64_t tenant_id, int *changes)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *params[1] = {tid};
    int64_t n = 0;
    int rc = scalar_int(conn, "SELECT rd_status_sweep($1)", 1, params, "status sweep", &n);
    *changes = (int)n;
    return rc;
}

int store_status_tenants(PGconn *conn, int64_t **ids)
{
    return db_query_ids(conn, "status_tenants", 0, NULL, ids);
}
