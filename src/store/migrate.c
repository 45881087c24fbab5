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
    if (current < 0) {
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
