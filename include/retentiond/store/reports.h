/* reports.h - the read side: each report is one prepared statement over the SQL functions of
 * migrations/004_metrics.sql, 005_customers.sql and 006_rfm_cutoffs.sql, returning one JSON
 * document as text. Parameters are text (NULL = default); the caller frees *json. Each
 * function returns RD_OK (with *json NULL when there is nothing, e.g. no such customer) or
 * RD_ERR after logging the failed statement. */
#ifndef RETENTIOND_STORE_REPORTS_H
#define RETENTIOND_STORE_REPORTS_H

#include <libpq-fe.h>

void store_reports_register(void);

/* report: "summary", "retention", "cohorts" or "ladder". params: tenant id, from, to, window,
 * unit (week|month|quarter; ignored by summary and ladder). The document carries the resolved
 * period: {"from","to","window_days","period_days","data"}. */
int store_metrics_report(PGconn *conn, const char *report, const char *const params[5], char **json);

/* One customer's profile at as_of (NULL = now); *as_of_used receives the instant used. Makes
 * sure the tenant's RFM quintile boundaries are fresh first. */
int store_customer_profile(PGconn *conn, const char *tenant_id, const char *customer_id, const char *as_of,
                           char **json, char **as_of_used);

/* A page of customers: tenant id, stage, status, segment, min_p_alive, sort, after value,
 * after id, limit, as_of (see rd_customer_list). */
int store_customer_list(PGconn *conn, const char *const params[10], char **json);

#endif
