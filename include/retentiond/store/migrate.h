/* migrate.h - the database schema the binary carries, and `retentiond migrate`.
 *
 * Two kinds of file, both compiled into the binary (scripts/embed-schema.sh):
 *  - migrations/NNN_name.sql: tables, indexes and data moves, applied once each, in order. Each
 *    applied migration is recorded in schema_migrations with the SHA-256 of its text; a
 *    database whose recorded migration differs from the file of the same number is refused.
 *    001_baseline.sql squashes the history of the first eighteen migrations: a database that
 *    applied all of them is recognised as being at the baseline.
 *  - the files of sql/: the current definition of every SQL function (and of each trigger, next to
 *    its function), applied after the migrations whenever the text changed, in the Makefile's
 *    order. schema_functions records what was applied.
 * Everything pending is applied in one transaction, under an advisory lock, so that two
 * instances starting together cannot race and a failure leaves the database as it was. */
#ifndef RETENTIOND_STORE_MIGRATE_H
#define RETENTIOND_STORE_MIGRATE_H

#include <libpq-fe.h>

typedef struct {
    int version;
    const char *name;
    const char *sql;
} rd_migration;

typedef struct {
    const char *name; /* "sql/rules.sql" */
    const char *sql;
} rd_sql_file;

extern const rd_migration rd_migrations[];
extern const int rd_migration_count;
extern const rd_sql_file rd_sql_files[];
extern const int rd_sql_file_count;

typedef struct {
    int migrations; /* migrations applied */
    int functions;  /* sql/ files applied (all of them, or 0 when they were current) */
} migrate_result;

/* Applies every pending migration, then sql/ if it changed. Returns 0, or -1 on error (logged,
 * naming the file at fault; nothing is changed then). */
int migrate_apply(PGconn *conn, migrate_result *out);

/* Returns 1 when the database has every migration this binary knows (with the same text) and
 * its sql/ as applied, 0 if not, -1 on error. */
int migrate_is_current(PGconn *conn);

#endif
