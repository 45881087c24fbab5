/* customers.c - the per-customer reads (see customers.h): one statement each, whose columns
 * become struct fields; the strings stay in the PGresult the struct keeps. */
#include "retentiond/store/customers.h"

#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_customers_register(void)
{
    /* as_of: a date is the end of that local day (rd_param_instant, sql/rules.sql) */
    db_register_statement("customer_profile",
                          "SELECT * FROM rd_customer_profile_page($1, $2, rd_param_instant($3, rd_tenant_zone($1), true))", 3);
    db_register_statement("customer_list",
        "SELECT * FROM rd_customer_list($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce(rd_param_instant($10, rd_tenant_zone($1), true), now()), $11, $12)", 12);
    db_register_statement("customer_exists", "SELECT rd_customer_exists($1, $2)", 2);
    db_register_statement("customer_orders", "SELECT * FROM rd_customer_orders($1, $2, $3, $4, $5)", 5);
    db_register_statement("customer_history", "SELECT * FROM rd_customer_history($1, $2)", 2);
    db_register_statement("rfm_grid", "SELECT * FROM rd_rfm_grid($1)", 1);
    db_register_statement("orders_span", "SELECT * FROM rd_orders_span($1)", 1);
}

static const char *text_at(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static int int_at(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : atoi(PQgetvalue(res, row, col));
}

static int64_t int64_at(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static double double_at(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NAN : strtod(PQgetvalue(res, row, col), NULL);
}

/* Runs a prepared statement expecting ncols columns; logs and returns NULL on failure. */
static PGresult *query(PGconn *conn, const char *stmt, int nparams, const char *const *params, int ncols)
{
    PGresult *res = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != ncols) {
        db_log_error(res, conn, stmt);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* ---- the profile ---- */

/* Columns of rd_customer_profile_page; the model's 14 from P_MODEL in the order
 * store_clv_model_from_row reads. */
enum {
    P_ID, P_EMAIL, P_CREATED, P_CHANNEL, P_REFERRED_BY, P_ATTRIBUTES, P_KNOWN, P_STAGE, P_COUNT, P_REVENUE,
    P_FIRST, P_LAST, P_FIRST_US, P_LAST_US, P_AVG_DAYS, P_DAYS_SINCE, P_EVENTS, P_FIRST_ENGAGED, P_LAST_ENGAGED,
    P_LAST_ADVOCACY, P_ADVOCACY_KIND, P_ACTIVITY_DAYS, P_ADVOCACY_DAYS, P_P_ALIVE_MIN, P_GAP_FACTOR,
    P_RFM_N, P_RFM_AT, P_RFM_R, P_RFM_F, P_RFM_M, P_SEGMENT, P_PRED_AT, P_PRED_P_ALIVE, P_PRED_EXPECTED,
    P_PRED_CLV, P_AS_OF, P_AS_OF_US, P_MODEL, P_X = P_MODEL + 14, P_TX, P_T, P_MBAR, P_COLUMNS
};

int store_customer_profile(PGconn *conn, int64_t tenant_id, const char *customer_id, const char *as_of,
                           customer_profile *out, bool *found)
{
    memset(out, 0, sizeof *out);
    *found = false;
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    const char *params[3] = {tid, customer_id, as_of};
    PGresult *res = query(conn, "customer_profile", 3, params, P_COLUMNS);
    if (!res)
        return RD_ERR;
    out->res = res;
    if (PQntuples(res) != 1)
        return RD_OK;
    *found = true;
    out->customer_id = text_at(res, 0, P_ID);
    out->email = text_at(res, 0, P_EMAIL);
    out->created_at = text_at(res, 0, P_CREATED);
    out->channel = text_at(res, 0, P_CHANNEL);
    out->referred_by = text_at(res, 0, P_REFERRED_BY);
    out->attributes = text_at(res, 0, P_ATTRIBUTES);
    out->known = strcmp(PQgetvalue(res, 0, P_KNOWN), "t") == 0;
    out->stage = text_at(res, 0, P_STAGE);
    out->order_count = int_at(res, 0, P_COUNT);
    out->net_revenue = text_at(res, 0, P_REVENUE);
    out->first_order_at = text_at(res, 0, P_FIRST);
    out->last_order_at = text_at(res, 0, P_LAST);
    out->first_order_us = int64_at(res, 0, P_FIRST_US);
    out->last_order_us = int64_at(res, 0, P_LAST_US);
    out->avg_days_between_orders = text_at(res, 0, P_AVG_DAYS);
    out->days_since_last_order = text_at(res, 0, P_DAYS_SINCE);
    out->event_count = int_at(res, 0, P_EVENTS);
    out->first_engaged_at = text_at(res, 0, P_FIRST_ENGAGED);
    out->last_engaged_at = text_at(res, 0, P_LAST_ENGAGED);
    out->last_advocacy_at = text_at(res, 0, P_LAST_ADVOCACY);
    out->advocacy_kind = text_at(res, 0, P_ADVOCACY_KIND);
    out->settings.activity_window_days = int_at(res, 0, P_ACTIVITY_DAYS);
    out->settings.advocacy_window_days = int_at(res, 0, P_ADVOCACY_DAYS);
    out->settings.at_risk_p_alive = double_at(res, 0, P_P_ALIVE_MIN);
    out->settings.at_risk_gap_factor = double_at(res, 0, P_GAP_FACTOR);
    out->has_rfm = !PQgetisnull(res, 0, P_RFM_R);
    if (out->has_rfm) {
        out->rfm_n = int64_at(res, 0, P_RFM_N);
        out->rfm_computed_at = text_at(res, 0, P_RFM_AT);
        out->r = int_at(res, 0, P_RFM_R);
        out->f = int_at(res, 0, P_RFM_F);
        out->m = int_at(res, 0, P_RFM_M);
    }
    out->segment = text_at(res, 0, P_SEGMENT);
    out->has_prediction = !PQgetisnull(res, 0, P_PRED_AT);
    if (out->has_prediction) {
        out->prediction_fitted_at = text_at(res, 0, P_PRED_AT);
        out->prediction_p_alive = double_at(res, 0, P_PRED_P_ALIVE);
        out->prediction_expected_orders = double_at(res, 0, P_PRED_EXPECTED);
        out->prediction_clv = double_at(res, 0, P_PRED_CLV);
    }
    out->as_of = text_at(res, 0, P_AS_OF);
    out->as_of_us = int64_at(res, 0, P_AS_OF_US);
    out->has_model = !PQgetisnull(res, 0, P_MODEL);
    if (out->has_model)
        store_clv_model_from_row(res, 0, P_MODEL, &out->model);
    out->has_summary = !PQgetisnull(res, 0, P_X);
    if (out->has_summary) {
        out->rft = (clv_rft){double_at(res, 0, P_X), double_at(res, 0, P_TX), double_at(res, 0, P_T)};
        out->mbar = double_at(res, 0, P_MBAR);
    }
    return RD_OK;
}

void customer_profile_free(customer_profile *p)
{
    PQclear(p->res);
    memset(p, 0, sizeof *p);
}

/* ---- a page of a list ---- */

/* Columns of rd_customer_list. */
enum {
    L_ID, L_KEY, L_EMAIL, L_STAGE, L_STATUS, L_COUNT, L_REVENUE, L_LAST, L_R, L_F, L_M, L_SEGMENT, L_P_ALIVE,
    L_EXPECTED, L_CLV, L_COLUMNS
};

/* Fills out->items from res's rows (columns of rd_customer_list); out keeps res. */
static void page_from_rows(PGresult *res, customer_page *out)
{
    out->res = res;
    out->count = PQntuples(res);
    out->items = xcalloc(out->count ? (size_t)out->count : 1, sizeof *out->items);
    for (int i = 0; i < out->count; i++) {
        customer_list_item *it = &out->items[i];
        it->customer_id = text_at(res, i, L_ID);
        it->sort_key = text_at(res, i, L_KEY);
        it->email = text_at(res, i, L_EMAIL);
        it->stage = text_at(res, i, L_STAGE);
        it->status = text_at(res, i, L_STATUS);
        it->order_count = int_at(res, i, L_COUNT);
        it->net_revenue = text_at(res, i, L_REVENUE);
        it->last_order_at = text_at(res, i, L_LAST);
        it->has_rfm = !PQgetisnull(res, i, L_R);
        it->r = int_at(res, i, L_R);
        it->f = int_at(res, i, L_F);
        it->m = int_at(res, i, L_M);
        it->segment = text_at(res, i, L_SEGMENT);
        it->p_alive = text_at(res, i, L_P_ALIVE);
        it->expected_orders = text_at(res, i, L_EXPECTED);
        it->predicted_clv = text_at(res, i, L_CLV);
    }
}

/* A score filter's parameter: its digit in out, or NULL for none (0). */
static const char *score_param(char out[4], int score)
{
    if (score == 0)
        return NULL;
    snprintf(out, 4, "%d", score);
    return out;
}

int store_customer_page(PGconn *conn, const customer_page_query *q, customer_page *out)
{
    memset(out, 0, sizeof *out);
    char tid[24], lim[16], r[4], f[4];
    snprintf(tid, sizeof tid, "%lld", (long long)q->tenant_id);
    snprintf(lim, sizeof lim, "%d", q->limit);
    const char *params[12] = {tid, q->stage, q->status, q->segment, q->min_p_alive, q->sort,
                              q->after_key, q->after_id, lim, q->as_of, score_param(r, q->r), score_param(f, q->f)};
    PGresult *res = query(conn, "customer_list", 12, params, L_COLUMNS);
    if (!res)
        return RD_ERR;
    page_from_rows(res, out);
    return RD_OK;
}

/* ---- the whole list, by a cursor ---- */

/* The scan without a limit: the rows of rd_customer_list in its order (its scan is the
 * reference the walks are tested against). */
static const char export_declare[] =
    "DECLARE customer_export NO SCROLL CURSOR FOR SELECT * FROM rd_customer_list_scan($1, $2, $3, $4, $5, $6, $7, $8,"
    " NULL, coalesce(rd_param_instant($9, rd_tenant_zone($1), true), now()), $10, $11)";

typedef struct {
    int (*each)(const customer_page *page, void *arg);
    void *arg;
} export_read;

static int export_fetch(const PGresult *res, void *arg)
{
    export_read *x = arg;
    if (PQnfields(res) != L_COLUMNS)
        return RD_ERR;
    customer_page page = {0};
    page_from_rows((PGresult *)res, &page);
    int rc = x->each(&page, x->arg);
    free(page.items); /* the result is db_cursor_read's */
    return rc;
}

int store_customer_list_stream(PGconn *conn, const customer_page_query *q, int rows,
                          int (*each)(const customer_page *page, void *arg), void *arg)
{
    char tid[24], r[4], f[4];
    db_id_text(tid, q->tenant_id);
    const char *params[11] = {tid, q->stage, q->status, q->segment, q->min_p_alive, q->sort, q->after_key,
                              q->after_id, q->as_of, score_param(r, q->r), score_param(f, q->f)};
    if (db_exec(conn, "BEGIN READ ONLY", "customer export") != RD_OK)
        return RD_ERR;
    export_read x = {each, arg};
    int rc = db_cursor_read(conn, "customer_export", export_declare, 11, NULL, params, NULL, NULL, rows, 0,
                            export_fetch, &x);
    if (rc == RD_ERR)
        return RD_ERR; /* the pool rolls back */
    return db_exec(conn, rc == RD_OK ? "COMMIT" : "ROLLBACK", "customer export end");
}

void customer_page_free(customer_page *p)
{
    PQclear(p->res);
    free(p->items);
    memset(p, 0, sizeof *p);
}

/* ---- a customer's orders and rung history ---- */

/* Whether the customer exists: RD_OK with *found set, or RD_ERR. */
static int customer_exists(PGconn *conn, const char *tid, const char *customer_id, bool *found)
{
    PGresult *res = query(conn, "customer_exists", 2, (const char *const[]){tid, customer_id}, 1);
    if (!res)
        return RD_ERR;
    *found = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return RD_OK;
}

/* Columns of rd_customer_orders. */
enum { O_ID, O_PLACED, O_STATUS, O_CURRENCY, O_TOTAL, O_REFUNDED, O_SHOP_TOTAL, O_SHOP_REFUNDED, O_NET,
       O_QUALIFYING, O_SOURCE, O_COLUMNS };

int store_customer_orders(PGconn *conn, int64_t tenant_id, const char *customer_id, const char *after_at,
                          const char *after_id, int limit, customer_orders *out, bool *found)
{
    memset(out, 0, sizeof *out);
    char tid[24], lim[16];
    db_id_text(tid, tenant_id);
    snprintf(lim, sizeof lim, "%d", limit);
    if (customer_exists(conn, tid, customer_id, found) != RD_OK)
        return RD_ERR;
    if (!*found)
        return RD_OK;
    const char *params[5] = {tid, customer_id, after_at, after_id, lim};
    PGresult *res = query(conn, "customer_orders", 5, params, O_COLUMNS);
    if (!res)
        return RD_ERR;
    out->res = res;
    out->count = PQntuples(res);
    out->items = xcalloc(out->count ? (size_t)out->count : 1, sizeof *out->items);
    for (int i = 0; i < out->count; i++) {
        customer_order *o = &out->items[i];
        o->order_id = text_at(res, i, O_ID);
        o->placed_at = text_at(res, i, O_PLACED);
        o->status = text_at(res, i, O_STATUS);
        o->currency = text_at(res, i, O_CURRENCY);
        o->total = text_at(res, i, O_TOTAL);
        o->refunded = text_at(res, i, O_REFUNDED);
        o->shop_total = text_at(res, i, O_SHOP_TOTAL);
        o->shop_refunded = text_at(res, i, O_SHOP_REFUNDED);
        o->net_value = text_at(res, i, O_NET);
        o->qualifying = strcmp(PQgetvalue(res, i, O_QUALIFYING), "t") == 0;
        o->source = text_at(res, i, O_SOURCE);
    }
    return RD_OK;
}

void customer_orders_free(customer_orders *o)
{
    PQclear(o->res);
    free(o->items);
    memset(o, 0, sizeof *o);
}

int store_customer_history(PGconn *conn, int64_t tenant_id, const char *customer_id, customer_history *out,
                           bool *found)
{
    memset(out, 0, sizeof *out);
    char tid[24];
    db_id_text(tid, tenant_id);
    if (customer_exists(conn, tid, customer_id, found) != RD_OK)
        return RD_ERR;
    if (!*found)
        return RD_OK;
    PGresult *res = query(conn, "customer_history", 2, (const char *const[]){tid, customer_id}, 3);
    if (!res)
        return RD_ERR;
    out->res = res;
    out->count = PQntuples(res);
    out->items = xcalloc(out->count ? (size_t)out->count : 1, sizeof *out->items);
    for (int i = 0; i < out->count; i++)
        out->items[i] = (rung_change){text_at(res, i, 0), text_at(res, i, 1), text_at(res, i, 2)};
    return RD_OK;
}

void customer_history_free(customer_history *h)
{
    PQclear(h->res);
    free(h->items);
    memset(h, 0, sizeof *h);
}

/* ---- the R x F grid ---- */

int store_rfm_grid(PGconn *conn, int64_t tenant_id, rfm_grid *out)
{
    memset(out, 0, sizeof *out);
    char tid[24];
    db_id_text(tid, tenant_id);
    PGresult *res = query(conn, "rfm_grid", 1, (const char *const[]){tid}, 5);
    if (!res)
        return RD_ERR;
    if (PQntuples(res) != RFM_GRID_CELLS) {
        db_log_error(res, conn, "rfm_grid");
        PQclear(res);
        return RD_ERR;
    }
    out->res = res;
    for (int i = 0; i < RFM_GRID_CELLS; i++) {
        rfm_cell *c = &out->cells[i];
        c->r = int_at(res, i, 0);
        c->f = int_at(res, i, 1);
        c->customers = int64_at(res, i, 2);
        c->mean_net_revenue = text_at(res, i, 3);
        c->segment = text_at(res, i, 4);
        out->customers += c->customers;
    }
    res = query(conn, "orders_span", 1, (const char *const[]){tid}, 2);
    if (!res)
        return RD_ERR;
    out->span = res;
    out->first_order_at = text_at(res, 0, 0);
    out->last_order_at = text_at(res, 0, 1);
    return RD_OK;
}

void rfm_grid_free(rfm_grid *g)
{
    PQclear(g->res);
    PQclear(g->span);
    memset(g, 0, sizeof *g);
}
