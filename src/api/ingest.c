/* ingest.c - POST /v1/customers, /v1/orders, /v1/events, /v1/spend and /v1/batch.
 *
 * Single records are validated on the HTTP thread and written as group-commit jobs: many
 * concurrent requests share one transaction and one commit, and each gets its reply only
 * after that commit. Batches are streamed: NDJSON lines are validated as they arrive and
 * every BATCH_FLUSH_ROWS valid records are committed by a database job while the next chunk
 * is read and validated (two chunks in memory at most, whatever the body size). */
#include "retentiond/api/api.h"

#include "retentiond/config.h"
#include "retentiond/domain/batch.h"
#include "retentiond/stats.h"
#include "retentiond/store/ingest.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_FLUSH_ROWS 5000
#define BATCH_JSON_ARRAY_MAX (64L * 1024 * 1024)

/* The chunk a streamed batch writes in the background. The job shares nothing with the HTTP
 * thread but this struct, under `lock`; it outlives the request when the client leaves
 * meanwhile (`orphaned`: the job's end frees the context). */
typedef struct {
    pthread_mutex_t lock;
    db_job job;
    ingest_set set;
    ingest_counts counts;     /* the job's outcomes, added to the reader's when it is over */
    int64_t tenant_id;
    bool running;             /* submitted, not yet done */
    bool over;                /* done, outcome not yet taken by the HTTP thread */
    bool waiting;             /* the request is suspended until the job is done */
    bool orphaned;
    db_done_status status;
    http_req *rq;             /* valid while waiting */
    void *owner;              /* the ingest_ctx */
} chunk_job;

typedef struct {
    batch_reader reader;      /* for single records too: a set of one */
    const char *kind;
    char *id;                 /* the record's id, for the reply */
    const char *outcome;
    bool ndjson, started, finished;
    bool bulk;                /* a batch past its first chunk: rollups deferred to the end */
    bool flushed;             /* the deferred rollups were brought current */
    uint64_t chunk_end;       /* the last line of the chunks handed to the database so far */
    uint64_t write_from;      /* the first line of the last of them */
    chunk_job *bg;            /* streamed batches */
} ingest_ctx;

static void ingest_ctx_destroy(ingest_ctx *c)
{
    if (c->bg) {
        ingest_set_free(&c->bg->set);
        pthread_mutex_destroy(&c->bg->lock);
        free(c->bg);
    }
    batch_free(&c->reader);
    free(c->id);
    free(c);
}

static void ingest_ctx_free(void *p)
{
    ingest_ctx *c = p;
    if (c->bg) {
        pthread_mutex_lock(&c->bg->lock);
        bool running = c->bg->running;
        c->bg->orphaned = running;
        pthread_mutex_unlock(&c->bg->lock);
        if (running)
            return; /* the job frees it when it is done */
    }
    ingest_ctx_destroy(c);
}

static ingest_ctx *ctx_new(http_req *rq, const char *kind)
{
    ingest_ctx *c = xcalloc(1, sizeof *c);
    batch_init(&c->reader, rq->tenant.currency, "api");
    c->kind = kind;
    rq->ctx = c;
    rq->ctx_free = ingest_ctx_free;
    return c;
}

json_t *api_json_body(http_req *rq)
{
    if (!http_content_type_is(rq, "application/json")) {
        http_reply_problem(rq, 415, "Unsupported Media Type", "send Content-Type: application/json", NULL);
        return NULL;
    }
    json_error_t err;
    json_t *v = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, JSON_REJECT_DUPLICATES, &err);
    if (!v) {
        char detail[320];
        snprintf(detail, sizeof detail, "malformed JSON at line %d, column %d: %s", err.line, err.column, err.text);
        http_reply_problem(rq, 400, "Bad Request", detail, NULL);
    }
    return v;
}

/* Adds a committed set's outcomes to the process counters. */
static void count_outcomes(const ingest_set *s, const ingest_counts *c)
{
    int kind = s->n_orders ? STATS_KIND_ORDER : s->n_customers ? STATS_KIND_CUSTOMER
               : s->n_events ? STATS_KIND_EVENT : STATS_KIND_SPEND;
    stats_add(&stats.ingested[kind][stats_source(s->source)], c->created + c->updated);
    stats_add(&stats.duplicates, c->duplicates);
}

static int single_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    ingest_ctx *c = rq->ctx;
    memset(&c->reader.counts, 0, sizeof c->reader.counts);
    return store_ingest(conn, rq->tenant.id, &c->reader.set, &c->reader.counts, &c->outcome);
}

/* What a single-record request can be merged as: its one order, or its one event unless a
 * referral (which also writes the customer it names). */
