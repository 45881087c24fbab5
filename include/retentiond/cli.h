/* cli.h - the sub-commands that do real work outside the server (import, fit). Each returns
 * the process exit code: 0 success, 1 failure, 2 usage error, 3 not found. */
#ifndef RETENTIOND_CLI_H
#define RETENTIOND_CLI_H

#include <libpq-fe.h>

int cli_import(PGconn *conn, const char *tenant, const char *path, const char *kind);
int cli_fit(PGconn *conn, const char *tenant, const char *as_of);

#endif
