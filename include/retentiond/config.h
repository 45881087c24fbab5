/* config.h - every setting of the service, from one declarative table (config.c).
 *
 * Each setting has a name, an environment variable, a type, a default and bounds; the same
 * table drives parsing, validation and the --help text, so they cannot drift apart. */
#ifndef RETENTIOND_CONFIG_H
#define RETENTIOND_CONFIG_H

#include <stdio.h>

typedef struct {
    char *database_url;      /* libpq connection string; required by serve/migrate/... */
    char *bind_address;      /* listen address */
    int port;                /* listen port */
    int http_threads;        /* libmicrohttpd thread pool size */
    int db_pool_size;        /* PostgreSQL connections (one database worker each) */
    int db_queue_max;        /* database jobs waiting before requests get 503 */
    int group_commit_max;    /* most single-event writes sharing one commit */
    int db_idle_check;       /* seconds idle after which a connection is checked before use */
    int max_exports;         /* streamed CSV exports at once (http/stream.c) */
    long max_body_bytes;     /* body limit for single-object endpoints */
    long max_batch_bytes;    /* body limit for POST /v1/batch (NDJSON is streamed) */
    int request_timeout;     /* seconds of client inactivity before the connection is closed */
    int max_connections;     /* total concurrent connections */
    int max_conn_per_ip;     /* concurrent connections per client address */
    int rate_limit;          /* requests per second per client address; 0 = off */
    int rate_burst;          /* burst allowance for the rate limit */
    int clv_refit_interval;  /* seconds between scheduled CLV refits; 0 = off */
    int upkeep_interval;     /* seconds between background upkeep rounds (upkeep.c); 0 = off */
    int rollup_sweep_after;  /* seconds before the upkeep flushes a bulk load's pending rollups */
    int report_snapshot_mb;  /* memory for the in-process report snapshots; 0 = reports in SQL */
    int webhook_timeout_ms;       /* outgoing webhooks (sender.c): an attempt's limit */
    int webhook_retry_base_ms;    /* first retry delay, doubled per failure */
    int webhook_retry_horizon;    /* seconds before a delivery is given up */
    int webhook_poll_ms;          /* the sender's look for work */
    int webhook_concurrency;      /* requests in flight; 0 = no sender */
    int webhook_per_subscription; /* requests in flight per subscription */
    int webhook_allow_private;    /* 1: private and loopback addresses allowed */
    char *log_level;         /* debug, info, warn, error */
} rd_config;

extern rd_config config;

/* Fills `config` with defaults, then environment variables (a renamed setting's old variable
 * where its new one is unset). Returns RD_OK, or RD_ERR after printing which variable was bad. */
int config_load_env(void);

/* Applies one --name=value or --name value flag (name as in the table, e.g. "port", or the old
 * name of a renamed setting, which the new name overrides). Returns RD_OK, or RD_ERR after
 * printing the error. */
int config_set(const char *name, const char *value);

/* Prints the option/environment table for --help. */
void config_print_help(FILE *out);

/* Writes the settings table as Markdown (used to keep the README's table true). */
void config_print_markdown(FILE *out);

#endif
