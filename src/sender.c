/* sender.c - the outgoing webhooks' sender (see sender.h). One thread, one connection, no pool
 * worker: a receiver that hangs holds a libcurl transfer for at most WEBHOOK_TIMEOUT_MS and one
 * of its subscription's WEBHOOK_PER_SUBSCRIPTION slots, nothing of ingest and nothing of the
 * other subscriptions.
 *
 * Each look (every WEBHOOK_POLL_MS, at once again while there is more):
 *   fan-out: takes the oldest outbox rows, builds each matching subscription's body (the API
 *     layer's JSON), writes the deliveries and deletes the rows, in one transaction;
 *   claims due deliveries for the free slots (in order per customer and subscription, under a
 *     lease) and starts their POSTs;
 * and as each POST ends its outcome is recorded: delivered on 2xx, else retried after
 * base x 2^(attempt-1) (at most an hour) with jitter, or failed once the retry would fall past
 * the horizon. At least once: a crash between a receiver's 2xx and the record sends the same
 * body under the same delivery id again when the lease runs out. */
#include "retentiond/sender.h"

#include "retentiond/api/api.h"
#include "retentiond/config.h"
#include "retentiond/http/outbound.h"
#include "retentiond/log.h"
#include "retentiond/platform/signature.h"
#include "retentiond/stats.h"
#include "retentiond/store/outbox.h"
#include "retentiond/store/pool.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    FAN_OUT_BATCH = 500,        /* outbox rows per fan-out transaction */
    LEASE_MARGIN_MS = 5000,     /* a lease outlasts twice the attempt's timeout by this */
    RETRY_CAP_MS = 3600000,     /* the longest back-off */
    GAUGE_EVERY_MS = 5000,
    PRUNE_EVERY_MS = 3600000,
    KEEP_DAYS = 30,             /* deliveries done are kept this long for GET .../deliveries */
};

typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    delivery_claim claim;
    int64_t started;
    bool busy, refused;
    char error[CURL_ERROR_SIZE];
} slot;

static struct {
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    bool stopping;
    CURLM *multi;
    uint64_t rng;
} sender = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool stopping(void)
{
    pthread_mutex_lock(&sender.lock);
    bool s = sender.stopping;
    pthread_mutex_unlock(&sender.lock);
    return s;
}

/* xorshift64*: the jitter needs no more */
static uint64_t next_random(void)
{
    uint64_t x = sender.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    sender.rng = x;
    return x * 2685821657736338717ull;
}

/* The delay before attempt `attempt` + 1: half the exponential step, plus up to the other half
 * at random, so that receivers coming back are not hit by every sender at the same instant. */
static long retry_delay_ms(int attempt)
{
    long step = config.webhook_retry_base_ms;
    for (int i = 1; i < attempt && step < RETRY_CAP_MS; i++)
        step *= 2;
    if (step > RETRY_CAP_MS)
        step = RETRY_CAP_MS;
    long half = step / 2;
    return step - half + (half > 0 ? (long)(next_random() % (uint64_t)(half + 1)) : 0);
}

/* ---- the fan-out ---- */

/* One fan-out transaction. Returns the outbox rows taken (FAN_OUT_BATCH or more: there may be
 * more), or -1 on a database error. */
static int fan_out(PGconn *conn)
{
    outbox_batch b;
    if (store_outbox_take(conn, FAN_OUT_BATCH, &b) != RD_OK)
        return -1;
    if (b.n == 0) {
        outbox_batch_free(&b);
        return 0;
    }
    char **bodies = xcalloc((size_t)b.n, sizeof *bodies);
    for (int i = 0; i < b.n; i++)
        if (b.events[i].subscription_id)
            bodies[i] = api_webhook_event_body(&b.events[i]);
    int made = 0, taken = b.n;
    int rc = store_fan_out(conn, &b, bodies, &made);
    for (int i = 0; i < b.n; i++)
        free(bodies[i]);
    free(bodies);
    outbox_batch_free(&b);
    if (rc != RD_OK)
        return -1;
    stats_add(&stats.webhook_fanned_out, (uint64_t)made);
    return taken;
}

