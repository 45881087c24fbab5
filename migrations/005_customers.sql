-- 005_customers.sql - per-customer reads: the profile with the inputs behind every figure,
-- RFM ranks, status, and keyset-paginated lists for campaigns.

-- Rank indexes: RFM quintiles are positions in these orders among customers with orders.
CREATE INDEX customers_rfm_r ON customers (tenant_id, last_order_at, customer_id) WHERE order_count > 0;
CREATE INDEX customers_rfm_f ON customers (tenant_id, order_count, customer_id) WHERE order_count > 0;
CREATE INDEX customers_rfm_m ON customers (tenant_id, net_revenue, customer_id) WHERE order_count > 0;

-- Per-customer predictions written by each CLV fit (read by lists for filtering and sorting).
CREATE TABLE customer_predictions (
    tenant_id        bigint NOT NULL,
    customer_id      text NOT NULL,
    fitted_at        timestamptz NOT NULL,
    p_alive          double precision NOT NULL,
    expected_orders  double precision NOT NULL,   -- next 90 days
    predicted_clv    double precision NOT NULL,   -- next 12 months, discounted
    PRIMARY KEY (tenant_id, customer_id)
);
CREATE INDEX customer_predictions_p_alive ON customer_predictions (tenant_id, p_alive, customer_id);
CREATE INDEX customer_predictions_clv ON customer_predictions (tenant_id, predicted_clv, customer_id);

-- Status (SPEC §4): lapsed = not active at as_of (no qualifying order in the window);
-- at_risk = active but P(alive) under the tenant's threshold, or no order for more than
-- gap_factor x the customer's usual gap; active otherwise. NULL for customers without orders.
CREATE FUNCTION rd_status(p_first timestamptz, p_last timestamptz, p_n int, p_as_of timestamptz,
                          p_window int, p_gap_factor float8, p_alive float8, p_alive_min float8)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_n = 0 OR p_last IS NULL THEN NULL
        WHEN p_last < p_as_of - make_interval(days => p_window) THEN 'lapsed'
        WHEN p_alive IS NOT NULL AND p_alive < p_alive_min THEN 'at_risk'
        WHEN p_n >= 2 AND extract(epoch FROM p_as_of - p_last)
                          > p_gap_factor * extract(epoch FROM p_last - p_first) / (p_n - 1) THEN 'at_risk'
        ELSE 'active' END
$$;

CREATE FUNCTION rd_customer_profile(p_tenant bigint, p_id text, p_as_of timestamptz) RETURNS json
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
        'rfm_ranks', CASE WHEN c.order_count > 0 THEN json_build_object(
            'n', (SELECT count(*) FROM customers x WHERE x.tenant_id = p_tenant AND x.order_count > 0),
            'r', (SELECT count(*) FROM customers x WHERE x.tenant_id = p_tenant AND x.order_count > 0
                  AND (x.last_order_at, x.customer_id) < (c.last_order_at, c.customer_id)),
            'f', (SELECT count(*) FROM customers x WHERE x.tenant_id = p_tenant AND x.order_count > 0
                  AND (x.order_count, x.customer_id) < (c.order_count, c.customer_id)),
            'm', (SELECT count(*) FROM customers x WHERE x.tenant_id = p_tenant AND x.order_count > 0
                  AND (x.net_revenue, x.customer_id) < (c.net_revenue, c.customer_id))) END,
        'prediction', CASE WHEN p.customer_id IS NOT NULL THEN json_build_object(
            'fitted_at', p.fitted_at, 'p_alive', p.p_alive, 'expected_orders_90d', p.expected_orders,
            'predicted_clv_12m', p.predicted_clv) END)
    FROM customers c JOIN tenants t USING (tenant_id)
    LEFT JOIN customer_predictions p ON p.tenant_id = c.tenant_id AND p.customer_id = c.customer_id
    WHERE c.tenant_id = p_tenant AND c.customer_id = p_id
$$;

-- Lists for campaigns. p_sort is one of the whitelisted keys below (checked by the service
-- too); keyset pagination continues strictly after (p_after_value, p_after_id) in the sort
-- order, so pages stay stable while new rows arrive. RFM is computed only when a segment
-- filter asks for it.
CREATE FUNCTION rd_customer_list(p_tenant bigint, p_stage text, p_status text, p_segment text,
                                 p_min_p_alive float8, p_sort text, p_after_value text, p_after_id text,
                                 p_limit int, p_as_of timestamptz)
RETURNS json LANGUAGE plpgsql STABLE AS $$
DECLARE
    sort_expr text;
    dir text;
    cmp text;
    result json;
