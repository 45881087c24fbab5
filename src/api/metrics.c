/* metrics.c - GET /v1/metrics/summary, /retention, /cohorts, /ladder.
 *
 * The store answers with C structs: the summary, retention series and cohort matrix computed
 * by domain/reports.c over the tenant's report snapshot or its streamed rows
 * (store/reports.c), the ladder from its SQL function. Here the query parameters are
 * validated, the summary's ratios added with the null-on-zero rule (src/domain/metrics.c), and
 * each reply's JSON built: this is the only place that knows its keys. */
#include "retentiond/api/api.h"

#include "retentiond/domain/metrics.h"
#include "retentiond/domain/model.h"
#include "retentiond/domain/rules.h"
#include "retentiond/http/csv.h"
#include "retentiond/store/reports.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a job that runs one report ---- */

typedef struct query_ctx query_ctx;

/* A report's CSV (GET ...?format=csv): a record per row of its document, as rows(doc) lists
 * them (a new array of flat objects), in the columns named (NULL-terminated). */
typedef struct {
    const char *name;           /* of the attachment */
    const char *const *columns;
    json_t *(*rows)(const json_t *doc);
} csv_shape;

struct query_ctx {
    rs_report report;
    bool ladder;               /* the ladder rather than report */
    char *params[5];           /* tenant id, from, to, window, unit */
    const char *mode;          /* cohorts: mode=, echoed */
    char currency[4];          /* the tenant's, which the summary's amounts are in */
    store_segments seg;        /* breakdown and filters; their strings in seg_text */
    char *seg_text[1 + STORE_MAX_FILTERS * 2];
    int nseg_text;
    const char *breakdown_name;                  /* breakdown=, in seg_text */
    const char *filter_names[STORE_MAX_FILTERS]; /* each filter's query name, in seg_text */
    int status;                /* the store's answer: RD_OK or STORE_REPORT_* */
    store_period_report rep;
    store_ladder lad;
    /* the reply's document for one report (the whole, or an entry of a breakdown) */
    json_t *(*body)(const query_ctx *q, const store_period *p, const rs_result *r);
    const csv_shape *csv;      /* the report's CSV, when the request asked for it */
};

static void query_ctx_free(void *p)
{
    query_ctx *q = p;
    for (int i = 0; i < 5; i++)
        free(q->params[i]);
    for (int i = 0; i < q->nseg_text; i++)
        free(q->seg_text[i]);
    store_period_report_free(&q->rep);
    store_ladder_free(&q->lad);
    free(q);
}

static int query_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    query_ctx *q = rq->ctx;
    store_period_report_free(&q->rep);
    store_ladder_free(&q->lad);
    int r = q->ladder ? store_metrics_ladder(conn, (const char *const *)q->params, &q->lad)
                      : store_period_report_run(conn, q->report, (const char *const *)q->params, &q->seg, &q->rep);
    if (r == RD_ERR)
        return RD_ERR;
    q->status = r;
    return RD_OK;
}

static void ladder_reply(http_req *rq, const query_ctx *q);
static void report_reply(http_req *rq, const query_ctx *q);

static int query_after(http_req *rq, db_done_status st)
{
    query_ctx *q = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
    } else if (q->status == STORE_REPORT_NO_TENANT) {
        http_reply_problem(rq, 404, "Not Found", "nothing to report", NULL);
    } else if (q->status == STORE_REPORT_TOO_LONG) {
        json_t *errors = json_array();
        int max = q->report == RS_COHORTS ? RS_MAX_COHORT_PERIODS : RS_MAX_SERIES_PERIODS;
        rd_error_add(errors, "from", "from..to spans %d %ss; a %s report covers at most %d periods: "
                     "choose a later from or a longer period", q->rep.periods, q->params[4],
                     q->report == RS_COHORTS ? "cohort" : "retention", max);
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", errors);
    } else if (q->ladder) {
        ladder_reply(rq, q);
    } else {
        report_reply(rq, q);
    }
    return HTTP_REPLIED;
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

/* Collects the filters among the query's arguments (see segment_params). */
typedef struct {
    query_ctx *q;
    json_t *errors;
} filter_scan;

