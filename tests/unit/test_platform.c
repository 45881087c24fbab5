/*
 * test_platform.c - unit tests of the webhook adapters (src/platform/): the HMAC signature
 * and the pure Shopify / WooCommerce payload mappers.
 *
 * Signature expectations are the published RFC 4231 HMAC-SHA256 test vectors (hex digests
 * base64-encoded independently). Mapper expectations are read from the fixture payloads
 * themselves (tests/fixtures/webhooks, see SOURCE.md) — the order id, the amounts, the dates —
 * or from small edits of them made here, so the tests restate the platforms' documented
 * meaning rather than the code's output.
 *
 * The fixture directory comes from RD_FIXTURES (default "tests/fixtures").
 */
#include "retentiond/config.h"
#include "retentiond/http/outbound.h"
#include "retentiond/platform/shopify.h"
#include "retentiond/platform/signature.h"
#include "retentiond/platform/woocommerce.h"

#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static const char *fixtures_dir(void)
{
    const char *d = getenv("RD_FIXTURES");
    return d && *d ? d : "tests/fixtures";
}

static json_t *load_fixture(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/webhooks/%s", fixtures_dir(), name);
    json_error_t err;
    json_t *v = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(v != NULL, "cannot load fixture %s: %s (set RD_FIXTURES)", path, err.text);
    return v;
}

/* A decimal string as integer hundredths, the test's own independent arithmetic. */
static long long cents(const char *s)
{
    long long whole = 0, frac = 0;
    int digits = 0;
    const char *p = s;
    for (; *p && *p != '.'; p++)
        whole = whole * 10 + (*p - '0');
    if (*p == '.')
        for (p++; *p && digits < 2; p++, digits++)
            frac = frac * 10 + (*p - '0');
    for (; digits < 2; digits++)
        frac *= 10;
    return whole * 100 + frac;
}

