/* tenants.c - SQL for tenants, API keys and webhook secrets. Parameterised statements only. */
#include "retentiond/store/tenants.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_tenant(PGresult *res, rd_tenant *t)
{
    memset(t, 0, sizeof *t);
    t->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    rd_strlcpy(t->name, PQgetvalue(res, 0, 1), sizeof t->name);
    rd_strlcpy(t->currency, PQgetvalue(res, 0, 2), sizeof t->currency);
}

int store_key_lookup(PGconn *conn, const char *key_id, rd_tenant *t, unsigned char hash[32])
{
    const char *params[1] = {key_id};
    PGresult *res = db_params(conn,
        "SELECT t.tenant_id, t.name, t.currency, "
        "       ('ingest' = ANY(k.scopes))::int + 2 * ('read' = ANY(k.scopes))::int"
        "       + 4 * ('admin' = ANY(k.scopes))::int, encode(k.key_hash, 'hex') "
        "FROM api_keys k JOIN tenants t USING (tenant_id) "
        "WHERE k.key_id = $1 AND k.revoked_at IS NULL",
        1, params, PGRES_TUPLES_OK, "key lookup");
    if (!res)
        return -1;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    fill_tenant(res, t);
    t->scopes = atoi(PQgetvalue(res, 0, 3));
    const char *hex = PQgetvalue(res, 0, 4);
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        hash[i] = (unsigned char)v;
    }
    PQclear(res);
    return 1;
}

/* Whether the failed result is rd_tenant_set_timezone refusing the zone's name (22023). */
static bool unknown_zone(const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return state && strcmp(state, "22023") == 0;
}

int64_t store_tenant_create(PGconn *conn, const char *name, const char *currency, const char *timezone)
{
    const char *params[3] = {name, currency, timezone};
    PGresult *res = db_params(conn,
        "INSERT INTO tenants (name, currency, timezone) SELECT $1, $2, $3 WHERE rd_zone_known($3) "
        "ON CONFLICT (name) DO NOTHING RETURNING tenant_id",
        3, params, PGRES_TUPLES_OK, "tenant create");
    if (!res)
        return -1;
    int64_t id = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    if (id == 0) { /* taken, or a zone the INSERT's WHERE left out */
        res = db_params(conn, "SELECT rd_zone_known($1)", 1, params + 2, PGRES_TUPLES_OK, "tenant create");
        int known = res ? strcmp(PQgetvalue(res, 0, 0), "t") == 0 : -1;
        PQclear(res);
        return known < 0 ? -1 : known ? 0 : STORE_UNKNOWN_ZONE;
    }
    return id;
}

int store_tenant_set_timezone(PGconn *conn, int64_t tenant_id, const char *timezone)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *params[2] = {tid, timezone};
    PGresult *res = PQexecParams(conn, "SELECT rd_tenant_set_timezone($1, $2)", 2, NULL, params, NULL, NULL, 0);
    int rc;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        rc = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    } else if (unknown_zone(res)) {
        rc = STORE_UNKNOWN_ZONE;
    } else {
        db_log_error(res, conn, "tenant set-timezone");
        rc = -1;
    }
    PQclear(res);
    return rc;
}

int store_tenant_find(PGconn *conn, const char *name, rd_tenant *t)
{
    const char *params[1] = {name};
    PGresult *res = db_params(conn, "SELECT tenant_id, name, currency FROM tenants WHERE name = $1", 1, params,
                              PGRES_TUPLES_OK, "tenant find");
    if (!res)
        return -1;
    int found = PQntuples(res) > 0;
    if (found)
        fill_tenant(res, t);
    PQclear(res);
    return found;
}

