/* csv.c - the CSV writer (see csv.h). One quoting rule for every CSV reply: what a field
 * needs quoting for is decided here only. */
#include "retentiond/http/csv.h"

#include "retentiond/http/server.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A record's boundary is where b is empty or ends with the LF of CRLF: an unquoted field holds
 * no LF and a quoted one ends with a quote. So that the boundary stays visible, an empty
 * first field is written as "" (which reads back as empty). */
void csv_field(buf *b, const char *s)
{
    bool first = b->len == 0 || b->data[b->len - 1] == '\n';
    if (!first)
        buf_append(b, ",", 1);
    if (!s || !*s) {
        if (first)
            buf_puts(b, "\"\"");
        return;
    }
    if (!s[strcspn(s, ",\"\r\n")]) {
        buf_puts(b, s);
        return;
    }
    buf_append(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            buf_append(b, "\"", 1);
        buf_append(b, p, 1);
    }
    buf_append(b, "\"", 1);
}

void csv_field_json(buf *b, const json_t *v)
{
    if (json_is_string(v)) {
        csv_field(b, json_string_value(v));
        return;
    }
    if (!v || json_is_null(v)) {
        csv_field(b, NULL);
        return;
    }
    char *s = json_dumps(v, HTTP_JSON_FLAGS | JSON_ENCODE_ANY);
    csv_field(b, s);
    free(s);
}

void csv_end_record(buf *b)
{
    buf_append(b, "\r\n", 2);
}

void csv_record(buf *b, const char *const *fields, int n)
{
    for (int i = 0; i < n; i++)
        csv_field(b, fields[i]);
    csv_end_record(b);
}
