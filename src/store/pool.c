/* pool.c - database workers: one thread and one PGconn each, a bounded FIFO of jobs, group
 * commit of concurrent writes, reconnection with back-off.
 *
 * Why workers and not a connection checked out by the HTTP thread: libpq calls block, and the
 * HTTP threads run an epoll loop that must never block. Workers also make group commit
 * natural: a worker that finds several write jobs waiting commits them together.
 *
 * Idle workers wait on a stack, each on its own condition variable, and a new job wakes the
 * one that went idle last. A shared condition variable wakes them in turn instead, so at low
 * concurrency every worker, its connection and its backend process serve a job only every
 * pool-size requests, each time with caches gone cold: a profile's statement took ~450 µs
 * that way against ~270 µs on a connection kept busy. The workers at the bottom of the stack
 * may then sit idle for hours, long enough for a restart of PostgreSQL, an idle timeout or a
 * proxy to have closed their connections: a connection idle for pool.idle_check_usec is
 * checked with an empty query (one round trip) before its next job, and replaced if dead, so
 * that the job does not fail on it. A worker without a connection waits at the bottom of the
 * stack, so that while its reconnection fails the others take the jobs. */
#include "retentiond/store/pool.h"

#include "retentiond/log.h"
#include "retentiond/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_STATEMENTS 128
#define RECONNECT_INTERVAL_USEC 500000

typedef struct {
    const char *name, *sql;
    int nparams;
} stmt_def;

static stmt_def statements[MAX_STATEMENTS];
static int n_statements;

typedef struct worker {
    pthread_t thread;
    PGconn *conn;
    int64_t last_failure; /* when the last connect failed; 0 after a success */
    int64_t last_used;        /* when its last job ended */
    pthread_cond_t wake;
    bool idle;                /* on pool.idle, under pool.lock */
    struct worker *next_idle;
} worker;

static struct {
    char *conninfo;
    worker *workers;
    int size, queue_max, group_max;
    int64_t idle_check_usec;
    pthread_mutex_t lock;
    worker *idle; /* the stack of idle workers, the latest to go idle on top */
    db_job *head, *tail;
    int queued, busy, connected;
    bool stopping;
    uint64_t db_errors, commits, group_jobs;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

void db_register_statement(const char *name, const char *sql, int nparams)
{
    if (n_statements == MAX_STATEMENTS) {
        rd_log(LOG_ERROR, "msg=\"too many prepared statements\"");
        abort();
    }
    statements[n_statements++] = (stmt_def){name, sql, nparams};
}

void db_log_error(const PGresult *res, PGconn *conn, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg)
        msg = conn ? PQerrorMessage(conn) : "no connection";
    char clean[512];
    size_t j = 0;
    for (size_t i = 0; msg[i] && j < sizeof clean - 1; i++)
        clean[j++] = (msg[i] == '\n' || msg[i] == '"') ? ' ' : msg[i];
    clean[j] = '\0';
    rd_log(LOG_ERROR, "msg=\"database error\" during=\"%s\" sqlstate=%s error=\"%s\"", what,
           state ? state : "-", clean);
}

int db_query_ids(PGconn *conn, const char *stmt, int nparams, const char *const *params, int64_t **ids)
{
    *ids = NULL;
    PGresult *res = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_log_error(res, conn, stmt);
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    *ids = xcalloc(n ? (size_t)n : 1, sizeof **ids);
    for (int i = 0; i < n; i++)
        (*ids)[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    PQclear(res);
    return n;
}

int db_cursor_read(PGconn *conn, const char *name, const char *declare, int nparams, const Oid *types,
                   const char *const *values, const int *lengths, const int *formats, int rows, int result_format,
                   int (*each)(const PGresult *res, void *arg), void *arg)
{
    PGresult *res = PQexecParams(conn, declare, nparams, types, values, lengths, formats, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        db_log_error(res, conn, name);
        PQclear(res);
        return RD_ERR;
    }
    PQclear(res);
    char fetch[128];
    snprintf(fetch, sizeof fetch, "FETCH FORWARD %d FROM %s", rows, name);
    for (;;) {
        res = PQexecParams(conn, fetch, 0, NULL, NULL, NULL, NULL, result_format);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            db_log_error(res, conn, name);
            PQclear(res);
            return RD_ERR;
        }
        int n = PQntuples(res), rc = each(res, arg);
        PQclear(res);
        if (rc != 0)
            return rc;
        if (n < rows)
            return RD_OK;
    }
}

