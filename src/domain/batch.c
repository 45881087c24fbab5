/* batch.c - line splitting, CSV rows and per-line validation for batches (see batch.h).
 * Memory stays bounded: only the current partial line and the pending set are held. */
#include "retentiond/domain/batch.h"

#include <stdlib.h>
#include <string.h>

#define GROW(arr, n, cap)                                                                      \
    do {                                                                                       \
        if ((n) == (cap)) {                                                                    \
            (cap) = (cap) ? (cap) * 2 : 64;                                                    \
            (arr) = xrealloc((arr), sizeof *(arr) * (cap));                                    \
        }                                                                                      \
    } while (0)

size_t ingest_set_size(const ingest_set *s)
{
    return s->n_customers + s->n_orders + s->n_events + s->n_spend;
}

void ingest_set_clear(ingest_set *s)
{
    for (size_t i = 0; i < s->n_customers; i++)
        rd_customer_free(&s->customers[i]);
    for (size_t i = 0; i < s->n_orders; i++)
        rd_order_free(&s->orders[i]);
    for (size_t i = 0; i < s->n_events; i++)
        rd_event_free(&s->events[i]);
    for (size_t i = 0; i < s->n_spend; i++)
        rd_spend_free(&s->spend[i]);
    s->n_customers = s->n_orders = s->n_events = s->n_spend = 0;
}

void ingest_set_free(ingest_set *s)
{
    ingest_set_clear(s);
    free(s->customers);
    free(s->orders);
    free(s->events);
    free(s->spend);
    memset(s, 0, sizeof *s);
}

void batch_init(batch_reader *b, const char *currency, const char *source)
{
    memset(b, 0, sizeof *b);
    rd_strlcpy(b->currency, currency, sizeof b->currency);
    b->source = source;
    b->set.source = source;
    b->rejected = json_array();
}

void batch_free(batch_reader *b)
{
    ingest_set_free(&b->set);
    json_decref(b->rejected);
    buf_free(&b->partial);
    for (size_t i = 0; i < b->n_columns; i++)
        free(b->columns[i]);
    free(b->columns);
    memset(b, 0, sizeof *b);
}

void batch_reject(batch_reader *b, uint64_t line_no, json_t *errors)
{
    b->counts.rejected++;
    if (json_array_size(b->rejected) < BATCH_MAX_LISTED_ERRORS)
        json_array_append_new(b->rejected, json_pack("{s:I, s:o}", "line", (json_int_t)line_no, "errors", errors));
    else
        json_decref(errors);
}

static void reject_one(batch_reader *b, uint64_t line_no, const char *field, const char *msg)
{
    json_t *e = json_array();
    rd_error_add(e, field, "%s", msg);
    batch_reject(b, line_no, e);
}

void batch_add_object(batch_reader *b, const json_t *obj, uint64_t line_no)
{
    if (!json_is_object(obj)) {
        reject_one(b, line_no, "", "each line must be a JSON object");
        return;
    }
    const json_t *k = json_object_get(obj, "kind");
    const char *kind = b->default_kind;
    if (json_is_string(k) && (!kind || strcmp(kind, "spend") != 0))
        kind = json_string_value(k);
    json_t *errors = json_array();
    ingest_set *s = &b->set;
    if (!kind) {
        rd_error_add(errors, "kind", "is required: customer, order, event or spend");
    } else if (strcmp(kind, "order") == 0) {
        GROW(s->orders, s->n_orders, s->cap_orders);
        if (rd_order_parse(obj, b->currency, &s->orders[s->n_orders], errors) == RD_OK) {
            s->orders[s->n_orders].source = b->source;
            s->n_orders++;
        } else {
            rd_order_free(&s->orders[s->n_orders]);
        }
    } else if (strcmp(kind, "customer") == 0) {
        GROW(s->customers, s->n_customers, s->cap_customers);
        if (rd_customer_parse(obj, &s->customers[s->n_customers], errors) == RD_OK)
            s->n_customers++;
        else
            rd_customer_free(&s->customers[s->n_customers]);
    } else if (strcmp(kind, "event") == 0) {
        GROW(s->events, s->n_events, s->cap_events);
        if (rd_event_parse(obj, &s->events[s->n_events], errors) == RD_OK)
            s->n_events++;
        else
            rd_event_free(&s->events[s->n_events]);
    } else if (strcmp(kind, "spend") == 0) {
        GROW(s->spend, s->n_spend, s->cap_spend);
        if (rd_spend_parse(obj, b->currency, &s->spend[s->n_spend], errors) == RD_OK)
            s->n_spend++;
        else
            rd_spend_free(&s->spend[s->n_spend]);
    } else {
        rd_error_add(errors, "kind", "must be customer, order, event or spend");
    }
    if (json_array_size(errors))
        batch_reject(b, line_no, errors);
    else
        json_decref(errors);
}