typedef enum { MERGE_NONE, MERGE_ORDER, MERGE_EVENT } merge_kind;

static merge_kind merge_kind_of(const http_req *rq)
{
    const ingest_set *s = &((const ingest_ctx *)rq->ctx)->reader.set;
    if (ingest_set_size(s) != 1)
        return MERGE_NONE;
    if (s->n_orders == 1)
        return MERGE_ORDER;
    if (s->n_events == 1 && strcmp(s->events[0].type, "referral") != 0)
        return MERGE_EVENT;
    return MERGE_NONE;
}

/* The customer and the record id of a mergeable request. */
static void merge_keys(const http_req *rq, const char **customer, const char **id)
{
    const ingest_set *s = &((const ingest_ctx *)rq->ctx)->reader.set;
    if (s->n_orders) {
        *customer = s->orders[0].customer_id;
        *id = s->orders[0].order_id;
    } else {
        *customer = s->events[0].customer_id;
        *id = s->events[0].event_id;
    }
}

/* True when rq shares a customer or a record id with one of the round's requests. */
static bool clashes(http_req *const *round, int m, const http_req *rq)
{
    const char *cu, *id;
    merge_keys(rq, &cu, &id);
    for (int i = 0; i < m; i++) {
        const char *cu2, *id2;
        merge_keys(round[i], &cu2, &id2);
        if (strcmp(cu, cu2) == 0 || strcmp(id, id2) == 0)
            return true;
    }
    return false;
}

/* Writes one round (m >= 2 requests of one tenant and kind) in one call and gives each
 * request the outcome and counts its own call would have given. */
static int run_round(PGconn *conn, http_req *const *round, int m, merge_kind kind, const char **outcomes)
{
    int64_t tenant = round[0]->tenant.id;
    int rc;
    if (kind == MERGE_ORDER) {
        const rd_order **orders = xmalloc(sizeof *orders * (size_t)m);
        for (int k = 0; k < m; k++)
            orders[k] = &((ingest_ctx *)round[k]->ctx)->reader.set.orders[0];
        rc = store_ingest_orders_each(conn, tenant, orders, (size_t)m, outcomes);
        free(orders);
    } else {
        const rd_event **events = xmalloc(sizeof *events * (size_t)m);
        for (int k = 0; k < m; k++)
            events[k] = &((ingest_ctx *)round[k]->ctx)->reader.set.events[0];
        const char *source = ((ingest_ctx *)round[0]->ctx)->reader.set.source;
        rc = store_ingest_events_each(conn, tenant, source ? source : "api", events, (size_t)m, outcomes);
        free(events);
    }
    if (rc != RD_OK)
        return rc;
    for (int k = 0; k < m; k++) {
        ingest_ctx *c = round[k]->ctx;
        memset(&c->reader.counts, 0, sizeof c->reader.counts);
        c->outcome = outcomes[k];
        ingest_counts_add(&c->reader.counts, outcomes[k]);
    }
    stats_add(&stats.merged, (uint64_t)m);
    return RD_OK;
}

/* The single orders and events of a commit group, merged: one *_each call per round, a round
 * being requests of one tenant and kind with no customer or record id twice (so each is
 * ingested as if alone: two states of one order keep their sequential outcomes, and a
 * customer's rung changes one record at a time). A request that would make a round of one,
 * or cannot be merged, runs alone. */
static int single_run_many(PGconn *conn, db_job **jobs, int n)
{
    http_req **waiting = xmalloc(sizeof *waiting * (size_t)n);
    http_req **round = xmalloc(sizeof *round * (size_t)n);
    const char **outcomes = xmalloc(sizeof *outcomes * (size_t)n);
    bool *taken = xmalloc(sizeof *taken * (size_t)n);
    int left = 0, rc = RD_OK;
    for (int i = 0; i < n; i++) {
        http_req *rq = jobs[i]->arg;
        if (merge_kind_of(rq) != MERGE_NONE)
            waiting[left++] = rq;
        else if ((rc = single_run(conn, rq)) != RD_OK)
            goto out;
    }
    while (left > 0) {
        /* the round: the first waiting request, and every later one of its tenant and kind
         * that clashes with none taken; the others wait for a later round, in their order */
        merge_kind kind = merge_kind_of(waiting[0]);
        int m = 0, kept = 0;
        for (int i = 0; i < left; i++) {
            taken[i] = waiting[i]->tenant.id == waiting[0]->tenant.id && merge_kind_of(waiting[i]) == kind &&
                       !clashes(round, m, waiting[i]);
            if (taken[i])
                round[m++] = waiting[i];
        }
        rc = m == 1 ? single_run(conn, round[0]) : run_round(conn, round, m, kind, outcomes);
        if (rc != RD_OK)
            goto out;
        for (int i = 0; i < left; i++)
            if (!taken[i])
                waiting[kept++] = waiting[i];
        left = kept;
    }
out:
    free(waiting);
    free(round);
    free(outcomes);
    free(taken);
    return rc;
}

