"""The summary, the retention series and the cohort matrix as set-based PostgreSQL statements:
the PostgreSQL side of the report read figures in bench.py ("PostgreSQL doing the same work").

The service computes these reports in C (src/domain/reports.c) over its report snapshot or the
tenant's streamed rows, and no longer has SQL functions for them; these statements are what
the SQL functions it had ran (one pass over the orders_qualifying index with a group-by per
customer; the series with one bit mask per customer, so at most 60 periods), kept here as the
yardstick only, with the settings those functions ran with. Each returns the report's document
as one JSON text, as they did.
Parameters are literals: tid a tenant id, frm/to timestamps, window days, unit week|month|quarter.
"""


def _args(tid, frm, to):
    return f"{int(tid)}::bigint", f"'{frm}'::timestamptz", f"'{to}'::timestamptz"


def summary(tid, frm, to, window):
    t, f, e = _args(tid, frm, to)
    w = f"make_interval(days => {int(window)})"
    return f"""WITH s AS (SELECT DISTINCT customer_id FROM orders WHERE tenant_id = {t} AND qualifying
                AND placed_at >= {f} - {w} AND placed_at < {f}),
e AS (SELECT DISTINCT customer_id FROM orders WHERE tenant_id = {t} AND qualifying
      AND placed_at >= {e} - {w} AND placed_at < {e}),
p AS (SELECT customer_id, count(*) AS n, sum(net_value) AS rev FROM orders
      WHERE tenant_id = {t} AND qualifying AND placed_at >= {f} AND placed_at < {e} GROUP BY customer_id),
pc AS (SELECT p.*, c.first_order_at < {f} AS is_returning FROM p
       JOIN customers c ON c.tenant_id = {t} AND c.customer_id = p.customer_id),
ranked AS (SELECT rev, row_number() OVER (ORDER BY rev DESC) AS rn, count(*) OVER () AS total FROM p)
SELECT json_build_object(
    'customers', (SELECT count(*) FROM customers c WHERE c.tenant_id = {t}
                  AND coalesce(c.created_at, c.first_order_at, c.first_engaged_at, c.inserted_at) < {e}),
    'S', (SELECT count(*) FROM s), 'E', (SELECT count(*) FROM e),
    'N', (SELECT count(*) FROM customers c WHERE c.tenant_id = {t} AND c.first_order_at >= {f}
          AND c.first_order_at < {e}),
    'lost', (SELECT count(*) FROM s WHERE NOT EXISTS (SELECT 1 FROM e WHERE e.customer_id = s.customer_id)),
    'retained', (SELECT count(*) FROM s WHERE EXISTS (SELECT 1 FROM e WHERE e.customer_id = s.customer_id)),
    'reactivated', (SELECT count(*) FROM pc WHERE is_returning
                    AND NOT EXISTS (SELECT 1 FROM s WHERE s.customer_id = pc.customer_id)),
    'ordering', (SELECT count(*) FROM p), 'repeat_ordering', (SELECT count(*) FROM p WHERE n >= 2),
    'returning', (SELECT count(*) FROM pc WHERE is_returning), 'orders', (SELECT coalesce(sum(n), 0) FROM p),
    'revenue', (SELECT coalesce(sum(rev), 0) FROM p),
    'returning_revenue', (SELECT coalesce(sum(rev), 0) FROM pc WHERE is_returning),
    'new_revenue', (SELECT coalesce(sum(rev), 0) FROM pc WHERE NOT is_returning),
    'top20_revenue', (SELECT coalesce(sum(rev), 0) FROM ranked WHERE rn <= ceil(total * 0.2)))::text;
"""


