/* customers.c - GET /v1/customers/{id} (one profile), its orders and rung history
 * (/v1/customers/{id}/orders, /history), and GET /v1/customers (lists).
 *
 * Each is one statement (store/customers.c over sql/customers.sql) whose rows come back as
 * structs; the replies are written here.
 *
 * The profile: the customer's record and rollup, its rung and RFM segment as SQL decides
 * them, and the live predictions of the tenant's model (api_clv_enrich_profile). Its status
 * is decided here, by rules_status (src/domain/rules.c, rd_status's twin), with the live
 * P(alive) where there is one and the stored prediction's otherwise, as the lists decide it
 * in SQL with the stored one.
 *
 * A list page is sorted by the key descending, ties by customer id descending, customers
 * without the key last (or by customer id ascending). Its cursor is the last row's key, as
 * PostgreSQL prints it, and id; the key is checked here against the type of the sort, so a
 * forged cursor is a 400. The page is written by hand rather than by jansson, whose numbers
 * are doubles: amounts and predictions go out as the exact text PostgreSQL printed, in the
 * layout of PostgreSQL's json_build_object that the reply has always had. */
#include "retentiond/api/api.h"

#include "retentiond/domain/model.h"
#include "retentiond/domain/rules.h"
#include "retentiond/http/csv.h"
#include "retentiond/http/stream.h"
#include "retentiond/log.h"
#include "retentiond/store/customers.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *customer_id, *as_of;   /* a profile's */
    int days, horizon_months;
    customer_profile profile;
    bool found;
    customer_page_query query;   /* a list's; its strings are below or static */
    char *min_p_alive, *after_key, *after_id;
    customer_page page;
    bool with_email;             /* a CSV export's: the key has scope admin */
    buf csv;                     /* a CSV export's rows of one fetch */
    int limit;                   /* a customer's orders: the page's */
    customer_orders orders;
    customer_history history;
} cust_ctx;

static void cust_ctx_free(void *p)
{
    cust_ctx *c = p;
    free(c->customer_id);
    free(c->as_of);
    customer_profile_free(&c->profile);
    free(c->min_p_alive);
    free(c->after_key);
    free(c->after_id);
    customer_page_free(&c->page);
    buf_free(&c->csv);
    customer_orders_free(&c->orders);
    customer_history_free(&c->history);
    free(c);
}

static cust_ctx *ctx_new(http_req *rq)
{
    cust_ctx *c = xcalloc(1, sizeof *c);
    rq->ctx = c;
    rq->ctx_free = cust_ctx_free;
    return c;
}

/* ---- the profile ---- */

static int profile_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    cust_ctx *c = rq->ctx;
    customer_profile_free(&c->profile);
    return store_customer_profile(conn, rq->tenant.id, c->customer_id, c->as_of, &c->profile, &c->found);
}

/* The status at as_of (SPEC §4), with the live P(alive) when the model gave one. */
static json_t *profile_status(const customer_profile *p, double live_p_alive)
{
    rules_status_in in = {
        .has_first = p->first_order_at != NULL,
        .has_last = p->last_order_at != NULL,
        .first_order = p->first_order_us,
        .last_order = p->last_order_us,
        .order_count = p->order_count,
        .as_of = p->as_of_us,
        .window_days = p->settings.activity_window_days,
        .gap_factor = p->settings.at_risk_gap_factor,
        .has_p_alive = isfinite(live_p_alive) || p->has_prediction,
        .p_alive = isfinite(live_p_alive) ? live_p_alive : p->prediction_p_alive,
        .p_alive_min = p->settings.at_risk_p_alive,
    };
    return api_json_text(rules_status_name(rules_status(&in)));
}

