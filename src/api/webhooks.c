/* webhooks.c - POST /v1/webhooks/shopify/{tenant} and POST /v1/webhooks/woocommerce/{tenant}.
 *
 * A platform, not a user, calls these routes, so there is no Bearer key: the tenant is named
 * in the URL and the request is authenticated by the platform's HMAC signature of the raw
 * body under the tenant's webhook secret. Everything for one delivery is one group-commit
 * database job (DB_JOB_GROUP, on a worker, while the connection is suspended), so concurrent
 * deliveries share a transaction and its commit:
 *
 *   load the tenant's secrets → verify the signature on the raw bytes (nothing is parsed
 *   before) → parse and map the payload (src/platform/, pure) → remember the delivery id (a
 *   redelivery stops here: "duplicate") → write the records
 *
 * and the 2xx is sent only after the group's COMMIT. If any job of the group fails, the pool
 * rolls the group back and runs each job again alone, so wh_run starts from a clean context.
 * Deliveries that are authentic but of no use to us (unknown topics, orders in a currency we
 * cannot value) are acknowledged with 200 {"status":"ignored"} and logged: platforms retry
 * anything else, and WooCommerce disables a webhook after a few failures.
 *
 * Shopify refunds are kept per refund id in webhook_refunds (migrations/001_baseline.sql); an
 * order's refunded amount is always the capped sum of its rows, whichever of orders/updated
 * and refunds/create brought them, and in whatever order they came. The statements for
 * this live in src/store/webhooks_store.c; this file holds only the flow and the replies. */
#include "retentiond/api/api.h"

#include "retentiond/log.h"
#include "retentiond/platform/shopify.h"
#include "retentiond/platform/signature.h"
#include "retentiond/platform/woocommerce.h"
#include "retentiond/store/ingest.h"
#include "retentiond/store/privacy.h"
#include "retentiond/store/tenants.h"
#include "retentiond/store/webhooks_store.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PLATFORM_SHOPIFY, PLATFORM_WOOCOMMERCE } wh_platform;

/* What a delivery asks of the store, whichever platform sent it. */
typedef enum {
    ACT_RECORDS, ACT_REFUND, ACT_DELETE, ACT_IGNORED, ACT_INVALID,
    ACT_REDACT_CUSTOMER, ACT_REDACT_SHOP, ACT_DATA_REQUEST, /* Shopify's compliance topics */
} wh_action;

/* How a delivery ended; after_db turns it into the reply. */
typedef enum {
    WH_UNAUTHORIZED,  /* unknown tenant, no secret, or a signature that does not match */
    WH_BAD_JSON,      /* authentic but not JSON: 400 */
    WH_INVALID,       /* authentic JSON missing what its topic needs: 422 */
    WH_IGNORED,       /* 200 ignored */
    WH_DUPLICATE,     /* this delivery id was processed before: 200 duplicate */
    WH_STORED,        /* records written: 200 with the store's outcome */
    WH_PENDING,       /* a refund for an order not stored yet: kept, applied when it arrives */
    WH_ERASED,        /* a compliance erasure committed: 200 with what was removed */
    WH_REQUEST,       /* a data request recorded: 200 */
} wh_result;

typedef struct {
    wh_platform platform;
    /* request headers, copied on the HTTP thread (MHD is not to be asked from a worker) */
    char *signature, *topic, *delivery_id;
    char *triggered_at;       /* Shopify's X-Shopify-Triggered-At: when the event happened */
    /* filled by the job */
    wh_result result;
    rd_tenant tenant;
    ingest_set set;
    shopify_result shopify;
    woocommerce_result woo;
    wh_action action;
    const char *order_id;     /* borrowed from the platform result */
    const char *reason;       /* borrowed: why ignored */
    json_t *errors;           /* field problems (WH_INVALID) */
    const char *outcome;      /* the store's outcome for the first record */
    store_erasure erasure;    /* WH_ERASED */
    char detail[320];         /* WH_BAD_JSON */
} wh_ctx;

