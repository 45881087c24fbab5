/* stats.h - process-wide counters for GET /metrics (Prometheus text format). Updated with
 * relaxed atomics from any thread; read without locks. */
#ifndef RETENTIOND_STATS_H
#define RETENTIOND_STATS_H

#include <stdint.h>

enum { STATS_KIND_CUSTOMER, STATS_KIND_ORDER, STATS_KIND_EVENT, STATS_KIND_SPEND, STATS_KINDS };
enum { STATS_SRC_API, STATS_SRC_SHOPIFY, STATS_SRC_WOOCOMMERCE, STATS_SOURCES };

typedef struct {
    uint64_t ingested[STATS_KINDS][STATS_SOURCES]; /* records created or updated */
    uint64_t duplicates;                            /* duplicate, stale or superseded records */
    uint64_t rejected;                              /* records refused by validation */
    uint64_t merged;                                /* single records written in a shared call */
    uint64_t rollups_flushed;                       /* customers brought current after a bulk load */
    uint64_t snapshot_loads;                        /* report snapshots read whole */
    uint64_t snapshot_refreshed;                    /* customers re-read into report snapshots */
    uint64_t snapshot_reports;                      /* reports computed from a snapshot */
    uint64_t snapshot_fallbacks;                    /* reports streamed instead (no snapshot, no room) */
    uint64_t last_clv_fit_unix;                     /* 0 before the first fit in this process */
    /* outgoing webhooks (sender.c) */
    uint64_t webhook_delivered;                     /* deliveries a receiver acknowledged (2xx) */
    uint64_t webhook_retried;                       /* attempts that failed, to be retried */
    uint64_t webhook_failed;                        /* deliveries given up past the horizon */
    uint64_t webhook_fanned_out;                    /* deliveries made from outbox rows */
    uint64_t webhook_outbox;                        /* gauges, as the sender last read them */
    uint64_t webhook_pending;
    uint64_t webhook_oldest_ms;
} rd_stats;

extern rd_stats stats;

static inline void stats_add(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

/* Index of a source name ("api", "shopify", "woocommerce"; anything else counts as api). */
int stats_source(const char *source);

#endif