int db_exec(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? RD_OK : RD_ERR;
    if (rc != RD_OK)
        db_log_error(res, conn, what);
    PQclear(res);
    return rc;
}

void db_id_text(char out[24], int64_t id)
{
    snprintf(out, 24, "%lld", (long long)id);
}

PGresult *db_params(PGconn *conn, const char *sql, int n, const char *const *params, ExecStatusType want,
                    const char *what)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == want)
        return res;
    db_log_error(res, conn, what);
    PQclear(res);
    return NULL;
}

int64_t db_command(PGconn *conn, const char *sql, int n, const char *const *params, const char *what)
{
    PGresult *res = db_params(conn, sql, n, params, PGRES_COMMAND_OK, what);
    if (!res)
        return -1;
    int64_t rows = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return rows;
}

void db_array_add(buf *b, const char *s)
{
    buf_puts(b, b->len ? "," : "{");
    if (!s) {
        buf_puts(b, "NULL");
        return;
    }
    buf_append(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            buf_append(b, "\\", 1);
        buf_append(b, p, 1);
    }
    buf_append(b, "\"", 1);
}

const char *db_array_end(buf *b)
{
    if (!b->len)
        buf_puts(b, "{");
    buf_puts(b, "}");
    return b->data;
}

int db_begin_tenant(PGconn *conn, const char *options, const char *tenant_id, const char *what)
{
    size_t n = strlen(tenant_id);
    if (n == 0 || n > 19 || strspn(tenant_id, "0123456789") != n) {
        rd_log(LOG_ERROR, "msg=\"%s: not a tenant id\"", what);
        return RD_ERR;
    }
    char sql[512];
    int len = snprintf(sql, sizeof sql,
                       "BEGIN %s; SELECT set_config('TimeZone', timezone, true) FROM tenants WHERE tenant_id = %s",
                       options, tenant_id);
    if (len < 0 || (size_t)len >= sizeof sql) {
        rd_log(LOG_ERROR, "msg=\"%s: transaction options too long\"", what);
        return RD_ERR;
    }
    if (db_exec(conn, sql, what) == RD_OK)
        return RD_OK;
    PQclear(PQexec(conn, "ROLLBACK")); /* a statement after BEGIN failed: leave no transaction open */
    return RD_ERR;
}

bool db_result_is_connection_error(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state)
        return true; /* no SQLSTATE: the error came from libpq itself (connection lost) */
    /* class 08 connection exception, 57P0x shutdown/crash, 53 insufficient resources */
    return strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
           strncmp(state, "53", 2) == 0;
}

static int prepare_all(PGconn *conn)
{
    for (int i = 0; i < n_statements; i++) {
        PGresult *res = PQprepare(conn, statements[i].name, statements[i].sql, statements[i].nparams, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            db_log_error(res, conn, statements[i].name);
            PQclear(res);
            return RD_ERR;
        }
        PQclear(res);
    }
    return RD_OK;
}

/* Whether the database has the citus extension: set by every connection (db_connect). */
static atomic_bool citus_seen;

bool db_is_citus(void)
{
    return atomic_load(&citus_seen);
}

int db_has_citus(PGconn *conn)
{
    PGresult *res = db_params(conn, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')", 0, NULL,
                              PGRES_TUPLES_OK, "look for the citus extension");
    if (!res)
        return -1;
    int yes = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return yes;
}

/* Records whether conn's database has the citus extension. Returns RD_OK or RD_ERR (logged). */
static int note_citus(PGconn *conn)
{
    int yes = db_has_citus(conn);
    if (yes < 0)
        return RD_ERR;
    atomic_store(&citus_seen, yes == 1);
    return RD_OK;
}

