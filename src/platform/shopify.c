/* shopify.c - Shopify webhook payloads → orders and customers (see shopify.h for the rules).
 *
 * Every record goes through the same validators as the generic API (rd_order_parse,
 * rd_customer_parse): the adapter only translates Shopify's field names and conventions into
 * the canonical JSON shape, so a Shopify order can never hold what a POSTed order could not.
 * Refund sums are exact: amounts are added as fixed-point integers (micro-units in 128 bits),
 * never as doubles. */
#include "retentiond/platform/shopify.h"

#include "retentiond/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- exact decimal arithmetic on normalised money strings (rd_money_from_json output) ---- */

typedef __int128 dec;      /* amount × 10^6: 18 integer + 6 fraction digits fit easily */
#define DEC_ONE ((dec)1000000)
#define DEC_MAX_OPERAND ((dec)1000000000000000000LL) /* 10^12 units: products stay in 128 bits */

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

/* Number of decimals of a decimal string ("19.99" → 2, "100" → 0). */
static int dec_places(const char *s)
{
    const char *dot = strchr(s, '.');
    return dot ? (int)strlen(dot + 1) : 0;
}

/* Formats a non-negative amount with two to six decimals (trailing zeros beyond two dropped). */
static char *dec_format(dec v)
{
    char ip[48], out[64];
    int n = 0;
    dec i = v / DEC_ONE;
    do {
        ip[n++] = (char)('0' + (int)(i % 10));
        i /= 10;
    } while (i > 0);
    int k = 0;
    while (n > 0)
        out[k++] = ip[--n];
    snprintf(out + k, sizeof out - (size_t)k, ".%06d", (int)(v % DEC_ONE));
    size_t len = strlen(out);
    while (out[len - 1] == '0' && out[len - 3] != '.')
        out[--len] = '\0';
    return xstrdup(out);
}

/* amount × num / den rounded half-up to `places` decimals: a presentment amount converted at
 * the order's own shop/presentment ratio. RD_ERR when den is 0 or the operands are absurd. */
static int dec_convert(dec amount, dec num, dec den, int places, dec *out)
{
    if (den <= 0 || amount > DEC_MAX_OPERAND || num > DEC_MAX_OPERAND)
        return RD_ERR;
    dec unit = 1;
    for (int i = places < 6 ? places : 6; i < 6; i++)
        unit *= 10;
    dec q = amount * num; /* scaled 10^12 */
    *out = (q + den * unit / 2) / (den * unit) * unit;
    return RD_OK;
}

/* ---- JSON helpers ---- */

