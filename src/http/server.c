/* server.c - the libmicrohttpd daemon and the life of one request (see server.h): routing,
 * auth, the body, the database hand-off, replies, start and shutdown. What a client may send
 * is limits.c's, slow clients are sweeper.c's and the request counters stats.c's
 * (http/internal.h).
 *
 * Threading: an epoll thread pool runs the access handler; nothing here blocks. Database work
 * goes to the pool (store/pool.c) and the connection is suspended until a worker resumes it.
 * Per-request state lives in an http_req allocated on the first callback and freed in the
 * completion callback, which libmicrohttpd calls also when the client goes away. */
#include "retentiond/http/server.h"

#include "retentiond/config.h"
#include "retentiond/domain/model.h"
#include "retentiond/http/auth.h"
#include "retentiond/http/internal.h"
#include "retentiond/log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    ST_NEW,        /* first callback, headers only */
    ST_AUTH_WAIT,  /* suspended on a key lookup */
    ST_BODY,       /* receiving the body */
    ST_DB_WAIT,    /* suspended on a database job */
    ST_DB_DONE,    /* job finished, after_db pending */
    ST_REPLIED,    /* reply set; queue it on this or the next callback */
    ST_DISCARD,    /* reply set mid-upload; dropping the rest of the body (see finish_call) */
};

static struct MHD_Daemon *daemon_handle;
static int inflight;
static pthread_mutex_t inflight_lock = PTHREAD_MUTEX_INITIALIZER;
/* Shutdown (http_stop). FIX (found by tests/integration/test_faults.py, SIGTERM under
 * keep-alive load): MHD_stop_daemon() aborts the process ("called while we have suspended
 * connections") when a request arrives on a kept-alive connection between the moment
 * http_stop saw no request in flight and the stop, and suspends on the database. Now, while
 * draining, every reply carries "Connection: close" so clients leave, and once http_stop
 * has seen zero in flight (stop_closed, set under inflight_lock, checked under it when a
 * request begins) a late request gets 503 without ever being suspended. */
static _Atomic bool stop_draining;
static bool stop_closed; /* under inflight_lock */

/* ---- replies ---- */

static void set_reply(http_req *rq, int status, const char *type, char *body)
{
    free(rq->reply);
    rq->status = status;
    rq->reply_type = type;
    rq->reply = body;
    rq->state = ST_REPLIED;
}

void http_reply_json(http_req *rq, int status, json_t *body)
{
    char *s = json_dumps(body, HTTP_JSON_FLAGS);
    json_decref(body);
    if (!s) {
        http_reply_problem(rq, 500, "Internal Server Error", "the reply could not be encoded", NULL);
        return;
    }
    set_reply(rq, status, "application/json", s);
}

void http_reply_text(http_req *rq, int status, const char *content_type, const char *text, size_t len)
{
    set_reply(rq, status, content_type, xstrndup(text, len));
}

static const char *problem_slug(int status)
{
    switch (status) {
    case 400: return "malformed-request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not-found";
    case 405: return "method-not-allowed";
    case 409: return "conflict";
    case 413: return "body-too-large";
    case 415: return "unsupported-media-type";
    case 422: return "validation-failed";
    case 429: return "rate-limited";
    case 503: return "database-unavailable";
    default: return status >= 500 ? "internal-error" : "bad-request";
    }
}

void http_reply_problem(http_req *rq, int status, const char *title, const char *detail, json_t *errors)
{
    char type[96];
    snprintf(type, sizeof type, "https://retentiond.dev/problems/%s", problem_slug(status));
    json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", title, "status", status,
                          "detail", detail ? detail : title);
    if (errors)
        json_object_set_new(p, "errors", errors);
    char *s = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    set_reply(rq, status, "application/problem+json", s ? s : xstrdup("{}"));
}

void http_reply_db_failure(http_req *rq, db_done_status st)
{
    if (st == DB_DONE_DOWN || st == DB_DONE_BUSY) {
        rq->retry_after = st == DB_DONE_DOWN ? 5 : 1;
        http_reply_problem(rq, 503, "Service Unavailable",
                           st == DB_DONE_DOWN ? "the database is unreachable; nothing was done, retry later"
                                              : "the service is saturated; nothing was done, retry later",
                           NULL);
    } else {
        http_reply_problem(rq, 500, "Internal Server Error", "a database statement failed; nothing was stored", NULL);
    }
}

