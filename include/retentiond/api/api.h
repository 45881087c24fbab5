/* api.h - request handlers, one file per resource under src/api/. Each handler turns a
 * request into domain calls and a database job, and the job's result into a reply. */
#ifndef RETENTIOND_API_API_H
#define RETENTIOND_API_API_H

#include "retentiond/http/server.h"

/* Registers every prepared statement the handlers use (call before db_pool_start). */
void api_register_statements(void);

/* ops.c */
int api_healthz(http_req *rq);
int api_readyz(http_req *rq);

#endif
