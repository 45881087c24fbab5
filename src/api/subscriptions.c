/* subscriptions.c - outgoing webhooks, scope admin (SPEC; sql/outbox.sql; src/sender.c):
 *   POST   /v1/subscriptions                      {url, events, filter?, description?} -> 201 + secret
 *   GET    /v1/subscriptions                      the live ones (never their secrets)
 *   GET    /v1/subscriptions/{id}
 *   DELETE /v1/subscriptions/{id}                 stops at once; pending deliveries are given up
 *   POST   /v1/subscriptions/{id}/test            queues a signed test delivery -> 202
 *   GET    /v1/subscriptions/{id}/deliveries      recent deliveries with every attempt
 * and the bodies the sender delivers (api_webhook_event_body), which are JSON, so made here at
 * the edge. */
#include "retentiond/api/api.h"

#include "retentiond/domain/model.h"
#include "retentiond/domain/rules.h"
#include "retentiond/http/outbound.h"
#include "retentiond/store/outbox.h"

#include <errno.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVENT_STAGE "customer.stage_changed"
#define EVENT_STATUS "customer.status_changed"
#define DESCRIPTION_MAX 500
#define DELIVERIES_DEFAULT 50
#define DELIVERIES_MAX 500

typedef enum { SUB_CREATE, SUB_LIST, SUB_GET, SUB_DELETE, SUB_TEST, SUB_DELIVERIES } sub_kind;

typedef struct {
    sub_kind kind;
    int64_t id;
    /* create */
    json_t *doc;                  /* the validated body, for the reply */
    char *url_copy;
    const char *events[3];        /* NULL-ended */
    int nevents;
    const char **to;
    int nto;
    char min_clv[40];
    bool has_min_clv;
    char secret[72];
    char url_problem[320];        /* set by the run when the URL's host is not allowed */
    char created_at[48];
    /* test */
    char *test_body;
    int64_t delivery_id;
    /* reads */
    int limit;
    bool found;
    store_rows rows, attempts;
} sub_ctx;

static void sub_ctx_free(void *p)
{
    sub_ctx *c = p;
    json_decref(c->doc);
    free(c->url_copy);
    free(c->to);
    free(c->test_body);
    store_rows_free(&c->rows);
    store_rows_free(&c->attempts);
    free(c);
}

static sub_ctx *ctx_new(http_req *rq, sub_kind kind)
{
    sub_ctx *c = xcalloc(1, sizeof *c);
    c->kind = kind;
    rq->ctx = c;
    rq->ctx_free = sub_ctx_free;
    return c;
}

/* The {id} of the path: a positive integer, or 0 (the caller answers 404: no such id exists). */
static int64_t path_id(http_req *rq)
{
    const char *s = rq->params[0];
    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18)
        return 0;
    return strtoll(s, NULL, 10);
}

static int sub_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    sub_ctx *c = rq->ctx;
    switch (c->kind) {
    case SUB_CREATE: {
        /* resolving the host blocks: here, on a database worker, never on an HTTP thread */
        c->url_problem[0] = '\0';
        if (!outbound_url_allowed(c->url_copy, c->url_problem, sizeof c->url_problem))
            return RD_OK;
        store_subscription_new s = {
            .url = c->url_copy, .events = c->events, .nevents = c->nevents, .to = c->to, .nto = c->nto,
            .min_clv = c->has_min_clv ? c->min_clv : NULL,
            .description = json_string_value(json_object_get(c->doc, "description")), .secret = c->secret};
        return store_subscription_create(conn, rq->tenant.id, &s, &c->id, c->created_at);
    }
    case SUB_LIST:
    case SUB_GET:
        store_rows_free(&c->rows);
        return store_subscriptions_list(conn, rq->tenant.id, c->kind == SUB_LIST ? -1 : c->id, &c->rows);
    case SUB_DELETE:
        return store_subscription_delete(conn, rq->tenant.id, c->id, &c->found);
    case SUB_TEST:
        return store_subscription_test(conn, rq->tenant.id, c->id, c->test_body, &c->delivery_id);
    case SUB_DELIVERIES:
        store_rows_free(&c->rows);
        store_rows_free(&c->attempts);
        return store_subscription_deliveries(conn, rq->tenant.id, c->id, c->limit, &c->found, &c->rows, &c->attempts);
    }
    return RD_ERR;
}

/* A subscription row as the API shows it: filter as one object. */
static json_t *subscription_json(json_t *row)
{
    json_t *filter = json_object();
    json_t *to = json_object_get(row, "filter_to"), *min = json_object_get(row, "min_predicted_clv");
    if (to && !json_is_null(to))
        json_object_set(filter, "to", to);
    if (min && !json_is_null(min))
        json_object_set(filter, "min_predicted_clv", min);
    json_object_del(row, "filter_to");
    json_object_del(row, "min_predicted_clv");
    json_object_set_new(row, "filter", filter);
    return row;
}