static json_t *profile_rfm(const customer_profile *p)
{
    if (!p->has_rfm)
        return json_pack("{s:n, s:n, s:n, s:s}", "r", "f", "m", "segment", p->segment);
    return json_pack("{s:i, s:i, s:i, s:s, s:{s:I, s:s, s:s}}", "r", p->r, "f", p->f, "m", p->m, "segment",
                     p->segment, "inputs", "customers_with_orders", (json_int_t)p->rfm_n,
                     "quintiles_computed_at", p->rfm_computed_at, "rule",
                     "ntile(5) of last order time, order count and net revenue");
}

/* The profile reply, or NULL when the stored attributes do not read as JSON. */
static json_t *profile_json(const customer_profile *p, int days, int horizon_months)
{
    json_error_t err;
    json_t *attributes = json_loads(p->attributes ? p->attributes : "{}", 0, &err);
    if (!attributes) {
        rd_log(LOG_ERROR, "msg=\"customer attributes unreadable\" error=\"%s\"", err.text);
        return NULL;
    }
    json_t *o = json_object();
    json_object_set_new(o, "customer_id", json_string(p->customer_id));
    json_object_set_new(o, "email", api_json_text(p->email));
    json_object_set_new(o, "created_at", api_json_text(p->created_at));
    json_object_set_new(o, "channel", api_json_text(p->channel));
    json_object_set_new(o, "referred_by", api_json_text(p->referred_by));
    json_object_set_new(o, "attributes", attributes);
    json_object_set_new(o, "known", json_boolean(p->known));
    json_object_set_new(o, "stage", api_json_text(p->stage));
    json_object_set_new(o, "status", json_null());   /* decided below, in its place */
    json_object_set_new(o, "order_count", json_integer(p->order_count));
    json_object_set_new(o, "net_revenue", api_json_numeric(p->net_revenue));
    json_object_set_new(o, "historic_clv", api_json_numeric(p->net_revenue));
    json_object_set_new(o, "first_order_at", api_json_text(p->first_order_at));
    json_object_set_new(o, "last_order_at", api_json_text(p->last_order_at));
    json_object_set_new(o, "avg_days_between_orders", api_json_numeric(p->avg_days_between_orders));
    json_object_set_new(o, "days_since_last_order", api_json_numeric(p->days_since_last_order));
    json_object_set_new(o, "event_count", json_integer(p->event_count));
    json_object_set_new(o, "first_engaged_at", api_json_text(p->first_engaged_at));
    json_object_set_new(o, "last_engaged_at", api_json_text(p->last_engaged_at));
    json_object_set_new(o, "last_advocacy_at", api_json_text(p->last_advocacy_at));
    json_object_set_new(o, "advocacy_kind", api_json_text(p->advocacy_kind));
    json_object_set_new(o, "settings",
                        json_pack("{s:i, s:i, s:o, s:o}", "activity_window_days", p->settings.activity_window_days,
                                  "advocacy_window_days", p->settings.advocacy_window_days, "at_risk_p_alive",
                                  api_json_float8(p->settings.at_risk_p_alive), "at_risk_gap_factor",
                                  api_json_float8(p->settings.at_risk_gap_factor)));
    json_object_set_new(o, "prediction",
                        p->has_prediction
                            ? json_pack("{s:s, s:o, s:o, s:o}", "fitted_at", p->prediction_fitted_at, "p_alive",
                                        api_json_float8(p->prediction_p_alive), "expected_orders_90d",
                                        api_json_float8(p->prediction_expected_orders), "predicted_clv_12m",
                                        api_json_float8(p->prediction_clv))
                            : json_null());
    json_object_set_new(o, "rfm", profile_rfm(p));
    json_object_set_new(o, "as_of", json_string(p->as_of));
    double live_p_alive = api_clv_enrich_profile(o, p, days, horizon_months);
    json_object_set_new(o, "status", profile_status(p, live_p_alive));
    return o;
}

/* True after replying for a job about one customer that failed (503/500) or found no such
 * customer (404); false when the handler is to reply. */
