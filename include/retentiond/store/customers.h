/* customers.h - the per-customer reads: one profile (rd_customer_profile_page) and a page of
 * a customer list (rd_customer_list), each one prepared statement and one round trip, in
 * sql/customers.sql. They fill structs; the replies are written by src/api/customers.c.
 *
 * The strings of a result point into the PGresult the struct owns (valid until its _free);
 * NULL is SQL's NULL. Numbers the replies print as PostgreSQL printed them stay that text:
 * amounts are numeric, never read into a double here, and a list's predictions are float8
 * as the session prints them (extra_float_digits 1, PostgreSQL's default: the shortest text
 * that reads back exactly, as in the cursor's keys). Instants are text as PostgreSQL's JSON
 * writes a timestamptz ("2026-01-05T10:00:00+00:00"), except where noted. Each function
 * returns RD_OK, or RD_ERR after logging the failed statement. */
#ifndef RETENTIOND_STORE_CUSTOMERS_H
#define RETENTIOND_STORE_CUSTOMERS_H

#include "retentiond/domain/clv.h"
#include "retentiond/store/clv_store.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

void store_customers_register(void);

/* One customer at an instant, with what the profile's live prediction needs. */
typedef struct {
    PGresult *res;                /* owns every string below */
    const char *customer_id, *email, *created_at, *channel, *referred_by;
    const char *attributes;       /* the stored JSON object, as jsonb prints it */
    bool known;                   /* posted as a customer, not only implied by an order */
    const char *stage;            /* rd_stage at as_of */
    int order_count;
    const char *net_revenue;      /* numeric */
    const char *first_order_at, *last_order_at;
    int64_t first_order_us, last_order_us;  /* the same, microseconds since 1970 (when not NULL) */
    const char *avg_days_between_orders;    /* numeric; NULL below two orders */
    const char *days_since_last_order;      /* numeric; NULL without orders */
    int event_count;
    const char *first_engaged_at, *last_engaged_at, *last_advocacy_at, *advocacy_kind;
    struct {                      /* the tenant's thresholds */
        int activity_window_days, advocacy_window_days;
        double at_risk_p_alive, at_risk_gap_factor;
    } settings;
    bool has_rfm;                 /* scored against the tenant's quintile boundaries */
    int64_t rfm_n;                /* customers with orders the boundaries rank */
    const char *rfm_computed_at;
    int r, f, m;
    const char *segment;          /* rd_rfm_segment(r, f); "prospect" without scores */
    bool has_prediction;          /* the stored prediction of the last fit */
    const char *prediction_fitted_at;
    double prediction_p_alive, prediction_expected_orders, prediction_clv;
    const char *as_of;            /* the instant, as PostgreSQL prints a timestamptz as text */
    int64_t as_of_us;
    bool has_model;               /* the tenant's newest CLV model, in model */
    clv_model_row model;
    bool has_summary;             /* a qualifying order before as_of: rft, mbar */
    clv_rft rft;
    double mbar;
} customer_profile;

/* The profile of customer_id at as_of (NULL = now), after making sure the tenant's RFM
 * quintile boundaries are fresh. *found is false when there is no such customer (out is then
 * empty). Release with customer_profile_free, whatever the outcome. */
int store_customer_profile(PGconn *conn, int64_t tenant_id, const char *customer_id, const char *as_of,
                           customer_profile *out, bool *found);
void customer_profile_free(customer_profile *p);

/* A listed customer. */
typedef struct {
    const char *customer_id;
    const char *sort_key;         /* the key the cursor after this row carries; NULL: none */
    const char *email, *stage;
    const char *status;           /* rd_status with the stored prediction; NULL without orders */
    int order_count;
    const char *net_revenue;      /* numeric */
    const char *last_order_at;
    bool has_rfm;                 /* only a segment, R or F filter computes the scores */
    int r, f, m;
    const char *segment;
    const char *p_alive, *expected_orders, *predicted_clv;  /* float8 text; NULL: no prediction */
} customer_list_item;

