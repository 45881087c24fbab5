/* clv_store.c - predictive CLV in PostgreSQL: purchase summaries, fitted models, predictions.
 *
 * The per-customer summary (x, t_x, T, mbar) comes from rd_clv_sample (sql/clv.sql): the
 * rollup for customers whose orders all precede as_of, their orders otherwise; one row per
 * customer crosses the wire, never every order. The
 * predictions of a fit replace the tenant's previous ones in the same transaction as the
 * model row, through INSERT ... SELECT FROM unnest(arrays) in batches of PRED_BATCH rows: one
 * round trip per batch, and readers never see a model without its predictions. */
#include "retentiond/store/clv_store.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRED_BATCH 10000

void store_clv_register(void)
{
    /* a date as_of is the end of that local day, inclusive (lifetimes' observation_period_end) */
    db_register_statement("clv_as_of",
                          "SELECT to_json(coalesce(rd_param_instant($1, rd_tenant_zone($2), true), now()))#>>'{}'", 2);
    db_register_statement("clv_sample", "SELECT customer_id, x, t_x, \"T\", mbar FROM rd_clv_sample($1, $2)", 2);
    db_register_statement("clv_lock", "SELECT pg_advisory_xact_lock(1380, ($1::bigint % 2147483647)::int)", 1);
    /* fitted_at is written as JSON outside the INSERT: Citus refuses a non-immutable function
     * (to_json of a timestamptz) in RETURNING */
    db_register_statement("clv_model_insert",
        "WITH m AS (INSERT INTO clv_models (tenant_id, fitted_at, as_of, sample_size, repeat_size, r, alpha, a, b, "
        "                                   bgnbd_loglik, p, q, v, gg_loglik, fit_ms) "
        "           VALUES ($1, now(), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
        "           RETURNING fitted_at) "
        "SELECT to_json(m.fitted_at)#>>'{}' FROM m",
        14);
    db_register_statement("clv_pred_delete", "DELETE FROM customer_predictions WHERE tenant_id = $1", 1);
    db_register_statement("clv_pred_insert",
        "INSERT INTO customer_predictions (tenant_id, customer_id, fitted_at, p_alive, expected_orders, predicted_clv) "
        "SELECT $1, u.id, $2, u.pa, u.eo, u.clv "
        "FROM unnest($3::text[], $4::float8[], $5::float8[], $6::float8[]) AS u(id, pa, eo, clv)",
        6);
    db_register_statement("clv_latest",
        "SELECT to_json(fitted_at)#>>'{}', to_json(as_of)#>>'{}', sample_size, repeat_size, r, alpha, a, b, "
        "       bgnbd_loglik, p, q, v, gg_loglik, fit_ms "
        "FROM clv_models WHERE tenant_id = $1 ORDER BY fitted_at DESC LIMIT 1",
        1);
    db_register_statement("clv_distribution",
        "SELECT count(*), to_json(max(fitted_at))#>>'{}', sum(predicted_clv), avg(predicted_clv), "
        "       min(predicted_clv), "
        "       percentile_cont(0.10) WITHIN GROUP (ORDER BY predicted_clv), "
        "       percentile_cont(0.25) WITHIN GROUP (ORDER BY predicted_clv), "
        "       percentile_cont(0.50) WITHIN GROUP (ORDER BY predicted_clv), "
        "       percentile_cont(0.75) WITHIN GROUP (ORDER BY predicted_clv), "
        "       percentile_cont(0.90) WITHIN GROUP (ORDER BY predicted_clv), "
        "       percentile_cont(0.99) WITHIN GROUP (ORDER BY predicted_clv), "
        "       max(predicted_clv), avg(p_alive), percentile_cont(0.50) WITHIN GROUP (ORDER BY p_alive), "
        "       count(*) FILTER (WHERE p_alive < 0.5), sum(expected_orders), avg(expected_orders) "
        "FROM customer_predictions WHERE tenant_id = $1",
        1);
    db_register_statement("clv_histogram", "SELECT * FROM rd_clv_histogram($1, $2)", 2);
    db_register_statement("clv_tenants", "SELECT tenant_id FROM tenants ORDER BY tenant_id", 0);
}

/* Runs a prepared statement expecting rows; logs and returns NULL on failure. */
static PGresult *query(PGconn *conn, const char *stmt, int n, const char *const *params)
{
    PGresult *res = PQexecPrepared(conn, stmt, n, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        db_log_error(res, conn, stmt);
        PQclear(res);
        return NULL;
    }
    return res;
}

static double field_double(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NAN : strtod(PQgetvalue(res, row, col), NULL);
}

void clv_sample_free(clv_sample *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->ids[i]);
    free(s->ids);
    free(s->rft);
    free(s->mbar);
    free(s->x);
    memset(s, 0, sizeof *s);
}

