/* server.h - the HTTP layer: libmicrohttpd daemon, route table, per-request state, replies.
 *
 * Request life: route match (404/405) → limits (413/429) → auth (401/403, a cache in front of
 * a database lookup) → body accumulation or streaming → handler. A handler either replies at
 * once (http_reply_*) or hands database work to the pool with http_defer(); the connection is
 * suspended until a database worker finishes and resumes it, then the reply is queued. */
#ifndef RETENTIOND_HTTP_SERVER_H
#define RETENTIOND_HTTP_SERVER_H

#include "retentiond/store/pool.h"
#include "retentiond/store/tenants.h"
#include "retentiond/util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum {
    SCOPE_PUBLIC = 0,   /* no credential (health, metrics, docs, dashboard) */
    SCOPE_INGEST = 1,
    SCOPE_READ = 2,
    SCOPE_ADMIN = 4,
    SCOPE_WEBHOOK = 8,  /* authenticated by the platform's signature inside the handler */
};

typedef struct http_req http_req;
typedef struct http_stream http_stream;

/* The media type of the CSV replies. */
#define HTTP_CSV_TYPE "text/csv; charset=utf-8"

/* How every JSON reply prints its numbers (and the CSV replies, csv.h, the same numbers). */
#define HTTP_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* Handler results. HTTP_WAITING: the handler called http_suspend(). */
enum { HTTP_REPLIED = 0, HTTP_DEFERRED = 1, HTTP_WAITING = 2 };

typedef struct {
    const char *method;
    const char *pattern;      /* "/v1/customers/{id}": {name} matches one non-empty segment */
    int scope;                /* SCOPE_* the caller's key must carry */
    /* Called once the whole body is in (or, for streaming routes, after the last chunk).
     * Returns HTTP_REPLIED after http_reply_*, or HTTP_DEFERRED after http_defer(). */
    int (*handler)(http_req *rq);
    /* Streaming routes: called for each body chunk instead of accumulating it. Returns
     * HTTP_REPLIED (continue, or a reply was set to end the request early) or HTTP_DEFERRED. */
    int (*on_chunk)(http_req *rq, const char *data, size_t len);
    bool big_body;            /* limit is max_batch_bytes instead of max_body_bytes */
} http_route;

#define HTTP_MAX_PARAMS 2

struct http_req {
    struct MHD_Connection *conn;
    const http_route *route;
    int route_index;
    const char *method;
    char *path;
    char *params[HTTP_MAX_PARAMS];
    rd_tenant tenant;         /* of an authenticated request (or a webhook's URL) */
    buf body;
    long body_seen;
    /* reply */
    int status;
    char *reply;
    const char *reply_type;
    int retry_after;          /* seconds; > 0 adds Retry-After */
    char *allow;              /* Allow header for 405 */
    char *disposition;        /* Content-Disposition header, or NULL */
    http_stream *stream;      /* a streamed body (stream.h) until its response takes it over */
    /* handler state: ctx is freed with ctx_free when the request ends */
    void *ctx;
    void (*ctx_free)(void *ctx);
    int (*after_db)(http_req *rq, db_done_status st); /* builds the reply after a deferred job */
    /* internals */
    int state;
    int64_t started;
    db_job job;
    db_job *own_job;          /* instead of job: one that outlives the request (http_defer_job) */
    const char *api_key;      /* presented key (points into MHD's header storage) */
    bool auth_checked;        /* the cache (and, on a miss, the database) was asked */
    bool counted;             /* recorded in the request statistics */
};

/* How every JSON body the service writes is printed (replies and outgoing webhooks alike). */
#define HTTP_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* Replies. All take ownership of what they are given. */
void http_reply_json(http_req *rq, int status, json_t *body);
void http_reply_text(http_req *rq, int status, const char *content_type, const char *text, size_t len);
/* problem+json (RFC 9457). `errors` is NULL or an array of {"field","message"} (stolen). */
void http_reply_problem(http_req *rq, int status, const char *title, const char *detail, json_t *errors);
/* The standard reply for a database job that did not finish with DB_DONE_OK. */
void http_reply_db_failure(http_req *rq, db_done_status st);

/* Hands work to a database worker: run(conn, rq) runs there; then after_db(rq, status) is
 * called on the HTTP thread to build the reply. Returns HTTP_DEFERRED. */
int http_defer(http_req *rq, db_job_mode mode, uint64_t lock_key, int (*run)(PGconn *, void *),
               int (*after_db)(http_req *rq, db_done_status st));

/* For a handler with database work of its own in flight while the request goes on (a streamed
 * batch writes one chunk while it reads the next): suspends the request until http_resume(),
 * after which after_db(rq, status) runs on the HTTP thread as after a deferred job. Returns
 * HTTP_WAITING. Call from the handler, on the HTTP thread. */
int http_suspend(http_req *rq, int (*after_db)(http_req *rq, db_done_status st));
/* Ends an http_suspend(), from any thread; touches nothing of rq afterwards. */
void http_resume(http_req *rq, db_done_status st);

/* A CSV reply built in memory: text/csv; charset=utf-8, as an attachment named
 * `name`-YYYY-MM-DD.csv (today, UTC). Takes the text of b (b is left empty). */
void http_reply_csv(http_req *rq, const char *name, buf *b);
/* The reply formats a resource may offer. */
typedef enum { HTTP_FORMAT_JSON, HTTP_FORMAT_CSV } http_format;
/* The format the request asks for: the query's format=json|csv, else text/csv when the Accept
 * header prefers it to application/json, else JSON. Returns RD_ERR after recording an error
 * on `format` in errors when format= names another. */
int http_reply_format(http_req *rq, http_format *out, json_t *errors);

/* Query-string argument, or NULL. */
const char *http_arg(http_req *rq, const char *name);

/* Calls fn for each query argument, in the order of the request (value NULL for a bare key). */
void http_args_each(http_req *rq, void (*fn)(void *ctx, const char *key, const char *value), void *ctx);
/* Request header (case-insensitive), or NULL. */
const char *http_header(http_req *rq, const char *name);
/* True when the request's media type (Content-Type without parameters) equals `type`. */
bool http_content_type_is(http_req *rq, const char *type);

/* The route table, defined by the API layer. */
extern const http_route http_routes[];
extern const int http_route_count;

/* Starts the daemon; returns RD_OK and sets *bound_port. */
int http_start(int *bound_port);
/* Stops accepting, waits for in-flight requests to finish (at most `grace_sec`), stops. */
void http_stop(int grace_sec);

/* The request counters for /metrics are declared in http/stats.h. */

#endif
