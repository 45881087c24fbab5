/* main.c - start-up, sub-commands and signal handling; nothing else.
 *
 *   retentiond [options] serve
 *   retentiond [options] migrate
 *   retentiond [options] tenant create NAME [--currency ISO-4217] [--timezone ZONE]
 *   retentiond [options] tenant set-timezone NAME ZONE
 *   retentiond [options] tenant set-secret TENANT shopify|woocommerce SECRET
 *   retentiond [options] key create --tenant NAME --scope ingest,read,admin
 *   retentiond [options] import FILE --tenant NAME
 *   retentiond [options] fit --tenant NAME [--as-of DATE]
 *   retentiond [options] demo --tenant NAME
 */
#include "retentiond/api/api.h"
#include "retentiond/cli.h"
#include "retentiond/config.h"
#include "retentiond/http/auth.h"
#include "retentiond/http/server.h"
#include "retentiond/log.h"
#include "retentiond/store/report_snapshot.h"
#include "retentiond/store/migrate.h"
#include "retentiond/store/pool.h"
#include "retentiond/store/report_segments.h"
#include "retentiond/store/tenants.h"
#include "retentiond/sender.h"
#include "retentiond/upkeep.h"

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: retentiond [options] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  serve                                   run the HTTP service\n"
    "  migrate                                 apply pending migrations and sql/ functions\n"
    "  tenant create NAME [--currency CUR] [--timezone ZONE]\n"
    "                                          create a tenant (shop); CUR is ISO 4217, default USD;\n"
    "                                          ZONE an IANA time zone, default UTC\n"
    "  tenant set-timezone NAME ZONE           report the tenant in another time zone from now on\n"
    "  tenant delete NAME --yes                erase the tenant with all its data, keys and secrets\n"
    "  tenant set-secret NAME PLATFORM SECRET  set the shopify or woocommerce webhook secret\n"
    "  key create --tenant NAME --scope LIST   create an API key (LIST: ingest,read,admin); printed once\n"
    "  key list --tenant NAME                  the tenant's keys: id, scopes, created, last used, revoked\n"
    "  key revoke KEY_ID                       revoke a key (refused within the key cache's 30 s)\n"
    "  import FILE --tenant NAME               load NDJSON or CSV history (FILE '-' reads stdin)\n"
    "  fit --tenant NAME [--as-of DATE]        fit the predictive CLV model now\n"
    "  demo --tenant NAME                      load the sample shop (CDNOW) into an empty tenant and fit it\n"
    "\n"
    "Run `retentiond COMMAND --help` for one command. Every option can also be set by its\n"
    "environment variable.\n\n";

static const char *command_help(const char *cmd)
{
    if (strcmp(cmd, "serve") == 0)
        return "usage: retentiond [options] serve\n\nServes the HTTP API on BIND_ADDRESS:PORT until SIGINT or SIGTERM;\n"
               "on a signal it stops accepting, lets in-flight requests finish, and exits 0.\n";
    if (strcmp(cmd, "migrate") == 0)
        return "usage: retentiond [options] migrate\n\nApplies every pending migration, then the function definitions of sql/\n"
               "when they changed, to DATABASE_URL: all in one transaction, under an advisory lock.\n"
               "Refuses, naming the file, a database whose applied migration differs from the\n"
               "binary's file of the same number.\n";
    if (strcmp(cmd, "tenant") == 0)
        return "usage: retentiond tenant create NAME [--currency ISO-4217] [--timezone ZONE]\n"
               "         (defaults USD and UTC; ZONE is an IANA name such as Europe/Berlin)\n"
               "       retentiond tenant set-timezone NAME ZONE\n"
               "       retentiond tenant delete NAME --yes\n"
               "       retentiond tenant set-secret NAME shopify|woocommerce SECRET\n\n"
               "NAME: letters, digits, '-' and '_' (it appears in webhook URLs).\n";
    if (strcmp(cmd, "key") == 0)
        return "usage: retentiond key create --tenant NAME --scope ingest|read|admin[,...]\n"
               "       retentiond key list --tenant NAME\n"
               "       retentiond key revoke KEY_ID\n\n"
               "create prints the new key once; only its hash is stored. list shows ids, never keys.\n";
    if (strcmp(cmd, "import") == 0)
        return "usage: retentiond import FILE --tenant NAME\n\n"
               "FILE is NDJSON (one {\"kind\": ...} object per line, as POST /v1/batch) or CSV whose\n"
               "header names the columns (add a 'kind' column, or --kind order|customer|event|spend).\n"
               "Shows progress on a terminal; prints the counts at the end.\n";
    if (strcmp(cmd, "fit") == 0)
        return "usage: retentiond fit --tenant NAME [--as-of YYYY-MM-DD]\n\n"
               "Fits BG/NBD and Gamma-Gamma to the tenant's customers and stores the model.\n";
    if (strcmp(cmd, "demo") == 0)
        return "usage: retentiond demo --tenant NAME\n\n"
               "Loads the sample shop into an empty tenant: the CDNOW purchases (2 357 customers, 6 919\n"
               "orders), moved so that the last is yesterday, with channels, page views, reviews, leads and\n"
               "spend added; then fits the CLV model. `make run` does it for the demo tenant it creates.\n";
    return NULL;
}

