/* clv.c - predictive customer lifetime value: POST /v1/models/clv/fit, GET /v1/metrics/clv,
 * and the live predictions of a customer profile.
 *
 * A fit is one database job: the per-customer summaries come from SQL (store/clv_store.c),
 * the maths from domain/clv.c, and the model and every customer's prediction go back in one
 * transaction. The model is kept in days (alpha is a scale in days). The profile does not
 * read the stored per-customer prediction for its figures: it recomputes them from the
 * latest model at the profile's own as_of, days and horizon (a few microseconds), so a
 * profile is always current; the stored predictions serve lists, filters and the
 * distribution report. See clv_store.h for the time convention. */
#include "retentiond/api/api.h"

#include "retentiond/domain/clv.h"
#include "retentiond/domain/model.h"
#include "retentiond/log.h"
#include "retentiond/store/clv_store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLV_DAYS_PER_UNIT 1.0        /* the stored model's time unit is the day */
#define CLV_STORED_DAYS 90           /* customer_predictions.expected_orders horizon */
#define CLV_STORED_MONTHS 12         /* customer_predictions.predicted_clv horizon */
#define CLV_MONTHLY_DISCOUNT 0.01
#define CLV_NEXT_ORDER_MAX_DAYS 1096 /* beyond 3 years an expected next order date means nothing */

/* A JSON number, or null for a value that is not finite (jansson refuses NaN/Inf). */
static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static double ms_since(int64_t t0)
{
    return (double)(now_usec() - t0) / 1000.0;
}

json_t *api_clv_model_json(const clv_model_row *m)
{
    double mean_spend = m->gg.q > 1 ? m->gg.v * m->gg.p / (m->gg.q - 1) : NAN;
    json_t *o = json_object();
    json_object_set_new(o, "fitted_at", json_string(m->fitted_at));
    json_object_set_new(o, "as_of", json_string(m->as_of));
    json_object_set_new(o, "time_unit", json_string("days"));
    json_object_set_new(o, "sample_size", json_integer(m->sample_size));
    json_object_set_new(o, "repeat_customers", json_integer(m->repeat_size));
    json_t *bg = json_object();
    json_object_set_new(bg, "r", jnum(m->bg.r));
    json_object_set_new(bg, "alpha", jnum(m->bg.alpha));
    json_object_set_new(bg, "a", jnum(m->bg.a));
    json_object_set_new(bg, "b", jnum(m->bg.b));
    json_object_set_new(bg, "log_likelihood", jnum(m->bg.loglik));
    json_object_set_new(o, "bgnbd", bg);
    json_t *gg = json_object();
    json_object_set_new(gg, "p", jnum(m->gg.p));
    json_object_set_new(gg, "q", jnum(m->gg.q));
    json_object_set_new(gg, "v", jnum(m->gg.v));
    json_object_set_new(gg, "log_likelihood", jnum(m->gg.loglik));
    json_object_set_new(gg, "population_mean_value", jnum(mean_spend));
    json_object_set_new(o, "gamma_gamma", gg);
    json_object_set_new(o, "fit_ms", jnum(m->fit_ms));
    return o;
}

/* ---- the fit ---- */

/* Predictions depend on (x, t_x, T) and on the spend only through a factor: CLV =
 * E[order value | x, mbar] x D(x, t_x, T), D being the discounted expected purchases. Most
 * customers of a real shop are one-timers whose row depends on T alone, so the rows are
 * sorted by (x, t_x, T) and each distinct triple is computed once. */
typedef struct {
    clv_rft k;
    size_t i;
} row_key;

static int cmp_keys(const void *pa, const void *pb)
{
    const clv_rft *a = &((const row_key *)pa)->k, *b = &((const row_key *)pb)->k;
    if (a->x != b->x)
        return a->x < b->x ? -1 : 1;
    if (a->t_x != b->t_x)
        return a->t_x < b->t_x ? -1 : 1;
    if (a->T != b->T)
        return a->T < b->T ? -1 : 1;
    return 0;
}

