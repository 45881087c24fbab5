/* woocommerce.h - WooCommerce webhook payloads → retentiond records. Pure: no SQL, no HTTP.
 *
 * WooCommerce webhook bodies are the REST API's resources (wc/v3 orders and customers).
 * Rules (merchant-facing version in docs/webhooks.md):
 *  - customer_id 0 is a guest checkout: the customer is "email:<lower-cased billing.email>"
 *    (the same rule as Shopify guests, so one shopper keeps one identity), and without an
 *    e-mail "guest:order:<order id>".
 *  - Dates are the *_gmt fields, UTC written without a zone: "Z" is appended.
 *  - Money: `total` in the order's `currency`; refunds[].total are negative, refunded is minus
 *    their sum (the order total is not reduced by refunds). WooCommerce carries no amount in
 *    another currency, so an order not in the tenant's currency cannot be valued: it is
 *    ignored (acknowledged with 200) rather than refused, because WooCommerce disables a
 *    webhook after a few failed deliveries and would stop sending the valid orders too.
 *  - Status: completed → fulfilled, processing → paid, on-hold → placed (these qualify);
 *    pending (awaiting payment) and failed (payment failed) are not sales yet, and a later
 *    update brings the real state, so they are stored as cancelled — storing them as placed
 *    would count unpaid carts as orders; checkout-draft likewise; cancelled, trash → cancelled;
 *    refunded → refunded; any other (plugin-defined) status → placed. order.deleted →
 *    cancelled. */
#ifndef RETENTIOND_PLATFORM_WOOCOMMERCE_H
#define RETENTIOND_PLATFORM_WOOCOMMERCE_H

#include "retentiond/domain/batch.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    WOOCOMMERCE_RECORDS,  /* records were appended to the set */
    WOOCOMMERCE_DELETE,   /* order.deleted with only an id: the stored order `order_id` is cancelled */
    WOOCOMMERCE_IGNORED,  /* nothing to store; `reason` says why */
    WOOCOMMERCE_INVALID,  /* the payload lacks what its topic needs; the errors list names it */
} woocommerce_action;

typedef struct {
    woocommerce_action action;
    char reason[200];   /* WOOCOMMERCE_IGNORED */
    char *order_id;     /* the order concerned (RECORDS with an order, DELETE) */
} woocommerce_result;

/* Maps one delivery of `topic` (X-WC-Webhook-Topic) whose parsed body is `payload`;
 * shop_currency is the tenant's. Same contract as shopify_map: records appended to `set` with
 * source "woocommerce", problems appended to `errors` (→ WOOCOMMERCE_INVALID, nothing
 * appended), unknown topics → WOOCOMMERCE_IGNORED. Release *out with woocommerce_result_free. */
woocommerce_action woocommerce_map(const char *topic, const json_t *payload, const char *shop_currency,
                                   ingest_set *set, woocommerce_result *out, json_t *errors);

void woocommerce_result_free(woocommerce_result *r);

/* True for the ping WooCommerce sends when a webhook is saved: a form-encoded
 * "webhook_id=N" body (it is not signed). */
bool woocommerce_is_ping(const char *body, size_t len);

#endif
