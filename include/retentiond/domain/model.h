/* model.h - the ingest model: parsing and validating customers, orders, events and spend
 * records from JSON into plain structs. Pure: no SQL, no HTTP.
 *
 * Validation collects every problem, not just the first: each rd_*_parse appends
 * {"field","message"} objects to `errors` (a JSON array the caller owns) and returns RD_OK
 * only when it appended nothing. Strings in the structs are owned by the struct; free them
 * with the matching rd_*_free. Money stays a decimal string from input to PostgreSQL
 * (`numeric`); it never passes through a double it could be rounded by. */
#ifndef RETENTIOND_DOMAIN_MODEL_H
#define RETENTIOND_DOMAIN_MODEL_H

#include <jansson.h>
#include <stdbool.h>

#define RD_ID_MAX 255        /* ids and short strings */
#define RD_TEXT_MAX 1000     /* e-mail, channel, event type */

typedef struct {
    char *customer_id, *email, *created_at, *channel, *referred_by;
    char *attributes;        /* JSON text of an object, or NULL */
    char *updated_at;        /* when the record was last changed at its source, or NULL: a record
                                older than the stored one's changes nothing ("stale") */
} rd_customer;

typedef struct {
    char *order_id, *customer_id, *placed_at, *updated_at, *currency;
    char *total, *refunded, *shop_total, *shop_refunded;   /* decimal strings */
    char *status, *email;
    const char *source;      /* api, shopify, woocommerce, import (static) */
    bool test;
} rd_order;

typedef struct {
    char *event_id, *customer_id, *type, *occurred_at;
    char *properties;        /* JSON text of an object */
} rd_event;

typedef struct {
    char *kind, *channel, *period_start, *period_end, *amount;
} rd_spend;

/* Appends {"field": field, "message": message} to errors. */
void rd_error_add(json_t *errors, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* `prefix` is prepended to field names ("" for top level). shop_currency is the tenant's. */
int rd_customer_parse(const json_t *obj, rd_customer *out, json_t *errors);
int rd_order_parse(const json_t *obj, const char *shop_currency, rd_order *out, json_t *errors);
int rd_event_parse(const json_t *obj, rd_event *out, json_t *errors);
int rd_spend_parse(const json_t *obj, const char *shop_currency, rd_spend *out, json_t *errors);

void rd_customer_free(rd_customer *c);
void rd_order_free(rd_order *o);
void rd_event_free(rd_event *e);
void rd_spend_free(rd_spend *s);

/* --- field helpers, exposed for the platform adapters and unit tests --- */

/* Validates an RFC 3339 timestamp ("2026-01-05T10:00:00Z", offsets, fractions) or a plain
 * date (midnight UTC). Checks the calendar (no 31 April, leap years). Returns RD_OK. */
int rd_timestamp_check(const char *s);
/* Validates a YYYY-MM-DD date. */
int rd_date_check(const char *s);

/* Normalises a money value: a JSON string or number holding a non-negative decimal with at
 * most 18 integer and 6 fraction digits. On success returns a new string ("49.90"). On
 * failure returns NULL and sets *why. Numbers that a double cannot carry exactly (more than
 * 15 significant digits) are refused: send those as strings. */
char *rd_money_from_json(const json_t *v, const char **why);

/* Compares two decimal strings produced by rd_money_from_json: <0, 0, >0. */
int rd_money_cmp(const char *a, const char *b);

/* An id field: a non-empty string of at most RD_ID_MAX bytes, or an integer. New string or
 * NULL with *why set. */
char *rd_id_from_json(const json_t *v, const char **why);

#endif
