/* reports.c - the read side (see reports.h). */
#include "retentiond/store/reports.h"

#include "retentiond/log.h"
#include "retentiond/stats.h"
#include "retentiond/store/pool.h"
#include "retentiond/store/report_rows.h"
#include "retentiond/store/report_snapshot.h"
#include "retentiond/store/report_stream.h"
#include "retentiond/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The period of a report, as rd_report_frame resolves it, with its instants as text (binary
 * results): from, to, window_days, period_days, from and to in microseconds since 1970, the
 * boundaries in microseconds and as text, the spend, and the transaction's snapshot. */
static const char *const frame_sql =
    "SELECT h->>'from', h->>'to', f.window_days, h->>'period_days', h->>'timezone', f.from_us, f.to_us, "
    "f.bounds_us, ARRAY(SELECT b FROM json_array_elements_text(f.bounds) WITH ORDINALITY x(b, i) ORDER BY i), "
    "f.from_window_us, f.to_window_us, f.bounds_window_us, "
    "f.acquisition_spend::text, f.retention_spend::text, f.snap "
    "FROM rd_report_frame($1, $2, $3, $4, $5) f CROSS JOIN LATERAL (SELECT f.head::json AS h) j";
enum {
    F_FROM, F_TO, F_WINDOW, F_DAYS, F_ZONE, F_FROM_US, F_TO_US, F_BOUNDS_US, F_BOUNDS,
    F_FROM_WINDOW, F_TO_WINDOW, F_BOUNDS_WINDOW, F_ACQ, F_RET, F_SNAP, F_COLUMNS
};

/* The ladder's document as rows: (from, to, zone, kind, a, b, n), kind 0 a rung a with n customers,
 * kind 1 a change from rung a to b made n times, in the document's order; one row of NULLs
 * after from and to when there is neither. The period resolves as rd_report_frame's. OFFSET 0
 * keeps the subquery from being pulled up, which would call the function once per use of d. */
static const char *const ladder_sql =
    "SELECT to_json(x.f) #>> '{}', to_json(x.t_) #>> '{}', x.zone, r.kind, r.a, r.b, r.n "
    "FROM (SELECT coalesce($2::timestamptz, coalesce($3::timestamptz, now()) - interval '12 months') AS f, "
    "             coalesce($3::timestamptz, now()) AS t_, t.timezone AS zone FROM tenants t WHERE t.tenant_id = $1) x "
    "CROSS JOIN LATERAL (SELECT rd_metrics_ladder($1, x.f, x.t_) AS d OFFSET 0) l "
    "LEFT JOIN LATERAL ("
    "    SELECT 0 AS kind, s.key AS a, NULL::text AS b, s.value::bigint AS n, 0::bigint AS i "
    "    FROM json_each_text(l.d -> 'stages') s "
    "    UNION ALL "
    "    SELECT 1, e.v ->> 'from', e.v ->> 'to', (e.v ->> 'count')::bigint, e.i "
    "    FROM json_array_elements(l.d -> 'transitions') WITH ORDINALITY e(v, i)) r ON true "
    "ORDER BY r.kind, r.i";

void store_reports_register(void)
{
    db_register_statement("report_frame", frame_sql, 5);
    db_register_statement("metrics_ladder", ladder_sql, 3);
    db_register_statement("rfm_refresh", "SELECT rd_rfm_ensure($1, interval '4 minutes')", 1);
    db_register_statement("stage_history_compact", "SELECT rd_stage_history_compact($1)", 1);
    db_register_statement("report_changes_prune", "SELECT rd_report_changes_prune()", 0);
}

/* Runs a prepared statement; copies row 0's first columns (NULL stays NULL) into out[]. */
static int run(PGconn *conn, const char *stmt, int nparams, const char *const *params, char **out, int nout)
{
    for (int i = 0; i < nout; i++)
        out[i] = NULL;
    PGresult *res = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_log_error(res, conn, stmt);
        PQclear(res);
        return RD_ERR;
    }
    for (int i = 0; i < nout && PQntuples(res) > 0 && i < PQnfields(res); i++)
        if (!PQgetisnull(res, 0, i))
            out[i] = xstrdup(PQgetvalue(res, 0, i));
    PQclear(res);
    return RD_OK;
}

/* ---- period reports ---- */

/* The elements of a one-dimensional array in binary form (array_send: dimensions, a NULL flag,
 * the element type, then per dimension its length and lower bound, then each element's length
 * and bytes). Returns their count, pointing elem[i] / len[i] into p (malloc'd arrays), or -1
 * when the array is not such or holds a NULL. */
