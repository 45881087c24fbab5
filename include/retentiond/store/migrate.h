/* migrate.h - schema migrations: the numbered SQL files of migrations/, compiled into the
 * binary, applied in order, each in its own transaction, under an advisory lock so that two
 * instances starting together cannot race. */
#ifndef RETENTIOND_STORE_MIGRATE_H
#define RETENTIOND_STORE_MIGRATE_H

#include <libpq-fe.h>

typedef struct {
    int version;
    const char *name;
    const char *sql;
} rd_migration;

extern const rd_migration rd_migrations[];
extern const int rd_migration_count;

/* Applies every pending migration. Returns the number applied, or -1 on error. */
int migrate_apply(PGconn *conn);

/* Returns 1 when the database has every migration this binary knows, 0 if not, -1 on error. */
int migrate_is_current(PGconn *conn);

#endif