int store_key_create(PGconn *conn, int64_t tenant_id, const char *key_id, const unsigned char hash[32],
                     int scopes)
{
    char tid[24], hex[65], scope_list[40] = "{";
    snprintf(tid, sizeof tid, "%lld", (long long)tenant_id);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", hash[i]);
    const char *names[3] = {"ingest", "read", "admin"};
    for (int i = 0; i < 3; i++)
        if (scopes & (1 << i)) {
            if (scope_list[1])
                strcat(scope_list, ",");
            strcat(scope_list, names[i]);
        }
    strcat(scope_list, "}");
    const char *params[4] = {tid, key_id, hex, scope_list};
    return db_command(conn,
        "INSERT INTO api_keys (tenant_id, key_id, key_hash, scopes) "
        "VALUES ($1, $2, decode($3, 'hex'), $4::text[])",
                      4, params, "key create") < 0
               ? RD_ERR
               : RD_OK;
}

int store_secret_set(PGconn *conn, int64_t tenant_id, const char *platform, const char *secret)
{
    /* rotated_at: the proposed row's default, now() (Citus allows no function in DO UPDATE SET) */
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *params[3] = {tid, platform, secret};
    return db_command(conn,
        "INSERT INTO webhook_secrets (tenant_id, platform, secret) VALUES ($1, $2, $3) "
        "ON CONFLICT (tenant_id, platform) DO UPDATE SET previous_secret = webhook_secrets.secret, "
        "secret = EXCLUDED.secret, rotated_at = EXCLUDED.rotated_at",
                      3, params, "secret set") < 0
               ? RD_ERR
               : RD_OK;
}

int store_secret_get(PGconn *conn, const char *tenant_name, const char *platform, rd_tenant *t,
                     char *secrets[2])
{
    const char *params[2] = {tenant_name, platform};
    PGresult *res = PQexecPrepared(conn, "secret_get", 2, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        db_log_error(res, conn, "secret get");
        PQclear(res);
        return -1;
    }
    int n = 0;
    if (PQntuples(res) > 0) {
        fill_tenant(res, t);
        if (!PQgetisnull(res, 0, 3))
            secrets[n++] = xstrdup(PQgetvalue(res, 0, 3));
        if (!PQgetisnull(res, 0, 4))
            secrets[n++] = xstrdup(PQgetvalue(res, 0, 4));
    }
    PQclear(res);
    return n;
}

int store_tenant_delete(PGconn *conn, int64_t tenant_id)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *params[1] = {tid};
    PGresult *res = db_params(conn, "SELECT rd_tenant_delete($1)", 1, params, PGRES_TUPLES_OK, "tenant delete");
    PQclear(res);
    return res ? RD_OK : RD_ERR;
}

int store_key_list(PGconn *conn, int64_t tenant_id, FILE *out)
{
    char tid[24];
    db_id_text(tid, tenant_id);
    const char *params[1] = {tid};
    PGresult *res = db_params(conn,
        "SELECT key_id, array_to_string(scopes, ','), to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        " coalesce(to_char(last_used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '-'),"
        " coalesce(to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '-') "
        "FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, key_id",
        1, params, PGRES_TUPLES_OK, "key list");
    if (!res)
        return RD_ERR;
    fprintf(out, "%-16s  %-18s  %-20s  %-20s  %s\n", "key_id", "scopes", "created", "last_used", "revoked");
    for (int r = 0; r < PQntuples(res); r++)
        fprintf(out, "%-16s  %-18s  %-20s  %-20s  %s\n", PQgetvalue(res, r, 0), PQgetvalue(res, r, 1),
                PQgetvalue(res, r, 2), PQgetvalue(res, r, 3), PQgetvalue(res, r, 4));
    PQclear(res);
    return RD_OK;
}

int store_key_revoke(PGconn *conn, const char *key_id)
{
    const char *params[1] = {key_id};
    int64_t n = db_command(conn, "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL", 1,
                           params, "key revoke");
    return n < 0 ? -1 : n > 0;
}

int store_key_used(PGconn *conn, const char *key_id)
{
    const char *params[1] = {key_id};
    return db_command(conn,
        "UPDATE api_keys SET last_used_at = now() WHERE key_id = $1"
        " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
                      1, params, "key used") < 0
               ? RD_ERR
               : RD_OK;
}