/* Splits one CSV record (RFC 4180: quoted fields, doubled quotes). Returns the field count;
 * fields point into `line`, which is modified. */
static size_t csv_split(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *p = line;
    while (n < max) {
        char *out = p, *start = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0')
                    break;
                if (*p == '"' && p[1] == '"') {
                    *out++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *out++ = *p++;
                }
            }
            while (*p && *p != ',')
                p++;
        } else {
            while (*p && *p != ',')
                *out++ = *p++;
        }
        char sep = *p;
        *out = '\0';
        fields[n++] = start;
        if (sep != ',')
            break;
        p++;
    }
    return n;
}

static void csv_row(batch_reader *b, char *line)
{
    char *fields[64];
    size_t n = csv_split(line, fields, 64);
    if (!b->columns) {
        b->columns = xcalloc(n, sizeof *b->columns);
        for (size_t i = 0; i < n; i++)
            b->columns[i] = xstrdup(fields[i]);
        b->n_columns = n;
        return;
    }
    if (n != b->n_columns) {
        reject_one(b, b->line_no, "", "the row has a different number of fields than the header");
        return;
    }
    json_t *obj = json_object();
    for (size_t i = 0; i < n; i++) {
        if (!*fields[i])
            continue; /* empty cell: field absent */
        const char *col = b->columns[i];
        if (strcmp(col, "test") == 0)
            json_object_set_new(obj, col, json_boolean(strcmp(fields[i], "true") == 0 || strcmp(fields[i], "1") == 0));
        else if (strncmp(col, "properties.", 11) == 0 || strncmp(col, "shop_money.", 11) == 0) {
            const char *parent = col[0] == 'p' ? "properties" : "shop_money";
            json_t *sub = json_object_get(obj, parent);
            if (!sub) {
                sub = json_object();
                json_object_set_new(obj, parent, sub);
            }
            char *end;
            long long v = strtoll(fields[i], &end, 10);
            json_object_set_new(sub, col + 11, *end == '\0' && col[0] == 'p' ? json_integer(v) : json_string(fields[i]));
        } else
            json_object_set_new(obj, col, json_string(fields[i]));
    }
    batch_add_object(b, obj, b->line_no);
    json_decref(obj);
}

static void parse_line(batch_reader *b, char *line, size_t len)
{
    b->line_no++;
    if (len && line[len - 1] == '\r')
        line[--len] = '\0';
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i == len)
        return; /* blank line */
    if (b->csv) {
        csv_row(b, line);
        return;
    }
    json_error_t err;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    if (!obj) {
        char msg[300];
        snprintf(msg, sizeof msg, "malformed JSON at column %d: %s", err.column, err.text);
        reject_one(b, b->line_no, "", msg);
        return;
    }
    batch_add_object(b, obj, b->line_no);
    json_decref(obj);
}

void batch_feed(batch_reader *b, const char *data, size_t len)
{
    while (len) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        if (b->partial.len + n > BATCH_MAX_LINE)
            b->partial_too_long = true;
        else
            buf_append(&b->partial, data, n);
        if (!nl)
            return;
        if (b->partial_too_long) {
            b->line_no++;
            reject_one(b, b->line_no, "", "the line is longer than 1 MiB");
        } else {
            parse_line(b, b->partial.data ? b->partial.data : (char *)"", b->partial.len);
        }
        buf_reset(&b->partial);
        b->partial_too_long = false;
        data += n + 1;
        len -= n + 1;
    }
}

void batch_finish(batch_reader *b)
{
    if (b->partial.len || b->partial_too_long)
        batch_feed(b, "\n", 1);
}

json_t *batch_report(const batch_reader *b)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:O}",
                     "lines", (json_int_t)b->line_no,
                     "accepted", (json_int_t)(b->counts.created + b->counts.updated),
                     "created", (json_int_t)b->counts.created,
                     "updated", (json_int_t)b->counts.updated,
                     "duplicates", (json_int_t)b->counts.duplicates,
                     "rejected", (json_int_t)b->counts.rejected,
                     "errors", b->rejected);
}