static bool customer_job_failed(http_req *rq, db_done_status st, bool found)
{
    if (st != DB_DONE_OK)
        http_reply_db_failure(rq, st);
    else if (!found)
        http_reply_problem(rq, 404, "Not Found", "no customer with this id", NULL);
    return st != DB_DONE_OK || !found;
}

static int profile_after(http_req *rq, db_done_status st)
{
    cust_ctx *c = rq->ctx;
    if (customer_job_failed(rq, st, c->found))
        return HTTP_REPLIED;
    json_t *body = profile_json(&c->profile, c->days, c->horizon_months);
    if (!body)
        http_reply_db_failure(rq, DB_DONE_FAILED);
    else
        http_reply_json(rq, 200, body);
    return HTTP_REPLIED;
}

/* Parses an integer query argument in [min, max]; records an error when it is bad. */
static int int_arg(http_req *rq, const char *name, int def, int min, int max, json_t *errors)
{
    const char *v = http_arg(rq, name);
    if (!v)
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || end == v || n < min || n > max) {
        rd_error_add(errors, name, "must be a whole number from %d to %d", min, max);
        return def;
    }
    return (int)n;
}

static const char *as_of_arg(http_req *rq, json_t *errors)
{
    const char *as_of = http_arg(rq, "as_of");
    if (as_of && rd_timestamp_check(as_of) != RD_OK) {
        rd_error_add(errors, "as_of", "must be an RFC 3339 timestamp or a date YYYY-MM-DD");
        return NULL;
    }
    return as_of;
}

int api_customer_get(http_req *rq)
{
    json_t *errors = json_array();
    cust_ctx *c = ctx_new(rq);
    c->days = int_arg(rq, "days", 90, 1, 3650, errors);
    c->horizon_months = int_arg(rq, "horizon_months", 12, 1, 120, errors);
    const char *as_of = as_of_arg(rq, errors);
    if (json_array_size(errors)) {
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", errors);
        return HTTP_REPLIED;
    }
    json_decref(errors);
    c->customer_id = xstrdup(rq->params[0]);
    c->as_of = as_of ? xstrdup(as_of) : NULL;
    return http_defer(rq, DB_JOB_SOLO, 0, profile_run, profile_after);
}

/* ---- lists ---- */

static const char *const sorts[] = {"net_revenue", "order_count", "last_order_at", "p_alive", "predicted_clv",
                                    "customer_id", NULL};
static const char *const segments[] = {"champions", "loyal", "potential_loyalist", "new", "promising",
                                       "need_attention", "about_to_sleep", "at_risk", "cannot_lose_them",
                                       "hibernating", NULL};

static const char *one_of(http_req *rq, const char *name, const char *const *allowed, json_t *errors)
{
    const char *v = http_arg(rq, name);
    if (!v)
        return NULL;
    for (int i = 0; allowed[i]; i++)
        if (strcmp(v, allowed[i]) == 0)
            return allowed[i];
    buf b = {0};
    for (int i = 0; allowed[i]; i++)
        buf_printf(&b, "%s%s", i ? ", " : "", allowed[i]);
    rd_error_add(errors, name, "must be one of %s", b.data);
    buf_free(&b);
    return NULL;
}

/* True when s is a decimal number: [-]digits[.digits][e[+-]digits], the digits of the
 * exponent at most four (PostgreSQL's numeric reads such an exponent). */
static bool decimal_text(const char *s)
{
    const char *p = s + (*s == '-');
    size_t d = strspn(p, "0123456789");
    if (d == 0)
        return false;
    p += d;
    if (*p == '.') {
        d = strspn(++p, "0123456789");
        if (d == 0)
            return false;
        p += d;
    }
    if (*p == 'e' || *p == 'E') {
        p += 1 + (p[1] == '+' || p[1] == '-');
        d = strspn(p, "0123456789");
        if (d == 0 || d > 4)
            return false;
        p += d;
    }
    return *p == '\0';
}

