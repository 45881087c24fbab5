/* migrate.c - applies the embedded migrations and sql/ (see migrate.h). */
#include "retentiond/store/migrate.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"
#include "retentiond/store/sql_script.h"
#include "retentiond/util.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Arbitrary constant: the advisory lock key all instances agree on. */
#define MIGRATION_LOCK_KEY "7320114512"

/* The history migrations/001_baseline.sql squashes: a database that recorded all of
 * 1..SQUASHED_THROUGH, the last under this name, has exactly the baseline's schema. */
#define SQUASHED_THROUGH 18
#define SQUASHED_LAST "018_list_by_index_walk.sql"

typedef char checksum[2 * SHA256_DIGEST_LENGTH + 1];

static void sha256_hex(const char *text, checksum out)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, strlen(text), d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The embedded texts' checksums, computed once: /readyz compares them on every call. */
static checksum *migration_sums, *sql_file_sums;
static pthread_once_t sums_once = PTHREAD_ONCE_INIT;

static void sums_compute(void)
{
    migration_sums = xmalloc(sizeof *migration_sums * (size_t)rd_migration_count);
    sql_file_sums = xmalloc(sizeof *sql_file_sums * (size_t)(rd_sql_file_count ? rd_sql_file_count : 1));
    for (int i = 0; i < rd_migration_count; i++)
        sha256_hex(rd_migrations[i].sql, migration_sums[i]);
    for (int i = 0; i < rd_sql_file_count; i++)
        sha256_hex(rd_sql_files[i].sql, sql_file_sums[i]);
}

static const char *migration_sum(const rd_migration *m)
{
    pthread_once(&sums_once, sums_compute);
    return migration_sums[m - rd_migrations];
}

static const char *sql_file_sum(int i)
{
    pthread_once(&sums_once, sums_compute);
    return sql_file_sums[i];
}

/* What the database has recorded. */
typedef struct {
    PGresult *migrations; /* version, name, checksum (NULL before checksums were kept) */
    PGresult *functions;  /* file, checksum; NULL when the table does not exist yet */
} recorded;

static void recorded_clear(recorded *r)
{
    PQclear(r->migrations);
    PQclear(r->functions);
    r->migrations = r->functions = NULL;
}

/* Reads both records; works on a database that predates the checksum column and
 * schema_functions (to_jsonb reads a column that may be missing). */
static int recorded_read(PGconn *conn, recorded *r)
{
    r->functions = NULL;
    r->migrations = PQexec(conn, "SELECT version, name, to_jsonb(m) ->> 'checksum' FROM schema_migrations m "
                                 "ORDER BY version");
    if (PQresultStatus(r->migrations) != PGRES_TUPLES_OK) {
        db_log_error(r->migrations, conn, "read schema_migrations");
        recorded_clear(r);
        return -1;
    }
    PGresult *exists = PQexec(conn, "SELECT to_regclass('schema_functions') IS NOT NULL");
    bool has = PQresultStatus(exists) == PGRES_TUPLES_OK && strcmp(PQgetvalue(exists, 0, 0), "t") == 0;
    if (PQresultStatus(exists) != PGRES_TUPLES_OK)
        db_log_error(exists, conn, "find schema_functions");
    int ok = PQresultStatus(exists) == PGRES_TUPLES_OK;
    PQclear(exists);
    if (ok && has) {
        r->functions = PQexec(conn, "SELECT file, checksum FROM schema_functions");
        ok = PQresultStatus(r->functions) == PGRES_TUPLES_OK;
        if (!ok)
            db_log_error(r->functions, conn, "read schema_functions");
    }
    if (!ok) {
        recorded_clear(r);
        return -1;
    }
    return 0;
}

static const rd_migration *embedded_migration(int version)
{
    for (int i = 0; i < rd_migration_count; i++)
        if (rd_migrations[i].version == version)
            return &rd_migrations[i];
    return NULL;
}

/* The row recording migration `version`, or -1. The rows of the squashed history (no
 * checksum, version up to SQUASHED_THROUGH) stand for the baseline only: their numbers are
 * reused by the migrations after it. */
static int recorded_row(PGresult *res, int version)
{
    for (int r = 0; r < PQntuples(res); r++)
        if (atoi(PQgetvalue(res, r, 0)) == version &&
            !(PQgetisnull(res, r, 2) && version <= SQUASHED_THROUGH))
            return r;
    return -1;
}

