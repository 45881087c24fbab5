-- 008_reports_single_pass.sql - the retention series and the cohort matrix without per-boundary
-- or per-cell rescans.
--
-- Retention.
-- 004 counted S, E and lost with separate range scans of orders per period boundary (and an
-- anti-join per customer for lost): O(boundaries x orders in a window), seconds on a 1 M-order
-- shop. Here every order is read once, from the orders_qualifying index, and mapped with
-- width_bucket onto the sorted period boundaries:
--  * an order at x makes its customer active at every boundary b with x < b <= x + W, which is
--    the contiguous run of boundary numbers width_bucket(x) + 1 .. width_bucket(x + W);
--  * it falls in period number width_bucket(x).
-- Per customer, those runs and periods are OR-ed into two bit masks; the customers are then
-- grouped by their masks and each period's counts are sums over the (few) distinct masks.
-- Boundary number j is bit j-1 of a bigint, so a report may span at most 60 periods; a longer
-- one (weeks over more than a year) uses 004's boundary-by-boundary function, renamed
-- rd_metrics_retention_scan. Both are checked against plain SQL by the generated-shop test.
ALTER FUNCTION rd_metrics_retention(bigint, timestamptz, timestamptz, int, text)
    RENAME TO rd_metrics_retention_scan;

CREATE FUNCTION rd_metrics_retention(p_tenant bigint, p_from timestamptz, p_to timestamptz,
                                     p_window int, p_unit text)
RETURNS json LANGUAGE plpgsql STABLE SET jit = off SET work_mem = '64MB' AS $$
DECLARE
    u interval := rd_unit_interval(p_unit);
    w interval := make_interval(days => p_window);
    starts timestamptz[];
    b timestamptz[];   -- b[1] the period before the first; b[k + 1] period k's start; b[np + 2] the end
    np int;
    result json;
BEGIN
    SELECT array_agg(gs ORDER BY gs) INTO starts
    FROM generate_series(date_trunc(p_unit, p_from), p_to - interval '1 microsecond', u) gs;
    np := coalesce(cardinality(starts), 0);
    IF np = 0 THEN
        RETURN '[]'::json;
    ELSIF np > 60 THEN
        RETURN rd_metrics_retention_scan(p_tenant, p_from, p_to, p_window, p_unit);
    END IF;
    b := (starts[1] - u) || starts || (starts[np] + u);

    WITH o AS (
        SELECT o.customer_id, width_bucket(o.placed_at, b) AS pn, width_bucket(o.placed_at + w, b) AS hi
        FROM orders o
        WHERE o.tenant_id = p_tenant AND o.qualifying
          AND o.placed_at >= least(b[1], b[2] - w) AND o.placed_at < b[np + 2]),
    per_customer AS (
        SELECT bit_or(CASE WHEN hi > pn THEN ((1::bigint << (hi - pn)) - 1) << pn ELSE 0 END) AS act,
               bit_or(CASE WHEN pn >= 1 THEN 1::bigint << (pn - 1) ELSE 0 END) AS ord
        FROM o GROUP BY customer_id),
    masks AS (SELECT act, ord, count(*) AS n FROM per_customer GROUP BY act, ord),
    firsts AS (
        SELECT width_bucket(c.first_order_at, b) - 1 AS k, count(*) AS n FROM customers c
        WHERE c.tenant_id = p_tenant AND c.first_order_at >= b[2] AND c.first_order_at < b[np + 2]
        GROUP BY 1),
    periods AS (
        -- period k: starts at boundary k + 1 (bit k of act), orders in it are bit k of ord
        SELECT k, b[k + 1] AS p_start, b[k + 2] AS p_end, coalesce(f.n, 0) AS n_new,
            (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.act >> k) & 1 = 1) AS s,
            (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.act >> (k + 1)) & 1 = 1) AS e,
            (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.act >> k) & 3 = 1) AS lost,
            (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.ord >> (k - 1)) & 3 = 3) AS n_returning,
            (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.ord >> (k - 1)) & 3 = 2) AS not_before,
            (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.ord >> (k - 1)) & 3 = 1) AS dormant
        FROM generate_series(1, np) k LEFT JOIN firsts f USING (k))
    SELECT json_agg(json_build_object(
        'period_start', p_start, 'period_end', p_end, 'S', s, 'E', e, 'N', n_new, 'lost', lost,
        'new', n_new, 'returning', n_returning, 'resurrecting', not_before - n_new,
        'dormant', dormant) ORDER BY k)
    INTO result FROM periods;
    RETURN result;
END $$;

-- Cohorts. 004 filled each cell of the matrix with four correlated subqueries over the
-- cohort's activity; here the activity is grouped once per (cohort, period) and the cumulative
-- columns are running sums over the grid (on_or_after: customers whose last active period is k
-- or later, summed from the right). The members' orders are one hash join with a range of the
-- orders_qualifying index rather than an index probe per member (the planner, misjudging the
-- member count, would choose the probes).
CREATE OR REPLACE FUNCTION rd_metrics_cohorts(p_tenant bigint, p_from timestamptz, p_to timestamptz,
                                              p_unit text)
RETURNS json LANGUAGE sql STABLE SET jit = off SET work_mem = '64MB' SET enable_nestloop = off AS $$
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
        FROM orders o JOIN coh USING (customer_id)
        -- a cohort member's orders are all on or after p_from: one range of orders_qualifying
        WHERE o.tenant_id = p_tenant AND o.qualifying AND o.placed_at >= p_from AND o.placed_at < p_to
        GROUP BY 1, 2, 3),
    cell AS (SELECT cohort, k, count(*) AS active, sum(rev) AS revenue FROM act GROUP BY 1, 2),
    last_k AS (
        SELECT cohort, maxk AS k, count(*) AS n
        FROM (SELECT cohort, customer_id, max(k) AS maxk FROM act GROUP BY 1, 2) x GROUP BY 1, 2),
    grid AS (
        SELECT size.cohort, size.n, k FROM size,
        generate_series(0, (SELECT count(*) FROM generate_series(size.cohort, p_to - interval '1 microsecond',
                                                                 rd_unit_interval(p_unit)))::int - 1) k),
    cells AS (
        SELECT g.cohort, g.n, g.k, coalesce(c.active, 0) AS active, coalesce(c.revenue, 0) AS revenue,
               sum(coalesce(c.revenue, 0)) OVER (PARTITION BY g.cohort ORDER BY g.k) AS cum_revenue,
               sum(coalesce(l.n, 0)) OVER (PARTITION BY g.cohort ORDER BY g.k DESC) AS on_or_after
        FROM grid g LEFT JOIN cell c USING (cohort, k) LEFT JOIN last_k l USING (cohort, k))
    SELECT coalesce(json_agg(json_build_object('cohort', cohort, 'size', n, 'cells', cells) ORDER BY cohort),
                    '[]'::json)
    FROM (SELECT cohort, n, json_agg(json_build_object(
                'period', k, 'active', active, 'share', active::float8 / n, 'revenue', revenue,
                'active_on_or_after', on_or_after, 'share_on_or_after', on_or_after::float8 / n,
                'cumulative_revenue_per_customer', cum_revenue / n) ORDER BY k) AS cells
          FROM cells GROUP BY cohort, n) x
$$;
