/* model.c - parsing and validation of the ingest model (see model.h). Every check appends to
 * the caller's error list instead of returning early, so one 422 names every bad field. */
#include "retentiond/domain/model.h"

#include "retentiond/util.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rd_error_add(json_t *errors, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(errors, json_pack("{s:s, s:s}", "field", field, "message", msg));
}

/* ---- scalars ---- */

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

int rd_date_check(const char *s)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' || !all_digits(s, 4) || !all_digits(s + 5, 2) ||
        !all_digits(s + 8, 2))
        return RD_ERR;
    int y = num(s, 4), m = num(s + 5, 2), d = num(s + 8, 2);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || m < 1 || m > 12 || d < 1)
        return RD_ERR;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int max = mdays[m - 1] + (m == 2 && leap);
    return d <= max ? RD_OK : RD_ERR;
}

int rd_timestamp_check(const char *s)
{
    size_t n = strlen(s);
    if (n < 10 || n > 40)
        return RD_ERR;
    char date[11];
    memcpy(date, s, 10);
    date[10] = '\0';
    if (rd_date_check(date) != RD_OK)
        return RD_ERR;
    if (n == 10)
        return RD_OK;
    const char *p = s + 10;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return RD_ERR;
    p++;
    if (strlen(p) < 8 || p[2] != ':' || p[5] != ':' || !all_digits(p, 2) || !all_digits(p + 3, 2) ||
        !all_digits(p + 6, 2))
        return RD_ERR;
    if (num(p, 2) > 23 || num(p + 3, 2) > 59 || num(p + 6, 2) > 60)
        return RD_ERR;
    p += 8;
    if (*p == '.') {
        p++;
        size_t f = 0;
        while (isdigit((unsigned char)p[f]))
            f++;
        if (f == 0 || f > 9)
            return RD_ERR;
        p += f;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return RD_OK;
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':' && all_digits(p + 1, 2) &&
        all_digits(p + 4, 2) && num(p + 1, 2) <= 23 && num(p + 4, 2) <= 59)
        return RD_OK;
    return RD_ERR;
}

static char *money_from_string(const char *s, const char **why)
{
    if (*s == '-') {
        *why = "must not be negative";
        return NULL;
    }
    const char *dot = strchr(s, '.');
    size_t ilen = dot ? (size_t)(dot - s) : strlen(s);
    size_t flen = dot ? strlen(dot + 1) : 0;
    if (ilen == 0 || !all_digits(s, ilen) || (dot && (flen == 0 || !all_digits(dot + 1, flen)))) {
        *why = "must be a decimal amount such as \"49.90\"";
        return NULL;
    }
    while (ilen > 1 && *s == '0') { /* "007.5" -> "7.5" */
        s++;
        ilen--;
    }
    if (ilen > 18) {
        *why = "is too large (at most 18 digits before the decimal point)";
        return NULL;
    }
    if (flen > 6) {
        *why = "has too many decimals (at most 6)";
        return NULL;
    }
    return xstrdup(s);
}

char *rd_money_from_json(const json_t *v, const char **why)
{
    if (json_is_string(v))
        return money_from_string(json_string_value(v), why);
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0) {
            *why = "must not be negative";
            return NULL;
        }
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%lld", (long long)i);
        return money_from_string(tmp, why);
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d < 0) {
            *why = "must not be negative";
            return NULL;
        }
        if (d == 0)
            return xstrdup("0");
        /* %.15g recovers the decimal the sender wrote whenever it had at most 15 significant
         * digits; anything longer is refused rather than silently rounded */
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.15g", d);
        if (strchr(tmp, 'e') || strchr(tmp, 'n') || strtod(tmp, NULL) != d) {
            *why = "cannot be represented exactly as a JSON number; send it as a string";
            return NULL;
        }
        return money_from_string(tmp, why);
    }
    *why = "must be a decimal string or a number";
    return NULL;
}

int rd_money_cmp(const char *a, const char *b)
{
    const char *da = strchr(a, '.'), *db = strchr(b, '.');
    size_t ia = da ? (size_t)(da - a) : strlen(a), ib = db ? (size_t)(db - b) : strlen(b);
    while (ia > 1 && *a == '0') { a++; ia--; }
    while (ib > 1 && *b == '0') { b++; ib--; }
    if (ia != ib)
        return ia < ib ? -1 : 1;
    int c = strncmp(a, b, ia);
    if (c)
        return c;
    const char *fa = da ? da + 1 : "", *fb = db ? db + 1 : "";
    while (*fa || *fb) {
        char x = *fa ? *fa++ : '0', y = *fb ? *fb++ : '0';
        if (x != y)
            return x < y ? -1 : 1;
    }
    return 0;
}

static bool has_control_chars(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20)
            return true;
    return false;
}