static int single_after(http_req *rq, db_done_status st)
{
    ingest_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    count_outcomes(&c->reader.set, &c->reader.counts);
    const char *outcome = c->outcome ? c->outcome : "duplicate";
    char id_field[32];
    snprintf(id_field, sizeof id_field, "%s_id", c->kind);
    json_t *body = json_pack("{s:s, s:s}", "status", outcome, "kind", c->kind);
    if (c->id)
        json_object_set_new(body, strcmp(c->kind, "spend") == 0 ? "id" : id_field, json_string(c->id));
    if (strcmp(outcome, "duplicate") == 0)
        json_object_set_new(body, "detail", json_string("already stored with the same content; nothing changed"));
    else if (strcmp(outcome, "stale") == 0)
        json_object_set_new(body, "detail", json_string("a newer state of this order is stored; this one was ignored"));
    http_reply_json(rq, strcmp(outcome, "created") == 0 ? 201 : 200, body);
    return HTTP_REPLIED;
}

static int single_ingest(http_req *rq, const char *kind)
{
    json_t *obj = api_json_body(rq);
    if (!obj)
        return HTTP_REPLIED;
    if (!json_is_object(obj)) {
        json_decref(obj);
        http_reply_problem(rq, 400, "Bad Request", "the body must be a JSON object", NULL);
        return HTTP_REPLIED;
    }
    ingest_ctx *c = ctx_new(rq, kind);
    c->reader.default_kind = kind;
    if (strcmp(kind, "spend") != 0)
        json_object_del(obj, "kind"); /* the endpoint names the kind */
    batch_add_object(&c->reader, obj, 1);
    json_decref(obj);
    if (c->reader.counts.rejected) {
        stats_add(&stats.rejected, 1);
        json_t *first = json_array_get(c->reader.rejected, 0);
        http_reply_problem(rq, 422, "Unprocessable Content", "the record has invalid fields; nothing was stored",
                           json_incref(json_object_get(first, "errors")));
        return HTTP_REPLIED;
    }
    const ingest_set *s = &c->reader.set;
    const char *lock_on = s->n_orders ? s->orders[0].customer_id
                          : s->n_customers ? s->customers[0].customer_id
                          : s->n_events ? s->events[0].customer_id : "spend";
    c->id = xstrdup(s->n_orders ? s->orders[0].order_id
                    : s->n_customers ? s->customers[0].customer_id
                    : s->n_events ? s->events[0].event_id : s->spend[0].period_start);
    int r = http_defer(rq, DB_JOB_GROUP, hash_str(lock_on), single_run, single_after);
    if (merge_kind_of(rq) != MERGE_NONE)
        rq->job.run_many = single_run_many;
    return r;
}

int api_post_customer(http_req *rq) { return single_ingest(rq, "customer"); }
int api_post_order(http_req *rq) { return single_ingest(rq, "order"); }
int api_post_event(http_req *rq) { return single_ingest(rq, "event"); }
int api_post_spend(http_req *rq) { return single_ingest(rq, "spend"); }

/* ---- batch ---- */

static int batch_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    ingest_ctx *c = rq->ctx;
    ingest_counts before = c->reader.counts;
    if (store_ingest_commit(conn, rq->tenant.id, &c->reader.set, c->bulk, &c->reader.counts) != RD_OK)
        return RD_ERR;
    /* per kind would need per-kind outcomes; a batch's records are counted under "order" when
     * it holds orders, else under its first kind */
    ingest_counts delta = {c->reader.counts.created - before.created, c->reader.counts.updated - before.updated,
                           c->reader.counts.duplicates - before.duplicates, 0};
    count_outcomes(&c->reader.set, &delta);
    return RD_OK;
}

/* A chunk of a streamed batch, written while the HTTP thread reads the next. Bulk: a batch
 * that fills a chunk before its end is a bulk load. */
static int chunk_run(PGconn *conn, void *arg)
{
    chunk_job *j = arg;
    memset(&j->counts, 0, sizeof j->counts);
    if (store_ingest_commit(conn, j->tenant_id, &j->set, true, &j->counts) != RD_OK)
        return RD_ERR;
    count_outcomes(&j->set, &j->counts);
    return RD_OK;
}

