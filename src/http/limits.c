/* limits.c - what a client may send: the body size limits (MAX_BODY_BYTES, MAX_BATCH_BYTES)
 * and the per-address request rate limit (RATE_LIMIT, RATE_BURST). The connection limits
 * (MAX_CONNECTIONS, MAX_CONN_PER_IP, REQUEST_TIMEOUT) are libmicrohttpd options set in
 * http_start (server.c); slow clients are sweeper.c's.
 *
 * The rate limit is a token bucket per client address in RATE_SLOTS hashed slots: two
 * addresses sharing a slot reset each other's bucket, which can only let a request through,
 * never refuse one. */
#include "retentiond/http/internal.h"

#include "retentiond/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

long http_limits_body_max(const http_req *rq)
{
    return rq->route && rq->route->big_body ? config.max_batch_bytes : config.max_body_bytes;
}

bool http_limits_declared_ok(http_req *rq)
{
    const char *cl = http_header(rq, "Content-Length");
    if (!cl)
        return true;
    char *end;
    long long n = strtoll(cl, &end, 10);
    if (*end != '\0' || n < 0) {
        http_reply_problem(rq, 400, "Bad Request", "Content-Length is not a number", NULL);
        return false;
    }
    if (n > http_limits_body_max(rq)) {
        http_reply_problem(rq, 413, "Content Too Large", "the request body exceeds the configured limit", NULL);
        return false;
    }
    return true;
}

/* ---- per-IP request rate limit (token bucket, hashed slots) ---- */

#define RATE_SLOTS 4096
typedef struct {
    char ip[INET6_ADDRSTRLEN];
    double tokens;
    int64_t last;
} rate_slot;
static rate_slot rate_slots[RATE_SLOTS];
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;

static void client_ip(struct MHD_Connection *c, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)n);
}

int http_limits_rate_check(struct MHD_Connection *c)
{
    if (config.rate_limit <= 0)
        return 0;
    char ip[INET6_ADDRSTRLEN];
    client_ip(c, ip, sizeof ip);
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = ip; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    int64_t now = now_usec();
    int wait = 0;
    pthread_mutex_lock(&rate_lock);
    rate_slot *s = &rate_slots[h % RATE_SLOTS];
    if (strcmp(s->ip, ip) != 0) {
        rd_strlcpy(s->ip, ip, sizeof s->ip);
        s->tokens = config.rate_burst;
        s->last = now;
    }
    s->tokens += (double)(now - s->last) / 1e6 * config.rate_limit;
    if (s->tokens > config.rate_burst)
        s->tokens = config.rate_burst;
    s->last = now;
    if (s->tokens >= 1.0)
        s->tokens -= 1.0;
    else
        wait = (int)((1.0 - s->tokens) / config.rate_limit) + 1;
    pthread_mutex_unlock(&rate_lock);
    return wait;
}
