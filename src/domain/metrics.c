/* metrics.c - SPEC §4 formulas over counts computed by the store (see metrics.h). */
#include "retentiond/domain/metrics.h"

#include <math.h>

json_t *metrics_ratio(double a, double b)
{
    if (b == 0 || !isfinite(a) || !isfinite(b))
        return json_null();
    double r = a / b;
    return isfinite(r) ? json_real(r) : json_null();
}

static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *metrics_summary(const metrics_counts *c)
{
    json_t *m = json_object();
    json_object_set_new(m, "retention_rate", metrics_ratio((double)(c->E - c->N), (double)c->S));
    json_object_set_new(m, "churn_rate", metrics_ratio((double)c->lost, (double)c->S));
    json_object_set_new(m, "repeat_purchase_rate", metrics_ratio((double)c->repeat_ordering, (double)c->ordering));
    json_object_set_new(m, "purchase_frequency", metrics_ratio((double)c->orders, (double)c->ordering));
    json_object_set_new(m, "average_order_value", metrics_ratio(c->revenue, (double)c->orders));
    json_object_set_new(m, "returning_customer_rate", metrics_ratio((double)c->returning, (double)c->ordering));
    json_object_set_new(m, "returning_revenue_share", metrics_ratio(c->returning_revenue, c->revenue));
    json_object_set_new(m, "top20_revenue_share", metrics_ratio(c->top20_revenue, c->revenue));

    /* customer value = AOV x purchase frequency = revenue per ordering customer */
    double cv = c->ordering ? c->revenue / (double)c->ordering : NAN;
    json_object_set_new(m, "customer_value", real_or_null(cv));

    /* lifespan from the churn of this period, annualised: 1 - (1 - churn)^(365 / days) */
    double churn = c->S ? (double)c->lost / (double)c->S : NAN;
    double annual = NAN, lifespan = NAN;
    int capped = 0;
    if (isfinite(churn) && c->period_days > 0) {
        annual = 1.0 - pow(1.0 - churn, 365.0 / c->period_days);
        if (annual <= 1.0 / METRICS_MAX_LIFESPAN_YEARS) {
            lifespan = METRICS_MAX_LIFESPAN_YEARS;
            capped = 1;
        } else {
            lifespan = 1.0 / annual;
        }
    }
    json_object_set_new(m, "annualised_churn_rate", real_or_null(annual));
    json_object_set_new(m, "average_lifespan_years", real_or_null(lifespan));
    json_object_set_new(m, "average_lifespan_capped", json_boolean(capped));
    double cv_year = isfinite(cv) && c->period_days > 0 ? cv * 365.0 / c->period_days : NAN;
    double ltv = isfinite(cv_year) && isfinite(lifespan) ? cv_year * lifespan : NAN;
    json_object_set_new(m, "customer_value_annualised", real_or_null(cv_year));
    json_object_set_new(m, "ltv_historical", real_or_null(ltv));

    if (c->has_spend) {
        double cac = c->N ? c->acquisition_spend / (double)c->N : NAN;
        json_object_set_new(m, "cac", real_or_null(cac));
        json_object_set_new(m, "ltv_to_cac", isfinite(cac) && isfinite(ltv) ? metrics_ratio(ltv, cac) : json_null());
        json_object_set_new(m, "retention_spend_per_retained_customer",
                            metrics_ratio(c->retention_spend, (double)c->retained));
        json_object_set_new(m, "acquisition_to_retention_cost_ratio",
                            c->N && c->retained && c->retention_spend > 0
                                ? metrics_ratio(c->acquisition_spend / (double)c->N,
                                                c->retention_spend / (double)c->retained)
                                : json_null());
    } else {
        json_object_set_new(m, "cac", json_null());
        json_object_set_new(m, "ltv_to_cac", json_null());
        json_object_set_new(m, "retention_spend_per_retained_customer", json_null());
        json_object_set_new(m, "acquisition_to_retention_cost_ratio", json_null());
    }
    return m;
}