void http_set_attachment(http_req *rq, const char *name)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char v[160];
    snprintf(v, sizeof v, "attachment; filename=\"%s-%04d-%02d-%02d.csv\"", name, tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday);
    free(rq->disposition);
    rq->disposition = xstrdup(v);
}

void http_reply_csv(http_req *rq, const char *name, buf *b)
{
    http_set_attachment(rq, name);
    set_reply(rq, 200, HTTP_CSV_TYPE, b->data ? buf_steal(b) : xstrdup(""));
}

/* The quality (q=) of a media range's parameters, 1 without one. */
static double accept_quality(const char *params, size_t len)
{
    for (const char *p = params; p && p < params + len; p = memchr(p, ';', (size_t)(params + len - p))) {
        p++;
        while (p < params + len && *p == ' ')
            p++;
        if (p + 2 <= params + len && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
            return strtod(p + 2, NULL);
    }
    return 1;
}

int http_reply_format(http_req *rq, http_format *out, json_t *errors)
{
    *out = HTTP_FORMAT_JSON;
    const char *f = http_arg(rq, "format");
    if (f) {
        if (strcmp(f, "csv") == 0)
            *out = HTTP_FORMAT_CSV;
        else if (strcmp(f, "json") != 0) {
            rd_error_add(errors, "format", "must be json or csv");
            return RD_ERR;
        }
        return RD_OK;
    }
    /* Accept: text/csv wins over application/json by a higher q, or at the same q by coming first */
    const char *a = http_header(rq, "Accept");
    double q_csv = 0, q_json = -1;
    bool csv_first = false;
    for (const char *p = a; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ","), type_len = strcspn(p, ";, ");
        double q = accept_quality(p + type_len, len - type_len);
        if (type_len == 8 && strncasecmp(p, "text/csv", 8) == 0) {
            csv_first = q_json < 0;
            q_csv = q;
        } else if (type_len == 16 && strncasecmp(p, "application/json", 16) == 0) {
            q_json = q;
        }
        p += len;
    }
    if (q_csv > 0 && (q_csv > q_json || (q_csv == q_json && csv_first)))
        *out = HTTP_FORMAT_CSV;
    return RD_OK;
}

/* ---- request helpers ---- */

const char *http_arg(http_req *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct {
    void (*fn)(void *ctx, const char *key, const char *value);
    void *ctx;
} args_each_ctx;

static enum MHD_Result arg_visit(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    args_each_ctx *a = cls;
    a->fn(a->ctx, key, value);
    return MHD_YES;
}

void http_args_each(http_req *rq, void (*fn)(void *ctx, const char *key, const char *value), void *ctx)
{
    args_each_ctx a = {fn, ctx};
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, arg_visit, &a);
}

