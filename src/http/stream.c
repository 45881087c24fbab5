/* stream.c - streamed reply bodies (see stream.h): a bounded buffer between one database
 * worker, the producer, and libmicrohttpd's content reader, the consumer.
 *
 * Why this shape: libpq blocks, so the rows cannot be read inside the content reader, which
 * runs on an HTTP thread; and the body must not be held whole. So the producer holds its pool
 * connection (one cursor in one transaction) for the length of the body and waits on `room`
 * while the buffer is full; the reader drains the buffer and, when it is empty, suspends the
 * connection (allowed from a content reader) and returns 0; the next write, or the end,
 * resumes it. A slow client therefore costs one pool connection and HTTP_STREAM_BUFFER bytes
 * plus one write's worth.
 *
 * Lifetime. Two references: the reader side's (the request until its response exists, then
 * the response, released by libmicrohttpd's free callback, which comes also when the client
 * went away) and the producer's (taken when the job runs, released after its done()). The
 * reader side letting go sets `gone`, and the producer's next write fails. The reader suspends
 * the connection under the stream's lock, so whoever clears `suspended` knows the connection
 * is suspended (hence alive: libmicrohttpd neither times out nor closes a suspended
 * connection) and resumes it after unlocking. No libmicrohttpd call is made by a worker while
 * it holds a lock that a libmicrohttpd callback takes. */
#include "retentiond/http/stream.h"

#include "retentiond/config.h"
#include "retentiond/http/internal.h"
#include "retentiond/log.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* What libmicrohttpd asks of the reader at a time. */
#define READ_BLOCK (16 * 1024)

struct http_stream {
    pthread_mutex_t lock;
    pthread_cond_t room;          /* signalled when the reader took bytes or let go */
    buf data;                     /* unread bytes are data.data[off .. data.len) */
    size_t off;
    int refs;
    bool ran;                     /* the producer's job started (and took its reference) */
    bool started;                 /* the first write (or the end) ended the request's wait */
    bool finished, failed;        /* the producer is done; failed: the body is not whole */
    bool gone;                    /* the reader side let go, or the server is stopping */
    bool aborted;                 /* the server is stopping: the reader fails the body */
    bool suspended;               /* the reader suspended the connection, waiting for bytes */
    struct MHD_Connection *conn;
    http_req *rq;                 /* until started */
    db_job job;                   /* the producer's: it outlives the request */
    http_stream_fn producer;
    void *arg;
    void (*arg_free)(void *);
    http_stream *prev, *next;     /* the live streams */
};

static pthread_mutex_t streams_lock = PTHREAD_MUTEX_INITIALIZER;
static http_stream *streams;
static int nstreams;