/* The state of the recorded migrations against the embedded ones. */
typedef struct {
    int max_version; /* the newest recorded, 0 for none */
    bool newer;      /* the database has a migration this binary does not know */
    bool pending;    /* an embedded migration is not recorded */
    bool squashed;   /* the database recorded the history the baseline squashes */
} migration_state;

/* Compares what was recorded with the embedded migrations. Returns -1, logged naming the file,
 * when the database cannot be brought current: a recorded migration whose text differs from
 * the file of its number, one missing below the newest recorded, a squashed history only
 * partly applied. */
static int check_migrations(PGresult *res, migration_state *st, bool log)
{
    memset(st, 0, sizeof *st);
    int squashed_rows = 0, fail = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        int v = atoi(PQgetvalue(res, r, 0));
        const char *name = PQgetvalue(res, r, 1);
        if (v > st->max_version)
            st->max_version = v;
        if (PQgetisnull(res, r, 2) && v <= SQUASHED_THROUGH) { /* recorded before checksums were kept */
            squashed_rows++;
            st->squashed |= v == SQUASHED_THROUGH && strcmp(name, SQUASHED_LAST) == 0;
        }
    }
    if (squashed_rows) {
        if (!st->squashed || squashed_rows != SQUASHED_THROUGH) {
            if (log)
                rd_log(LOG_ERROR, "msg=\"the database is at migration %d of the history %s squashes; upgrade it "
                                  "through %s with a release from before the squash, then run this one\"",
                       st->max_version, rd_migrations[0].name, SQUASHED_LAST);
            return -1;
        }
        if (st->max_version == SQUASHED_THROUGH)
            st->max_version = 1;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        int v = atoi(PQgetvalue(res, r, 0));
        if (PQgetisnull(res, r, 2) && v <= SQUASHED_THROUGH)
            continue; /* stands for the baseline, checked above */
        const rd_migration *m = embedded_migration(v);
        if (!m) {
            st->newer = true;
            continue;
        }
        const char *sum = migration_sum(m);
        if (PQgetisnull(res, r, 2) || strcmp(PQgetvalue(res, r, 2), sum) != 0 ||
            strcmp(PQgetvalue(res, r, 1), m->name) != 0) {
            if (log)
                rd_log(LOG_ERROR, "msg=\"migration %s differs from the one this database applied (%s, checksum %.12s, "
                                  "the file's %.12s): an applied migration is never edited; restore the file and add "
                                  "a new migration\"",
                       m->name, PQgetvalue(res, r, 1), PQgetvalue(res, r, 2), sum);
            fail = -1;
        }
    }
    for (int i = 0; i < rd_migration_count; i++) {
        const rd_migration *m = &rd_migrations[i];
        bool found = (st->squashed && m->version == 1) || recorded_row(res, m->version) >= 0;
        if (found)
            continue;
        if (m->version < st->max_version) {
            if (log)
                rd_log(LOG_ERROR, "msg=\"schema has a gap: migration %s was never applied, yet version %d is; apply "
                                  "it by hand and record it in schema_migrations, or restore the database\"",
                       m->name, st->max_version);
            fail = -1;
        }
        st->pending = true;
    }
    return fail;
}

/* Whether schema_functions holds exactly the embedded sql/ files with their texts. */
static bool functions_current(PGresult *res)
{
    if (!res || PQntuples(res) != rd_sql_file_count)
        return false;
    for (int i = 0; i < rd_sql_file_count; i++) {
        const char *sum = sql_file_sum(i);
        bool same = false;
        for (int r = 0; r < PQntuples(res) && !same; r++)
            same = strcmp(PQgetvalue(res, r, 0), rd_sql_files[i].name) == 0 && strcmp(PQgetvalue(res, r, 1), sum) == 0;
        if (!same)
            return false;
    }
    return true;
}

static int exec_params(PGconn *conn, const char *sql, int n, const char *const *params, const char *what)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        db_log_error(res, conn, what);
    PQclear(res);
    return ok ? 0 : -1;
}

/* Runs a script (a migration, a file of sql/) one statement at a time: Citus refuses a
 * multi-statement query that touches a distributed table. A failure is logged with the
 * script's name and the line its statement starts on. Returns 0 or -1. */
