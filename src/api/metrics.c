/* metrics.c - GET /v1/metrics/summary, /retention, /cohorts, /ladder.
 *
 * Each report is one statement of the store returning one JSON document (store/reports.c,
 * sql/reports.sql, sql/ladder.sql), except that the summary, retention and cohorts are computed from
 * the tenant's report snapshot when it has one (store/report_snapshot.c); the handler validates the query parameters, and for the summary adds
 * the ratios with the null-on-zero rule (src/domain/metrics.c). */
#include "retentiond/api/api.h"

#include "retentiond/domain/metrics.h"
#include "retentiond/domain/model.h"
#include "retentiond/store/report_snapshot.h"
#include "retentiond/store/reports.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a job that runs one report returning one json text ---- */

typedef struct {
    const char *report;
    char *params[8];
    int nparams;
    char *result;
    void (*finish)(http_req *rq, json_t *doc);
} query_ctx;

static void query_ctx_free(void *p)
{
    query_ctx *q = p;
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i]);
    free(q->result);
    free(q);
}

static int query_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    query_ctx *q = rq->ctx;
    free(q->result);
    q->result = NULL;
    int r = report_snapshot_answer(conn, q->report, (const char *const *)q->params, &q->result);
    if (r != REPORT_SNAPSHOT_SKIP)
        return r;
    return store_metrics_report(conn, q->report, (const char *const *)q->params, &q->result);
}

static int query_after(http_req *rq, db_done_status st)
{
    query_ctx *q = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    json_t *doc = q->result ? json_loads(q->result, JSON_DECODE_ANY, NULL) : NULL;
    if (!doc) {
        http_reply_problem(rq, 404, "Not Found", "nothing to report", NULL);
        return HTTP_REPLIED;
    }
    if (q->finish)
        q->finish(rq, doc);
    else
        http_reply_json(rq, 200, doc);
    return HTTP_REPLIED;
}

static int query_json(http_req *rq, const char *report, const char *const *params, int nparams,
                      void (*finish)(http_req *rq, json_t *doc))
{
    query_ctx *q = xcalloc(1, sizeof *q);
    q->report = report;
    q->nparams = nparams;
    for (int i = 0; i < nparams; i++)
        q->params[i] = params[i] ? xstrdup(params[i]) : NULL;
    q->finish = finish;
    rq->ctx = q;
    rq->ctx_free = query_ctx_free;
    return http_defer(rq, DB_JOB_SOLO, 0, query_run, query_after);
}

/* ---- parameters ---- */

/* Validates from/to/window (and unit when `units` is given) into params[1..4]. params[0] is
 * the tenant id. Returns RD_OK or sets a 400 reply naming the fields. */
static int period_params(http_req *rq, char *params[5], const char *const *units, const char *unit_default)
{
    json_t *errors = json_array();
    const char *from = http_arg(rq, "from"), *to = http_arg(rq, "to"), *window = http_arg(rq, "window");
    if (from && rd_timestamp_check(from) != RD_OK)
        rd_error_add(errors, "from", "must be an RFC 3339 timestamp or a date YYYY-MM-DD");
    if (to && rd_timestamp_check(to) != RD_OK)
        rd_error_add(errors, "to", "must be an RFC 3339 timestamp or a date YYYY-MM-DD");
    if (from && to && rd_timestamp_check(from) == RD_OK && rd_timestamp_check(to) == RD_OK &&
        strlen(from) == strlen(to) && strcmp(from, to) >= 0)
        rd_error_add(errors, "to", "must be after from");
    if (window) {
        char *end;
        long w = strtol(window, &end, 10);
        if (*end || end == window || w < 1 || w > 3650)
            rd_error_add(errors, "window", "must be a whole number of days from 1 to 3650");
    }
    const char *unit = NULL;
    if (units) {
        const char *u = http_arg(rq, "period");
        unit = u ? NULL : unit_default;
        for (int i = 0; u && units[i]; i++)
            if (strcmp(u, units[i]) == 0)
                unit = units[i];
        if (!unit)
            rd_error_add(errors, "period", "must be week, month or quarter");
    }
    if (json_array_size(errors)) {
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", errors);
        return RD_ERR;
    }
    json_decref(errors);
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)rq->tenant.id);
    params[0] = xstrdup(tid);
    params[1] = from ? xstrdup(from) : NULL;
    params[2] = to ? xstrdup(to) : NULL;
    params[3] = window ? xstrdup(window) : NULL;
    params[4] = unit ? xstrdup(unit) : NULL;
    return RD_OK;
}

static int run_report(http_req *rq, const char *report, const char *const *units, const char *unit_default,
                      void (*finish)(http_req *, json_t *))
{
    char *params[5] = {0};
    if (period_params(rq, params, units, unit_default) != RD_OK)
        return HTTP_REPLIED;
    int r = query_json(rq, report, (const char *const *)params, 5, finish);
    for (int i = 0; i < 5; i++)
        free(params[i]);
    return r;
}

/* ---- summary ---- */

