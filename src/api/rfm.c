/* rfm.c - GET /v1/metrics/rfm: the R x F grid of the tenant's customers with orders, 25 cells
 * of customers counted by their recency and frequency quintiles, each with the cell's mean net
 * revenue and segment, and the span of the tenant's orders. The scores are the lists' (rd_rfm_ntiles, sql/rules.sql), so a cell's
 * count is the length of GET /v1/customers?r=R&f=F at the same moment. */
#include "retentiond/api/api.h"

#include <stdlib.h>

typedef struct {
    rfm_grid grid;
} rfm_ctx;

static void rfm_ctx_free(void *p)
{
    rfm_ctx *c = p;
    rfm_grid_free(&c->grid);
    free(c);
}

static int rfm_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    rfm_ctx *c = rq->ctx;
    rfm_grid_free(&c->grid);
    return store_rfm_grid(conn, rq->tenant.id, &c->grid);
}

static int rfm_after(http_req *rq, db_done_status st)
{
    rfm_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    json_t *cells = json_array();
    for (int i = 0; i < RFM_GRID_CELLS; i++) {
        const rfm_cell *cell = &c->grid.cells[i];
        json_array_append_new(cells, json_pack("{s:i, s:i, s:I, s:o, s:s}", "r", cell->r, "f", cell->f, "customers",
                                               (json_int_t)cell->customers, "mean_net_revenue",
                                               api_json_numeric(cell->mean_net_revenue), "segment", cell->segment));
    }
    json_t *span = c->grid.first_order_at ? json_string(c->grid.first_order_at) : json_null();
    json_t *span_end = c->grid.last_order_at ? json_string(c->grid.last_order_at) : json_null();
    http_reply_json(rq, 200, json_pack("{s:s, s:I, s:o, s:o, s:o, s:s}", "currency", rq->tenant.currency,
                                       "customers", (json_int_t)c->grid.customers, "first_order_at", span,
                                       "last_order_at", span_end, "cells", cells, "rule",
                                       "ntile(5) of last order time (r), order count (f) and net revenue (m) over "
                                       "the customers with orders, ties by customer id"));
    return HTTP_REPLIED;
}

int api_metrics_rfm(http_req *rq)
{
    rfm_ctx *c = xcalloc(1, sizeof *c);
    rq->ctx = c;
    rq->ctx_free = rfm_ctx_free;
    return http_defer(rq, DB_JOB_SOLO, 0, rfm_run, rfm_after);
}
