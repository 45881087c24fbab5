/* privacy.c - DELETE /v1/customers/{id}, GET /v1/customers/{id}/export, GET /v1/privacy/requests
 * (scope admin; GDPR Art. 15, 17, 20). The work is sql/privacy.sql's, through store/privacy.h;
 * this file validates and writes the replies. The Shopify compliance topics reach the same
 * store functions from api/webhooks.c. */
#include "retentiond/api/api.h"

#include "retentiond/domain/model.h"
#include "retentiond/http/auth.h"
#include "retentiond/store/privacy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL type OIDs the export writes as JSON values rather than text */
enum { OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_FLOAT4 = 700, OID_FLOAT8 = 701,
       OID_JSON = 114, OID_JSONB = 3802 };

/* One cell as JSON: booleans, integers, floats and JSON as themselves, everything else
 * (numeric amounts too, which stay exact) as the text PostgreSQL wrote. */
static json_t *cell_json(unsigned type, const char *v)
{
    if (!v)
        return json_null();
    switch (type) {
    case OID_BOOL:
        return json_boolean(strcmp(v, "t") == 0);
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        return json_integer(strtoll(v, NULL, 10));
    case OID_FLOAT4:
    case OID_FLOAT8:
        return json_real(strtod(v, NULL));
    case OID_JSON:
    case OID_JSONB: {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        return j ? j : json_string(v);
    }
    default:
        return json_string(v);
    }
}

json_t *api_rows_json(const store_rows *r)
{
    json_t *rows = json_array();
    for (int i = 0; i < r->nrows; i++) {
        json_t *o = json_object();
        for (int c = 0; c < r->ncols; c++)
            json_object_set_new(o, r->names[c], cell_json(r->types[c], r->cells[(size_t)i * (size_t)r->ncols + (size_t)c]));
        json_array_append_new(rows, o);
    }
    return rows;
}

json_t *api_erasure_json(const store_erasure *e)
{
    json_t *o = json_object();
    for (int i = 0; i < e->n; i++)
        json_object_set_new(o, e->counts[i].kind, json_integer(e->counts[i].rows));
    return o;
}

/* "key <key id>": who asked, for the audit row (never the key itself). */
static void requested_by(const http_req *rq, char *out, size_t n)
{
    char key_id[AUTH_KEY_ID_LEN + 1];
    if (rq->api_key && auth_key_parse(rq->api_key, key_id) == RD_OK)
        snprintf(out, n, "key %s", key_id);
    else
        snprintf(out, n, "key (unknown)");
}

typedef enum { PRIVACY_ERASE, PRIVACY_EXPORT, PRIVACY_REQUESTS } privacy_kind;

typedef struct {
    privacy_kind kind;
    char customer_id[RD_ID_MAX + 1];
    char by[64];
    store_erasure erasure;
    store_export export;
    store_rows requests;
} privacy_ctx;

static void privacy_ctx_free(void *p)
{
    privacy_ctx *c = p;
    store_export_free(&c->export);
    store_rows_free(&c->requests);
    free(c);
}

/* The database work of each route, on a worker. */
static int privacy_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    privacy_ctx *c = rq->ctx;
    const char *const ids[1] = {c->customer_id};
    switch (c->kind) {
    case PRIVACY_ERASE:
        return store_erase(conn, rq->tenant.id, ids, 1, NULL, 0, c->by, false, &c->erasure);
    case PRIVACY_EXPORT:
        store_export_free(&c->export);
        return store_customer_export(conn, rq->tenant.id, c->customer_id, &c->export);
    case PRIVACY_REQUESTS:
        store_rows_free(&c->requests);
        return store_privacy_requests(conn, rq->tenant.id, &c->requests);
    }
    return RD_ERR;
}

static int privacy_start(http_req *rq, privacy_kind kind, int (*after)(http_req *rq, db_done_status st))
{
    if (rq->params[0] && strlen(rq->params[0]) > RD_ID_MAX) { /* no customer has such an id */
        http_reply_problem(rq, 404, "Not Found", "no such customer", NULL);
        return HTTP_REPLIED;
    }
    privacy_ctx *c = xcalloc(1, sizeof *c);
    c->kind = kind;
    rd_strlcpy(c->customer_id, rq->params[0] ? rq->params[0] : "", sizeof c->customer_id);
    requested_by(rq, c->by, sizeof c->by);
    rq->ctx = c;
    rq->ctx_free = privacy_ctx_free;
    return http_defer(rq, DB_JOB_SOLO, 0, privacy_run, after);
}

/* ---- DELETE /v1/customers/{id} ---- */

static int erase_after(http_req *rq, db_done_status st)
{
    privacy_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
    } else if (c->erasure.customers == 0) {
        http_reply_problem(rq, 404, "Not Found", "no such customer (or already erased)", NULL);
    } else {
        http_reply_json(rq, 200, json_pack("{s:s, s:o}", "customer_id", c->customer_id, "erased",
                                           api_erasure_json(&c->erasure)));
    }
    return HTTP_REPLIED;
}

int api_customer_erase(http_req *rq)
{
    return privacy_start(rq, PRIVACY_ERASE, erase_after);
}

/* ---- GET /v1/customers/{id}/export ---- */

static int export_after(http_req *rq, db_done_status st)
{
    privacy_ctx *c = rq->ctx;
    const store_export *e = &c->export;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    if (!e->found) {
        http_reply_problem(rq, 404, "Not Found", "no such customer", NULL);
        return HTTP_REPLIED;
    }
    json_t *record = api_rows_json(&e->record), *prediction = api_rows_json(&e->prediction);
    json_t *out = json_pack("{s:s, s:s, s:O, s:o, s:o, s:o, s:O}", "customer_id", c->customer_id, "tenant",
                            rq->tenant.name, "record", json_array_get(record, 0), "orders",
                            api_rows_json(&e->orders), "events", api_rows_json(&e->events), "rung_history",
                            api_rows_json(&e->rung_history), "prediction",
                            json_array_size(prediction) ? json_array_get(prediction, 0) : json_null());
    json_decref(record);
    json_decref(prediction);
    http_reply_json(rq, 200, out);
    return HTTP_REPLIED;
}

int api_customer_export(http_req *rq)
{
    return privacy_start(rq, PRIVACY_EXPORT, export_after);
}

/* ---- GET /v1/privacy/requests ---- */

static int requests_after(http_req *rq, db_done_status st)
{
    privacy_ctx *c = rq->ctx;
    if (st != DB_DONE_OK)
        http_reply_db_failure(rq, st);
    else
        http_reply_json(rq, 200, json_pack("{s:o}", "requests", api_rows_json(&c->requests)));
    return HTTP_REPLIED;
}

int api_privacy_requests(http_req *rq)
{
    return privacy_start(rq, PRIVACY_REQUESTS, requests_after);
}
