/* metrics.h - the metric formulas of SPEC §4 as pure functions of counts. A ratio with a zero
 * denominator (or a figure that cannot be computed) is NAN here, and null in a reply, never a
 * number. (The RFM R x F grid is SQL's: rd_rfm_segment in sql/rules.sql.) */
#ifndef RETENTIOND_DOMAIN_METRICS_H
#define RETENTIOND_DOMAIN_METRICS_H

#include <stdbool.h>
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

/* The summary's figures; NAN where SPEC §4 says null. */
typedef struct {
    double retention_rate, churn_rate, repeat_purchase_rate, purchase_frequency, average_order_value,
        returning_customer_rate, returning_revenue_share, top20_revenue_share, customer_value,
        annualised_churn_rate, average_lifespan_years, customer_value_annualised, ltv_historical, cac,
        ltv_to_cac, retention_spend_per_retained_customer, acquisition_to_retention_cost_ratio;
    bool average_lifespan_capped;
} metrics_figures;

#define METRICS_MAX_LIFESPAN_YEARS 10.0

/* a / b, or NAN when b == 0 or either (or the quotient) is not finite. */
double metrics_ratio(double a, double b);

/* The summary's figures from its counts. */
void metrics_summary(const metrics_counts *c, metrics_figures *out);

#endif
