/* sender.h - the outgoing webhooks' sender of `serve` (src/sender.c): a thread with its own
 * database connection that fans the outbox out into deliveries and POSTs them, signed, to the
 * subscriptions' URLs, many at once (libcurl multi), retrying with back-off until delivered or
 * past the horizon. Off when WEBHOOK_CONCURRENCY is 0. */
#ifndef RETENTIOND_SENDER_H
#define RETENTIOND_SENDER_H

/* Starts the thread (logged when it cannot be). Call once, before any other thread uses libcurl. */
void sender_start(void);
/* Wakes the thread and joins it: attempts in flight are abandoned and their leases given back,
 * so that the next sender (this process restarted, or another) makes them again. */
void sender_stop(void);

#endif