int store_clv_load_sample(PGconn *conn, int64_t tenant_id, const char *as_of, clv_sample *out)
{
    memset(out, 0, sizeof *out);
    char tid[24];
    db_id_text(tid, tenant_id);
    PGresult *res = query(conn, "clv_as_of", 2, (const char *const[]){as_of, tid});
    if (!res)
        return RD_ERR;
    rd_strlcpy(out->as_of, PQgetvalue(res, 0, 0), sizeof out->as_of);
    PQclear(res);

    res = query(conn, "clv_sample", 2, (const char *const[]){tid, out->as_of});
    if (!res)
        return RD_ERR;
    size_t n = (size_t)PQntuples(res);
    out->n = n;
    out->ids = xcalloc(n ? n : 1, sizeof *out->ids);
    out->rft = xcalloc(n ? n : 1, sizeof *out->rft);
    out->mbar = xcalloc(n ? n : 1, sizeof *out->mbar);
    out->x = xcalloc(n ? n : 1, sizeof *out->x);
    for (size_t i = 0; i < n; i++) {
        int r = (int)i;
        out->ids[i] = xstrdup(PQgetvalue(res, r, 0));
        out->rft[i] = (clv_rft){field_double(res, r, 1), field_double(res, r, 2), field_double(res, r, 3)};
        out->mbar[i] = field_double(res, r, 4);
        out->x[i] = out->rft[i].x;
    }
    PQclear(res);
    return RD_OK;
}

/* Appends a PostgreSQL array element: a double-quoted string with " and \ escaped. */
static void array_text(buf *b, const char *s)
{
    buf_puts(b, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_puts(b, "\\");
        buf_append(b, p, 1);
    }
    buf_puts(b, "\"");
}

/* Appends a finite double (non-finite values, which the domain never returns, become 0). */
static void array_double(buf *b, double v)
{
    buf_printf(b, "%.17g", isfinite(v) ? v : 0.0);
}

static int insert_batch(PGconn *conn, const char *tid, const char *fitted_at, const clv_sample *s,
                        const clv_predictions *pred, size_t from, size_t to)
{
    buf ids = {0}, pa = {0}, eo = {0}, clv = {0};
    buf_puts(&ids, "{");
    buf_puts(&pa, "{");
    buf_puts(&eo, "{");
    buf_puts(&clv, "{");
    for (size_t i = from; i < to; i++) {
        const char *sep = i > from ? "," : "";
        buf_puts(&ids, sep);
        buf_puts(&pa, sep);
        buf_puts(&eo, sep);
        buf_puts(&clv, sep);
        array_text(&ids, s->ids[i]);
        array_double(&pa, pred->p_alive[i]);
        array_double(&eo, pred->expected_orders[i]);
        array_double(&clv, pred->predicted_clv[i]);
    }
    buf_puts(&ids, "}");
    buf_puts(&pa, "}");
    buf_puts(&eo, "}");
    buf_puts(&clv, "}");
    PGresult *res = query(conn, "clv_pred_insert", 6,
                          (const char *const[]){tid, fitted_at, ids.data, pa.data, eo.data, clv.data});
    buf_free(&ids);
    buf_free(&pa);
    buf_free(&eo);
    buf_free(&clv);
    if (!res)
        return RD_ERR;
    PQclear(res);
    return RD_OK;
}

static void param_double(char out[32], double v)
{
    if (isfinite(v))
        snprintf(out, 32, "%.17g", v);
    else
        out[0] = '\0';
}

int store_clv_save(PGconn *conn, int64_t tenant_id, clv_model_row *m, const clv_sample *s,
                   const clv_predictions *pred)
{
    char tid[24], sample[16], repeat[16], num[10][32];
    db_id_text(tid, tenant_id);
    snprintf(sample, sizeof sample, "%d", m->sample_size);
    snprintf(repeat, sizeof repeat, "%d", m->repeat_size);
    double values[10] = {m->bg.r, m->bg.alpha, m->bg.a, m->bg.b, m->bg.loglik,
                         m->gg.p, m->gg.q, m->gg.v, m->gg.loglik, m->fit_ms};
    const char *params[14] = {tid, m->as_of, sample, repeat};
    for (int i = 0; i < 10; i++) {
        param_double(num[i], values[i]);
        params[4 + i] = num[i][0] ? num[i] : NULL;
    }

    if (db_exec(conn, "BEGIN", "clv save") != RD_OK)
        return RD_ERR;
    PGresult *res = query(conn, "clv_lock", 1, (const char *const[]){tid});
    if (!res)
        goto failed;
    PQclear(res);
    res = query(conn, "clv_model_insert", 14, params);
    if (!res)
        goto failed;
    rd_strlcpy(m->fitted_at, PQgetvalue(res, 0, 0), sizeof m->fitted_at);
    PQclear(res);
    res = query(conn, "clv_pred_delete", 1, (const char *const[]){tid});
    if (!res)
        goto failed;
    PQclear(res);
    for (size_t from = 0; from < s->n; from += PRED_BATCH) {
        size_t to = from + PRED_BATCH < s->n ? from + PRED_BATCH : s->n;
        if (insert_batch(conn, tid, m->fitted_at, s, pred, from, to) != RD_OK)
            goto failed;
    }
    if (db_exec(conn, "COMMIT", "clv save") != RD_OK)
        goto failed;
    return RD_OK;

failed:
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE)
        db_exec(conn, "ROLLBACK", "clv save rollback");
    return RD_ERR;
}