static double num(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static void summary_finish(http_req *rq, json_t *doc)
{
    json_t *d = json_object_get(doc, "data");
    metrics_counts c = {0};
    const char *from = json_string_value(json_object_get(doc, "from"));
    const char *to = json_string_value(json_object_get(doc, "to"));
    (void)from;
    (void)to;
    c.S = (int64_t)num(d, "S");
    c.E = (int64_t)num(d, "E");
    c.N = (int64_t)num(d, "N");
    c.lost = (int64_t)num(d, "lost");
    c.retained = (int64_t)num(d, "retained");
    c.reactivated = (int64_t)num(d, "reactivated");
    c.ordering = (int64_t)num(d, "ordering");
    c.repeat_ordering = (int64_t)num(d, "repeat_ordering");
    c.returning = (int64_t)num(d, "returning");
    c.orders = (int64_t)num(d, "orders");
    c.revenue = num(d, "revenue");
    c.returning_revenue = num(d, "returning_revenue");
    c.top20_revenue = num(d, "top20_revenue");
    const json_t *acq = json_object_get(d, "acquisition_spend"), *ret = json_object_get(d, "retention_spend");
    c.has_spend = !json_is_null(acq) || !json_is_null(ret);
    c.acquisition_spend = json_number_value(acq);
    c.retention_spend = json_number_value(ret);
    c.period_days = json_number_value(json_object_get(doc, "period_days"));

    json_t *out = json_object();
    json_object_set_new(out, "period", json_pack("{s:O, s:O, s:O}", "from", json_object_get(doc, "from"), "to",
                                                 json_object_get(doc, "to"), "window_days",
                                                 json_object_get(doc, "window_days")));
    json_t *counts = json_deep_copy(d);
    json_object_set_new(counts, "new", json_incref(json_object_get(d, "N")));
    json_object_set_new(counts, "active", json_incref(json_object_get(d, "E")));
    json_object_set(out, "counts", counts);
    json_decref(counts);
    json_object_set_new(out, "metrics", metrics_summary(&c));
    json_object_set_new(out, "notes", json_pack("[s, s]",
        "retention_rate = (E - N) / S and churn_rate = lost / S over customers active at from (S) and at to (E) "
        "in the activity window; reactivated customers count in E but not in S, so retention + churn = "
        "1 + (E - N - retained) / S and need not be 1",
        "ratios with a zero denominator are null; average_lifespan_years is capped at 10 (and flagged) when the "
        "annualised churn is at or below 10 %"));
    json_decref(doc);
    http_reply_json(rq, 200, out);
}

int api_metrics_summary(http_req *rq)
{
    return run_report(rq, "summary", NULL, NULL, summary_finish);
}

static const char *const retention_units[] = {"week", "month", "quarter", NULL};
static const char *const cohort_units[] = {"week", "month", "quarter", NULL};

static void retention_finish(http_req *rq, json_t *doc)
{
    json_t *rows = json_object_get(doc, "data");
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        double S = num(row, "S"), E = num(row, "E"), N = num(row, "N"), lost = num(row, "lost");
        json_object_set_new(row, "retention_rate", metrics_ratio(E - N, S));
        json_object_set_new(row, "churn_rate", metrics_ratio(lost, S));
    }
    json_t *out = json_pack("{s:O, s:O, s:O, s:s, s:O}", "from", json_object_get(doc, "from"), "to",
                            json_object_get(doc, "to"), "window_days", json_object_get(doc, "window_days"),
                            "period", http_arg(rq, "period") ? http_arg(rq, "period") : "month", "series", rows);
    json_decref(doc);
    http_reply_json(rq, 200, out);
}

int api_metrics_retention(http_req *rq)
{
    return run_report(rq, "retention", retention_units, "month", retention_finish);
}

static void rename_data(http_req *rq, json_t *doc, const char *name)
{
    json_object_set(doc, name, json_object_get(doc, "data"));
    json_object_del(doc, "data");
    const char *mode = http_arg(rq, "mode");
    if (mode)
        json_object_set_new(doc, "mode", json_string(mode));
    http_reply_json(rq, 200, doc);
}

static void cohorts_finish(http_req *rq, json_t *doc)
{
    json_object_set_new(doc, "period", json_string(http_arg(rq, "period") ? http_arg(rq, "period") : "month"));
    json_object_del(doc, "window_days");
    rename_data(rq, doc, "cohorts");
}

int api_metrics_cohorts(http_req *rq)
{
    const char *mode = http_arg(rq, "mode");
    if (mode && strcmp(mode, "active") != 0 && strcmp(mode, "on_or_after") != 0) {
        json_t *e = json_array();
        rd_error_add(e, "mode", "must be active or on_or_after");
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", e);
        return HTTP_REPLIED;
    }
    return run_report(rq, "cohorts", cohort_units, "month", cohorts_finish);
}

static void ladder_finish(http_req *rq, json_t *doc)
{
    json_t *data = json_object_get(doc, "data");
    json_t *stages = json_object_get(data, "stages");
    static const char *const rungs[] = {"suspect", "prospect", "customer", "client", "advocate"};
    json_t *ordered = json_array();
    for (int i = 0; i < 5; i++) {
        json_t *n = json_object_get(stages, rungs[i]);
        json_array_append_new(ordered, json_pack("{s:s, s:I}", "stage", rungs[i], "count",
                                                 (json_int_t)(n ? json_integer_value(n) : 0)));
    }
    json_t *out = json_pack("{s:O, s:O, s:o, s:O}", "from", json_object_get(doc, "from"), "to",
                            json_object_get(doc, "to"), "stages", ordered, "transitions",
                            json_object_get(data, "transitions"));
    json_decref(doc);
    http_reply_json(rq, 200, out);
}

int api_metrics_ladder(http_req *rq)
{
    return run_report(rq, "ladder", NULL, NULL, ladder_finish);
}