static void filter_arg(void *ctx, const char *key, const char *value)
{
    filter_scan *fs = ctx;
    query_ctx *q = fs->q;
    store_dim d;
    if (strcmp(key, "breakdown") == 0 || !segments_parse_dim(key, &d))
        return;
    if (q->seg.nfilters == STORE_MAX_FILTERS) {
        rd_error_add(fs->errors, key, "at most %d filters", STORE_MAX_FILTERS);
        return;
    }
    if (!value || !*value) {
        rd_error_add(fs->errors, key, "a filter needs a value");
        return;
    }
    if (d.dim == SEG_SOURCE && strcmp(value, "api") != 0 && strcmp(value, "shopify") != 0 &&
        strcmp(value, "woocommerce") != 0 && strcmp(value, "import") != 0) {
        rd_error_add(fs->errors, key, "must be api, shopify, woocommerce or import");
        return;
    }
    if (d.dim == SEG_FIRST_ORDER_MONTH &&
        (strlen(value) != 7 || value[4] != '-' || strspn(value, "0123456789") != 4 ||
         strspn(value + 5, "0123456789") != 2 || atoi(value + 5) < 1 || atoi(value + 5) > 12)) {
        rd_error_add(fs->errors, key, "must be a month YYYY-MM");
        return;
    }
    char *k = q->seg_text[q->nseg_text++] = xstrdup(key);
    q->seg_text[q->nseg_text++] = xstrdup(value);
    segments_parse_dim(k, &q->seg.filters[q->seg.nfilters]);
    q->filter_names[q->seg.nfilters] = k;
    q->seg.filter_values[q->seg.nfilters++] = q->seg_text[q->nseg_text - 1];
}

/* Validates breakdown= and the filters (channel=, source=, first_order_month=,
 * attribute:KEY=) into q->seg. Returns RD_OK or sets a 400 reply naming the fields. */
static int segment_params(http_req *rq, query_ctx *q)
{
    json_t *errors = json_array();
    const char *b = http_arg(rq, "breakdown");
    if (b) {
        char *name = q->seg_text[q->nseg_text++] = xstrdup(b);
        q->breakdown_name = name;
        if (segments_parse_dim(name, &q->seg.breakdown))
            q->seg.has_breakdown = true;
        else
            rd_error_add(errors, "breakdown", "must be channel, source, first_order_month or attribute:KEY "
                                              "(KEY 1 to 100 characters)");
    }
    filter_scan fs = {q, errors};
    http_args_each(rq, filter_arg, &fs);
    if (json_array_size(errors)) {
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", errors);
        return RD_ERR;
    }
    json_decref(errors);
    return RD_OK;
}

/* Validates the parameters and hands the report to a database worker; csv: the report's CSV
 * shape, when it has one (format= and Accept then choose). */
static int run_report(http_req *rq, rs_report report, bool ladder, const char *const *units,
                      json_t *(*body)(const query_ctx *, const store_period *, const rs_result *),
                      const csv_shape *csv)
{
    query_ctx *q = xcalloc(1, sizeof *q);
    http_format format = HTTP_FORMAT_JSON;
    json_t *errors = json_array();
    if (csv && http_reply_format(rq, &format, errors) != RD_OK) {
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", errors);
        query_ctx_free(q);
        return HTTP_REPLIED;
    }
    json_decref(errors);
    q->csv = format == HTTP_FORMAT_CSV ? csv : NULL;
    if (period_params(rq, q->params, units, "month") != RD_OK || (!ladder && segment_params(rq, q) != RD_OK)) {
        query_ctx_free(q);
        return HTTP_REPLIED;
    }
    q->report = report;
    q->ladder = ladder;
    q->body = body;
    q->mode = http_arg(rq, "mode");
    rd_strlcpy(q->currency, rq->tenant.currency, sizeof q->currency);
    rq->ctx = q;
    rq->ctx_free = query_ctx_free;
    return http_defer(rq, DB_JOB_SOLO, 0, query_run, query_after);
}

static json_t *money(rs_money v)
{
    return json_real(reports_money_value(v));
}

/* The instant at the frame's boundary i, as PostgreSQL wrote it. */
static json_t *bound(const store_period *p, int i)
{
    return json_string(p->bounds[i]);
}

/* The filters as the reply echoes them: {"channel": "email", ...}. */
static json_t *filters_json(const query_ctx *q)
{
    json_t *f = json_object();
    for (int i = 0; i < q->seg.nfilters; i++)
        json_object_set_new(f, q->filter_names[i], json_string(q->seg.filter_values[i]));
    return f;
}

/* The report as CSV (see csv_shape): split by a breakdown, each entry's records begin with
 * its value, in a first column named by the breakdown. Takes doc. */