/* ---- transfers ---- */

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    slot *s = clientp;
    (void)purpose;
    if (!outbound_address_allowed(&addr->addr)) {
        s->refused = true;
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

static bool start(slot *s)
{
    s->easy = curl_easy_init();
    if (!s->easy)
        return false;
    char sig[SIGNATURE_HEX_LEN + 1], line[256];
    signature_compute_hex(s->claim.secret, s->claim.body, strlen(s->claim.body), sig);
    s->headers = curl_slist_append(NULL, "Content-Type: application/json");
    s->headers = curl_slist_append(s->headers, "User-Agent: retentiond-webhooks/1");
    s->headers = curl_slist_append(s->headers, "Expect:");
    snprintf(line, sizeof line, "X-Retentiond-Signature: sha256=%s", sig);
    s->headers = curl_slist_append(s->headers, line);
    snprintf(line, sizeof line, "X-Retentiond-Delivery: %lld", (long long)s->claim.delivery_id);
    s->headers = curl_slist_append(s->headers, line);
    snprintf(line, sizeof line, "X-Retentiond-Attempt: %d", s->claim.attempt);
    s->headers = curl_slist_append(s->headers, line);
    CURL *e = s->easy;
    curl_easy_setopt(e, CURLOPT_URL, s->claim.url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PROXY, "");          /* no proxy from the environment: we check the peer */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is an answer, not a new target */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, s->claim.body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(s->claim.body));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)config.webhook_timeout_ms);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, s);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    s->error[0] = '\0';
    s->refused = false;
    s->started = now_usec();
    if (curl_multi_add_handle(sender.multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        curl_slist_free_all(s->headers);
        s->easy = NULL;
        s->headers = NULL;
        return false;
    }
    s->busy = true;
    return true;
}

static void slot_clear(slot *s)
{
    if (s->easy) {
        curl_multi_remove_handle(sender.multi, s->easy);
        curl_easy_cleanup(s->easy);
    }
    curl_slist_free_all(s->headers);
    delivery_claim_clear(&s->claim);
    s->easy = NULL;
    s->headers = NULL;
    s->busy = false;
}

/* Claims due deliveries for the free slots and starts them. Returns how many started. */
static int start_due(PGconn *conn, slot *slots, int nslots)
{
    int free_slots = 0;
    for (int i = 0; i < nslots; i++)
        free_slots += !slots[i].busy;
    if (free_slots == 0)
        return 0;
    delivery_claim *claims = xcalloc((size_t)free_slots, sizeof *claims);
    int n = store_deliveries_claim(conn, free_slots, config.webhook_per_subscription,
                                   2 * config.webhook_timeout_ms + LEASE_MARGIN_MS, claims);
    int started = 0;
    for (int i = 0, k = 0; i < n; i++) {
        while (slots[k].busy)
            k++;
        slots[k].claim = claims[i];
        if (start(&slots[k])) {
            started++;
        } else {
            rd_log(LOG_ERROR, "msg=\"webhook: cannot start a transfer\" delivery=%lld",
                   (long long)claims[i].delivery_id);
            store_delivery_release(conn, &slots[k].claim);
            slot_clear(&slots[k]);
        }
    }
    free(claims);
    return started;
}

/* Records the outcome of every finished transfer. Returns how many finished. */
static int collect(PGconn *conn)
{
    int done = 0, left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(sender.multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        slot *s = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        long code = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        CURLcode result = m->data.result;
        double ms = (double)(now_usec() - s->started) / 1000.0;
        bool ok = result == CURLE_OK && code >= 200 && code < 300;
        char error[CURL_ERROR_SIZE + 64];
        if (ok)
            error[0] = '\0';
        else if (s->refused)
            snprintf(error, sizeof error, "address not allowed (loopback, private or otherwise non-public)");
        else if (result != CURLE_OK)
            snprintf(error, sizeof error, "%s", s->error[0] ? s->error : curl_easy_strerror(result));
        else
            snprintf(error, sizeof error, "HTTP %ld", code);
        long retry = ok ? 0 : retry_delay_ms(s->claim.attempt);
        char status[16] = "";
        if (store_delivery_record(conn, &s->claim, ok, result == CURLE_OK ? (int)code : 0, ok ? NULL : error, ms,
                                  retry, config.webhook_retry_horizon, status) != RD_OK) {
            /* the lease runs out and the delivery is made again: at least once */
            rd_log(LOG_WARN, "msg=\"webhook: outcome not recorded\" delivery=%lld", (long long)s->claim.delivery_id);
        } else if (strcmp(status, "delivered") == 0) {
            stats_add(&stats.webhook_delivered, 1);
        } else if (strcmp(status, "failed") == 0) {
            stats_add(&stats.webhook_failed, 1);
            rd_log(LOG_WARN, "msg=\"webhook: delivery failed for good\" delivery=%lld subscription=%lld attempts=%d "
                             "error=\"%s\"",
                   (long long)s->claim.delivery_id, (long long)s->claim.subscription_id, s->claim.attempt, error);
        } else if (strcmp(status, "pending") == 0) {
            stats_add(&stats.webhook_retried, 1);
            rd_log(LOG_INFO, "msg=\"webhook: attempt failed\" delivery=%lld subscription=%lld attempt=%d "
                             "retry_ms=%ld error=\"%s\"",
                   (long long)s->claim.delivery_id, (long long)s->claim.subscription_id, s->claim.attempt, retry,
                   error);
        }
        slot_clear(s);
        done++;
    }
    return done;
}

