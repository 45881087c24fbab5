-- 013_profile_cached_plans.sql - a profile without planning on every request.
--
-- rd_customer_profile and rd_rfm_scores were SQL functions with a FROM clause, which PostgreSQL
-- cannot inline: it plans their bodies afresh on every call. Planning was most of a profile's
-- database time (0.7 of 1.6 ms for the page on the 1 M shop). As PL/pgSQL functions their
-- statements are prepared once per connection; generic plans suit them, since every statement
-- reads by primary key. Bodies unchanged from 006.
--
-- rd_customer_profile_page read the customer's purchase summary through rd_clv_sample, whose
-- (customer IS NULL OR ...) filter needs a custom plan per call. The common case, an as_of after
-- the customer's last order, is now read from the row the profile just found; an as_of before
-- it (reproducing a past report) still goes through rd_clv_sample.

CREATE OR REPLACE FUNCTION rd_rfm_scores(p_tenant bigint, p_last timestamptz, p_count int, p_rev numeric, p_id text)
RETURNS json LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (SELECT json_build_object(
            'n', x.n, 'computed_at', x.computed_at,
            'r', 1 + (SELECT count(*) FROM unnest(x.r_last, x.r_id) b(v, i) WHERE (p_last, p_id) >= (b.v, b.i)),
            'f', 1 + (SELECT count(*) FROM unnest(x.f_count, x.f_id) b(v, i) WHERE (p_count, p_id) >= (b.v, b.i)),
            'm', 1 + (SELECT count(*) FROM unnest(x.m_revenue, x.m_id) b(v, i) WHERE (p_rev, p_id) >= (b.v, b.i)))
        FROM rfm_cutoffs x WHERE x.tenant_id = p_tenant);
END $$;

CREATE OR REPLACE FUNCTION rd_customer_profile(p_tenant bigint, p_id text, p_as_of timestamptz) RETURNS json
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN (SELECT json_build_object(
            'customer_id', c.customer_id, 'email', c.email, 'created_at', c.created_at,
            'channel', c.channel, 'referred_by', c.referred_by, 'attributes', c.attributes,
            'known', c.is_known,
            'stage', rd_stage(c.order_count, c.event_count > 0, c.last_advocacy_at, p_as_of, t.advocacy_window_days),
            'status', rd_status(c.first_order_at, c.last_order_at, c.order_count, p_as_of, t.activity_window_days,
                                t.at_risk_gap_factor, p.p_alive, t.at_risk_p_alive),
            'order_count', c.order_count, 'net_revenue', c.net_revenue, 'historic_clv', c.net_revenue,
            'first_order_at', c.first_order_at, 'last_order_at', c.last_order_at,
            'avg_days_between_orders', CASE WHEN c.order_count >= 2 THEN
                extract(epoch FROM c.last_order_at - c.first_order_at) / 86400 / (c.order_count - 1) END,
            'days_since_last_order', extract(epoch FROM p_as_of - c.last_order_at) / 86400,
            'event_count', c.event_count, 'first_engaged_at', c.first_engaged_at, 'last_engaged_at', c.last_engaged_at,
            'last_advocacy_at', c.last_advocacy_at, 'advocacy_kind', c.advocacy_kind,
            'settings', json_build_object('activity_window_days', t.activity_window_days,
                                          'advocacy_window_days', t.advocacy_window_days,
                                          'at_risk_p_alive', t.at_risk_p_alive,
                                          'at_risk_gap_factor', t.at_risk_gap_factor),
            'rfm_scores', CASE WHEN c.order_count > 0 THEN
                rd_rfm_scores(p_tenant, c.last_order_at, c.order_count, c.net_revenue, c.customer_id) END,
            'prediction', CASE WHEN p.customer_id IS NOT NULL THEN json_build_object(
                'fitted_at', p.fitted_at, 'p_alive', p.p_alive, 'expected_orders_90d', p.expected_orders,
                'predicted_clv_12m', p.predicted_clv) END)
        FROM customers c JOIN tenants t USING (tenant_id)
        LEFT JOIN customer_predictions p ON p.tenant_id = c.tenant_id AND p.customer_id = c.customer_id
        WHERE c.tenant_id = p_tenant AND c.customer_id = p_id);
END $$;

-- As in 010; the summary of a customer whose orders all precede as_of is computed here from
-- its row as rd_clv_sample computes it from the rollup. EXECUTE gives the past-as_of case the
-- custom plan rd_clv_sample's optional customer filter needs.
CREATE OR REPLACE FUNCTION rd_customer_profile_page(p_tenant bigint, p_customer text, p_as_of timestamptz)
RETURNS TABLE (profile text, as_of text, fitted_at text, model_as_of text, sample_size int,
               repeat_size int, r float8, alpha float8, a float8, b float8, bgnbd_loglik float8,
               p float8, q float8, v float8, gg_loglik float8, fit_ms float8,
               x int, t_x int, "T" int, mbar float8, as_of_epoch float8)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    at timestamptz := coalesce(p_as_of, now());
    doc text;
    cu customers%ROWTYPE;
    sx int;
    stx int;
    st int;
    sm float8;
BEGIN
    PERFORM rd_rfm_ensure(p_tenant);
    doc := rd_customer_profile(p_tenant, p_customer, at)::text;
    IF doc IS NOT NULL THEN
        SELECT * INTO cu FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id = p_customer;
        IF cu.order_count > 0 AND cu.last_order_at < at THEN
            sx := cu.order_days - 1;
            stx := rd_utc_day(cu.last_order_at) - rd_utc_day(cu.first_order_at);
            st := rd_utc_day(at - interval '1 microsecond') - rd_utc_day(cu.first_order_at);
            sm := coalesce(((cu.net_revenue - cu.first_day_value) / nullif(cu.order_days - 1, 0))::float8, 0);
        ELSIF cu.last_order_at >= at THEN
            EXECUTE 'SELECT s.x, s.t_x, s."T", s.mbar FROM rd_clv_sample($1, $2, $3) s'
                INTO sx, stx, st, sm USING p_tenant, at, p_customer;
        END IF;
    END IF;
    RETURN QUERY
    SELECT doc, at::text, to_json(m.fitted_at)#>>'{}', to_json(m.as_of)#>>'{}', m.sample_size,
           m.repeat_size, m.r, m.alpha, m.a, m.b, m.bgnbd_loglik, m.p, m.q, m.v, m.gg_loglik,
           m.fit_ms, sx, stx, st, sm, extract(epoch FROM at)::float8
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT * FROM clv_models cm WHERE cm.tenant_id = p_tenant
                       ORDER BY cm.fitted_at DESC LIMIT 1) m ON true;
END $$;