static void report_csv(http_req *rq, const query_ctx *q, json_t *doc)
{
    const json_t *entries = q->seg.has_breakdown ? json_object_get(doc, "entries") : NULL;
    const char *const *columns = q->csv->columns;
    buf b = {0};
    if (entries)
        csv_field(&b, q->breakdown_name);
    for (int k = 0; columns[k]; k++)
        csv_field(&b, columns[k]);
    csv_end_record(&b);
    size_t n = entries ? json_array_size(entries) : 1;
    for (size_t e = 0; e < n; e++) {
        const json_t *d = entries ? json_array_get(entries, e) : doc;
        json_t *rows = q->csv->rows(d), *row;
        size_t i;
        json_array_foreach(rows, i, row) {
            if (entries)
                csv_field_json(&b, json_object_get(d, "value"));
            for (int k = 0; columns[k]; k++)
                csv_field_json(&b, json_object_get(row, columns[k]));
            csv_end_record(&b);
        }
        json_decref(rows);
    }
    json_decref(doc);
    http_reply_csv(rq, q->csv->name, &b);
    buf_free(&b);
}

/* The whole report's document; or, split by segments, the entries' documents (each with its
 * value, customers and, for a channel, spend) under the period. */
static json_t *report_doc(const query_ctx *q)
{
    const store_period_report *rep = &q->rep;
    if (rep->ngroups == 0)
        return q->body(q, &rep->period, &rep->result);
    if (!q->seg.has_breakdown) { /* filters alone: the filtered whole */
        const store_report_group *g = &rep->groups[0];
        store_period p = rep->period;
        p.has_acquisition_spend = g->has_acquisition_spend, p.acquisition_spend = g->acquisition_spend;
        p.has_retention_spend = g->has_retention_spend, p.retention_spend = g->retention_spend;
        json_t *doc = q->body(q, &p, &g->result);
        json_object_set_new(doc, "filters", filters_json(q));
        return doc;
    }
    json_t *entries = json_array();
    for (int i = 0; i < rep->ngroups; i++) {
        const store_report_group *g = &rep->groups[i];
        store_period p = rep->period;
        p.has_acquisition_spend = g->has_acquisition_spend, p.acquisition_spend = g->acquisition_spend;
        p.has_retention_spend = g->has_retention_spend, p.retention_spend = g->retention_spend;
        json_t *e = json_pack("{s:s, s:I}", "value", g->value, "customers", (json_int_t)g->customers);
        json_t *doc = q->body(q, &p, &g->result);
        json_object_update(e, doc);
        json_decref(doc);
        json_array_append_new(entries, e);
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:i, s:o}", "from", rep->period.from, "to", rep->period.to,
                     "timezone", rep->period.timezone, "breakdown", q->breakdown_name, "filters", filters_json(q),
                     "top", STORE_BREAKDOWN_TOP, "entries", entries);
}

static void report_reply(http_req *rq, const query_ctx *q)
{
    json_t *doc = report_doc(q);
    if (q->csv)
        report_csv(rq, q, doc);
    else
        http_reply_json(rq, 200, doc);
}

/* ---- summary ---- */

/* A figure of domain/metrics.c: a number, or null where it is NAN (SPEC §4). */
static json_t *figure(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* The summary's "metrics" object, in SPEC §4's order. */
static json_t *figures_json(const metrics_counts *c)
{
    metrics_figures f;
    metrics_summary(c, &f);
    static const struct {
        const char *key;
        size_t offset;
    } keys[] = {
#define FIGURE(name) {#name, offsetof(metrics_figures, name)}
        FIGURE(retention_rate), FIGURE(churn_rate), FIGURE(repeat_purchase_rate), FIGURE(purchase_frequency),
        FIGURE(average_order_value), FIGURE(returning_customer_rate), FIGURE(returning_revenue_share),
        FIGURE(top20_revenue_share), FIGURE(customer_value), FIGURE(annualised_churn_rate),
        FIGURE(average_lifespan_years), FIGURE(customer_value_annualised), FIGURE(ltv_historical), FIGURE(cac),
        FIGURE(ltv_to_cac), FIGURE(retention_spend_per_retained_customer),
        FIGURE(acquisition_to_retention_cost_ratio),
#undef FIGURE
    };
    json_t *m = json_object();
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_object_set_new(m, keys[i].key, figure(*(const double *)((const char *)&f + keys[i].offset)));
        if (keys[i].offset == offsetof(metrics_figures, average_lifespan_years))
            json_object_set_new(m, "average_lifespan_capped", json_boolean(f.average_lifespan_capped));
    }
    return m;
}

