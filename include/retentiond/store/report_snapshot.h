/* report_snapshot.h - the summary, retention and cohort reports computed in the service from a
 * per-tenant copy of the qualifying orders, kept current through report_changes (sql/reports.sql).
 *
 * A request locks its tenant's copy, opens a repeatable-read transaction, resolves its period
 * (rd_report_frame) and, in that same snapshot, reads the tenant whole (first use, after a bulk
 * load, after the horizon) or re-reads only the customers written since the copy's snapshot.
 * The report is then computed over the copy (domain/reports.c): it answers from exactly the
 * data a SQL report would see in that snapshot. The copies live within report_snapshot_mb,
 * least recently used first out; a tenant that does not fit, a retention report of more than
 * 60 periods, a cohort matrix of more than 400 and money with more than 4 decimals are answered
 * by SQL. Nothing here is state
 * the service needs: a restart or another instance reads the tenant again. */
#ifndef RETENTIOND_STORE_REPORT_SNAPSHOT_H
#define RETENTIOND_STORE_REPORT_SNAPSHOT_H

#include <libpq-fe.h>

#define REPORT_SNAPSHOT_SKIP 1 /* not answered here: use the SQL report */

/* Registers the statements (before db_pool_start). */
void report_snapshot_register(void);

/* Answers report ("summary", "retention" or "cohorts") for params (tenant id, from, to, window,
 * unit, as for store_metrics_report) into *json, the document the SQL report returns. Returns
 * RD_OK, RD_ERR when a statement failed (the copy is dropped), or REPORT_SNAPSHOT_SKIP. */
int report_snapshot_answer(PGconn *conn, const char *report, const char *const params[5], char **json);

/* Frees every copy (at shutdown). */
void report_snapshot_free_all(void);

#endif
