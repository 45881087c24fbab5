/* outbound.c - the address rule of the outgoing webhooks (see outbound.h). */
#include "retentiond/http/outbound.h"

#include "retentiond/config.h"

#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* IPv4 (host order) ranges that are not the public internet: this network, private, shared
 * (CGNAT), loopback, link-local, IETF protocol assignments, benchmarking, multicast, reserved,
 * broadcast (RFC 6890). */
static bool ipv4_public(uint32_t a)
{
    static const struct {
        uint32_t net;
        int bits;
    } blocked[] = {
        {0x00000000, 8},  {0x0A000000, 8},  {0x64400000, 10}, {0x7F000000, 8},  {0xA9FE0000, 16},
        {0xAC100000, 12}, {0xC0000000, 24}, {0xC0000200, 24}, {0xC0A80000, 16}, {0xC6120000, 15},
        {0xC6336400, 24}, {0xCB007100, 24}, {0xE0000000, 4},  {0xF0000000, 4},
    };
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
        uint32_t mask = blocked[i].bits ? ~0u << (32 - blocked[i].bits) : 0;
        if ((a & mask) == blocked[i].net)
            return false;
    }
    return true;
}

static bool ipv6_public(const unsigned char *b)
{
    static const unsigned char zero[16] = {0};
    if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1)) /* :: and ::1 */
        return false;
    if ((b[0] & 0xFE) == 0xFC)                    /* fc00::/7 unique local */
        return false;
    if (b[0] == 0xFE && (b[1] & 0x80) == 0x80)    /* fe80::/10 link-local, fec0::/10 old site-local */
        return false;
    if (b[0] == 0xFF)                             /* multicast */
        return false;
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8) /* 2001:db8::/32 documentation */
        return false;
    /* ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible) and 64:ff9b::a.b.c.d (NAT64) reach an IPv4 */
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    static const unsigned char nat64[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, zero, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return ipv4_public((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]);
    return true;
}

bool outbound_address_allowed(const struct sockaddr *sa)
{
    if (config.webhook_allow_private)
        return true;
    if (sa->sa_family == AF_INET)
        return ipv4_public(ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr));
    if (sa->sa_family == AF_INET6)
        return ipv6_public(((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr);
    return false;
}

bool outbound_url_allowed(const char *url, char *why, size_t n)
{
    if (strlen(url) > 2048) {
        snprintf(why, n, "must be at most 2048 bytes");
        return false;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = false;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
        snprintf(why, n, "must be an absolute http or https URL with a host");
        goto done;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(why, n, "must use http or https, not %s", scheme);
        goto done;
    }
    /* an IPv6 literal comes back in brackets */
    char name[256];
    size_t len = strlen(host);
    if (len >= sizeof name) {
        snprintf(why, n, "host name too long");
        goto done;
    }
    if (host[0] == '[' && len > 2 && host[len - 1] == ']') {
        memcpy(name, host + 1, len - 2);
        name[len - 2] = '\0';
    } else {
        memcpy(name, host, len + 1);
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(why, n, "host %s does not resolve (%s)", name, gai_strerror(rc));
        goto done;
    }
    ok = true;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (!outbound_address_allowed(a->ai_addr)) {
            snprintf(why, n, "host %s is a loopback, private or otherwise non-public address; the operator "
                             "can allow such addresses with WEBHOOK_ALLOW_PRIVATE=1", name);
            ok = false;
            break;
        }
    freeaddrinfo(res);
done:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}
