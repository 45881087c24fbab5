/* webhooks.c - POST /v1/webhooks/shopify/{tenant} and /v1/webhooks/woocommerce/{tenant}.
 * (being written) */
#include "retentiond/api/api.h"

int api_webhook_shopify(http_req *rq)
{
    http_reply_problem(rq, 501, "Not Implemented", "webhooks are not available yet", NULL);
    return HTTP_REPLIED;
}

int api_webhook_woocommerce(http_req *rq)
{
    return api_webhook_shopify(rq);
}
