/* webhooks_store.c - SQL for platform webhooks: delivery ids, the per-order lock and Shopify
 * refunds (migrations/001_baseline.sql), as prepared statements.
 *
 * An order's refunded amount is always the capped sum of its rows in webhook_refunds,
 * whichever of orders/updated and refunds/create brought them and in whatever order they came;
 * the handler (src/api/webhooks.c) decides the flow, this file only runs the statements. */
#include "retentiond/store/webhooks_store.h"

#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_webhooks_register(void)
{
    db_register_statement("secret_get",
        "SELECT t.tenant_id, t.name, t.currency, s.secret, "
        "CASE WHEN s.rotated_at > now() - interval '1 hour' THEN s.previous_secret END "
        "FROM tenants t JOIN webhook_secrets s USING (tenant_id) WHERE t.name = $1 AND s.platform = $2", 2);
    db_register_statement("wh_delivery",
        "INSERT INTO webhook_deliveries (tenant_id, platform, delivery_id, topic) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING", 4);
    /* serialises every write about one order (its refunds and its state) whatever the topic */
    db_register_statement("wh_order_lock",
        "SELECT pg_advisory_xact_lock(hashtextextended('wh:' || $1 || ':' || $2, 0))", 2);
    db_register_statement("wh_refund_add",
        "INSERT INTO webhook_refunds AS r (tenant_id, order_id, refund_id, amount, shop_amount, refunded_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, order_id, refund_id) DO UPDATE "
        "SET shop_amount = EXCLUDED.shop_amount WHERE r.shop_amount IS NULL", 6);
    /* refunded and shop_refunded of an order of total $3 / shop total $4: the capped sums; a
     * refund without shop money is converted at the order's own ratio */
    db_register_statement("wh_refund_sum",
        "SELECT least($3::numeric, coalesce(sum(amount), 0))::text, "
        "least($4::numeric, coalesce(sum(coalesce(shop_amount, CASE WHEN $3::numeric > 0 "
        "THEN round(amount * $4::numeric / $3::numeric, scale($4::numeric)) END)), 0))::text "
        "FROM webhook_refunds WHERE tenant_id = $1 AND order_id = $2", 4);
    /* the stored order, with updated_at advanced to $3 (NULL: now) when that is later */
    db_register_statement("wh_order_get",
        "SELECT customer_id, placed_at::text, greatest(updated_at, coalesce($3::timestamptz, now()))::text, "
        "currency, total::text, refunded::text, shop_total::text, shop_refunded::text, status, source, test "
        "FROM orders WHERE tenant_id = $1 AND order_id = $2 FOR UPDATE", 3);
}

/* Runs a prepared statement; NULL (after logging) unless it returned `want`. */
static PGresult *exec(PGconn *conn, const char *stmt, int n, const char *const *params, ExecStatusType want)
{
    PGresult *res = PQexecPrepared(conn, stmt, n, params, NULL, NULL, 0);
    if (PQresultStatus(res) != want) {
        db_log_error(res, conn, stmt);
        PQclear(res);
        return NULL;
    }
    return res;
}

static int exec_ok(PGconn *conn, const char *stmt, int n, const char *const *params, ExecStatusType want)
{
    PGresult *res = exec(conn, stmt, n, params, want);
    PQclear(res);
    return res ? RD_OK : RD_ERR;
}

int store_webhook_delivery_record(PGconn *conn, int64_t tenant_id, const char *platform,
                                  const char *delivery_id, const char *topic)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *p[4] = {tid, platform, delivery_id, topic ? topic : ""};
    PGresult *res = exec(conn, "wh_delivery", 4, p, PGRES_COMMAND_OK);
    if (!res)
        return RD_ERR;
    bool seen = strcmp(PQcmdTuples(res), "0") == 0;
    PQclear(res);
    return seen ? 0 : 1;
}

int store_webhook_order_lock(PGconn *conn, int64_t tenant_id, const char *order_id)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *p[2] = {tid, order_id};
    return exec_ok(conn, "wh_order_lock", 2, p, PGRES_TUPLES_OK);
}

int store_webhook_refund_add(PGconn *conn, int64_t tenant_id, const char *order_id, const char *refund_id,
                             const char *amount, const char *shop_amount, const char *refunded_at)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *p[6] = {tid, order_id, refund_id, amount, shop_amount, refunded_at};
    return exec_ok(conn, "wh_refund_add", 6, p, PGRES_COMMAND_OK);
}

int store_webhook_refund_sum(PGconn *conn, int64_t tenant_id, rd_order *o)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *p[4] = {tid, o->order_id, o->total, o->shop_total};
    PGresult *res = exec(conn, "wh_refund_sum", 4, p, PGRES_TUPLES_OK);
    if (!res)
        return RD_ERR;
    free(o->refunded);
    free(o->shop_refunded);
    o->refunded = xstrdup(PQgetvalue(res, 0, 0));
    o->shop_refunded = xstrdup(PQgetvalue(res, 0, 1));
    PQclear(res);
    return RD_OK;
}

/* The static name for a stored source, so rd_order.source never points into a result. */
static const char *static_source(const char *s)
{
    static const char *const names[] = {"api", "shopify", "woocommerce", "import"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0)
            return names[i];
    return "api";
}

int store_webhook_order_get(PGconn *conn, int64_t tenant_id, const char *order_id, const char *at,
                            rd_order *out)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *p[3] = {tid, order_id, at};
    PGresult *res = exec(conn, "wh_order_get", 3, p, PGRES_TUPLES_OK);
    if (!res)
        return RD_ERR;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    *out = (rd_order){
        .order_id = xstrdup(order_id), .customer_id = xstrdup(PQgetvalue(res, 0, 0)),
        .placed_at = xstrdup(PQgetvalue(res, 0, 1)), .updated_at = xstrdup(PQgetvalue(res, 0, 2)),
        .currency = xstrdup(PQgetvalue(res, 0, 3)), .total = xstrdup(PQgetvalue(res, 0, 4)),
        .refunded = xstrdup(PQgetvalue(res, 0, 5)), .shop_total = xstrdup(PQgetvalue(res, 0, 6)),
        .shop_refunded = xstrdup(PQgetvalue(res, 0, 7)), .status = xstrdup(PQgetvalue(res, 0, 8)),
        .source = static_source(PQgetvalue(res, 0, 9)), .test = PQgetvalue(res, 0, 10)[0] == 't',
    };
    PQclear(res);
    return 1;
}