static json_t *summary_body(const query_ctx *q, const store_period *p, const rs_result *r)
{
    const rs_summary *s = &r->summary;
    metrics_counts c = {.period_days = p->period_days,
                        .S = s->S, .E = s->E, .N = s->N, .lost = s->lost, .retained = s->retained,
                        .reactivated = s->reactivated, .ordering = s->ordering,
                        .repeat_ordering = s->repeat_ordering, .returning = s->returning, .orders = s->orders,
                        .revenue = reports_money_value(s->revenue),
                        .returning_revenue = reports_money_value(s->returning_revenue),
                        .top20_revenue = reports_money_value(s->top20_revenue),
                        .acquisition_spend = p->acquisition_spend, .retention_spend = p->retention_spend,
                        .has_spend = p->has_acquisition_spend || p->has_retention_spend};
    json_t *counts = json_object();
    json_object_set_new(counts, "customers", json_integer(s->customers));
    json_object_set_new(counts, "S", json_integer(s->S));
    json_object_set_new(counts, "E", json_integer(s->E));
    json_object_set_new(counts, "N", json_integer(s->N));
    json_object_set_new(counts, "lost", json_integer(s->lost));
    json_object_set_new(counts, "retained", json_integer(s->retained));
    json_object_set_new(counts, "reactivated", json_integer(s->reactivated));
    json_object_set_new(counts, "ordering", json_integer(s->ordering));
    json_object_set_new(counts, "repeat_ordering", json_integer(s->repeat_ordering));
    json_object_set_new(counts, "returning", json_integer(s->returning));
    json_object_set_new(counts, "orders", json_integer(s->orders));
    json_object_set_new(counts, "revenue", money(s->revenue));
    json_object_set_new(counts, "returning_revenue", money(s->returning_revenue));
    json_object_set_new(counts, "new_revenue", money(s->new_revenue));
    json_object_set_new(counts, "top20_revenue", money(s->top20_revenue));
    json_object_set_new(counts, "acquisition_spend",
                        p->has_acquisition_spend ? json_real(p->acquisition_spend) : json_null());
    json_object_set_new(counts, "retention_spend", p->has_retention_spend ? json_real(p->retention_spend) : json_null());
    json_object_set_new(counts, "new", json_integer(s->N));
    json_object_set_new(counts, "active", json_integer(s->E));

    json_t *out = json_object();
    json_object_set_new(out, "period", json_pack("{s:s, s:s, s:i, s:s}", "from", p->from, "to", p->to, "window_days",
                                                 p->window_days, "timezone", p->timezone));
    json_object_set_new(out, "currency", json_string(q->currency));
    json_object_set_new(out, "counts", counts);
    json_object_set_new(out, "metrics", figures_json(&c));
    json_object_set_new(out, "notes", json_pack("[s, s]",
        "retention_rate = (E - N) / S and churn_rate = lost / S over customers active at from (S) and at to (E) "
        "in the activity window; reactivated customers count in E but not in S, so retention + churn = "
        "1 + (E - N - retained) / S and need not be 1",
        "ratios with a zero denominator are null; average_lifespan_years is capped at 10 (and flagged) when the "
        "annualised churn is at or below 10 %"));
    return out;
}

int api_metrics_summary(http_req *rq)
{
    return run_report(rq, RS_SUMMARY, false, NULL, summary_body, NULL);
}

/* ---- retention ---- */

static const char *const period_units[] = {"week", "month", "quarter", NULL};

static json_t *retention_body(const query_ctx *q, const store_period *p, const rs_result *res)
{
    json_t *rows = json_array();
    for (int k = 0; k < res->nperiods; k++) {
        const rs_period *x = &res->periods[k];
        json_t *r = json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
                              "period_start", bound(p, k + 1), "period_end", bound(p, k + 2),
                              "S", (json_int_t)x->S, "E", (json_int_t)x->E, "N", (json_int_t)x->N,
                              "lost", (json_int_t)x->lost, "new", (json_int_t)x->N,
                              "returning", (json_int_t)x->returning, "resurrecting", (json_int_t)x->resurrecting,
                              "dormant", (json_int_t)x->dormant,
                              "retention_rate", figure(metrics_ratio((double)(x->E - x->N), (double)x->S)),
                              "churn_rate", figure(metrics_ratio((double)x->lost, (double)x->S)));
        json_array_append_new(rows, r);
    }
    json_t *out = json_pack("{s:s, s:s, s:s, s:i, s:s, s:o}", "from", p->from, "to", p->to, "timezone", p->timezone,
                            "window_days", p->window_days,
                            "period", q->params[4], "series", rows);
    return out;
}

static json_t *retention_rows(const json_t *doc)
{
    return json_incref(json_object_get(doc, "series"));
}