static void predict_all(const clv_bgnbd *bg, const clv_gg *gg, const clv_sample *s, clv_predictions *p)
{
    size_t n = s->n;
    row_key *keys = xmalloc((n ? n : 1) * sizeof *keys);
    for (size_t i = 0; i < n; i++)
        keys[i] = (row_key){s->rft[i], i};
    qsort(keys, n, sizeof *keys, cmp_keys);
    /* With p = 1, q = 2, v = 1 and mbar = 1 the expected order value is exactly 1 for every x,
     * so clv_predicted returns D itself. */
    const clv_gg unit = {.p = 1.0, .q = 2.0, .v = 1.0};
    double pa = 0, eo = 0, d = 0;
    for (size_t k = 0; k < n; k++) {
        const clv_rft *c = &keys[k].k;
        if (k == 0 || cmp_keys(&keys[k - 1], &keys[k]) != 0) {
            pa = clv_bgnbd_p_alive(bg, c->x, c->t_x, c->T);
            eo = clv_bgnbd_expected(bg, CLV_STORED_DAYS, c->x, c->t_x, c->T);
            d = clv_predicted(bg, &unit, c->x, c->t_x, c->T, 1.0, CLV_STORED_MONTHS, CLV_MONTHLY_DISCOUNT,
                              CLV_DAYS_PER_UNIT);
        }
        size_t i = keys[k].i;
        p->p_alive[i] = pa;
        p->expected_orders[i] = eo;
        p->predicted_clv[i] = d * clv_gg_expected_value(gg, c->x, s->mbar[i]);
    }
    free(keys);
}

clv_fit_outcome api_clv_fit_tenant(PGconn *conn, int64_t tenant_id, const char *as_of, clv_fit_report *out)
{
    memset(out, 0, sizeof *out);
    int64_t t0 = now_usec(), t;
    clv_sample s;
    if (store_clv_load_sample(conn, tenant_id, as_of, &s) != RD_OK)
        return CLV_FIT_DB_ERROR;
    out->load_ms = ms_since(t0);
    out->customers = s.n;

    size_t repeaters = 0, priced = 0;
    for (size_t i = 0; i < s.n; i++) {
        repeaters += s.rft[i].x > 0;
        priced += s.rft[i].x > 0 && s.mbar[i] > 0;
    }
    clv_fit_outcome outcome = CLV_FIT_UNFIT;
    clv_model_row *m = &out->model;
    rd_strlcpy(m->as_of, s.as_of, sizeof m->as_of);
    m->sample_size = (int)s.n;
    m->repeat_size = (int)repeaters;
    if (s.n < CLV_BGNBD_MIN_CUSTOMERS) {
        snprintf(out->detail, sizeof out->detail,
                 "too little data: the model needs at least %d customers with qualifying orders before as_of %s; "
                 "there are %zu", CLV_BGNBD_MIN_CUSTOMERS, s.as_of, s.n);
        goto done;
    }
    if (repeaters == 0) {
        snprintf(out->detail, sizeof out->detail,
                 "too little data: none of the %zu customers ordered again on a later day before as_of %s, so "
                 "repeat-purchase and dropout rates cannot be estimated", s.n, s.as_of);
        goto done;
    }
    if (priced < CLV_GG_MIN_CUSTOMERS) {
        snprintf(out->detail, sizeof out->detail,
                 "too little data: the spend model needs at least %d repeat customers with a positive order "
                 "value; there are %zu", CLV_GG_MIN_CUSTOMERS, priced);
        goto done;
    }
    t = now_usec();
    if (clv_bgnbd_fit(s.rft, s.n, &m->bg) != 0) {
        snprintf(out->detail, sizeof out->detail,
                 "the purchase model (BG/NBD) could not be fitted to these %zu customers (%zu repeat): the "
                 "likelihood has no finite maximum, which happens when the data are too few or too regular "
                 "to tell purchase rate and dropout apart", s.n, repeaters);
        goto done;
    }
    if (clv_gg_fit(s.x, s.mbar, s.n, &m->gg) != 0) {
        snprintf(out->detail, sizeof out->detail,
                 "the spend model (Gamma-Gamma) could not be fitted to the %zu repeat customers: their average "
                 "order values are too few or too alike to estimate how spend varies between customers", priced);
        goto done;
    }
    out->fit_ms = ms_since(t);
    m->fit_ms = out->fit_ms;

    t = now_usec();
    clv_predictions pred;
    pred.p_alive = xmalloc(s.n * sizeof(double));
    pred.expected_orders = xmalloc(s.n * sizeof(double));
    pred.predicted_clv = xmalloc(s.n * sizeof(double));
    predict_all(&m->bg, &m->gg, &s, &pred);
    out->predict_ms = ms_since(t);

    t = now_usec();
    int rc = store_clv_save(conn, tenant_id, m, &s, &pred);
    out->store_ms = ms_since(t);
    free(pred.p_alive);
    free(pred.expected_orders);
    free(pred.predicted_clv);
    outcome = rc == RD_OK ? CLV_FIT_DONE : CLV_FIT_DB_ERROR;

done:
    out->total_ms = ms_since(t0);
    clv_sample_free(&s);
    if (outcome == CLV_FIT_DONE)
        rd_log(LOG_INFO, "msg=\"clv model fitted\" tenant=%lld customers=%zu repeat=%d r=%.6g alpha=%.6g a=%.6g "
               "b=%.6g p=%.6g q=%.6g v=%.6g load_ms=%.1f fit_ms=%.1f predict_ms=%.1f store_ms=%.1f",
               (long long)tenant_id, out->customers, m->repeat_size, m->bg.r, m->bg.alpha, m->bg.a, m->bg.b,
               m->gg.p, m->gg.q, m->gg.v, out->load_ms, out->fit_ms, out->predict_ms, out->store_ms);
    else if (outcome == CLV_FIT_UNFIT)
        rd_log(LOG_INFO, "msg=\"clv fit refused\" tenant=%lld customers=%zu repeat=%zu", (long long)tenant_id,
               out->customers, repeaters);
    return outcome;
}