static const char *platform_name(wh_platform p)
{
    return p == PLATFORM_SHOPIFY ? "shopify" : "woocommerce";
}

static void wh_ctx_free(void *p)
{
    wh_ctx *c = p;
    free(c->signature);
    free(c->topic);
    free(c->delivery_id);
    free(c->triggered_at);
    ingest_set_free(&c->set);
    shopify_result_free(&c->shopify);
    woocommerce_result_free(&c->woo);
    json_decref(c->errors);
    free(c);
}

/* A header value that is safe to print in a logfmt line (platform-controlled text). */
static void log_safe(char *dst, size_t n, const char *s)
{
    size_t j = 0;
    for (; s && *s && j + 1 < n; s++)
        dst[j++] = (strchr("/._-", *s) || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
                    (*s >= 'A' && *s <= 'Z')) ? *s : '?';
    dst[j] = '\0';
}

/* ---- the store calls ---- */

void api_webhooks_register_statements(void)
{
    store_webhooks_register();
}

/* Loads the stored order into c->set (one order) with updated_at advanced to `at` (NULL:
 * now). Returns 1 if found, 0 if not, RD_ERR on a database error. */
static int load_order(PGconn *conn, wh_ctx *c, const char *at)
{
    rd_order o;
    int found = store_webhook_order_get(conn, c->tenant.id, c->order_id, at, &o);
    if (found != 1)
        return found;
    c->set.orders = xcalloc(1, sizeof *c->set.orders);
    c->set.orders[0] = o;
    c->set.n_orders = c->set.cap_orders = 1;
    return 1;
}

/* Stores every refund of c->shopify for c->order_id. */
static int add_refunds(PGconn *conn, wh_ctx *c, const char *at)
{
    for (size_t i = 0; i < c->shopify.n_refunds; i++) {
        const shopify_refund *r = &c->shopify.refunds[i];
        if (store_webhook_refund_add(conn, c->tenant.id, c->order_id, r->refund_id, r->amount, r->shop_amount,
                                     at) != RD_OK)
            return RD_ERR;
    }
    return RD_OK;
}

/* The writes of one verified, mapped delivery, inside the open transaction. */
static int store_delivery(PGconn *conn, wh_ctx *c)
{
    ingest_counts counts = {0};
    bool shopify_order = c->platform == PLATFORM_SHOPIFY && c->order_id;
    if (shopify_order && store_webhook_order_lock(conn, c->tenant.id, c->order_id) != RD_OK)
        return RD_ERR;
    switch (c->action) {
    case ACT_RECORDS:
        if (shopify_order && c->set.n_orders == 1 &&
            (add_refunds(conn, c, NULL) != RD_OK ||
             store_webhook_refund_sum(conn, c->tenant.id, &c->set.orders[0]) != RD_OK))
            return RD_ERR;
        break;
    case ACT_REFUND: {
        if (add_refunds(conn, c, c->shopify.refund_at) != RD_OK)
            return RD_ERR;
        int found = load_order(conn, c, c->shopify.refund_at);
        if (found < 0)
            return RD_ERR;
        if (!found) {
            c->result = WH_PENDING;
            return RD_OK;
        }
        if (store_webhook_refund_sum(conn, c->tenant.id, &c->set.orders[0]) != RD_OK)
            return RD_ERR;
        break;
    }
    case ACT_DELETE: {
        int found = load_order(conn, c, NULL);
        if (found < 0)
            return RD_ERR;
        if (!found) {
            c->result = WH_IGNORED;
            c->reason = "the deleted order was never stored";
            return RD_OK;
        }
        free(c->set.orders[0].status);
        c->set.orders[0].status = xstrdup("cancelled");
        break;
    }
    case ACT_REDACT_CUSTOMER:
    case ACT_REDACT_SHOP: {
        char by[64];
        snprintf(by, sizeof by, "shopify %s", c->action == ACT_REDACT_SHOP ? "shop/redact" : "customers/redact");
        int rc = c->action == ACT_REDACT_SHOP
                     ? store_erase_shop(conn, c->tenant.id, by, true, &c->erasure)
                     : store_erase(conn, c->tenant.id, (const char *const *)c->shopify.subjects,
                                   (int)c->shopify.n_subjects, (const char *const *)c->shopify.orders,
                                   (int)c->shopify.n_orders, by, true, &c->erasure);
        if (rc != RD_OK)
            return RD_ERR;
        c->result = WH_ERASED;
        return RD_OK;
    }
    case ACT_DATA_REQUEST:
        if (store_privacy_request_add(conn, c->tenant.id, "shopify", c->shopify.request_id,
                                      c->shopify.n_subjects ? c->shopify.subjects[0] : NULL,
                                      (const char *const *)c->shopify.orders, (int)c->shopify.n_orders) != RD_OK)
            return RD_ERR;
        c->result = WH_REQUEST;
        return RD_OK;
    default:
        return RD_OK;
    }
    if (store_ingest(conn, c->tenant.id, &c->set, &counts, &c->outcome) != RD_OK)
        return RD_ERR;
    c->result = WH_STORED;
    return RD_OK;
}