PGconn *db_connect(const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        db_log_error(NULL, conn, "connect");
        PQfinish(conn);
        return NULL;
    }
    if (db_exec(conn, "SET application_name = 'retentiond'; SET TIME ZONE 'UTC'; SET client_min_messages = warning", "session setup") != RD_OK ||
        note_citus(conn) != RD_OK || prepare_all(conn) != RD_OK) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Ensures w->conn is usable; after a failed connect, tries again only RECONNECT_INTERVAL_USEC later. */
static bool worker_ensure_conn(worker *w)
{
    if (w->conn && PQstatus(w->conn) == CONNECTION_OK) {
        PGTransactionStatusType ts = PQtransactionStatus(w->conn);
        if (ts == PQTRANS_IDLE && now_usec() - w->last_used < pool.idle_check_usec)
            return true;
        if (ts == PQTRANS_IDLE) { /* idle for long: is it still there? */
            PGresult *res = PQexec(w->conn, "");
            bool alive = PQresultStatus(res) == PGRES_EMPTY_QUERY;
            PQclear(res);
            if (alive)
                return true;
            rd_log(LOG_WARN, "msg=\"idle database connection found closed; reconnecting\"");
        }
        if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
            if (db_exec(w->conn, "ROLLBACK", "reset connection") == RD_OK)
                return true;
        }
    }
    if (w->conn) {
        PQfinish(w->conn);
        w->conn = NULL;
        pthread_mutex_lock(&pool.lock);
        pool.connected--;
        pthread_mutex_unlock(&pool.lock);
    }
    /* Only a failed attempt throttles the next one: a connection PostgreSQL closed moments
     * after a successful connect is replaced at once. */
    int64_t now = now_usec();
    if (w->last_failure && now - w->last_failure < RECONNECT_INTERVAL_USEC)
        return false;
    w->conn = db_connect(pool.conninfo);
    if (!w->conn) {
        w->last_failure = now_usec();
        return false;
    }
    w->last_failure = 0;
    w->last_used = now_usec(); /* just answered */
    pthread_mutex_lock(&pool.lock);
    pool.connected++;
    pthread_mutex_unlock(&pool.lock);
    rd_log(LOG_INFO, "msg=\"database connection established\"");
    return true;
}

static db_done_status failure_status(worker *w)
{
    __atomic_add_fetch(&pool.db_errors, 1, __ATOMIC_RELAXED);
    if (!w->conn || PQstatus(w->conn) != CONNECTION_OK)
        return DB_DONE_DOWN;
    /* The statement failed on a live connection: probe the server, since a server shutting
     * down answers the failing statement before the socket closes. */
    PGresult *res = PQexec(w->conn, "ROLLBACK");
    bool dead = PQresultStatus(res) != PGRES_COMMAND_OK && db_result_is_connection_error(res);
    PQclear(res);
    return dead || PQstatus(w->conn) != CONNECTION_OK ? DB_DONE_DOWN : DB_DONE_FAILED;
}

static void run_solo(worker *w, db_job *job)
{
    if (!worker_ensure_conn(w)) {
        job->done(job->arg, DB_DONE_DOWN);
        return;
    }
    if (job->run(w->conn, job->arg) == RD_OK) {
        job->done(job->arg, DB_DONE_OK);
        return;
    }
    job->done(job->arg, failure_status(w));
}

/* Runs one group job alone in its own transaction (after a group rollback). */
static void run_group_alone(worker *w, db_job *job)
{
    if (!worker_ensure_conn(w)) {
        job->done(job->arg, DB_DONE_DOWN);
        return;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (db_exec(w->conn, "BEGIN", "begin") == RD_OK && job->run(w->conn, job->arg) == RD_OK) {
            PGresult *res = PQexec(w->conn, "COMMIT");
            bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
            if (!ok)
                db_log_error(res, w->conn, "commit");
            PQclear(res);
            if (ok) {
                __atomic_add_fetch(&pool.commits, 1, __ATOMIC_RELAXED);
                job->done(job->arg, DB_DONE_OK);
                return;
            }
        }
        db_done_status st = failure_status(w);
        if (st == DB_DONE_DOWN) {
            job->done(job->arg, st);
            return;
        }
        /* deadlock or serialization failure: retry; anything else repeats and fails again */
    }
    job->done(job->arg, DB_DONE_FAILED);
}