static void gauges(PGconn *conn)
{
    int64_t outbox = 0, pending = 0;
    double oldest = 0;
    if (store_outbox_backlog(conn, &outbox, &pending, &oldest) != RD_OK)
        return;
    __atomic_store_n(&stats.webhook_outbox, (uint64_t)outbox, __ATOMIC_RELAXED);
    __atomic_store_n(&stats.webhook_pending, (uint64_t)pending, __ATOMIC_RELAXED);
    __atomic_store_n(&stats.webhook_oldest_ms, (uint64_t)(oldest * 1000.0), __ATOMIC_RELAXED);
}

static void *sender_main(void *arg)
{
    (void)arg;
    int nslots = config.webhook_concurrency;
    slot *slots = xcalloc((size_t)nslots, sizeof *slots);
    PGconn *conn = NULL;
    int64_t next_look = 0, next_gauge = 0, next_prune = 0;
    while (!stopping()) {
        int64_t now = now_usec();
        if (!conn || PQstatus(conn) != CONNECTION_OK) {
            PQfinish(conn);
            conn = db_connect(config.database_url);
            if (!conn) {
                curl_multi_poll(sender.multi, NULL, 0, config.webhook_poll_ms, NULL);
                continue;
            }
        }
        if (now >= next_look) {
            int taken = fan_out(conn);
            start_due(conn, slots, nslots);
            next_look = now + (int64_t)config.webhook_poll_ms * 1000;
            if (taken >= FAN_OUT_BATCH)
                next_look = now; /* more waiting */
            if (now >= next_gauge) {
                gauges(conn);
                next_gauge = now + GAUGE_EVERY_MS * 1000LL;
            }
            if (now >= next_prune) {
                int64_t pruned = 0;
                if (store_deliveries_prune(conn, KEEP_DAYS, &pruned) == RD_OK && pruned > 0)
                    rd_log(LOG_INFO, "msg=\"webhook: deliveries pruned\" rows=%lld", (long long)pruned);
                next_prune = now + PRUNE_EVERY_MS * 1000LL;
            }
        }
        int running = 0;
        curl_multi_perform(sender.multi, &running);
        if (collect(conn) > 0)
            next_look = now_usec(); /* a slot is free, and a customer's next delivery may be due */
        int64_t wait = (next_look - now_usec()) / 1000;
        if (wait > 0)
            curl_multi_poll(sender.multi, NULL, 0, (int)(wait < config.webhook_poll_ms ? wait : config.webhook_poll_ms),
                            NULL);
    }
    for (int i = 0; i < nslots; i++)
        if (slots[i].busy) {
            if (conn)
                store_delivery_release(conn, &slots[i].claim);
            slot_clear(&slots[i]);
        }
    free(slots);
    PQfinish(conn);
    return NULL;
}

void sender_start(void)
{
    if (config.webhook_concurrency <= 0 || sender.running)
        return;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(sender.multi = curl_multi_init())) {
        rd_log(LOG_ERROR, "msg=\"webhook sender off: libcurl cannot start\"");
        return;
    }
    sender.stopping = false;
    sender.rng = (uint64_t)now_usec() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
    if (pthread_create(&sender.thread, NULL, sender_main, NULL) == 0) {
        sender.running = true;
    } else {
        rd_log(LOG_ERROR, "msg=\"cannot start the webhook sender thread\"");
        curl_multi_cleanup(sender.multi);
        sender.multi = NULL;
    }
}

void sender_stop(void)
{
    if (!sender.running)
        return;
    pthread_mutex_lock(&sender.lock);
    sender.stopping = true;
    pthread_mutex_unlock(&sender.lock);
    curl_multi_wakeup(sender.multi);
    pthread_join(sender.thread, NULL);
    curl_multi_cleanup(sender.multi);
    sender.multi = NULL;
    sender.running = false;
    curl_global_cleanup();
}