/* ---- POST /v1/models/clv/fit ---- */

typedef struct {
    char *as_of;
    clv_fit_outcome outcome;
    clv_fit_report report;
} fit_ctx;

static void fit_ctx_free(void *p)
{
    fit_ctx *c = p;
    free(c->as_of);
    free(c);
}

static int fit_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    fit_ctx *c = rq->ctx;
    c->outcome = api_clv_fit_tenant(conn, rq->tenant.id, c->as_of, &c->report);
    return c->outcome == CLV_FIT_DB_ERROR ? RD_ERR : RD_OK;
}

static int fit_after(http_req *rq, db_done_status st)
{
    fit_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    if (c->outcome == CLV_FIT_UNFIT) {
        http_reply_problem(rq, 422, "Unprocessable Content", c->report.detail, NULL);
        return HTTP_REPLIED;
    }
    const clv_fit_report *r = &c->report;
    json_t *timings = json_object();
    json_object_set_new(timings, "load_ms", jnum(r->load_ms));
    json_object_set_new(timings, "fit_ms", jnum(r->fit_ms));
    json_object_set_new(timings, "predict_ms", jnum(r->predict_ms));
    json_object_set_new(timings, "store_ms", jnum(r->store_ms));
    json_object_set_new(timings, "total_ms", jnum(r->total_ms));
    json_t *body = json_object();
    json_object_set_new(body, "model", api_clv_model_json(&r->model));
    json_object_set_new(body, "predictions_written", json_integer((json_int_t)r->customers));
    json_object_set_new(body, "predictions", json_pack("{s:i, s:i, s:f}", "expected_orders_days", CLV_STORED_DAYS,
                                                       "predicted_clv_months", CLV_STORED_MONTHS,
                                                       "monthly_discount", CLV_MONTHLY_DISCOUNT));
    json_object_set_new(body, "timings", timings);
    http_reply_json(rq, 201, body);
    return HTTP_REPLIED;
}

