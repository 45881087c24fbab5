/* cli.c - the import and fit sub-commands, and serve's background tasks (the scheduled CLV
 * refit of every tenant every clv_refit_interval seconds; the upkeep every
 * rfm_refresh_interval seconds).
 *
 * import reads NDJSON or CSV through the same batch reader as POST /v1/batch and commits
 * every IMPORT_FLUSH_ROWS valid records in one transaction, so a history of millions of rows
 * streams through bounded memory. Past the first chunk it is a bulk load: the customers'
 * rollups are brought current once, at the end (store_rollup_flush). As POST /v1/batch does,
 * it reads and validates the next chunk while a writer thread commits the one before (one
 * chunk in flight, on the one connection, which the reader does not touch meanwhile). */
#include "retentiond/cli.h"

#include "retentiond/api/api.h"
#include "retentiond/config.h"
#include "retentiond/domain/batch.h"
#include "retentiond/domain/model.h"
#include "retentiond/log.h"
#include "retentiond/stats.h"
#include "retentiond/store/ingest.h"
#include "retentiond/store/reports.h"
#include "retentiond/store/tenants.h"
#include "retentiond/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IMPORT_FLUSH_ROWS 5000

/* The chunk being committed. */
typedef struct {
    PGconn *conn;
    int64_t tenant_id;
    ingest_set set;       /* swapped with the reader's: each keeps its arrays */
    bool bulk;
    ingest_counts counts; /* this chunk's outcomes, added to the reader's once it is done */
    uint64_t last_line;
    int rc;
    pthread_t thread;
    bool running;
} import_writer;

static void *writer_main(void *arg)
{
    import_writer *w = arg;
    memset(&w->counts, 0, sizeof w->counts);
    w->rc = store_ingest_commit(w->conn, w->tenant_id, &w->set, w->bulk, &w->counts);
    ingest_set_clear(&w->set);
    return NULL;
}

/* Waits for the chunk in flight, if any, and adds its outcomes. Returns its status, and says
 * what a failure means for the rows. */
static int writer_join(import_writer *w, batch_reader *b)
{
    if (!w->running)
        return RD_OK;
    pthread_join(w->thread, NULL);
    w->running = false;
    b->counts.created += w->counts.created;
    b->counts.updated += w->counts.updated;
    b->counts.duplicates += w->counts.duplicates;
    b->counts.rejected += w->counts.rejected;
    if (w->rc != RD_OK)
        fprintf(stderr, "\nretentiond: the database failed on the lines up to %llu; rows before them were "
                "committed, re-running the import is safe\n", (unsigned long long)w->last_line);
    return w->rc;
}

static void progress(const batch_reader *b, int64_t started, bool final)
{
    double secs = (double)(now_usec() - started) / 1e6;
    fprintf(stderr, "\rimported %llu lines: %llu new, %llu updated, %llu duplicates, %llu rejected (%.0f lines/s)%s",
            (unsigned long long)b->line_no, (unsigned long long)b->counts.created,
            (unsigned long long)b->counts.updated, (unsigned long long)b->counts.duplicates,
            (unsigned long long)b->counts.rejected, secs > 0 ? (double)b->line_no / secs : 0.0,
            final ? "\n" : "");
}