/* True when v is a key rd_customer_list can cast to the type of the sort's key, so that a
 * forged cursor is a 400 and never a failed statement: numeric (net_revenue), int
 * (order_count), timestamptz (last_order_at), float8 (the predictions); the id sort has no
 * key. */
static bool cursor_value_ok(const char *sort, const char *v)
{
    if (strcmp(sort, "net_revenue") == 0)
        return decimal_text(v);
    if (strcmp(sort, "order_count") == 0) {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        return decimal_text(v) && *end == '\0' && errno == 0 && n >= INT_MIN && n <= INT_MAX;
    }
    if (strcmp(sort, "last_order_at") == 0)
        return rd_timestamp_check(v) == RD_OK;
    if (strcmp(sort, "p_alive") == 0 || strcmp(sort, "predicted_clv") == 0) {
        if (strcmp(v, "NaN") == 0 || strcmp(v, "Infinity") == 0 || strcmp(v, "-Infinity") == 0)
            return true;
        errno = 0;
        double d = strtod(v, NULL);
        /* PostgreSQL refuses what overflows, or underflows to zero */
        return decimal_text(v) && !(errno == ERANGE && (d == 0 || isinf(d)));
    }
    return true;
}

/* Decodes a cursor of the given sort into (value, id): *value NULL when the key is null.
 * RD_ERR when it is not one of ours (cursors of versions before November 2026 carried the key
 * as a JSON number: they are refused, and the client starts over). */
static int cursor_decode(const char *hex, const char *sort, char **value, char **id)
{
    size_t n = strlen(hex);
    if (n % 2 || n > 2048)
        return RD_ERR;
    char *raw = xmalloc(n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(raw);
            return RD_ERR;
        }
        raw[i] = (char)v;
    }
    raw[n / 2] = '\0';
    json_t *cur = json_loads(raw, 0, NULL);
    free(raw);
    json_t *key = json_array_get(cur, 0);
    bool key_ok = json_is_null(key) ||
                  (json_is_string(key) && strlen(json_string_value(key)) == json_string_length(key) &&
                   cursor_value_ok(sort, json_string_value(key)));
    if (!json_is_array(cur) || json_array_size(cur) != 2 || !json_is_string(json_array_get(cur, 1)) || !key_ok) {
        json_decref(cur);
        return RD_ERR;
    }
    *value = json_is_string(key) ? xstrdup(json_string_value(key)) : NULL;
    *id = xstrdup(json_string_value(json_array_get(cur, 1)));
    json_decref(cur);
    return RD_OK;
}

static int list_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    cust_ctx *c = rq->ctx;
    customer_page_free(&c->page);
    return store_customer_page(conn, &c->query, &c->page);
}

/* A string as PostgreSQL's escape_json writes it; NULL is null. */
static void put_string(buf *b, const char *s)
{
    if (!s) {
        buf_puts(b, "null");
        return;
    }
    buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '\b': buf_puts(b, "\\b"); break;
        case '\f': buf_puts(b, "\\f"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        default:
            if (*p < ' ')
                buf_printf(b, "\\u%04x", *p);
            else
                buf_append(b, p, 1);
        }
    }
    buf_puts(b, "\"");
}

/* A number PostgreSQL printed, as it printed it; NaN and the infinities, which JSON lacks, as
 * strings (as PostgreSQL's JSON has them); NULL is null. */
static void put_number(buf *b, const char *text)
{
    if (text && decimal_text(text))
        buf_puts(b, text);
    else
        put_string(b, text);
}

/* The key of the next member of an object: `"key" : `, after `, ` unless it is the first. */
static void put_key(buf *b, const char *key)
{
    if (b->len > 0 && b->data[b->len - 1] != '{')
        buf_puts(b, ", ");
    put_string(b, key);
    buf_puts(b, " : ");
}

static void member_string(buf *b, const char *key, const char *s)
{
    put_key(b, key);
    put_string(b, s);
}

