/* util.h - allocation wrappers, a growable byte buffer and small helpers shared by every module.
 *
 * Out-of-memory is not a condition this service can answer meaningfully, so the x* allocators
 * abort in one place (as Redis's zmalloc does) and callers never check for NULL. */
#ifndef RETENTIOND_UTIL_H
#define RETENTIOND_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Project-wide result convention: RD_OK on success, RD_ERR on failure. */
#define RD_OK 0
#define RD_ERR (-1)

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* A growable byte buffer, always NUL-terminated. Zero-initialise ({0}) before first use;
 * release with buf_free. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} buf;

void buf_append(buf *b, const void *data, size_t n);
void buf_puts(buf *b, const char *s);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(buf *b);
void buf_free(buf *b);
/* Hands the buffer's memory to the caller (who frees it) and leaves b empty. */
char *buf_steal(buf *b);

/* Monotonic clock in microseconds. */
int64_t now_usec(void);

/* Copies at most n-1 bytes and always terminates. Returns strlen(src). */
size_t rd_strlcpy(char *dst, const char *src, size_t n);

/* FNV-1a of n bytes: the hash of the customer-id tables. */
uint32_t rd_hash(const char *s, size_t n);

/* FNV-1a of a string (NULL hashes as ""): a stable key, e.g. for the lock order of group jobs. */
uint64_t hash_str(const char *s);

#endif
