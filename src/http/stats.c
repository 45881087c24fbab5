/* stats.c - request counters and latency histograms by route and status, for GET /metrics
 * (see http/stats.h). One row of STATUS_SLOTS counters per route plus one for unrouted
 * requests, under one mutex: a request takes it once, to count itself. */
#include "retentiond/http/stats.h"

#include "retentiond/http/internal.h"

#include <pthread.h>
#include <stdlib.h>

const double http_latency_bounds[12] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,   0.25,   0.5,   1.0,  5.0};
#define STATUS_SLOTS 16
static const int status_codes[STATUS_SLOTS] = {200, 201, 202, 204, 400, 401, 403, 404,
                                               405, 409, 413, 415, 422, 429, 500, 503};
static http_route_stats *route_stats; /* [route_count + 1][STATUS_SLOTS]; last row: unrouted */
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

void http_stats_init(void)
{
    route_stats = xcalloc((size_t)(http_route_count + 1) * STATUS_SLOTS, sizeof *route_stats);
}

void http_stats_free(void)
{
    free(route_stats);
    route_stats = NULL;
}

void http_stats_record(int route_index, int status, double seconds)
{
    int s = -1;
    for (int i = 0; i < STATUS_SLOTS; i++)
        if (status_codes[i] == status)
            s = i;
    if (s < 0)
        s = status >= 500 ? 14 : 4; /* fold rare codes into 500 / 400 */
    int r = route_index >= 0 ? route_index : http_route_count;
    pthread_mutex_lock(&stats_lock);
    http_route_stats *st = &route_stats[r * STATUS_SLOTS + s];
    st->count++;
    st->sum_seconds += seconds;
    for (int b = 0; b < 12; b++)
        if (seconds <= http_latency_bounds[b])
            st->buckets[b]++;
    pthread_mutex_unlock(&stats_lock);
}

void http_stats_foreach(void (*fn)(void *, const char *, const char *, int, const http_route_stats *),
                        void *arg)
{
    pthread_mutex_lock(&stats_lock);
    for (int r = 0; r <= http_route_count; r++)
        for (int s = 0; s < STATUS_SLOTS; s++) {
            http_route_stats *st = &route_stats[r * STATUS_SLOTS + s];
            if (!st->count)
                continue;
            http_route_stats copy = *st;
            const char *m = r < http_route_count ? http_routes[r].method : "ANY";
            const char *p = r < http_route_count ? http_routes[r].pattern : "unrouted";
            fn(arg, m, p, status_codes[s], &copy);
        }
    pthread_mutex_unlock(&stats_lock);
}
