/* api.h - request handlers, one file per resource under src/api/. Each handler turns a
 * request into domain calls and a database job, and the job's result into a reply. */
#ifndef RETENTIOND_API_API_H
#define RETENTIOND_API_API_H

#include "retentiond/http/server.h"
#include "retentiond/store/clv_store.h"
#include "retentiond/store/customers.h"
#include "retentiond/store/outbox.h"
#include "retentiond/store/privacy.h"
#include "retentiond/store/reports.h"

/* Registers every prepared statement the handlers use (call before db_pool_start). */
void api_register_statements(void);

/* ops.c */
int api_healthz(http_req *rq);
int api_readyz(http_req *rq);
/* The embedded OpenAPI document and dashboard page. */
int api_openapi(http_req *rq);
int api_dashboard(http_req *rq);

/* prometheus.c */
int api_prometheus(http_req *rq);

/* ingest.c */
/* Parses the body as one JSON value; on failure sets a 400/415 reply and returns NULL. */
json_t *api_json_body(http_req *rq);
int api_post_customer(http_req *rq);
int api_post_order(http_req *rq);
int api_post_event(http_req *rq);
int api_post_spend(http_req *rq);
int api_batch_chunk(http_req *rq, const char *data, size_t len);
int api_batch_end(http_req *rq);

/* metrics.c */
int api_metrics_summary(http_req *rq);
int api_metrics_retention(http_req *rq);
int api_metrics_cohorts(http_req *rq);
int api_metrics_ladder(http_req *rq);

/* customers.c */
int api_customer_get(http_req *rq);
int api_customer_list(http_req *rq);
/* GET /v1/customers/{id}/orders (newest first, keyset-paginated) and .../history (rung changes) */
int api_customer_orders(http_req *rq);
int api_customer_history(http_req *rq);

/* rfm.c: GET /v1/metrics/rfm, the R x F grid */
int api_metrics_rfm(http_req *rq);

/* privacy.c: erasure, export, data requests (scope admin) */
int api_customer_erase(http_req *rq);
int api_customer_export(http_req *rq);
int api_privacy_requests(http_req *rq);
/* rows as an array of objects (booleans, integers, floats and JSON typed; the rest as text) */
json_t *api_rows_json(const store_rows *r);
/* an erasure's counts as {"orders": n, ...} */
json_t *api_erasure_json(const store_erasure *e);

/* numbers.c: the JSON value of a float8, or of a numeric's text (NULL: null), that PostgreSQL
 * computed, as the replies built with jansson print it (see numbers.c). New references. */
json_t *api_json_float8(double v);
json_t *api_json_numeric(const char *text);
/* A string, or null for NULL. New reference. */
json_t *api_json_text(const char *s);

/* clv.c: adds p_alive, churn_probability, expected_orders, predicted_clv, total_clv,
 * expected_next_order_at (and their inputs) to a profile's JSON from the tenant's fitted model
 * and the customer's purchase summary read with it (days: horizon for expected orders;
 * horizon_months: for predicted CLV). Says plainly when no model is fitted. Returns the live
 * P(alive) it computed, or NAN when there is none (no model, no order before as_of). */
double api_clv_enrich_profile(json_t *profile, const customer_profile *p, int days, int horizon_months);
/* POST /v1/models/clv/fit (scope admin) and GET /v1/metrics/clv (scope read). */
int api_clv_fit(http_req *rq);
int api_metrics_clv(http_req *rq);

/* One complete fit for a tenant on conn (shared by the endpoint, `retentiond fit` and the
 * scheduled refit): loads the customers' summaries at as_of (NULL = now), fits BG/NBD (days)
 * and Gamma-Gamma, predicts every customer and stores model + predictions in one
 * transaction. CLV_FIT_DONE fills out->model and the timings; CLV_FIT_UNFIT means the data
 * cannot support a model (out->detail says why in plain words; nothing stored);
 * CLV_FIT_DB_ERROR means a statement failed (logged; nothing stored). */
typedef enum { CLV_FIT_DONE, CLV_FIT_UNFIT, CLV_FIT_DB_ERROR } clv_fit_outcome;
typedef struct {
    clv_model_row model;
    char detail[320];
    size_t customers;
    double load_ms, fit_ms, predict_ms, store_ms, total_ms;
} clv_fit_report;
clv_fit_outcome api_clv_fit_tenant(PGconn *conn, int64_t tenant_id, const char *as_of, clv_fit_report *out);
/* The stored model as JSON (parameters, fit time, as_of, sizes, log-likelihoods). New reference. */
json_t *api_clv_model_json(const clv_model_row *m);

/* subscriptions.c: outgoing webhooks (scope admin) */
int api_subscription_create(http_req *rq);
int api_subscriptions_list(http_req *rq);
int api_subscription_get(http_req *rq);
int api_subscription_delete(http_req *rq);
int api_subscription_test(http_req *rq);
int api_subscription_deliveries(http_req *rq);
/* The body of a change's delivery (malloc'd JSON text), for the sender's fan-out. */
char *api_webhook_event_body(const outbox_event *e);

/* webhooks.c */
int api_webhook_shopify(http_req *rq);
int api_webhook_woocommerce(http_req *rq);
/* Registers the webhook statements (secret_get, deliveries, refunds); called by api_register_statements. */
void api_webhooks_register_statements(void);

#endif
