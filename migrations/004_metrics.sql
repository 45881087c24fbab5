-- 004_metrics.sql - read-side functions (SPEC §4). Each returns one json document so that a
-- report is one round trip; the service adds the ratios (src/domain/metrics.c).
-- p_unit is 'week', 'month' or 'quarter'; p_window is the activity window in days.

-- Customers active at t: a qualifying order in [t - window, t). Index-only on orders_qualifying.
CREATE FUNCTION rd_active_at(p_tenant bigint, p_t timestamptz, p_window int) RETURNS TABLE (customer_id text)
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT o.customer_id FROM orders o
    WHERE o.tenant_id = p_tenant AND o.qualifying
      AND o.placed_at >= p_t - make_interval(days => p_window) AND o.placed_at < p_t
$$;

CREATE FUNCTION rd_unit_interval(p_unit text) RETURNS interval LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_unit WHEN 'week' THEN interval '1 week' WHEN 'quarter' THEN interval '3 months'
                       ELSE interval '1 month' END
$$;

CREATE FUNCTION rd_metrics_summary(p_tenant bigint, p_from timestamptz, p_to timestamptz, p_window int)
RETURNS json LANGUAGE sql STABLE AS $$
    WITH s AS (SELECT customer_id FROM rd_active_at(p_tenant, p_from, p_window)),
    e AS (SELECT customer_id FROM rd_active_at(p_tenant, p_to, p_window)),
    p AS (SELECT o.customer_id, count(*) AS n, sum(o.net_value) AS rev FROM orders o
          WHERE o.tenant_id = p_tenant AND o.qualifying AND o.placed_at >= p_from AND o.placed_at < p_to
          GROUP BY o.customer_id),
    pc AS (SELECT p.*, c.first_order_at < p_from AS is_returning FROM p
           JOIN customers c ON c.tenant_id = p_tenant AND c.customer_id = p.customer_id),
    ranked AS (SELECT rev, row_number() OVER (ORDER BY rev DESC) AS rn, count(*) OVER () AS total FROM p),
    sp AS (SELECT kind, sum(amount) AS amount FROM spend
           WHERE tenant_id = p_tenant AND period_start >= p_from::date AND period_start < p_to::date
           GROUP BY kind)
    SELECT json_build_object(
        'customers', (SELECT count(*) FROM customers c WHERE c.tenant_id = p_tenant
                      AND coalesce(c.created_at, c.first_order_at, c.first_engaged_at, c.inserted_at) < p_to),
        'S', (SELECT count(*) FROM s),
        'E', (SELECT count(*) FROM e),
        'N', (SELECT count(*) FROM customers c WHERE c.tenant_id = p_tenant
              AND c.first_order_at >= p_from AND c.first_order_at < p_to),
        'lost', (SELECT count(*) FROM s WHERE NOT EXISTS (SELECT 1 FROM e WHERE e.customer_id = s.customer_id)),
        'retained', (SELECT count(*) FROM s WHERE EXISTS (SELECT 1 FROM e WHERE e.customer_id = s.customer_id)),
        'reactivated', (SELECT count(*) FROM pc WHERE is_returning
                        AND NOT EXISTS (SELECT 1 FROM s WHERE s.customer_id = pc.customer_id)),
        'ordering', (SELECT count(*) FROM p),
        'repeat_ordering', (SELECT count(*) FROM p WHERE n >= 2),
        'returning', (SELECT count(*) FROM pc WHERE is_returning),
        'orders', (SELECT coalesce(sum(n), 0) FROM p),
        'revenue', (SELECT coalesce(sum(rev), 0) FROM p),
        'returning_revenue', (SELECT coalesce(sum(rev), 0) FROM pc WHERE is_returning),
        'new_revenue', (SELECT coalesce(sum(rev), 0) FROM pc WHERE NOT is_returning),
        'top20_revenue', (SELECT coalesce(sum(rev), 0) FROM ranked WHERE rn <= ceil(total * 0.2)),
        'acquisition_spend', (SELECT amount FROM sp WHERE kind = 'acquisition'),
        'retention_spend', (SELECT amount FROM sp WHERE kind = 'retention'))
$$;

CREATE FUNCTION rd_metrics_retention(p_tenant bigint, p_from timestamptz, p_to timestamptz, p_window int,
                                     p_unit text)
