/* metrics.h - the metric formulas of SPEC §4 as pure functions of counts. Every ratio with a
 * zero denominator is JSON null, never NaN. (The RFM R x F grid is SQL's: rd_rfm_segment in
 * sql/rules.sql.) */
#ifndef RETENTIOND_DOMAIN_METRICS_H
#define RETENTIOND_DOMAIN_METRICS_H

#include <jansson.h>
#include <stdint.h>

/* The counts a period's summary is computed from (all over qualifying orders). */
typedef struct {
    double period_days;
    int64_t S, E, N, lost, reactivated, retained;
    int64_t ordering, repeat_ordering, returning, orders;
    double revenue, returning_revenue, top20_revenue;
    double acquisition_spend, retention_spend;
    int has_spend;
} metrics_counts;

#define METRICS_MAX_LIFESPAN_YEARS 10.0

/* a / b as a JSON real, or null when b == 0 (or either is not finite). New reference. */
json_t *metrics_ratio(double a, double b);

/* Builds the "metrics" object of the summary from the counts (new reference). */
json_t *metrics_summary(const metrics_counts *c);

#endif
