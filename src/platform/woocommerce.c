/* woocommerce.c - WooCommerce webhook payloads → orders and customers (rules in
 * woocommerce.h). As for Shopify, records are built in the canonical JSON shape and pass the
 * generic validators; refunds are summed exactly in fixed point, never in doubles. */
#include "retentiond/platform/woocommerce.h"

#include "retentiond/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- exact sums of normalised money strings (amount × 10^6 in 128 bits) ---- */

typedef __int128 dec;
#define DEC_ONE ((dec)1000000)

static int dec_parse(const char *s, dec *out)
{
    dec v = 0, f = DEC_ONE / 10;
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return RD_ERR;
    for (; isdigit((unsigned char)*p); p++)
        v = v * 10 + (*p - '0');
    v *= DEC_ONE;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p) && f > 0; p++, f /= 10)
            v += (*p - '0') * f;
    if (*p)
        return RD_ERR;
    *out = v;
    return RD_OK;
}

static char *dec_format(dec v)
{
    char ip[48], out[64];
    int n = 0, k = 0;
    dec i = v / DEC_ONE;
    do {
        ip[n++] = (char)('0' + (int)(i % 10));
        i /= 10;
    } while (i > 0);
    while (n > 0)
        out[k++] = ip[--n];
    snprintf(out + k, sizeof out - (size_t)k, ".%06d", (int)(v % DEC_ONE));
    size_t len = strlen(out);
    while (out[len - 1] == '0' && out[len - 3] != '.')
        out[--len] = '\0';
    return xstrdup(out);
}

/* ---- helpers ---- */