static void stream_release(http_stream *s)
{
    pthread_mutex_lock(&s->lock);
    int left = --s->refs;
    pthread_mutex_unlock(&s->lock);
    if (left > 0)
        return;
    pthread_mutex_lock(&streams_lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    nstreams--;
    pthread_mutex_unlock(&streams_lock);
    if (s->arg_free)
        s->arg_free(s->arg);
    buf_free(&s->data);
    pthread_cond_destroy(&s->room);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* The reader side lets go (the response's free callback, or the request's end). */
static void stream_reader_gone(void *cls)
{
    http_stream *s = cls;
    pthread_mutex_lock(&s->lock);
    s->gone = true;
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->lock);
    stream_release(s);
}

/* Ends the request's wait for the first byte (under s->lock, which it releases): the request
 * goes on to stream_after on its HTTP thread. */
static void start_unlock(http_stream *s, db_done_status st)
{
    http_req *rq = s->rq;
    s->started = true;
    s->rq = NULL;
    pthread_mutex_unlock(&s->lock);
    http_resume(rq, st);
}

/* Resumes the reader if it waits for bytes (under s->lock, which it releases). */
static void wake_unlock(http_stream *s)
{
    bool wake = s->suspended;
    s->suspended = false;
    pthread_mutex_unlock(&s->lock);
    if (wake)
        MHD_resume_connection(s->conn);
}

int http_stream_write(http_stream *s, const char *data, size_t len)
{
    pthread_mutex_lock(&s->lock);
    while (!s->gone && s->data.len - s->off >= HTTP_STREAM_BUFFER)
        pthread_cond_wait(&s->room, &s->lock);
    if (s->gone) {
        pthread_mutex_unlock(&s->lock);
        return RD_ERR;
    }
    if (s->off > 0) { /* keep the unread bytes at the front, so the buffer stays bounded */
        memmove(s->data.data, s->data.data + s->off, s->data.len - s->off);
        s->data.len -= s->off;
        s->off = 0;
    }
    buf_append(&s->data, data, len);
    if (!s->started)
        start_unlock(s, DB_DONE_OK);
    else
        wake_unlock(s);
    return RD_OK;
}

static int stream_run(PGconn *conn, void *arg)
{
    http_stream *s = arg;
    pthread_mutex_lock(&s->lock);
    s->ran = true;
    s->refs++;
    pthread_mutex_unlock(&s->lock);
    return s->producer(conn, s, s->arg);
}

/* The pool's done(): the producer returned (or never ran: the database was down). */
static void stream_done(void *arg, db_done_status st)
{
    http_stream *s = arg;
    pthread_mutex_lock(&s->lock);
    bool ran = s->ran;
    s->finished = true;
    s->failed = st != DB_DONE_OK || s->gone;
    if (!s->started)
        start_unlock(s, st);
    else
        wake_unlock(s);
    if (ran)
        stream_release(s);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    http_stream *s = cls;
    pthread_mutex_lock(&s->lock);
    size_t avail = s->data.len - s->off;
    ssize_t n;
    if (s->aborted) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (avail > 0) {
        n = (ssize_t)(avail < max ? avail : max);
        memcpy(out, s->data.data + s->off, (size_t)n);
        s->off += (size_t)n;
        pthread_cond_signal(&s->room);
    } else if (s->finished) {
        n = s->failed ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* nothing yet: wait suspended until the producer writes (see the top of the file) */
        s->suspended = true;
        MHD_suspend_connection(s->conn);
        n = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

struct MHD_Response *http_stream_response(http_req *rq)
{
    http_stream *s = rq->stream;
    rq->stream = NULL;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, READ_BLOCK, stream_read, s, stream_reader_gone);
    if (!r)
        stream_reader_gone(s);
    return r;
}

void http_stream_drop(http_req *rq)
{
    if (rq->stream)
        stream_reader_gone(rq->stream);
    rq->stream = NULL;
}

/* After the first write or the end: the body as it goes on, or the failure before it. */
static int stream_after(http_req *rq, db_done_status st)
{
    http_stream *s = rq->stream;
    pthread_mutex_lock(&s->lock);
    bool aborted = s->aborted, nothing = s->failed && s->data.len == s->off;
    pthread_mutex_unlock(&s->lock);
    if (st != DB_DONE_OK || aborted || nothing) {
        http_stream_drop(rq);
        if (st != DB_DONE_OK) {
            http_reply_db_failure(rq, st);
        } else {
            rq->retry_after = 1;
            http_reply_problem(rq, 503, "Service Unavailable", "the service is shutting down; retry", NULL);
        }
        return HTTP_REPLIED;
    }
    http_reply_text(rq, 200, rq->reply_type, "", 0); /* the body is the stream (http_stream_response) */
    return HTTP_REPLIED;
}

int http_stream_reply(http_req *rq, const char *content_type, const char *name, http_stream_fn producer,
                      void *arg, void (*arg_free)(void *))
{
    if (strcmp(rq->method, "HEAD") == 0) {
        if (arg_free)
            arg_free(arg);
        http_set_attachment(rq, name);
        http_reply_text(rq, 200, content_type, "", 0);
        return HTTP_REPLIED;
    }
    pthread_mutex_lock(&streams_lock);
    bool full = nstreams >= config.max_exports;
    if (full) {
        pthread_mutex_unlock(&streams_lock);
        if (arg_free)
            arg_free(arg);
        rq->retry_after = 5;
        http_reply_problem(rq, 503, "Service Unavailable",
                           "as many exports as MAX_EXPORTS allows are streaming; retry later", NULL);
        return HTTP_REPLIED;
    }
    http_stream *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->room, NULL);
    s->refs = 1;
    s->conn = rq->conn;
    s->rq = rq;
    s->producer = producer;
    s->arg = arg;
    s->arg_free = arg_free;
    s->next = streams;
    if (streams)
        streams->prev = s;
    streams = s;
    nstreams++;
    pthread_mutex_unlock(&streams_lock);
    rq->stream = s;
    http_set_attachment(rq, name);
    rq->reply_type = content_type;
    s->job = (db_job){.mode = DB_JOB_SOLO, .run = stream_run, .done = stream_done, .arg = s};
    return http_defer_job(rq, &s->job, stream_after);
}

void http_streams_abort(void)
{
    pthread_mutex_lock(&streams_lock);
    int n = 0, cut = nstreams;
    struct MHD_Connection **wake = xcalloc(nstreams ? (size_t)nstreams : 1, sizeof *wake);
    for (http_stream *s = streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        s->aborted = s->gone = true;
        pthread_cond_broadcast(&s->room);
        if (s->suspended)
            wake[n++] = s->conn;
        s->suspended = false;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&streams_lock);
    /* suspended, so alive: resumed, each reader fails its body and the connection closes */
    for (int i = 0; i < n; i++)
        MHD_resume_connection(wake[i]);
    free(wake);
    if (cut)
        rd_log(LOG_WARN, "msg=\"streamed replies cut short by the stop\" streams=%d", cut);
}