BEGIN
    sort_expr := CASE p_sort
        WHEN 'net_revenue' THEN 'c.net_revenue::float8'
        WHEN 'order_count' THEN 'c.order_count::float8'
        WHEN 'last_order_at' THEN 'extract(epoch FROM c.last_order_at)'
        WHEN 'p_alive' THEN 'p.p_alive'
        WHEN 'predicted_clv' THEN 'p.predicted_clv'
        ELSE NULL END;
    dir := CASE WHEN sort_expr IS NULL THEN 'ASC' ELSE 'DESC' END;
    IF sort_expr IS NULL THEN
        sort_expr := '0::float8';
    END IF;
    cmp := CASE WHEN dir = 'DESC'
        THEN format('(coalesce(%1$s, -1e308) < $7::float8 OR (coalesce(%1$s, -1e308) = $7::float8 AND c.customer_id > $8))', sort_expr)
        ELSE '(c.customer_id > $8)' END;
    EXECUTE format($q$
        WITH base AS (
            SELECT c.*, t.advocacy_window_days, t.activity_window_days, t.at_risk_gap_factor, t.at_risk_p_alive,
                   p.p_alive, p.expected_orders, p.predicted_clv,
                   coalesce(%1$s, -1e308) AS sort_value
            FROM customers c JOIN tenants t USING (tenant_id)
            LEFT JOIN customer_predictions p ON p.tenant_id = c.tenant_id AND p.customer_id = c.customer_id
            WHERE c.tenant_id = $1
              AND ($6::float8 IS NULL OR p.p_alive >= $6)
              AND ($8 IS NULL OR %2$s)),
        rfm AS (
            SELECT customer_id,
                   ntile(5) OVER (ORDER BY last_order_at, customer_id) AS r,
                   ntile(5) OVER (ORDER BY order_count, customer_id) AS f,
                   ntile(5) OVER (ORDER BY net_revenue, customer_id) AS m
            FROM customers WHERE tenant_id = $1 AND order_count > 0 AND $4 IS NOT NULL),
        rows AS (
            SELECT b.*, rfm.r, rfm.f, rfm.m,
                   rd_stage(b.order_count, b.event_count > 0, b.last_advocacy_at, $10, b.advocacy_window_days) AS stage_now,
                   rd_status(b.first_order_at, b.last_order_at, b.order_count, $10, b.activity_window_days,
                             b.at_risk_gap_factor, b.p_alive, b.at_risk_p_alive) AS status_now
            FROM base b LEFT JOIN rfm USING (customer_id))
        SELECT coalesce(json_agg(json_build_object(
                   'customer_id', customer_id, 'email', email, 'stage', stage_now, 'status', status_now,
                   'order_count', order_count, 'net_revenue', net_revenue, 'last_order_at', last_order_at,
                   'rfm', CASE WHEN r IS NOT NULL THEN json_build_object('r', r, 'f', f, 'm', m) END,
                   'p_alive', p_alive, 'expected_orders', expected_orders, 'predicted_clv', predicted_clv,
                   'sort_value', sort_value) ORDER BY sort_value %3$s, customer_id), '[]'::json)
        FROM (SELECT * FROM rows
              WHERE ($2 IS NULL OR stage_now = $2) AND ($3 IS NULL OR status_now = $3)
                AND ($4 IS NULL OR rd_rfm_segment(r, f) = $4)
              ORDER BY sort_value %3$s, customer_id LIMIT $9) page
    $q$, sort_expr, cmp, dir)
    INTO result
    USING p_tenant, p_stage, p_status, p_segment, p_sort, p_min_p_alive, p_after_value, p_after_id, p_limit, p_as_of;
    RETURN result;
END $$;

-- The R x F segment grid; the same table as src/domain/metrics.c (metrics_rfm_segment), which
-- the unit tests check, and which the profile uses.
CREATE FUNCTION rd_rfm_segment(r int, f int) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN r IS NULL THEN 'prospect'
        WHEN r = 5 AND f >= 4 THEN 'champions'
        WHEN r IN (3, 4) AND f >= 4 THEN 'loyal'
        WHEN r >= 4 AND f IN (2, 3) THEN 'potential_loyalist'
        WHEN r = 5 AND f = 1 THEN 'new'
        WHEN r = 4 AND f = 1 THEN 'promising'
        WHEN r = 3 AND f = 3 THEN 'need_attention'
        WHEN r = 3 AND f <= 2 THEN 'about_to_sleep'
        WHEN r <= 2 AND f IN (3, 4) THEN 'at_risk'
        WHEN r <= 2 AND f = 5 THEN 'cannot_lose_them'
        ELSE 'hibernating' END
$$;
