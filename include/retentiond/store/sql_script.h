/* sql_script.h - a SQL script (a migration, a file of sql/) cut into its statements, so that
 * `retentiond migrate` can send them one at a time: Citus refuses a multi-statement query that
 * touches a distributed table, and plain PostgreSQL runs the same statements either way. */
#ifndef RETENTIOND_STORE_SQL_SCRIPT_H
#define RETENTIOND_STORE_SQL_SCRIPT_H

#include <stddef.h>

/* Finds the next statement of the script at *pos: sets *start and *len to it (without its ';',
 * leading white space and comments skipped) and moves *pos past it. A ';' inside a string
 * ('...', E'...'), a quoted identifier, a dollar-quoted body ($$...$$, $tag$...$tag$) or a
 * comment (--, nested slash-star) does not end a statement. Returns 1 when a statement was
 * found, 0 at the end of the script (nothing but white space and comments left). The script
 * is not modified; *start points into it. */
int sql_script_next(const char **pos, const char **start, size_t *len);

#endif
