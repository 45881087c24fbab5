/* outbox.h - outgoing webhooks in the database: subscriptions, the outbox's fan-out into
 * deliveries, the deliveries' claims and outcomes (sql/outbox.sql, migrations/004_outbox.sql).
 * Each function runs in a transaction of its own unless it says otherwise. */
#ifndef RETENTIOND_STORE_OUTBOX_H
#define RETENTIOND_STORE_OUTBOX_H

#include "retentiond/store/privacy.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* Registers the prepared statements (call before db_pool_start and the background threads). */
void store_outbox_register(void);

/* ---- subscriptions (the API's; validated by the caller) ---- */

typedef struct {
    const char *url;
    const char *const *events;
    int nevents;
    const char *const *to;  /* filter: NULL for any */
    int nto;
    const char *min_clv;    /* filter: decimal text, or NULL */
    const char *description;
    const char *secret;
} store_subscription_new;

/* Creates it; fills *id and created_at (an instant as JSON writes it). */
int store_subscription_create(PGconn *conn, int64_t tenant_id, const store_subscription_new *s, int64_t *id,
                              char created_at[48]);
/* The tenant's live subscriptions (never their secrets), newest first; id < 0: all of them. */
int store_subscriptions_list(PGconn *conn, int64_t tenant_id, int64_t id, store_rows *out);
int store_subscription_delete(PGconn *conn, int64_t tenant_id, int64_t id, bool *found);
/* Queues a test delivery with `body`; *delivery_id 0 when there is no such live subscription. */
int store_subscription_test(PGconn *conn, int64_t tenant_id, int64_t id, const char *body, int64_t *delivery_id);
/* The subscription's `limit` latest deliveries and their attempts; *found false when the tenant
 * never had such a subscription. */
int store_subscription_deliveries(PGconn *conn, int64_t tenant_id, int64_t id, int limit, bool *found,
                                  store_rows *deliveries, store_rows *attempts);

/* ---- the fan-out (the sender's) ---- */

/* One taken outbox row with one subscription it matches (subscription_id 0: none), and the
 * customer's key figures now. Strings point into the result; NULL for SQL NULL. */
typedef struct {
    int64_t tenant_id, event_id, subscription_id;
    const char *tenant, *currency, *customer_id, *type, *from, *to, *occurred_at;
    const char *email, *stage, *status, *order_count, *net_revenue, *first_order_at, *last_order_at;
    const char *p_alive, *expected_orders, *predicted_clv;
} outbox_event;

typedef struct {
    PGresult *res;
    int n;
    outbox_event *events;
} outbox_batch;

/* Opens a transaction and takes up to `limit` outbox rows (locked until store_fan_out commits
 * or store_fan_out_abort rolls back). Returns RD_OK (n may be 0: the transaction is then
 * closed already) or RD_ERR (rolled back). */
int store_outbox_take(PGconn *conn, int limit, outbox_batch *b);
/* Writes one delivery per event with a subscription (bodies[i] for b->events[i]; NULL where
 * there is no subscription), deletes every taken row and commits. *made: deliveries written. */
int store_fan_out(PGconn *conn, const outbox_batch *b, char *const *bodies, int *made);
void store_fan_out_abort(PGconn *conn);
void outbox_batch_free(outbox_batch *b);

/* ---- deliveries ---- */

typedef struct {
    int64_t tenant_id, delivery_id, subscription_id;
    int attempt;
    char *url, *secret, *body;
} delivery_claim;

/* Claims up to `limit` due deliveries (at most per_sub in flight per subscription) under a lease
 * of lease_ms. Returns how many were written to out[], or -1. */
int store_deliveries_claim(PGconn *conn, int limit, int per_sub, int lease_ms, delivery_claim *out);
void delivery_claim_clear(delivery_claim *c);

/* An attempt's outcome (http_status 0: no answer; error NULL when there is none). Fills status
 * with "delivered", "pending" (retried in retry_ms), "failed" (past the horizon) or "stale". */
int store_delivery_record(PGconn *conn, const delivery_claim *c, bool ok, int http_status, const char *error,
                          double duration_ms, long retry_ms, long horizon_s, char status[16]);
int store_delivery_release(PGconn *conn, const delivery_claim *c);

/* The gauges of /metrics. */
int store_outbox_backlog(PGconn *conn, int64_t *outbox, int64_t *pending, double *oldest_seconds);
/* Deletes deliveries done more than keep_days ago; *n: how many. */
int store_deliveries_prune(PGconn *conn, int keep_days, int64_t *n);

/* The upkeep's status sweep of one tenant (rd_status_sweep); *changes: changes written. */
int store_status_sweep(PGconn *conn, int64_t tenant_id, int *changes);
/* The tenants with a live status subscription, into *ids (the caller frees). -1 on error. */
int store_status_tenants(PGconn *conn, int64_t **ids);

#endif
