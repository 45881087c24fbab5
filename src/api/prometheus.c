/* prometheus.c - GET /metrics in the Prometheus text exposition format (version 0.0.4):
 * requests by route and status with latency histograms, records ingested, database pool use
 * and errors, and the last CLV fit time. */
#include "retentiond/api/api.h"

#include "retentiond/http/stats.h"
#include "retentiond/stats.h"
#include "retentiond/store/pool.h"

#include <string.h>

rd_stats stats;

int stats_source(const char *source)
{
    if (source && strcmp(source, "shopify") == 0)
        return STATS_SRC_SHOPIFY;
    if (source && strcmp(source, "woocommerce") == 0)
        return STATS_SRC_WOOCOMMERCE;
    return STATS_SRC_API;
}

static void emit_route(void *arg, const char *method, const char *route, int status, const http_route_stats *s)
{
    buf *b = arg;
    for (int i = 0; i < 12; i++)
        buf_printf(b, "retentiond_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",status=\"%d\",le=\"%g\"} %llu\n",
                   method, route, status, http_latency_bounds[i], (unsigned long long)s->buckets[i]);
    buf_printf(b, "retentiond_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",status=\"%d\",le=\"+Inf\"} %llu\n",
               method, route, status, (unsigned long long)s->count);
    buf_printf(b, "retentiond_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\",status=\"%d\"} %.6f\n",
               method, route, status, s->sum_seconds);
    buf_printf(b, "retentiond_http_request_duration_seconds_count{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
               method, route, status, (unsigned long long)s->count);
}

static void emit_requests(void *arg, const char *method, const char *route, int status, const http_route_stats *s)
{
    buf_printf(arg, "retentiond_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n", method, route,
               status, (unsigned long long)s->count);
}

