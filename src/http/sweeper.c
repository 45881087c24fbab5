/* sweeper.c - slow clients: every connection is tracked from its accept to its close, and a
 * sweeper thread cuts those that are too slow to deliver a request head.
 *
 * FIX (found by tests/integration/test_hostile.py, Limits.test_slow_*): REQUEST_TIMEOUT was only
 * libmicrohttpd's *inactivity* timeout, so a client sending one byte a second (headers or
 * body) held its connection forever (slowloris). Now (1) the sweeper thread shuts down any
 * connection that has not delivered a complete request head within REQUEST_TIMEOUT seconds of
 * its start (accept or the end of the previous request), and (2) once the head is in, a body
 * must arrive at SLOW_BODY_MIN_RATE bytes/s on average after its first REQUEST_TIMEOUT seconds,
 * else 408 and the connection closes (server.c asks http_sweeper_body_too_slow on every
 * chunk). Requests being handled (incl. suspended on the database) are never cut by the
 * sweeper. */
#include "retentiond/http/internal.h"

#include "retentiond/config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define SLOW_BODY_MIN_RATE 256

typedef struct conn_track {
    int fd;
    bool in_request;      /* the request head is in: the sweeper leaves it alone */
    int64_t since;        /* accept, or end of the previous request */
    int64_t body_since;   /* when the current request's body phase began */
    struct conn_track *prev, *next;
} conn_track;
static conn_track *tracks;
static pthread_mutex_t track_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t sweeper_thread;
static _Atomic bool sweeper_run;

void http_sweeper_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                         enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_track *t = xcalloc(1, sizeof *t);
        t->fd = ci ? ci->connect_fd : -1;
        t->since = now_usec();
        pthread_mutex_lock(&track_lock);
        t->next = tracks;
        if (tracks)
            tracks->prev = t;
        tracks = t;
        pthread_mutex_unlock(&track_lock);
        *socket_context = t;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        /* called before libmicrohttpd closes the fd, so the sweeper never touches a reused fd */
        conn_track *t = *socket_context;
        pthread_mutex_lock(&track_lock);
        if (t->prev)
            t->prev->next = t->next;
        else
            tracks = t->next;
        if (t->next)
            t->next->prev = t->prev;
        pthread_mutex_unlock(&track_lock);
        free(t);
        *socket_context = NULL;
    }
}

static conn_track *track_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void http_sweeper_request_begin(struct MHD_Connection *c, int64_t started)
{
    conn_track *t = track_of(c);
    if (t) {
        pthread_mutex_lock(&track_lock);
        t->in_request = true;
        t->body_since = started;
        pthread_mutex_unlock(&track_lock);
    }
}

void http_sweeper_body_begin(struct MHD_Connection *c)
{
    conn_track *t = track_of(c);
    if (t) {
        pthread_mutex_lock(&track_lock);
        t->body_since = now_usec();
        pthread_mutex_unlock(&track_lock);
    }
}

bool http_sweeper_body_too_slow(struct MHD_Connection *c, long body_seen)
{
    conn_track *t = track_of(c);
    int64_t body_usec = 0;
    if (t) {
        pthread_mutex_lock(&track_lock);
        body_usec = now_usec() - t->body_since;
        pthread_mutex_unlock(&track_lock);
    }
    return body_usec > (int64_t)config.request_timeout * 1000000 &&
           (double)body_seen < (double)body_usec / 1e6 * SLOW_BODY_MIN_RATE;
}

void http_sweeper_request_end(struct MHD_Connection *c)
{
    conn_track *t = track_of(c);
    if (t) {
        pthread_mutex_lock(&track_lock);
        t->in_request = false;
        t->since = now_usec();
        pthread_mutex_unlock(&track_lock);
    }
}

static void *sweeper_main(void *arg)
{
    (void)arg;
    while (sweeper_run) {
        usleep(250000);
        int64_t now = now_usec(), limit = (int64_t)config.request_timeout * 1000000;
        pthread_mutex_lock(&track_lock);
        for (conn_track *t = tracks; t; t = t->next)
            if (!t->in_request && t->fd >= 0 && now - t->since > limit) {
                shutdown(t->fd, SHUT_RDWR); /* libmicrohttpd sees EOF and closes it */
                t->since = now;
            }
        pthread_mutex_unlock(&track_lock);
    }
    return NULL;
}

void http_sweeper_start(void)
{
    sweeper_run = true;
    if (pthread_create(&sweeper_thread, NULL, sweeper_main, NULL) != 0)
        sweeper_run = false;
}

void http_sweeper_stop(void)
{
    if (sweeper_run) {
        sweeper_run = false;
        pthread_join(sweeper_thread, NULL);
    }
}