int api_clv_fit(http_req *rq)
{
    const char *as_of = http_arg(rq, "as_of");
    json_t *doc = NULL, *errors = json_array();
    if (rq->body.len > 0) {
        if (!http_content_type_is(rq, "application/json")) {
            json_decref(errors);
            http_reply_problem(rq, 415, "Unsupported Media Type", "send Content-Type: application/json", NULL);
            return HTTP_REPLIED;
        }
        json_error_t err;
        doc = json_loadb(rq->body.data, rq->body.len, JSON_REJECT_DUPLICATES, &err);
        if (!doc || !json_is_object(doc)) {
            char detail[320];
            if (doc)
                snprintf(detail, sizeof detail, "the body must be a JSON object");
            else
                snprintf(detail, sizeof detail, "malformed JSON at line %d, column %d: %s", err.line, err.column,
                         err.text);
            json_decref(doc);
            json_decref(errors);
            http_reply_problem(rq, 400, "Bad Request", detail, NULL);
            return HTTP_REPLIED;
        }
        const char *key;
        json_t *value;
        json_object_foreach(doc, key, value) {
            if (strcmp(key, "as_of") != 0)
                rd_error_add(errors, key, "unknown field; the only field is as_of");
            else if (!json_is_string(value))
                rd_error_add(errors, "as_of", "must be a string");
            else if (as_of && strcmp(as_of, json_string_value(value)) != 0)
                rd_error_add(errors, "as_of", "given in the query and the body with different values");
            else
                as_of = json_string_value(value);
        }
    }
    if (as_of && rd_timestamp_check(as_of) != RD_OK)
        rd_error_add(errors, "as_of", "must be an RFC 3339 timestamp or a date YYYY-MM-DD");
    if (json_array_size(errors)) {
        json_decref(doc);
        http_reply_problem(rq, 422, "Unprocessable Content", "invalid fit parameters; nothing was fitted", errors);
        return HTTP_REPLIED;
    }
    json_decref(errors);
    fit_ctx *c = xcalloc(1, sizeof *c);
    c->as_of = as_of ? xstrdup(as_of) : NULL;
    json_decref(doc);
    rq->ctx = c;
    rq->ctx_free = fit_ctx_free;
    return http_defer(rq, DB_JOB_SOLO, 0, fit_run, fit_after);
}

/* ---- GET /v1/metrics/clv ---- */

typedef struct {
    int found;
    clv_model_row model;
    clv_distribution dist;
} report_ctx;

static int report_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    report_ctx *c = rq->ctx;
    c->found = store_clv_latest(conn, rq->tenant.id, &c->model);
    if (c->found < 0)
        return RD_ERR;
    if (c->found && store_clv_distribution(conn, rq->tenant.id, &c->dist) != RD_OK)
        return RD_ERR;
    return RD_OK;
}