static void usage(FILE *out)
{
    fputs(usage_text, out);
    config_print_help(out);
}

/* Parsed command line: positional words and the command's own options. */
typedef struct {
    const char *words[8];
    int nwords;
    const char *currency, *timezone, *tenant, *scope, *as_of, *kind;
    bool help, yes;
} cmdline;

static int parse_args(int argc, char **argv, cmdline *cl)
{
    memset(cl, 0, sizeof *cl);
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cl->help = true;
            continue;
        }
        if (strcmp(a, "--yes") == 0) {
            cl->yes = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || strcmp(a, "-") == 0) {
            if (cl->nwords == 8) {
                fprintf(stderr, "retentiond: too many arguments\n");
                return RD_ERR;
            }
            cl->words[cl->nwords++] = a;
            continue;
        }
        char name[64];
        const char *value;
        char *eq = strchr(a + 2, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a - 2), a + 2);
            value = eq + 1;
        } else {
            rd_strlcpy(name, a + 2, sizeof name);
            if (i + 1 >= argc) {
                fprintf(stderr, "retentiond: --%s needs a value\n", name);
                return RD_ERR;
            }
            value = argv[++i];
        }
        if (strcmp(name, "currency") == 0)
            cl->currency = value;
        else if (strcmp(name, "timezone") == 0)
            cl->timezone = value;
        else if (strcmp(name, "tenant") == 0)
            cl->tenant = value;
        else if (strcmp(name, "scope") == 0)
            cl->scope = value;
        else if (strcmp(name, "as-of") == 0)
            cl->as_of = value;
        else if (strcmp(name, "kind") == 0)
            cl->kind = value;
        else if (config_set(name, value) != RD_OK)
            return RD_ERR;
    }
    return RD_OK;
}

static PGconn *connect_or_die(void)
{
    if (!*config.database_url) {
        fprintf(stderr, "retentiond: DATABASE_URL is not set (or use --database-url)\n");
        exit(2);
    }
    PGconn *conn = db_connect(config.database_url);
    if (!conn) {
        fprintf(stderr, "retentiond: cannot connect to the database\n");
        exit(1);
    }
    return conn;
}