const char *http_header(http_req *rq, const char *name)
{
    return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

bool http_content_type_is(http_req *rq, const char *type)
{
    const char *ct = http_header(rq, "Content-Type");
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen(type);
    if (strncasecmp(ct, type, n) != 0)
        return false;
    char c = ct[n];
    return c == '\0' || c == ';' || c == ' ';
}

/* ---- database hand-off ---- */

static void job_done(void *arg, db_done_status st)
{
    http_req *rq = arg;
    rq->status = (int)st; /* carried to the HTTP thread; after_db overwrites it with the reply */
    rq->state = ST_DB_DONE;
    /* after this call the HTTP thread may run and free rq: touch nothing of it afterwards */
    MHD_resume_connection(rq->conn);
}

int http_suspend(http_req *rq, int (*after_db)(http_req *, db_done_status))
{
    rq->after_db = after_db;
    rq->state = ST_DB_WAIT;
    MHD_suspend_connection(rq->conn);
    return HTTP_WAITING;
}

void http_resume(http_req *rq, db_done_status st)
{
    job_done(rq, st);
}

int http_defer(http_req *rq, db_job_mode mode, uint64_t lock_key, int (*run)(PGconn *, void *),
               int (*after_db)(http_req *, db_done_status))
{
    rq->job = (db_job){.mode = mode, .run = run, .done = job_done, .arg = rq, .lock_key = lock_key};
    rq->own_job = NULL;
    rq->after_db = after_db;
    rq->state = ST_DB_WAIT;
    return HTTP_DEFERRED;
}

int http_defer_job(http_req *rq, db_job *job, int (*after_db)(http_req *rq, db_done_status st))
{
    rq->own_job = job;
    rq->after_db = after_db;
    rq->state = ST_DB_WAIT;
    return HTTP_DEFERRED;
}

/* Submits the pending job and suspends, or replies 503 if the queue is full. */
static void submit_job(http_req *rq)
{
    MHD_suspend_connection(rq->conn);
    if (db_pool_submit(rq->own_job ? rq->own_job : &rq->job) != RD_OK) {
        MHD_resume_connection(rq->conn);
        http_reply_db_failure(rq, DB_DONE_BUSY);
    }
}

/* ---- routing ---- */

/* Matches path against pattern; fills params (allocated) on success. */
static bool route_match(const char *pattern, const char *path, char **params)
{
    int np = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            const char *seg_end = strchr(s, '/');
            if (!seg_end)
                seg_end = s + strlen(s);
            if (seg_end == s || np == HTTP_MAX_PARAMS)
                goto fail;
            params[np++] = xstrndup(s, (size_t)(seg_end - s));
            p = close + 1;
            s = seg_end;
            continue;
        }
        if (*p != *s)
            goto fail;
        p++;
        s++;
    }
    if (*p == '\0' && *s == '\0')
        return true;
fail:
    for (int i = 0; i < np; i++) {
        free(params[i]);
        params[i] = NULL;
    }
    return false;
}

static void route_request(http_req *rq)
{
    buf allow = {0};
    for (int i = 0; i < http_route_count; i++) {
        char *params[HTTP_MAX_PARAMS] = {0};
        if (!route_match(http_routes[i].pattern, rq->path, params))
            continue;
        if (strcmp(http_routes[i].method, rq->method) == 0 ||
            (strcmp(rq->method, "HEAD") == 0 && strcmp(http_routes[i].method, "GET") == 0)) {
            rq->route = &http_routes[i];
            rq->route_index = i;
            memcpy(rq->params, params, sizeof params);
            buf_free(&allow);
            return;
        }
        for (int k = 0; k < HTTP_MAX_PARAMS; k++)
            free(params[k]);
        if (!strstr(allow.data ? allow.data : "", http_routes[i].method)) {
            if (allow.len)
                buf_puts(&allow, ", ");
            buf_puts(&allow, http_routes[i].method);
        }
    }
    if (allow.len) {
        rq->allow = buf_steal(&allow);
        http_reply_problem(rq, 405, "Method Not Allowed", "this path does not accept that method", NULL);
    } else {
        buf_free(&allow);
        http_reply_problem(rq, 404, "Not Found", "no such endpoint", NULL);
    }
}

/* ---- the access handler ---- */

