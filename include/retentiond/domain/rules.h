/* rules.h - the business rules C needs as well as SQL. Each is the same function over the
 * same inputs as its SQL twin in sql/rules.sql, and tests/integration/test_rules.py compares
 * the two over every branch and boundary (through tests/tools/rules_table.c), so they cannot
 * drift. Rules only one side needs live only there: the rung (rd_stage) and the RFM grid
 * (rd_rfm_segment) are SQL's alone. */
#ifndef RETENTIOND_DOMAIN_RULES_H
#define RETENTIOND_DOMAIN_RULES_H

#include <stdbool.h>
#include <stdint.h>

/* SPEC §4 status. CUSTOMER_STATUS_NONE: the customer has no order (SQL's NULL). */
typedef enum {
    CUSTOMER_STATUS_NONE,
    CUSTOMER_STATUS_ACTIVE,
    CUSTOMER_STATUS_AT_RISK,
    CUSTOMER_STATUS_LAPSED,
} customer_status;

/* rd_status's arguments. Instants are microseconds since 1970-01-01 UTC; a has_* flag false
 * is SQL's NULL. The SQL rule runs in the service's sessions, whose time zone is UTC
 * (store/pool.c), where "as_of - window days" is window x 86 400 s. */
typedef struct {
    bool has_first, has_last;
    int64_t first_order, last_order;   /* p_first, p_last */
    int order_count;                   /* p_n */
    int64_t as_of;                     /* p_as_of */
    int window_days;                   /* p_window: tenants.activity_window_days */
    double gap_factor;                 /* p_gap_factor: tenants.at_risk_gap_factor */
    bool has_p_alive;
    double p_alive;                    /* p_alive: the prediction's, stored or live */
    double p_alive_min;                /* p_alive_min: tenants.at_risk_p_alive */
} rules_status_in;

/* rd_status (sql/rules.sql): lapsed when the last order is before the activity window;
 * at_risk when P(alive) is under the threshold, or the time since the last order exceeds
 * gap_factor x the customer's mean gap; else active. Arithmetic and comparisons are
 * PostgreSQL's float8 ones on the same values. */
customer_status rules_status(const rules_status_in *in);

/* The rungs of the ladder, lowest first, and the statuses (SPEC §4), each list NULL-ended:
 * what the filters and subscriptions accept by name. */
extern const char *const rules_rungs[];
extern const char *const rules_statuses[];
/* True when s is one of list's names. */
bool rules_name_in(const char *const *list, const char *s);

/* "active", "at_risk", "lapsed"; NULL for CUSTOMER_STATUS_NONE. */
const char *rules_status_name(customer_status s);

#endif