static int cmp_lock_key(const void *a, const void *b)
{
    uint64_t x = (*(db_job *const *)a)->lock_key, y = (*(db_job *const *)b)->lock_key;
    return x < y ? -1 : x > y;
}

/* Runs the group's mergeable jobs: each distinct run_many once, with all the jobs that share
 * it (in lock_key order). */
static int run_merged(PGconn *conn, db_job **jobs, int n)
{
    db_job **same = NULL;
    bool *taken = NULL;
    int rc = RD_OK;
    for (int i = 0; rc == RD_OK && i < n; i++) {
        if (!jobs[i]->run_many || (taken && taken[i]))
            continue;
        if (!same) {
            same = xmalloc(sizeof *same * (size_t)n);
            taken = xcalloc((size_t)n, sizeof *taken);
        }
        int m = 0;
        for (int j = i; j < n; j++)
            if (!taken[j] && jobs[j]->run_many == jobs[i]->run_many) {
                taken[j] = true;
                same[m++] = jobs[j];
            }
        rc = jobs[i]->run_many(conn, same, m);
    }
    free(same);
    free(taken);
    return rc;
}

static void run_group(worker *w, db_job **jobs, int n)
{
    __atomic_add_fetch(&pool.group_jobs, (uint64_t)n, __ATOMIC_RELAXED);
    if (n == 1) {
        run_group_alone(w, jobs[0]);
        return;
    }
    if (!worker_ensure_conn(w)) {
        for (int i = 0; i < n; i++)
            jobs[i]->done(jobs[i]->arg, DB_DONE_DOWN);
        return;
    }
    qsort(jobs, (size_t)n, sizeof *jobs, cmp_lock_key);
    bool ok = db_exec(w->conn, "BEGIN", "begin group") == RD_OK;
    ok = ok && run_merged(w->conn, jobs, n) == RD_OK;
    for (int i = 0; ok && i < n; i++)
        if (!jobs[i]->run_many)
            ok = jobs[i]->run(w->conn, jobs[i]->arg) == RD_OK;
    if (ok) {
        PGresult *res = PQexec(w->conn, "COMMIT");
        ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            db_log_error(res, w->conn, "commit group");
        PQclear(res);
        if (ok) {
            __atomic_add_fetch(&pool.commits, 1, __ATOMIC_RELAXED);
            for (int i = 0; i < n; i++)
                jobs[i]->done(jobs[i]->arg, DB_DONE_OK);
            return;
        }
    }
    /* Something failed: nothing of the group is committed. If the database is gone, say so to
     * all; otherwise isolate the culprit by running each job on its own. */
    if (failure_status(w) == DB_DONE_DOWN) {
        for (int i = 0; i < n; i++)
            jobs[i]->done(jobs[i]->arg, DB_DONE_DOWN);
        return;
    }
    for (int i = 0; i < n; i++)
        run_group_alone(w, jobs[i]);
}

static db_job *pop_locked(void)
{
    db_job *job = pool.head;
    if (job) {
        pool.head = job->next;
        if (!pool.head)
            pool.tail = NULL;
        pool.queued--;
    }
    return job;
}

/* Under pool.lock. */
static void idle_remove(worker *w)
{
    for (worker **p = &pool.idle; *p; p = &(*p)->next_idle)
        if (*p == w) {
            *p = w->next_idle;
            break;
        }
    w->idle = false;
}

