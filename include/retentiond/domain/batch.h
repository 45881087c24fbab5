/* batch.h - turning a stream of NDJSON lines (or CSV rows, or one JSON array) into sets of
 * validated records ready to store, with every rejected line kept by number and reason.
 * Pure: the caller decides when to hand a full set to the store. Used by POST /v1/batch and
 * by `retentiond import`. */
#ifndef RETENTIOND_DOMAIN_BATCH_H
#define RETENTIOND_DOMAIN_BATCH_H

#include "retentiond/domain/model.h"
#include "retentiond/util.h"

#include <stddef.h>

/* Records of all kinds waiting to be written together. */
typedef struct {
    rd_customer *customers;
    size_t n_customers, cap_customers;
    rd_order *orders;
    size_t n_orders, cap_orders;
    rd_event *events;
    size_t n_events, cap_events;
    rd_spend *spend;
    size_t n_spend, cap_spend;
    const char *source;     /* for events: api, import, shopify, woocommerce (static) */
} ingest_set;

size_t ingest_set_size(const ingest_set *s);
/* Frees the records and empties the set (keeps nothing). */
void ingest_set_clear(ingest_set *s);
/* Frees the records and the set's arrays. */
void ingest_set_free(ingest_set *s);

typedef struct {
    uint64_t created, updated, duplicates, rejected;
} ingest_counts;

#define BATCH_MAX_LISTED_ERRORS 1000
#define BATCH_MAX_LINE (1024 * 1024)

typedef struct {
    char currency[4];       /* the tenant's */
    const char *source;     /* "api" or "import" */
    const char *default_kind; /* for CSV without a kind column, or NULL */
    ingest_set set;
    ingest_counts counts;
    uint64_t line_no;
    json_t *rejected;       /* [{"line": n, "errors": [...]}], first BATCH_MAX_LISTED_ERRORS */
    buf partial;            /* an incomplete trailing line */
    bool partial_too_long;
    /* CSV */
    bool csv;
    char **columns;
    size_t n_columns;
} batch_reader;

void batch_init(batch_reader *b, const char *currency, const char *source);
void batch_free(batch_reader *b);

/* Feeds raw NDJSON (or CSV, when b->csv) bytes; complete lines are parsed into b->set. */
void batch_feed(batch_reader *b, const char *data, size_t len);
/* Parses the final unterminated line, if any. */
void batch_finish(batch_reader *b);
/* Parses one JSON object (a line, or an element of a JSON array) as line `line_no`. */
void batch_add_object(batch_reader *b, const json_t *obj, uint64_t line_no);
/* Records a rejected line. `errors` is stolen. */
void batch_reject(batch_reader *b, uint64_t line_no, json_t *errors);

/* The reply body summarising a batch. */
json_t *batch_report(const batch_reader *b);

#endif