static const char *const retention_columns[] = {"period_start", "period_end", "S", "E", "N", "lost", "new",
                                                "returning", "resurrecting", "dormant", "retention_rate",
                                                "churn_rate", NULL};
static const csv_shape retention_csv = {"retention", retention_columns, retention_rows};

int api_metrics_retention(http_req *rq)
{
    return run_report(rq, RS_RETENTION, false, period_units, retention_body, &retention_csv);
}

/* ---- cohorts ---- */

static json_t *cohorts_body(const query_ctx *q, const store_period *p, const rs_result *res)
{
    json_t *cohorts = json_array();
    for (int i = 0; i < res->ncohorts; i++) {
        const rs_cohort *co = &res->cohorts[i];
        json_t *cells = json_array();
        for (int k = 0; k < co->ncells; k++) {
            const rs_cell *x = &co->cells[k];
            json_t *c = json_pack("{s:i, s:I, s:f, s:o, s:I, s:f, s:f}", "period", k, "active", (json_int_t)x->active,
                                  "share", x->share, "revenue", money(x->revenue),
                                  "active_on_or_after", (json_int_t)x->active_on_or_after,
                                  "share_on_or_after", x->share_on_or_after,
                                  "cumulative_revenue_per_customer", x->cumulative_revenue_per_customer);
            json_array_append_new(cells, c);
        }
        json_array_append_new(cohorts, json_pack("{s:o, s:I, s:o}", "cohort", bound(p, co->start + 1), "size",
                                                 (json_int_t)co->size, "cells", cells));
    }
    json_t *out = json_pack("{s:s, s:s, s:s, s:f, s:s, s:o}", "from", p->from, "to", p->to, "timezone", p->timezone,
                            "period_days", p->period_days,
                            "period", q->params[4], "cohorts", cohorts);
    if (q->mode)
        json_object_set_new(out, "mode", json_string(q->mode));
    return out;
}

/* A record per cell: its cohort and the cohort's size, then the cell. */
static json_t *cohorts_rows(const json_t *doc)
{
    json_t *rows = json_array(), *cohort, *cell;
    size_t i, k;
    json_array_foreach(json_object_get(doc, "cohorts"), i, cohort) {
        json_array_foreach(json_object_get(cohort, "cells"), k, cell) {
            json_t *row = json_pack("{s:O, s:O}", "cohort", json_object_get(cohort, "cohort"), "size",
                                    json_object_get(cohort, "size"));
            json_object_update(row, cell);
            json_array_append_new(rows, row);
        }
    }
    return rows;
}

static const char *const cohorts_columns[] = {"cohort", "size", "period", "active", "share", "revenue",
                                              "active_on_or_after", "share_on_or_after",
                                              "cumulative_revenue_per_customer", NULL};
static const csv_shape cohorts_csv = {"cohorts", cohorts_columns, cohorts_rows};

int api_metrics_cohorts(http_req *rq)
{
    const char *mode = http_arg(rq, "mode");
    if (mode && strcmp(mode, "active") != 0 && strcmp(mode, "on_or_after") != 0) {
        json_t *e = json_array();
        rd_error_add(e, "mode", "must be active or on_or_after");
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", e);
        return HTTP_REPLIED;
    }
    return run_report(rq, RS_COHORTS, false, period_units, cohorts_body, &cohorts_csv);
}

/* ---- ladder ---- */

static void ladder_reply(http_req *rq, const query_ctx *q)
{
    const char *const *rungs = rules_rungs;
    const store_ladder *l = &q->lad;
    json_t *stages = json_array();
    for (int i = 0; i < 5; i++) {
        int64_t n = 0;
        for (int k = 0; k < l->nstages; k++)
            if (strcmp(l->stages[k].stage, rungs[i]) == 0)
                n = l->stages[k].count;
        json_array_append_new(stages, json_pack("{s:s, s:I}", "stage", rungs[i], "count", (json_int_t)n));
    }
    json_t *transitions = json_array();
    for (int i = 0; i < l->ntransitions; i++)
        json_array_append_new(transitions, json_pack("{s:s, s:s, s:I}", "from", l->transitions[i].from_stage, "to",
                                                     l->transitions[i].to_stage, "count",
                                                     (json_int_t)l->transitions[i].count));
    json_t *out = json_pack("{s:s, s:s, s:s, s:o, s:o}", "from", l->from, "to", l->to, "timezone", l->timezone,
                            "stages", stages, "transitions",
                            transitions);
    http_reply_json(rq, 200, out);
}

int api_metrics_ladder(http_req *rq)
{
    return run_report(rq, RS_SUMMARY, true, NULL, NULL, NULL);
}
