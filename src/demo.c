/* demo.c - `retentiond demo --tenant NAME`, which `make run` calls for the demo tenant it
 * creates: a real shop to look at on the first run.
 *
 * The orders are the CDNOW sample (tests/fixtures/cdnow/SOURCE.md: 6 919 purchases by 2 357
 * customers of an online CD shop, January 1997 to June 1998), compiled into the binary, each on
 * its own day moved forward so that the last one falls on yesterday (UTC), at a time of day of
 * its own. CDNOW has nothing but purchases, so the rest of a shop is added, the same on every
 * run (a hash of the customer id decides): a customer record with an acquisition channel and an
 * example.com e-mail, page views before some first orders, reviews after some repeat customers'
 * last order (rated 3 to 5: the fours and fives within the advocacy window make advocates), 300
 * leads who have browsed and never bought (prospects), and monthly acquisition spend by channel.
 * All of it goes through the same batch reader and commits as `import`; then the CLV model is
 * fitted. */
#include "retentiond/cli.h"

#include "retentiond/log.h"
#include "retentiond/store/pool.h"
#include "retentiond/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern const char rd_asset_cdnow[];
extern const size_t rd_asset_cdnow_len;

#define LEADS 300

static const char *const channels[] = {"search", "email", "social", "referral", "direct"};
/* the share of customers per channel, in percent, and what a month of acquisition costs there */
static const int channel_share[] = {35, 20, 20, 10, 15};
static const int channel_spend[] = {1800, 400, 900, 250, 0};