static const char *str_field(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* A usable e-mail address (has an '@', fits the model), or NULL. */
static const char *email_field(const json_t *o, const char *key)
{
    const char *e = str_field(o, key);
    return e && strchr(e, '@') && strlen(e) <= 320 ? e : NULL;
}

static void set_reason(shopify_result *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_reason(shopify_result *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
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

static void push_refund(shopify_result *out, char *id, char *amount, char *shop_amount)
{
    out->refunds = xrealloc(out->refunds, sizeof *out->refunds * (out->n_refunds + 1));
    out->refunds[out->n_refunds++] = (shopify_refund){id, amount, shop_amount};
}

/* Sums a refund's successful refund transactions. *shop_known stays true only when every one
 * of them carries amount_set.shop_money. Returns RD_OK or RD_ERR after naming the bad field. */
static int refund_money(const json_t *refund, const char *field, dec *amount, dec *shop, int *shop_known,
                        json_t *errors)
{
    *amount = *shop = 0;
    *shop_known = 1;
    const json_t *txs = json_object_get(refund, "transactions");
    size_t i;
    const json_t *t;
    json_array_foreach(txs, i, t) {
        const char *kind = str_field(t, "kind"), *status = str_field(t, "status");
        if (!kind || strcmp(kind, "refund") != 0 || !status || strcmp(status, "success") != 0)
            continue;
        const char *why;
        char *a = rd_money_from_json(json_object_get(t, "amount"), &why);
        dec v;
        if (!a || dec_parse(a, &v) != RD_OK) {
            rd_error_add(errors, field, "transactions[%zu].amount %s", i, a ? "is not a decimal" : why);
            free(a);
            return RD_ERR;
        }
        free(a);
        *amount += v;
        const json_t *sm = json_object_get(json_object_get(json_object_get(t, "amount_set"), "shop_money"), "amount");
        char *s = sm ? rd_money_from_json(sm, &why) : NULL;
        if (s && dec_parse(s, &v) == RD_OK)
            *shop += v;
        else
            *shop_known = 0;
        free(s);
    }
    return RD_OK;
}

/* ---- topics ---- */

static const char *order_status(const json_t *p)
{
    const json_t *cancelled = json_object_get(p, "cancelled_at");
    const char *fin = str_field(p, "financial_status"), *ful = str_field(p, "fulfillment_status");
    if (cancelled && !json_is_null(cancelled))
        return "cancelled";
    if (fin && strcmp(fin, "refunded") == 0)
        return "refunded";
    if (fin && strcmp(fin, "voided") == 0) /* the authorisation was released: no sale */
        return "cancelled";
    if (ful && strcmp(ful, "fulfilled") == 0)
        return "fulfilled";
    if (fin && (strcmp(fin, "paid") == 0 || strcmp(fin, "partially_refunded") == 0))
        return "paid";
    return "placed";
}

/* The guest key of an e-mail address, "email:<lower-cased e-mail>", or NULL when there is no
 * address or the key would be longer than an id may be. */
static char *guest_key(const char *email)
{
    if (!email || strlen(email) + 6 > RD_ID_MAX)
        return NULL;
    buf b = {0};
    buf_puts(&b, "email:");
    for (const char *c = email; *c; c++) {
        char l = (char)tolower((unsigned char)*c);
        buf_append(&b, &l, 1);
    }
    return buf_steal(&b);
}

/* customer.id; else "email:<lower-cased e-mail>"; else "guest:order:<order id>". */
static char *order_customer_id(const json_t *p, const char *order_id, json_t *errors)
{
    const json_t *cust = json_object_get(p, "customer");
    const json_t *cid = json_object_get(cust, "id");
    if (cid && !json_is_null(cid)) {
        const char *why;
        char *id = rd_id_from_json(cid, &why);
        if (!id)
            rd_error_add(errors, "customer.id", "%s", why);
        return id;
    }
    const char *email = email_field(p, "email");
    if (!email)
        email = email_field(p, "contact_email");
    if (!email)
        email = email_field(cust, "email");
    char *key = guest_key(email);
    if (key)
        return key;
    buf b = {0};
    buf_printf(&b, "guest:order:%s", order_id);
    return buf_steal(&b);
}

static shopify_action map_order(const json_t *p, const char *shop_currency, ingest_set *set, shopify_result *out,
                                json_t *errors)
{
    size_t before = json_array_size(errors);
    const char *why;
    char *order_id = rd_id_from_json(json_object_get(p, "id"), &why);
    if (!order_id)
        rd_error_add(errors, "id", "%s", why);
    const char *placed = str_field(p, "processed_at");
    if (!placed)
        placed = str_field(p, "created_at");
    if (!placed)
        rd_error_add(errors, "processed_at", "is required (or created_at)");
    const char *updated = str_field(p, "updated_at");
    if (!updated)
        updated = placed;

    /* total_price is in the shop currency (`currency`); total_price_set carries both sides */
    const char *currency = str_field(p, "currency");
    const json_t *pres_m = json_object_get(json_object_get(p, "total_price_set"), "presentment_money");
    const json_t *shop_m = json_object_get(json_object_get(p, "total_price_set"), "shop_money");
    const json_t *pres_v = json_object_get(pres_m, "amount"), *shop_v = json_object_get(shop_m, "amount");
    const char *pres_cur = currency, *shop_cur = currency;
    if (pres_v) {
        pres_cur = str_field(pres_m, "currency_code");
        if (!pres_cur)
            pres_cur = str_field(p, "presentment_currency");
        if (!pres_cur)
            pres_cur = currency;
    } else {
        pres_v = json_object_get(p, "total_price");
    }
    if (shop_v) {
        if (str_field(shop_m, "currency_code"))
            shop_cur = str_field(shop_m, "currency_code");
    } else {
        shop_v = json_object_get(p, "total_price");
    }
    if (!pres_cur || !shop_cur)
        rd_error_add(errors, "currency", "is required");
    char *total = pres_v ? rd_money_from_json(pres_v, &why) : NULL;
    if (!total)
        rd_error_add(errors, "total_price_set.presentment_money.amount", "%s", pres_v ? why : "is required");
    char *shop_total = shop_v ? rd_money_from_json(shop_v, &why) : NULL;
    if (!shop_total)
        rd_error_add(errors, "total_price_set.shop_money.amount", "%s", shop_v ? why : "is required");

    char *customer_id = NULL, *refunded = NULL, *shop_refunded = NULL;
    shopify_action action = SHOPIFY_INVALID;
    if (json_array_size(errors) != before)
        goto done;
    if (strcmp(shop_cur, shop_currency) != 0) {
        /* the amount cannot be valued in the tenant's currency; storing it would mix units */
        set_reason(out, "the order's shop money is in %.16s, not the tenant's currency %s", shop_cur, shop_currency);
        action = SHOPIFY_IGNORED;
        goto done;
    }

    /* refunds: every successful refund transaction, in both currencies */
    dec total_d, shop_total_d, sum = 0, shop_sum = 0;
    dec_parse(total, &total_d);
    dec_parse(shop_total, &shop_total_d);
    const json_t *refunds = json_object_get(p, "refunds"), *r;
    size_t i;
    json_array_foreach(refunds, i, r) {
        char field[48];
        snprintf(field, sizeof field, "refunds[%zu]", i);
        char *rid = rd_id_from_json(json_object_get(r, "id"), &why);
        dec amount, shop;
        int shop_known;
        if (!rid) {
            rd_error_add(errors, field, "id %s", why);
            continue;
        }
        if (refund_money(r, field, &amount, &shop, &shop_known, errors) != RD_OK) {
            free(rid);
            continue;
        }
        if (!shop_known && dec_convert(amount, shop_total_d, total_d, dec_places(shop_total), &shop) != RD_OK)
            shop = strcmp(pres_cur, shop_cur) == 0 ? amount : 0;
        sum += amount;
        shop_sum += shop;
        push_refund(out, rid, dec_format(amount), dec_format(shop));
    }
    if (json_array_size(errors) != before)
        goto done;
    refunded = dec_format(sum < total_d ? sum : total_d);
    shop_refunded = dec_format(shop_sum < shop_total_d ? shop_sum : shop_total_d);
    customer_id = order_customer_id(p, order_id, errors);
    if (!customer_id)
        goto done;

    json_t *canon = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:{s:s, s:s}}",
                              "order_id", order_id, "customer_id", customer_id, "placed_at", placed,
                              "updated_at", updated, "currency", pres_cur, "total", total,
                              "refunded", refunded, "status", order_status(p), "test",
                              json_is_true(json_object_get(p, "test")), "shop_money", "total", shop_total,
                              "refunded", shop_refunded);
    const char *email = email_field(p, "email");
    if (!email)
        email = email_field(p, "contact_email");
    if (email)
        json_object_set_new(canon, "email", json_string(email));
    rd_order o;
    if (rd_order_parse(canon, shop_currency, &o, errors) == RD_OK) {
        o.source = "shopify";
        push_order(set, &o);
        out->order_id = xstrdup(order_id);
        action = SHOPIFY_RECORDS;
    } else {
        rd_order_free(&o);
    }
    json_decref(canon);

done:
    free(order_id);
    free(customer_id);
    free(total);
    free(shop_total);
    free(refunded);
    free(shop_refunded);
    return action;
}

static shopify_action map_refund(const json_t *p, shopify_result *out, json_t *errors)
{
    size_t before = json_array_size(errors);
    const char *why;
    out->order_id = rd_id_from_json(json_object_get(p, "order_id"), &why);
    if (!out->order_id)
        rd_error_add(errors, "order_id", "%s", why);
    char *rid = rd_id_from_json(json_object_get(p, "id"), &why);
    if (!rid)
        rd_error_add(errors, "id", "%s", why);
    const char *at = str_field(p, "processed_at");
    if (!at)
        at = str_field(p, "created_at");
    if (!at || rd_timestamp_check(at) != RD_OK)
        rd_error_add(errors, "processed_at", "must be an RFC 3339 timestamp (or give created_at)");
    dec amount, shop;
    int shop_known;
    if (refund_money(p, "transactions", &amount, &shop, &shop_known, errors) == RD_OK && rid &&
        json_array_size(errors) == before) {
        out->refund_at = xstrdup(at);
        push_refund(out, rid, dec_format(amount), shop_known ? dec_format(shop) : NULL);
        return SHOPIFY_REFUND;
    }
    free(rid);
    return SHOPIFY_INVALID;
}

static shopify_action map_customer(const json_t *p, ingest_set *set, json_t *errors)
{
    const json_t *id = json_object_get(p, "id");
    if (!id || json_is_null(id)) {
        rd_error_add(errors, "id", "is required");
        return SHOPIFY_INVALID;
    }
    json_t *canon = json_pack("{s:O}", "customer_id", id);
    if (email_field(p, "email"))
        json_object_set_new(canon, "email", json_string(email_field(p, "email")));
    if (str_field(p, "created_at"))
        json_object_set_new(canon, "created_at", json_string(str_field(p, "created_at")));
    if (str_field(p, "updated_at")) /* a late retry of an older state then changes nothing */
        json_object_set_new(canon, "updated_at", json_string(str_field(p, "updated_at")));
    /* marketing consent and tags are what campaigns filter on; no names, no addresses */
    json_t *attrs = json_object();
    const json_t *am = json_object_get(p, "accepts_marketing");
    if (json_is_boolean(am))
        json_object_set_new(attrs, "accepts_marketing", json_boolean(json_is_true(am)));
    const char *consent = str_field(json_object_get(p, "email_marketing_consent"), "state");
    if (consent)
        json_object_set_new(attrs, "email_marketing_consent", json_string(consent));
    if (str_field(p, "tags"))
        json_object_set_new(attrs, "tags", json_string(str_field(p, "tags")));
    if (str_field(p, "state"))
        json_object_set_new(attrs, "state", json_string(str_field(p, "state")));
    if (json_object_size(attrs))
        json_object_set_new(canon, "attributes", attrs);
    else
        json_decref(attrs);
    rd_customer c;
    shopify_action action = SHOPIFY_INVALID;
    if (rd_customer_parse(canon, &c, errors) == RD_OK) {
        push_customer(set, &c);
        action = SHOPIFY_RECORDS;
    } else {
        rd_customer_free(&c);
    }
    json_decref(canon);
    return action;
}

static bool topic_is(const char *topic, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(topic, *list) == 0)
            return true;
    return false;
}

