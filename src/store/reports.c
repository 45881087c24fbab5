/* reports.c - prepared statements of the read side (see reports.h). */
#include "retentiond/store/reports.h"

#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Resolves the period: to = now, from = to - 12 months, window = the tenant's, by default. */
#define PERIOD_SQL(fn_call)                                                                     \
    "SELECT json_build_object('from', f, 'to', t_, 'window_days', w,"                          \
    " 'period_days', extract(epoch FROM t_ - f) / 86400, 'data', " fn_call ")::text "           \
    "FROM (SELECT coalesce($2::timestamptz, coalesce($3::timestamptz, now()) - interval '12 months') AS f," \
    "             coalesce($3::timestamptz, now()) AS t_,"                                     \
    "             coalesce($4::int, t.activity_window_days) AS w FROM tenants t WHERE t.tenant_id = $1) x"

void store_reports_register(void)
{
    db_register_statement("metrics_summary", PERIOD_SQL("rd_metrics_summary($1, f, t_, w)"), 4);
    db_register_statement("metrics_retention", PERIOD_SQL("rd_metrics_retention($1, f, t_, w, $5)"), 5);
    db_register_statement("metrics_cohorts", PERIOD_SQL("rd_metrics_cohorts($1, f, t_, $5)"), 5);
    db_register_statement("metrics_ladder", PERIOD_SQL("rd_metrics_ladder($1, f, t_)"), 4);
    db_register_statement("customer_profile", "SELECT * FROM rd_customer_profile_page($1, $2, $3)", 3);
    db_register_statement("rfm_refresh", "SELECT rd_rfm_ensure($1, interval '4 minutes')", 1);
    db_register_statement("stage_history_compact", "SELECT rd_stage_history_compact($1)", 1);
    db_register_statement("report_changes_prune", "SELECT rd_report_changes_prune()", 0);
    db_register_statement("customer_list",
        "SELECT rd_customer_list($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10::timestamptz, now()))::text", 10);
}

/* Runs a prepared statement; copies row 0's first columns (NULL stays NULL) into out[]. */
static int run(PGconn *conn, const char *stmt, int nparams, const char *const *params, char **out, int nout)
{
    for (int i = 0; i < nout; i++)
        out[i] = NULL;
    PGresult *res = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_log_error(res, conn, stmt);
        PQclear(res);
        return RD_ERR;
    }
    for (int i = 0; i < nout && PQntuples(res) > 0 && i < PQnfields(res); i++)
        if (!PQgetisnull(res, 0, i))
            out[i] = xstrdup(PQgetvalue(res, 0, i));
    PQclear(res);
    return RD_OK;
}

int store_metrics_report(PGconn *conn, const char *report, const char *const params[5], char **json)
{
    char stmt[32];
    snprintf(stmt, sizeof stmt, "metrics_%s", report);
    /* summary and ladder have no period unit */
    int n = strcmp(report, "summary") == 0 || strcmp(report, "ladder") == 0 ? 4 : 5;
    return run(conn, stmt, n, params, json, 1);
}

/* Columns of rd_customer_profile_page: the profile, the instant, the model (from column 2, in
 * the order store_clv_model_from_row reads), then x, t_x, T, mbar and the instant's epoch. */
enum { P_DOC, P_AS_OF, P_MODEL, P_X = P_MODEL + 14, P_TX, P_T, P_MBAR, P_EPOCH, P_COLUMNS };

int store_customer_profile(PGconn *conn, const char *tenant_id, const char *customer_id, const char *as_of,
                           profile_row *out)
{
    memset(out, 0, sizeof *out);
    const char *params[3] = {tenant_id, customer_id, as_of};
    PGresult *res = PQexecPrepared(conn, "customer_profile", 3, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != P_COLUMNS) {
        db_log_error(res, conn, "customer_profile");
        PQclear(res);
        return RD_ERR;
    }
    if (!PQgetisnull(res, 0, P_DOC))
        out->json = xstrdup(PQgetvalue(res, 0, P_DOC));
    out->as_of = xstrdup(PQgetvalue(res, 0, P_AS_OF));
    out->as_of_epoch = strtod(PQgetvalue(res, 0, P_EPOCH), NULL);
    out->has_model = !PQgetisnull(res, 0, P_MODEL);
    if (out->has_model)
        store_clv_model_from_row(res, 0, P_MODEL, &out->model);
    out->has_summary = !PQgetisnull(res, 0, P_X);
    if (out->has_summary) {
        out->rft = (clv_rft){strtod(PQgetvalue(res, 0, P_X), NULL), strtod(PQgetvalue(res, 0, P_TX), NULL),
                             strtod(PQgetvalue(res, 0, P_T), NULL)};
        out->mbar = strtod(PQgetvalue(res, 0, P_MBAR), NULL);
    }
    PQclear(res);
    return RD_OK;
}

void profile_row_free(profile_row *row)
{
    free(row->json);
    free(row->as_of);
    row->json = row->as_of = NULL;
}

int store_customer_list(PGconn *conn, const char *const params[10], char **json)
{
    return run(conn, "customer_list", 10, params, json, 1);
}

int store_rfm_refresh(PGconn *conn, int64_t tenant_id)
{
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    const char *params[1] = {tid};
    return run(conn, "rfm_refresh", 1, params, NULL, 0);
}

int store_stage_history_compact(PGconn *conn, int64_t tenant_id, int *days)
{
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    const char *params[1] = {tid};
    char *out;
    if (run(conn, "stage_history_compact", 1, params, &out, 1) != RD_OK)
        return RD_ERR;
    *days = out ? atoi(out) : 0;
    free(out);
    return RD_OK;
}

int store_report_changes_prune(PGconn *conn, int64_t *rows)
{
    char *out;
    if (run(conn, "report_changes_prune", 0, NULL, &out, 1) != RD_OK)
        return RD_ERR;
    *rows = out ? strtoll(out, NULL, 10) : 0;
    free(out);
    return RD_OK;
}
