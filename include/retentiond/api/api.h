/* api.h - request handlers, one file per resource under src/api/. Each handler turns a
 * request into domain calls and a database job, and the job's result into a reply. */
#ifndef RETENTIOND_API_API_H
#define RETENTIOND_API_API_H

#include "retentiond/http/server.h"

/* Registers every prepared statement the handlers use (call before db_pool_start). */
void api_register_statements(void);

/* ops.c */
int api_healthz(http_req *rq);
int api_readyz(http_req *rq);

/* prometheus.c */
int api_prometheus(http_req *rq);

/* ingest.c */
int api_post_customer(http_req *rq);
int api_post_order(http_req *rq);
int api_post_event(http_req *rq);
int api_post_spend(http_req *rq);
int api_batch_chunk(http_req *rq, const char *data, size_t len);
int api_batch_end(http_req *rq);

/* metrics.c */
void api_metrics_register(void);
int api_metrics_summary(http_req *rq);
int api_metrics_retention(http_req *rq);
int api_metrics_cohorts(http_req *rq);
int api_metrics_ladder(http_req *rq);
/* Runs a prepared statement returning one JSON text (params copied) and replies with it,
 * or passes it to finish (which must reply and owns doc). */
int api_query_json(http_req *rq, const char *stmt, const char *const *params, int nparams,
                   void (*finish)(http_req *rq, json_t *doc));

/* customers.c */
void api_customers_register(void);
int api_customer_get(http_req *rq);
int api_customer_list(http_req *rq);

/* clv.c: adds p_alive, churn_probability, expected_orders, predicted_clv, total_clv,
 * expected_next_order_at (and their inputs) to a profile from the tenant's fitted model, in
 * the database worker that built it (days: horizon for expected orders; horizon_months: for
 * predicted CLV). Says plainly when no model is fitted. Returns RD_OK or RD_ERR. */
int api_clv_enrich_profile(PGconn *conn, int64_t tenant_id, json_t *profile, const char *as_of, int days,
                           int horizon_months);

/* webhooks.c */
int api_webhook_shopify(http_req *rq);
int api_webhook_woocommerce(http_req *rq);
/* Registers the webhook statements (secret_get, deliveries, refunds); called by api_register_statements. */
void api_webhooks_register_statements(void);

#endif
