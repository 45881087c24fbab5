/* report_rows.h - the columns of customers and orders that the period reports read, and their
 * decoding from binary results: one definition for the in-memory copy (report_snapshot.c) and
 * the stream (report_stream.c), so that both build the same rs_customer. */
#ifndef RETENTIOND_STORE_REPORT_ROWS_H
#define RETENTIOND_STORE_REPORT_ROWS_H

#include "retentiond/domain/reports.h"

#include <endian.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* customers: id, since (when the customer became known, SPEC §8: the earliest business time
 * of the record, the first order and the first engagement event; never when a row was
 * inserted), first order */
#define REPORT_CUSTOMER_COLUMNS \
    "customer_id, least(created_at, first_order_at, first_engaged_at), first_order_at"

/* orders: customer, time, and the net value in 1 / RS_MONEY_SCALE (10^6, RS_MONEY_DECIMALS 6):
 * as an int8 where it fits (a value below 9 * 10^12 of the shop's currency), otherwise as the
 * text of that integer; both NULL when the value has more than 6 decimals, which ingest
 * refuses (src/domain/model.c) and which would not be exact in those units. */
#define REPORT_ORDER_COLUMNS                                                                        \
    "customer_id, placed_at, "                                                                      \
    "CASE WHEN scale(net_value) <= 6 AND abs(net_value) < 9e12 THEN (net_value * 1000000)::int8 END, " \
    "CASE WHEN scale(net_value) <= 6 AND abs(net_value) >= 9e12 THEN trunc(net_value * 1000000)::text END"

#define REPORT_PG_EPOCH_USEC INT64_C(946684800000000) /* 2000-01-01 in microseconds since 1970 */

static inline int64_t report_be64(const char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return (int64_t)be64toh(x);
}

static inline int32_t report_be32(const char *p)
{
    uint32_t x;
    memcpy(&x, p, sizeof x);
    return (int32_t)be32toh(x);
}

/* A binary timestamptz column as microseconds since 1970, or RS_NONE. */
static inline int64_t report_instant(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? RS_NONE : report_be64(PQgetvalue(res, row, col)) + REPORT_PG_EPOCH_USEC;
}

/* The text of an integer (the wide value column) into *out. Returns false if it is not one. */
static inline bool report_parse_money(const char *s, rs_money *out)
{
    bool neg = *s == '-';
    s += neg;
    if (!*s)
        return false;
    rs_money v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > ((rs_money)1 << 120))
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = neg ? -v : v;
    return true;
}

#endif
