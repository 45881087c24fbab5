/* upkeep.c - the background work of `serve` (see upkeep.h), pgbouncer's janitor for this
 * service: two tasks, each on its own thread with its own connection (never a pool worker: a
 * fit of a big tenant would hold a worker for its whole duration).
 *
 *   the scheduled CLV refit, every clv_refit_interval seconds: fits every tenant's model
 *   the upkeep round, every upkeep_interval seconds: keeps derived data current (upkeep_round)
 *
 * Both sleep on one condition variable, so stopping the service wakes them at once; a task in
 * progress finishes its current tenant first. */
#include "retentiond/upkeep.h"

#include "retentiond/api/api.h"
#include "retentiond/config.h"
#include "retentiond/log.h"
#include "retentiond/stats.h"
#include "retentiond/store/clv_store.h"
#include "retentiond/store/ingest.h"
#include "retentiond/store/outbox.h"
#include "retentiond/store/pool.h"
#include "retentiond/store/reports.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

static struct {
    pthread_t refit_thread, round_thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool refit_running, round_running, stopping;
} upkeep = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* Sleeps `seconds`, or less if upkeep_stop() is called meanwhile. Returns false when stopping. */
static bool upkeep_sleep(int seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&upkeep.lock);
    while (!upkeep.stopping && pthread_cond_timedwait(&upkeep.cond, &upkeep.lock, &until) == 0)
        ;
    bool stop = upkeep.stopping;
    pthread_mutex_unlock(&upkeep.lock);
    return !stop;
}

static bool upkeep_stopping(void)
{
    pthread_mutex_lock(&upkeep.lock);
    bool stop = upkeep.stopping;
    pthread_mutex_unlock(&upkeep.lock);
    return stop;
}

/* Opens a task's own connection and lists the tenants into *ids (the caller frees it) and *n
 * (-1 on a database error). Returns the connection, or NULL, logged, when there is none. */
static PGconn *task_begin(const char *task, int64_t **ids, int *n)
{
    PGconn *conn = db_connect(config.database_url);
    if (!conn) {
        rd_log(LOG_WARN, "msg=\"%s skipped: no database connection\"", task);
        return NULL;
    }
    *ids = NULL;
    *n = store_clv_tenants(conn, ids);
    return conn;
}

static void refit_all(void)
{
    int64_t *ids;
    int n;
    PGconn *conn = task_begin("scheduled clv refit", &ids, &n);
    if (!conn)
        return;
    int fitted = 0, unfit = 0, failed = 0;
    for (int i = 0; i < n && !upkeep_stopping(); i++) {
        clv_fit_report r;
        switch (api_clv_fit_tenant(conn, ids[i], NULL, &r)) {
        case CLV_FIT_DONE: fitted++; break;
        case CLV_FIT_UNFIT: unfit++; break;
        case CLV_FIT_DB_ERROR: failed++; break;
        }
        if (PQstatus(conn) != CONNECTION_OK)
            break;
    }
    free(ids);
    PQfinish(conn);
    rd_log(LOG_INFO, "msg=\"scheduled clv refit\" tenants=%d fitted=%d too_little_data=%d failed=%d", n < 0 ? 0 : n,
           fitted, unfit, failed);
}

static void *refit_main(void *arg)
{
    (void)arg;
    while (upkeep_sleep(config.clv_refit_interval))
        refit_all();
    return NULL;
}

/* One upkeep round:
 *  - keeps every tenant's RFM quintile boundaries younger than the 5 minutes after which a
 *    profile request would recompute them itself (a sort of the tenant's customers: hundreds
 *    of milliseconds at 100 k);
 *  - adds every tenant's rung changes of the UTC days that ended to the daily aggregate the
 *    ladder reads (the days after it are read row by row), and folds in late changes;
 *  - brings current the customers a bulk load left pending for longer than
 *    rollup_sweep_after seconds: a load cut short (process killed, connection lost) before
 *    its own flush;
 *  - deletes the report_changes rows behind the horizon (store_report_changes_prune);
 *  - for the tenants with a subscription to status changes, writes to the outbox every
 *    customer's status that has changed since the last round (store_status_sweep): at risk and
 *    lapsed come with the passage of time and with refits, not with a transaction of their own. */