/* A text[] cell ("{a,b}", never quoted: the names are plain words) as a JSON array. */
static json_t *names_array(const char *v)
{
    json_t *a = json_array();
    if (!v || strlen(v) < 2)
        return a;
    char *s = xstrndup(v + 1, strlen(v) - 2), *save = NULL;
    for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(a, json_string(t));
    free(s);
    return a;
}

static json_t *subscriptions_json(const store_rows *r)
{
    json_t *items = api_rows_json(r);
    size_t i;
    json_t *row;
    int ev = -1, to = -1;
    for (int k = 0; k < r->ncols; k++) {
        if (strcmp(r->names[k], "events") == 0)
            ev = k;
        if (strcmp(r->names[k], "filter_to") == 0)
            to = k;
    }
    json_array_foreach(items, i, row) {
        const char *const *cells = (const char *const *)&r->cells[i * (size_t)r->ncols];
        if (ev >= 0)
            json_object_set_new(row, "events", names_array(cells[ev]));
        if (to >= 0)
            json_object_set_new(row, "filter_to", cells[to] ? names_array(cells[to]) : json_null());
        subscription_json(row);
    }
    return items;
}

static int sub_after(http_req *rq, db_done_status st)
{
    sub_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    switch (c->kind) {
    case SUB_CREATE: {
        if (c->url_problem[0]) {
            json_t *errors = json_array();
            rd_error_add(errors, "url", "%s", c->url_problem);
            http_reply_problem(rq, 422, "Unprocessable Content", "the subscription's URL cannot be used; nothing was stored",
                               errors);
            break;
        }
        json_t *body = json_pack("{s:I, s:s, s:O, s:O, s:O, s:s, s:s}", "id", (json_int_t)c->id, "url", c->url_copy,
                                 "events", json_object_get(c->doc, "events"), "filter",
                                 json_object_get(c->doc, "filter") ? json_object_get(c->doc, "filter")
                                                                  : json_object(),
                                 "description",
                                 json_object_get(c->doc, "description") ? json_object_get(c->doc, "description")
                                                                       : json_null(),
                                 "created_at", c->created_at, "secret", c->secret);
        if (!json_object_get(c->doc, "filter"))
            json_decref(json_object_get(body, "filter")); /* the O above took its own reference */
        http_reply_json(rq, 201, body);
        break;
    }
    case SUB_LIST:
        http_reply_json(rq, 200, json_pack("{s:o}", "items", subscriptions_json(&c->rows)));
        break;
    case SUB_GET: {
        if (c->rows.nrows == 0) {
            http_reply_problem(rq, 404, "Not Found", "no such subscription", NULL);
            break;
        }
        json_t *items = subscriptions_json(&c->rows);
        http_reply_json(rq, 200, json_incref(json_array_get(items, 0)));
        json_decref(items);
        break;
    }
    case SUB_DELETE:
        if (!c->found)
            http_reply_problem(rq, 404, "Not Found", "no such subscription (or deleted already)", NULL);
        else
            http_reply_json(rq, 200, json_pack("{s:I, s:b}", "id", (json_int_t)c->id, "deleted", 1));
        break;
    case SUB_TEST:
        if (!c->delivery_id)
            http_reply_problem(rq, 404, "Not Found", "no such subscription", NULL);
        else
            http_reply_json(rq, 202, json_pack("{s:I, s:s}", "delivery_id", (json_int_t)c->delivery_id, "status",
                                               "pending"));
        break;
    case SUB_DELIVERIES: {
        if (!c->found) {
            http_reply_problem(rq, 404, "Not Found", "no such subscription", NULL);
            break;
        }
        json_t *items = api_rows_json(&c->rows), *attempts = api_rows_json(&c->attempts);
        size_t i, k;
        json_t *d, *a;
        json_array_foreach(items, i, d) {
            json_t *list = json_array();
            json_int_t id = json_integer_value(json_object_get(d, "id"));
            json_array_foreach(attempts, k, a) {
                if (json_integer_value(json_object_get(a, "delivery_id")) != id)
                    continue;
                json_object_del(a, "delivery_id");
                json_array_append(list, a);
            }
            json_object_set_new(d, "attempt_log", list);
        }
        json_decref(attempts);
        http_reply_json(rq, 200, json_pack("{s:o}", "items", items));
        break;
    }
    }
    return HTTP_REPLIED;
}

/* ---- POST /v1/subscriptions ---- */

