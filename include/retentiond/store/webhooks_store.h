/* webhooks_store.h - the PostgreSQL side of platform webhooks (src/api/webhooks.c): delivery
 * ids for redelivery detection, a per-order lock, and Shopify refunds kept per refund id in
 * webhook_refunds (migrations/001_baseline.sql).
 *
 * Every function takes a connection the caller owns. Apart from begin/commit/rollback they run
 * inside the caller's transaction and never end it: after an RD_ERR the transaction is aborted
 * and the caller (or the pool) rolls back. Failures are logged with db_log_error. Tenant ids
 * are passed as numbers; every string parameter is borrowed for the duration of the call. */
#ifndef RETENTIOND_STORE_WEBHOOKS_STORE_H
#define RETENTIOND_STORE_WEBHOOKS_STORE_H

#include "retentiond/domain/model.h"

#include <libpq-fe.h>
#include <stdint.h>

/* Registers the webhook statements, including secret_get, which store_secret_get
 * (src/store/tenants.c) runs. Call once before the pool starts. */
void store_webhooks_register(void);

/* Remembers (tenant, platform, delivery_id) with its topic (may be NULL: stored as "").
 * Returns 1 when the delivery is new, 0 when it was recorded before (a redelivery), RD_ERR on
 * a database error. */
int store_webhook_delivery_record(PGconn *conn, int64_t tenant_id, const char *platform,
                                  const char *delivery_id, const char *topic);

/* Takes a transaction-scoped advisory lock on (tenant, order_id), which serialises every write
 * about one order (its refunds and its state) whatever the topic. Held until the transaction
 * ends. Returns RD_OK or RD_ERR. */
int store_webhook_order_lock(PGconn *conn, int64_t tenant_id, const char *order_id);

/* Stores one refund of an order, once per refund_id; a later delivery may only fill in a
 * shop_amount that was missing. amount is a decimal string; shop_amount and refunded_at may be
 * NULL (stored as NULL). Returns RD_OK or RD_ERR. */
int store_webhook_refund_add(PGconn *conn, int64_t tenant_id, const char *order_id, const char *refund_id,
                             const char *amount, const char *shop_amount, const char *refunded_at);

/* Replaces o->refunded and o->shop_refunded (freeing the old strings) by the sums of the
 * order's stored refunds, capped at o->total and o->shop_total; a refund without shop money
 * is converted at the order's own ratio. Reads o->order_id, o->total and o->shop_total. The
 * new strings belong to *o. Returns RD_OK, or RD_ERR leaving *o unchanged. */
int store_webhook_refund_sum(PGconn *conn, int64_t tenant_id, rd_order *o);

/* Loads the stored order (locking its row FOR UPDATE) with updated_at advanced to `at` (NULL:
 * now) when that is later. Returns 1 and fills *out, which the caller then owns (free its
 * strings as any rd_order's; source is static, email is NULL); 0 when no such order is stored;
 * RD_ERR on a database error. *out is written only when 1 is returned. */
int store_webhook_order_get(PGconn *conn, int64_t tenant_id, const char *order_id, const char *at,
                            rd_order *out);

#endif