static int array_elements(const char *p, int size, const char ***elem, int **len)
{
    *elem = NULL;
    *len = NULL;
    if (size < 12)
        return -1;
    int ndim = report_be32(p);
    if (ndim == 0)
        return 0;
    if (ndim != 1 || size < 20)
        return -1;
    int n = report_be32(p + 12);
    const char *q = p + 20, *end = p + size;
    *elem = xmalloc(sizeof **elem * (size_t)(n > 0 ? n : 1));
    *len = xmalloc(sizeof **len * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) {
        int l = end - q >= 4 ? report_be32(q) : -1;
        if (l < 0 || end - q - 4 < l) {
            free(*elem);
            free(*len);
            *elem = NULL;
            *len = NULL;
            return -1;
        }
        (*elem)[i] = q + 4;
        (*len)[i] = l;
        q += 4 + l;
    }
    return n;
}

static char *text_or_null(const PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) ? NULL : xstrdup(PQgetvalue(res, 0, col));
}

static double number_or_zero(const PGresult *res, int col, bool *present)
{
    *present = !PQgetisnull(res, 0, col);
    return *present ? strtod(PQgetvalue(res, 0, col), NULL) : 0;
}

/* A binary int8[] column into *out (malloc'd). Returns its length, or -1 when it is not one. */
static int int64_array(const PGresult *res, int col, int64_t **out)
{
    const char **elem;
    int *len;
    int n = array_elements(PQgetvalue(res, 0, col), PQgetlength(res, 0, col), &elem, &len);
    *out = xmalloc(sizeof **out * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) {
        if (len[i] != 8) {
            n = -1;
            break;
        }
        (*out)[i] = report_be64(elem[i]);
    }
    free(elem);
    free(len);
    return n;
}

/* Decodes the frame's row into out->period, *bounds and *bounds_window (microseconds,
 * malloc'd). */
static int frame_decode(const PGresult *res, store_period *p, int64_t **bounds, int64_t **bounds_window)
{
    p->from = text_or_null(res, F_FROM);
    p->to = text_or_null(res, F_TO);
    p->timezone = text_or_null(res, F_ZONE);
    p->window_days = report_be32(PQgetvalue(res, 0, F_WINDOW));
    p->period_days = strtod(PQgetvalue(res, 0, F_DAYS), NULL);
    p->acquisition_spend = number_or_zero(res, F_ACQ, &p->has_acquisition_spend);
    p->retention_spend = number_or_zero(res, F_RET, &p->has_retention_spend);
    const char **text;
    int *text_len;
    int n = int64_array(res, F_BOUNDS_US, bounds);
    int nw = int64_array(res, F_BOUNDS_WINDOW, bounds_window);
    int m = array_elements(PQgetvalue(res, 0, F_BOUNDS), PQgetlength(res, 0, F_BOUNDS), &text, &text_len);
    int rc = n >= 0 && n == m && n == nw && p->from && p->to && p->timezone ? RD_OK : RD_ERR;
    p->bounds = xcalloc(n > 0 ? (size_t)n : 1, sizeof *p->bounds);
    for (int i = 0; rc == RD_OK && i < n; i++) {
        p->bounds[i] = xstrndup(text[i], (size_t)text_len[i]);
        p->nbounds = i + 1;
    }
    free(text);
    free(text_len);
    return rc;
}

/* Feeds a report made by begin(ctx, generation): from the snapshot when it serves, else from
 * the stream (generation 0). *acc is what begin made, or NULL when it failed. */
static int feed(PGconn *conn, const char *tenant_id, const char *snap, const rs_frame *f,
                rs_acc *(*begin)(void *ctx, uint64_t generation), void *ctx, rs_acc **acc)
{
    int rc = report_snapshot_feed(conn, tenant_id, snap, begin, ctx, acc);
    if (rc == REPORT_SNAPSHOT_SKIP) {
        stats_add(&stats.snapshot_fallbacks, 1);
        *acc = begin(ctx, 0);
        rc = *acc ? report_stream_feed(conn, tenant_id, f, *acc) : RD_ERR;
    }
    return rc;
}

/* The whole report's begin: one accumulator over the frame. */
static rs_acc *whole_begin(void *frame, uint64_t generation)
{
    (void)generation;
    return reports_begin(frame);
}

/* A split report's set-up, made once the snapshot is current (seg_begin): the groups are kept
 * between reports of the same copy (segments_cache_*), read again when it changed. */
typedef struct {
    PGconn *conn;
    const char *tenant_id;
    const store_segments *sg;
    const rs_frame *f;
    char key[1024];           /* the segments and the time zone, as the cache names them */
    uint64_t generation;      /* of the snapshot's copy; 0: streamed */
    segmenter *seg;
} seg_run;

