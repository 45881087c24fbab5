/* ingest.h - writing validated records to PostgreSQL through the set-based rd_ingest_*
 * functions (sql/ingest.sql): one round trip per kind per set, whether the set
 * holds one record or thousands. */
#ifndef RETENTIOND_STORE_INGEST_H
#define RETENTIOND_STORE_INGEST_H

#include "retentiond/domain/batch.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

/* Registers the prepared statements (call once before the pool starts). */
void store_ingest_register(void);

/* Adds one record's outcome to counts: created, updated, or (duplicate, stale, superseded)
 * duplicates. */
void ingest_counts_add(ingest_counts *counts, const char *outcome);

/* Writes every record of the set inside the caller's transaction and adds the outcomes to
 * *counts. When outcome is not NULL it receives the first record's outcome ("created",
 * "updated", "duplicate", "stale", "superseded"; static). Returns RD_OK or RD_ERR (the
 * transaction is then aborted; the caller rolls back). */
int store_ingest(PGconn *conn, int64_t tenant_id, const ingest_set *set, ingest_counts *counts,
                 const char **outcome);

/* Writes n orders that are independent single requests (the caller guarantees no customer
 * and no order id appears twice) in one call, inside the caller's transaction, each with the
 * outcome and rung-change time a call of its own would give. outcomes[i] receives orders[i]'s
 * outcome (static). Returns RD_OK or RD_ERR as store_ingest. */
int store_ingest_orders_each(PGconn *conn, int64_t tenant_id, const rd_order *const *orders, size_t n,
                             const char **outcomes);

/* The same for events that are independent single requests (no customer or event id twice;
 * no referral, whose second customer the merge does not check), with the rung-change time a
 * call of its own would give. */
int store_ingest_events_each(PGconn *conn, int64_t tenant_id, const char *source, const rd_event *const *events,
                             size_t n, const char **outcomes);

/* The same in a transaction of its own: BEGIN, store_ingest, COMMIT (retried on a deadlock).
 * With bulk, the set is a chunk of a bulk load: its orders are written with their customers
 * marked pending (sql/rollup.sql) rather than brought current, and
 * the load must end with store_rollup_flush. */
int store_ingest_commit(PGconn *conn, int64_t tenant_id, const ingest_set *set, bool bulk, ingest_counts *counts);

/* Brings the tenant's pending customers current, a few thousand per transaction, until none
 * is left that no concurrent load holds; with older_than_s >= 0 only those pending for longer.
 * Adds the number brought current to *flushed (when not NULL). Returns RD_OK or RD_ERR. */
int store_rollup_flush(PGconn *conn, int64_t tenant_id, int older_than_s, int64_t *flushed);

/* The tenants with a customer pending for longer than older_than_s, into *ids (malloc'd, the
 * caller frees). Returns their number, or -1 when the database failed. */
int store_pending_tenants(PGconn *conn, int older_than_s, int64_t **ids);

#endif
