/* signature.h - the webhook signature both Shopify and WooCommerce use:
 * base64(HMAC-SHA256(raw body bytes, shared secret)), sent in a request header; and the hex
 * form of the same MAC that retentiond's own outgoing webhooks carry.
 *
 * Verification works on the raw bytes exactly as received, before any parsing, and compares
 * in constant time so response timing reveals nothing about how much of a forgery matched. */
#ifndef RETENTIOND_PLATFORM_SIGNATURE_H
#define RETENTIOND_PLATFORM_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>

/* Length of a base64-encoded SHA-256 MAC (32 bytes → 44 characters with padding). */
#define SIGNATURE_B64_LEN 44

/* Writes base64(HMAC-SHA256(body, secret)) and a terminating NUL into out. `body` may be NULL
 * when len is 0. Never fails (aborts if libcrypto cannot compute an HMAC at all). */
void signature_compute(const char *secret, const void *body, size_t len, char out[SIGNATURE_B64_LEN + 1]);

/* Length of a hex-encoded SHA-256 MAC. */
#define SIGNATURE_HEX_LEN 64

/* Writes hex(HMAC-SHA256(body, secret)) and a terminating NUL into out: the signature of the
 * outgoing webhooks (X-Retentiond-Signature: sha256=<hex>). */
void signature_compute_hex(const char *secret, const void *body, size_t len, char out[SIGNATURE_HEX_LEN + 1]);

/* True when `presented` (a header value, surrounding blanks ignored) is the signature of body
 * under secret. False for NULL, empty or wrongly sized values. Constant time in the content. */
bool signature_verify(const char *secret, const void *body, size_t len, const char *presented);

#endif
