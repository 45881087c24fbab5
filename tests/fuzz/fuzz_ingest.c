/* fuzz_ingest.c - libFuzzer harness over everything that parses untrusted request bytes
 * without a database: JSON → rd_order/customer/event/spend_parse, the batch reader on the
 * raw bytes as NDJSON and as CSV, and the Shopify / WooCommerce webhook mappers.
 *
 *   make fuzz B=/tmp/rbuild          builds $(B)/fuzz/fuzz_ingest (clang, ASan + UBSan)
 *   $(B)/fuzz/fuzz_ingest tests/fuzz/seeds -max_total_time=60
 *
 * The first input byte picks the webhook topic and the tenant currency; the rest is the
 * payload. Everything allocated is freed, so LeakSanitizer reports any leak in the parsers. */
#include "retentiond/domain/batch.h"
#include "retentiond/domain/model.h"
#include "retentiond/platform/shopify.h"
#include "retentiond/platform/woocommerce.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const shopify_topics[] = {
    "orders/create", "orders/updated", "orders/paid", "orders/cancelled", "orders/fulfilled",
    "orders/partially_fulfilled", "orders/delete", "refunds/create", "customers/create",
    "customers/update", "app/uninstalled", "",
};
static const char *const woo_topics[] = {
    "order.created", "order.updated", "order.deleted", "order.restored", "customer.created",
    "customer.updated", "product.created", "",
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void records(const json_t *v, const char *currency)
{
    json_t *errors = json_array();
    rd_order o;
    rd_order_parse(v, currency, &o, errors);
    rd_order_free(&o);
    rd_customer c;
    rd_customer_parse(v, &c, errors);
    rd_customer_free(&c);
    rd_event e;
    rd_event_parse(v, &e, errors);
    rd_event_free(&e);
    rd_spend s;
    rd_spend_parse(v, currency, &s, errors);
    rd_spend_free(&s);
    /* the reply path serialises the errors list */
    char *dump = json_dumps(errors, JSON_COMPACT);
    free(dump);
    json_decref(errors);
}

static void batch(const uint8_t *data, size_t size, const char *currency, bool csv, size_t split)
{
    batch_reader b;
    batch_init(&b, currency, "api");
    b.csv = csv;
    if (csv && size && (data[0] & 1))
        b.default_kind = "order";
    /* fed in two pieces so lines crossing a chunk boundary are exercised */
    if (split > size)
        split = size;
    batch_feed(&b, (const char *)data, split);
    batch_feed(&b, (const char *)data + split, size - split);
    batch_finish(&b);
    json_t *report = batch_report(&b);
    char *dump = json_dumps(report, JSON_COMPACT);
    free(dump);
    json_decref(report);
    batch_free(&b);
}

static void webhooks(const json_t *v, uint8_t sel, const char *currency)
{
    ingest_set set = {0};
    set.source = "shopify";
    shopify_result sr;
    memset(&sr, 0, sizeof sr);
    json_t *errors = json_array();
    shopify_map(shopify_topics[sel % COUNT(shopify_topics)], v, currency, &set, &sr, errors);
    shopify_result_free(&sr);
    ingest_set_free(&set);
    json_decref(errors);

    set.source = "woocommerce";
    woocommerce_result wr;
    memset(&wr, 0, sizeof wr);
    errors = json_array();
    woocommerce_map(woo_topics[sel % COUNT(woo_topics)], v, currency, &set, &wr, errors);
    woocommerce_result_free(&wr);
    ingest_set_free(&set);
    json_decref(errors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    const char *currency = (sel & 0x80) ? "EUR" : "USD";
    const uint8_t *body = data + 1;
    size_t len = size - 1;

    json_error_t err;
    json_t *v = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &err);
    if (v) {
        records(v, currency);
        webhooks(v, sel, currency);
        if (json_is_array(v)) { /* a JSON-array batch */
            batch_reader b;
            batch_init(&b, currency, "api");
            size_t i;
            json_t *el;
            json_array_foreach(v, i, el) batch_add_object(&b, el, i + 1);
            batch_free(&b);
        }
        json_decref(v);
    }
    woocommerce_is_ping((const char *)body, len);
    batch(body, len, currency, false, sel);
    batch(body, len, currency, true, sel);
    return 0;
}
