/* clv_store.h - PostgreSQL side of predictive CLV: the per-customer purchase summaries the
 * models are fitted on (computed in SQL from the orders), the fitted models (clv_models) and
 * the per-customer predictions every fit writes (customer_predictions).
 *
 * Time convention (SPEC §4 "Predictive CLV", shared/data/clv/README.md). as_of is the end of
 * the observation window, an instant; orders with placed_at < as_of count, later ones are
 * ignored. Purchase occasions are UTC calendar days and every duration is a whole number of
 * days between calendar days: t_x = last occasion day - first occasion day, and
 * T = end day - first occasion day, where the end day is the UTC day holding the last instant
 * before as_of. So as_of = 1997-10-01 (midnight) observes up to and including 1997-09-30 and
 * gives T = 272 days for a first purchase on 1997-01-01, the published CDNOW convention;
 * as_of = now observes today, partly, as the end day.
 *
 * All functions take a connection the caller owns, outside any transaction of the caller's
 * (store_clv_save runs its own). Return conventions are stated per function. */
#ifndef RETENTIOND_STORE_CLV_STORE_H
#define RETENTIOND_STORE_CLV_STORE_H

#include "retentiond/domain/clv.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* Registers the statements below with the pool (call before db_pool_start / db_connect). */
void store_clv_register(void);

/* The customers of one tenant at as_of, parallel arrays of n rows (all owned). */
typedef struct {
    size_t n;
    char **ids;          /* customer_id */
    clv_rft *rft;        /* x, t_x, T in days */
    double *mbar;        /* mean value of the repeat occasions, 0 when x = 0 */
    double *x;           /* copy of rft[i].x, the layout clv_gg_fit wants */
    char as_of[64];      /* the resolved as_of, as PostgreSQL prints a timestamptz */
} clv_sample;

/* Loads the summary of every customer with a qualifying order before as_of (NULL = now).
 * Returns RD_OK and fills *out (release with clv_sample_free), or RD_ERR after logging. */
int store_clv_load_sample(PGconn *conn, int64_t tenant_id, const char *as_of, clv_sample *out);
void clv_sample_free(clv_sample *s);

/* A stored model: both sub-models, in days. */
typedef struct {
    clv_bgnbd bg;
    clv_gg gg;
    char fitted_at[64], as_of[64];   /* timestamptz text as PostgreSQL prints it */
    int sample_size, repeat_size;
    double fit_ms;
} clv_model_row;

/* Per-customer predictions written with a model, parallel to the sample's rows. */
typedef struct {
    double *p_alive, *expected_orders, *predicted_clv;
} clv_predictions;

/* In one transaction: inserts the model (fitted_at = the transaction's time, written back
 * into m->fitted_at), replaces every customer_predictions row of the tenant by the sample's
 * rows (batched INSERT ... SELECT FROM unnest), commits. Concurrent saves for one tenant are
 * serialised by an advisory lock. Returns RD_OK, or RD_ERR after rolling back and logging. */
int store_clv_save(PGconn *conn, int64_t tenant_id, clv_model_row *m, const clv_sample *s,
                   const clv_predictions *pred);

/* The tenant's newest model. Returns 1 and fills *out, 0 when none was fitted, -1 on error. */
int store_clv_latest(PGconn *conn, int64_t tenant_id, clv_model_row *out);

/* Reads a model from 14 columns of a result starting at col, in clv_models' order: fitted_at,
 * as_of (as to_json prints them), sample_size, repeat_size, r, alpha, a, b, bgnbd_loglik, p,
 * q, v, gg_loglik, fit_ms. */
void store_clv_model_from_row(const PGresult *res, int row, int col, clv_model_row *out);

/* Bins of equal width of the predicted-CLV histogram, before its overflow bin. */
#define STORE_CLV_HISTOGRAM_BINS 20

/* The tenant's stored predictions summed up. The figures are set when customers > 0. */
typedef struct {
    int64_t customers;             /* predictions stored */
    char fitted_at[64];            /* the newest prediction's, as PostgreSQL's JSON prints it */
    double clv_sum, clv_mean, clv_min, clv_max;
    double clv_percentiles[6];     /* predicted CLV at p10, p25, p50, p75, p90, p99 (continuous) */
    double p_alive_mean, p_alive_p50;
    int64_t p_alive_below_half;    /* predictions with P(alive) < 0.5 */
    double expected_orders_sum, expected_orders_mean;
    int histogram_bins;            /* bins of histogram filled: 0 without predictions */
    struct {                       /* rd_clv_histogram: equal bins to p99, then the overflow */
        double lower, upper;
        int64_t customers;
        bool overflow;
    } histogram[STORE_CLV_HISTOGRAM_BINS + 1];
} clv_distribution;

/* Fills *out from customer_predictions. RD_OK, or RD_ERR after logging. */
int store_clv_distribution(PGconn *conn, int64_t tenant_id, clv_distribution *out);

/* Ids of every tenant, for the background tasks (upkeep.c). Returns how many
 * (*ids allocated, caller frees), or -1 on error. */
int store_clv_tenants(PGconn *conn, int64_t **ids);

#endif