char *rd_id_from_json(const json_t *v, const char **why)
{
    if (json_is_integer(v)) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        return xstrdup(tmp);
    }
    if (!json_is_string(v)) {
        *why = "must be a string or an integer";
        return NULL;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0) {
        *why = "must not be empty";
        return NULL;
    }
    if (n > RD_ID_MAX) {
        *why = "is longer than 255 bytes";
        return NULL;
    }
    if (has_control_chars(s)) {
        *why = "must not contain control characters";
        return NULL;
    }
    return xstrdup(s);
}

/* ---- field readers: each records its own error ---- */

static char *req_id(const json_t *obj, const char *field, json_t *errors)
{
    const json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        rd_error_add(errors, field, "is required");
        return NULL;
    }
    const char *why;
    char *id = rd_id_from_json(v, &why);
    if (!id)
        rd_error_add(errors, field, "%s", why);
    return id;
}

static char *opt_id(const json_t *obj, const char *field, json_t *errors)
{
    const json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v))
        return NULL;
    const char *why;
    char *id = rd_id_from_json(v, &why);
    if (!id)
        rd_error_add(errors, field, "%s", why);
    return id;
}

static char *opt_text(const json_t *obj, const char *field, size_t max, json_t *errors)
{
    const json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        rd_error_add(errors, field, "must be a string");
        return NULL;
    }
    if (json_string_length(v) > max) {
        rd_error_add(errors, field, "is longer than %zu bytes", max);
        return NULL;
    }
    if (has_control_chars(json_string_value(v))) {
        rd_error_add(errors, field, "must not contain control characters");
        return NULL;
    }
    return xstrdup(json_string_value(v));
}

static char *time_field(const json_t *obj, const char *field, bool required, json_t *errors)
{
    const json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        if (required)
            rd_error_add(errors, field, "is required");
        return NULL;
    }
    if (!json_is_string(v) || rd_timestamp_check(json_string_value(v)) != RD_OK) {
        rd_error_add(errors, field, "must be an RFC 3339 timestamp such as 2026-01-05T10:00:00Z (or a date)");
        return NULL;
    }
    return xstrdup(json_string_value(v));
}

static char *money_field(const json_t *obj, const char *field, bool required, json_t *errors)
{
    const json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        if (required)
            rd_error_add(errors, field, "is required");
        return NULL;
    }
    const char *why;
    char *m = rd_money_from_json(v, &why);
    if (!m)
        rd_error_add(errors, field, "%s", why);
    return m;
}

static char *object_field(const json_t *obj, const char *field, json_t *errors)
{
    const json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_object(v)) {
        rd_error_add(errors, field, "must be an object");
        return NULL;
    }
    return json_dumps(v, JSON_COMPACT);
}

static bool valid_currency(const char *c)
{
    return strlen(c) == 3 && isupper((unsigned char)c[0]) && isupper((unsigned char)c[1]) &&
           isupper((unsigned char)c[2]);
}

/* ---- records ---- */

int rd_customer_parse(const json_t *obj, rd_customer *out, json_t *errors)
{
    size_t before = json_array_size(errors);
    memset(out, 0, sizeof *out);
    out->customer_id = req_id(obj, "customer_id", errors);
    out->email = opt_text(obj, "email", 320, errors);
    if (out->email && !strchr(out->email, '@'))
        rd_error_add(errors, "email", "is not an e-mail address");
    out->created_at = time_field(obj, "created_at", false, errors);
    out->channel = opt_text(obj, "channel", RD_ID_MAX, errors);
    out->referred_by = opt_id(obj, "referred_by", errors);
    if (out->referred_by && out->customer_id && strcmp(out->referred_by, out->customer_id) == 0)
        rd_error_add(errors, "referred_by", "a customer cannot refer themselves");
    out->attributes = object_field(obj, "attributes", errors);
    out->updated_at = time_field(obj, "updated_at", false, errors);
    return json_array_size(errors) == before ? RD_OK : RD_ERR;
}

static const char *const order_statuses[] = {"placed", "paid", "fulfilled", "cancelled", "refunded", NULL};