static const char *str_field(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

static void set_reason(woocommerce_result *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_reason(woocommerce_result *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
}

/* A *_gmt date as RFC 3339: "2017-03-22T19:28:02" → "2017-03-22T19:28:02Z". NULL if absent. */
static char *gmt_time(const json_t *o, const char *key)
{
    const char *s = str_field(o, key);
    if (!s)
        return NULL;
    const char *t = strpbrk(s, "Tt ");
    bool zoned = t && strpbrk(t, "Zz+-");
    buf b = {0};
    buf_printf(&b, "%s%s", s, zoned ? "" : "Z");
    return buf_steal(&b);
}

static void push_order(ingest_set *set, const rd_order *o)
{
    if (set->n_orders == set->cap_orders) {
        set->cap_orders = set->cap_orders ? set->cap_orders * 2 : 4;
        set->orders = xrealloc(set->orders, sizeof *set->orders * set->cap_orders);
    }
    set->orders[set->n_orders++] = *o;
}

static void push_customer(ingest_set *set, const rd_customer *c)
{
    if (set->n_customers == set->cap_customers) {
        set->cap_customers = set->cap_customers ? set->cap_customers * 2 : 4;
        set->customers = xrealloc(set->customers, sizeof *set->customers * set->cap_customers);
    }
    set->customers[set->n_customers++] = *c;
}

static const char *order_status(const char *s)
{
    static const char *const map[][2] = {
        {"completed", "fulfilled"}, {"processing", "paid"},     {"on-hold", "placed"},
        {"pending", "cancelled"},   {"failed", "cancelled"},    {"checkout-draft", "cancelled"},
        {"cancelled", "cancelled"}, {"trash", "cancelled"},     {"refunded", "refunded"},
    };
    for (size_t i = 0; s && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(s, map[i][0]) == 0)
            return map[i][1];
    return "placed";
}

/* customer_id when registered; a guest (0) is "email:<billing.email lower-cased>". */
static char *order_customer_id(const json_t *p, const char *order_id, json_t *errors)
{
    const json_t *cid = json_object_get(p, "customer_id");
    const char *why;
    char *id = cid && !json_is_null(cid) ? rd_id_from_json(cid, &why) : NULL;
    if (cid && !json_is_null(cid) && !id) {
        rd_error_add(errors, "customer_id", "%s", why);
        return NULL;
    }
    if (id && strcmp(id, "0") != 0)
        return id;
    free(id);
    const char *email = str_field(json_object_get(p, "billing"), "email");
    buf b = {0};
    if (email && strchr(email, '@') && strlen(email) + 6 <= RD_ID_MAX) {
        buf_puts(&b, "email:");
        for (const char *c = email; *c; c++) {
            char l = (char)tolower((unsigned char)*c);
            buf_append(&b, &l, 1);
        }
    } else {
        buf_printf(&b, "guest:order:%s", order_id);
    }
    return buf_steal(&b);
}

/* Minus the sum of refunds[].total (each negative). RD_ERR after naming a bad entry. */
static int refunded_sum(const json_t *p, dec *sum, json_t *errors)
{
    *sum = 0;
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(p, "refunds"), i, r) {
        const json_t *t = json_object_get(r, "total");
        json_t *abs = NULL;
        if (json_is_string(t))
            abs = json_string(json_string_value(t) + (json_string_value(t)[0] == '-'));
        else if (json_is_integer(t))
            abs = json_integer(json_integer_value(t) < 0 ? -json_integer_value(t) : json_integer_value(t));
        else if (json_is_real(t))
            abs = json_real(json_real_value(t) < 0 ? -json_real_value(t) : json_real_value(t));
        const char *why = "is required";
        char *m = abs ? rd_money_from_json(abs, &why) : NULL;
        json_decref(abs);
        dec v;
        if (!m || dec_parse(m, &v) != RD_OK) {
            rd_error_add(errors, "refunds", "[%zu].total %s", i, why);
            free(m);
            return RD_ERR;
        }
        free(m);
        *sum += v;
    }
    return RD_OK;
}

/* ---- topics ---- */

static woocommerce_action map_order(const json_t *p, bool deleted, const char *shop_currency, ingest_set *set,
                                    woocommerce_result *out, json_t *errors)
{
    size_t before = json_array_size(errors);
    const char *why;
    woocommerce_action action = WOOCOMMERCE_INVALID;
    char *order_id = rd_id_from_json(json_object_get(p, "id"), &why);
    char *placed = gmt_time(p, "date_created_gmt"), *updated = gmt_time(p, "date_modified_gmt");
    char *total = NULL, *refunded = NULL, *customer_id = NULL;
    if (!order_id) {
        rd_error_add(errors, "id", "%s", why);
        goto done;
    }
    if (deleted && !json_object_get(p, "total")) {
        /* a permanent deletion sends only {"id": N}: cancel what is stored */
        out->order_id = order_id;
        order_id = NULL;
        action = WOOCOMMERCE_DELETE;
        goto done;
    }
    const char *currency = str_field(p, "currency");
    if (!currency)
        rd_error_add(errors, "currency", "is required");
    if (!placed)
        rd_error_add(errors, "date_created_gmt", "is required");
    const json_t *tv = json_object_get(p, "total");
    total = tv ? rd_money_from_json(tv, &why) : NULL;
    if (!total)
        rd_error_add(errors, "total", "%s", tv ? why : "is required");
    dec sum, total_d;
    if (refunded_sum(p, &sum, errors) != RD_OK || json_array_size(errors) != before)
        goto done;
    if (strcmp(currency, shop_currency) != 0) {
        /* see woocommerce.h: no shop-currency amount exists, and a refusal would get the
         * webhook disabled */
        set_reason(out, "the order is in %.16s and WooCommerce sends no amount in the tenant's currency %s",
                   currency, shop_currency);
        action = WOOCOMMERCE_IGNORED;
        goto done;
    }
    dec_parse(total, &total_d);
    refunded = dec_format(sum < total_d ? sum : total_d);
    customer_id = order_customer_id(p, order_id, errors);
    if (!customer_id)
        goto done;
    json_t *canon = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "order_id", order_id, "customer_id",
                              customer_id, "placed_at", placed, "currency", currency, "total", total,
                              "refunded", refunded, "status",
                              deleted ? "cancelled" : order_status(str_field(p, "status")));
    if (updated)
        json_object_set_new(canon, "updated_at", json_string(updated));
    const char *email = str_field(json_object_get(p, "billing"), "email");
    if (email && strchr(email, '@') && strlen(email) <= 320)
        json_object_set_new(canon, "email", json_string(email));
    rd_order o;
    if (rd_order_parse(canon, shop_currency, &o, errors) == RD_OK) {
        o.source = "woocommerce";
        push_order(set, &o);
        out->order_id = xstrdup(order_id);
        action = WOOCOMMERCE_RECORDS;
    } else {
        rd_order_free(&o);
    }
    json_decref(canon);

done:
    free(order_id);
    free(placed);
    free(updated);
    free(total);
    free(refunded);
    free(customer_id);
    return action;
}

