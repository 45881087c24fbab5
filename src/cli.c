/* cli.c - the import and fit sub-commands, and serve's background tasks.
 *
 * import reads NDJSON or CSV through the same batch reader as POST /v1/batch and commits
 * every IMPORT_FLUSH_ROWS valid records in one transaction, so a history of millions of rows
 * streams through bounded memory. */
#include "retentiond/cli.h"

#include "retentiond/domain/batch.h"
#include "retentiond/store/ingest.h"
#include "retentiond/store/tenants.h"
#include "retentiond/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMPORT_FLUSH_ROWS 5000

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
    http_tenant t;
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
    char chunk[1 << 16];
    size_t n;
    for (;;) {
        n = fread(chunk, 1, sizeof chunk, f);
        if (n)
            batch_feed(&b, chunk, n);
        else
            batch_finish(&b);
        if (ingest_set_size(&b.set) >= IMPORT_FLUSH_ROWS || (!n && ingest_set_size(&b.set))) {
            if (store_ingest_commit(conn, t.id, &b.set, &b.counts) != RD_OK) {
                fprintf(stderr, "\nretentiond: the database failed near line %llu; rows before were committed, "
                        "re-running the import is safe\n", (unsigned long long)b.line_no);
                rc = 1;
                break;
            }
            ingest_set_clear(&b.set);
        }
        if (tty && now_usec() - last > 250000) {
            progress(&b, started, false);
            last = now_usec();
        }
        if (!n)
            break;
    }
    if (f != stdin)
        fclose(f);
    progress(&b, started, true);
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
    (void)conn; (void)tenant; (void)as_of;
    fprintf(stderr, "retentiond: fit is not available yet\n");
    return 1;
}

void api_start_background(void) {}
void api_stop_background(void) {}
