/* routes.c - the route table: method + path pattern → handler + required scope.
 * The OpenAPI document and the tenant-isolation test both walk this table. */
#include "retentiond/api/api.h"

#include "retentiond/store/ingest.h"
#include "retentiond/store/outbox.h"
#include "retentiond/store/report_snapshot.h"
#include "retentiond/store/reports.h"

const http_route http_routes[] = {
    {"GET", "/healthz", SCOPE_PUBLIC, api_healthz, NULL, false},
    {"GET", "/readyz", SCOPE_PUBLIC, api_readyz, NULL, false},
    {"GET", "/metrics", SCOPE_PUBLIC, api_prometheus, NULL, false},
    {"GET", "/openapi.json", SCOPE_PUBLIC, api_openapi, NULL, false},
    {"GET", "/", SCOPE_PUBLIC, api_dashboard, NULL, false},
    {"POST", "/v1/customers", SCOPE_INGEST, api_post_customer, NULL, false},
    {"POST", "/v1/orders", SCOPE_INGEST, api_post_order, NULL, false},
    {"POST", "/v1/events", SCOPE_INGEST, api_post_event, NULL, false},
    {"POST", "/v1/spend", SCOPE_INGEST, api_post_spend, NULL, false},
    {"POST", "/v1/batch", SCOPE_INGEST, api_batch_end, api_batch_chunk, true},
    {"GET", "/v1/metrics/summary", SCOPE_READ, api_metrics_summary, NULL, false},
    {"GET", "/v1/metrics/retention", SCOPE_READ, api_metrics_retention, NULL, false},
    {"GET", "/v1/metrics/cohorts", SCOPE_READ, api_metrics_cohorts, NULL, false},
    {"GET", "/v1/metrics/ladder", SCOPE_READ, api_metrics_ladder, NULL, false},
    {"GET", "/v1/metrics/clv", SCOPE_READ, api_metrics_clv, NULL, false},
    {"GET", "/v1/metrics/rfm", SCOPE_READ, api_metrics_rfm, NULL, false},
    {"POST", "/v1/models/clv/fit", SCOPE_ADMIN, api_clv_fit, NULL, false},
    {"GET", "/v1/customers/{id}", SCOPE_READ, api_customer_get, NULL, false},
    {"DELETE", "/v1/customers/{id}", SCOPE_ADMIN, api_customer_erase, NULL, false},
    {"GET", "/v1/customers/{id}/export", SCOPE_ADMIN, api_customer_export, NULL, false},
    {"GET", "/v1/customers/{id}/orders", SCOPE_READ, api_customer_orders, NULL, false},
    {"GET", "/v1/customers/{id}/history", SCOPE_READ, api_customer_history, NULL, false},
    {"GET", "/v1/privacy/requests", SCOPE_ADMIN, api_privacy_requests, NULL, false},
    {"GET", "/v1/customers", SCOPE_READ, api_customer_list, NULL, false},
    {"POST", "/v1/subscriptions", SCOPE_ADMIN, api_subscription_create, NULL, false},
    {"GET", "/v1/subscriptions", SCOPE_ADMIN, api_subscriptions_list, NULL, false},
    {"GET", "/v1/subscriptions/{id}", SCOPE_ADMIN, api_subscription_get, NULL, false},
    {"DELETE", "/v1/subscriptions/{id}", SCOPE_ADMIN, api_subscription_delete, NULL, false},
    {"POST", "/v1/subscriptions/{id}/test", SCOPE_ADMIN, api_subscription_test, NULL, false},
    {"GET", "/v1/subscriptions/{id}/deliveries", SCOPE_ADMIN, api_subscription_deliveries, NULL, false},
    {"POST", "/v1/webhooks/shopify/{tenant}", SCOPE_WEBHOOK, api_webhook_shopify, NULL, false},
    {"POST", "/v1/webhooks/woocommerce/{tenant}", SCOPE_WEBHOOK, api_webhook_woocommerce, NULL, false},
};

const int http_route_count = sizeof http_routes / sizeof http_routes[0];

void api_register_statements(void)
{
    store_ingest_register();
    api_webhooks_register_statements();
    store_reports_register();
    store_customers_register();
    report_snapshot_register();
    store_clv_register();
    store_outbox_register();
}
