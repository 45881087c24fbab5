/* stream.h - replies whose body a database worker produces while the client reads it, through
 * a bounded buffer, so that a reply of any size costs neither memory nor more than one pool
 * connection (the CSV export of the customer list).
 *
 * The producer runs as one pool job for the whole body and writes it in pieces with
 * http_stream_write, which waits while the buffer holds HTTP_STREAM_BUFFER bytes or more; the
 * client's reads drain it (the connection is suspended while it is empty, and resumed by the
 * next write). The request waits, suspended, for the first write: a failure before it is an
 * ordinary problem reply. After it the status is 200 and the body chunked; a failure then
 * ends the connection without the terminating chunk, so that no client takes a cut body for
 * a whole one. A client that goes away, or a server that stops, makes the next write fail: the
 * producer stops there. At most MAX_EXPORTS streams exist at once (503 beyond). */
#ifndef RETENTIOND_HTTP_STREAM_H
#define RETENTIOND_HTTP_STREAM_H

#include "retentiond/http/server.h"

#include <libpq-fe.h>
#include <stddef.h>

/* The buffer's bound: a write waits while this much is unread. */
#define HTTP_STREAM_BUFFER (64 * 1024)

/* Produces the body on a database worker: writes it with http_stream_write and returns RD_OK
 * (also when a write failed because the reader went away: it stops there, leaving the
 * connection clean), or RD_ERR when a statement failed (the pool then tells a lost database
 * from a failed statement, as for any job). */
typedef int (*http_stream_fn)(PGconn *conn, http_stream *s, void *arg);

/* Answers rq with a streamed body of content_type (an attachment `name`-YYYY-MM-DD.csv, see
 * http_reply_csv) that producer(conn, s, arg) writes on a database worker. arg belongs to the
 * stream from now on, whatever happens (the producer may outlive the request): arg_free(arg)
 * is called once neither side needs it. A HEAD request gets the headers without running the
 * producer. Returns what the handler returns. */
int http_stream_reply(http_req *rq, const char *content_type, const char *name, http_stream_fn producer,
                      void *arg, void (*arg_free)(void *));

/* From the producer: appends len bytes to the body, after waiting for room. Returns RD_OK, or
 * RD_ERR when the reader is gone (client disconnected, server stopping): stop producing. */
int http_stream_write(http_stream *s, const char *data, size_t len);

#endif
