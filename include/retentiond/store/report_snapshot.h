/* report_snapshot.h - per-tenant in-process copies of the qualifying orders and of the customer
 * columns the period reports read, kept current through the report_changes table
 * (sql/reports.sql): the fast path of the summary, retention and cohorts.
 *
 * Within the report's repeatable-read transaction (store/reports.c resolves the period in it
 * first), the copy reads the tenant whole (first use, after a bulk load, after the horizon) or
 * re-reads only the customers written since the copy's snapshot, so it holds exactly the data
 * the transaction sees; then every customer of the copy is fed to the report's accumulator
 * (domain/reports.c). The copies live within report_snapshot_mb, least recently used first
 * out; a tenant that does not fit, or whose order values do not fit the copy's 64 bits, is
 * streamed from PostgreSQL instead (store/report_stream.c) for ten minutes before it is tried
 * again. Nothing here is state the service needs: a restart or another instance reads the
 * tenant again. */
#ifndef RETENTIOND_STORE_REPORT_SNAPSHOT_H
#define RETENTIOND_STORE_REPORT_SNAPSHOT_H

#include "retentiond/domain/reports.h"

#include <libpq-fe.h>

#define REPORT_SNAPSHOT_SKIP 1 /* no copy can serve: stream the tenant */

/* Registers the statements (before db_pool_start). */
void report_snapshot_register(void);

/* Brings tenant_id's copy current inside the caller's open repeatable-read transaction, whose
 * snapshot (pg_current_snapshot() as text) is `snapshot`, then makes the report's accumulator
 * with begin(ctx, generation) into *out and feeds it every customer of the copy. generation is
 * the same number exactly as long as the copy holds the same customers (unique over tenants),
 * so what begin derives from them can be kept and reused. Returns RD_OK; RD_ERR when a
 * statement failed or begin returned NULL (logged; the transaction must be rolled back); or
 * REPORT_SNAPSHOT_SKIP when no copy can serve (snapshots off, the tenant does not fit), with
 * begin not called (*out NULL) and the transaction still usable. */
int report_snapshot_feed(PGconn *conn, const char *tenant_id, const char *snapshot,
                         rs_acc *(*begin)(void *ctx, uint64_t generation), void *ctx, rs_acc **out);

/* Frees every copy (at shutdown). */
void report_snapshot_free_all(void);

#endif