/* customers/redact, customers/data_request: {shop_id, shop_domain, customer {id, email, phone},
 * orders_to_redact | orders_requested [ids], data_request {id}}; shop/redact: {shop_id,
 * shop_domain}. The person is customer.id and, when an e-mail is given, the guest key of the
 * same address (docs/webhooks.md: orders without an account are keyed by it). */
static shopify_action map_compliance(const char *topic, const json_t *p, shopify_result *out, json_t *errors)
{
    if (strcmp(topic, "shop/redact") == 0)
        return SHOPIFY_REDACT_SHOP;
    bool request = strcmp(topic, "customers/data_request") == 0;
    size_t before = json_array_size(errors);
    const char *why;
    const json_t *cust = json_object_get(p, "customer");
    const json_t *cid = json_object_get(cust, "id");
    if (cid && !json_is_null(cid)) {
        char *id = rd_id_from_json(cid, &why);
        if (!id)
            rd_error_add(errors, "customer.id", "%s", why);
        else
            out->subjects[out->n_subjects++] = id;
    }
    char *key = guest_key(email_field(cust, "email"));
    if (key)
        out->subjects[out->n_subjects++] = key;
    const char *list = request ? "orders_requested" : "orders_to_redact";
    const json_t *orders = json_object_get(p, list);
    if (orders && !json_is_null(orders) && !json_is_array(orders))
        rd_error_add(errors, list, "must be an array of order ids");
    size_t i;
    const json_t *o;
    out->orders = xcalloc(json_array_size(orders) + 1, sizeof *out->orders);
    json_array_foreach(orders, i, o) {
        char *id = rd_id_from_json(o, &why);
        if (!id) {
            rd_error_add(errors, list, "element %zu: %s", i, why);
            continue;
        }
        out->orders[out->n_orders++] = id;
    }
    if (request) {
        const json_t *rid = json_object_get(json_object_get(p, "data_request"), "id");
        out->request_id = rid ? rd_id_from_json(rid, &why) : NULL;
        if (!out->request_id)
            rd_error_add(errors, "data_request.id", "%s", rid ? why : "is required");
    }
    if (out->n_subjects == 0 && out->n_orders == 0 && json_array_size(errors) == before)
        rd_error_add(errors, "customer", "names no customer (id or email) and no orders");
    if (json_array_size(errors) > before)
        return SHOPIFY_INVALID;
    return request ? SHOPIFY_DATA_REQUEST : SHOPIFY_REDACT_CUSTOMER;
}

