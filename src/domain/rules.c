/* rules.c - the C twins of SQL rules (see rules.h). Written to follow the SQL text line by
 * line, with PostgreSQL's semantics where C's differ: the order of float8 values (NaN above
 * every number) and extract(epoch), which is an exact numeric that PostgreSQL reads as the
 * nearest float8. */
#include "retentiond/domain/rules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USEC_PER_DAY 86400000000LL

/* PostgreSQL's float8 comparison (float8_cmp_internal): NaN equals NaN and sorts above
 * everything else. <0, 0 or >0. */
static int pg_float8_cmp(double a, double b)
{
    if (isnan(a))
        return isnan(b) ? 0 : 1;
    if (isnan(b))
        return -1;
    return (a > b) - (a < b);
}

/* extract(epoch FROM interval of us microseconds)::float8: the decimal seconds, exactly as
 * PostgreSQL prints them, read by strtod (numeric_float8 does the same). */
static double epoch_seconds(int64_t us)
{
    uint64_t mag = us < 0 ? -(uint64_t)us : (uint64_t)us;
    char text[32];
    snprintf(text, sizeof text, "%s%llu.%06llu", us < 0 ? "-" : "", (unsigned long long)(mag / 1000000),
             (unsigned long long)(mag % 1000000));
    return strtod(text, NULL);
}

customer_status rules_status(const rules_status_in *in)
{
    /* WHEN p_n = 0 OR p_last IS NULL THEN NULL */
    if (in->order_count == 0 || !in->has_last)
        return CUSTOMER_STATUS_NONE;
    /* WHEN p_last < p_as_of - make_interval(days => p_window) THEN 'lapsed' */
    if (in->last_order < in->as_of - (int64_t)in->window_days * USEC_PER_DAY)
        return CUSTOMER_STATUS_LAPSED;
    /* WHEN p_alive IS NOT NULL AND p_alive < p_alive_min THEN 'at_risk' */
    if (in->has_p_alive && pg_float8_cmp(in->p_alive, in->p_alive_min) < 0)
        return CUSTOMER_STATUS_AT_RISK;
    /* WHEN p_n >= 2 AND extract(epoch FROM p_as_of - p_last)
     *                   > p_gap_factor * extract(epoch FROM p_last - p_first) / (p_n - 1) THEN 'at_risk'
     * (a NULL p_first makes the comparison NULL: not taken) */
    if (in->order_count >= 2 && in->has_first) {
        double since = epoch_seconds(in->as_of - in->last_order);
        double gap = in->gap_factor * epoch_seconds(in->last_order - in->first_order) / (double)(in->order_count - 1);
        if (pg_float8_cmp(since, gap) > 0)
            return CUSTOMER_STATUS_AT_RISK;
    }
    return CUSTOMER_STATUS_ACTIVE;
}

const char *rules_status_name(customer_status s)
{
    switch (s) {
    case CUSTOMER_STATUS_ACTIVE:
        return "active";
    case CUSTOMER_STATUS_AT_RISK:
        return "at_risk";
    case CUSTOMER_STATUS_LAPSED:
        return "lapsed";
    case CUSTOMER_STATUS_NONE:
        break;
    }
    return NULL;
}

const char *const rules_rungs[] = {"suspect", "prospect", "customer", "client", "advocate", NULL};
const char *const rules_statuses[] = {"active", "at_risk", "lapsed", NULL};

bool rules_name_in(const char *const *list, const char *s)
{
    for (int i = 0; s && list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}