int api_prometheus(http_req *rq)
{
    static const char *const kinds[] = {"customer", "order", "event", "spend"};
    static const char *const sources[] = {"api", "shopify", "woocommerce"};
    buf b = {0};
    buf_puts(&b, "# HELP retentiond_http_requests_total HTTP requests by route and status.\n"
                 "# TYPE retentiond_http_requests_total counter\n");
    http_stats_foreach(emit_requests, &b);
    buf_puts(&b, "# HELP retentiond_http_request_duration_seconds Request latency by route and status.\n"
                 "# TYPE retentiond_http_request_duration_seconds histogram\n");
    http_stats_foreach(emit_route, &b);
    buf_puts(&b, "# HELP retentiond_records_ingested_total Records created or updated, by kind and source.\n"
                 "# TYPE retentiond_records_ingested_total counter\n");
    for (int k = 0; k < STATS_KINDS; k++)
        for (int s = 0; s < STATS_SOURCES; s++)
            buf_printf(&b, "retentiond_records_ingested_total{kind=\"%s\",source=\"%s\"} %llu\n", kinds[k], sources[s],
                       (unsigned long long)__atomic_load_n(&stats.ingested[k][s], __ATOMIC_RELAXED));
    buf_printf(&b, "# HELP retentiond_records_duplicate_total Records already stored (duplicate, stale or superseded).\n"
                   "# TYPE retentiond_records_duplicate_total counter\nretentiond_records_duplicate_total %llu\n",
               (unsigned long long)__atomic_load_n(&stats.duplicates, __ATOMIC_RELAXED));
    buf_printf(&b, "# HELP retentiond_records_rejected_total Records refused by validation.\n"
                   "# TYPE retentiond_records_rejected_total counter\nretentiond_records_rejected_total %llu\n",
               (unsigned long long)__atomic_load_n(&stats.rejected, __ATOMIC_RELAXED));
    buf_printf(&b, "# HELP retentiond_records_merged_total Single-record requests written in one call with others of their commit group.\n"
                   "# TYPE retentiond_records_merged_total counter\nretentiond_records_merged_total %llu\n",
               (unsigned long long)__atomic_load_n(&stats.merged, __ATOMIC_RELAXED));
    buf_printf(&b, "# HELP retentiond_rollups_flushed_total Customers whose rollup a bulk load deferred, brought current at its end or by the background sweep.\n"
                   "# TYPE retentiond_rollups_flushed_total counter\nretentiond_rollups_flushed_total %llu\n",
               (unsigned long long)__atomic_load_n(&stats.rollups_flushed, __ATOMIC_RELAXED));
    buf_puts(&b, "# HELP retentiond_webhook_deliveries_total Outgoing webhook attempts by outcome: delivered (2xx), "
                 "retried (failed, due again after a back-off), failed (given up past the retry horizon).\n"
                 "# TYPE retentiond_webhook_deliveries_total counter\n");
    buf_printf(&b, "retentiond_webhook_deliveries_total{outcome=\"delivered\"} %llu\n"
                   "retentiond_webhook_deliveries_total{outcome=\"retried\"} %llu\n"
                   "retentiond_webhook_deliveries_total{outcome=\"failed\"} %llu\n",
               (unsigned long long)__atomic_load_n(&stats.webhook_delivered, __ATOMIC_RELAXED),
               (unsigned long long)__atomic_load_n(&stats.webhook_retried, __ATOMIC_RELAXED),
               (unsigned long long)__atomic_load_n(&stats.webhook_failed, __ATOMIC_RELAXED));
    buf_printf(&b, "# HELP retentiond_webhook_fanned_out_total Outgoing webhook deliveries made from outbox rows.\n"
                   "# TYPE retentiond_webhook_fanned_out_total counter\nretentiond_webhook_fanned_out_total %llu\n",
               (unsigned long long)__atomic_load_n(&stats.webhook_fanned_out, __ATOMIC_RELAXED));
    buf_printf(&b, "# HELP retentiond_webhook_outbox_backlog Changes in the outbox not yet fanned out to subscriptions "
                   "(as the sender last counted, every 5 s).\n"
                   "# TYPE retentiond_webhook_outbox_backlog gauge\nretentiond_webhook_outbox_backlog %llu\n"
                   "# HELP retentiond_webhook_pending Outgoing webhook deliveries not yet delivered nor given up.\n"
                   "# TYPE retentiond_webhook_pending gauge\nretentiond_webhook_pending %llu\n"
                   "# HELP retentiond_webhook_oldest_pending_seconds Age of the oldest pending delivery.\n"
                   "# TYPE retentiond_webhook_oldest_pending_seconds gauge\nretentiond_webhook_oldest_pending_seconds %.3f\n",
               (unsigned long long)__atomic_load_n(&stats.webhook_outbox, __ATOMIC_RELAXED),
               (unsigned long long)__atomic_load_n(&stats.webhook_pending, __ATOMIC_RELAXED),
               (double)__atomic_load_n(&stats.webhook_oldest_ms, __ATOMIC_RELAXED) / 1000.0);
    static const struct {
        const char *name, *help;
        uint64_t *v;
    } snap[] = {
        {"retentiond_report_snapshot_loads_total", "Report snapshots of a tenant's orders read whole.",
         &stats.snapshot_loads},
        {"retentiond_report_snapshot_refreshed_customers_total",
         "Customers re-read into a report snapshot because they changed since it was read.", &stats.snapshot_refreshed},
        {"retentiond_report_snapshot_reports_total", "Summary, retention and cohort reports computed from a snapshot.",
         &stats.snapshot_reports},
        {"retentiond_report_snapshot_fallbacks_total",
         "Such reports computed from the tenant's rows streamed from PostgreSQL instead (snapshots off or out of "
         "room, an order value too wide for a snapshot).",
         &stats.snapshot_fallbacks},
    };
    for (size_t i = 0; i < sizeof snap / sizeof snap[0]; i++)
        buf_printf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", snap[i].name, snap[i].help, snap[i].name,
                   snap[i].name, (unsigned long long)__atomic_load_n(snap[i].v, __ATOMIC_RELAXED));
    db_pool_stats ps;
    db_pool_get_stats(&ps);
    buf_printf(&b, "# HELP retentiond_db_pool_size Database connections configured.\n"
                   "# TYPE retentiond_db_pool_size gauge\nretentiond_db_pool_size %d\n"
                   "# HELP retentiond_db_pool_connected Database connections currently open.\n"
                   "# TYPE retentiond_db_pool_connected gauge\nretentiond_db_pool_connected %d\n"
                   "# HELP retentiond_db_pool_in_use Database workers running a job.\n"
                   "# TYPE retentiond_db_pool_in_use gauge\nretentiond_db_pool_in_use %d\n"
                   "# HELP retentiond_db_pool_waiting Database jobs waiting for a worker.\n"
                   "# TYPE retentiond_db_pool_waiting gauge\nretentiond_db_pool_waiting %d\n"
                   "# HELP retentiond_db_errors_total Failed database statements or connections.\n"
                   "# TYPE retentiond_db_errors_total counter\nretentiond_db_errors_total %llu\n"
                   "# HELP retentiond_db_commits_total Write transactions committed by the pool.\n"
                   "# TYPE retentiond_db_commits_total counter\nretentiond_db_commits_total %llu\n"
                   "# HELP retentiond_db_group_commit_jobs_total Single-record writes run through group commit.\n"
                   "# TYPE retentiond_db_group_commit_jobs_total counter\nretentiond_db_group_commit_jobs_total %llu\n",
               ps.size, ps.connected, ps.busy, ps.queued, (unsigned long long)ps.db_errors,
               (unsigned long long)ps.commits, (unsigned long long)ps.group_jobs);
    buf_printf(&b, "# HELP retentiond_clv_last_fit_timestamp_seconds Unix time of the last CLV fit by this process (0: none).\n"
                   "# TYPE retentiond_clv_last_fit_timestamp_seconds gauge\nretentiond_clv_last_fit_timestamp_seconds %llu\n",
               (unsigned long long)__atomic_load_n(&stats.last_clv_fit_unix, __ATOMIC_RELAXED));
    http_reply_text(rq, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
    return HTTP_REPLIED;
}
