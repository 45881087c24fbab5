/* reports.h - the read side: each report is one prepared statement over the SQL functions of
 * sql/reports.sql, sql/rules.sql and sql/ladder.sql, returning one JSON
 * document as text. Parameters are text (NULL = default); the caller frees *json. Each
 * function returns RD_OK (with *json NULL when there is nothing) or
 * RD_ERR after logging the failed statement. */
#ifndef RETENTIOND_STORE_REPORTS_H
#define RETENTIOND_STORE_REPORTS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

void store_reports_register(void);

/* report: "summary", "retention", "cohorts" or "ladder". params: tenant id, from, to, window,
 * unit (week|month|quarter; ignored by summary and ladder). The document carries the resolved
 * period: {"from","to","window_days","period_days","data"}. */
int store_metrics_report(PGconn *conn, const char *report, const char *const params[5], char **json);

/* Recomputes a tenant's RFM quintile boundaries when older than 4 minutes (the background
 * refresh, so that a profile, which refreshes them at 5, does not pay for it). */
int store_rfm_refresh(PGconn *conn, int64_t tenant_id);

/* Adds a tenant's rung changes of the UTC days ended since the last call to the daily
 * aggregate the ladder reads, and folds in late changes to days already added
 * (rd_stage_history_compact, sql/ladder.sql). *days: the days added, or -1 when the tenant's
 * writers held it off for a second (the next call tries again). */
int store_stage_history_compact(PGconn *conn, int64_t tenant_id, int *days);

/* Deletes the report_changes rows behind the horizon once it moves (at most every ten
 * minutes; rd_report_changes_prune, sql/reports.sql). *rows: how many. */
int store_report_changes_prune(PGconn *conn, int64_t *rows);

#endif
