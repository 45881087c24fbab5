-- reports.sql - what the period reports (summary, retention, cohorts; SPEC §4) need from
-- PostgreSQL, and the change tracking that keeps the service's report snapshots exact.
--
-- The reports are computed by the service over each customer's qualifying orders
-- (src/domain/reports.c), held in memory per tenant (src/store/report_snapshot.c). What makes
-- the copy exact is report_changes: every statement that writes orders or customers records the
-- tenants and customers it touched, under the writing transaction's id (rd_report_changes_note,
-- a statement trigger). A reader that loaded its copy in a snapshot X re-reads, in a new
-- snapshot, exactly the customers recorded by transactions X did not see (xid >= xmin(X) and not
-- visible in X). A transaction still running is not visible in either snapshot and is picked up
-- the next time. A statement touching more than 256 customers of a tenant (a batch chunk, a
-- rollup flush) records one row with customer_id NULL instead: the reader then loads the tenant
-- again, which after a bulk load is the cheaper way anyway. Rows are insert-only, so writers
-- never wait on each other here. The upkeep (rd_report_changes_prune) deletes rows older than
-- the horizon, which it moves in two steps at least ten minutes apart; a copy whose snapshot
-- predates the horizon loads again. TRUNCATE of either table moves the horizon past itself. An
-- UPDATE of orders records the customers of the old rows too, by a second trigger (an order
-- moved to another customer); customers rows never change their id.

-- An instant as microseconds since 1970.
CREATE OR REPLACE FUNCTION rd_report_us(p_t timestamp with time zone)
 RETURNS bigint
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT (extract(epoch FROM p_t) * 1000000)::bigint $function$;

-- Everything a report computed from the snapshot needs from PostgreSQL besides the orders, in
-- the same statement as the snapshot it is read in: the period as the SQL reports resolve it
-- (the head of the reply), its bounds and window in microseconds since 1970, the boundaries
-- of p_unit's periods as rd_metrics_retention lays them out (the period before the first, the
-- starts, the end of the last; empty when the period holds none) both in microseconds and as
-- JSON timestamps, the spend of the period, and the snapshot itself.
CREATE OR REPLACE FUNCTION rd_report_frame(p_tenant bigint, p_from timestamp with time zone, p_to timestamp with time zone, p_window integer, p_unit text)
 RETURNS TABLE(head text, from_us bigint, to_us bigint, window_days integer, bounds_us bigint[], bounds json, acquisition_spend numeric, retention_spend numeric, snap text)
 LANGUAGE sql
 STABLE
AS $function$
    WITH x AS (
        SELECT coalesce(p_from, coalesce(p_to, now()) - interval '12 months') AS f,
               coalesce(p_to, now()) AS t_, coalesce(p_window, t.activity_window_days) AS w
        FROM tenants t WHERE t.tenant_id = p_tenant),
    starts AS (
        SELECT gs FROM x, generate_series(date_trunc(p_unit, x.f), x.t_ - interval '1 microsecond',
                                          rd_unit_interval(p_unit)) gs
        WHERE p_unit IS NOT NULL),
    b AS (
        SELECT gs FROM starts
        UNION ALL SELECT min(gs) - rd_unit_interval(p_unit) FROM starts HAVING count(*) > 0
        UNION ALL SELECT max(gs) + rd_unit_interval(p_unit) FROM starts HAVING count(*) > 0)
    SELECT json_build_object('from', x.f, 'to', x.t_, 'window_days', x.w,
                             'period_days', extract(epoch FROM x.t_ - x.f) / 86400)::text,
           rd_report_us(x.f), rd_report_us(x.t_), x.w,
           (SELECT coalesce(array_agg(rd_report_us(gs) ORDER BY gs), '{}') FROM b),
           (SELECT coalesce(json_agg(gs ORDER BY gs), '[]') FROM b),
           (SELECT sum(amount) FROM spend WHERE tenant_id = p_tenant AND kind = 'acquisition'
              AND period_start >= x.f::date AND period_start < x.t_::date),
           (SELECT sum(amount) FROM spend WHERE tenant_id = p_tenant AND kind = 'retention'
              AND period_start >= x.f::date AND period_start < x.t_::date),
           pg_current_snapshot()::text
    FROM x
$function$;

CREATE OR REPLACE FUNCTION rd_report_changes_note()
 RETURNS trigger
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- past this transaction's own id: a copy whose snapshot's xmin is that id (taken when
        -- nothing ran) did not see the TRUNCATE either
        UPDATE report_changes_horizon
        SET horizon = greatest(horizon, (pg_current_xact_id()::text::numeric + 1)::text::xid8);
        RETURN NULL;
    END IF;
    WITH t AS (SELECT DISTINCT tenant_id, customer_id FROM changed),
    per AS (SELECT tenant_id, count(*) AS n FROM t GROUP BY tenant_id)
    INSERT INTO report_changes (tenant_id, customer_id)
    SELECT t.tenant_id, t.customer_id FROM t JOIN per USING (tenant_id) WHERE per.n <= 256
    UNION ALL
    SELECT tenant_id, NULL FROM per WHERE n > 256;
    RETURN NULL;