static woocommerce_action map_customer(const json_t *p, ingest_set *set, json_t *errors)
{
    const json_t *id = json_object_get(p, "id");
    if (!id || json_is_null(id)) {
        rd_error_add(errors, "id", "is required");
        return WOOCOMMERCE_INVALID;
    }
    json_t *canon = json_pack("{s:O}", "customer_id", id);
    const char *email = str_field(p, "email");
    if (email && strchr(email, '@'))
        json_object_set_new(canon, "email", json_string(email));
    char *created = gmt_time(p, "date_created_gmt");
    if (created)
        json_object_set_new(canon, "created_at", json_string(created));
    free(created);
    char *modified = gmt_time(p, "date_modified_gmt");
    if (modified) /* a late retry of an older state then changes nothing */
        json_object_set_new(canon, "updated_at", json_string(modified));
    free(modified);
    json_t *attrs = json_object();
    if (str_field(p, "role"))
        json_object_set_new(attrs, "role", json_string(str_field(p, "role")));
    const json_t *paying = json_object_get(p, "is_paying_customer");
    if (json_is_boolean(paying))
        json_object_set_new(attrs, "is_paying_customer", json_boolean(json_is_true(paying)));
    if (json_object_size(attrs))
        json_object_set_new(canon, "attributes", attrs);
    else
        json_decref(attrs);
    rd_customer c;
    woocommerce_action action = WOOCOMMERCE_INVALID;
    if (rd_customer_parse(canon, &c, errors) == RD_OK) {
        push_customer(set, &c);
        action = WOOCOMMERCE_RECORDS;
    } else {
        rd_customer_free(&c);
    }
    json_decref(canon);
    return action;
}

woocommerce_action woocommerce_map(const char *topic, const json_t *payload, const char *shop_currency,
                                   ingest_set *set, woocommerce_result *out, json_t *errors)
{
    memset(out, 0, sizeof *out);
    bool order = topic && (strcmp(topic, "order.created") == 0 || strcmp(topic, "order.updated") == 0 ||
                           strcmp(topic, "order.restored") == 0);
    bool deleted = topic && strcmp(topic, "order.deleted") == 0;
    bool customer = topic && (strcmp(topic, "customer.created") == 0 || strcmp(topic, "customer.updated") == 0);
    if (!order && !deleted && !customer) {
        if (topic && *topic)
            set_reason(out, "topic %.64s is not used by retentiond", topic);
        else
            set_reason(out, "no X-WC-Webhook-Topic header");
        return out->action = WOOCOMMERCE_IGNORED;
    }
    if (!json_is_object(payload)) {
        rd_error_add(errors, "", "the body must be a JSON object");
        return out->action = WOOCOMMERCE_INVALID;
    }
    out->action = customer ? map_customer(payload, set, errors)
                           : map_order(payload, deleted, shop_currency, set, out, errors);
    return out->action;
}

void woocommerce_result_free(woocommerce_result *r)
{
    free(r->order_id);
    memset(r, 0, sizeof *r);
}

bool woocommerce_is_ping(const char *body, size_t len)
{
    static const char prefix[] = "webhook_id=";
    if (!body || len <= sizeof prefix - 1 || len > 64 || memcmp(body, prefix, sizeof prefix - 1) != 0)
        return false;
    for (size_t i = sizeof prefix - 1; i < len; i++)
        if (!isdigit((unsigned char)body[i]))
            return false;
    return true;
}
