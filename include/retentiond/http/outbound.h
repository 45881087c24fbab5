/* outbound.h - where the service may send its own webhooks: http(s) URLs whose every address
 * is public, unless the operator allows private ones (WEBHOOK_ALLOW_PRIVATE=1). The same rule
 * is asked when a subscription is made (every address its host resolves to) and at every
 * connection the sender opens (the address actually connected to, so a name that resolves
 * elsewhere later, DNS rebinding, is refused too). */
#ifndef RETENTIOND_HTTP_OUTBOUND_H
#define RETENTIOND_HTTP_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* True when the sender may connect to sa: a public unicast address, or any with
 * config.webhook_allow_private. */
bool outbound_address_allowed(const struct sockaddr *sa);

/* Checks a subscription URL: http or https, a host, at most 2048 bytes, and (resolving the host,
 * which blocks: call it off the HTTP threads) only allowed addresses. Returns true, or false
 * with the reason in why. */
bool outbound_url_allowed(const char *url, char *why, size_t n);

#endif
