-- clv.sql - the purchase summary predictive CLV is fitted on (SPEC §4: BG/NBD and
-- Gamma-Gamma, src/domain/clv.c).

-- The BG/NBD / Gamma-Gamma summary of a tenant's customers (or of one, p_customer) at p_as_of:
-- x repeat occasions (local calendar days with orders after the first), t_x and T in days (T
-- ends on the local day of the last instant before p_as_of), mbar the mean net value of the repeat occasions. A customer whose last order is
-- before p_as_of is read from the rollup; one with orders at or after it (a fit at a past
-- as_of) is summarised from its orders before p_as_of, through its index. PL/pgSQL (like every
-- function here that reads a table): Citus plans no parameterised statement of a SQL function.
CREATE OR REPLACE FUNCTION rd_clv_sample(p_tenant bigint, p_as_of timestamp with time zone, p_customer text DEFAULT NULL::text)
 RETURNS TABLE(customer_id text, x integer, t_x integer, "T" integer, mbar double precision)
 LANGUAGE plpgsql
 STABLE
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH e AS (SELECT rd_local_day(p_as_of - interval '1 microsecond', t.timezone) AS end_day, t.timezone AS zone
               FROM tenants t WHERE t.tenant_id = p_tenant)
    SELECT c.customer_id, c.order_days - 1,
           rd_local_day(c.last_order_at, e.zone) - rd_local_day(c.first_order_at, e.zone),
           e.end_day - rd_local_day(c.first_order_at, e.zone),
           coalesce(((c.net_revenue - c.first_day_value) / nullif(c.order_days - 1, 0))::float8, 0)
    FROM customers c, e
    WHERE c.tenant_id = p_tenant AND (p_customer IS NULL OR c.customer_id = p_customer)
      AND c.order_count > 0 AND c.last_order_at < p_as_of
    UNION ALL
    SELECT c.customer_id, s.k - 1, s.l - s.f, e.end_day - s.f,
           coalesce(((s.total - s.v1) / nullif(s.k - 1, 0))::float8, 0)
    FROM customers c CROSS JOIN e
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS k, min(occ.d) AS f, max(occ.d) AS l, sum(occ.v) AS total,
               (array_agg(occ.v ORDER BY occ.d))[1] AS v1
        FROM (SELECT rd_local_day(o.placed_at, e.zone) AS d, sum(o.net_value) AS v FROM orders o
              WHERE o.tenant_id = p_tenant AND o.customer_id = c.customer_id AND o.qualifying
                AND o.placed_at < p_as_of
              GROUP BY 1) occ) s
    WHERE c.tenant_id = p_tenant AND (p_customer IS NULL OR c.customer_id = p_customer)
      AND c.last_order_at >= p_as_of AND s.k > 0;
END $function$;

-- The stored predictions' histogram of predicted CLV (GET /v1/metrics/clv): p_bins bins of
-- equal width from 0 to the 99th percentile (continuous), each [lower, upper), then an
-- overflow bin [p99, max] for the top percent, so that a few very large predictions do not
-- squeeze the others into the first bin. Every bin is listed, empty or not; no rows without
-- predictions. When the 99th percentile is 0 the bins reach to the maximum instead, and when
-- every prediction is 0 there is one bin [0, 0] holding them all.
CREATE OR REPLACE FUNCTION rd_clv_histogram(p_tenant bigint, p_bins integer)
 RETURNS TABLE(lower double precision, upper double precision, customers bigint, overflow boolean)
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    hi float8;
    mx float8;
BEGIN
    SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY p.predicted_clv), max(p.predicted_clv) INTO hi, mx
    FROM customer_predictions p WHERE p.tenant_id = p_tenant;
    IF mx IS NULL THEN
        RETURN;
    END IF;
    IF hi <= 0 THEN
        hi := mx;
    END IF;
    IF hi <= 0 THEN
        RETURN QUERY SELECT 0::float8, 0::float8, count(*), false
                     FROM customer_predictions p WHERE p.tenant_id = p_tenant;
        RETURN;
    END IF;
    RETURN QUERY
    WITH counts AS (
        SELECT width_bucket(p.predicted_clv, 0::float8, hi, p_bins) AS b, count(*) AS n
        FROM customer_predictions p WHERE p.tenant_id = p_tenant GROUP BY 1)
    SELECT CASE WHEN g.b <= p_bins THEN (g.b - 1) * hi / p_bins ELSE hi END,
           CASE WHEN g.b <= p_bins THEN g.b * hi / p_bins ELSE mx END,
           coalesce(c.n, 0), g.b > p_bins
    FROM generate_series(1, p_bins + 1) g(b) LEFT JOIN counts c ON c.b = g.b
    ORDER BY g.b;
END $function$;