static int exec_script(PGconn *conn, const char *script, const char *name)
{
    const char *pos = script, *start;
    size_t len;
    int line = 1;
    const char *counted = script;
    while (sql_script_next(&pos, &start, &len)) {
        for (; counted < start; counted++)
            line += *counted == '\n';
        char what[256];
        snprintf(what, sizeof what, "%s, the statement at line %d", name, line);
        char *stmt = xstrndup(start, len);
        int rc = db_exec(conn, stmt, what);
        free(stmt);
        if (rc != RD_OK)
            return -1;
    }
    return 0;
}

/* --- Citus ---
 * On a database where the citus extension is installed, every table the migrations create is
 * distributed as it is created: the tables below as reference tables (a copy on every node:
 * small, read by every tenant's requests, or with a key that does not start with tenant_id),
 * every other table hash-distributed by tenant_id, colocated with customers, so that one
 * tenant's rows of every table are on the same worker. schema_migrations and schema_functions
 * stay on the coordinator. A table with no tenant_id that is not listed here stops the
 * migration: say how it is to be held. On plain PostgreSQL none of this runs. */
#define CITUS_REFERENCE_TABLES "{tenants,api_keys,report_changes_horizon}"
#define CITUS_ANCHOR_TABLE "customers"

/* Runs the statement in column col of every row of res (statements a catalog query wrote).
 * Returns 0, or -1 at the first that fails (logged as `what`). */
static int exec_column(PGconn *conn, const PGresult *res, int col, const char *what)
{
    for (int r = 0; r < PQntuples(res); r++)
        if (db_exec(conn, PQgetvalue(res, r, col), what) != RD_OK)
            return -1;
    return 0;
}

static int citus_distribute_tables(PGconn *conn);

/* The settings the migration's transaction runs with on Citus: DDL on distributed tables one
 * shard connection at a time (a transaction that distributes tables and then alters them
 * cannot switch from parallel to sequential), and the triggers of sql/ allowed on distributed
 * tables. */
static int citus_begin(PGconn *conn)
{
    return db_exec(conn,
                   "SELECT set_config('citus.multi_shard_modify_mode', 'sequential', true),"
                   " set_config('citus.enable_unsafe_triggers', 'on', true)",
                   "citus migration settings") == RD_OK ? 0 : -1;
}

/* The tables not yet distributed, in pg_class, as a condition on c (a pg_class row). */
#define CITUS_UNDISTRIBUTED                                                                          \
    "c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition" \
    " AND c.relname NOT IN ('schema_migrations', 'schema_functions')"                                \
    " AND NOT EXISTS (SELECT 1 FROM pg_dist_partition d WHERE d.logicalrelid = c.oid)"

/* Distributes every table of the schema that is not yet distributed (see above). The foreign
 * keys those tables hold are dropped first and added again at the end: making `tenants` a
 * reference table would otherwise turn every local table referencing it into a Citus local
 * table, which Citus cannot then distribute when it has an identity column. The reference
 * tables come first, then the anchor, then the others in the order they were created.
 * Returns the number of tables distributed, or -1. */
static int citus_distribute(PGconn *conn)
{
    PGresult *fkeys = db_params(conn,
                                "SELECT format('ALTER TABLE %I DROP CONSTRAINT %I', c.relname, k.conname),"
                                "       format('ALTER TABLE %I ADD CONSTRAINT %I %s', c.relname, k.conname,"
                                "              pg_get_constraintdef(k.oid))"
                                "  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
                                " WHERE k.contype = 'f' AND " CITUS_UNDISTRIBUTED " ORDER BY k.oid",
                                0, NULL, PGRES_TUPLES_OK, "list the foreign keys of the tables to distribute");
    if (!fkeys)
        return -1;
    int n = exec_column(conn, fkeys, 0, "drop a foreign key before distributing");
    if (n == 0)
        n = citus_distribute_tables(conn);
    if (n >= 0 && exec_column(conn, fkeys, 1, "add a foreign key after distributing") != 0)
        n = -1;
    PQclear(fkeys);
    return n;
}