static enum MHD_Result queue_reply(http_req *rq)
{
    size_t len = rq->reply ? strlen(rq->reply) : 0;
    bool head = strcmp(rq->method, "HEAD") == 0;
    struct MHD_Response *r = rq->stream ? http_stream_response(rq)
                                        : MHD_create_response_from_buffer(head ? 0 : len, rq->reply, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    if (rq->reply_type)
        MHD_add_response_header(r, "Content-Type", rq->reply_type);
    if (rq->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", rq->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    if (rq->allow)
        MHD_add_response_header(r, "Allow", rq->allow);
    if (rq->disposition && rq->status == 200)
        MHD_add_response_header(r, "Content-Disposition", rq->disposition);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (stop_draining)
        MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(rq->conn, (unsigned)rq->status, r);
    MHD_destroy_response(r);
    /* counted before the reply leaves, so a client that reads /metrics next sees it */
    if (!rq->counted) {
        rq->counted = true;
        http_stats_record(rq->route_index, rq->status, (double)(now_usec() - rq->started) / 1e6);
    }
    return ret;
}

/* Runs the handler (body complete) and acts on its result. */
static void run_handler(http_req *rq)
{
    if (rq->route->handler(rq) == HTTP_DEFERRED)
        submit_job(rq); /* HTTP_WAITING: suspended already */
}

static int auth_after_lookup(http_req *rq, db_done_status st)
{
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    return HTTP_REPLIED;
}

/* Checks credentials for routes that need them. Returns true when the request may proceed;
 * otherwise a reply is set or a lookup is pending (state ST_AUTH_WAIT). */
static bool authorize(http_req *rq)
{
    int need = rq->route->scope;
    if (need == SCOPE_PUBLIC || need == SCOPE_WEBHOOK)
        return true;
    if (!rq->auth_checked) {
        rq->auth_checked = true;
        const char *h = http_header(rq, "Authorization");
        if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
            http_reply_problem(rq, 401, "Unauthorized", "send an API key as Authorization: Bearer <key>", NULL);
            return false;
        }
        rq->api_key = h + 7;
        while (*rq->api_key == ' ')
            rq->api_key++;
        switch (auth_check_cached(rq->api_key, &rq->tenant)) {
        case AUTH_OK:
            break;
        case AUTH_INVALID:
            http_reply_problem(rq, 401, "Unauthorized", "the API key is not valid", NULL);
            return false;
        case AUTH_MISS:
            http_defer(rq, DB_JOB_SOLO, 0, auth_lookup_run, auth_after_lookup);
            submit_job(rq);
            if (rq->state == ST_DB_WAIT)
                rq->state = ST_AUTH_WAIT;
            return false;
        }
    }
    if (rq->tenant.scopes == 0) {
        http_reply_problem(rq, 401, "Unauthorized", "the API key is not valid", NULL);
        return false;
    }
    if ((rq->tenant.scopes & need) == 0) {
        http_reply_problem(rq, 403, "Forbidden", "the API key lacks the scope this endpoint needs", NULL);
        return false;
    }
    return true;
}

/* After routing and auth: check declared size and content, then expect the body. */
static void begin_body(http_req *rq)
{
    if (!http_limits_declared_ok(rq))
        return;
    http_sweeper_body_begin(rq->conn);
    rq->state = ST_BODY;
}

/* Most body bytes dropped after an early reply before the connection is simply closed. */
#define DISCARD_MAX (16L * 1024 * 1024)

/* Queues the reply if one is set.
 * FIX (found by tests/integration/test_hostile.py, "chunked over limit"): libmicrohttpd 0.9.x
 * refuses MHD_queue_response() while a body is still being received (it returns MHD_NO and
 * the connection was closed with no answer at all), so an early reply set during the upload
 * (413 for a chunked or undeclared body over the limit, a streamed batch's 503) never reached
 * the client. Such a reply now waits in ST_DISCARD while the rest of the upload is dropped (at
 * most DISCARD_MAX bytes), and is queued when the body is complete. */
static enum MHD_Result finish_call(http_req *rq, size_t *upload_data_size, bool mid_upload)
{
    if (rq->state != ST_REPLIED)
        return MHD_YES;
    *upload_data_size = 0;
    if (mid_upload) {
        rq->state = ST_DISCARD;
        return MHD_YES;
    }
    return queue_reply(rq);
}

/* Whether a reply set with the headers (401, 404, 413, ...) should wait for the declared body:
 * sent while the client is still sending, it is often lost, because closing a socket with
 * unread data makes the kernel reset the connection before the client reads the reply. So a
 * declared body up to DISCARD_MAX beyond the route's limit is dropped first (ST_DISCARD), as
 * an early reply during the upload is. A client that sent "Expect: 100-continue" waits for the
 * answer before sending, and gets it at once. */
static bool body_follows(http_req *rq)
{
    const char *cl = http_header(rq, "Content-Length");
    if (!cl || http_header(rq, "Expect"))
        return false;
    char *end;
    long long n = strtoll(cl, &end, 10);
    return *end == '\0' && n > 0 && n - http_limits_body_max(rq) <= DISCARD_MAX;
}

/* libmicrohttpd calls this once with the headers (upload size 0), then once per body chunk,
 * then once more with size 0 when the body is complete; after a resume it repeats the call
 * of the phase in which the connection was suspended. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    http_req *rq = *con_cls;
    if (!rq) { /* the headers call */
        rq = xcalloc(1, sizeof *rq);
        rq->conn = conn;
        rq->method = method;
        rq->path = xstrdup(url);
        rq->route_index = -1;
        rq->started = now_usec();
        *con_cls = rq;
        http_sweeper_request_begin(conn, rq->started);
        pthread_mutex_lock(&inflight_lock);
        inflight++;
        bool closed = stop_closed;
        pthread_mutex_unlock(&inflight_lock);