static const char *jstr(const json_t *o, const char *path)
{
    /* "a.b.c" lookup */
    char key[128];
    const json_t *v = o;
    const char *p = path;
    while (*p) {
        size_t n = strcspn(p, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        v = json_object_get(v, key);
        p += n + (p[n] == '.');
    }
    return json_string_value(v);
}

static char *id_text(const json_t *v)
{
    char text[32];
    snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
    return strdup(text);
}

/* Maps a Shopify payload expected to give exactly one order. */
static shopify_action shopify_one(const char *topic, json_t *p, const char *currency, ingest_set *set,
                                  shopify_result *r, json_t *errors)
{
    memset(set, 0, sizeof *set);
    return shopify_map(topic, p, currency, set, r, errors);
}

/* ---- signature ---- */

START_TEST(rfc4231_case2)
{
    char out[SIGNATURE_B64_LEN + 1];
    const char *data = "what do ya want for nothing?";
    signature_compute("Jefe", data, strlen(data), out);
    /* hex 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 */
    ck_assert_str_eq(out, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
    ck_assert(signature_verify("Jefe", data, strlen(data), "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="));
    ck_assert(signature_verify("Jefe", data, strlen(data), "  W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM= "));
}
END_TEST

START_TEST(rfc4231_case1)
{
    char key[21], out[SIGNATURE_B64_LEN + 1];
    memset(key, 0x0b, 20);
    key[20] = '\0';
    signature_compute(key, "Hi There", 8, out);
    /* hex b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7 */
    ck_assert_str_eq(out, "sDRMYdjbOFNcqK/OrwvxK4gdwgDJgz2nJuk3bC4yz/c=");
}
END_TEST

START_TEST(signature_rejects)
{
    const char *data = "what do ya want for nothing?";
    size_t n = strlen(data);
    ck_assert(!signature_verify("Jefe", data, n, "X9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="));
    ck_assert(!signature_verify("Jefe", data, n - 1, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="));
    ck_assert(!signature_verify("jefe", data, n, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="));
    ck_assert(!signature_verify("Jefe", data, n, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM"));
    ck_assert(!signature_verify("Jefe", data, n, ""));
    ck_assert(!signature_verify("Jefe", data, n, NULL));
    char out[SIGNATURE_B64_LEN + 1];
    signature_compute("s", NULL, 0, out); /* an empty body still has a signature */
    ck_assert(signature_verify("s", NULL, 0, out));
}
END_TEST

START_TEST(rfc4231_hex)
{
    /* the outgoing webhooks' form of the same MACs: RFC 4231's test vectors as printed there */
    char out[SIGNATURE_HEX_LEN + 1], key[21];
    const char *data = "what do ya want for nothing?";
    signature_compute_hex("Jefe", data, strlen(data), out);
    ck_assert_str_eq(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key, 0x0b, 20);
    key[20] = '\0';
    signature_compute_hex(key, "Hi There", 8, out);
    ck_assert_str_eq(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}
END_TEST

/* ---- where outgoing webhooks may go ---- */

static bool allowed(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(text, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        ck_assert_int_eq(inet_pton(AF_INET6, text, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        ck_assert_int_eq(inet_pton(AF_INET, text, &a->sin_addr), 1);
    }
    return outbound_address_allowed((struct sockaddr *)&ss);
}

START_TEST(outbound_addresses)
{
    /* RFC 6890's special-purpose blocks, at their first and last addresses where they border
     * public space, and public neighbours just outside them */
    static const char *const refused[] = {
        "0.0.0.0", "0.255.255.255", "10.0.0.1", "10.255.255.255", "100.64.0.0", "100.127.255.255", "127.0.0.1",
        "127.255.255.254", "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.0.0.8", "192.0.2.1",
        "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "224.0.0.1",
        "239.255.255.250", "240.0.0.1", "255.255.255.255", "::", "::1", "fc00::1", "fdff:ffff::1", "fe80::1",
        "febf::1", "fec0::1", "feff::1", "ff02::1", "2001:db8::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
    };
    static const char *const public[] = {
        "1.1.1.1", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "126.255.255.255",
        "128.0.0.0", "169.253.255.255", "172.15.255.255", "172.32.0.0", "192.167.255.255", "192.169.0.0",
        "198.17.255.255", "198.20.0.0", "223.255.255.255", "93.184.216.34", "2606:4700:4700::1111",
        "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::808:808",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        ck_assert_msg(!allowed(refused[i]), "%s allowed", refused[i]);
    for (size_t i = 0; i < sizeof public / sizeof public[0]; i++)
        ck_assert_msg(allowed(public[i]), "%s refused", public[i]);
    config.webhook_allow_private = 1;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        ck_assert_msg(allowed(refused[i]), "%s refused though allowed", refused[i]);
    config.webhook_allow_private = 0;
}
END_TEST

START_TEST(outbound_urls)
{
    char why[320];
    ck_assert(outbound_url_allowed("https://93.184.216.34/hook?x=1", why, sizeof why));
    ck_assert(outbound_url_allowed("http://[2606:4700:4700::1111]:8443/", why, sizeof why));
    ck_assert(!outbound_url_allowed("http://127.0.0.1:8080/", why, sizeof why));
    ck_assert(strstr(why, "WEBHOOK_ALLOW_PRIVATE"));
    ck_assert(!outbound_url_allowed("http://[::1]/", why, sizeof why));
    ck_assert(!outbound_url_allowed("ftp://93.184.216.34/", why, sizeof why));
    ck_assert(strstr(why, "http or https"));
    ck_assert(!outbound_url_allowed("93.184.216.34/hook", why, sizeof why));
    ck_assert(!outbound_url_allowed("https:///nohost", why, sizeof why));
}
END_TEST

/* ---- Shopify ---- */

START_TEST(shopify_order_fixture)
{
    json_t *p = load_fixture("shopify_orders_create.json"), *errors = json_array();
    ingest_set set;
    shopify_result r;
    const char *shop_cur = jstr(p, "total_price_set.shop_money.currency_code");
    ck_assert_int_eq(shopify_one("orders/create", p, shop_cur, &set, &r, errors), SHOPIFY_RECORDS);
    ck_assert_uint_eq(set.n_orders, 1);
    const rd_order *o = &set.orders[0];
    char *id = id_text(json_object_get(p, "id")), *cid = id_text(json_object_get(json_object_get(p, "customer"), "id"));
    ck_assert_str_eq(o->order_id, id);
    ck_assert_str_eq(r.order_id, id);
    ck_assert_str_eq(o->customer_id, cid);
    ck_assert_str_eq(o->placed_at, jstr(p, "processed_at"));
    ck_assert_str_eq(o->updated_at, jstr(p, "updated_at"));
    ck_assert_str_eq(o->currency, jstr(p, "presentment_currency"));
    ck_assert_int_eq(cents(o->total), cents(jstr(p, "total_price_set.presentment_money.amount")));
    ck_assert_int_eq(cents(o->shop_total), cents(jstr(p, "total_price_set.shop_money.amount")));
    ck_assert_int_eq(cents(o->refunded), 0);
    ck_assert_int_eq(cents(o->shop_refunded), 0);
    ck_assert_str_eq(o->status, "paid"); /* financial_status paid, not fulfilled */
    ck_assert(o->test == json_is_true(json_object_get(p, "test")));
    ck_assert(o->test);
    ck_assert_str_eq(o->source, "shopify");
    ck_assert_str_eq(o->email, jstr(p, "email"));
    ck_assert_uint_eq(json_array_size(errors), 0);
    free(id);
    free(cid);
    shopify_result_free(&r);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);
}
END_TEST

START_TEST(shopify_foreign_shop_money_ignored)
{
    json_t *p = load_fixture("shopify_orders_create.json"), *errors = json_array();
    ingest_set set;
    shopify_result r;
    ck_assert_int_eq(shopify_one("orders/create", p, "USD", &set, &r, errors), SHOPIFY_IGNORED);
    ck_assert_uint_eq(set.n_orders, 0);
    ck_assert_ptr_nonnull(strstr(r.reason, "ARS"));
    shopify_result_free(&r);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);
}
END_TEST

START_TEST(shopify_guest_by_email)
{
    json_t *p = load_fixture("shopify_orders_create.json"), *errors = json_array();
    json_object_set_new(p, "customer", json_null());
    json_object_set_new(p, "email", json_string("Guest.Buyer@Example.COM"));
    ingest_set set;
    shopify_result r;
    ck_assert_int_eq(shopify_one("orders/create", p, "ARS", &set, &r, errors), SHOPIFY_RECORDS);
    ck_assert_str_eq(set.orders[0].customer_id, "email:guest.buyer@example.com");
    shopify_result_free(&r);
    ingest_set_free(&set);

    /* no e-mail anywhere: a per-order guest */
    json_object_set_new(p, "email", json_null());
    json_object_set_new(p, "contact_email", json_null());
    ck_assert_int_eq(shopify_one("orders/create", p, "ARS", &set, &r, errors), SHOPIFY_RECORDS);
    char *id = id_text(json_object_get(p, "id")), want[64];
    snprintf(want, sizeof want, "guest:order:%s", id);
    ck_assert_str_eq(set.orders[0].customer_id, want);
    free(id);
    shopify_result_free(&r);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);
}
END_TEST

START_TEST(shopify_statuses)
{
    json_t *p = load_fixture("shopify_orders_create.json"), *errors = json_array();
    struct {
        const char *fin, *ful, *cancelled_at, *want;
    } cases[] = {
        {"paid", NULL, "2026-10-02T10:00:00-03:00", "cancelled"},
        {"refunded", NULL, NULL, "refunded"},
        {"voided", NULL, NULL, "cancelled"},
        {"paid", "fulfilled", NULL, "fulfilled"},
        {"partially_refunded", NULL, NULL, "paid"},
        {"pending", NULL, NULL, "placed"},
        {"authorized", "partial", NULL, "placed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object_set_new(p, "financial_status", json_string(cases[i].fin));
        json_object_set_new(p, "fulfillment_status", cases[i].ful ? json_string(cases[i].ful) : json_null());
        json_object_set_new(p, "cancelled_at", cases[i].cancelled_at ? json_string(cases[i].cancelled_at) : json_null());
        ingest_set set;
        shopify_result r;
        ck_assert_int_eq(shopify_one("orders/updated", p, "ARS", &set, &r, errors), SHOPIFY_RECORDS);
        ck_assert_msg(strcmp(set.orders[0].status, cases[i].want) == 0, "case %zu: %s, want %s", i,
                      set.orders[0].status, cases[i].want);
        shopify_result_free(&r);
        ingest_set_free(&set);
    }
    json_decref(errors);
    json_decref(p);
}
END_TEST

/* presentment EUR, shop money ARS: totals in both, refunds converted at the order's ratio */
START_TEST(shopify_multi_currency_and_refunds)
{
    json_t *p = load_fixture("shopify_orders_create.json"), *errors = json_array();
    json_t *tps = json_object_get(p, "total_price_set");
    json_object_set_new(tps, "presentment_money", json_pack("{s:s, s:s}", "amount", "1000.00", "currency_code", "EUR"));
    json_object_set_new(p, "presentment_currency", json_string("EUR"));
    json_object_set_new(p, "refunds", json_pack("[{s:I, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}, {s:s, s:s, s:s}]}]",
        "id", (json_int_t)9007199254740993LL, "transactions",
        "kind", "refund", "status", "success", "amount", "100.00",
        "kind", "refund", "status", "failure", "amount", "50.00",
        "kind", "sale", "status", "success", "amount", "1000.00"));
    ingest_set set;
    shopify_result r;
    ck_assert_int_eq(shopify_one("orders/updated", p, "ARS", &set, &r, errors), SHOPIFY_RECORDS);
    const rd_order *o = &set.orders[0];
    ck_assert_str_eq(o->currency, "EUR");
    ck_assert_int_eq(cents(o->total), 100000);
    ck_assert_int_eq(cents(o->shop_total), cents(jstr(p, "total_price_set.shop_money.amount")));
    ck_assert_int_eq(cents(o->refunded), 10000);
    /* 100 EUR of 1000 EUR is a tenth of the shop total */
    ck_assert_int_eq(cents(o->shop_refunded), cents(jstr(p, "total_price_set.shop_money.amount")) / 10);
    ck_assert_uint_eq(r.n_refunds, 1);
    ck_assert_str_eq(r.refunds[0].refund_id, "9007199254740993"); /* above 2^53: exact */
    ck_assert_int_eq(cents(r.refunds[0].amount), 10000);
    ck_assert_int_eq(cents(r.refunds[0].shop_amount), cents(o->shop_refunded));
    shopify_result_free(&r);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);
}
END_TEST

START_TEST(shopify_refund_fixture)
{
    json_t *p = load_fixture("shopify_refunds_create.json"), *errors = json_array();
    ingest_set set;
    shopify_result r;
    ck_assert_int_eq(shopify_one("refunds/create", p, "USD", &set, &r, errors), SHOPIFY_REFUND);
    ck_assert_uint_eq(ingest_set_size(&set), 0);
    char *oid = id_text(json_object_get(p, "order_id")), *rid = id_text(json_object_get(p, "id"));
    ck_assert_str_eq(r.order_id, oid);
    ck_assert_uint_eq(r.n_refunds, 1);
    ck_assert_str_eq(r.refunds[0].refund_id, rid);
    ck_assert_str_eq(r.refund_at, jstr(p, "processed_at"));
    long long want = 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(p, "transactions"), i, t)
        if (strcmp(jstr(t, "kind"), "refund") == 0 && strcmp(jstr(t, "status"), "success") == 0)
            want += cents(jstr(t, "amount"));
    ck_assert_int_eq(cents(r.refunds[0].amount), want);
    ck_assert_ptr_null(r.refunds[0].shop_amount); /* the example's transactions carry no shop money */
    free(oid);
    free(rid);
    shopify_result_free(&r);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);
}
END_TEST

START_TEST(shopify_customer_fixture)
{
    json_t *p = load_fixture("shopify_customers_create.json"), *errors = json_array();
    ingest_set set;
    shopify_result r;
    ck_assert_int_eq(shopify_one("customers/create", p, "USD", &set, &r, errors), SHOPIFY_RECORDS);
    ck_assert_uint_eq(set.n_customers, 1);
    char *id = id_text(json_object_get(p, "id"));
    ck_assert_str_eq(set.customers[0].customer_id, id);
    ck_assert_str_eq(set.customers[0].email, jstr(p, "email"));
    ck_assert_str_eq(set.customers[0].created_at, jstr(p, "created_at"));
    json_t *attrs = json_loads(set.customers[0].attributes, 0, NULL);
    ck_assert_str_eq(jstr(attrs, "state"), jstr(p, "state"));
    json_decref(attrs);
    free(id);
    shopify_result_free(&r);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);
}
END_TEST

START_TEST(shopify_unknown_and_invalid)
{
    json_t *p = load_fixture("shopify_orders_create.json"), *errors = json_array();
    ingest_set set;
    shopify_result r;
    ck_assert_int_eq(shopify_one("products/create", p, "ARS", &set, &r, errors), SHOPIFY_IGNORED);
    ck_assert_ptr_nonnull(strstr(r.reason, "products/create"));
    shopify_result_free(&r);
    ck_assert_int_eq(shopify_one(NULL, p, "ARS", &set, &r, errors), SHOPIFY_IGNORED);
    shopify_result_free(&r);
    ck_assert_uint_eq(json_array_size(errors), 0);

    json_object_del(p, "id");
    json_object_del(p, "processed_at");
    json_object_del(p, "created_at");
    ck_assert_int_eq(shopify_one("orders/create", p, "ARS", &set, &r, errors), SHOPIFY_INVALID);
    ck_assert_uint_eq(ingest_set_size(&set), 0);
    ck_assert_uint_ge(json_array_size(errors), 2);
    shopify_result_free(&r);

    json_t *del = json_pack("{s:I}", "id", (json_int_t)450789469);
    ck_assert_int_eq(shopify_one("orders/delete", del, "ARS", &set, &r, errors), SHOPIFY_DELETE);
    ck_assert_str_eq(r.order_id, "450789469");
    shopify_result_free(&r);
    json_decref(del);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);
}
END_TEST

/* ---- WooCommerce ---- */

/* Shopify's compliance payloads (shapes of its documentation: shop_id, shop_domain, customer
 * {id, email, phone}, orders_to_redact / orders_requested, data_request {id}). */
START_TEST(shopify_compliance_topics)
{
    json_t *errors = json_array();
    ingest_set set;
    shopify_result r;
    json_t *redact = json_loads("{\"shop_id\": 954889, \"shop_domain\": \"x.myshopify.com\", \"customer\": "
                                "{\"id\": 191167, \"email\": \"John@Example.com\", \"phone\": \"555-625-1199\"},"
                                " \"orders_to_redact\": [299938, \"299939\"]}", 0, NULL);
    ck_assert_int_eq(shopify_one("customers/redact", redact, "USD", &set, &r, errors), SHOPIFY_REDACT_CUSTOMER);
    ck_assert_uint_eq(r.n_subjects, 2);
    ck_assert_str_eq(r.subjects[0], "191167");
    ck_assert_str_eq(r.subjects[1], "email:john@example.com");   /* the guest key of the same address */
    ck_assert_uint_eq(r.n_orders, 2);
    ck_assert_str_eq(r.orders[0], "299938");
    ck_assert_str_eq(r.orders[1], "299939");
    ck_assert_uint_eq(ingest_set_size(&set), 0);
    shopify_result_free(&r);

    json_t *request = json_loads("{\"shop_id\": 954889, \"shop_domain\": \"x.myshopify.com\", \"orders_requested\":"
                                 " [299938], \"customer\": {\"id\": 191167, \"email\": null}, \"data_request\":"
                                 " {\"id\": 9999}}", 0, NULL);
    ck_assert_int_eq(shopify_one("customers/data_request", request, "USD", &set, &r, errors), SHOPIFY_DATA_REQUEST);
    ck_assert_str_eq(r.request_id, "9999");
    ck_assert_uint_eq(r.n_subjects, 1);
    shopify_result_free(&r);
    json_object_del(request, "data_request");
    ck_assert_int_eq(shopify_one("customers/data_request", request, "USD", &set, &r, errors), SHOPIFY_INVALID);
    shopify_result_free(&r);

    json_t *shop = json_loads("{\"shop_id\": 954889, \"shop_domain\": \"x.myshopify.com\"}", 0, NULL);
    ck_assert_int_eq(shopify_one("shop/redact", shop, "USD", &set, &r, errors), SHOPIFY_REDACT_SHOP);
    shopify_result_free(&r);
    json_array_clear(errors);
    ck_assert_int_eq(shopify_one("customers/redact", shop, "USD", &set, &r, errors), SHOPIFY_INVALID);
    ck_assert_uint_ge(json_array_size(errors), 1);
    shopify_result_free(&r);
    json_decref(redact);
    json_decref(request);
    json_decref(shop);
    json_decref(errors);
}
END_TEST

START_TEST(woo_order_fixture)
{
    json_t *p = load_fixture("woocommerce_order_created.json"), *errors = json_array();
    ingest_set set = {0};
    woocommerce_result r;
    ck_assert_int_eq(woocommerce_map("order.created", p, jstr(p, "currency"), &set, &r, errors), WOOCOMMERCE_RECORDS);
    ck_assert_uint_eq(set.n_orders, 1);
    const rd_order *o = &set.orders[0];
    char *id = id_text(json_object_get(p, "id")), want[128];
    ck_assert_str_eq(o->order_id, id);
    ck_assert_int_eq(json_integer_value(json_object_get(p, "customer_id")), 0); /* a guest */
    ck_assert_str_eq(o->customer_id, "email:john.doe@example.com");
    snprintf(want, sizeof want, "%sZ", jstr(p, "date_created_gmt"));
    ck_assert_str_eq(o->placed_at, want);
    snprintf(want, sizeof want, "%sZ", jstr(p, "date_modified_gmt"));
    ck_assert_str_eq(o->updated_at, want);
    ck_assert_int_eq(cents(o->total), cents(jstr(p, "total")));
    ck_assert_int_eq(cents(o->shop_total), cents(jstr(p, "total")));
    ck_assert_int_eq(cents(o->refunded), 0);
    ck_assert_str_eq(o->status, "paid"); /* processing */
    ck_assert(!o->test);
    ck_assert_str_eq(o->source, "woocommerce");
    free(id);
    woocommerce_result_free(&r);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);
}
END_TEST

START_TEST(woo_statuses_refunds_currency)
{
    json_t *p = load_fixture("woocommerce_order_created.json"), *errors = json_array();
    static const char *const cases[][2] = {
        {"completed", "fulfilled"}, {"processing", "paid"}, {"on-hold", "placed"}, {"pending", "cancelled"},
        {"failed", "cancelled"},    {"cancelled", "cancelled"}, {"refunded", "refunded"}, {"trash", "cancelled"},
    };
    ingest_set set = {0};
    woocommerce_result r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object_set_new(p, "status", json_string(cases[i][0]));
        ck_assert_int_eq(woocommerce_map("order.updated", p, "USD", &set, &r, errors), WOOCOMMERCE_RECORDS);
        ck_assert_str_eq(set.orders[0].status, cases[i][1]);
        woocommerce_result_free(&r);
        ingest_set_free(&set);
    }
    /* refunds are negative; refunded is minus their sum */
    json_object_set_new(p, "status", json_string("completed"));
    json_object_set_new(p, "refunds", json_pack("[{s:i, s:s}, {s:i, s:s}]", "id", 1, "total", "-5.00", "id", 2,
                                                "total", "-2.35"));
    ck_assert_int_eq(woocommerce_map("order.updated", p, "USD", &set, &r, errors), WOOCOMMERCE_RECORDS);
    ck_assert_int_eq(cents(set.orders[0].refunded), 500 + 235);
    woocommerce_result_free(&r);
    ingest_set_free(&set);
    /* a registered customer */
    json_object_set_new(p, "customer_id", json_integer(26));
    ck_assert_int_eq(woocommerce_map("order.updated", p, "USD", &set, &r, errors), WOOCOMMERCE_RECORDS);
    ck_assert_str_eq(set.orders[0].customer_id, "26");
    woocommerce_result_free(&r);
    ingest_set_free(&set);
    /* another currency: ignored, not refused */
    ck_assert_int_eq(woocommerce_map("order.updated", p, "EUR", &set, &r, errors), WOOCOMMERCE_IGNORED);
    ck_assert_uint_eq(set.n_orders, 0);
    ck_assert_ptr_nonnull(strstr(r.reason, "USD"));
    woocommerce_result_free(&r);
    /* deletion: a full body is cancelled, an id-only body names the stored order */
    ck_assert_int_eq(woocommerce_map("order.deleted", p, "USD", &set, &r, errors), WOOCOMMERCE_RECORDS);
    ck_assert_str_eq(set.orders[0].status, "cancelled");
    woocommerce_result_free(&r);
    ingest_set_free(&set);
    json_t *del = json_pack("{s:i}", "id", 727);
    ck_assert_int_eq(woocommerce_map("order.deleted", del, "USD", &set, &r, errors), WOOCOMMERCE_DELETE);
    ck_assert_str_eq(r.order_id, "727");
    woocommerce_result_free(&r);
    json_decref(del);
    ck_assert_int_eq(woocommerce_map("coupon.created", p, "USD", &set, &r, errors), WOOCOMMERCE_IGNORED);
    woocommerce_result_free(&r);
    ck_assert_uint_eq(json_array_size(errors), 0);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);
}
END_TEST

START_TEST(woo_customer_and_ping)
{
    json_t *p = json_pack("{s:i, s:s, s:s, s:s, s:b}", "id", 25, "email", "john.doe@example.com", "date_created_gmt",
                          "2017-03-21T19:09:28", "role", "customer", "is_paying_customer", 0);
    json_t *errors = json_array();
    ingest_set set = {0};
    woocommerce_result r;
    ck_assert_int_eq(woocommerce_map("customer.created", p, "USD", &set, &r, errors), WOOCOMMERCE_RECORDS);
    ck_assert_str_eq(set.customers[0].customer_id, "25");
    ck_assert_str_eq(set.customers[0].email, "john.doe@example.com");
    ck_assert_str_eq(set.customers[0].created_at, "2017-03-21T19:09:28Z");
    woocommerce_result_free(&r);
    ingest_set_free(&set);
    json_decref(errors);
    json_decref(p);

    ck_assert(woocommerce_is_ping("webhook_id=15", 13));
    ck_assert(!woocommerce_is_ping("webhook_id=", 11));
    ck_assert(!woocommerce_is_ping("{\"id\":1}", 8));
    ck_assert(!woocommerce_is_ping(NULL, 0));
}
END_TEST

static Suite *platform_suite(void)
{
    Suite *s = suite_create("platform");
    TCase *sig = tcase_create("signature");
    tcase_add_test(sig, rfc4231_case2);
    tcase_add_test(sig, rfc4231_case1);
    tcase_add_test(sig, signature_rejects);
    tcase_add_test(sig, rfc4231_hex);
    TCase *out = tcase_create("outbound");
    tcase_add_test(out, outbound_addresses);
    tcase_add_test(out, outbound_urls);
    suite_add_tcase(s, out);
    suite_add_tcase(s, sig);
    TCase *shop = tcase_create("shopify");
    tcase_add_test(shop, shopify_order_fixture);
    tcase_add_test(shop, shopify_foreign_shop_money_ignored);
    tcase_add_test(shop, shopify_guest_by_email);
    tcase_add_test(shop, shopify_statuses);
    tcase_add_test(shop, shopify_multi_currency_and_refunds);
    tcase_add_test(shop, shopify_refund_fixture);
    tcase_add_test(shop, shopify_customer_fixture);
    tcase_add_test(shop, shopify_unknown_and_invalid);
    tcase_add_test(shop, shopify_compliance_topics);
    suite_add_tcase(s, shop);
    TCase *woo = tcase_create("woocommerce");
    tcase_add_test(woo, woo_order_fixture);
    tcase_add_test(woo, woo_statuses_refunds_currency);
    tcase_add_test(woo, woo_customer_and_ping);
    suite_add_tcase(s, woo);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(platform_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
