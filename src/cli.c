/* cli.c - the import and fit sub-commands, and serve's background tasks. */
#include "retentiond/cli.h"

#include <stdio.h>

int cli_import(PGconn *conn, const char *tenant, const char *path, const char *kind)
{
    (void)conn; (void)tenant; (void)path; (void)kind;
    fprintf(stderr, "retentiond: import is not available yet\n");
    return 1;
}

int cli_fit(PGconn *conn, const char *tenant, const char *as_of)
{
    (void)conn; (void)tenant; (void)as_of;
    fprintf(stderr, "retentiond: fit is not available yet\n");
    return 1;
}

void api_start_background(void) {}
void api_stop_background(void) {}