/* ---- the job ---- */

/* Loads the tenant's secrets and checks the signature against each. Returns 1 when
 * authentic, 0 when not, RD_ERR on a database error. */
static int verify(PGconn *conn, http_req *rq, wh_ctx *c)
{
    char *secrets[2] = {NULL, NULL};
    int n = store_secret_get(conn, rq->params[0], platform_name(c->platform), &c->tenant, secrets);
    if (n < 0)
        return RD_ERR;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        if (!ok && signature_verify(secrets[i], rq->body.data, rq->body.len, c->signature))
            ok = 1;
        OPENSSL_cleanse(secrets[i], strlen(secrets[i]));
        free(secrets[i]);
    }
    char name[80];
    log_safe(name, sizeof name, rq->params[0]);
    if (!ok)
        rd_log(LOG_WARN, "msg=\"webhook rejected\" platform=%s tenant=%s reason=\"%s\"", platform_name(c->platform),
               name, n == 0 ? "unknown tenant or no secret set" : "signature mismatch");
    return ok;
}

static wh_action map_payload(wh_ctx *c, const json_t *payload)
{
    if (c->platform == PLATFORM_SHOPIFY) {
        shopify_action a = shopify_map(c->topic, payload, c->tenant.currency, &c->set, &c->shopify, c->errors);
        c->order_id = c->shopify.order_id;
        c->reason = c->shopify.reason;
        switch (a) {
        case SHOPIFY_RECORDS: return ACT_RECORDS;
        case SHOPIFY_REFUND: return ACT_REFUND;
        case SHOPIFY_DELETE: return ACT_DELETE;
        case SHOPIFY_REDACT_CUSTOMER: return ACT_REDACT_CUSTOMER;
        case SHOPIFY_REDACT_SHOP: return ACT_REDACT_SHOP;
        case SHOPIFY_DATA_REQUEST: return ACT_DATA_REQUEST;
        case SHOPIFY_IGNORED: return ACT_IGNORED;
        case SHOPIFY_INVALID: return ACT_INVALID;
        }
        return ACT_INVALID;
    }
    woocommerce_action a = woocommerce_map(c->topic, payload, c->tenant.currency, &c->set, &c->woo, c->errors);
    c->order_id = c->woo.order_id;
    c->reason = c->woo.reason;
    return a == WOOCOMMERCE_RECORDS ? ACT_RECORDS : a == WOOCOMMERCE_DELETE ? ACT_DELETE
           : a == WOOCOMMERCE_IGNORED ? ACT_IGNORED : ACT_INVALID;
}

/* Forgets what an earlier run of the job (rolled back with its group) left in the context. */
static void wh_reset(wh_ctx *c)
{
    ingest_set_free(&c->set);
    shopify_result_free(&c->shopify);
    woocommerce_result_free(&c->woo);
    json_array_clear(c->errors);
    c->order_id = c->reason = c->outcome = NULL;
    memset(&c->erasure, 0, sizeof c->erasure);
    c->detail[0] = '\0';
    c->result = WH_UNAUTHORIZED;
}