static int cmd_serve(void)
{
    if (!*config.database_url) {
        fprintf(stderr, "retentiond: DATABASE_URL is not set (or use --database-url)\n");
        return 2;
    }
    /* Block the stop signals in every thread we start; the main thread waits for them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    api_register_statements();
    if (db_pool_start(config.database_url, config.db_pool_size, config.db_queue_max, config.group_commit_max,
                      config.db_idle_check) != RD_OK)
        return 1;
    upkeep_start();
    sender_start();
    int port;
    if (http_start(&port) != RD_OK) {
        sender_stop();
        upkeep_stop();
        db_pool_stop();
        return 1;
    }
    rd_log(LOG_INFO, "msg=listening bind=%s port=%d http_threads=%d db_pool=%d", config.bind_address, port,
           config.http_threads, config.db_pool_size);
    int sig = 0;
    sigwait(&stop, &sig);
    rd_log(LOG_INFO, "msg=\"stopping: finishing in-flight requests\" signal=%d", sig);
    http_stop(config.request_timeout);
    sender_stop();
    upkeep_stop();
    db_pool_stop();
    report_snapshot_free_all();
    segments_cache_free_all();
    rd_log(LOG_INFO, "msg=stopped");
    return 0;
}

static int cmd_migrate(void)
{
    PGconn *conn = connect_or_die();
    migrate_result r;
    int rc = migrate_apply(conn, &r);
    PQfinish(conn);
    if (rc != 0)
        return 1;
    printf("migrations applied: %d (schema version %d); sql/ files applied: %d%s\n", r.migrations,
           rd_migrations[rd_migration_count - 1].version, r.functions, r.functions ? "" : " (current)");
    return 0;
}

static bool valid_tenant_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return false;
    return true;
}

static int cmd_tenant(cmdline *cl)
{
    if (cl->nwords >= 3 && strcmp(cl->words[1], "create") == 0) {
        const char *name = cl->words[2];
        const char *cur = cl->currency ? cl->currency : "USD";
        if (!valid_tenant_name(name)) {
            fprintf(stderr, "retentiond: tenant name must be 1-64 letters, digits, '-' or '_'\n");
            return 2;
        }
        if (strlen(cur) != 3 || !isupper((unsigned char)cur[0]) || !isupper((unsigned char)cur[1]) ||
            !isupper((unsigned char)cur[2])) {
            fprintf(stderr, "retentiond: --currency must be an ISO 4217 code such as USD or EUR\n");
            return 2;
        }
        const char *zone = cl->timezone ? cl->timezone : "UTC";
        PGconn *conn = connect_or_die();
        int64_t id = store_tenant_create(conn, name, cur, zone);
        PQfinish(conn);
        if (id == STORE_UNKNOWN_ZONE) {
            fprintf(stderr, "retentiond: --timezone: unknown time zone \"%s\"; use an IANA name such as Europe/Berlin\n",
                    zone);
            return 2;
        }
        if (id < 0)
            return 1;
        if (id == 0) {
            fprintf(stderr, "retentiond: tenant \"%s\" already exists\n", name);
            return 3;
        }
        printf("tenant %s created (currency %s, time zone %s)\n", name, cur, zone);
        return 0;
    }
    if (cl->nwords == 4 && strcmp(cl->words[1], "set-timezone") == 0) {
        const char *zone = cl->words[3];
        PGconn *conn = connect_or_die();
        rd_tenant t;
        int found = store_tenant_find(conn, cl->words[2], &t);
        int rc = found <= 0 ? found : store_tenant_set_timezone(conn, t.id, zone);
        PQfinish(conn);
        if (rc == STORE_UNKNOWN_ZONE) {
            fprintf(stderr, "retentiond: unknown time zone \"%s\"; use an IANA name such as Europe/Berlin\n", zone);
            return 2;
        }
        if (rc < 0)
            return 1;
        if (rc == 0) {
            fprintf(stderr, "retentiond: no tenant \"%s\"\n", cl->words[2]);
            return 3;
        }
        printf("tenant %s now reports in time zone %s\n", cl->words[2], zone);
        return 0;
    }
    if (cl->nwords == 5 && strcmp(cl->words[1], "set-secret") == 0) {
        const char *platform = cl->words[3];
        if (strcmp(platform, "shopify") != 0 && strcmp(platform, "woocommerce") != 0) {
            fprintf(stderr, "retentiond: platform must be shopify or woocommerce\n");
            return 2;
        }
        PGconn *conn = connect_or_die();
        rd_tenant t;
        int found = store_tenant_find(conn, cl->words[2], &t);
        int rc = found < 0 ? 1 : found == 0 ? 3 : store_secret_set(conn, t.id, platform, cl->words[4]) == RD_OK ? 0 : 1;
        PQfinish(conn);
        if (found == 0)
            fprintf(stderr, "retentiond: no tenant \"%s\"\n", cl->words[2]);
        else if (rc == 0)
            printf("%s webhook secret set for tenant %s\n", platform, cl->words[2]);
        return rc;
    }
    if (cl->nwords == 3 && strcmp(cl->words[1], "delete") == 0) {
        if (!cl->yes) {
            fprintf(stderr, "retentiond: tenant delete erases all of tenant \"%s\"'s data, keys and secrets for good; "
                            "add --yes to do it\n", cl->words[2]);
            return 2;
        }
        PGconn *conn = connect_or_die();
        rd_tenant t;
        int found = store_tenant_find(conn, cl->words[2], &t);
        int rc = found <= 0 ? found : store_tenant_delete(conn, t.id) == RD_OK ? 1 : -1;
        PQfinish(conn);
        if (rc < 0)
            return 1;
        if (rc == 0) {
            fprintf(stderr, "retentiond: no tenant \"%s\"\n", cl->words[2]);
            return 3;
        }
        printf("tenant %s deleted with all its data, keys and secrets\n", cl->words[2]);
        return 0;
    }
    fputs(command_help("tenant"), stderr);
    return 2;
}

static int cmd_key_list(const char *tenant)
{
    PGconn *conn = connect_or_die();
    rd_tenant t;
    int found = store_tenant_find(conn, tenant, &t);
    if (found <= 0) {
        PQfinish(conn);
        if (found == 0)
            fprintf(stderr, "retentiond: no tenant \"%s\"\n", tenant);
        return found == 0 ? 3 : 1;
    }
    int rc = store_key_list(conn, t.id, stdout) == RD_OK ? 0 : 1;
    PQfinish(conn);
    return rc;
}

static int cmd_key_revoke(const char *key_id)
{
    PGconn *conn = connect_or_die();
    int found = store_key_revoke(conn, key_id);
    PQfinish(conn);
    if (found < 0)
        return 1;
    if (found == 0) {
        fprintf(stderr, "retentiond: no active key \"%s\"\n", key_id);
        return 3;
    }
    printf("key %s revoked; running servers refuse it within %d seconds (their key cache)\n", key_id,
           AUTH_CACHE_TTL);
    return 0;
}

static int cmd_key(cmdline *cl)
{
    if (cl->nwords == 2 && strcmp(cl->words[1], "list") == 0 && cl->tenant)
        return cmd_key_list(cl->tenant);
    if (cl->nwords == 3 && strcmp(cl->words[1], "revoke") == 0)
        return cmd_key_revoke(cl->words[2]);
    if (cl->nwords != 2 || strcmp(cl->words[1], "create") != 0 || !cl->tenant || !cl->scope) {
        fputs(command_help("key"), stderr);
        return 2;
    }
    int scopes = auth_scopes_parse(cl->scope);
    if (scopes < 0) {
        fprintf(stderr, "retentiond: --scope takes ingest, read and/or admin, comma-separated\n");
        return 2;
    }
    PGconn *conn = connect_or_die();
    rd_tenant t;
    int found = store_tenant_find(conn, cl->tenant, &t);
    if (found <= 0) {
        PQfinish(conn);
        if (found == 0)
            fprintf(stderr, "retentiond: no tenant \"%s\"\n", cl->tenant);
        return found == 0 ? 3 : 1;
    }
    char key[81], key_id[AUTH_KEY_ID_LEN + 1];
    unsigned char hash[32];
    auth_key_generate(key, key_id, hash);
    int rc = store_key_create(conn, t.id, key_id, hash, scopes);
    PQfinish(conn);
    if (rc != RD_OK)
        return 1;
    printf("%s\n", key);
    return 0;
}

int main(int argc, char **argv)
{
    if (config_load_env() != RD_OK)
        return 2;
    cmdline cl;
    if (parse_args(argc, argv, &cl) != RD_OK)
        return 2;
    if (cl.nwords == 0) {
        usage(cl.help ? stdout : stderr);
        return cl.help ? 0 : 2;
    }
    const char *cmd = cl.words[0];
    if (cl.help) {
        const char *h = command_help(cmd);
        if (!h) {
            usage(stdout);
            return 0;
        }
        fputs(h, stdout);
        fputs("\n", stdout);
        config_print_help(stdout);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve();
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate();
    if (strcmp(cmd, "tenant") == 0)
        return cmd_tenant(&cl);
    if (strcmp(cmd, "key") == 0)
        return cmd_key(&cl);
    if (strcmp(cmd, "import") == 0) {
        if (cl.nwords != 2 || !cl.tenant) {
            fputs(command_help("import"), stderr);
            return 2;
        }
        api_register_statements();
        PGconn *conn = connect_or_die();
        int rc = cli_import(conn, cl.tenant, cl.words[1], cl.kind);
        PQfinish(conn);
        return rc;
    }
    if (strcmp(cmd, "demo") == 0) {
        if (cl.nwords != 1 || !cl.tenant) {
            fputs(command_help("demo"), stderr);
            return 2;
        }
        api_register_statements();
        PGconn *conn = connect_or_die();
        int rc = cli_demo(conn, cl.tenant);
        PQfinish(conn);
        return rc;
    }
    if (strcmp(cmd, "fit") == 0) {
        if (!cl.tenant) {
            fputs(command_help("fit"), stderr);
            return 2;
        }
        api_register_statements();
        PGconn *conn = connect_or_die();
        int rc = cli_fit(conn, cl.tenant, cl.as_of);
        PQfinish(conn);
        return rc;
    }
    if (strcmp(cmd, "config-table") == 0) { /* used to keep README's table in step */
        config_print_markdown(stdout);
        return 0;
    }
    fprintf(stderr, "retentiond: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