typedef struct {
    PGresult *res;                /* owns the strings of items */
    customer_list_item *items;
    int count;
} customer_page;

/* What a page asks for; NULL strings are "no filter" / the defaults. */
typedef struct {
    int64_t tenant_id;
    const char *stage, *status, *segment;
    const char *min_p_alive;      /* as the client wrote it */
    int r, f;                     /* RFM scores 1-5 the customers must have (rd_rfm_ntiles); 0: any */
    const char *sort;             /* net_revenue, order_count, last_order_at, p_alive, predicted_clv, customer_id */
    const char *after_key, *after_id;  /* the cursor's; after_id NULL on the first page */
    int limit;
    const char *as_of;            /* NULL = now */
} customer_page_query;

/* The page of at most q->limit customers after the cursor, in the list's order (see the top
 * of sql/customers.sql). Release with customer_page_free, whatever the outcome. */
int store_customer_page(PGconn *conn, const customer_page_query *q, customer_page *out);
void customer_page_free(customer_page *p);

/* The whole list after the cursor (q->limit does not apply) in the list's order, read by a
 * cursor `rows` at a time in one read-only transaction: each(page, arg) gets every fetch
 * (page and its strings are valid during the call only); a non-zero return ends the read.
 * Returns RD_OK, also when each() ended it (the transaction is then closed either way), or
 * RD_ERR after logging a failed statement (the transaction is left for the pool to roll
 * back). */
int store_customer_list_stream(PGconn *conn, const customer_page_query *q, int rows,
                          int (*each)(const customer_page *page, void *arg), void *arg);

/* A customer's order, amounts as PostgreSQL printed them (numeric). */
typedef struct {
    const char *order_id, *placed_at, *status, *currency;
    const char *total, *refunded;           /* in the order's currency */
    const char *shop_total, *shop_refunded; /* in the shop's */
    const char *net_value;                  /* shop_total - shop_refunded */
    bool qualifying;                        /* SPEC §4: counts in the figures */
    const char *source;
} customer_order;

typedef struct {
    PGresult *res;                /* owns the strings of items */
    customer_order *items;
    int count;
} customer_orders;

/* At most limit orders of a customer, newest first (placed_at, order_id descending), after
 * the cursor (after_at, after_id; both NULL on the first page). *found is false when there is
 * no such customer (out is then empty). Release with customer_orders_free, whatever the
 * outcome. */
int store_customer_orders(PGconn *conn, int64_t tenant_id, const char *customer_id, const char *after_at,
                          const char *after_id, int limit, customer_orders *out, bool *found);
void customer_orders_free(customer_orders *o);

/* A change of rung, as stage_history keeps it. */
typedef struct {
    const char *changed_at, *from, *to;
} rung_change;

typedef struct {
    PGresult *res;
    rung_change *items;
    int count;
} customer_history;

/* Every rung change of a customer, oldest first; *found as for the orders. Release with
 * customer_history_free, whatever the outcome. */
int store_customer_history(PGconn *conn, int64_t tenant_id, const char *customer_id, customer_history *out,
                           bool *found);
void customer_history_free(customer_history *h);

/* The R x F grid (rd_rfm_grid): 25 cells, r then f ascending from 1, with the span of the
 * tenant's qualifying orders (rd_orders_span). */
#define RFM_GRID_CELLS 25
typedef struct {
    int r, f;
    int64_t customers;
    const char *mean_net_revenue; /* numeric; NULL for an empty cell */
    const char *segment;
} rfm_cell;

typedef struct {
    PGresult *res;
    rfm_cell cells[RFM_GRID_CELLS];
    int64_t customers;            /* with orders: the cells' sum */
    PGresult *span;               /* owns the two below */
    const char *first_order_at, *last_order_at;  /* the tenant's qualifying orders'; NULL: none */
} rfm_grid;

/* Fills *out. RD_OK, or RD_ERR after logging. Release with rfm_grid_free, whatever the outcome. */
int store_rfm_grid(PGconn *conn, int64_t tenant_id, rfm_grid *out);
void rfm_grid_free(rfm_grid *g);

#endif
