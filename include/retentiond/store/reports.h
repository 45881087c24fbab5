/* reports.h - the read side: the period reports (summary, retention, cohorts: the period
 * resolved by rd_report_frame, the figures by domain/reports.c over the tenant's snapshot or its
 * streamed rows), the ladder (rd_metrics_ladder, sql/ladder.sql) and the upkeep's statements.
 * Customer reads are store/customers.h. Parameters are text (NULL = default). Unless said
 * otherwise each function returns RD_OK or RD_ERR after logging the failed statement. */
#ifndef RETENTIOND_STORE_REPORTS_H
#define RETENTIOND_STORE_REPORTS_H

#include "retentiond/domain/reports.h"
#include "retentiond/store/report_segments.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#define STORE_REPORT_NO_TENANT 1   /* nothing to report: no such tenant */
#define STORE_REPORT_TOO_LONG 2    /* more periods than RS_MAX_SERIES_PERIODS / RS_MAX_COHORT_PERIODS */

void store_reports_register(void);

/* The period of a report as PostgreSQL resolved it: to = now, from = to - 12 months, window =
 * the tenant's, by default. Instants are text as PostgreSQL writes a timestamptz in JSON. */
typedef struct {
    char *from, *to;
    char *timezone;     /* the tenant's, which the instants are written in */
    int window_days;
    double period_days;
    int nbounds;        /* the unit's boundaries, as in rs_frame (0 for the summary) */
    char **bounds;      /* ... as text: the period before the first, each start, the end */
    bool has_acquisition_spend, has_retention_spend;
    double acquisition_spend, retention_spend; /* in the period, in the shop's currency */
} store_period;

/* One entry of a breakdown (or the filtered whole): its value (NULL for the whole), its
 * customers rows, its report and, for a channel, its spend. */
typedef struct {
    char *value;
    int64_t customers;
    rs_result result;
    bool has_acquisition_spend, has_retention_spend;
    double acquisition_spend, retention_spend;
} store_report_group;

typedef struct {
    store_period period;
    rs_result result;            /* without segments */
    int ngroups;                 /* with segments (report_segments.h): the entries */
    store_report_group *groups;
    int periods;                 /* STORE_REPORT_TOO_LONG: how many the request spans */
} store_period_report;

/* A summary, retention series or cohort matrix. params: tenant id, from, to, window, unit
 * (week|month|quarter; ignored by the summary); sg: a breakdown and filters, or NULL. Returns
 * RD_OK, RD_ERR, STORE_REPORT_NO_TENANT or STORE_REPORT_TOO_LONG; the caller frees *out with
 * store_period_report_free in every case. */
int store_period_report_run(PGconn *conn, rs_report report, const char *const params[5], const store_segments *sg,
                            store_period_report *out);
void store_period_report_free(store_period_report *r);

/* The ladder (rd_metrics_ladder): customers per rung now, rung changes in the period. */
typedef struct {
    char *stage;
    int64_t count;
} store_ladder_stage;

typedef struct {
    char *from_stage, *to_stage;
    int64_t count;
} store_ladder_transition;

typedef struct {
    char *from, *to, *timezone;           /* as in store_period */
    int nstages;                          /* the rungs with customers, in no order */
    store_ladder_stage *stages;
    int ntransitions;                     /* most frequent first, then by rung names */
    store_ladder_transition *transitions;
} store_ladder;

/* params: tenant id, from, to. Returns RD_OK, RD_ERR or STORE_REPORT_NO_TENANT; the caller
 * frees *out with store_ladder_free in every case. */
int store_metrics_ladder(PGconn *conn, const char *const params[3], store_ladder *out);
void store_ladder_free(store_ladder *l);

/* Recomputes a tenant's RFM quintile boundaries when older than 4 minutes (the background
 * refresh, so that a profile, which refreshes them at 5, does not pay for it). */
int store_rfm_refresh(PGconn *conn, int64_t tenant_id);

/* Adds a tenant's rung changes of the local days ended since the last call to the daily
 * aggregate the ladder reads, and folds in late changes to days already added
 * (rd_stage_history_compact, sql/ladder.sql). *days: the days added, or -1 when the tenant's
 * writers held it off for a second (the next call tries again). */
int store_stage_history_compact(PGconn *conn, int64_t tenant_id, int *days);

/* Deletes the report_changes rows behind the horizon once it moves (at most every ten
 * minutes; rd_report_changes_prune, sql/reports.sql). *rows: how many. */
int store_report_changes_prune(PGconn *conn, int64_t *rows);

#endif
