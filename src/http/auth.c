/* auth.c - API key hashing, the Bearer credential check and its cache (see auth.h). */
#include "retentiond/http/auth.h"

#include "retentiond/store/tenants.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define CACHE_SLOTS 1024

typedef struct {
    unsigned char hash[32];
    rd_tenant tenant;
    time_t expires;
} cache_entry;

static cache_entry cache[CACHE_SLOTS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

int auth_key_parse(const char *key, char *key_id)
{
    if (strncmp(key, "rk_", 3) != 0 || strlen(key) > 80)
        return RD_ERR;
    const char *id = key + 3;
    for (int i = 0; i < AUTH_KEY_ID_LEN; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return RD_ERR;
    if (id[AUTH_KEY_ID_LEN] != '_' || id[AUTH_KEY_ID_LEN + 1] == '\0')
        return RD_ERR;
    memcpy(key_id, id, AUTH_KEY_ID_LEN);
    key_id[AUTH_KEY_ID_LEN] = '\0';
    return RD_OK;
}

void auth_key_hash(const char *key, unsigned char out[32])
{
    SHA256((const unsigned char *)key, strlen(key), out);
}

void auth_key_generate(char key[81], char key_id[AUTH_KEY_ID_LEN + 1], unsigned char hash[32])
{
    unsigned char idb[AUTH_KEY_ID_LEN / 2], secret[32];
    if (RAND_bytes(idb, sizeof idb) != 1 || RAND_bytes(secret, sizeof secret) != 1)
        abort(); /* no entropy: refusing beats a guessable key */
    for (size_t i = 0; i < sizeof idb; i++)
        sprintf(key_id + 2 * i, "%02x", idb[i]);
    unsigned char b64[64];
    int n = EVP_EncodeBlock(b64, secret, sizeof secret);
    /* base64url without padding, so the key survives URLs and shells unquoted */
    int j = 0;
    for (int i = 0; i < n; i++) {
        unsigned char c = b64[i];
        if (c == '=')
            continue;
        b64[j++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    b64[j] = '\0';
    snprintf(key, 81, "rk_%s_%s", key_id, (char *)b64);
    auth_key_hash(key, hash);
}

int auth_scopes_parse(const char *list)
{
    int scopes = 0;
    char tmp[128];
    rd_strlcpy(tmp, list, sizeof tmp);
    char *save = NULL;
    for (char *t = strtok_r(tmp, ",+ ", &save); t; t = strtok_r(NULL, ",+ ", &save)) {
        if (strcmp(t, "ingest") == 0)
            scopes |= SCOPE_INGEST;
        else if (strcmp(t, "read") == 0)
            scopes |= SCOPE_READ;
        else if (strcmp(t, "admin") == 0)
            scopes |= SCOPE_ADMIN;
        else
            return -1;
    }
    return scopes ? scopes : -1;
}

static size_t slot_of(const unsigned char hash[32])
{
    size_t s;
    memcpy(&s, hash, sizeof s);
    return s % CACHE_SLOTS;
}

auth_result auth_check_cached(const char *key, rd_tenant *t)
{
    char key_id[AUTH_KEY_ID_LEN + 1];
    if (auth_key_parse(key, key_id) != RD_OK)
        return AUTH_INVALID;
    unsigned char hash[32];
    auth_key_hash(key, hash);
    auth_result r = AUTH_MISS;
    pthread_mutex_lock(&cache_lock);
    cache_entry *e = &cache[slot_of(hash)];
    if (e->expires > time(NULL) && CRYPTO_memcmp(e->hash, hash, 32) == 0) {
        *t = e->tenant;
        r = AUTH_OK;
    }
    pthread_mutex_unlock(&cache_lock);
    return r;
}

int auth_lookup_run(PGconn *conn, void *arg)
{
    http_req *rq = arg;
    char key_id[AUTH_KEY_ID_LEN + 1];
    memset(&rq->tenant, 0, sizeof rq->tenant);
    if (auth_key_parse(rq->api_key, key_id) != RD_OK)
        return RD_OK;
    unsigned char stored[32], presented[32];
    rd_tenant t;
    int found = store_key_lookup(conn, key_id, &t, stored);
    if (found < 0)
        return RD_ERR;
    if (found == 0)
        return RD_OK;
    auth_key_hash(rq->api_key, presented);
    if (CRYPTO_memcmp(stored, presented, 32) != 0)
        return RD_OK;
    if (store_key_used(conn, key_id) != RD_OK) /* key list's "last used", as of the cache's refresh */
        return RD_ERR;
    rq->tenant = t;
    pthread_mutex_lock(&cache_lock);
    cache_entry *e = &cache[slot_of(presented)];
    memcpy(e->hash, presented, 32);
    e->tenant = t;
    e->expires = time(NULL) + AUTH_CACHE_TTL;
    pthread_mutex_unlock(&cache_lock);
    return RD_OK;
}
