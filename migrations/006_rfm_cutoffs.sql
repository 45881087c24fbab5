-- 006_rfm_cutoffs.sql - RFM quintile boundaries per tenant, so that one profile's scores cost
-- a few comparisons instead of three rank counts over every customer (which took ~100 ms at
-- 100 k customers). The boundaries are the (value, customer_id) tuples where PostgreSQL's
-- ntile(5) starts buckets 2..5; a customer's score is 1 + the number of boundaries at or
-- below its own tuple, exactly what ntile would give. They are recomputed when older than
-- five minutes (rd_rfm_ensure, called before a profile is read), so scores may lag ingest by
-- at most that long; lists filtered by segment compute ntile directly and never lag.

CREATE TABLE rfm_cutoffs (
    tenant_id    bigint PRIMARY KEY,
    computed_at  timestamptz NOT NULL,
    n            bigint NOT NULL,
    r_last       timestamptz[] NOT NULL, r_id text[] NOT NULL,
    f_count      int[] NOT NULL,         f_id text[] NOT NULL,
    m_revenue    numeric[] NOT NULL,     m_id text[] NOT NULL
);

-- 0-based positions where ntile(5) over n rows starts buckets 2..5 (positions >= n: absent).
CREATE FUNCTION rd_ntile_starts(n bigint) RETURNS bigint[] LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(CASE WHEN b - 1 <= n % 5 THEN (b - 1) * (n / 5 + 1)
                          ELSE (n % 5) * (n / 5 + 1) + (b - 1 - n % 5) * (n / 5) END ORDER BY b)
    FROM generate_series(2, 5) b
$$;

CREATE FUNCTION rd_rfm_ensure(p_tenant bigint, p_max_age interval DEFAULT interval '5 minutes')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cnt bigint;
    starts bigint[];
BEGIN
    IF EXISTS (SELECT 1 FROM rfm_cutoffs WHERE tenant_id = p_tenant AND computed_at > now() - p_max_age) THEN
        RETURN;
    END IF;
    SELECT count(*) INTO cnt FROM customers WHERE tenant_id = p_tenant AND order_count > 0;
    starts := rd_ntile_starts(cnt);
    INSERT INTO rfm_cutoffs AS x (tenant_id, computed_at, n, r_last, r_id, f_count, f_id, m_revenue, m_id)
    SELECT p_tenant, now(), cnt, r.v, r.i, f.v, f.i, m.v, m.i
    FROM (SELECT coalesce(array_agg(last_order_at ORDER BY pos), '{}') AS v, coalesce(array_agg(customer_id ORDER BY pos), '{}') AS i
          FROM (SELECT last_order_at, customer_id, row_number() OVER (ORDER BY last_order_at, customer_id) - 1 AS pos
                FROM customers WHERE tenant_id = p_tenant AND order_count > 0) s WHERE pos = ANY(starts)) r,
         (SELECT coalesce(array_agg(order_count ORDER BY pos), '{}') AS v, coalesce(array_agg(customer_id ORDER BY pos), '{}') AS i
          FROM (SELECT order_count, customer_id, row_number() OVER (ORDER BY order_count, customer_id) - 1 AS pos
                FROM customers WHERE tenant_id = p_tenant AND order_count > 0) s WHERE pos = ANY(starts)) f,
         (SELECT coalesce(array_agg(net_revenue ORDER BY pos), '{}') AS v, coalesce(array_agg(customer_id ORDER BY pos), '{}') AS i
          FROM (SELECT net_revenue, customer_id, row_number() OVER (ORDER BY net_revenue, customer_id) - 1 AS pos
                FROM customers WHERE tenant_id = p_tenant AND order_count > 0) s WHERE pos = ANY(starts)) m
    ON CONFLICT (tenant_id) DO UPDATE SET computed_at = EXCLUDED.computed_at, n = EXCLUDED.n,
        r_last = EXCLUDED.r_last, r_id = EXCLUDED.r_id, f_count = EXCLUDED.f_count, f_id = EXCLUDED.f_id,
        m_revenue = EXCLUDED.m_revenue, m_id = EXCLUDED.m_id;
END $$;

-- The profile now reads scores from the cutoffs (same output shape: rfm_ranks -> rfm_scores).
CREATE OR REPLACE FUNCTION rd_rfm_scores(p_tenant bigint, p_last timestamptz, p_count int, p_rev numeric, p_id text)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'n', x.n, 'computed_at', x.computed_at,
        'r', 1 + (SELECT count(*) FROM unnest(x.r_last, x.r_id) b(v, i) WHERE (p_last, p_id) >= (b.v, b.i)),
        'f', 1 + (SELECT count(*) FROM unnest(x.f_count, x.f_id) b(v, i) WHERE (p_count, p_id) >= (b.v, b.i)),
        'm', 1 + (SELECT count(*) FROM unnest(x.m_revenue, x.m_id) b(v, i) WHERE (p_rev, p_id) >= (b.v, b.i)))
    FROM rfm_cutoffs x WHERE x.tenant_id = p_tenant
$$;

CREATE OR REPLACE FUNCTION rd_customer_profile(p_tenant bigint, p_id text, p_as_of timestamptz) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
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
    WHERE c.tenant_id = p_tenant AND c.customer_id = p_id
$$;