static void member_number(buf *b, const char *key, const char *text)
{
    put_key(b, key);
    put_number(b, text);
}

static void put_item(buf *b, const customer_list_item *it)
{
    buf_puts(b, "{");
    member_string(b, "customer_id", it->customer_id);
    member_string(b, "email", it->email);
    member_string(b, "stage", it->stage);
    member_string(b, "status", it->status);
    put_key(b, "order_count");
    buf_printf(b, "%d", it->order_count);
    member_number(b, "net_revenue", it->net_revenue);
    member_string(b, "last_order_at", it->last_order_at);
    put_key(b, "rfm");
    if (it->has_rfm) {
        buf_printf(b, "{\"r\" : %d, \"f\" : %d, \"m\" : %d, \"segment\" : ", it->r, it->f, it->m);
        put_string(b, it->segment);
        buf_puts(b, "}");
    } else {
        buf_puts(b, "null");
    }
    member_number(b, "p_alive", it->p_alive);
    member_number(b, "expected_orders", it->expected_orders);
    member_number(b, "predicted_clv", it->predicted_clv);
    buf_puts(b, "}");
}

/* The cursor after a row: its key and id as the JSON array ["key", "id"] (null for no key),
 * hex-encoded, so that it is opaque and URL-safe; cursor_decode reads it back. */
static void put_cursor(buf *b, const char *key, const char *id)
{
    buf arr = {0};
    buf_puts(&arr, "[");
    put_string(&arr, key);
    buf_puts(&arr, ", ");
    put_string(&arr, id);
    buf_puts(&arr, "]");
    buf_puts(b, "\"");
    for (size_t i = 0; i < arr.len; i++)
        buf_printf(b, "%02x", (unsigned char)arr.data[i]);
    buf_puts(b, "\"");
    buf_free(&arr);
}

/* {"customers" : [...], "next_cursor" : ..., "count" : n}: a cursor when the page is full. */
static int list_after(http_req *rq, db_done_status st)
{
    cust_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    const customer_page *page = &c->page;
    buf b = {0};
    buf_puts(&b, "{");
    put_key(&b, "customers");
    buf_puts(&b, "[");
    for (int i = 0; i < page->count; i++) {
        if (i)
            buf_puts(&b, ",");
        put_item(&b, &page->items[i]);
    }
    buf_puts(&b, "]");
    put_key(&b, "next_cursor");
    if (page->count > 0 && page->count == c->query.limit)
        put_cursor(&b, page->items[page->count - 1].sort_key, page->items[page->count - 1].customer_id);
    else
        buf_puts(&b, "null");
    put_key(&b, "count");
    buf_printf(&b, "%d", page->count);
    buf_puts(&b, "}");
    http_reply_text(rq, 200, "application/json", b.data, b.len);
    buf_free(&b);
    return HTTP_REPLIED;
}

/* ---- the list as CSV ---- */

/* The JSON item's fields in its order, the rfm object flattened; email only for scope admin
 * (csv_item writes the same columns). */
static void csv_header(buf *b, bool with_email)
{
    static const char *const columns[] = {"customer_id", "email", "stage", "status", "order_count", "net_revenue",
                                          "last_order_at", "rfm_r", "rfm_f", "rfm_m", "rfm_segment", "p_alive",
                                          "expected_orders", "predicted_clv"};
    for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++)
        if (i != 1 || with_email)
            csv_field(b, columns[i]);
    csv_end_record(b);
}

static void csv_item(buf *b, const customer_list_item *it, bool with_email)
{
    char n[4][16];
    snprintf(n[0], sizeof n[0], "%d", it->order_count);
    snprintf(n[1], sizeof n[1], "%d", it->r);
    snprintf(n[2], sizeof n[2], "%d", it->f);
    snprintf(n[3], sizeof n[3], "%d", it->m);
    csv_field(b, it->customer_id);
    if (with_email)
        csv_field(b, it->email);
    const char *rest[] = {it->stage, it->status, n[0], it->net_revenue, it->last_order_at,
                          it->has_rfm ? n[1] : NULL, it->has_rfm ? n[2] : NULL, it->has_rfm ? n[3] : NULL,
                          it->has_rfm ? it->segment : NULL, it->p_alive, it->expected_orders, it->predicted_clv};
    csv_record(b, rest, (int)(sizeof rest / sizeof rest[0]));
}