int store_clv_latest(PGconn *conn, int64_t tenant_id, clv_model_row *out)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    PGresult *res = query(conn, "clv_latest", 1, (const char *const[]){tid});
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    store_clv_model_from_row(res, 0, 0, out);
    PQclear(res);
    return 1;
}

void store_clv_model_from_row(const PGresult *res, int row, int col, clv_model_row *out)
{
    memset(out, 0, sizeof *out);
    rd_strlcpy(out->fitted_at, PQgetvalue(res, row, col), sizeof out->fitted_at);
    rd_strlcpy(out->as_of, PQgetvalue(res, row, col + 1), sizeof out->as_of);
    out->sample_size = atoi(PQgetvalue(res, row, col + 2));
    out->repeat_size = atoi(PQgetvalue(res, row, col + 3));
    out->bg = (clv_bgnbd){field_double(res, row, col + 4), field_double(res, row, col + 5),
                          field_double(res, row, col + 6), field_double(res, row, col + 7),
                          field_double(res, row, col + 8), 0};
    out->gg = (clv_gg){field_double(res, row, col + 9), field_double(res, row, col + 10),
                       field_double(res, row, col + 11), field_double(res, row, col + 12), 0};
    out->fit_ms = field_double(res, row, col + 13);
}

/* Columns of clv_distribution. */
enum { D_COUNT, D_FITTED_AT, D_SUM, D_MEAN, D_MIN, D_PERCENTILES, D_MAX = D_PERCENTILES + 6, D_P_ALIVE_MEAN,
       D_P_ALIVE_P50, D_BELOW, D_EXPECTED_SUM, D_EXPECTED_MEAN, D_COLUMNS };

int store_clv_distribution(PGconn *conn, int64_t tenant_id, clv_distribution *out)
{
    memset(out, 0, sizeof *out);
    char tid[24];
    db_id_text(tid, tenant_id);
    PGresult *res = query(conn, "clv_distribution", 1, (const char *const[]){tid});
    if (!res)
        return RD_ERR;
    if (PQntuples(res) != 1 || PQnfields(res) != D_COLUMNS) {
        db_log_error(res, conn, "clv_distribution");
        PQclear(res);
        return RD_ERR;
    }
    out->customers = strtoll(PQgetvalue(res, 0, D_COUNT), NULL, 10);
    if (out->customers > 0) {
        rd_strlcpy(out->fitted_at, PQgetvalue(res, 0, D_FITTED_AT), sizeof out->fitted_at);
        out->clv_sum = field_double(res, 0, D_SUM);
        out->clv_mean = field_double(res, 0, D_MEAN);
        out->clv_min = field_double(res, 0, D_MIN);
        out->clv_max = field_double(res, 0, D_MAX);
        for (int i = 0; i < 6; i++)
            out->clv_percentiles[i] = field_double(res, 0, D_PERCENTILES + i);
        out->p_alive_mean = field_double(res, 0, D_P_ALIVE_MEAN);
        out->p_alive_p50 = field_double(res, 0, D_P_ALIVE_P50);
        out->expected_orders_sum = field_double(res, 0, D_EXPECTED_SUM);
        out->expected_orders_mean = field_double(res, 0, D_EXPECTED_MEAN);
    }
    out->p_alive_below_half = strtoll(PQgetvalue(res, 0, D_BELOW), NULL, 10);
    PQclear(res);
    char bins[8];
    snprintf(bins, sizeof bins, "%d", STORE_CLV_HISTOGRAM_BINS);
    res = query(conn, "clv_histogram", 2, (const char *const[]){tid, bins});
    if (!res)
        return RD_ERR;
    if (PQnfields(res) != 4 || PQntuples(res) > STORE_CLV_HISTOGRAM_BINS + 1) {
        db_log_error(res, conn, "clv_histogram");
        PQclear(res);
        return RD_ERR;
    }
    out->histogram_bins = PQntuples(res);
    for (int i = 0; i < out->histogram_bins; i++) {
        out->histogram[i].lower = field_double(res, i, 0);
        out->histogram[i].upper = field_double(res, i, 1);
        out->histogram[i].customers = strtoll(PQgetvalue(res, i, 2), NULL, 10);
        out->histogram[i].overflow = strcmp(PQgetvalue(res, i, 3), "t") == 0;
    }
    PQclear(res);
    return RD_OK;
}

int store_clv_tenants(PGconn *conn, int64_t **ids)
{
    return db_query_ids(conn, "clv_tenants", 0, NULL, ids);
}
