/* reports.h - the summary, retention and cohort reports (SPEC §4) computed over a tenant's
 * qualifying orders held in memory (store/report_snapshot.c keeps that copy current).
 *
 * The functions return the same "data" documents as the SQL functions rd_metrics_summary,
 * rd_metrics_retention and rd_metrics_cohorts (migrations 004 and 008), which remain the
 * answer when no snapshot can be used; the integration tests hold both to plain SQL. Instants
 * are microseconds since 1970 (UTC); money is in units of 1/10 000. */
#ifndef RETENTIOND_DOMAIN_REPORTS_H
#define RETENTIOND_DOMAIN_REPORTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define RS_NONE INT64_MIN          /* a NULL instant */
#define RS_MONEY_SCALE 10000       /* money units per currency unit */
#define RS_MAX_RETENTION_PERIODS 60 /* as rd_metrics_retention's bit masks; beyond it SQL answers */
#define RS_MAX_COHORT_PERIODS 400   /* the matrix is periods^2 cells (~5 MB here); beyond it SQL answers */

typedef struct {
    int64_t t; /* placed_at */
    int64_t v; /* net_value x RS_MONEY_SCALE */
} rs_order;

typedef struct {
    char *id;
    bool known;      /* has a customers row (its orders may arrive first) */
    bool owned;      /* orders is the customer's own allocation, not a slice of a shared pool */
    int64_t since;   /* coalesce(created_at, first_order_at, first_engaged_at, inserted_at) */
    int64_t first;   /* first_order_at, or RS_NONE */
    rs_order *orders; /* qualifying, by placed_at */
    uint32_t n, cap;
} rs_customer;

typedef struct {
    rs_customer *c;
    uint32_t n;
} rs_shop;

/* One request's period, as rd_report_frame resolves it. */
typedef struct {
    int64_t from, to, window; /* window in microseconds */
    const int64_t *bounds;    /* the period before the first, each start, the end of the last */
    int nbounds;              /* 0 when the period holds no whole unit start */
    json_t *bounds_json;      /* the same instants as JSON strings (borrowed) */
    json_t *acquisition_spend, *retention_spend; /* JSON numbers or null (borrowed) */
} rs_frame;

json_t *reports_summary(const rs_shop *shop, const rs_frame *f);
json_t *reports_retention(const rs_shop *shop, const rs_frame *f);
json_t *reports_cohorts(const rs_shop *shop, const rs_frame *f);

#endif