static rs_acc *seg_begin(void *ctx, uint64_t generation)
{
    seg_run *r = ctx;
    r->generation = generation;
    r->seg = generation ? segments_cache_take(generation, r->key) : NULL;
    bool kept = r->seg != NULL;
    if (!r->seg && segments_read(r->conn, r->tenant_id, r->sg, &r->seg) != RD_OK)
        return NULL;
    segments_feed_start(r->seg, kept);
    return reports_begin_groups(r->f, segments_count(r->seg), segments_group_of, r->seg);
}

/* The report split by sg's segments into out->groups. */
static int run_segments(PGconn *conn, const char *tenant_id, const char *snap, const rs_frame *f,
                        const store_segments *sg, store_period_report *out)
{
    seg_run run = {.conn = conn, .tenant_id = tenant_id, .sg = sg, .f = f};
    segments_key(sg, out->period.timezone, run.key, sizeof run.key);
    rs_acc *acc;
    int rc = feed(conn, tenant_id, snap, f, seg_begin, &run, &acc);
    if (!acc) {
        segments_free(run.seg);
        return RD_ERR;
    }
    segmenter *seg = run.seg;
    int n = segments_count(seg);
    out->ngroups = n;
    out->groups = xcalloc((size_t)n, sizeof *out->groups);
    rs_result *results = xcalloc((size_t)n, sizeof *results);
    reports_finish_groups(acc, results);
    double *acq = xcalloc((size_t)n, sizeof *acq), *ret = xcalloc((size_t)n, sizeof *ret);
    bool *has_acq = xcalloc((size_t)n, sizeof *has_acq), *has_ret = xcalloc((size_t)n, sizeof *has_ret);
    bool by_channel = sg->has_breakdown ? sg->breakdown.dim == SEG_CHANNEL : false;
    for (int i = 0; !sg->has_breakdown && i < sg->nfilters; i++)
        by_channel |= sg->filters[i].dim == SEG_CHANNEL;
    if (rc == RD_OK && by_channel)
        rc = segments_spend(conn, tenant_id, out->period.from, out->period.to, seg, acq, has_acq, ret, has_ret);
    for (int g = 0; g < n; g++) {
        const char *v = segments_value(seg, g);
        store_report_group *e = &out->groups[g];
        *e = (store_report_group){.value = v ? xstrdup(v) : NULL, .customers = segments_customers(seg, g),
                                  .result = results[g]};
        if (by_channel) { /* spend has no other dimension: other entries have none */
            e->has_acquisition_spend = has_acq[g], e->acquisition_spend = acq[g];
            e->has_retention_spend = has_ret[g], e->retention_spend = ret[g];
        }
    }
    free(acq);
    free(ret);
    free(has_acq);
    free(has_ret);
    free(results);
    if (rc == RD_OK && run.generation)
        segments_cache_put(run.generation, run.key, seg);
    else
        segments_free(seg);
    return rc;
}

int store_period_report_run(PGconn *conn, rs_report report, const char *const params[5], const store_segments *sg,
                            store_period_report *out)
{
    memset(out, 0, sizeof *out);
    const char *fp[5] = {params[0], params[1], params[2], params[3], report == RS_SUMMARY ? NULL : params[4]};
    PGresult *frame = NULL;
    int64_t *bounds = NULL, *bounds_window = NULL;
    int rc = RD_ERR;
    /* the cursors are read to their end: plan them for the whole result, not its first rows */
    if (db_begin_tenant(conn, "ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL cursor_tuple_fraction = 1; "
                              "SET LOCAL jit = off", params[0], "period report") != RD_OK)
        return RD_ERR;
    frame = PQexecPrepared(conn, "report_frame", 5, fp, NULL, NULL, 1);
    if (PQresultStatus(frame) != PGRES_TUPLES_OK || PQnfields(frame) != F_COLUMNS) {
        db_log_error(frame, conn, "report_frame");
        goto out;
    }
    if (PQntuples(frame) != 1) {
        rc = STORE_REPORT_NO_TENANT;
        goto out;
    }
    if (frame_decode(frame, &out->period, &bounds, &bounds_window) != RD_OK) {
        rd_log(LOG_ERROR, "msg=\"report_frame: unexpected bounds\"");
        goto out;
    }
    out->periods = out->period.nbounds > 2 ? out->period.nbounds - 2 : 0;
    if ((report == RS_RETENTION && out->periods > RS_MAX_SERIES_PERIODS) ||
        (report == RS_COHORTS && out->periods > RS_MAX_COHORT_PERIODS)) {
        rc = STORE_REPORT_TOO_LONG;
        goto out;
    }
    rs_frame f = {.report = report,
                  .from = report_be64(PQgetvalue(frame, 0, F_FROM_US)),
                  .to = report_be64(PQgetvalue(frame, 0, F_TO_US)),
                  .window = (int64_t)out->period.window_days * 86400 * INT64_C(1000000),
                  .from_window = report_be64(PQgetvalue(frame, 0, F_FROM_WINDOW)),
                  .to_window = report_be64(PQgetvalue(frame, 0, F_TO_WINDOW)),
                  .bounds = bounds,
                  .bounds_window = bounds_window,
                  .nbounds = out->period.nbounds};
    if (sg && (sg->has_breakdown || sg->nfilters)) {
        rc = run_segments(conn, params[0], PQgetvalue(frame, 0, F_SNAP), &f, sg, out);
    } else {
        rs_acc *acc;
        rc = feed(conn, params[0], PQgetvalue(frame, 0, F_SNAP), &f, whole_begin, &f, &acc);
        if (acc)
            reports_finish(acc, &out->result);
    }
    if (rc == RD_OK)
        rc = db_exec(conn, "COMMIT", "period report");

out:
    if (rc != RD_OK)
        PQclear(PQexec(conn, "ROLLBACK"));
    PQclear(frame);
    free(bounds);
    free(bounds_window);
    return rc;
}

