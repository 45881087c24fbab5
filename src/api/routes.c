/* routes.c - the route table: method + path pattern → handler + required scope.
 * The OpenAPI document and the tenant-isolation test both walk this table. */
#include "retentiond/api/api.h"

const http_route http_routes[] = {
    {"GET", "/healthz", SCOPE_PUBLIC, api_healthz, NULL, false},
    {"GET", "/readyz", SCOPE_PUBLIC, api_readyz, NULL, false},
};

const int http_route_count = sizeof http_routes / sizeof http_routes[0];

void api_register_statements(void)
{
}
