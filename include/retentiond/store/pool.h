/* pool.h - the PostgreSQL connection pool and its database workers.
 *
 * A fixed number of worker threads each own one PGconn. Request handlers never touch libpq:
 * they wrap their database work in a db_job and submit it; a worker runs it and calls the
 * job's done() callback (which resumes the suspended HTTP connection).
 *
 * Group commit: jobs submitted with DB_JOB_GROUP run inside a transaction the worker opens and
 * shares with every other group job waiting in the queue, so N concurrent single-event writes
 * cost one commit; jobs that can be merged (run_many) share their statements too. done() is
 * called only after COMMIT returns, so a reply sent from done() means the data is durable. If
 * any job of a group fails, the group is rolled back and each of its jobs is re-run alone, so
 * one bad job never takes the others down. */
#ifndef RETENTIOND_STORE_POOL_H
#define RETENTIOND_STORE_POOL_H

#include "retentiond/util.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    DB_JOB_SOLO,   /* run() manages its own transactions (reads, batches, admin) */
    DB_JOB_GROUP,  /* run() is called inside a shared transaction; must not BEGIN/COMMIT */
} db_job_mode;

typedef enum {
    DB_DONE_OK,      /* run() returned RD_OK (and, for group jobs, the commit succeeded) */
    DB_DONE_DOWN,    /* the database is unreachable: answer 503 + Retry-After */
    DB_DONE_FAILED,  /* run() failed on a live connection (a bug or a constraint): answer 500 */
    DB_DONE_BUSY,    /* never ran: the queue was full or the pool is stopping */
} db_done_status;

typedef struct db_job db_job;
struct db_job {
    db_job_mode mode;
    /* Does the work. Returns RD_OK, or RD_ERR when a statement failed (the pool then decides
     * between DOWN and FAILED by the connection's state). May be called more than once for a
     * group job (after a group rollback), so it must reset whatever result it records. */
    int (*run)(PGconn *conn, void *arg);
    /* Optional, for group jobs: does the work of several jobs that share this run_many in
     * fewer statements, recording each job's result as its run() would. The pool passes it
     * every such job of a group at once. Returns RD_OK, or RD_ERR when a statement failed
     * (the group is then rolled back and each job re-run alone through run()). */
    int (*run_many)(PGconn *conn, db_job **jobs, int n);
    /* Called exactly once, from a worker thread, after run() and the commit. */
    void (*done)(void *arg, db_done_status status);
    void *arg;
    uint64_t lock_key; /* group jobs run in ascending lock_key order to keep lock order stable */
    db_job *next;      /* queue link, owned by the pool */
};

/* Registers a statement every connection prepares as soon as it connects. Call before
 * db_pool_start. name and sql must outlive the pool (string literals). */
void db_register_statement(const char *name, const char *sql, int nparams);

/* Starts `size` workers for conninfo. Connection failures are not fatal: workers keep
 * retrying, and jobs meanwhile finish with DB_DONE_DOWN. A connection idle for idle_check
 * seconds or more is checked with an empty query before its next job, and replaced if dead. */
int db_pool_start(const char *conninfo, int size, int queue_max, int group_max, int idle_check);

/* Queues a job. Returns RD_OK, or RD_ERR (queue full or stopping) without calling done(). */
int db_pool_submit(db_job *job);

/* Finishes every queued job, then stops the workers and closes their connections. */
void db_pool_stop(void);

/* Gauges for /metrics. */
typedef struct {
    int size, busy, queued, connected;
    uint64_t db_errors, commits, group_jobs;
} db_pool_stats;
void db_pool_get_stats(db_pool_stats *out);

/* True when the SQLSTATE of res says the connection, not the statement, is at fault. */
bool db_result_is_connection_error(const PGresult *res);

/* Opens a connection with the statements prepared, for sub-commands that run outside the
 * pool (migrate, tenant, import, fit). Returns NULL after logging the reason. */
PGconn *db_connect(const char *conninfo);

/* Whether the database has the citus extension (a distributed database, docs/scaling.md), as
 * the last connection made by db_connect found it; false before the first. */
bool db_is_citus(void);

/* 1 when conn's database has the citus extension, 0 when not, -1 on error (logged). */
int db_has_citus(PGconn *conn);

/* Runs a command without results; on failure logs it with `what` and returns RD_ERR. */
int db_exec(PGconn *conn, const char *sql, const char *what);

/* Opens a transaction, BEGIN `options`, in the shop's calendar: TimeZone is set to the tenant's
 * zone until it ends (sql/rules.sql), so date parameters are its local midnights, date_trunc and
 * interval arithmetic are local, and PostgreSQL writes instants with the local offset. With no
 * such tenant it stays the session's UTC. tenant_id is the id's decimal text. One round trip;
 * on failure no transaction is left open. */
int db_begin_tenant(PGconn *conn, const char *options, const char *tenant_id, const char *what);

/* A text[] parameter in PostgreSQL's array syntax: add each element (NULL for SQL NULL), then
 * db_array_end gives the text (owned by b). */
void db_array_add(buf *b, const char *s);
const char *db_array_end(buf *b);

/* Runs sql with text parameters; returns the result when its status is `want` (the caller
 * clears it), else logs it with `what` and returns NULL. */
PGresult *db_params(PGconn *conn, const char *sql, int n, const char *const *params, ExecStatusType want,
                    const char *what);

/* A command without rows: how many rows it touched, or -1 after logging the failure. */
int64_t db_command(PGconn *conn, const char *sql, int n, const char *const *params, const char *what);

/* An id as the decimal text of a statement parameter. */
void db_id_text(char out[24], int64_t id);

/* Logs a failed result with context. */
void db_log_error(const PGresult *res, PGconn *conn, const char *what);

/* Runs a prepared statement whose rows hold one bigint each (ids) into *ids (malloc'd, the
 * caller frees). Returns the number of rows, or -1 after logging a failure. */
int db_query_ids(PGconn *conn, const char *stmt, int nparams, const char *const *params, int64_t **ids);

/* Declares cursor `name` by `declare` (a DECLARE ... CURSOR FOR statement; its parameters as
 * PQexecParams takes them) inside the caller's transaction and fetches it to its end, `rows` at
 * a time in results of result_format (0 text, 1 binary), handing each fetch to each(res, arg).
 * Returns RD_OK; RD_ERR after logging a failed statement; or the first non-zero (positive)
 * return of each(), which ends the read. */
int db_cursor_read(PGconn *conn, const char *name, const char *declare, int nparams, const Oid *types,
                   const char *const *values, const int *lengths, const int *formats, int rows, int result_format,
                   int (*each)(const PGresult *res, void *arg), void *arg);

#endif