static int wh_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    wh_ctx *c = rq->ctx;
    wh_reset(c);
    int ok = verify(conn, rq, c);
    if (ok <= 0)
        return ok < 0 ? RD_ERR : RD_OK;
    /* from here on the body is the platform's: parse it */
    rq->tenant = c->tenant;
    json_error_t err;
    json_t *payload = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, JSON_REJECT_DUPLICATES, &err);
    if (!payload) {
        snprintf(c->detail, sizeof c->detail, "malformed JSON at line %d, column %d: %s", err.line, err.column,
                 err.text);
        c->result = WH_BAD_JSON;
        return RD_OK;
    }
    c->action = map_payload(c, payload);
    json_decref(payload);
    /* a customer record without its own updated_at is as new as the event that sent it, so a
     * late retry of an older event changes nothing */
    for (size_t i = 0; c->triggered_at && c->action == ACT_RECORDS && i < c->set.n_customers; i++)
        if (!c->set.customers[i].updated_at && rd_timestamp_check(c->triggered_at) == RD_OK)
            c->set.customers[i].updated_at = xstrdup(c->triggered_at);
    if (c->action == ACT_IGNORED || c->action == ACT_INVALID) {
        c->result = c->action == ACT_IGNORED ? WH_IGNORED : WH_INVALID;
        return RD_OK;
    }

    if (c->delivery_id) {
        int fresh = store_webhook_delivery_record(conn, c->tenant.id, platform_name(c->platform), c->delivery_id,
                                                  c->topic);
        if (fresh < 0)
            return RD_ERR; /* the pool rolls back */
        if (!fresh) {
            c->result = WH_DUPLICATE;
            return RD_OK;
        }
    }
    return store_delivery(conn, c);
}

/* ---- replies ---- */

static void reply_status(http_req *rq, const char *status, const char *key, const char *value, const char *detail)
{
    json_t *body = json_pack("{s:s}", "status", status);
    if (key && value)
        json_object_set_new(body, key, json_string(value));
    if (detail)
        json_object_set_new(body, "detail", json_string(detail));
    http_reply_json(rq, 200, body);
}

static int wh_after(http_req *rq, db_done_status st)
{
    wh_ctx *c = rq->ctx;
    if (st != DB_DONE_OK) {
        http_reply_db_failure(rq, st);
        return HTTP_REPLIED;
    }
    char topic[80];
    log_safe(topic, sizeof topic, c->topic);
    switch (c->result) {
    case WH_UNAUTHORIZED:
        http_reply_problem(rq, 401, "Unauthorized",
                           "the webhook signature does not match this tenant's secret; nothing was stored", NULL);
        break;
    case WH_BAD_JSON:
        http_reply_problem(rq, 400, "Bad Request", c->detail, NULL);
        break;
    case WH_INVALID:
        rd_log(LOG_WARN, "msg=\"webhook payload invalid\" platform=%s tenant=%s topic=%s", platform_name(c->platform),
               c->tenant.name, topic);
        http_reply_problem(rq, 422, "Unprocessable Content", "the payload lacks fields its topic needs; nothing was stored",
                           json_incref(c->errors));
        break;
    case WH_IGNORED:
        rd_log(LOG_INFO, "msg=\"webhook ignored\" platform=%s tenant=%s topic=%s reason=\"%s\"",
               platform_name(c->platform), c->tenant.name, topic, c->reason);
        reply_status(rq, "ignored", "reason", c->reason, NULL);
        break;
    case WH_DUPLICATE:
        reply_status(rq, "duplicate", "delivery_id", c->delivery_id,
                     "this delivery was processed before; nothing changed");
        break;
    case WH_PENDING:
        reply_status(rq, "pending", "order_id", c->order_id,
                     "the refund is recorded and will be applied when the order arrives");
        break;
    case WH_ERASED: {
        rd_log(LOG_INFO, "msg=\"compliance erasure\" platform=%s tenant=%s topic=%s customers=%lld",
               platform_name(c->platform), c->tenant.name, topic, (long long)c->erasure.customers);
        http_reply_json(rq, 200, json_pack("{s:s, s:o}", "status", "erased", "erased", api_erasure_json(&c->erasure)));
        break;
    }
    case WH_REQUEST:
        reply_status(rq, "recorded", "request_id", c->shopify.request_id,
                     "the data request is listed by GET /v1/privacy/requests; answer it with GET "
                     "/v1/customers/{id}/export");
        break;
    case WH_STORED: {
        const char *outcome = c->outcome ? c->outcome : "duplicate";
        if (c->set.n_orders)
            reply_status(rq, outcome, "order_id", c->set.orders[0].order_id,
                         strcmp(outcome, "stale") == 0 ? "a newer state of this order is stored; this one was ignored"
                                                       : NULL);
        else
            reply_status(rq, outcome, "customer_id", c->set.n_customers ? c->set.customers[0].customer_id : NULL, NULL);
        break;
    }
    }
    return HTTP_REPLIED;
}