int rd_order_parse(const json_t *obj, const char *shop_currency, rd_order *out, json_t *errors)
{
    size_t before = json_array_size(errors);
    memset(out, 0, sizeof *out);
    out->source = "api";
    out->order_id = req_id(obj, "order_id", errors);
    out->customer_id = req_id(obj, "customer_id", errors);
    out->placed_at = time_field(obj, "placed_at", true, errors);
    out->updated_at = time_field(obj, "updated_at", false, errors);
    out->total = money_field(obj, "total", true, errors);
    out->refunded = money_field(obj, "refunded", false, errors);
    out->email = opt_text(obj, "email", 320, errors);

    const json_t *cur = json_object_get(obj, "currency");
    if (cur && !json_is_null(cur)) {
        if (!json_is_string(cur) || !valid_currency(json_string_value(cur)))
            rd_error_add(errors, "currency", "must be an ISO 4217 code such as USD");
        else
            out->currency = xstrdup(json_string_value(cur));
    }
    if (!out->currency)
        out->currency = xstrdup(shop_currency);

    const json_t *st = json_object_get(obj, "status");
    if (st && !json_is_null(st)) {
        const char *s = json_is_string(st) ? json_string_value(st) : NULL;
        for (int i = 0; s && order_statuses[i]; i++)
            if (strcmp(s, order_statuses[i]) == 0)
                out->status = xstrdup(s);
        if (!out->status)
            rd_error_add(errors, "status", "must be one of placed, paid, fulfilled, cancelled, refunded");
    } else {
        out->status = xstrdup("placed");
    }
    const json_t *test = json_object_get(obj, "test");
    if (test && !json_is_null(test) && !json_is_boolean(test))
        rd_error_add(errors, "test", "must be true or false");
    out->test = json_is_true(test);

    if (!out->refunded)
        out->refunded = xstrdup("0");
    if (out->total && rd_money_cmp(out->refunded, out->total) > 0)
        rd_error_add(errors, "refunded", "must not exceed total");

    /* amounts in the shop's currency: required when the order's currency differs */
    const json_t *shop = json_object_get(obj, "shop_money");
    bool foreign = strcmp(out->currency, shop_currency) != 0;
    if (shop && !json_is_null(shop)) {
        if (!json_is_object(shop)) {
            rd_error_add(errors, "shop_money", "must be an object {\"total\", \"refunded\"}");
        } else {
            const char *why;
            const json_t *t = json_object_get(shop, "total");
            if (!t)
                rd_error_add(errors, "shop_money.total", "is required");
            else if (!(out->shop_total = rd_money_from_json(t, &why)))
                rd_error_add(errors, "shop_money.total", "%s", why);
            const json_t *r = json_object_get(shop, "refunded");
            if (r && !json_is_null(r) && !(out->shop_refunded = rd_money_from_json(r, &why)))
                rd_error_add(errors, "shop_money.refunded", "%s", why);
        }
    } else if (foreign) {
        rd_error_add(errors, "currency",
                     "%s is not the shop's currency (%s): include shop_money.total in %s",
                     out->currency, shop_currency, shop_currency);
    } else {
        out->shop_total = out->total ? xstrdup(out->total) : NULL;
        out->shop_refunded = xstrdup(out->refunded);
    }
    if (out->shop_total && !out->shop_refunded) {
        /* scale the refund into shop money only when there is none: a full refund stays full */
        out->shop_refunded = xstrdup(rd_money_cmp(out->refunded, "0") == 0 ? "0"
                                     : (out->total && rd_money_cmp(out->refunded, out->total) == 0) ? out->shop_total
                                                                                                      : "");
        if (!*out->shop_refunded)
            rd_error_add(errors, "shop_money.refunded", "is required for a partial refund in a foreign currency");
    }
    if (out->shop_total && out->shop_refunded && *out->shop_refunded &&
        rd_money_cmp(out->shop_refunded, out->shop_total) > 0)
        rd_error_add(errors, "shop_money.refunded", "must not exceed shop_money.total");
    if (!out->updated_at && out->placed_at)
        out->updated_at = xstrdup(out->placed_at);
    return json_array_size(errors) == before ? RD_OK : RD_ERR;
}

int rd_event_parse(const json_t *obj, rd_event *out, json_t *errors)
{
    size_t before = json_array_size(errors);
    memset(out, 0, sizeof *out);
    out->event_id = req_id(obj, "event_id", errors);
    out->customer_id = req_id(obj, "customer_id", errors);
    out->occurred_at = time_field(obj, "occurred_at", true, errors);
    out->type = opt_text(obj, "type", 64, errors);
    const json_t *tv = json_object_get(obj, "type");
    if (!tv || json_is_null(tv))
        rd_error_add(errors, "type", "is required");
    else if (out->type && !*out->type)
        rd_error_add(errors, "type", "must not be empty");
    const json_t *props = json_object_get(obj, "properties");
    if (props && !json_is_null(props) && !json_is_object(props))
        rd_error_add(errors, "properties", "must be an object");
    if (out->type && json_is_object(props)) {
        const json_t *v;
        if (strcmp(out->type, "review") == 0) {
            v = json_object_get(props, "rating");
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 5)
                rd_error_add(errors, "properties.rating", "a review needs an integer rating from 1 to 5");
        } else if (strcmp(out->type, "nps") == 0) {
            v = json_object_get(props, "score");
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10)
                rd_error_add(errors, "properties.score", "an NPS answer needs an integer score from 0 to 10");
        } else if (strcmp(out->type, "referral") == 0) {
            v = json_object_get(props, "referred_customer_id");
            const char *why;
            char *id = v ? rd_id_from_json(v, &why) : NULL;
            if (!id)
                rd_error_add(errors, "properties.referred_customer_id", "a referral names the customer it brought");
            else if (out->customer_id && strcmp(id, out->customer_id) == 0)
                rd_error_add(errors, "properties.referred_customer_id", "a customer cannot refer themselves");
            free(id);
        }
    } else if (out->type && (strcmp(out->type, "review") == 0 || strcmp(out->type, "nps") == 0 ||
                             strcmp(out->type, "referral") == 0)) {
        rd_error_add(errors, "properties", "is required for a %s event", out->type);
    }
    out->properties = json_is_object(props) ? json_dumps(props, JSON_COMPACT) : xstrdup("{}");
    return json_array_size(errors) == before ? RD_OK : RD_ERR;
}

