/* config.c - the settings table. Add a setting here and it is parsed from the environment and
 * flags, bounds-checked and listed in --help at once (pgbouncer's CF table, Redis's
 * createIntConfig). A setting renamed keeps its old flag and variable in the alias table. */
#include "retentiond/config.h"

#include "retentiond/log.h"
#include "retentiond/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

rd_config config;

typedef enum { CF_STR, CF_INT, CF_LONG } cf_type;

typedef struct {
    const char *name;
    const char *env;
    cf_type type;
    void *ptr;
    const char *def;
    long min, max;
    const char *help;
} cf_entry;

static const cf_entry table[] = {
    {"database-url", "DATABASE_URL", CF_STR, &config.database_url, "", 0, 0,
     "PostgreSQL connection string (libpq URI or key=value); `make run` starts a private cluster when unset"},
    {"bind", "BIND_ADDRESS", CF_STR, &config.bind_address, "0.0.0.0", 0, 0, "address to listen on"},
    {"port", "PORT", CF_INT, &config.port, "8080", 0, 65535, "TCP port to listen on (0 = any free port)"},
    {"http-threads", "HTTP_THREADS", CF_INT, &config.http_threads, "2", 1, 256,
     "libmicrohttpd epoll threads"},
    {"db-pool-size", "DB_POOL_SIZE", CF_INT, &config.db_pool_size, "8", 1, 256,
     "PostgreSQL connections, one database worker each"},
    {"db-queue-max", "DB_QUEUE_MAX", CF_INT, &config.db_queue_max, "4096", 1, 1000000,
     "database jobs allowed to wait; beyond it requests get 503"},
    {"group-commit-max", "GROUP_COMMIT_MAX", CF_INT, &config.group_commit_max, "64", 1, 10000,
     "most concurrent single-event writes sharing one commit"},
    {"db-idle-check", "DB_IDLE_CHECK", CF_INT, &config.db_idle_check, "30", 0, 86400,
     "seconds a database connection may sit idle before it is checked with a round trip before its next job (0 = before every job)"},
    {"max-exports", "MAX_EXPORTS", CF_INT, &config.max_exports, "2", 1, 256,
     "CSV exports of the customer list streaming at once, each holding one database connection while the client reads it; "
     "503 beyond it (keep it below DB_POOL_SIZE)"},
    {"max-body-bytes", "MAX_BODY_BYTES", CF_LONG, &config.max_body_bytes, "1048576", 1024,
     1073741824L, "body limit for single-object requests (413 beyond it)"},
    {"max-batch-bytes", "MAX_BATCH_BYTES", CF_LONG, &config.max_batch_bytes, "68719476736", 1024,
     0x7fffffffffffffffL, "body limit for POST /v1/batch (NDJSON is streamed; JSON arrays are held in memory up to 64 MiB)"},
    {"request-timeout", "REQUEST_TIMEOUT", CF_INT, &config.request_timeout, "30", 1, 3600,
     "seconds of client inactivity before a connection is closed"},
    {"max-connections", "MAX_CONNECTIONS", CF_INT, &config.max_connections, "1000", 1, 100000,
     "concurrent connections in total"},
    {"max-conn-per-ip", "MAX_CONN_PER_IP", CF_INT, &config.max_conn_per_ip, "200", 0, 100000,
     "concurrent connections per client address (0 = no limit)"},
    {"rate-limit", "RATE_LIMIT", CF_INT, &config.rate_limit, "0", 0, 10000000,
     "requests per second per client address, 429 beyond it (0 = off)"},
    {"rate-burst", "RATE_BURST", CF_INT, &config.rate_burst, "100", 1, 10000000,
     "requests a client may send at once before the rate limit applies"},
    {"clv-refit-interval", "CLV_REFIT_INTERVAL", CF_INT, &config.clv_refit_interval, "86400", 0,
     31536000, "seconds between scheduled CLV refits of every tenant (0 = off)"},
    {"upkeep-interval", "UPKEEP_INTERVAL", CF_INT, &config.upkeep_interval, "60", 0, 86400,
     "seconds between background upkeep rounds: RFM quintile boundaries older than 4 minutes are "
     "refreshed, the rung changes of past days are added to the ladder's daily aggregate, rollups a bulk "
     "load left pending are swept, report_changes rows behind the horizon are deleted (0 = off: a profile refreshes the boundaries when 5 minutes old; the "
     "ladder reads the changes since the last round row by row)"},
    {"rollup-sweep-after", "ROLLUP_SWEEP_AFTER", CF_INT, &config.rollup_sweep_after, "300", 0, 86400,
     "seconds a customer may stay pending after a bulk load cut short before the upkeep brings its "
     "rollup current"},
    {"report-snapshot-mb", "REPORT_SNAPSHOT_MB", CF_INT, &config.report_snapshot_mb, "48", 0, 1048576,
     "MiB for the copies of tenants' qualifying orders that the summary, retention and cohort reports are "
     "computed from in the service, each brought current by re-reading the customers changed since it was "
     "read; the reports of tenants beyond it read the tenant's rows streamed from PostgreSQL, by the same "
     "code (0 = always streamed)"},
    {"webhook-timeout-ms", "WEBHOOK_TIMEOUT_MS", CF_INT, &config.webhook_timeout_ms, "10000", 100, 600000,
     "milliseconds an outgoing webhook's receiver has to answer before the attempt counts as failed"},
    {"webhook-retry-base-ms", "WEBHOOK_RETRY_BASE_MS", CF_INT, &config.webhook_retry_base_ms, "10000", 1, 3600000,
     "first retry delay of a failed outgoing webhook, doubled at each further failure up to an hour, with "
     "random jitter of up to half"},
    {"webhook-retry-horizon", "WEBHOOK_RETRY_HORIZON", CF_INT, &config.webhook_retry_horizon, "259200", 1,
     31536000, "seconds after which an outgoing webhook still not delivered is marked failed"},
    {"webhook-poll-ms", "WEBHOOK_POLL_MS", CF_INT, &config.webhook_poll_ms, "1000", 10, 600000,
     "milliseconds between the sender's looks for new changes and due retries (0 < latency <= this)"},
    {"webhook-concurrency", "WEBHOOK_CONCURRENCY", CF_INT, &config.webhook_concurrency, "32", 0, 4096,
     "outgoing webhook requests in flight at once; 0 = no sender in this process"},
    {"webhook-per-subscription", "WEBHOOK_PER_SUBSCRIPTION", CF_INT, &config.webhook_per_subscription, "4", 1,
     1024, "outgoing webhook requests in flight at once to one subscription (a slow receiver holds only these)"},
    {"webhook-allow-private", "WEBHOOK_ALLOW_PRIVATE", CF_INT, &config.webhook_allow_private, "0", 0, 1,
     "1 = subscriptions may name loopback, private and link-local addresses (tests, a trusted network); 0 = "
     "refused when created and at every connection"},
    {"log-level", "LOG_LEVEL", CF_STR, &config.log_level, "info", 0, 0, "debug, info, warn or error"},
};