def retention(tid, frm, to, window, unit):
    t, f, e = _args(tid, frm, to)
    u = "interval '3 months'" if unit == "quarter" else f"interval '1 {unit}'"
    w = f"make_interval(days => {int(window)})"
    return f"""SET jit = off; SET work_mem = '64MB';
WITH st AS (SELECT array_agg(gs ORDER BY gs) AS s
            FROM generate_series(date_trunc('{unit}', {f}), {e} - interval '1 microsecond', {u}) gs),
bb AS (SELECT (s[1] - {u}) || s || (s[cardinality(s)] + {u}) AS b, cardinality(s) AS np FROM st),
o AS (SELECT o.customer_id, width_bucket(o.placed_at, bb.b) AS pn, width_bucket(o.placed_at + {w}, bb.b) AS hi
      FROM orders o, bb WHERE o.tenant_id = {t} AND o.qualifying
        AND o.placed_at >= least(bb.b[1], bb.b[2] - {w}) AND o.placed_at < bb.b[bb.np + 2]),
per_customer AS (
    SELECT bit_or(CASE WHEN hi > pn THEN ((1::bigint << (hi - pn)) - 1) << pn ELSE 0 END) AS act,
           bit_or(CASE WHEN pn >= 1 THEN 1::bigint << (pn - 1) ELSE 0 END) AS ord
    FROM o GROUP BY customer_id),
masks AS (SELECT act, ord, count(*) AS n FROM per_customer GROUP BY act, ord),
firsts AS (SELECT width_bucket(c.first_order_at, bb.b) - 1 AS k, count(*) AS n FROM customers c, bb
           WHERE c.tenant_id = {t} AND c.first_order_at >= bb.b[2] AND c.first_order_at < bb.b[bb.np + 2]
           GROUP BY 1),
periods AS (
    SELECT k, bb.b[k + 1] AS p_start, bb.b[k + 2] AS p_end, coalesce(f.n, 0) AS n_new,
        (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.act >> k) & 1 = 1) AS s,
        (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.act >> (k + 1)) & 1 = 1) AS e,
        (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.act >> k) & 3 = 1) AS lost,
        (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.ord >> (k - 1)) & 3 = 3) AS n_returning,
        (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.ord >> (k - 1)) & 3 = 2) AS not_before,
        (SELECT coalesce(sum(m.n), 0) FROM masks m WHERE (m.ord >> (k - 1)) & 3 = 1) AS dormant
    FROM bb, generate_series(1, bb.np) k LEFT JOIN firsts f USING (k))
SELECT json_agg(json_build_object(
    'period_start', p_start, 'period_end', p_end, 'S', s, 'E', e, 'N', n_new, 'lost', lost, 'new', n_new,
    'returning', n_returning, 'resurrecting', not_before - n_new, 'dormant', dormant) ORDER BY k)::text
FROM periods;
"""


def cohorts(tid, frm, to, unit):
    t, f, e = _args(tid, frm, to)
    u = "interval '3 months'" if unit == "quarter" else f"interval '1 {unit}'"
    k = ("floor(extract(epoch FROM date_trunc('week', o.placed_at) - coh.cohort) / 604800)::int" if unit == "week"
         else "(((extract(year FROM o.placed_at) - extract(year FROM coh.cohort)) * 12"
              " + extract(month FROM o.placed_at) - extract(month FROM coh.cohort))::int)"
              + (" / 3" if unit == "quarter" else ""))
    return f"""SET jit = off; SET work_mem = '64MB'; SET enable_nestloop = off;
WITH coh AS (SELECT c.customer_id, date_trunc('{unit}', c.first_order_at) AS cohort FROM customers c
             WHERE c.tenant_id = {t} AND c.first_order_at >= {f} AND c.first_order_at < {e}),
size AS (SELECT cohort, count(*) AS n FROM coh GROUP BY cohort),
act AS (SELECT coh.cohort, coh.customer_id, {k} AS k, sum(o.net_value) AS rev
        FROM orders o JOIN coh USING (customer_id)
        WHERE o.tenant_id = {t} AND o.qualifying AND o.placed_at >= {f} AND o.placed_at < {e}
        GROUP BY 1, 2, 3),
cell AS (SELECT cohort, k, count(*) AS active, sum(rev) AS revenue FROM act GROUP BY 1, 2),
last_k AS (SELECT cohort, maxk AS k, count(*) AS n
           FROM (SELECT cohort, customer_id, max(k) AS maxk FROM act GROUP BY 1, 2) x GROUP BY 1, 2),
grid AS (SELECT size.cohort, size.n, k FROM size,
         generate_series(0, (SELECT count(*) FROM generate_series(size.cohort, {e} - interval '1 microsecond',
                                                                  {u}))::int - 1) k),
cells AS (SELECT g.cohort, g.n, g.k, coalesce(c.active, 0) AS active, coalesce(c.revenue, 0) AS revenue,
                 sum(coalesce(c.revenue, 0)) OVER (PARTITION BY g.cohort ORDER BY g.k) AS cum_revenue,
                 sum(coalesce(l.n, 0)) OVER (PARTITION BY g.cohort ORDER BY g.k DESC) AS on_or_after
          FROM grid g LEFT JOIN cell c USING (cohort, k) LEFT JOIN last_k l USING (cohort, k))
SELECT coalesce(json_agg(json_build_object('cohort', cohort, 'size', n, 'cells', cells) ORDER BY cohort),
                '[]'::json)::text
FROM (SELECT cohort, n, json_agg(json_build_object(
            'period', k, 'active', active, 'share', active::float8 / n, 'revenue', revenue,
            'active_on_or_after', on_or_after, 'share_on_or_after', on_or_after::float8 / n,
            'cumulative_revenue_per_customer', cum_revenue / n) ORDER BY k) AS cells
      FROM cells GROUP BY cohort, n) x;
"""