        int wait = closed ? 0 : http_limits_rate_check(conn);
        if (closed) { /* shutting down: answer without suspending (see stop_draining) */
            rq->retry_after = 1;
            http_reply_problem(rq, 503, "Service Unavailable", "the service is shutting down; retry", NULL);
        } else if (wait > 0) {
            rq->retry_after = wait;
            http_reply_problem(rq, 429, "Too Many Requests", "request rate limit exceeded for this address", NULL);
        } else {
            route_request(rq);
            if (rq->state == ST_NEW && authorize(rq))
                begin_body(rq);
            return finish_call(rq, upload_data_size, body_follows(rq));
        }
        return finish_call(rq, upload_data_size, false);
    }

    bool mid_upload = *upload_data_size > 0;
    if (rq->state == ST_DISCARD) {
        if (!mid_upload) { /* the upload is complete: send the reply set earlier */
            rq->state = ST_REPLIED;
            return queue_reply(rq);
        }
        rq->body_seen += (long)*upload_data_size;
        *upload_data_size = 0;
        return rq->body_seen - http_limits_body_max(rq) > DISCARD_MAX ? MHD_NO : MHD_YES;
    }

    if (rq->state == ST_DB_DONE) {
        db_done_status st = (db_done_status)rq->status;
        int (*after)(http_req *, db_done_status) = rq->after_db;
        rq->status = 0;
        rq->after_db = NULL;
        if (after == auth_after_lookup) { /* the repeated headers call */
            rq->state = ST_NEW;
            if (st != DB_DONE_OK)
                http_reply_db_failure(rq, st);
            else if (authorize(rq))
                begin_body(rq);
            return finish_call(rq, upload_data_size, mid_upload || body_follows(rq));
        }
        rq->state = ST_BODY;
        int r = after(rq, st);
        if (r == HTTP_DEFERRED)
            submit_job(rq);
        if (r != HTTP_REPLIED || rq->state == ST_REPLIED)
            return finish_call(rq, upload_data_size, mid_upload);
        /* a streamed chunk was stored: go on with the body */
    }

    if (rq->state == ST_BODY) {
        if (*upload_data_size > 0) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            rq->body_seen += (long)n;
            if (http_sweeper_body_too_slow(rq->conn, rq->body_seen)) {
                /* a body trickling in (see sweeper.c): close the connection now (no reply can
                 * be queued mid-upload; the 408 is what the request log records) */
                buf_free(&rq->body);
                http_reply_problem(rq, 408, "Request Timeout", "the request body is arriving too slowly", NULL);
                return MHD_NO;
            } else if (rq->body_seen > http_limits_body_max(rq)) {
                /* answer once the rest is dropped (see finish_call) */
                buf_free(&rq->body);
                http_reply_problem(rq, 413, "Content Too Large", "the request body exceeds the configured limit", NULL);
            } else if (rq->route->on_chunk) {
                if (rq->route->on_chunk(rq, upload_data, n) == HTTP_DEFERRED)
                    submit_job(rq); /* HTTP_WAITING: suspended already */
            } else {
                buf_append(&rq->body, upload_data, n);
            }
        } else {
            run_handler(rq);
        }
    }
    return finish_call(rq, upload_data_size, mid_upload);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    http_req *rq = *con_cls;
    if (!rq)
        return;
    http_sweeper_request_end(conn);
    double secs = (double)(now_usec() - rq->started) / 1e6;
    int status = rq->state == ST_REPLIED || rq->state == ST_DISCARD ? rq->status : 499;
    if (!rq->counted)
        http_stats_record(rq->route_index, status, secs);
    rd_log(LOG_INFO, "msg=request method=%s route=\"%s\" path_len=%zu status=%d duration_ms=%.3f tenant=%s bytes_in=%ld%s",
           rq->method, rq->route ? rq->route->pattern : "-", strlen(rq->path), status, secs * 1000.0,
           rq->tenant.name[0] ? rq->tenant.name : "-", rq->body_seen,
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=true");
    if (rq->ctx_free)
        rq->ctx_free(rq->ctx);
    http_stream_drop(rq);
    for (int i = 0; i < HTTP_MAX_PARAMS; i++)
        free(rq->params[i]);
    buf_free(&rq->body);
    free(rq->reply);
    free(rq->allow);
    free(rq->disposition);
    free(rq->path);
    free(rq);
    *con_cls = NULL;
    pthread_mutex_lock(&inflight_lock);
    inflight--;
    pthread_mutex_unlock(&inflight_lock);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '"')
            *p = ' ';
    rd_log(LOG_WARN, "msg=\"libmicrohttpd: %s\"", msg);
}