#define TABLE_LEN (sizeof table / sizeof table[0])

/* Old names of renamed settings, still read. Where a setting is given under both names, its
 * own name wins: in the environment, and among the flags whatever their order. */
typedef struct {
    const char *name;  /* the old flag, without "--" */
    const char *env;   /* the old environment variable */
    const char *now;   /* the setting's name in the table */
} cf_alias;

static const cf_alias aliases[] = {
    {"rfm-refresh-interval", "RFM_REFRESH_INTERVAL", "upkeep-interval"},
};

#define ALIASES_LEN (sizeof aliases / sizeof aliases[0])

static bool given_as_flag[TABLE_LEN]; /* under its own name */

static const cf_entry *entry_named(const char *name)
{
    for (size_t i = 0; i < TABLE_LEN; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

static const cf_alias *alias_named(const char *name)
{
    for (size_t i = 0; i < ALIASES_LEN; i++)
        if (strcmp(aliases[i].name, name) == 0)
            return &aliases[i];
    return NULL;
}

/* The old names of e, or NULL. */
static const cf_alias *alias_of(const cf_entry *e)
{
    for (size_t i = 0; i < ALIASES_LEN; i++)
        if (strcmp(aliases[i].now, e->name) == 0)
            return &aliases[i];
    return NULL;
}

static int set_entry(const cf_entry *e, const char *value, const char *origin)
{
    if (e->type == CF_STR) {
        char **dst = e->ptr;
        free(*dst);
        *dst = xstrdup(value);
        if (e->ptr == &config.log_level) {
            int lv = log_level_parse(value);
            if (lv < 0) {
                fprintf(stderr, "retentiond: %s: log level must be debug, info, warn or error\n", origin);
                return RD_ERR;
            }
            log_level = lv;
        }
        return RD_OK;
    }
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end != '\0' || v < e->min || v > e->max) {
        fprintf(stderr, "retentiond: %s: expected an integer in [%ld, %ld], got \"%s\"\n", origin,
                e->min, e->max, value);
        return RD_ERR;
    }
    if (e->type == CF_INT)
        *(int *)e->ptr = (int)v;
    else
        *(long *)e->ptr = v;
    return RD_OK;
}

int config_load_env(void)
{
    for (size_t i = 0; i < TABLE_LEN; i++) {
        if (set_entry(&table[i], table[i].def, table[i].name) != RD_OK)
            return RD_ERR;
        const char *env = table[i].env, *v = getenv(env);
        const cf_alias *a = alias_of(&table[i]);
        if ((!v || !*v) && a) { /* the old name counts only while the new one is unset */
            env = a->env;
            v = getenv(env);
        }
        if (v && *v && set_entry(&table[i], v, env) != RD_OK)
            return RD_ERR;
    }
    return RD_OK;
}

int config_set(const char *name, const char *value)
{
    const cf_alias *a = alias_named(name);
    const cf_entry *e = entry_named(a ? a->now : name);
    if (!e) {
        fprintf(stderr, "retentiond: unknown option --%s (see --help)\n", name);
        return RD_ERR;
    }
    if (a && given_as_flag[e - table])
        return RD_OK; /* the new name was given too, and wins */
    if (!a)
        given_as_flag[e - table] = true;
    char origin[64];
    snprintf(origin, sizeof origin, "--%s", name);
    return set_entry(e, value, origin);
}

void config_print_help(FILE *out)
{
    fprintf(out, "Options (flag / environment variable, default):\n");
    for (size_t i = 0; i < TABLE_LEN; i++) {
        fprintf(out, "  --%-20s %-20s %s\n  %22s %20s (default: %s)\n", table[i].name, table[i].env,
                table[i].help, "", "", *table[i].def ? table[i].def : "unset");
        const cf_alias *a = alias_of(&table[i]);
        if (a)
            fprintf(out, "  %22s %20s (formerly --%s / %s, still read; the new name wins)\n", "", "", a->name,
                    a->env);
    }
}

void config_print_markdown(FILE *out)
{
    fprintf(out, "| environment | flag | default | meaning |\n| --- | --- | --- | --- |\n");
    for (size_t i = 0; i < TABLE_LEN; i++) {
        const cf_alias *a = alias_of(&table[i]);
        fprintf(out, "| `%s` | `--%s` | `%s` | %s", table[i].env, table[i].name,
                *table[i].def ? table[i].def : "(unset)", table[i].help);
        if (a)
            fprintf(out, ". Formerly `%s` / `--%s`, still read; where both names are set, the new one wins",
                    a->env, a->name);
        fprintf(out, " |\n");
    }
}