/* The distribution itself (citus_distribute): returns the number of tables distributed, or -1. */
static int citus_distribute_tables(PGconn *conn)
{
    const char *params[2] = {CITUS_REFERENCE_TABLES, CITUS_ANCHOR_TABLE};
    PGresult *res = db_params(
        conn,
        "SELECT c.relname, c.relname = ANY ($1::text[]),"
        "       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'"
        "               AND NOT a.attisdropped)"
        "  FROM pg_class c WHERE " CITUS_UNDISTRIBUTED " ORDER BY c.relname = ANY ($1::text[]) DESC, c.relname = $2 DESC, c.oid",
        2, params, PGRES_TUPLES_OK, "list the tables to distribute");
    if (!res)
        return -1;
    int n = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *table = PQgetvalue(res, r, 0);
        bool reference = strcmp(PQgetvalue(res, r, 1), "t") == 0;
        bool tenant = strcmp(PQgetvalue(res, r, 2), "t") == 0;
        if (!reference && !tenant) {
            rd_log(LOG_ERROR, "msg=\"table %s has no tenant_id and is not a reference table: list it in "
                              "CITUS_REFERENCE_TABLES (src/store/migrate.c) or give it a tenant_id\"",
                   table);
            n = -1;
            break;
        }
        bool anchor = strcmp(table, CITUS_ANCHOR_TABLE) == 0;
        const char *args[1] = {table};
        if (exec_params(conn,
                        reference ? "SELECT create_reference_table($1::regclass)::text"
                        : anchor  ? "SELECT create_distributed_table($1::regclass, 'tenant_id')::text"
                                  : "SELECT create_distributed_table($1::regclass, 'tenant_id', colocate_with => '"
                                    CITUS_ANCHOR_TABLE "')::text",
                        1, args, reference ? "create a reference table" : "distribute a table") != 0) {
            n = -1;
            break;
        }
        rd_log(LOG_INFO, "msg=\"table distributed\" table=%s as=%s", table, reference ? "reference" : "tenant_id");
        n++;
    }
    PQclear(res);
    return n;
}

/* What Citus needs of sql/ beyond its text, applied after it (the two places where the schema
 * differs on Citus; docs/scaling.md):
 *  - The functions that plan with generic plans on plain PostgreSQL (SET plan_cache_mode TO
 *    force_generic_plan: a young tenant's lookups then use the whole key, sql/ingest.sql) plan
 *    with custom plans: Citus routes a statement to its tenant's shard only when it sees the
 *    tenant's id, not a parameter ("could not create distributed plan"). On the workers the
 *    shard's statement arrives with the id as a constant either way.
 *  - The statement triggers with transition tables are dropped: they would fire on the
 *    workers' shards, where their transition tables cannot be read and their transaction ids
 *    and advisory locks are a worker's. Those recording changes for the report snapshots
 *    (sql/reports.sql: rd_report_changes_note) are not needed: on Citus the service keeps no
 *    snapshots (src/store/report_snapshot.c), reports stream. The ladder's (sql/ladder.sql:
 *    rd_stage_history_track) are replaced by rd_stage_history_late_add, which the writers of
 *    stage_history call and which does nothing where the triggers exist.
 * Returns 0 or -1. */
static int citus_adapt_functions(PGconn *conn)
{
    PGresult *res = db_params(conn, "SELECT format('ALTER FUNCTION %s SET plan_cache_mode TO force_custom_plan',"
                                 "              p.oid::regprocedure)"
                                 "  FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace"
                                 "   AND 'plan_cache_mode=force_generic_plan' = ANY (p.proconfig)"
                                 " UNION ALL "
                                 "SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass)"
                                 "  FROM pg_trigger t WHERE NOT t.tgisinternal"
                                 "   AND t.tgfoid IN (to_regprocedure('rd_report_changes_note()'), to_regprocedure('rd_stage_history_track()'))"
                                 "   AND t.tgrelid IN (SELECT logicalrelid FROM pg_dist_partition)",
                              0, NULL, PGRES_TUPLES_OK, "list what to adapt to Citus");
    if (!res)
        return -1;
    int rc = exec_column(conn, res, 0, "adapt sql/ to Citus");
    PQclear(res);
    return rc;
}

/* Replaces the squashed history's rows by the baseline's. */
static int record_squash(PGconn *conn)
{
    const char *sum = migration_sum(&rd_migrations[0]);
    char through[16];
    snprintf(through, sizeof through, "%d", SQUASHED_THROUGH);
    const char *params[3] = {rd_migrations[0].name, sum, through};
    if (exec_params(conn,
                    "WITH old AS (DELETE FROM schema_migrations WHERE version <= $3::int AND checksum IS NULL"
                    " RETURNING applied_at) "
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                    "SELECT 1, $1, $2, max(applied_at) FROM old",
                    3, params, "record the baseline") != 0)
        return -1;
    rd_log(LOG_INFO, "msg=\"the database's first %d migrations are recorded as %s, which squashes them\"",
           SQUASHED_THROUGH, rd_migrations[0].name);
    return 0;
}

