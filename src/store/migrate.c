/* migrate.c - applies the embedded migrations (see migrate.h). */
#include "retentiond/store/migrate.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <stdio.h>
#include <stdlib.h>

/* Arbitrary constant: the advisory lock key all instances agree on. */
#define MIGRATION_LOCK_KEY "7320114512"

static int applied_version(PGconn *conn)
{
    PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    int v = PQresultStatus(res) == PGRES_TUPLES_OK ? atoi(PQgetvalue(res, 0, 0)) : -1;
    if (v < 0)
        db_log_error(res, conn, "read schema version");
    PQclear(res);
    return v;
}

/* Migrations are applied in order, so every embedded one older than the newest applied must
 * be recorded. One missing (a migration added below an existing number, or a row deleted)
 * would never be applied by "newer than the newest" and the schema would silently lack it:
 * refuse, naming it. Returns 0 when there is no gap. */
static int check_gaps(PGconn *conn, int current)
{
    PGresult *res = PQexec(conn, "SELECT version FROM schema_migrations");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_log_error(res, conn, "read schema versions");
        PQclear(res);
        return -1;
    }
    int gap = 0;
    for (int i = 0; i < rd_migration_count && rd_migrations[i].version < current; i++) {
        int found = 0;
        for (int r = 0; r < PQntuples(res) && !found; r++)
            found = atoi(PQgetvalue(res, r, 0)) == rd_migrations[i].version;
        if (!found) {
            rd_log(LOG_ERROR, "msg=\"schema has a gap: migration %s was never applied, yet version %d is; "
                              "apply it by hand and record it in schema_migrations, or restore the database\"",
                   rd_migrations[i].name, current);
            gap = -1;
        }
    }
    PQclear(res);
    return gap;
}

int migrate_apply(PGconn *conn)
{
    if (db_exec(conn, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")", "migration lock") != RD_OK)
        return -1;
    int applied = 0;
    if (db_exec(conn, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      " version int PRIMARY KEY, name text NOT NULL,"
                      " applied_at timestamptz NOT NULL DEFAULT now())",
                "create schema_migrations") != RD_OK) {
        applied = -1;
        goto unlock;
    }
    int current = applied_version(conn);
    if (current < 0 || check_gaps(conn, current) != 0) {
        applied = -1;
        goto unlock;
    }
    for (int i = 0; i < rd_migration_count; i++) {
        const rd_migration *m = &rd_migrations[i];
        if (m->version <= current)
            continue;
        char version[16];
        snprintf(version, sizeof version, "%d", m->version);
        const char *params[2] = {version, m->name};
        if (db_exec(conn, "BEGIN", "begin migration") != RD_OK)
            goto failed;
        if (db_exec(conn, m->sql, m->name) != RD_OK)
            goto rollback;
        PGresult *res = PQexecParams(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                     2, NULL, params, NULL, NULL, 0);
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok || db_exec(conn, "COMMIT", "commit migration") != RD_OK)
            goto rollback;
        rd_log(LOG_INFO, "msg=\"migration applied\" version=%d name=%s", m->version, m->name);
        applied++;
    }
    goto unlock;
rollback:
    db_exec(conn, "ROLLBACK", "rollback migration");
failed:
    applied = -1;
unlock:
    db_exec(conn, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")", "migration unlock");
    return applied;
}

int migrate_is_current(PGconn *conn)
{
    PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        return -1;
    }
    int v = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v >= rd_migrations[rd_migration_count - 1].version;
}
