/* customers.c - GET /v1/customers/{id} (one profile) and GET /v1/customers (lists).
 *
 * The profile comes from the rollup row plus RFM scores against the tenant's cached quintile
 * boundaries (migrations/005_customers.sql, 006_rfm_cutoffs.sql), read in one statement with
 * the tenant's fitted CLV model and the customer's purchase summary (010); the segment and
 * predictions are added here (api_clv_enrich_profile).
 *
 * A list is one call of rd_customer_list (005, 016), which returns the reply whole: sorted by
 * the key descending, ties by customer id descending, customers without the key last (or by
 * customer id ascending). Its cursor is the last row's key, as PostgreSQL prints it, and id;
 * the key is checked here against the type of the sort, so a forged cursor is a 400. */
#include "retentiond/api/api.h"

#include "retentiond/domain/metrics.h"
#include "retentiond/domain/model.h"
#include "retentiond/store/reports.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *params[10];
    int days, horizon_months;
    json_t *result;   /* a profile */
    char *page;       /* a list: the reply as rd_customer_list wrote it */
    bool found;
} cust_ctx;

static void cust_ctx_free(void *p)
{
    cust_ctx *c = p;
    for (int i = 0; i < 10; i++)
        free(c->params[i]);
    json_decref(c->result);
    free(c->page);
    free(c);
}

static cust_ctx *ctx_new(http_req *rq)
{
    cust_ctx *c = xcalloc(1, sizeof *c);
    rq->ctx = c;
    rq->ctx_free = cust_ctx_free;
    char tid[24];
    snprintf(tid, sizeof tid, "%lld", (long long)rq->tenant.id);
    c->params[0] = xstrdup(tid);
    return c;
}

/* Adds the named segment to the r/f/m scores the SQL computed from the tenant's quintile
 * boundaries (migrations/006_rfm_cutoffs.sql). */
static void add_rfm(json_t *profile)
{
    json_t *scores = json_object_get(profile, "rfm_scores");
    if (!json_is_object(scores)) {
        json_object_set_new(profile, "rfm", json_pack("{s:n, s:n, s:n, s:s}", "r", "f", "m", "segment", "prospect"));
        json_object_del(profile, "rfm_scores");
        return;
    }
    int r = (int)json_integer_value(json_object_get(scores, "r"));
    int f = (int)json_integer_value(json_object_get(scores, "f"));
    int m = (int)json_integer_value(json_object_get(scores, "m"));
    json_object_set_new(profile, "rfm", json_pack("{s:i, s:i, s:i, s:s, s:{s:O, s:O, s:s}}", "r", r, "f", f, "m", m,
                                                  "segment", metrics_rfm_segment(r, f), "inputs", "customers_with_orders",
                                                  json_object_get(scores, "n"), "quintiles_computed_at",
                                                  json_object_get(scores, "computed_at"), "rule",
                                                  "ntile(5) of last order time, order count and net revenue"));
    json_object_del(profile, "rfm_scores");
}

static int profile_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    cust_ctx *c = rq->ctx;
    json_decref(c->result);
    c->result = NULL;
    profile_row row;
    if (store_customer_profile(conn, c->params[0], c->params[1], c->params[2], &row) != RD_OK)
        return RD_ERR;
    c->found = row.json != NULL;
    int rc = RD_OK;
    if (c->found) {
        c->result = json_loads(row.json, 0, NULL);
        if (!c->result) {
            rc = RD_ERR;
        } else {
            add_rfm(c->result);
            json_object_set_new(c->result, "as_of", json_string(row.as_of));
            api_clv_enrich_profile(c->result, &row, c->days, c->horizon_months);
        }
    }
    profile_row_free(&row);
    return rc;
}

static int profile_after(http_req *rq, db_done_status st)
{
    cust_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    if (!c->found) {
        http_reply_problem(rq, 404, "Not Found", "no customer with this id", NULL);
        return HTTP_REPLIED;
    }
    http_reply_json(rq, 200, json_incref(c->result));
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
    c->params[1] = xstrdup(rq->params[0]);
    c->params[2] = as_of ? xstrdup(as_of) : NULL;
    return http_defer(rq, DB_JOB_SOLO, 0, profile_run, profile_after);
}

/* ---- lists ---- */

static const char *const sorts[] = {"net_revenue", "order_count", "last_order_at", "p_alive", "predicted_clv",
                                    "customer_id", NULL};
static const char *const stages[] = {"suspect", "prospect", "customer", "client", "advocate", NULL};
static const char *const statuses[] = {"active", "at_risk", "lapsed", NULL};
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

static int list_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    cust_ctx *c = rq->ctx;
    free(c->page);
    c->page = NULL;
    if (store_customer_list(conn, (const char *const *)c->params, &c->page) != RD_OK)
        return RD_ERR;
    return c->page ? RD_OK : RD_ERR;
}

/* The page goes out as the SQL wrote it: {"customers", "next_cursor", "count"}, the rows with
 * their RFM segment, the cursor hex-encoded (migration 016). */
static int list_after(http_req *rq, db_done_status st)
{
    cust_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    http_reply_text(rq, 200, "application/json", c->page, strlen(c->page));
    return HTTP_REPLIED;
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
 * RD_ERR when it is not one of ours (cursors of versions before migration 016 carried the key
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

int api_customer_list(http_req *rq)
{
    json_t *errors = json_array();
    cust_ctx *c = ctx_new(rq);
    const char *stage = one_of(rq, "stage", stages, errors);
    const char *status = one_of(rq, "status", statuses, errors);
    const char *segment = one_of(rq, "segment", segments, errors);
    const char *sort = one_of(rq, "sort", sorts, errors);
    int limit = int_arg(rq, "limit", 50, 1, 1000, errors);
    const char *as_of = as_of_arg(rq, errors);
    const char *min_p = http_arg(rq, "min_p_alive");
    if (min_p) {
        char *end;
        double v = strtod(min_p, &end);
        if (*end || end == min_p || !(v >= 0 && v <= 1))
            rd_error_add(errors, "min_p_alive", "must be a number from 0 to 1");
    }
    const char *cursor = http_arg(rq, "cursor");
    if (cursor && cursor_decode(cursor, sort ? sort : "net_revenue", &c->params[6], &c->params[7]) != RD_OK)
        rd_error_add(errors, "cursor", "is not a cursor this service returned");
    if (json_array_size(errors)) {
        http_reply_problem(rq, 400, "Bad Request", "invalid query parameters", errors);
        return HTTP_REPLIED;
    }
    json_decref(errors);
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    c->params[1] = stage ? xstrdup(stage) : NULL;
    c->params[2] = status ? xstrdup(status) : NULL;
    c->params[3] = segment ? xstrdup(segment) : NULL;
    c->params[4] = min_p ? xstrdup(min_p) : NULL;
    c->params[5] = xstrdup(sort ? sort : "net_revenue");
    c->params[8] = xstrdup(lim);
    c->params[9] = as_of ? xstrdup(as_of) : NULL;
    return http_defer(rq, DB_JOB_SOLO, 0, list_run, list_after);
}
