/* csv.h - the one CSV writer of the replies (RFC 4180), shared by the streamed customer
 * export and the in-memory report exports: a field holding a comma, a double quote, CR or LF
 * is quoted, its quotes doubled; every record ends with CRLF. */
#ifndef RETENTIOND_HTTP_CSV_H
#define RETENTIOND_HTTP_CSV_H

#include "retentiond/util.h"

#include <jansson.h>

/* Appends one field to the record being written in b: after a comma unless it is the
 * record's first (b empty or its last record ended). NULL is the empty field. */
void csv_field(buf *b, const char *s);
/* A JSON scalar as a field, a number as the JSON replies print it (HTTP_JSON_FLAGS), null
 * as the empty field, true / false as such; an object or array as its compact JSON text. */
void csv_field_json(buf *b, const json_t *v);
/* Ends the record. */
void csv_end_record(buf *b);
/* A whole record of n fields. */
void csv_record(buf *b, const char *const *fields, int n);

#endif