int cli_import(PGconn *conn, const char *tenant, const char *path, const char *kind)
{
    rd_tenant t;
    int found = store_tenant_find(conn, tenant, &t);
    if (found <= 0) {
        if (found == 0)
            fprintf(stderr, "retentiond: no tenant \"%s\"\n", tenant);
        return found == 0 ? 3 : 1;
    }
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    if (kind && strcmp(kind, "order") && strcmp(kind, "customer") && strcmp(kind, "event") && strcmp(kind, "spend")) {
        fprintf(stderr, "retentiond: --kind must be order, customer, event or spend\n");
        if (f != stdin)
            fclose(f);
        return 2;
    }
    batch_reader b;
    batch_init(&b, t.currency, "import");
    b.default_kind = kind;
    size_t plen = strlen(path);
    b.csv = plen > 4 && strcmp(path + plen - 4, ".csv") == 0;
    bool tty = isatty(STDERR_FILENO);
    int64_t started = now_usec(), last = 0;
    int rc = 0;
    bool bulk = false; /* more than one chunk: rollups deferred to the end */
    import_writer w = {.conn = conn, .tenant_id = t.id, .set = {.source = b.set.source}};
    char chunk[1 << 16];
    size_t n;
    for (;;) {
        n = fread(chunk, 1, sizeof chunk, f);
        if (n)
            batch_feed(&b, chunk, n);
        else
            batch_finish(&b);
        if (ingest_set_size(&b.set) >= IMPORT_FLUSH_ROWS || (!n && ingest_set_size(&b.set))) {
            bulk = bulk || n;
            if (writer_join(&w, &b) != RD_OK) {
                rc = 1;
                break;
            }
            ingest_set tmp = w.set;
            w.set = b.set;
            b.set = tmp;
            w.bulk = bulk;
            w.last_line = b.line_no;
            if (pthread_create(&w.thread, NULL, writer_main, &w) != 0) {
                fprintf(stderr, "\nretentiond: cannot start the writer thread\n");
                ingest_set_clear(&w.set);
                rc = 1;
                break;
            }
            w.running = true;
        }
        if (tty && now_usec() - last > 250000) {
            progress(&b, started, false);
            last = now_usec();
        }
        if (!n)
            break;
    }
    if (writer_join(&w, &b) != RD_OK)
        rc = 1;
    ingest_set_free(&w.set);
    if (f != stdin)
        fclose(f);
    progress(&b, started, true);
    /* also after a failure: the chunks committed before it have their customers pending */
    int64_t flushed = 0;
    if (bulk && store_rollup_flush(conn, t.id, -1, &flushed) != RD_OK) {
        fprintf(stderr, "retentiond: the database failed while bringing the customers' rollups current; the "
                        "service's background sweep will (or re-run the import)\n");
        rc = 1;
    } else if (bulk) {
        fprintf(stderr, "brought %lld customers' rollups current (%.1f s in all)\n", (long long)flushed,
                (double)(now_usec() - started) / 1e6);
    }
    size_t shown = json_array_size(b.rejected);
    for (size_t i = 0; i < shown && i < 20; i++) {
        char *s = json_dumps(json_array_get(b.rejected, i), JSON_COMPACT);
        fprintf(stderr, "rejected: %s\n", s);
        free(s);
    }
    if (b.counts.rejected > 20)
        fprintf(stderr, "... and %llu more rejected lines\n", (unsigned long long)(b.counts.rejected - 20));
    batch_free(&b);
    return rc;
}

int cli_fit(PGconn *conn, const char *tenant, const char *as_of)
{
    rd_tenant t;
    int found = store_tenant_find(conn, tenant, &t);
    if (found <= 0) {
        if (found == 0)
            fprintf(stderr, "retentiond: no tenant \"%s\"\n", tenant);
        return found == 0 ? 3 : 1;
    }
    if (as_of && rd_timestamp_check(as_of) != RD_OK) {
        fprintf(stderr, "retentiond: --as-of must be an RFC 3339 timestamp or a date YYYY-MM-DD\n");
        return 2;
    }
    clv_fit_report r;
    clv_fit_outcome outcome = api_clv_fit_tenant(conn, t.id, as_of, &r);
    if (outcome == CLV_FIT_DB_ERROR) {
        fprintf(stderr, "retentiond: the database failed during the fit; nothing was stored\n");
        return 1;
    }
    if (outcome == CLV_FIT_UNFIT) {
        fprintf(stderr, "retentiond: no model fitted: %s\n", r.detail);
        return 1;
    }
    const clv_model_row *m = &r.model;
    printf("tenant       %s\n", tenant);
    printf("fitted_at    %s\n", m->fitted_at);
    printf("as_of        %s\n", m->as_of);
    printf("customers    %d (%d repeat)\n", m->sample_size, m->repeat_size);
    printf("BG/NBD       r=%.6g alpha=%.6g a=%.6g b=%.6g (alpha in days)  log-likelihood=%.4f\n", m->bg.r,
           m->bg.alpha, m->bg.a, m->bg.b, m->bg.loglik);
    printf("Gamma-Gamma  p=%.6g q=%.6g v=%.6g  log-likelihood=%.4f\n", m->gg.p, m->gg.q, m->gg.v, m->gg.loglik);
    printf("time         load %.1f ms, fit %.1f ms, predictions %.1f ms, store %.1f ms, total %.1f ms\n",
           r.load_ms, r.fit_ms, r.predict_ms, r.store_ms, r.total_ms);
    return 0;
}

/* ---- background tasks: the scheduled CLV refit and the upkeep ----
 * One thread each, with its own connection (never a pool worker: a fit of a big tenant would
 * hold a worker for its whole duration). They sleep on a condition variable, so stopping the
 * service wakes them at once; a task in progress finishes its current tenant first. */

