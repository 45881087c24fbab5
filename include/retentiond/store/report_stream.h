/* report_stream.h - the period reports over a tenant's rows streamed from PostgreSQL, for a
 * tenant without a report snapshot (snapshots off, or the tenant does not fit their budget).
 *
 * One cursor in the caller's transaction reads the tenant's customers rows and its qualifying
 * orders in the report's range as one sorted stream, by customer and time (PostgreSQL sorts
 * about a million rows in a second on the 1 M-order shop, faster than joining them and then
 * sorting); one rs_customer is built at a time and handed to the report's accumulator
 * (domain/reports.c), the code the snapshot feeds too. Memory here: one fetch of rows and the
 * largest customer's orders. */
#ifndef RETENTIOND_STORE_REPORT_STREAM_H
#define RETENTIOND_STORE_REPORT_STREAM_H

#include "retentiond/domain/reports.h"

#include <libpq-fe.h>

/* Feeds acc every customer of tenant_id with its qualifying orders in the range f reads
 * (reports_range), inside the caller's open transaction. Returns RD_OK, or RD_ERR after
 * logging a failed statement or an order value that is not exact in 1 / RS_MONEY_SCALE (the
 * transaction must then be rolled back). */
int report_stream_feed(PGconn *conn, const char *tenant_id, const rs_frame *f, rs_acc *acc);

#endif