static int apply_migration(PGconn *conn, const rd_migration *m)
{
    if (exec_script(conn, m->sql, m->name) != 0)
        return -1;
    char version[16];
    snprintf(version, sizeof version, "%d", m->version);
    const char *params[3] = {version, m->name, migration_sum(m)};
    if (exec_params(conn, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", 3, params,
                    "record the migration") != 0)
        return -1;
    rd_log(LOG_INFO, "msg=\"migration applied\" version=%d name=%s", m->version, m->name);
    return 0;
}

static int apply_functions(PGconn *conn)
{
    if (db_exec(conn, "DELETE FROM schema_functions", "clear schema_functions") != RD_OK)
        return -1;
    for (int i = 0; i < rd_sql_file_count; i++) {
        if (exec_script(conn, rd_sql_files[i].sql, rd_sql_files[i].name) != 0)
            return -1;
        const char *params[2] = {rd_sql_files[i].name, sql_file_sum(i)};
        if (exec_params(conn, "INSERT INTO schema_functions (file, checksum) VALUES ($1, $2)", 2, params,
                        "record the sql file") != 0)
            return -1;
    }
    rd_log(LOG_INFO, "msg=\"functions applied\" files=%d", rd_sql_file_count);
    return 0;
}

int migrate_apply(PGconn *conn, migrate_result *out)
{
    memset(out, 0, sizeof *out);
    if (db_exec(conn, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")", "migration lock") != RD_OK)
        return -1;
    int rc = -1;
    recorded rec = {0};
    if (db_exec(conn, "BEGIN", "begin migration") != RD_OK)
        goto unlock;
    if (exec_script(conn,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now());"
                "ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text;"
                "CREATE TABLE IF NOT EXISTS schema_functions ("
                " file text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                "create the schema records") != 0 ||
        recorded_read(conn, &rec) != 0)
        goto rollback;
    migration_state st;
    if (check_migrations(rec.migrations, &st, true) != 0)
        goto rollback;
    int citus = db_has_citus(conn);
    if (citus < 0 || (citus && citus_begin(conn) != 0))
        goto rollback;
    if (st.squashed && record_squash(conn) != 0)
        goto rollback;
    for (int i = 0; i < rd_migration_count; i++) {
        const rd_migration *m = &rd_migrations[i];
        if ((st.squashed && m->version == 1) || recorded_row(rec.migrations, m->version) >= 0)
            continue;
        if (apply_migration(conn, m) != 0)
            goto rollback;
        out->migrations++;
    }
    /* every table as it is created, before sql/ defines the triggers on it */
    if (citus && citus_distribute(conn) < 0)
        goto rollback;
    /* A migration may have recreated a table, and with it lost a trigger sql/ defines: after
     * one, sql/ is applied whatever the checksums say. A database a newer binary migrated keeps
     * that binary's functions. */
    if (st.newer)
        rd_log(LOG_WARN, "msg=\"the database has migrations this binary does not know; its functions are left as "
                         "a newer binary applied them\"");
    else if (out->migrations > 0 || !functions_current(rec.functions)) {
        if (apply_functions(conn) != 0 || (citus && citus_adapt_functions(conn) != 0))
            goto rollback;
        out->functions = rd_sql_file_count;
    }
    if (db_exec(conn, "COMMIT", "commit migration") != RD_OK)
        goto rollback;
    rc = 0;
    goto unlock;
rollback:
    db_exec(conn, "ROLLBACK", "rollback migration");
    out->migrations = out->functions = 0;
unlock:
    recorded_clear(&rec);
    db_exec(conn, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")", "migration unlock");
    return rc;
}

int migrate_is_current(PGconn *conn)
{
    recorded rec;
    if (recorded_read(conn, &rec) != 0)
        return -1;
    migration_state st;
    int current = check_migrations(rec.migrations, &st, false) == 0 && !st.squashed && !st.pending &&
                  (st.newer || functions_current(rec.functions));
    recorded_clear(&rec);
    return current;
}