typedef struct {
    http_stream *s;
    cust_ctx *c;
} export_out;

/* One fetch of the export: the header first, then its rows, written as one piece. */
static int export_page(const customer_page *page, void *arg)
{
    export_out *x = arg;
    cust_ctx *c = x->c;
    for (int i = 0; i < page->count; i++)
        csv_item(&c->csv, &page->items[i], c->with_email);
    int rc = http_stream_write(x->s, c->csv.data ? c->csv.data : "", c->csv.len);
    buf_reset(&c->csv);
    return rc == RD_OK ? 0 : 1;
}

/* Customers a fetch of the export reads: about 100 bytes of CSV each. */
#define EXPORT_FETCH_ROWS 500

static int export_run(PGconn *conn, http_stream *s, void *arg)
{
    cust_ctx *c = arg;
    buf_reset(&c->csv);
    csv_header(&c->csv, c->with_email);
    export_out x = {s, c};
    return store_customer_list_stream(conn, &c->query, EXPORT_FETCH_ROWS, export_page, &x);
}

int api_customer_list(http_req *rq)
{
    json_t *errors = json_array();
    cust_ctx *c = ctx_new(rq);
    http_format format;
    http_reply_format(rq, &format, errors);
    const char *stage = one_of(rq, "stage", rules_rungs, errors);
    const char *status = one_of(rq, "status", rules_statuses, errors);
    const char *segment = one_of(rq, "segment", segments, errors);
    const char *sort = one_of(rq, "sort", sorts, errors);
    int limit = int_arg(rq, "limit", 50, 1, 1000, errors);
    int r = int_arg(rq, "r", 0, 1, 5, errors);
    int f = int_arg(rq, "f", 0, 1, 5, errors);
    const char *as_of = as_of_arg(rq, errors);
    const char *min_p = http_arg(rq, "min_p_alive");
    if (min_p) {
        char *end;
        double v = strtod(min_p, &end);
        if (*end || end == min_p || !(v >= 0 && v <= 1))
            rd_error_add(errors, "min_p_alive", "must be a number from 0 to 1");
    }
    const char *cursor = http_arg(rq, "cursor");
    if (cursor && cursor_decode(cursor, sort ? sort : "net_revenue", &c->after_key, &c->after_id) != RD_OK)
        rd_error_add(errors, "cursor", "is not a cursor this service returned");
    if (json_array_size(errors)) {
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", errors);
        return HTTP_REPLIED;
    }
    json_decref(errors);
    c->min_p_alive = min_p ? xstrdup(min_p) : NULL;
    c->as_of = as_of ? xstrdup(as_of) : NULL;
    c->query = (customer_page_query){.tenant_id = rq->tenant.id, .stage = stage, .status = status,
                                     .segment = segment, .min_p_alive = c->min_p_alive, .r = r, .f = f,
                                     .sort = sort ? sort : "net_revenue", .after_key = c->after_key,
                                     .after_id = c->after_id, .limit = limit, .as_of = c->as_of};
    if (format == HTTP_FORMAT_CSV) { /* the whole list after the cursor; limit does not apply */
        rq->ctx = NULL; /* the stream's from now on: the export may outlive the request */
        rq->ctx_free = NULL;
        c->with_email = (rq->tenant.scopes & SCOPE_ADMIN) != 0;
        return http_stream_reply(rq, HTTP_CSV_TYPE, "customers", export_run, c, cust_ctx_free);
    }
    return http_defer(rq, DB_JOB_SOLO, 0, list_run, list_after);
}

