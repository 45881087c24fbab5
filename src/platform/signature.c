/* signature.c - HMAC-SHA256 webhook signatures, received and sent (see signature.h). */
#include "retentiond/platform/signature.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

/* mac = HMAC-SHA256(body, secret): 32 bytes. */
static void hmac_sha256(const char *secret, const void *body, size_t len, unsigned char mac[EVP_MAX_MD_SIZE])
{
    unsigned int mac_len = 0;
    static const unsigned char empty[1] = {0};
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), body ? body : empty, len, mac, &mac_len) ||
        mac_len != 32)
        abort(); /* libcrypto without SHA-256: nothing sensible to answer */
}

void signature_compute(const char *secret, const void *body, size_t len, char out[SIGNATURE_B64_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    hmac_sha256(secret, body, len, mac);
    /* EVP_EncodeBlock writes 44 characters and a NUL for 32 bytes */
    EVP_EncodeBlock((unsigned char *)out, mac, 32);
    OPENSSL_cleanse(mac, sizeof mac);
}

void signature_compute_hex(const char *secret, const void *body, size_t len, char out[SIGNATURE_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    hmac_sha256(secret, body, len, mac);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[mac[i] >> 4];
        out[2 * i + 1] = digits[mac[i] & 15];
    }
    out[SIGNATURE_HEX_LEN] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
}

bool signature_verify(const char *secret, const void *body, size_t len, const char *presented)
{
    if (!secret || !presented)
        return false;
    while (*presented == ' ' || *presented == '\t')
        presented++;
    size_t n = strlen(presented);
    while (n > 0 && (presented[n - 1] == ' ' || presented[n - 1] == '\t'))
        n--;
    /* the length of a well-formed signature is public: checking it first leaks nothing */
    if (n != SIGNATURE_B64_LEN)
        return false;
    char expected[SIGNATURE_B64_LEN + 1];
    signature_compute(secret, body, len, expected);
    bool ok = CRYPTO_memcmp(expected, presented, SIGNATURE_B64_LEN) == 0;
    OPENSSL_cleanse(expected, sizeof expected);
    return ok;
}