int rd_spend_parse(const json_t *obj, const char *shop_currency, rd_spend *out, json_t *errors)
{
    size_t before = json_array_size(errors);
    memset(out, 0, sizeof *out);
    /* "type" names acquisition or retention; "kind" is accepted too on POST /v1/spend, but in
     * a batch line "kind" is taken by the record kind ("spend") */
    const json_t *k = json_object_get(obj, "type");
    if (!k) {
        k = json_object_get(obj, "kind");
        if (json_is_string(k) && strcmp(json_string_value(k), "spend") == 0)
            k = NULL;
    }
    const char *ks = json_is_string(k) ? json_string_value(k) : NULL;
    if (ks && (strcmp(ks, "acquisition") == 0 || strcmp(ks, "retention") == 0))
        out->kind = xstrdup(ks);
    else
        rd_error_add(errors, "type", "must be acquisition or retention");
    out->channel = opt_text(obj, "channel", RD_ID_MAX, errors);
    if (!out->channel)
        out->channel = xstrdup("");
    out->amount = money_field(obj, "amount", true, errors);
    const json_t *cur = json_object_get(obj, "currency");
    if (cur && !json_is_null(cur) && (!json_is_string(cur) || strcmp(json_string_value(cur), shop_currency) != 0))
        rd_error_add(errors, "currency", "spend is recorded in the shop's currency (%s)", shop_currency);

    const json_t *period = json_object_get(obj, "period");
    const json_t *ps = json_object_get(obj, "period_start"), *pe = json_object_get(obj, "period_end");
    if (period && !json_is_null(period)) {
        /* "YYYY-MM": the calendar month */
        const char *p = json_is_string(period) ? json_string_value(period) : "";
        char first[16];
        snprintf(first, sizeof first, "%.7s-01", p);
        if (strlen(p) != 7 || rd_date_check(first) != RD_OK) {
            rd_error_add(errors, "period", "must be a month such as 2026-03");
        } else {
            int y = atoi(p), m = atoi(p + 5);
            char next[32];
            snprintf(next, sizeof next, "%04d-%02d-01", m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1);
            out->period_start = xstrdup(first);
            out->period_end = xstrdup(next);
        }
    } else {
        if (!json_is_string(ps) || rd_date_check(json_string_value(ps)) != RD_OK)
            rd_error_add(errors, "period_start", "must be a date YYYY-MM-DD (or give period: YYYY-MM)");
        else
            out->period_start = xstrdup(json_string_value(ps));
        if (!json_is_string(pe) || rd_date_check(json_string_value(pe)) != RD_OK)
            rd_error_add(errors, "period_end", "must be a date YYYY-MM-DD (exclusive end)");
        else
            out->period_end = xstrdup(json_string_value(pe));
        if (out->period_start && out->period_end && strcmp(out->period_end, out->period_start) <= 0)
            rd_error_add(errors, "period_end", "must be after period_start");
    }
    return json_array_size(errors) == before ? RD_OK : RD_ERR;
}

void rd_customer_free(rd_customer *c)
{
    free(c->customer_id); free(c->email); free(c->created_at); free(c->channel);
    free(c->referred_by); free(c->attributes); free(c->updated_at);
    memset(c, 0, sizeof *c);
}

void rd_order_free(rd_order *o)
{
    free(o->order_id); free(o->customer_id); free(o->placed_at); free(o->updated_at);
    free(o->currency); free(o->total); free(o->refunded); free(o->shop_total);
    free(o->shop_refunded); free(o->status); free(o->email);
    memset(o, 0, sizeof *o);
}

void rd_event_free(rd_event *e)
{
    free(e->event_id); free(e->customer_id); free(e->type); free(e->occurred_at); free(e->properties);
    memset(e, 0, sizeof *e);
}

void rd_spend_free(rd_spend *s)
{
    free(s->kind); free(s->channel); free(s->period_start); free(s->period_end); free(s->amount);
    memset(s, 0, sizeof *s);
}