/* The stored predictions' distribution: figures null while there are none. */
static json_t *distribution_json(const clv_distribution *d)
{
    bool any = d->customers > 0;
#define FIGURE(v) (any ? api_json_float8(v) : json_null())
    json_t *clv = json_object();
    json_object_set_new(clv, "count", json_integer(d->customers));
    json_object_set_new(clv, "sum", FIGURE(d->clv_sum));
    json_object_set_new(clv, "mean", FIGURE(d->clv_mean));
    json_object_set_new(clv, "min", FIGURE(d->clv_min));
    static const char *const percentiles[6] = {"p10", "p25", "p50", "p75", "p90", "p99"};
    for (int i = 0; i < 6; i++)
        json_object_set_new(clv, percentiles[i], FIGURE(d->clv_percentiles[i]));
    json_object_set_new(clv, "max", FIGURE(d->clv_max));
    json_t *alive = json_object();
    json_object_set_new(alive, "mean", FIGURE(d->p_alive_mean));
    json_object_set_new(alive, "p50", FIGURE(d->p_alive_p50));
    json_object_set_new(alive, "below_0_5", json_integer(d->p_alive_below_half));
    json_t *orders = json_object();
    json_object_set_new(orders, "sum", FIGURE(d->expected_orders_sum));
    json_object_set_new(orders, "mean", FIGURE(d->expected_orders_mean));
#undef FIGURE
    json_t *o = json_object();
    json_object_set_new(o, "customers", json_integer(d->customers));
    json_object_set_new(o, "fitted_at", any ? json_string(d->fitted_at) : json_null());
    json_object_set_new(o, "predicted_clv", clv);
    json_object_set_new(o, "p_alive", alive);
    json_object_set_new(o, "expected_orders_90d", orders);
    json_object_set_new(o, "expected_orders_days", json_integer(CLV_STORED_DAYS));
    json_object_set_new(o, "predicted_clv_months", json_integer(CLV_STORED_MONTHS));
    json_object_set_new(o, "monthly_discount", json_real(CLV_MONTHLY_DISCOUNT));
    json_t *bins = json_array();
    for (int i = 0; i < d->histogram_bins; i++)
        json_array_append_new(bins, json_pack("{s:o, s:o, s:I, s:b}", "lower", api_json_float8(d->histogram[i].lower),
                                              "upper", api_json_float8(d->histogram[i].upper), "customers",
                                              (json_int_t)d->histogram[i].customers, "overflow",
                                              d->histogram[i].overflow));
    json_object_set_new(o, "histogram",
                        json_pack("{s:s, s:o}", "rule",
                                  "predicted_clv in equal bins [lower, upper) from 0 to the 99th percentile, "
                                  "then one overflow bin [p99, max]",
                                  "bins", bins));
    return o;
}

static int report_after(http_req *rq, db_done_status st)
{
    report_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    json_t *body = json_object();
    if (!c->found) {
        json_object_set_new(body, "model", json_null());
        json_object_set_new(body, "detail", json_string("no model fitted yet: POST /v1/models/clv/fit (admin key) "
                                                        "or run `retentiond fit --tenant NAME`"));
        json_object_set_new(body, "predictions", json_null());
        http_reply_json(rq, 200, body);
        return HTTP_REPLIED;
    }
    json_object_set_new(body, "model", api_clv_model_json(&c->model));
    json_object_set_new(body, "predictions", distribution_json(&c->dist));
    http_reply_json(rq, 200, body);
    return HTTP_REPLIED;
}

int api_metrics_clv(http_req *rq)
{
    report_ctx *c = xcalloc(1, sizeof *c);
    rq->ctx = c;
    rq->ctx_free = free;
    return http_defer(rq, DB_JOB_SOLO, 0, report_run, report_after);
}

/* ---- the profile's live predictions ---- */

/* Days until the conditional expected purchases reach 1, or NAN when that takes more than
 * CLV_NEXT_ORDER_MAX_DAYS. E is increasing in t, so bisection to about an hour. */