static uint32_t mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* An instant as RFC 3339 UTC: day (days since 1970) and seconds into it. */
static void instant(char out[24], int64_t day, int secs)
{
    time_t t = (time_t)(day * 86400 + secs);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

typedef struct {
    int id;
    int64_t day;     /* shifted */
    char amount[24];
} purchase;

typedef struct {
    int id;
    int64_t first, last;
    int n;
} buyer;

static int channel_of(int id)
{
    int r = (int)(mix((uint32_t)id * 2654435761u) % 100), acc = 0;
    for (int c = 0; c < 5; c++) {
        acc += channel_share[c];
        if (r < acc)
            return c;
    }
    return 4;
}

int cli_demo(PGconn *conn, const char *tenant)
{
    rd_tenant t;
    int err = cli_tenant(conn, tenant, &t);
    if (err != 0)
        return err;
    char tid[24];
    db_id_text(tid, t.id);
    const char *params[1] = {tid};
    PGresult *res = db_params(conn, "SELECT EXISTS (SELECT 1 FROM orders WHERE tenant_id = $1) OR "
                                    "EXISTS (SELECT 1 FROM customers WHERE tenant_id = $1)",
                              1, params, PGRES_TUPLES_OK, "demo");
    if (!res)
        return 1;
    bool has_data = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (has_data) {
        fprintf(stderr, "retentiond: tenant \"%s\" has data already; the demo shop loads into an empty tenant\n",
                tenant);
        return 2;
    }

    /* the purchases: "  00004 0001 19970101  2   29.33" = id, original id, date, CDs, dollars */
    size_t cap = 8192, n = 0;
    purchase *p = xmalloc(cap * sizeof *p);
    int64_t last_day = INT64_MIN;
    const char *s = rd_asset_cdnow, *end = rd_asset_cdnow + rd_asset_cdnow_len;
    while (s < end) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        if (!eol)
            eol = end;
        char line[128];
        size_t len = (size_t)(eol - s) < sizeof line - 1 ? (size_t)(eol - s) : sizeof line - 1;
        memcpy(line, s, len);
        line[len] = '\0';
        s = eol + 1;
        int id, orig, date, qty;
        char amount[24];
        if (sscanf(line, "%d %d %d %d %23s", &id, &orig, &date, &qty, amount) != 5)
            continue;
        if (n == cap)
            p = xrealloc(p, (cap *= 2) * sizeof *p);
        p[n].id = id;
        p[n].day = days_from_civil(date / 10000, date / 100 % 100, date % 100);
        rd_strlcpy(p[n].amount, amount, sizeof p[n].amount);
        if (p[n].day > last_day)
            last_day = p[n].day;
        n++;
    }
    int64_t yesterday = (int64_t)(time(NULL) / 86400) - 1, shift = yesterday - last_day;
    int max_id = 0;
    for (size_t i = 0; i < n; i++) {
        p[i].day += shift;
        if (p[i].id > max_id)
            max_id = p[i].id;
    }
    buyer *b = xcalloc((size_t)max_id + 1, sizeof *b);
    int64_t first_day = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        buyer *x = &b[p[i].id];
        if (!x->n || p[i].day < x->first)
            x->first = p[i].day;
        if (!x->n || p[i].day > x->last)
            x->last = p[i].day;
        x->id = p[i].id;
        x->n++;
        if (p[i].day < first_day)
            first_day = p[i].day;
    }

    buf out = {0};
    char at[24], at2[24];
    int customers = 0, events = 0, spend = 0;
    for (int id = 1; id <= max_id; id++) {
        const buyer *x = &b[id];
        if (!x->n)
            continue;
        instant(at, x->first - (int64_t)(mix((uint32_t)id) % 14), 8 * 3600);
        buf_printf(&out, "{\"kind\":\"customer\",\"customer_id\":\"cdnow-%05d\",\"email\":\"cdnow-%05d@example.com\","
                         "\"created_at\":\"%s\",\"channel\":\"%s\"}\n", id, id, at, channels[channel_of(id)]);
        customers++;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t h = mix((uint32_t)i * 40503u + 17u);
        instant(at, p[i].day, 9 * 3600 + (int)(h % (12 * 3600)));
        buf_printf(&out, "{\"kind\":\"order\",\"order_id\":\"cdnow-%zu\",\"customer_id\":\"cdnow-%05d\","
                         "\"placed_at\":\"%s\",\"total\":\"%s\"}\n", i + 1, p[i].id, at, p[i].amount);
    }
    for (int id = 1; id <= max_id; id++) {
        const buyer *x = &b[id];
        if (!x->n)
            continue;
        uint32_t h = mix((uint32_t)id * 7919u);
        if (h % 10 < 4) { /* two in five looked around before their first purchase */
            instant(at, x->first - 1 - (int64_t)(h >> 8) % 3, 20 * 3600);
            buf_printf(&out, "{\"kind\":\"event\",\"event_id\":\"cdnow-view-%05d\",\"customer_id\":\"cdnow-%05d\","
                             "\"type\":\"page_view\",\"occurred_at\":\"%s\"}\n", id, id, at);
            events++;
        }
        if (x->n >= 2 && (h >> 4) % 100 < 25) { /* a quarter of repeat buyers review their last CDs */
            int64_t day = x->last + 7 > yesterday ? yesterday : x->last + 7;
            instant(at, day, 19 * 3600);
            buf_printf(&out, "{\"kind\":\"event\",\"event_id\":\"cdnow-review-%05d\",\"customer_id\":\"cdnow-%05d\","
                             "\"type\":\"review\",\"occurred_at\":\"%s\",\"properties\":{\"rating\":%d}}\n",
                       id, id, at, 3 + (int)((h >> 12) % 3));
            events++;
        }
    }
    for (int i = 1; i <= LEADS; i++) {
        uint32_t h = mix((uint32_t)i * 104729u);
        int64_t day = yesterday - (int64_t)(h % 120);
        instant(at, day - 30, 12 * 3600);
        instant(at2, day, 13 * 3600 + (int)((h >> 8) % 3600));
        buf_printf(&out, "{\"kind\":\"customer\",\"customer_id\":\"lead-%04d\",\"email\":\"lead-%04d@example.com\","
                         "\"created_at\":\"%s\",\"channel\":\"%s\"}\n", i, i, at, channels[channel_of(100000 + i)]);
        buf_printf(&out, "{\"kind\":\"event\",\"event_id\":\"lead-view-%04d\",\"customer_id\":\"lead-%04d\","
                         "\"type\":\"page_view\",\"occurred_at\":\"%s\"}\n", i, i, at2);
        customers++;
        events++;
    }
    /* a month of spend per channel over the months the orders span */
    time_t t0 = (time_t)(first_day * 86400), t1 = (time_t)(yesterday * 86400);
    struct tm a, z;
    gmtime_r(&t0, &a);
    gmtime_r(&t1, &z);
    for (int y = a.tm_year + 1900, m = a.tm_mon + 1; y < z.tm_year + 1900 || (y == z.tm_year + 1900 && m <= z.tm_mon + 1);
         m = m == 12 ? 1 : m + 1, y += m == 1) {
        for (int c = 0; c < 5; c++) {
            if (!channel_spend[c])
                continue;
            int cents = channel_spend[c] * 100 + (int)(mix((uint32_t)(y * 12 + m) * 31u + (uint32_t)c) % 40000);
            buf_printf(&out, "{\"kind\":\"spend\",\"type\":\"acquisition\",\"channel\":\"%s\",\"period\":\"%04d-%02d\","
                             "\"amount\":\"%d.%02d\"}\n", channels[c], y, m, cents / 100, cents % 100);
            spend++;
        }
    }
    free(b);
    free(p);
    fprintf(stderr, "demo: loading the sample shop into \"%s\": %d customers (%d leads), %zu CDNOW orders moved to end "
                    "yesterday, %d engagement events, %d months x channels of spend\n",
            tenant, customers, LEADS, n, events, spend);
    int64_t started = now_usec();
    int rc = cli_import_text(conn, &t, out.data, out.len);
    buf_free(&out);
    if (rc != 0)
        return rc;
    fprintf(stderr, "demo: loaded in %.1f s; fitting the CLV model\n", (double)(now_usec() - started) / 1e6);
    rc = cli_fit(conn, tenant, NULL);
    if (rc == 0)
        fprintf(stderr, "demo: done in %.1f s\n", (double)(now_usec() - started) / 1e6);
    return rc;
}