static void upkeep_round(void)
{
    int64_t *ids;
    int n;
    PGconn *conn = task_begin("upkeep", &ids, &n);
    if (!conn)
        return;
    int failed = 0, ladder_days = 0, ladder_busy = 0;
    for (int i = 0; i < n && !upkeep_stopping() && PQstatus(conn) == CONNECTION_OK; i++) {
        int days = 0;
        if (store_rfm_refresh(conn, ids[i]) != RD_OK)
            failed++;
        if (store_stage_history_compact(conn, ids[i], &days) != RD_OK)
            failed++;
        else if (days < 0)
            ladder_busy++;
        else
            ladder_days += days;
    }
    free(ids);
    ids = NULL;
    int swept_tenants = store_pending_tenants(conn, config.rollup_sweep_after, &ids);
    int64_t swept = 0;
    for (int i = 0; i < swept_tenants && !upkeep_stopping() && PQstatus(conn) == CONNECTION_OK; i++)
        if (store_rollup_flush(conn, ids[i], config.rollup_sweep_after, &swept) != RD_OK)
            failed++;
    free(ids);
    int64_t pruned = 0;
    if (PQstatus(conn) == CONNECTION_OK && store_report_changes_prune(conn, &pruned) != RD_OK)
        failed++;
    int status_tenants = PQstatus(conn) == CONNECTION_OK ? store_status_tenants(conn, &ids) : -1;
    int status_changes = 0;
    for (int i = 0; i < status_tenants && !upkeep_stopping() && PQstatus(conn) == CONNECTION_OK; i++) {
        int changes = 0;
        if (store_status_sweep(conn, ids[i], &changes) != RD_OK)
            failed++;
        status_changes += changes;
    }
    free(ids);
    PQfinish(conn);
    stats_add(&stats.rollups_flushed, (uint64_t)swept);
    rd_log(failed ? LOG_WARN : swept || ladder_days || status_changes ? LOG_INFO : LOG_DEBUG,
           "msg=\"upkeep\" rfm_tenants=%d ladder_days=%d ladder_busy=%d rollups_swept=%lld report_changes_pruned=%lld "
           "status_changes=%d failed=%d",
           n < 0 ? 0 : n, ladder_days, ladder_busy, (long long)swept, (long long)pruned, status_changes, failed);
}

static void *round_main(void *arg)
{
    (void)arg;
    while (upkeep_sleep(config.upkeep_interval))
        upkeep_round();
    return NULL;
}

void upkeep_start(void)
{
    upkeep.stopping = false;
    if (config.clv_refit_interval > 0 && !upkeep.refit_running) {
        if (pthread_create(&upkeep.refit_thread, NULL, refit_main, NULL) == 0)
            upkeep.refit_running = true;
        else
            rd_log(LOG_ERROR, "msg=\"cannot start the clv refit thread\"");
    }
    if (config.upkeep_interval > 0 && !upkeep.round_running) {
        if (pthread_create(&upkeep.round_thread, NULL, round_main, NULL) == 0)
            upkeep.round_running = true;
        else
            rd_log(LOG_ERROR, "msg=\"cannot start the upkeep thread\"");
    }
}

void upkeep_stop(void)
{
    if (!upkeep.refit_running && !upkeep.round_running)
        return;
    pthread_mutex_lock(&upkeep.lock);
    upkeep.stopping = true;
    pthread_cond_broadcast(&upkeep.cond);
    pthread_mutex_unlock(&upkeep.lock);
    if (upkeep.refit_running)
        pthread_join(upkeep.refit_thread, NULL);
    if (upkeep.round_running)
        pthread_join(upkeep.round_thread, NULL);
    upkeep.refit_running = upkeep.round_running = false;
}
