/* report_segments.h - breakdowns and filters of the period reports (SPEC §8): each customer's
 * value of a dimension (acquisition channel, source of the first order, local month of the first
 * order, a key of the attributes), read in the report's transaction, and the groups a report
 * is split into: the largest STORE_BREAKDOWN_TOP values by customers, "(other)" for the rest,
 * "(none)" for customers without the value (and for orders without a customers row), so that
 * the groups add up to the whole. Filters leave out the customers whose value differs. */
#ifndef RETENTIOND_STORE_REPORT_SEGMENTS_H
#define RETENTIOND_STORE_REPORT_SEGMENTS_H

#include "retentiond/domain/reports.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_BREAKDOWN_TOP 20
#define STORE_MAX_FILTERS 8
#define STORE_SEGMENT_NONE "(none)"
#define STORE_SEGMENT_OTHER "(other)"

typedef enum { SEG_CHANNEL, SEG_SOURCE, SEG_FIRST_ORDER_MONTH, SEG_ATTRIBUTE } store_dimension;

typedef struct {
    store_dimension dim;
    const char *key; /* SEG_ATTRIBUTE: the attribute's key */
} store_dim;

/* What a request asks: a breakdown, filters, both or neither (the strings are the caller's). */
typedef struct {
    bool has_breakdown;
    store_dim breakdown;
    int nfilters;
    store_dim filters[STORE_MAX_FILTERS];
    const char *filter_values[STORE_MAX_FILTERS];
} store_segments;

/* Parses a dimension's name: channel, source, first_order_month, attribute:KEY (KEY 1-100
 * characters). Returns false for anything else. */
bool segments_parse_dim(const char *name, store_dim *out);

typedef struct segmenter segmenter;

/* Reads the dimension values of the tenant's customers, in the caller's transaction (whose
 * TimeZone is the tenant's: first_order_month is a local month), and makes the groups. Returns
 * RD_OK or RD_ERR (logged); *out is NULL on error. */
int segments_read(PGconn *conn, const char *tenant_id, const store_segments *sg, segmenter **out);

/* The groups: 1 without a breakdown, and then the value is NULL. */
int segments_count(const segmenter *s);
const char *segments_value(const segmenter *s, int group);
int64_t segments_customers(const segmenter *s, int group); /* customers rows in the group */

/* The group of a customer, or -1 when a filter leaves them out (an rs_group_fn). */
int segments_group_of(void *segmenter, const rs_customer *c);

/* Before each feed: replay (groups kept from an earlier report of the same snapshot copy, whose
 * customers come in the same order) returns the groups recorded then, in order; otherwise the
 * groups are looked up and recorded for the next report. */
void segments_feed_start(segmenter *s, bool replay);

/* Per group, the spend of [from, to) (dates in the transaction's TimeZone): by the channel
 * breakdown's values, or, without a breakdown, that of the channel filter (spend has no other
 * dimension: call it for those two cases only). acq / ret / has_acq / has_ret are ngroups long. */
int segments_spend(PGconn *conn, const char *tenant_id, const char *from, const char *to, const segmenter *s,
                   double *acq, bool *has_acq, double *ret, bool *has_ret);

void segments_free(segmenter *s);

/* The name of a request's segments in a time zone (what its groups depend on besides the
 * customers), for the cache below. */
void segments_key(const store_segments *sg, const char *timezone, char *out, size_t n);

/* A few tenants' groups, each kept with the generation of the report snapshot they were read
 * for (report_snapshot_feed_with): take removes and returns the groups of (generation, key),
 * or NULL; put hands them back for the next report of the same copy (evicting the oldest). */
segmenter *segments_cache_take(uint64_t generation, const char *key);
void segments_cache_put(uint64_t generation, const char *key, segmenter *s);
void segments_cache_free_all(void); /* at shutdown */

#endif