END $function$;

CREATE OR REPLACE TRIGGER customers_report_delete AFTER DELETE ON customers REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION rd_report_changes_note();
CREATE OR REPLACE TRIGGER customers_report_insert AFTER INSERT ON customers REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION rd_report_changes_note();
CREATE OR REPLACE TRIGGER customers_report_truncate AFTER TRUNCATE ON customers FOR EACH STATEMENT EXECUTE FUNCTION rd_report_changes_note();
CREATE OR REPLACE TRIGGER customers_report_update AFTER UPDATE ON customers REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION rd_report_changes_note();
CREATE OR REPLACE TRIGGER orders_report_delete AFTER DELETE ON orders REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION rd_report_changes_note();
CREATE OR REPLACE TRIGGER orders_report_insert AFTER INSERT ON orders REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION rd_report_changes_note();
CREATE OR REPLACE TRIGGER orders_report_truncate AFTER TRUNCATE ON orders FOR EACH STATEMENT EXECUTE FUNCTION rd_report_changes_note();
CREATE OR REPLACE TRIGGER orders_report_update AFTER UPDATE ON orders REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION rd_report_changes_note();
CREATE OR REPLACE TRIGGER orders_report_update_old AFTER UPDATE ON orders REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION rd_report_changes_note();

-- The customers of p_tenant changed since snapshot p_snap, at most p_limit of them; a row with
-- customer_id NULL means "load the whole tenant" (a large statement, or p_snap older than the
-- horizon).
CREATE OR REPLACE FUNCTION rd_report_changes_since(p_tenant bigint, p_snap pg_snapshot, p_limit integer)
 RETURNS TABLE(customer_id text)
 LANGUAGE sql
 STABLE
AS $function$
    SELECT NULL::text FROM report_changes_horizon h WHERE pg_snapshot_xmin(p_snap) < h.horizon
    UNION ALL
    (SELECT DISTINCT r.customer_id FROM report_changes r
     WHERE r.tenant_id = p_tenant AND r.xid >= pg_snapshot_xmin(p_snap)
       AND NOT pg_visible_in_snapshot(r.xid, p_snap)
     LIMIT p_limit)
$function$;

-- Upkeep: once the candidate is ten minutes old it becomes the horizon, the rows before it
-- are deleted and the oldest running transaction becomes the next candidate. Returns the rows
-- deleted.
CREATE OR REPLACE FUNCTION rd_report_changes_prune()
 RETURNS bigint
 LANGUAGE plpgsql
AS $function$
DECLARE
    h xid8;
    n bigint;
BEGIN
    UPDATE report_changes_horizon
    SET horizon = greatest(horizon, candidate), candidate = pg_snapshot_xmin(pg_current_snapshot()),
        moved_at = now()
    WHERE moved_at < now() - interval '10 minutes'
    RETURNING horizon INTO h;
    IF h IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM report_changes WHERE xid < h;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $function$;

-- The SQL reports. p_unit is 'week', 'month' or 'quarter'; p_window is the activity window in
-- days.

-- Customers active at t: a qualifying order in [t - window, t). Index-only on orders_qualifying.
CREATE OR REPLACE FUNCTION rd_active_at(p_tenant bigint, p_t timestamp with time zone, p_window integer)
 RETURNS TABLE(customer_id text)
 LANGUAGE sql
 STABLE
AS $function$
    SELECT DISTINCT o.customer_id FROM orders o
    WHERE o.tenant_id = p_tenant AND o.qualifying
      AND o.placed_at >= p_t - make_interval(days => p_window) AND o.placed_at < p_t
$function$;

CREATE OR REPLACE FUNCTION rd_metrics_summary(p_tenant bigint, p_from timestamp with time zone, p_to timestamp with time zone, p_window integer)
 RETURNS json
 LANGUAGE sql
 STABLE
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION rd_metrics_retention_scan(p_tenant bigint, p_from timestamp with time zone, p_to timestamp with time zone, p_window integer, p_unit text)
 RETURNS json
 LANGUAGE sql
 STABLE
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION rd_metrics_retention(p_tenant bigint, p_from timestamp with time zone, p_to timestamp with time zone, p_window integer, p_unit text)
 RETURNS json
 LANGUAGE plpgsql
 STABLE
 SET jit TO 'off'
 SET work_mem TO '64MB'
AS $function$
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
END $function$;

-- Cohorts. The activity is grouped once per (cohort, period) and the cumulative
-- columns are running sums over the grid (on_or_after: customers whose last active period is k
-- or later, summed from the right). The members' orders are one hash join with a range of the
-- orders_qualifying index rather than an index probe per member (the planner, misjudging the
-- member count, would choose the probes).
CREATE OR REPLACE FUNCTION rd_metrics_cohorts(p_tenant bigint, p_from timestamp with time zone, p_to timestamp with time zone, p_unit text)
 RETURNS json
 LANGUAGE sql
 STABLE
 SET jit TO 'off'
 SET work_mem TO '64MB'
 SET enable_nestloop TO 'off'
AS $function$
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
$function$;
