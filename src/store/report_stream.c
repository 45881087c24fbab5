/* report_stream.c - a tenant's customers streamed from PostgreSQL into a period report (see
 * report_stream.h). */
#include "retentiond/store/report_stream.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"
#include "retentiond/store/report_rows.h"
#include "retentiond/util.h"

#include <stdlib.h>
#include <string.h>

#define STREAM_FETCH 10000
#define INT8_OID 20
#define TIMESTAMPTZ_OID 1184

/* One cursor, $1 the tenant, [$2, $3) the range: each customers row (id, since, first order) and
 * each qualifying order in the range (id, placed_at, value, wide value), by customer and time,
 * a customer's row before its orders. Sorted as one, so a customer without a customers row
 * (ingest always writes one; a row deleted or written around the service would leave its
 * orders) needs no join of its own. */
static const char *const stream_sql =
    "DECLARE rs_stream NO SCROLL CURSOR FOR "
    "SELECT " REPORT_CUSTOMER_COLUMNS ", NULL::timestamptz AS placed_at, NULL::int8, NULL::text "
    "FROM customers WHERE tenant_id = $1 "
    "UNION ALL "
    "SELECT o.customer_id, NULL, NULL, o.placed_at, o.v, o.w FROM (SELECT " REPORT_ORDER_COLUMNS " FROM orders "
    "WHERE tenant_id = $1 AND qualifying AND placed_at >= $2 AND placed_at < $3) o(customer_id, placed_at, v, w) "
    "ORDER BY customer_id, placed_at NULLS FIRST";

enum { S_ID, S_SINCE, S_FIRST, S_PLACED, S_VALUE, S_WIDE };

typedef struct {
    rs_acc *acc;
    bool open;        /* c holds a customer not yet handed over */
    rs_customer c;
    buf id;           /* c.id's storage */
    uint32_t wide_cap;
    rs_money *wide;   /* c.wide's storage */
} stream;

static void hand_over(stream *st)
{
    if (st->open)
        reports_add_customer(st->acc, &st->c);
    st->open = false;
}

/* Appends row r's order to the customer. Returns false on a value that is not exact. */
static bool add_order(stream *st, const PGresult *res, int r)
{
    rs_customer *c = &st->c;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->orders = xrealloc(c->orders, c->cap * sizeof *c->orders);
    }
    int64_t v = 0;
    rs_money w = 0;
    bool narrow = !PQgetisnull(res, r, S_VALUE);
    if (narrow)
        v = report_be64(PQgetvalue(res, r, S_VALUE));
    else if (PQgetisnull(res, r, S_WIDE) || !report_parse_money(PQgetvalue(res, r, S_WIDE), &w))
        return false;
    if (!narrow || c->wide) { /* from the customer's first value beyond int8 on, all its values in wide */
        if (st->wide_cap < c->cap) {
            st->wide_cap = c->cap;
            st->wide = xrealloc(st->wide, st->wide_cap * sizeof *st->wide);
        }
        if (!c->wide)
            for (uint32_t k = 0; k < c->n; k++)
                st->wide[k] = c->orders[k].v;
        c->wide = st->wide;
        st->wide[c->n] = narrow ? v : w;
    }
    c->orders[c->n++] = (rs_order){report_instant(res, r, S_PLACED), v};
    return true;
}

/* Hands the rows of one fetch over, customer by customer (a customer may go on in the next). */
static int apply(const PGresult *res, void *arg)
{
    stream *st = arg;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *id = PQgetvalue(res, r, S_ID);
        size_t len = (size_t)PQgetlength(res, r, S_ID);
        if (!st->open || st->id.len != len || memcmp(st->id.data, id, len) != 0) {
            hand_over(st);
            buf_reset(&st->id);
            buf_append(&st->id, id, len);
            st->open = true;
            st->c.id = st->id.data;
            st->c.known = false;
            st->c.since = st->c.first = RS_NONE;
            st->c.n = 0;
            st->c.wide = NULL;
        }
        if (PQgetisnull(res, r, S_PLACED)) { /* its customers row, first */
            st->c.known = true;
            st->c.since = report_instant(res, r, S_SINCE);
            st->c.first = report_instant(res, r, S_FIRST);
        } else if (!add_order(st, res, r)) {
            rd_log(LOG_ERROR, "msg=\"report: an order's net value has more than %d decimals\" customer=\"%.*s\"",
                   RS_MONEY_DECIMALS, (int)len, id);
            return 1;
        }
    }
    return 0;
}

int report_stream_feed(PGconn *conn, const char *tenant_id, const rs_frame *f, rs_acc *acc)
{
    int64_t lo, hi;
    if (!reports_range(f, &lo, &hi))
        return RD_OK;
    stream st = {.acc = acc};
    uint64_t blo = htobe64((uint64_t)(lo - REPORT_PG_EPOCH_USEC)), bhi = htobe64((uint64_t)(hi - REPORT_PG_EPOCH_USEC));
    const char *values[3] = {tenant_id, (const char *)&blo, (const char *)&bhi};
    const Oid types[3] = {INT8_OID, TIMESTAMPTZ_OID, TIMESTAMPTZ_OID};
    const int lengths[3] = {0, 8, 8}, formats[3] = {0, 1, 1};
    int r = db_cursor_read(conn, "rs_stream", stream_sql, 3, types, values, lengths, formats, STREAM_FETCH, 1, apply, &st);
    if (r == RD_OK)
        hand_over(&st);
    else
        r = RD_ERR;
    free(st.c.orders);
    free(st.wide);
    buf_free(&st.id);
    return r;
}
