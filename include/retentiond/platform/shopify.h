/* shopify.h - Shopify webhook payloads → retentiond records. Pure: no SQL, no HTTP, so every
 * rule below is unit-tested on captured payloads (tests/unit/test_platform.c).
 *
 * Rules (see docs/webhooks.md for the merchant-facing version):
 *  - Ids are taken as 64-bit integers or strings, never through a double.
 *  - An order's customer is customer.id; a guest or POS order (customer null) is keyed by its
 *    e-mail as "email:<lower-cased e-mail>", and without one as "guest:order:<order id>".
 *  - Dates: placed_at = processed_at (else created_at); updated_at = updated_at.
 *  - Money: total and refunds in the presentment currency, shop_total/shop_refunded from
 *    *_set.shop_money. An order whose shop money is not in the tenant's currency cannot be
 *    valued and is ignored (acknowledged, never retried forever).
 *  - Refunded = refunds[].transactions[] of kind "refund" with status "success"; a refund
 *    transaction without shop money is converted at the order's own shop/presentment ratio.
 *  - Status: cancelled_at set → cancelled; financial_status refunded → refunded, voided →
 *    cancelled; fulfillment_status fulfilled → fulfilled; paid / partially_refunded → paid;
 *    otherwise placed. test orders keep test = true (stored, excluded from metrics). */
#ifndef RETENTIOND_PLATFORM_SHOPIFY_H
#define RETENTIOND_PLATFORM_SHOPIFY_H

#include "retentiond/domain/batch.h"

#include <jansson.h>
#include <stddef.h>

typedef enum {
    SHOPIFY_RECORDS,  /* records were appended to the set (an order also fills refunds) */
    SHOPIFY_REFUND,   /* refunds/create: add refunds[0] to the stored order `order_id` */
    SHOPIFY_DELETE,   /* orders/delete: the stored order `order_id` is cancelled */
    SHOPIFY_REDACT_CUSTOMER, /* customers/redact: erase `subjects` and the orders `orders` */
    SHOPIFY_REDACT_SHOP,     /* shop/redact: erase all of the tenant's data */
    SHOPIFY_DATA_REQUEST,    /* customers/data_request: record request `request_id` */
    SHOPIFY_IGNORED,  /* nothing to store; `reason` says why */
    SHOPIFY_INVALID,  /* the payload lacks what its topic needs; the errors list names it */
} shopify_action;

/* One refund, identified by Shopify's refund id so each is counted once whichever topic
 * (orders/updated or refunds/create) brought it. */
typedef struct {
    char *refund_id;
    char *amount;       /* decimal string, in the order's (presentment) currency */
    char *shop_amount;  /* decimal string in the shop currency, or NULL when not given */
} shopify_refund;

typedef struct {
    shopify_action action;
    char reason[200];          /* SHOPIFY_IGNORED */
    char *order_id;            /* the order concerned (RECORDS with an order, REFUND, DELETE) */
    char *refund_at;           /* REFUND: the refund's processed_at (else created_at) */
    shopify_refund *refunds;   /* RECORDS with an order: all its refunds; REFUND: exactly one */
    size_t n_refunds;
    /* the compliance topics: the customer's ids as retentiond keys them (customer.id, and the
     * guest key "email:<lower-cased e-mail>" of the same person), the orders named
     * (orders_to_redact / orders_requested), the data request's id */
    char *subjects[2];
    size_t n_subjects;
    char **orders;
    size_t n_orders;
    char *request_id;
} shopify_result;

/* Maps one delivery of `topic` (X-Shopify-Topic) whose parsed body is `payload`.
 * shop_currency is the tenant's. Orders and customers are appended to `set` with source
 * "shopify"; field problems are appended to `errors` ({"field","message"}) and give
 * SHOPIFY_INVALID with nothing appended. Unknown topics give SHOPIFY_IGNORED.
 * Fills *out (release with shopify_result_free) and returns out->action. */
shopify_action shopify_map(const char *topic, const json_t *payload, const char *shop_currency,
                           ingest_set *set, shopify_result *out, json_t *errors);

void shopify_result_free(shopify_result *r);

#endif