/* ---- a customer's orders and rung history ---- */

static int orders_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    cust_ctx *c = rq->ctx;
    customer_orders_free(&c->orders);
    return store_customer_orders(conn, rq->tenant.id, c->customer_id, c->after_key, c->after_id, c->limit,
                                 &c->orders, &c->found);
}

/* {"customer_id", "orders": [...], "next_cursor", "count"}: a cursor when the page is full. */
static int orders_after(http_req *rq, db_done_status st)
{
    cust_ctx *c = rq->ctx;
    if (customer_job_failed(rq, st, c->found))
        return HTTP_REPLIED;
    json_t *orders = json_array();
    for (int i = 0; i < c->orders.count; i++) {
        const customer_order *o = &c->orders.items[i];
        json_array_append_new(orders, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:b, s:s}",
            "order_id", o->order_id, "placed_at", o->placed_at, "status", o->status, "currency", o->currency,
            "total", api_json_numeric(o->total), "refunded", api_json_numeric(o->refunded),
            "shop_total", api_json_numeric(o->shop_total), "shop_refunded", api_json_numeric(o->shop_refunded),
            "net_value", api_json_numeric(o->net_value), "qualifying", o->qualifying, "source", o->source));
    }
    json_t *next = json_null();
    if (c->orders.count > 0 && c->orders.count == c->limit) {
        const customer_order *last = &c->orders.items[c->orders.count - 1];
        buf b = {0};
        put_cursor(&b, last->placed_at, last->order_id);
        next = json_stringn(b.data + 1, b.len - 2); /* without put_cursor's quotes */
        buf_free(&b);
    }
    http_reply_json(rq, 200, json_pack("{s:s, s:o, s:o, s:i}", "customer_id", c->customer_id, "orders", orders,
                                       "next_cursor", next, "count", c->orders.count));
    return HTTP_REPLIED;
}

int api_customer_orders(http_req *rq)
{
    json_t *errors = json_array();
    cust_ctx *c = ctx_new(rq);
    c->limit = int_arg(rq, "limit", 50, 1, 1000, errors);
    const char *cursor = http_arg(rq, "cursor");
    /* a cursor of the list by last order carries an instant and an id, as this one does */
    if (cursor && (cursor_decode(cursor, "last_order_at", &c->after_key, &c->after_id) != RD_OK || !c->after_key))
        rd_error_add(errors, "cursor", "is not a cursor this service returned");
    if (json_array_size(errors)) {
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", errors);
        return HTTP_REPLIED;
    }
    json_decref(errors);
    c->customer_id = xstrdup(rq->params[0]);
    return http_defer(rq, DB_JOB_SOLO, 0, orders_run, orders_after);
}

static int history_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    cust_ctx *c = rq->ctx;
    customer_history_free(&c->history);
    return store_customer_history(conn, rq->tenant.id, c->customer_id, &c->history, &c->found);
}

/* {"customer_id", "changes": [{"changed_at", "from", "to"}, ...]}, oldest first. */
static int history_after(http_req *rq, db_done_status st)
{
    cust_ctx *c = rq->ctx;
    if (customer_job_failed(rq, st, c->found))
        return HTTP_REPLIED;
    json_t *changes = json_array();
    for (int i = 0; i < c->history.count; i++) {
        const rung_change *h = &c->history.items[i];
        json_array_append_new(changes, json_pack("{s:s, s:s, s:s}", "changed_at", h->changed_at, "from", h->from,
                                                 "to", h->to));
    }
    http_reply_json(rq, 200, json_pack("{s:s, s:o}", "customer_id", c->customer_id, "changes", changes));
    return HTTP_REPLIED;
}

int api_customer_history(http_req *rq)
{
    cust_ctx *c = ctx_new(rq);
    c->customer_id = xstrdup(rq->params[0]);
    return http_defer(rq, DB_JOB_SOLO, 0, history_run, history_after);
}
