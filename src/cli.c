/* cli.c - the import and fit sub-commands.
 *
 * import reads NDJSON or CSV through the same batch reader as POST /v1/batch and commits
 * every IMPORT_FLUSH_ROWS valid records in one transaction, so a history of millions of rows
 * streams through bounded memory. Past the first chunk it is a bulk load: the customers'
 * rollups are brought current once, at the end (store_rollup_flush). As POST /v1/batch does,
 * it reads and validates the next chunk while a writer thread commits the one before (one
 * chunk in flight, on the one connection, which the reader does not touch meanwhile). */
#include "retentiond/cli.h"

#include "retentiond/api/api.h"
#include "retentiond/domain/batch.h"
#include "retentiond/domain/model.h"
#include "retentiond/store/ingest.h"
#include "retentiond/store/tenants.h"
#include "retentiond/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int cli_tenant(PGconn *conn, const char *name, rd_tenant *t)
{
    int found = store_tenant_find(conn, name, t);
    if (found == 0)
        fprintf(stderr, "retentiond: no tenant \"%s\"\n", name);
    return found > 0 ? 0 : found == 0 ? 3 : 1;
}

/* Loads f (NDJSON, or CSV when csv) into tenant t, as `import` does. */
static int import_stream(PGconn *conn, const rd_tenant *tp, FILE *f, bool csv, const char *kind)
{
    rd_tenant t = *tp;
    batch_reader b;
    batch_init(&b, t.currency, "import");
    b.default_kind = kind;
    b.csv = csv;
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

int cli_import(PGconn *conn, const char *tenant, const char *path, const char *kind)
{
    rd_tenant t;
    int err = cli_tenant(conn, tenant, &t);
    if (err != 0)
        return err;
    if (kind && strcmp(kind, "order") && strcmp(kind, "customer") && strcmp(kind, "event") && strcmp(kind, "spend")) {
        fprintf(stderr, "retentiond: --kind must be order, customer, event or spend\n");
        return 2;
    }
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t plen = strlen(path);
    int rc = import_stream(conn, &t, f, plen > 4 && strcmp(path + plen - 4, ".csv") == 0, kind);
    if (f != stdin)
        fclose(f);
    return rc;
}

int cli_import_text(PGconn *conn, const rd_tenant *t, const char *ndjson, size_t len)
{
    FILE *f = fmemopen((void *)ndjson, len, "rb");
    if (!f) {
        perror("fmemopen");
        return 1;
    }
    int rc = import_stream(conn, t, f, false, NULL);
    fclose(f);
    return rc;
}

int cli_fit(PGconn *conn, const char *tenant, const char *as_of)
{
    rd_tenant t;
    int err = cli_tenant(conn, tenant, &t);
    if (err != 0)
        return err;
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