static void period_free(store_period *p)
{
    free(p->from);
    free(p->to);
    free(p->timezone);
    for (int i = 0; i < p->nbounds; i++)
        free(p->bounds[i]);
    free(p->bounds);
    memset(p, 0, sizeof *p);
}

void store_period_report_free(store_period_report *r)
{
    period_free(&r->period);
    reports_result_free(&r->result);
    for (int g = 0; g < r->ngroups; g++) {
        free(r->groups[g].value);
        reports_result_free(&r->groups[g].result);
    }
    free(r->groups);
    r->groups = NULL;
    r->ngroups = 0;
}

/* ---- the ladder ---- */

int store_metrics_ladder(PGconn *conn, const char *const params[3], store_ladder *out)
{
    memset(out, 0, sizeof *out);
    if (db_begin_tenant(conn, "READ ONLY", params[0], "metrics_ladder") != RD_OK)
        return RD_ERR;
    PGresult *res = PQexecPrepared(conn, "metrics_ladder", 3, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 7) {
        db_log_error(res, conn, "metrics_ladder");
        PQclear(res);
        PQclear(PQexec(conn, "ROLLBACK"));
        return RD_ERR;
    }
    int n = PQntuples(res);
    if (n == 0) {
        PQclear(res);
        PQclear(PQexec(conn, "ROLLBACK"));
        return STORE_REPORT_NO_TENANT;
    }
    out->from = text_or_null(res, 0);
    out->to = text_or_null(res, 1);
    out->timezone = text_or_null(res, 2);
    out->stages = xcalloc((size_t)n, sizeof *out->stages);
    out->transitions = xcalloc((size_t)n, sizeof *out->transitions);
    for (int r = 0; r < n; r++) {
        if (PQgetisnull(res, r, 3))
            continue; /* neither rungs nor changes */
        const char *a = PQgetvalue(res, r, 4);
        int64_t count = strtoll(PQgetvalue(res, r, 6), NULL, 10);
        if (atoi(PQgetvalue(res, r, 3)) == 0)
            out->stages[out->nstages++] = (store_ladder_stage){xstrdup(a), count};
        else
            out->transitions[out->ntransitions++] =
                (store_ladder_transition){xstrdup(a), xstrdup(PQgetvalue(res, r, 5)), count};
    }
    PQclear(res);
    return db_exec(conn, "COMMIT", "metrics_ladder");
}

void store_ladder_free(store_ladder *l)
{
    free(l->from);
    free(l->to);
    free(l->timezone);
    for (int i = 0; i < l->nstages; i++)
        free(l->stages[i].stage);
    for (int i = 0; i < l->ntransitions; i++) {
        free(l->transitions[i].from_stage);
        free(l->transitions[i].to_stage);
    }
    free(l->stages);
    free(l->transitions);
    memset(l, 0, sizeof *l);
}

int store_rfm_refresh(PGconn *conn, int64_t tenant_id)
{
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    const char *params[1] = {tid};
    return run(conn, "rfm_refresh", 1, params, NULL, 0);
}

int store_stage_history_compact(PGconn *conn, int64_t tenant_id, int *days)
{
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    const char *params[1] = {tid};
    char *out;
    if (run(conn, "stage_history_compact", 1, params, &out, 1) != RD_OK)
        return RD_ERR;
    *days = out ? atoi(out) : 0;
    free(out);
    return RD_OK;
}

int store_report_changes_prune(PGconn *conn, int64_t *rows)
{
    char *out;
    if (run(conn, "report_changes_prune", 0, NULL, &out, 1) != RD_OK)
        return RD_ERR;
    *rows = out ? strtoll(out, NULL, 10) : 0;
    free(out);
    return RD_OK;
}