/* ---- handlers ---- */

static char *header_dup(http_req *rq, const char *name)
{
    const char *v = http_header(rq, name);
    return v && *v ? xstrdup(v) : NULL;
}

static int webhook(http_req *rq, wh_platform platform, const char *sig_header, const char *topic_header,
                   const char *delivery_header)
{
    wh_ctx *c = xcalloc(1, sizeof *c);
    c->platform = platform;
    c->errors = json_array();
    rq->ctx = c;
    rq->ctx_free = wh_ctx_free;
    c->signature = header_dup(rq, sig_header);
    c->topic = header_dup(rq, topic_header);
    c->delivery_id = header_dup(rq, delivery_header);
    if (platform == PLATFORM_SHOPIFY)
        c->triggered_at = header_dup(rq, "X-Shopify-Triggered-At");
    if (!c->signature) {
        if (platform == PLATFORM_WOOCOMMERCE && woocommerce_is_ping(rq->body.data, rq->body.len)) {
            /* sent unsigned when a webhook is saved; it expects 200 */
            reply_status(rq, "ok", NULL, NULL, "ping received; nothing stored");
            return HTTP_REPLIED;
        }
        char name[80];
        log_safe(name, sizeof name, rq->params[0]);
        rd_log(LOG_WARN, "msg=\"webhook rejected\" platform=%s tenant=%s reason=\"no signature\"",
               platform_name(platform), name);
        http_reply_problem(rq, 401, "Unauthorized", "the webhook signature header is missing; nothing was stored",
                           NULL);
        return HTTP_REPLIED;
    }
    if (c->delivery_id && strlen(c->delivery_id) > 255) {
        http_reply_problem(rq, 400, "Bad Request", "the delivery id header is longer than 255 bytes", NULL);
        return HTTP_REPLIED;
    }
    return http_defer(rq, DB_JOB_GROUP, hash_str(rq->params[0]), wh_run, wh_after);
}

int api_webhook_shopify(http_req *rq)
{
    /* X-Shopify-Event-Id names the event, the same on every delivery of it (Shopify's advice is
     * to deduplicate on it); older deliveries carry only X-Shopify-Webhook-Id */
    const char *event = http_header(rq, "X-Shopify-Event-Id");
    return webhook(rq, PLATFORM_SHOPIFY, "X-Shopify-Hmac-Sha256", "X-Shopify-Topic",
                   event && *event ? "X-Shopify-Event-Id" : "X-Shopify-Webhook-Id");
}

int api_webhook_woocommerce(http_req *rq)
{
    return webhook(rq, PLATFORM_WOOCOMMERCE, "X-WC-Webhook-Signature", "X-WC-Webhook-Topic",
                   "X-WC-Webhook-Delivery-ID");
}
