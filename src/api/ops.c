/* ops.c - operational endpoints: liveness and readiness. */
#include "retentiond/api/api.h"

#include "retentiond/store/migrate.h"

#include <stdlib.h>

int api_healthz(http_req *rq)
{
    http_reply_json(rq, 200, json_pack("{s:s}", "status", "ok"));
    return HTTP_REPLIED;
}

typedef struct {
    int current; /* 1 current, 0 behind, -1 unknown */
} readyz_ctx;

static int readyz_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    readyz_ctx *c = rq->ctx;
    c->current = migrate_is_current(conn);
    return c->current < 0 ? RD_ERR : RD_OK;
}

static int readyz_after(http_req *rq, db_done_status st)
{
    readyz_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    if (!c->current) {
        rq->retry_after = 5;
        http_reply_problem(rq, 503, "Service Unavailable", "the database schema is behind; run `retentiond migrate`", NULL);
        return HTTP_REPLIED;
    }
    http_reply_json(rq, 200, json_pack("{s:s, s:s}", "status", "ready", "database", "ok"));
    return HTTP_REPLIED;
}

int api_readyz(http_req *rq)
{
    rq->ctx = xcalloc(1, sizeof(readyz_ctx));
    rq->ctx_free = free;
    return http_defer(rq, DB_JOB_SOLO, 0, readyz_run, readyz_after);
}

extern const char rd_asset_openapi[];
extern const size_t rd_asset_openapi_len;
extern const char rd_asset_dashboard[];
extern const size_t rd_asset_dashboard_len;

int api_openapi(http_req *rq)
{
    http_reply_text(rq, 200, "application/json", rd_asset_openapi, rd_asset_openapi_len);
    return HTTP_REPLIED;
}

int api_dashboard(http_req *rq)
{
    http_reply_text(rq, 200, "text/html; charset=utf-8", rd_asset_dashboard, rd_asset_dashboard_len);
    return HTTP_REPLIED;
}
