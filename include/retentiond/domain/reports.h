/* reports.h - the summary, the retention series and the cohort matrix (SPEC §4), computed by
 * one accumulator that is fed a tenant's customers one at a time.
 *
 * Two sources feed it the same rs_customer: the tenant's in-memory copy
 * (store/report_snapshot.c), and the tenant's rows streamed from PostgreSQL in customer order
 * when there is no copy (store/report_stream.c). So an answer does not depend on where its
 * customers came from; the integration tests hold both to plain SQL over the raw orders.
 *
 * Cost: each order's period is found from the slot of its instant (slots no longer than the
 * shortest period: a multiplication and a comparison or two) and a customer's activity is added
 * as runs of periods, so a series or matrix of many periods costs about what one of twelve
 * does. Memory: the result, O(periods) for the series and a triangle of periods^2 / 2 cells for
 * the matrix, and for the summary one money sum per customer ordering in the period: its
 * top-20 % revenue is the sum of the largest fifth of those, which cannot be selected exactly
 * in one pass without them (16 bytes each, 1.6 MB for 100 000 customers). Nothing is kept per
 * order, and of a customer nothing beyond reports_add_customer().
 *
 * Instants are microseconds since 1970 (UTC); money is exact, in units of 1 / RS_MONEY_SCALE. */
#ifndef RETENTIOND_DOMAIN_REPORTS_H
#define RETENTIOND_DOMAIN_REPORTS_H

#include <stdbool.h>
#include <stdint.h>

#define RS_NONE INT64_MIN   /* a NULL instant */
#define RS_MONEY_DECIMALS 6 /* ingest accepts at most 6 decimals (domain/model.c) */
#define RS_MONEY_SCALE 1000000
/* Request limits, in periods of the chosen unit: a series is a row per period; the matrix has
 * periods * (periods + 1) / 2 cells (80 200 at 400, some 16 MB of JSON). */
#define RS_MAX_SERIES_PERIODS 1000 /* 19 years of weeks */
#define RS_MAX_COHORT_PERIODS 400  /* 7 years of weeks, 33 of months */

typedef __int128 rs_money; /* sums: 10^7 orders of up to 10^24 units each */

typedef struct {
    int64_t t; /* placed_at */
    int64_t v; /* net value in 1 / RS_MONEY_SCALE (when wide is NULL) */
} rs_order;

typedef struct {
    char *id;
    bool known;      /* has a customers row (its orders may arrive first) */
    bool owned;      /* store/report_snapshot.c: orders is the customer's own allocation */
    int64_t since;   /* known since: least(created_at, first_order_at, first_engaged_at), or RS_NONE */
    int64_t first;   /* first_order_at, or RS_NONE */
    rs_order *orders; /* qualifying, by placed_at */
    const rs_money *wide; /* NULL, or each order's value where one does not fit rs_order.v */
    uint32_t n, cap;
} rs_customer;

typedef enum { RS_SUMMARY, RS_RETENTION, RS_COHORTS } rs_report;

/* One request's period, as rd_report_frame resolves it. A customer is active at t with an order
 * in [start of t's window, t): W days before t in the shop's calendar, which is W * 24 hours
 * give or take the daylight-saving hours between, hence each instant's own window start. */
typedef struct {
    rs_report report;
    int64_t from, to;
    int64_t window;                 /* W * 24 hours in microseconds, about from - from_window */
    int64_t from_window, to_window; /* where from's and to's windows start */
    const int64_t *bounds;          /* the period before the first, each start, the end of the last */
    const int64_t *bounds_window;   /* where each bound's window starts (non-decreasing) */
    int nbounds;                    /* 0 when the period holds no whole unit start */
} rs_frame;

/* Fills from_window, to_window and bounds_window (into storage, nbounds long) as exactly
 * `window` before each instant: a calendar without daylight saving, such as UTC. */
void reports_fixed_window(rs_frame *f, int64_t *storage);

typedef struct {
    int64_t customers, S, E, N, lost, retained, reactivated;
    int64_t ordering, repeat_ordering, returning, orders;
    rs_money revenue, returning_revenue, new_revenue, top20_revenue;
} rs_summary;

/* Period k of a series (k from 0) runs from bounds[k + 1] to bounds[k + 2]. */
typedef struct {
    int64_t S, E, N, lost, returning, resurrecting, dormant;
} rs_period;

/* Cohort members active in a period since their first, and the cumulative figures. */
typedef struct {
    int64_t active, active_on_or_after;
    rs_money revenue;
    double share, share_on_or_after, cumulative_revenue_per_customer;
} rs_cell;

typedef struct {
    int start;      /* the cohort's period: it starts at bounds[start + 1] */
    int64_t size;
    int ncells;     /* periods since its start: 0 .. ncells - 1 */
    rs_cell *cells; /* points into rs_result.cells */
} rs_cohort;

typedef struct {
    rs_report report;
    rs_summary summary;     /* RS_SUMMARY */
    int nperiods;           /* RS_RETENTION */
    rs_period *periods;
    int ncohorts;           /* RS_COHORTS: the cohorts with members, oldest first */
    rs_cohort *cohorts;
    rs_cell *cells;
} rs_result;

typedef struct rs_acc rs_acc;

/* Starts a report over f, which must stay valid (with its bounds) until reports_finish. */
rs_acc *reports_begin(const rs_frame *f);

/* Adds one customer (each customer once, in any order). Nothing of c is kept. */
void reports_add_customer(rs_acc *acc, const rs_customer *c);

/* Ends the report into *out (released with reports_result_free) and frees acc. */
void reports_finish(rs_acc *acc, rs_result *out);

/* A breakdown or a filter: the group of a customer (0 .. ngroups - 1), or -1 to leave them out. */
typedef int (*rs_group_fn)(void *ctx, const rs_customer *c);

/* Starts a report split into ngroups reports of f, each customer added to its group's
 * (reports_add_customer as usual). */
rs_acc *reports_begin_groups(const rs_frame *f, int ngroups, rs_group_fn group_of, void *ctx);

/* Ends a split report into out[0 .. ngroups) (each released with reports_result_free) and
 * frees acc. */
void reports_finish_groups(rs_acc *acc, rs_result *out);
void reports_result_free(rs_result *r);

/* The orders the report reads: placed in [*lo, *hi). Returns false when it reads no customer
 * at all (a series or matrix without a period). */
bool reports_range(const rs_frame *f, int64_t *lo, int64_t *hi);

/* Money as the nearest double, as a decimal of it would be read (so it equals what
 * PostgreSQL's numeric prints). */
double reports_money_value(rs_money v);

#endif