RETURNS json LANGUAGE sql STABLE AS $$
    WITH b AS (
        SELECT gs AS p_start, gs + rd_unit_interval(p_unit) AS p_end
        FROM generate_series(date_trunc(p_unit, p_from), p_to - interval '1 microsecond',
                             rd_unit_interval(p_unit)) gs),
    act AS (
        SELECT DISTINCT o.customer_id, date_trunc(p_unit, o.placed_at) AS p FROM orders o
        WHERE o.tenant_id = p_tenant AND o.qualifying
          AND o.placed_at >= date_trunc(p_unit, p_from) - rd_unit_interval(p_unit)
          AND o.placed_at < (SELECT max(p_end) FROM b)),
    fp AS (
        SELECT c.customer_id, date_trunc(p_unit, c.first_order_at) AS fp FROM customers c
        WHERE c.tenant_id = p_tenant AND c.first_order_at IS NOT NULL),
    -- lifecycle per period by hash joins of the activity set with itself shifted one period
    cur AS (
        SELECT a.p, count(*) FILTER (WHERE fp.fp = a.p) AS new,
               count(*) FILTER (WHERE prev.customer_id IS NOT NULL) AS n_returning,
               count(*) FILTER (WHERE prev.customer_id IS NULL AND fp.fp < a.p) AS resurrecting
        FROM act a JOIN fp USING (customer_id)
        LEFT JOIN act prev ON prev.customer_id = a.customer_id AND prev.p = a.p - rd_unit_interval(p_unit)
        GROUP BY a.p),
    dorm AS (
        SELECT a.p + rd_unit_interval(p_unit) AS p, count(*) AS dormant
        FROM act a LEFT JOIN act nxt ON nxt.customer_id = a.customer_id AND nxt.p = a.p + rd_unit_interval(p_unit)
        WHERE nxt.customer_id IS NULL
        GROUP BY 1),
    rows AS (
        SELECT b.p_start, b.p_end,
            (SELECT count(*) FROM rd_active_at(p_tenant, b.p_start, p_window)) AS s,
            (SELECT count(*) FROM rd_active_at(p_tenant, b.p_end, p_window)) AS e,
            (SELECT count(*) FROM customers c WHERE c.tenant_id = p_tenant
               AND c.first_order_at >= b.p_start AND c.first_order_at < b.p_end) AS n,
            (SELECT count(*) FROM rd_active_at(p_tenant, b.p_start, p_window) s
               WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = p_tenant
                   AND o.customer_id = s.customer_id AND o.qualifying
                   AND o.placed_at >= b.p_end - make_interval(days => p_window) AND o.placed_at < b.p_end)) AS lost,
            coalesce(cur.new, 0) AS new, coalesce(cur.n_returning, 0) AS n_returning,
            coalesce(cur.resurrecting, 0) AS resurrecting, coalesce(dorm.dormant, 0) AS dormant
        FROM b LEFT JOIN cur ON cur.p = b.p_start LEFT JOIN dorm ON dorm.p = b.p_start)
    SELECT coalesce(json_agg(json_build_object(
        'period_start', p_start, 'period_end', p_end, 'S', s, 'E', e, 'N', n, 'lost', lost,
        'new', new, 'returning', n_returning, 'resurrecting', resurrecting, 'dormant', dormant)
        ORDER BY p_start), '[]'::json)
    FROM rows
$$;

CREATE FUNCTION rd_metrics_cohorts(p_tenant bigint, p_from timestamptz, p_to timestamptz, p_unit text)
RETURNS json LANGUAGE sql STABLE AS $$
    WITH coh AS (
        SELECT c.customer_id, date_trunc(p_unit, c.first_order_at) AS cohort FROM customers c
        WHERE c.tenant_id = p_tenant AND c.first_order_at >= p_from AND c.first_order_at < p_to),
    size AS (SELECT cohort, count(*) AS n FROM coh GROUP BY cohort),
    act AS (
        SELECT coh.cohort, coh.customer_id,
               CASE WHEN p_unit = 'week'
                    THEN floor(extract(epoch FROM date_trunc('week', o.placed_at) - coh.cohort) / 604800)::int
                    ELSE (((extract(year FROM o.placed_at) - extract(year FROM coh.cohort)) * 12
                          + extract(month FROM o.placed_at) - extract(month FROM coh.cohort))::int)
                         / CASE WHEN p_unit = 'quarter' THEN 3 ELSE 1 END END AS k,
               sum(o.net_value) AS rev
        FROM coh JOIN orders o ON o.tenant_id = p_tenant AND o.customer_id = coh.customer_id
        WHERE o.qualifying AND o.placed_at < p_to
        GROUP BY 1, 2, 3),
    last_k AS (SELECT cohort, customer_id, max(k) AS maxk FROM act GROUP BY 1, 2),
    grid AS (
        SELECT size.cohort, size.n, k FROM size,
        generate_series(0, (SELECT count(*) FROM generate_series(size.cohort, p_to - interval '1 microsecond',
                                                                 rd_unit_interval(p_unit)))::int - 1) k),
    cells AS (
        SELECT g.cohort, g.n, g.k,
               (SELECT count(*) FROM act a WHERE a.cohort = g.cohort AND a.k = g.k) AS active,
               (SELECT coalesce(sum(rev), 0) FROM act a WHERE a.cohort = g.cohort AND a.k = g.k) AS revenue,
               (SELECT coalesce(sum(rev), 0) FROM act a WHERE a.cohort = g.cohort AND a.k <= g.k) AS cum_revenue,
               (SELECT count(*) FROM last_k l WHERE l.cohort = g.cohort AND l.maxk >= g.k) AS on_or_after
        FROM grid g)
    SELECT coalesce(json_agg(json_build_object('cohort', cohort, 'size', n, 'cells', cells) ORDER BY cohort),
                    '[]'::json)
    FROM (SELECT cohort, n, json_agg(json_build_object(
                'period', k, 'active', active, 'share', active::float8 / n, 'revenue', revenue,
                'active_on_or_after', on_or_after, 'share_on_or_after', on_or_after::float8 / n,
                'cumulative_revenue_per_customer', cum_revenue / n) ORDER BY k) AS cells
          FROM cells GROUP BY cohort, n) x
$$;

CREATE FUNCTION rd_metrics_ladder(p_tenant bigint, p_from timestamptz, p_to timestamptz)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'stages', (SELECT coalesce(json_object_agg(st, n), '{}'::json) FROM (
            SELECT rd_stage(c.order_count, c.event_count > 0, c.last_advocacy_at, least(p_to, now()),
                            t.advocacy_window_days) AS st, count(*) AS n
            FROM customers c JOIN tenants t USING (tenant_id)
            WHERE c.tenant_id = p_tenant GROUP BY 1) x),
        'transitions', (SELECT coalesce(json_agg(json_build_object('from', from_stage, 'to', to_stage,
                                                                   'count', n) ORDER BY n DESC, from_stage, to_stage),
                                        '[]'::json) FROM (
            SELECT from_stage, to_stage, count(*) AS n FROM stage_history
            WHERE tenant_id = p_tenant AND changed_at >= p_from AND changed_at < p_to GROUP BY 1, 2) y))
$$;
