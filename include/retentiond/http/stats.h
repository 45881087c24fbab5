/* stats.h - the HTTP layer's request counters, read by GET /metrics (src/api/prometheus.c).
 * Counted in src/http/stats.c, once per request, when its reply is queued or, for a request
 * that never got one, when it ends. */
#ifndef RETENTIOND_HTTP_STATS_H
#define RETENTIOND_HTTP_STATS_H

#include <stdint.h>

/* Counters of one (route, status) pair. */
typedef struct {
    uint64_t count;
    uint64_t buckets[12];   /* latency histogram, bounds in http_latency_bounds */
    double sum_seconds;
} http_route_stats;
extern const double http_latency_bounds[12];

/* Calls fn for each (route, status) pair seen, with a copy of its counters; unrouted requests
 * come as method "ANY", route "unrouted". fn runs under the counters' lock. */
void http_stats_foreach(void (*fn)(void *arg, const char *method, const char *route, int status,
                                   const http_route_stats *s), void *arg);

#endif
