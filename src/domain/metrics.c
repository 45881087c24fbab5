/* metrics.c - SPEC §4 formulas over counts computed by the store (see metrics.h). */
#include "retentiond/domain/metrics.h"

#include <math.h>

double metrics_ratio(double a, double b)
{
    if (b == 0 || !isfinite(a) || !isfinite(b))
        return NAN;
    double r = a / b;
    return isfinite(r) ? r : NAN;
}

void metrics_summary(const metrics_counts *c, metrics_figures *m)
{
    m->retention_rate = metrics_ratio((double)(c->E - c->N), (double)c->S);
    m->churn_rate = metrics_ratio((double)c->lost, (double)c->S);
    m->repeat_purchase_rate = metrics_ratio((double)c->repeat_ordering, (double)c->ordering);
    m->purchase_frequency = metrics_ratio((double)c->orders, (double)c->ordering);
    m->average_order_value = metrics_ratio(c->revenue, (double)c->orders);
    m->returning_customer_rate = metrics_ratio((double)c->returning, (double)c->ordering);
    m->returning_revenue_share = metrics_ratio(c->returning_revenue, c->revenue);
    m->top20_revenue_share = metrics_ratio(c->top20_revenue, c->revenue);

    /* customer value = AOV x purchase frequency = revenue per ordering customer */
    m->customer_value = metrics_ratio(c->revenue, (double)c->ordering);

    /* lifespan from the churn of this period, annualised: 1 - (1 - churn)^(365 / days) */
    double churn = m->churn_rate;
    m->annualised_churn_rate = m->average_lifespan_years = NAN;
    m->average_lifespan_capped = false;
    if (isfinite(churn) && c->period_days > 0) {
        m->annualised_churn_rate = 1.0 - pow(1.0 - churn, 365.0 / c->period_days);
        if (m->annualised_churn_rate <= 1.0 / METRICS_MAX_LIFESPAN_YEARS) {
            m->average_lifespan_years = METRICS_MAX_LIFESPAN_YEARS;
            m->average_lifespan_capped = true;
        } else {
            m->average_lifespan_years = 1.0 / m->annualised_churn_rate;
        }
    }
    m->customer_value_annualised = c->period_days > 0 ? m->customer_value * 365.0 / c->period_days : NAN;
    m->ltv_historical = m->customer_value_annualised * m->average_lifespan_years; /* NAN stays NAN */

    m->cac = m->ltv_to_cac = m->retention_spend_per_retained_customer = m->acquisition_to_retention_cost_ratio = NAN;
    if (c->has_spend) {
        m->cac = metrics_ratio(c->acquisition_spend, (double)c->N);
        m->ltv_to_cac = metrics_ratio(m->ltv_historical, m->cac);
        m->retention_spend_per_retained_customer = metrics_ratio(c->retention_spend, (double)c->retained);
        if (c->N && c->retained && c->retention_spend > 0)
            m->acquisition_to_retention_cost_ratio = metrics_ratio(m->cac, m->retention_spend_per_retained_customer);
    }
}