shopify_action shopify_map(const char *topic, const json_t *payload, const char *shop_currency,
                           ingest_set *set, shopify_result *out, json_t *errors)
{
    static const char *const compliance_topics[] = {"customers/redact", "shop/redact", "customers/data_request", NULL};
    /* every order topic sends the whole order resource */
    static const char *const order_topics[] = {"orders/create", "orders/updated", "orders/paid",
                                               "orders/cancelled", "orders/fulfilled",
                                               "orders/partially_fulfilled", NULL};
    static const char *const customer_topics[] = {"customers/create", "customers/update", NULL};
    memset(out, 0, sizeof *out);
    if (!topic || !*topic) {
        set_reason(out, "no X-Shopify-Topic header");
        return out->action = SHOPIFY_IGNORED;
    }
    bool known = topic_is(topic, order_topics) || topic_is(topic, customer_topics) ||
                 topic_is(topic, compliance_topics) || strcmp(topic, "refunds/create") == 0 ||
                 strcmp(topic, "orders/delete") == 0;
    if (!known) {
        set_reason(out, "topic %.64s is not used by retentiond", topic);
        return out->action = SHOPIFY_IGNORED;
    }
    if (!json_is_object(payload)) {
        rd_error_add(errors, "", "the body must be a JSON object");
        return out->action = SHOPIFY_INVALID;
    }
    if (topic_is(topic, order_topics))
        out->action = map_order(payload, shop_currency, set, out, errors);
    else if (topic_is(topic, customer_topics))
        out->action = map_customer(payload, set, errors);
    else if (strcmp(topic, "refunds/create") == 0)
        out->action = map_refund(payload, out, errors);
    else if (topic_is(topic, compliance_topics))
        out->action = map_compliance(topic, payload, out, errors);
    else { /* orders/delete: the body is {"id": N} */
        const char *why;
        out->order_id = rd_id_from_json(json_object_get(payload, "id"), &why);
        if (!out->order_id)
            rd_error_add(errors, "id", "%s", why);
        out->action = out->order_id ? SHOPIFY_DELETE : SHOPIFY_INVALID;
    }
    return out->action;
}

void shopify_result_free(shopify_result *r)
{
    for (size_t i = 0; i < r->n_refunds; i++) {
        free(r->refunds[i].refund_id);
        free(r->refunds[i].amount);
        free(r->refunds[i].shop_amount);
    }
    free(r->refunds);
    free(r->order_id);
    free(r->refund_at);
    for (size_t i = 0; i < r->n_subjects; i++)
        free(r->subjects[i]);
    for (size_t i = 0; i < r->n_orders; i++)
        free(r->orders[i]);
    free(r->orders);
    free(r->request_id);
    memset(r, 0, sizeof *r);
}