int http_start(int *bound_port)
{
    http_stats_init();
    struct sockaddr_in6 addr6 = {0};
    struct sockaddr_in addr4 = {0};
    const struct sockaddr *sa;
    /* ITC: MHD_quiesce_daemon with an epoll thread pool needs it to wake the threads safely */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (inet_pton(AF_INET, config.bind_address, &addr4.sin_addr) == 1) {
        addr4.sin_family = AF_INET;
        addr4.sin_port = htons((uint16_t)config.port);
        sa = (const struct sockaddr *)&addr4;
    } else if (inet_pton(AF_INET6, config.bind_address, &addr6.sin6_addr) == 1) {
        addr6.sin6_family = AF_INET6;
        addr6.sin6_port = htons((uint16_t)config.port);
        sa = (const struct sockaddr *)&addr6;
        flags |= MHD_USE_IPv6;
    } else {
        rd_log(LOG_ERROR, "msg=\"bind address is not an IP address\" bind=%s", config.bind_address);
        return RD_ERR;
    }
    daemon_handle = MHD_start_daemon(
        flags, (uint16_t)config.port, NULL, NULL, on_request, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)config.http_threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)config.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)config.max_conn_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)config.request_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, http_sweeper_notify, NULL,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
        MHD_OPTION_END);
    if (!daemon_handle) {
        rd_log(LOG_ERROR, "msg=\"cannot start the HTTP server\" bind=%s port=%d", config.bind_address, config.port);
        return RD_ERR;
    }
    http_sweeper_start();
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(daemon_handle, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = di ? di->port : config.port;
    return RD_OK;
}

void http_stop(int grace_sec)
{
    if (!daemon_handle)
        return;
    /* stop accepting; requests already in flight (including those suspended on the database,
     * which the pool will resume) are allowed to finish */
    stop_draining = true;
    MHD_quiesce_daemon(daemon_handle);
    int64_t deadline = now_usec() + (int64_t)grace_sec * 1000000;
    bool cut = false;
    int n;
    for (;;) {
        pthread_mutex_lock(&inflight_lock);
        n = inflight;
        if (n == 0)
            stop_closed = true; /* from now on nothing suspends (see stop_draining) */
        pthread_mutex_unlock(&inflight_lock);
        if (n == 0 || (now_usec() > deadline && cut))
            break;
        if (now_usec() > deadline) {
            /* streamed bodies still going (a slow client can read an export for hours): cut
             * them, which frees their database workers and closes their connections at the
             * next read, or, for a client that reads nothing more, when libmicrohttpd's
             * inactivity timeout (REQUEST_TIMEOUT, grace_sec) ends it */
            http_streams_abort();
            cut = true;
            deadline = now_usec() + (int64_t)(grace_sec + 1) * 1000000;
        }
        usleep(10000);
    }
    http_sweeper_stop();
    if (n > 0) {
        /* requests still suspended on the database: MHD_stop_daemon() would abort, so leave
         * the daemon to the process exit */
        rd_log(LOG_WARN, "msg=\"requests still in flight after the grace period; not waiting\" inflight=%d", n);
        return;
    }
    MHD_stop_daemon(daemon_handle);
    daemon_handle = NULL;
    http_stats_free();
}