static double next_order_days(const clv_bgnbd *m, const clv_rft *c)
{
    if (clv_bgnbd_expected(m, CLV_NEXT_ORDER_MAX_DAYS, c->x, c->t_x, c->T) < 1.0)
        return NAN;
    double lo = 0, hi = CLV_NEXT_ORDER_MAX_DAYS;
    while (hi - lo > 1.0 / 24) {
        double mid = 0.5 * (lo + hi);
        if (clv_bgnbd_expected(m, mid, c->x, c->t_x, c->T) < 1.0)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* RFC 3339 UTC text for a Unix time in seconds. */
static json_t *timestamp_json(double epoch)
{
    if (!isfinite(epoch) || epoch < 0 || epoch > 253402300799.0) /* year 9999 */
        return json_null();
    time_t t = (time_t)llround(epoch);
    struct tm tm;
    char out[32];
    if (!gmtime_r(&t, &tm) || !strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return json_null();
    return json_string(out);
}

static void null_predictions(json_t *profile)
{
    static const char *const fields[] = {"p_alive", "churn_probability", "expected_orders", "predicted_clv",
                                         "total_clv", "expected_next_order_at"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        json_object_set_new(profile, fields[i], json_null());
}

double api_clv_enrich_profile(json_t *profile, const customer_profile *p, int days, int horizon_months)
{
    null_predictions(profile);
    if (!p->has_model) {
        json_object_set_new(profile, "model", json_string("not fitted"));
        json_object_set_new(profile, "prediction_detail",
                            json_string("no CLV model is fitted for this shop yet (POST /v1/models/clv/fit); "
                                        "predictive fields are null"));
        return NAN;
    }
    json_object_set_new(profile, "model", json_string("fitted"));
    const clv_model_row m = p->model;
    const clv_rft c = p->rft;
    const double mbar = p->mbar, as_of_epoch = (double)p->as_of_us / 1e6;
    json_t *model = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "fitted_at", m.fitted_at,
                              "as_of", m.as_of, "time_unit", "days", "r", jnum(m.bg.r), "alpha", jnum(m.bg.alpha),
                              "a", jnum(m.bg.a), "b", jnum(m.bg.b), "p", jnum(m.gg.p), "q", jnum(m.gg.q), "v",
                              jnum(m.gg.v));
    if (!p->has_summary) {
        json_object_set_new(profile, "prediction_detail",
                            json_string("the customer has no qualifying order before as_of; the model predicts "
                                        "from a customer's own purchase history"));
        json_object_set_new(profile, "prediction_inputs", json_pack("{s:o}", "model", model));
        return NAN;
    }
    double p_alive = clv_bgnbd_p_alive(&m.bg, c.x, c.t_x, c.T);
    double expected = clv_bgnbd_expected(&m.bg, days, c.x, c.t_x, c.T);
    double value = clv_gg_expected_value(&m.gg, c.x, mbar);
    double predicted = clv_predicted(&m.bg, &m.gg, c.x, c.t_x, c.T, mbar, horizon_months, CLV_MONTHLY_DISCOUNT,
                                     CLV_DAYS_PER_UNIT);
    double next = next_order_days(&m.bg, &c);
    json_t *hist = json_object_get(profile, "net_revenue");
    double historic = json_is_number(hist) ? json_number_value(hist) : 0.0;

    json_object_set_new(profile, "p_alive", jnum(p_alive));
    json_object_set_new(profile, "churn_probability", jnum(1.0 - p_alive));
    json_object_set_new(profile, "expected_orders", jnum(expected));
    json_object_set_new(profile, "predicted_clv", jnum(predicted));
    json_object_set_new(profile, "total_clv", jnum(historic + predicted));
    json_object_set_new(profile, "expected_next_order_at",
                        isfinite(next) ? timestamp_json(as_of_epoch + next * 86400.0) : json_null());
    json_t *inputs = json_object();
    json_object_set_new(inputs, "x", jnum(c.x));
    json_object_set_new(inputs, "t_x", jnum(c.t_x));
    json_object_set_new(inputs, "T", jnum(c.T));
    json_object_set_new(inputs, "mbar", jnum(mbar));
    json_object_set_new(inputs, "expected_order_value", jnum(value));
    json_object_set_new(inputs, "days", json_integer(days));
    json_object_set_new(inputs, "horizon_months", json_integer(horizon_months));
    json_object_set_new(inputs, "monthly_discount", json_real(CLV_MONTHLY_DISCOUNT));
    json_object_set_new(inputs, "next_order_horizon_days", json_integer(CLV_NEXT_ORDER_MAX_DAYS));
    json_object_set_new(inputs, "model", model);
    json_object_set_new(profile, "prediction_inputs", inputs);
    return p_alive;
}
