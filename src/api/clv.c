/* clv.c - predictive CLV endpoints and the profile's predictions. (being written) */
#include "retentiond/api/api.h"

int api_clv_enrich_profile(PGconn *conn, int64_t tenant_id, json_t *profile, const char *as_of, int days,
                           int horizon_months)
{
    (void)conn;
    (void)tenant_id;
    (void)as_of;
    (void)days;
    (void)horizon_months;
    json_object_set_new(profile, "model", json_string("not fitted"));
    return RD_OK;
}
