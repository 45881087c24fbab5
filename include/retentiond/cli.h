/* cli.h - the sub-commands that do real work outside the server (import, fit, demo). Each
 * returns the process exit code: 0 success, 1 failure, 2 usage error, 3 not found. */
#ifndef RETENTIOND_CLI_H
#define RETENTIOND_CLI_H

#include "retentiond/store/tenants.h"

#include <libpq-fe.h>
#include <stddef.h>

/* Finds tenant `name` into *t: 0, or the exit code after saying why (3 no such tenant, 1 the
 * database failed). */
int cli_tenant(PGconn *conn, const char *name, rd_tenant *t);

int cli_import(PGconn *conn, const char *tenant, const char *path, const char *kind);
/* Loads NDJSON held in memory into t, as import loads a file. */
int cli_import_text(PGconn *conn, const rd_tenant *t, const char *ndjson, size_t len);
int cli_fit(PGconn *conn, const char *tenant, const char *as_of);

/* demo.c: loads the sample shop into an empty tenant and fits its CLV model. */
int cli_demo(PGconn *conn, const char *tenant);

#endif
