/* tenants.h - tenants, API keys and webhook secrets in PostgreSQL.
 * All functions take a connection the caller owns and run outside any transaction of theirs
 * unless stated. Return conventions are stated per function. */
#ifndef RETENTIOND_STORE_TENANTS_H
#define RETENTIOND_STORE_TENANTS_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdint.h>

/* A tenant as the layers above use it: the one a request's key or a webhook's URL names, or
 * the one a sub-command is run for. */
typedef struct {
    int64_t id;
    char name[65];
    char currency[4];
    int scopes;       /* the key's scope bits: ingest 1, read 2, admin 4 (store_key_lookup) */
} rd_tenant;

/* Finds an active key by id. Returns 1 and fills *t and hash, 0 if unknown/revoked, -1 on a
 * database error. */
int store_key_lookup(PGconn *conn, const char *key_id, rd_tenant *t, unsigned char hash[32]);

#define STORE_UNKNOWN_ZONE (-2) /* not an IANA time zone PostgreSQL knows */

/* Creates a tenant in an IANA time zone. Returns its id, 0 if the name is taken,
 * STORE_UNKNOWN_ZONE, or -1 on error. */
int64_t store_tenant_create(PGconn *conn, const char *name, const char *currency, const char *timezone);

/* Moves a tenant to another time zone (rd_tenant_set_timezone, sql/tenants.sql), recomputing
 * what depends on its calendar in the same transaction. Returns 1, 0 if there is no such
 * tenant, STORE_UNKNOWN_ZONE, or -1 on error. */
int store_tenant_set_timezone(PGconn *conn, int64_t tenant_id, const char *timezone);

/* Finds a tenant by name. Returns 1 and fills *t (scopes 0), 0 if unknown, -1 on error. */
int store_tenant_find(PGconn *conn, const char *name, rd_tenant *t);

/* Erases a tenant with all its data, keys and secrets, in one transaction (rd_tenant_delete,
 * sql/privacy.sql). RD_OK or RD_ERR. */
int store_tenant_delete(PGconn *conn, int64_t tenant_id);

/* Writes the tenant's keys to out, one per line: id, scopes, created, last used, revoked
 * (never the key). RD_OK or RD_ERR. */
int store_key_list(PGconn *conn, int64_t tenant_id, FILE *out);

/* Revokes an active key. Returns 1, 0 if there is no such active key, -1 on error. */
int store_key_revoke(PGconn *conn, const char *key_id);

/* Records that a key was just used (at most once a minute; the lookup of a cache miss). */
int store_key_used(PGconn *conn, const char *key_id);

/* Stores a key's id, hash and scopes. Returns RD_OK or RD_ERR. */
int store_key_create(PGconn *conn, int64_t tenant_id, const char *key_id, const unsigned char hash[32],
                     int scopes);

/* Sets a platform webhook secret; the old one stays valid for an hour. RD_OK or RD_ERR. */
int store_secret_set(PGconn *conn, int64_t tenant_id, const char *platform, const char *secret);

/* Loads the secrets valid now for (tenant name, platform): up to two (current, previous).
 * Returns how many (0 if the tenant or secret is unknown), or -1 on error. Fills *t.
 * Caller frees each returned string. */
int store_secret_get(PGconn *conn, const char *tenant_name, const char *platform, rd_tenant *t,
                     char *secrets[2]);

#endif