/* Under pool.lock: wakes the worker that went idle last, if any. */
static void wake_one(void)
{
    worker *w = pool.idle;
    if (!w)
        return;
    pool.idle = w->next_idle;
    w->idle = false;
    pthread_cond_signal(&w->wake);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    db_job **group = xmalloc(sizeof *group * (size_t)pool.group_max);
    worker_ensure_conn(w);
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        while (!pool.head && !pool.stopping) {
            if (!w->idle && w->conn) { /* on top */
                w->idle = true;
                w->next_idle = pool.idle;
                pool.idle = w;
            } else if (!w->idle) { /* no connection: at the bottom */
                worker **p = &pool.idle;
                while (*p)
                    p = &(*p)->next_idle;
                w->idle = true;
                w->next_idle = NULL;
                *p = w;
            }
            pthread_cond_wait(&w->wake, &pool.lock);
        }
        if (w->idle) /* woken by the stop, or found a job queued before its turn */
            idle_remove(w);
        db_job *job = pop_locked();
        if (!job) { /* stopping and drained */
            pthread_mutex_unlock(&pool.lock);
            break;
        }
        int n = 0;
        if (job->mode == DB_JOB_GROUP) {
            group[n++] = job;
            /* take every other group job already waiting, up to the limit */
            db_job **link = &pool.head, *prev = NULL;
            while (*link && n < pool.group_max) {
                db_job *j = *link;
                if (j->mode == DB_JOB_GROUP) {
                    *link = j->next;
                    pool.queued--;
                    group[n++] = j;
                } else {
                    prev = j;
                    link = &j->next;
                }
            }
            if (!*link) /* scanned to the end: the last job kept is the new tail */
                pool.tail = prev;
        }
        pool.busy++;
        pthread_mutex_unlock(&pool.lock);

        if (n)
            run_group(w, group, n);
        else
            run_solo(w, job);

        w->last_used = now_usec();
        pthread_mutex_lock(&pool.lock);
        pool.busy--;
        pthread_mutex_unlock(&pool.lock);
    }
    free(group);
    if (w->conn) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    return NULL;
}

int db_pool_start(const char *conninfo, int size, int queue_max, int group_max, int idle_check)
{
    pool.idle_check_usec = (int64_t)idle_check * 1000000;
    pool.conninfo = xstrdup(conninfo);
    pool.size = size;
    pool.queue_max = queue_max;
    pool.group_max = group_max;
    pool.workers = xcalloc((size_t)size, sizeof *pool.workers);
    for (int i = 0; i < size; i++)
        pthread_cond_init(&pool.workers[i].wake, NULL);
    for (int i = 0; i < size; i++)
        if (pthread_create(&pool.workers[i].thread, NULL, worker_main, &pool.workers[i]) != 0) {
            rd_log(LOG_ERROR, "msg=\"cannot start database worker\"");
            pool.size = i;
            db_pool_stop();
            return RD_ERR;
        }
    return RD_OK;
}

int db_pool_submit(db_job *job)
{
    pthread_mutex_lock(&pool.lock);
    if (pool.stopping || pool.queued >= pool.queue_max) {
        pthread_mutex_unlock(&pool.lock);
        return RD_ERR;
    }
    job->next = NULL;
    if (pool.tail)
        pool.tail->next = job;
    else
        pool.head = job;
    pool.tail = job;
    pool.queued++;
    wake_one();
    pthread_mutex_unlock(&pool.lock);
    return RD_OK;
}

void db_pool_stop(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.stopping = true;
    for (int i = 0; i < pool.size; i++)
        pthread_cond_signal(&pool.workers[i].wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.size; i++)
        pthread_join(pool.workers[i].thread, NULL);
    for (int i = 0; i < pool.size; i++)
        pthread_cond_destroy(&pool.workers[i].wake);
    pool.idle = NULL;
    free(pool.workers);
    free(pool.conninfo);
    pool.workers = NULL;
    pool.conninfo = NULL;
    pool.size = 0;
}

void db_pool_get_stats(db_pool_stats *out)
{
    pthread_mutex_lock(&pool.lock);
    out->size = pool.size;
    out->busy = pool.busy;
    out->queued = pool.queued;
    out->connected = pool.connected;
    pthread_mutex_unlock(&pool.lock);
    out->db_errors = __atomic_load_n(&pool.db_errors, __ATOMIC_RELAXED);
    out->commits = __atomic_load_n(&pool.commits, __ATOMIC_RELAXED);
    out->group_jobs = __atomic_load_n(&pool.group_jobs, __ATOMIC_RELAXED);
}
