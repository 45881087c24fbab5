/* auth.h - API keys: generation, hashing, the Bearer check with an in-memory cache in front
 * of the database lookup.
 *
 * A key reads "rk_<16 hex key id>_<43 chars base64url secret>". The key id locates the row;
 * only SHA-256 of the whole key is stored, and hashes are compared with CRYPTO_memcmp. The
 * cache keeps successful lookups for AUTH_CACHE_TTL seconds, so revoking a key takes effect
 * within that time on every replica. */
#ifndef RETENTIOND_HTTP_AUTH_H
#define RETENTIOND_HTTP_AUTH_H

#include "retentiond/http/server.h"

#define AUTH_CACHE_TTL 30
#define AUTH_KEY_ID_LEN 16

typedef enum { AUTH_OK, AUTH_MISS, AUTH_INVALID } auth_result;

/* Parses "rk_<id>_<secret>" into key_id (AUTH_KEY_ID_LEN+1 bytes). Returns RD_OK or RD_ERR. */
int auth_key_parse(const char *key, char *key_id);
/* SHA-256 of the key. */
void auth_key_hash(const char *key, unsigned char out[32]);
/* Creates a new random key: writes the key (at most 80 bytes), its id and its hash. */
void auth_key_generate(char key[81], char key_id[AUTH_KEY_ID_LEN + 1], unsigned char hash[32]);
/* Parses a scope list "ingest,read" into SCOPE_* bits; -1 if any name is unknown. */
int auth_scopes_parse(const char *list);

/* Looks the presented key up in the cache: AUTH_OK fills *t, AUTH_MISS needs a database
 * lookup (auth_lookup_job), AUTH_INVALID is malformed. */
auth_result auth_check_cached(const char *key, rd_tenant *t);
/* Database job for a cache miss: on success fills rq->tenant (scopes 0 when the key is
 * unknown or revoked) and the cache. */
int auth_lookup_run(PGconn *conn, void *arg);

#endif