/* The end of a bulk batch: its customers' rollups, deferred chunk by chunk, brought current
 * before the reply. Its own job, so that a failure here never re-runs a committed chunk. */
static int batch_flush_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    int64_t n = 0;
    int rc = store_rollup_flush(conn, rq->tenant.id, -1, &n);
    stats_add(&stats.rollups_flushed, (uint64_t)n);
    return rc;
}

static void chunk_done(void *arg, db_done_status st)
{
    chunk_job *j = arg;
    pthread_mutex_lock(&j->lock);
    j->running = false;
    j->over = true;
    j->status = st;
    bool orphaned = j->orphaned, waiting = j->waiting;
    http_req *rq = j->rq;
    j->waiting = false;
    pthread_mutex_unlock(&j->lock);
    if (orphaned) /* the request ended meanwhile and left its context to this job */
        ingest_ctx_destroy(j->owner);
    else if (waiting)
        http_resume(rq, st); /* rq is alive: its connection was suspended until now */
}

/* While a chunk is being written: suspends the request until it is, then `then` runs.
 * Returns true when suspended. */
static bool chunk_wait(http_req *rq, ingest_ctx *c, int (*then)(http_req *, db_done_status))
{
    chunk_job *j = c->bg;
    if (!j)
        return false;
    pthread_mutex_lock(&j->lock);
    bool running = j->running;
    if (running) {
        j->waiting = true;
        j->rq = rq;
        http_suspend(rq, then); /* before the unlock: chunk_done resumes only what is suspended */
    }
    pthread_mutex_unlock(&j->lock);
    return running;
}

/* Takes the outcome of the chunk written in the background once it is over: its counts join
 * the reader's. Returns false when its write failed. */
static bool chunk_take(ingest_ctx *c)
{
    chunk_job *j = c->bg;
    if (!j)
        return true;
    pthread_mutex_lock(&j->lock);
    bool over = j->over;
    j->over = false;
    pthread_mutex_unlock(&j->lock);
    if (!over)
        return true;
    ingest_set_clear(&j->set);
    if (j->status != DB_DONE_OK)
        return false;
    c->reader.counts.created += j->counts.created;
    c->reader.counts.updated += j->counts.updated;
    c->reader.counts.duplicates += j->counts.duplicates;
    return true;
}

static int batch_reply(http_req *rq)
{
    ingest_ctx *c = rq->ctx;
    stats_add(&stats.rejected, c->reader.counts.rejected);
    http_reply_json(rq, 200, batch_report(&c->reader));
    return HTTP_REPLIED;
}

/* The reply when the database failed: what was committed, and from which line on not. */
static int batch_fail(http_req *rq, db_done_status st)
{
    ingest_ctx *c = rq->ctx;
    char detail[320];
    unsigned long long committed = c->reader.counts.created + c->reader.counts.updated;
    if (c->flushed)
        snprintf(detail, sizeof detail,
                 "all %llu records were committed, but the database failed while bringing the customers' "
                 "rollups current; the background sweep will, or resend the batch (it is idempotent)",
                 committed);
    else
        snprintf(detail, sizeof detail,
                 "stopped at line %llu: the database failed. %llu records before it were committed; "
                 "resend the batch (it is idempotent)",
                 (unsigned long long)c->write_from, committed);
    http_reply_db_failure(rq, st);
    json_t *p = json_loads(rq->reply, 0, NULL);
    if (p) {
        json_object_set_new(p, "detail", json_string(detail));
        int status = rq->status, retry = rq->retry_after;
        http_reply_json(rq, status, p);
        rq->reply_type = "application/problem+json";
        rq->retry_after = retry;
    }
    return HTTP_REPLIED;
}

static int batch_after(http_req *rq, db_done_status st)
{
    ingest_ctx *c = rq->ctx;
    ingest_set_clear(&c->reader.set);
    if (st != DB_DONE_OK)
        return batch_fail(rq, st);
    if (c->finished && c->bulk && !c->flushed) {
        c->flushed = true;
        return http_defer(rq, DB_JOB_SOLO, 0, batch_flush_run, batch_after);
    }
    if (c->finished)
        return batch_reply(rq);
    return HTTP_REPLIED; /* keep reading the upload */
}

/* Marks the reader's records as the next chunk handed to the database. */
static void chunk_lines(ingest_ctx *c)
{
    c->write_from = c->chunk_end + 1;
    c->chunk_end = c->reader.line_no;
}

/* A full chunk of a streamed batch: written in the background while the upload goes on, once
 * the one before it is written (until then the request waits). */
