/* internal.h - what the files of src/http/ share with each other, and nobody else includes.
 *
 * server.c runs the life of a request and calls into the other three, each one concern of the
 * same daemon (as pgbouncer's client.c, janitor.c and stats.c are of one event loop):
 *   limits.c   body size limits and the per-address request rate limit
 *   sweeper.c  slow clients: connection tracking, the sweeper thread, the slow-body rule
 *   stats.c    request counters and latency histograms by route and status, for /metrics
 *   stream.c   streamed reply bodies (stream.h): the buffer between a worker and the client
 *   csv.c      the CSV writer of the replies (csv.h) */
#ifndef RETENTIOND_HTTP_INTERNAL_H
#define RETENTIOND_HTTP_INTERNAL_H

#include "retentiond/http/server.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- limits.c ---- */

/* The body limit of the request's route: max_batch_bytes for big-body routes, else
 * max_body_bytes (also when no route matched). */
long http_limits_body_max(const http_req *rq);
/* Checks a declared Content-Length against the route's limit. Returns true when the body may
 * come (none declared, or within the limit); otherwise sets a 400 (not a number) or 413 reply
 * and returns false. */
bool http_limits_declared_ok(http_req *rq);
/* Takes one token from the client address's bucket (RATE_LIMIT, RATE_BURST). Returns 0 when
 * the request may go on, else the seconds to wait before the next one (for Retry-After). */
int http_limits_rate_check(struct MHD_Connection *c);

/* ---- sweeper.c ---- */

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback: tracks each connection from its
 * accept until just before its socket is closed. */
void http_sweeper_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                         enum MHD_ConnectionNotificationCode code);
/* A request head is in (started: its time): the sweeper leaves the connection alone. */
void http_sweeper_request_begin(struct MHD_Connection *c, int64_t started);
/* The body phase begins now: the slow-body rule counts from here. */
void http_sweeper_body_begin(struct MHD_Connection *c);
/* True when a body of which body_seen bytes are in arrives slower than the slow-body rule
 * allows (the caller answers 408 and closes). */
bool http_sweeper_body_too_slow(struct MHD_Connection *c, long body_seen);
/* The request is over: the connection has REQUEST_TIMEOUT seconds from now for its next head. */
void http_sweeper_request_end(struct MHD_Connection *c);
/* Starts and stops the sweeper thread. A failed start leaves slow headers uncut (nothing
 * else changes); stop joins the thread if it runs. */
void http_sweeper_start(void);
void http_sweeper_stop(void);

/* ---- server.c, for stream.c ---- */

/* http_defer with a job of the caller's, which may outlive the request (its run can go on
 * after the request ended): its run or done must end the wait with http_resume(rq) exactly
 * once, after which after_db runs on the HTTP thread. */
int http_defer_job(http_req *rq, db_job *job, int (*after_db)(http_req *rq, db_done_status st));
/* Sets rq->disposition to an attachment named `name`-YYYY-MM-DD.csv (today, UTC). */
void http_set_attachment(http_req *rq, const char *name);

/* ---- stream.c ---- */

/* The response for rq's stream, which it takes over from rq (rq->stream becomes NULL);
 * NULL if libmicrohttpd cannot make one (the stream is then let go). */
struct MHD_Response *http_stream_response(http_req *rq);
/* The request ends without its stream having become a response: lets it go (the producer,
 * if any, stops at its next write). */
void http_stream_drop(http_req *rq);
/* Server stop, grace period over: every stream's producer stops at its next write and every
 * reader ends its body as failed, so that their connections close. */
void http_streams_abort(void);

/* ---- stats.c ---- */

/* Allocates the counters for http_route_count routes (call before the daemon starts) and
 * frees them (after it stopped). */
void http_stats_init(void);
void http_stats_free(void);
/* Counts one request: route_index -1 for an unrouted one; a status outside the counted set
 * is folded into 500 or 400. */
void http_stats_record(int route_index, int status, double seconds);

#endif