static struct {
    pthread_t thread, rfm_thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool running, rfm_running, stopping;
} refit = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static bool refit_wait(int seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&refit.lock);
    while (!refit.stopping && pthread_cond_timedwait(&refit.cond, &refit.lock, &until) == 0)
        ;
    bool stop = refit.stopping;
    pthread_mutex_unlock(&refit.lock);
    return !stop;
}

static bool refit_stopping(void)
{
    pthread_mutex_lock(&refit.lock);
    bool stop = refit.stopping;
    pthread_mutex_unlock(&refit.lock);
    return stop;
}

static void refit_all(void)
{
    PGconn *conn = db_connect(config.database_url);
    if (!conn) {
        rd_log(LOG_WARN, "msg=\"scheduled clv refit skipped: no database connection\"");
        return;
    }
    int64_t *ids = NULL;
    int n = store_clv_tenants(conn, &ids);
    int fitted = 0, unfit = 0, failed = 0;
    for (int i = 0; i < n && !refit_stopping(); i++) {
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
    while (refit_wait(config.clv_refit_interval))
        refit_all();
    return NULL;
}

/* The upkeep, every rfm_refresh_interval seconds:
 *  - keeps every tenant's RFM quintile boundaries younger than the 5 minutes after which a
 *    profile request would recompute them itself (a sort of the tenant's customers: hundreds
 *    of milliseconds at 100 k);
 *  - adds every tenant's rung changes of the UTC days that ended to the daily aggregate the
 *    ladder reads (the days after it are read row by row), and folds in late changes;
 *  - brings current the customers a bulk load left pending for longer than
 *    rollup_sweep_after seconds: a load cut short (process killed, connection lost) before
 *    its own flush;
 *  - deletes the report_changes rows behind the horizon (migration 017). */
static void upkeep_all(void)
{
    PGconn *conn = db_connect(config.database_url);
    if (!conn) {
        rd_log(LOG_WARN, "msg=\"upkeep skipped: no database connection\"");
        return;
    }
    int64_t *ids = NULL;
    int n = store_clv_tenants(conn, &ids);
    int failed = 0, ladder_days = 0, ladder_busy = 0;
    for (int i = 0; i < n && !refit_stopping() && PQstatus(conn) == CONNECTION_OK; i++) {
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
    for (int i = 0; i < swept_tenants && !refit_stopping() && PQstatus(conn) == CONNECTION_OK; i++)
        if (store_rollup_flush(conn, ids[i], config.rollup_sweep_after, &swept) != RD_OK)
            failed++;
    free(ids);
    int64_t pruned = 0;
    if (PQstatus(conn) == CONNECTION_OK && store_report_changes_prune(conn, &pruned) != RD_OK)
        failed++;
    PQfinish(conn);
    stats_add(&stats.rollups_flushed, (uint64_t)swept);
    rd_log(failed ? LOG_WARN : swept || ladder_days ? LOG_INFO : LOG_DEBUG,
           "msg=\"upkeep\" rfm_tenants=%d ladder_days=%d ladder_busy=%d rollups_swept=%lld report_changes_pruned=%lld "
           "failed=%d",
           n < 0 ? 0 : n, ladder_days, ladder_busy, (long long)swept, (long long)pruned, failed);
}

static void *upkeep_main(void *arg)
{
    (void)arg;
    while (refit_wait(config.rfm_refresh_interval))
        upkeep_all();
    return NULL;
}

void api_start_background(void)
{
    refit.stopping = false;
    if (config.clv_refit_interval > 0 && !refit.running) {
        if (pthread_create(&refit.thread, NULL, refit_main, NULL) == 0)
            refit.running = true;
        else
            rd_log(LOG_ERROR, "msg=\"cannot start the clv refit thread\"");
    }
    if (config.rfm_refresh_interval > 0 && !refit.rfm_running) {
        if (pthread_create(&refit.rfm_thread, NULL, upkeep_main, NULL) == 0)
            refit.rfm_running = true;
        else
            rd_log(LOG_ERROR, "msg=\"cannot start the upkeep thread\"");
    }
}

void api_stop_background(void)
{
    if (!refit.running && !refit.rfm_running)
        return;
    pthread_mutex_lock(&refit.lock);
    refit.stopping = true;
    pthread_cond_broadcast(&refit.cond);
    pthread_mutex_unlock(&refit.lock);
    if (refit.running)
        pthread_join(refit.thread, NULL);
    if (refit.rfm_running)
        pthread_join(refit.rfm_thread, NULL);
    refit.running = refit.rfm_running = false;
}
