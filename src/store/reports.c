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
    db_register_statement("rfm_refresh", "SELECT rd_rfm_ensure($1, interval '4 minutes')", 1);
    db_register_statement("stage_history_compact", "SELECT rd_stage_history_compact($1)", 1);
    db_register_statement("report_changes_prune", "SELECT rd_report_changes_prune()", 0);
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