/* Validates the body into c (every problem into errors, by field). */
static void create_parse(sub_ctx *c, json_t *doc, json_t *errors)
{
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v) {
        if (strcmp(key, "url") != 0 && strcmp(key, "events") != 0 && strcmp(key, "filter") != 0 &&
            strcmp(key, "description") != 0)
            rd_error_add(errors, key, "unknown field; the fields are url, events, filter and description");
    }
    json_t *url = json_object_get(doc, "url");
    if (!url)
        rd_error_add(errors, "url", "required: the http or https URL to POST the changes to");
    else if (!json_is_string(url) || !json_string_length(url))
        rd_error_add(errors, "url", "must be a non-empty string");
    else if (strncmp(json_string_value(url), "http://", 7) != 0 && strncmp(json_string_value(url), "https://", 8) != 0)
        rd_error_add(errors, "url", "must be an http:// or https:// URL");
    else if (json_string_length(url) > 2048)
        rd_error_add(errors, "url", "must be at most 2048 bytes");
    else
        c->url_copy = xstrdup(json_string_value(url));

    json_t *events = json_object_get(doc, "events");
    size_t i;
    if (!events) {
        rd_error_add(errors, "events", "required: a list of " EVENT_STAGE " and/or " EVENT_STATUS);
    } else if (!json_is_array(events) || json_array_size(events) == 0 || json_array_size(events) > 2) {
        rd_error_add(errors, "events", "must be a non-empty list of " EVENT_STAGE " and/or " EVENT_STATUS);
    } else {
        json_array_foreach(events, i, v) {
            const char *e = json_string_value(v);
            if (!e || (strcmp(e, EVENT_STAGE) != 0 && strcmp(e, EVENT_STATUS) != 0))
                rd_error_add(errors, "events", "unknown event %s%s%s; the events are " EVENT_STAGE " and " EVENT_STATUS,
                             e ? "\"" : "", e ? e : "(not a string)", e ? "\"" : "");
            else if (rules_name_in(c->events, e))
                rd_error_add(errors, "events", "lists %s twice", e);
            else
                c->events[c->nevents++] = json_string_value(v);
        }
    }

    json_t *filter = json_object_get(doc, "filter");
    if (filter && !json_is_object(filter)) {
        rd_error_add(errors, "filter", "must be an object with to and/or min_predicted_clv");
    } else if (filter) {
        json_object_foreach(filter, key, v) {
            if (strcmp(key, "to") != 0 && strcmp(key, "min_predicted_clv") != 0)
                rd_error_add(errors, "filter", "unknown filter %s; the filters are to and min_predicted_clv", key);
        }
        json_t *to = json_object_get(filter, "to");
        bool stage = rules_name_in(c->events, EVENT_STAGE), status = rules_name_in(c->events, EVENT_STATUS);
        if (to && (!json_is_array(to) || json_array_size(to) == 0 || json_array_size(to) > 8)) {
            rd_error_add(errors, "filter.to", "must be a non-empty list of rungs and/or statuses");
        } else if (to) {
            c->to = xcalloc(json_array_size(to), sizeof *c->to);
            json_array_foreach(to, i, v) {
                const char *s = json_string_value(v);
                if ((stage && rules_name_in(rules_rungs, s)) || (status && rules_name_in(rules_statuses, s)))
                    c->to[c->nto++] = s;
                else
                    rd_error_add(errors, "filter.to",
                                 "%s%s%s is not a %s of the events subscribed to (rungs: suspect, prospect, customer, "
                                 "client, advocate; statuses: active, at_risk, lapsed)",
                                 s ? "\"" : "", s ? s : "a non-string", s ? "\"" : "",
                                 stage && status ? "rung or status" : stage ? "rung" : "status");
            }
        }
        json_t *min = json_object_get(filter, "min_predicted_clv");
        if (min && (!json_is_number(min) || !isfinite(json_number_value(min)) || json_number_value(min) < 0 ||
                    json_number_value(min) > 1e15)) {
            rd_error_add(errors, "filter.min_predicted_clv", "must be a number from 0 up (the shop's currency)");
        } else if (min) {
            snprintf(c->min_clv, sizeof c->min_clv, "%.17g", json_number_value(min));
            c->has_min_clv = true;
        }
    }
    json_t *d = json_object_get(doc, "description");
    if (d && !json_is_null(d) && (!json_is_string(d) || json_string_length(d) > DESCRIPTION_MAX))
        rd_error_add(errors, "description", "must be a string of at most %d bytes", DESCRIPTION_MAX);
    else if (d && json_is_null(d))
        json_object_del(doc, "description");
}

