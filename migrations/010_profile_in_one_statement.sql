-- 010_profile_in_one_statement.sql - GET /v1/customers/{id} in one round trip.
--
-- A profile took four statements, each a round trip: refresh the RFM quintile boundaries when
-- stale, the profile, the tenant's newest CLV model, the customer's purchase summary. This
-- function runs them in that order (so the profile sees boundaries the refresh just wrote) at
-- one instant, and returns one row: the profile (NULL when there is no such customer), the
-- instant used, the model's columns (NULL before the first fit) and the summary (NULL when the
-- customer has no qualifying order before that instant). Formats match the statements it
-- replaces: timestamps as to_json prints them for the model, as text for the instant used.
CREATE FUNCTION rd_customer_profile_page(p_tenant bigint, p_customer text, p_as_of timestamptz)
RETURNS TABLE (profile text, as_of text, fitted_at text, model_as_of text, sample_size int,
               repeat_size int, r float8, alpha float8, a float8, b float8, bgnbd_loglik float8,
               p float8, q float8, v float8, gg_loglik float8, fit_ms float8,
               x int, t_x int, "T" int, mbar float8, as_of_epoch float8)
LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := coalesce(p_as_of, now());
    doc text;
BEGIN
    PERFORM rd_rfm_ensure(p_tenant);
    doc := rd_customer_profile(p_tenant, p_customer, at)::text;
    RETURN QUERY
    SELECT doc, at::text, to_json(m.fitted_at)#>>'{}', to_json(m.as_of)#>>'{}', m.sample_size,
           m.repeat_size, m.r, m.alpha, m.a, m.b, m.bgnbd_loglik, m.p, m.q, m.v, m.gg_loglik,
           m.fit_ms, s.x, s.t_x, s."T", s.mbar, extract(epoch FROM at)::float8
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT * FROM clv_models cm WHERE cm.tenant_id = p_tenant
                       ORDER BY cm.fitted_at DESC LIMIT 1) m ON true
    LEFT JOIN LATERAL rd_clv_sample(p_tenant, at, p_customer) s ON doc IS NOT NULL;
END $$;