static int chunk_submit(http_req *rq, db_done_status st)
{
    (void)st; /* the previous chunk's outcome is taken from it */
    ingest_ctx *c = rq->ctx;
    if (!c->bg) {
        chunk_job *j = xcalloc(1, sizeof *j);
        pthread_mutex_init(&j->lock, NULL);
        j->owner = c;
        j->tenant_id = rq->tenant.id;
        j->set.source = c->reader.set.source;
        j->job = (db_job){.mode = DB_JOB_SOLO, .run = chunk_run, .done = chunk_done, .arg = j};
        c->bg = j;
    }
    if (chunk_wait(rq, c, chunk_submit))
        return HTTP_WAITING;
    if (!chunk_take(c))
        return batch_fail(rq, c->bg->status);
    chunk_job *j = c->bg;
    ingest_set t = j->set; /* swapped: the two sets keep their arrays */
    j->set = c->reader.set;
    c->reader.set = t;
    chunk_lines(c);
    c->bulk = true; /* more than one chunk: defer the rollups to the end */
    pthread_mutex_lock(&j->lock);
    j->running = db_pool_submit(&j->job) == RD_OK;
    pthread_mutex_unlock(&j->lock);
    if (!j->running) {
        ingest_set_clear(&j->set);
        return batch_fail(rq, DB_DONE_BUSY);
    }
    return HTTP_REPLIED;
}

/* The end of the body: the last chunk, once the one before it is written; then the flush (for
 * a bulk load) and the reply. */
static int batch_end_write(http_req *rq, db_done_status st)
{
    (void)st;
    ingest_ctx *c = rq->ctx;
    if (chunk_wait(rq, c, batch_end_write))
        return HTTP_WAITING;
    if (!chunk_take(c))
        return batch_fail(rq, c->bg->status);
    if (ingest_set_size(&c->reader.set) > 0) {
        chunk_lines(c);
        return http_defer(rq, DB_JOB_SOLO, 0, batch_run, batch_after);
    }
    return batch_after(rq, DB_DONE_OK); /* nothing left to write: flush (if bulk) and reply */
}

int api_batch_chunk(http_req *rq, const char *data, size_t len)
{
    ingest_ctx *c = rq->ctx;
    if (!c) {
        c = ctx_new(rq, "batch");
        if (http_content_type_is(rq, "application/x-ndjson") || http_content_type_is(rq, "application/jsonl") ||
            http_content_type_is(rq, "text/csv")) {
            c->ndjson = true;
            c->reader.csv = http_content_type_is(rq, "text/csv");
        } else if (!http_content_type_is(rq, "application/json")) {
            http_reply_problem(rq, 415, "Unsupported Media Type",
                               "send application/x-ndjson (streamed), text/csv or a JSON array as application/json", NULL);
            return HTTP_REPLIED;
        }
    }
    if (!c->ndjson) {
        if ((long)(rq->body.len + len) > BATCH_JSON_ARRAY_MAX) {
            http_reply_problem(rq, 413, "Content Too Large",
                               "a JSON-array batch is limited to 64 MiB; stream larger ones as NDJSON", NULL);
            return HTTP_REPLIED;
        }
        buf_append(&rq->body, data, len);
        return HTTP_REPLIED;
    }
    if (!chunk_take(c)) /* the chunk before failed: stop reading */
        return batch_fail(rq, c->bg->status);
    batch_feed(&c->reader, data, len);
    if (ingest_set_size(&c->reader.set) >= BATCH_FLUSH_ROWS)
        return chunk_submit(rq, DB_DONE_OK);
    return HTTP_REPLIED;
}

int api_batch_end(http_req *rq)
{
    ingest_ctx *c = rq->ctx;
    if (!c) { /* empty body */
        if (api_batch_chunk(rq, "", 0) == HTTP_REPLIED && rq->reply)
            return HTTP_REPLIED;
        c = rq->ctx;
    }
    c->finished = true;
    if (c->ndjson) {
        batch_finish(&c->reader);
    } else {
        json_t *arr = api_json_body(rq);
        if (!arr)
            return HTTP_REPLIED;
        if (!json_is_array(arr)) {
            json_decref(arr);
            http_reply_problem(rq, 400, "Bad Request", "a JSON batch must be an array of objects", NULL);
            return HTTP_REPLIED;
        }
        size_t i;
        json_t *item;
        json_array_foreach(arr, i, item)
            batch_add_object(&c->reader, item, i + 1);
        c->reader.line_no = json_array_size(arr);
        json_decref(arr);
        buf_free(&rq->body);
    }
    return batch_end_write(rq, DB_DONE_OK);
}