int api_subscription_create(http_req *rq)
{
    json_t *doc = api_json_body(rq);
    if (!doc)
        return HTTP_REPLIED;
    if (!json_is_object(doc)) {
        json_decref(doc);
        http_reply_problem(rq, 400, "Bad Request", "the body must be a JSON object", NULL);
        return HTTP_REPLIED;
    }
    sub_ctx *c = ctx_new(rq, SUB_CREATE);
    c->doc = doc;
    json_t *errors = json_array();
    create_parse(c, doc, errors);
    if (json_array_size(errors)) {
        http_reply_problem(rq, 422, "Unprocessable Content", "invalid subscription; nothing was stored", errors);
        return HTTP_REPLIED;
    }
    json_decref(errors);
    unsigned char raw[24];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        http_reply_problem(rq, 500, "Internal Server Error", "no randomness for the signing secret", NULL);
        return HTTP_REPLIED;
    }
    int k = snprintf(c->secret, sizeof c->secret, "whsec_");
    for (size_t i = 0; i < sizeof raw; i++)
        k += snprintf(c->secret + k, sizeof c->secret - (size_t)k, "%02x", raw[i]);
    return http_defer(rq, DB_JOB_SOLO, 0, sub_run, sub_after);
}

/* ---- the others ---- */

int api_subscriptions_list(http_req *rq)
{
    ctx_new(rq, SUB_LIST);
    return http_defer(rq, DB_JOB_SOLO, 0, sub_run, sub_after);
}

/* The routes of one subscription: 404 at once for an id that cannot exist. */
static int one(http_req *rq, sub_kind kind)
{
    int64_t id = path_id(rq);
    if (!id) {
        http_reply_problem(rq, 404, "Not Found", "no such subscription", NULL);
        return HTTP_REPLIED;
    }
    sub_ctx *c = ctx_new(rq, kind);
    c->id = id;
    return http_defer(rq, DB_JOB_SOLO, 0, sub_run, sub_after);
}

int api_subscription_get(http_req *rq)
{
    return one(rq, SUB_GET);
}

int api_subscription_delete(http_req *rq)
{
    return one(rq, SUB_DELETE);
}

int api_subscription_test(http_req *rq)
{
    int rc = one(rq, SUB_TEST);
    sub_ctx *c = rq->ctx;
    if (rc == HTTP_DEFERRED && c) {
        char now[40];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
        json_t *body = json_pack("{s:s, s:s, s:I, s:s}", "type", "subscription.test", "tenant", rq->tenant.name,
                                 "subscription_id", (json_int_t)c->id, "occurred_at", now);
        c->test_body = json_dumps(body, HTTP_JSON_FLAGS);
        json_decref(body);
    }
    return rc;
}

int api_subscription_deliveries(http_req *rq)
{
    const char *limit = http_arg(rq, "limit");
    long n = DELIVERIES_DEFAULT;
    if (limit) {
        char *end;
        errno = 0;
        n = strtol(limit, &end, 10);
        if (errno || *end || end == limit || n < 1 || n > DELIVERIES_MAX) {
            json_t *errors = json_array();
            rd_error_add(errors, "limit", "must be an integer from 1 to %d", DELIVERIES_MAX);
            http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", errors);
            return HTTP_REPLIED;
        }
    }
    int rc = one(rq, SUB_DELIVERIES);
    if (rq->ctx)
        ((sub_ctx *)rq->ctx)->limit = (int)n;
    return rc;
}

/* ---- the bodies the sender delivers ---- */

char *api_webhook_event_body(const outbox_event *e)
{
    json_t *customer = json_object();
    json_object_set_new(customer, "email", api_json_text(e->email));
    json_object_set_new(customer, "stage", api_json_text(e->stage));
    json_object_set_new(customer, "status", api_json_text(e->status));
    json_object_set_new(customer, "order_count", e->order_count ? json_integer(strtoll(e->order_count, NULL, 10))
                                                                : json_null());
    json_object_set_new(customer, "net_revenue", api_json_numeric(e->net_revenue));
    json_object_set_new(customer, "currency", api_json_text(e->currency));
    json_object_set_new(customer, "first_order_at", api_json_text(e->first_order_at));
    json_object_set_new(customer, "last_order_at", api_json_text(e->last_order_at));
    json_object_set_new(customer, "p_alive", e->p_alive ? api_json_float8(strtod(e->p_alive, NULL)) : json_null());
    json_object_set_new(customer, "expected_orders_90d",
                        e->expected_orders ? api_json_float8(strtod(e->expected_orders, NULL)) : json_null());
    json_object_set_new(customer, "predicted_clv",
                        e->predicted_clv ? api_json_float8(strtod(e->predicted_clv, NULL)) : json_null());
    char id[40];
    snprintf(id, sizeof id, "evt_%lld", (long long)e->event_id);
    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:o}", "id", id, "type", e->type, "tenant",
                             e->tenant ? e->tenant : "", "customer_id", e->customer_id ? e->customer_id : "", "from",
                             api_json_text(e->from), "to", api_json_text(e->to), "occurred_at",
                             e->occurred_at ? e->occurred_at : "", "customer", customer);
    char *text = json_dumps(body, HTTP_JSON_FLAGS);
    json_decref(body);
    return text;
}
