-- 009_rollup_purchase_days.sql - the rollup also keeps what predictive CLV needs, so a fit reads
-- one row per customer instead of grouping every order by customer and day.
--
-- BG/NBD counts purchase occasions (UTC days with a qualifying order, SPEC §4) and Gamma-Gamma
-- averages the value of the repeat ones. With the rollup's first/last order and net revenue,
-- two more columns give the whole per-customer summary for any as_of after the last order:
--   order_days       distinct UTC days holding a qualifying order   -> x = order_days - 1
--   first_day_value  net value of the qualifying orders of the first day
--                    -> mean repeat value = (net_revenue - first_day_value) / x
-- A new order is added as a delta when the rollup can tell whether its day is new: before the
-- first order day, after the last, or on one of those two. A day strictly in between may or may
-- not hold an order already, so such a customer is recomputed from its orders instead.

-- No report reads customers by stored stage (the rung is recomputed at as_of, since advocacy
-- expires), and for a young tenant, whose rows the statistics do not know yet, the planner took
-- this index as just as good as the primary key to look up (tenant_id, customer_id), walking
-- every stage for each customer an ingest touched.
DROP INDEX customers_stage;

-- Every fit replaces a tenant's predictions, and these two indexes cost more than the rest of
-- that write (random-order inserts into two more b-trees: about 0.9 s of 1.5 s for 90 k rows
-- here) while no query can use them: the customer list sorts and filters on
-- coalesce(p_alive, ...) over its page candidates, which an index on the bare column does not
-- serve.
DROP INDEX customer_predictions_p_alive;
DROP INDEX customer_predictions_clv;

CREATE FUNCTION rd_utc_day(p_at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (p_at AT TIME ZONE 'UTC')::date $$;

ALTER TABLE customers
    ADD COLUMN order_days int NOT NULL DEFAULT 0,
    ADD COLUMN first_day_value numeric NOT NULL DEFAULT 0;

UPDATE customers c SET order_days = s.days, first_day_value = s.v1
FROM (SELECT tenant_id, customer_id, count(*)::int AS days,
             (array_agg(v ORDER BY d))[1] AS v1
      FROM (SELECT tenant_id, customer_id, rd_utc_day(placed_at) AS d, sum(net_value) AS v
            FROM orders WHERE qualifying GROUP BY 1, 2, 3) occ
      GROUP BY 1, 2) s
WHERE c.tenant_id = s.tenant_id AND c.customer_id = s.customer_id;

-- As in 007, with days and v1: the new order_days and first_day_value, or null to keep the
-- stored ones (the engagement paths never change them). A session that created the table
-- before this migration drops its older shape.
CREATE OR REPLACE FUNCTION rd_rollup_begin() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp.rd_rollup_new') IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('pg_temp.rd_rollup_new') AND attname = 'v1') THEN
        DROP TABLE pg_temp.rd_rollup_new;
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS rd_rollup_new (
        row_id tid, customer_id text, old_stage text, fo timestamptz, lo timestamptz, n int,
        rev numeric, fe timestamptz, le timestamptz, en int, adv_at timestamptz, adv_kind text,
        referrer text, days int, v1 numeric) ON COMMIT DELETE ROWS;
    DELETE FROM rd_rollup_new;
END $$;

CREATE OR REPLACE FUNCTION rd_rollup_apply(p_tenant bigint, p_at timestamptz) RETURNS void
LANGUAGE plpgsql SET jit = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    w int;
BEGIN
    SELECT advocacy_window_days INTO w FROM tenants WHERE tenant_id = p_tenant;
    WITH st AS (
        SELECT r.*, rd_stage(r.n, r.en > 0, r.adv_at, greatest(now(), r.lo, r.le), w) AS stage
        FROM rd_rollup_new r),
    upd AS (
        UPDATE customers c SET
            first_order_at = st.fo, last_order_at = st.lo, order_count = st.n, net_revenue = st.rev,
            first_engaged_at = st.fe, last_engaged_at = st.le, event_count = st.en,
            last_advocacy_at = st.adv_at, advocacy_kind = st.adv_kind, stage = st.stage,
            order_days = coalesce(st.days, c.order_days),
            first_day_value = coalesce(st.v1, c.first_day_value),
            stage_changed_at = CASE WHEN st.stage <> st.old_stage
                THEN coalesce(p_at, greatest(st.lo, st.le, st.adv_at), now())
                ELSE c.stage_changed_at END
        FROM st
        WHERE c.ctid = st.row_id
          AND (c.first_order_at, c.last_order_at, c.order_count, c.net_revenue, c.first_engaged_at,
               c.last_engaged_at, c.event_count, c.last_advocacy_at, c.advocacy_kind, c.stage,
               c.order_days, c.first_day_value)
              IS DISTINCT FROM
              (st.fo, st.lo, st.n, st.rev, st.fe, st.le, st.en, st.adv_at, st.adv_kind, st.stage,
               coalesce(st.days, c.order_days), coalesce(st.v1, c.first_day_value))
        RETURNING c.customer_id, st.old_stage AS from_stage, c.stage AS to_stage, c.stage_changed_at)
    INSERT INTO stage_history (tenant_id, customer_id, changed_at, from_stage, to_stage)
    SELECT p_tenant, customer_id, stage_changed_at, from_stage, to_stage FROM upd
    WHERE from_stage <> to_stage;
END $$;

-- As in 007, with the purchase days and the first day's value read through the same index.
CREATE OR REPLACE FUNCTION rd_refresh_customers(p_tenant bigint, p_ids text[], p_at timestamptz,
                                                p_cascade boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql
SET jit = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    t tenants%ROWTYPE;
    referrers text[];
BEGIN
    SELECT * INTO t FROM tenants WHERE tenant_id = p_tenant;
    PERFORM rd_rollup_begin();
    INSERT INTO rd_rollup_new (row_id, customer_id, old_stage, fo, lo, n, rev, fe, le, en,
                               adv_at, adv_kind, days, v1)
    SELECT c.ctid, c.customer_id, c.stage, o.f, o.l, o.n, o.rev, e.f, e.l, e.n, adv.at, adv.kind,
           o.days, o.v1
    FROM (SELECT DISTINCT unnest(p_ids) AS customer_id) ids
    JOIN customers c ON c.tenant_id = p_tenant AND c.customer_id = ids.customer_id
    CROSS JOIN LATERAL (
        SELECT min(placed_at) AS f, max(placed_at) AS l, count(*)::int AS n,
               coalesce(sum(net_value), 0) AS rev,
               count(DISTINCT rd_utc_day(placed_at))::int AS days,
               coalesce(sum(net_value) FILTER (WHERE rd_utc_day(placed_at) = (
                   SELECT rd_utc_day(min(placed_at)) FROM orders
                   WHERE tenant_id = p_tenant AND customer_id = ids.customer_id AND qualifying)), 0) AS v1
        FROM orders WHERE tenant_id = p_tenant AND customer_id = ids.customer_id AND qualifying) o
    CROSS JOIN LATERAL (
        SELECT min(occurred_at) AS f, max(occurred_at) AS l, count(*)::int AS n,
               max(occurred_at) FILTER (WHERE rd_advocacy_kind(type, properties,
                   t.advocacy_min_review, t.advocacy_min_nps) = 'review') AS review_at,
               max(occurred_at) FILTER (WHERE rd_advocacy_kind(type, properties,
                   t.advocacy_min_review, t.advocacy_min_nps) = 'nps') AS nps_at
        FROM events WHERE tenant_id = p_tenant AND customer_id = ids.customer_id) e
    CROSS JOIN LATERAL (
        SELECT max(r.first_order_at) AS referral_at FROM customers r
        WHERE r.tenant_id = p_tenant AND r.referred_by = ids.customer_id
          AND r.first_order_at IS NOT NULL) rf
    LEFT JOIN LATERAL (
        SELECT s.at, s.kind FROM (VALUES (e.review_at, 'review', 1), (e.nps_at, 'nps', 2),
                                         (rf.referral_at, 'referral', 3)) AS s(at, kind, pos)
        WHERE s.at IS NOT NULL ORDER BY s.at DESC, s.pos LIMIT 1) adv ON true;
    PERFORM rd_rollup_apply(p_tenant, p_at);

    IF p_cascade THEN
        SELECT array_agg(DISTINCT referred_by) INTO referrers FROM customers
        WHERE tenant_id = p_tenant AND customer_id = ANY(p_ids) AND referred_by IS NOT NULL
          AND NOT (referred_by = ANY(p_ids));
        IF referrers IS NOT NULL THEN
            PERFORM rd_refresh_customers(p_tenant, referrers, p_at, false);
        END IF;
    END IF;
END $$;

-- As in 007; the delta also carries the purchase days, and a new order on a day the rollup
-- cannot place sends its customer to the recompute.
CREATE OR REPLACE FUNCTION rd_ingest_orders(
    p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamptz[],
    p_updated timestamptz[], p_currency text[], p_total numeric[], p_refunded numeric[],
    p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[],
    p_test boolean[], p_email text[])
RETURNS TABLE (idx int, outcome text) LANGUAGE plpgsql
SET jit = off AS $$
DECLARE
    affected text[];
    recompute text[];
    changed_at timestamptz;
BEGIN
    SELECT array_agg(DISTINCT c) INTO affected FROM (
        SELECT unnest(p_customers) AS c
        UNION SELECT o.customer_id FROM orders o
              WHERE o.tenant_id = p_tenant AND o.order_id = ANY(p_ids)) s;
    PERFORM rd_lock_customers(p_tenant, affected);

    -- an e-mail carried by an order fills a customer's missing e-mail
    UPDATE customers c SET email = u.e
    FROM (SELECT DISTINCT ON (cu) cu, e FROM unnest(p_customers, p_email) AS x(cu, e)
          WHERE e IS NOT NULL ORDER BY cu) u
    WHERE c.tenant_id = p_tenant AND c.customer_id = u.cu AND c.email IS NULL;

    CREATE TEMP TABLE IF NOT EXISTS rd_order_change (
        idx int, outcome text, at timestamptz, customer_id text, old_customer text,
        placed_at timestamptz, qualifying boolean, net_value numeric) ON COMMIT DELETE ROWS;
    DELETE FROM rd_order_change;

    WITH input AS (
        SELECT u.*, u.ord::int AS i FROM unnest(p_ids, p_customers, p_placed, p_updated, p_currency,
            p_total, p_refunded, p_shop_total, p_shop_refunded, p_status, p_source, p_test)
            WITH ORDINALITY AS u(order_id, customer_id, placed_at, updated_at, currency, total,
                                 refunded, shop_total, shop_refunded, status, source, test, ord)),
    newest AS (
        SELECT DISTINCT ON (order_id) * FROM input ORDER BY order_id, updated_at DESC, i DESC),
    prev AS (
        SELECT o.order_id, o.updated_at, o.customer_id FROM orders o JOIN newest n USING (order_id)
        WHERE o.tenant_id = p_tenant),
    ups AS (
        INSERT INTO orders AS o (tenant_id, order_id, customer_id, placed_at, updated_at, currency,
                                 total, refunded, shop_total, shop_refunded, status, source, test)
        SELECT p_tenant, order_id, customer_id, placed_at, updated_at, currency, total, refunded,
               shop_total, shop_refunded, status, source, test FROM newest
        ON CONFLICT (tenant_id, order_id) DO UPDATE SET
            customer_id = EXCLUDED.customer_id, placed_at = EXCLUDED.placed_at,
            updated_at = EXCLUDED.updated_at, currency = EXCLUDED.currency, total = EXCLUDED.total,
            refunded = EXCLUDED.refunded, shop_total = EXCLUDED.shop_total,
            shop_refunded = EXCLUDED.shop_refunded, status = EXCLUDED.status,
            source = EXCLUDED.source, test = EXCLUDED.test
        WHERE o.updated_at < EXCLUDED.updated_at
           OR (o.updated_at = EXCLUDED.updated_at
               AND (o.customer_id, o.placed_at, o.currency, o.total, o.refunded, o.shop_total,
                    o.shop_refunded, o.status, o.test)
                   IS DISTINCT FROM
                   (EXCLUDED.customer_id, EXCLUDED.placed_at, EXCLUDED.currency, EXCLUDED.total,
                    EXCLUDED.refunded, EXCLUDED.shop_total, EXCLUDED.shop_refunded,
                    EXCLUDED.status, EXCLUDED.test))
        RETURNING o.order_id, (o.xmax = 0) AS inserted, o.customer_id, o.placed_at, o.qualifying,
                  o.net_value)
    INSERT INTO rd_order_change
    SELECT input.i,
           CASE WHEN input.i <> newest.i THEN 'superseded'
                WHEN ups.order_id IS NULL AND prev.updated_at > input.updated_at THEN 'stale'
                WHEN ups.order_id IS NULL THEN 'duplicate'
                WHEN ups.inserted THEN 'created'
                ELSE 'updated' END,
           CASE WHEN ups.inserted THEN input.placed_at ELSE input.updated_at END,
           ups.customer_id, prev.customer_id, ups.placed_at, ups.qualifying, ups.net_value
    FROM input JOIN newest USING (order_id)
    LEFT JOIN ups USING (order_id) LEFT JOIN prev USING (order_id);

    IF cardinality(p_ids) = 1 THEN
        SELECT r.at INTO changed_at FROM rd_order_change r;
    END IF;

    -- customers with a changed order (new state, or moved away): recompute from their orders
    SELECT array_agg(DISTINCT x) INTO recompute FROM (
        SELECT r.customer_id FROM rd_order_change r WHERE r.outcome = 'updated'
        UNION SELECT r.old_customer FROM rd_order_change r
              WHERE r.outcome = 'updated' AND r.old_customer IS NOT NULL) s(x);

    -- everyone else gains only new orders: add them to the stored rollup. A new day is one
    -- before the first order day or after the last (those two hold orders); a new order
    -- strictly between them may or may not share a day with an older one, so such a customer
    -- ("unplaced") is recomputed instead. The customer rows are read through LATERAL ...
    -- OFFSET 0, a parameterised primary-key lookup whatever the (often stale, for a young
    -- tenant) statistics make the planner think.
    PERFORM rd_rollup_begin();
    WITH d AS (
        SELECT r.customer_id, min(r.placed_at) AS f, max(r.placed_at) AS l, count(*)::int AS n,
               sum(r.net_value) AS rev, array_agg(rd_utc_day(r.placed_at)) AS days,
               array_agg(r.net_value) AS vals
        FROM rd_order_change r
        WHERE r.outcome = 'created' AND r.qualifying
          AND r.customer_id NOT IN (SELECT unnest(coalesce(recompute, '{}')))
        GROUP BY r.customer_id),
    j AS (
        SELECT c.row_id, c.customer_id, c.stage, least(c.first_order_at, d.f) AS fo,
               greatest(c.last_order_at, d.l) AS lo, c.order_count + d.n AS n,
               c.net_revenue + d.rev AS rev, c.first_engaged_at, c.last_engaged_at, c.event_count,
               c.last_advocacy_at, c.advocacy_kind,
               CASE WHEN least(c.first_order_at, d.f) IS DISTINCT FROM c.first_order_at
                    THEN c.referred_by END AS referrer,
               c.order_days + k.new_days AS days,
               -- the first day's value adds the new orders on the (possibly new) first day
               CASE WHEN c.cf <= rd_utc_day(d.f) THEN c.first_day_value ELSE 0 END + k.v_first AS v1,
               k.unplaced
        FROM d
        CROSS JOIN LATERAL (
            SELECT c.*, c.ctid AS row_id, rd_utc_day(c.first_order_at) AS cf,
                   rd_utc_day(c.last_order_at) AS cl
            FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id = d.customer_id
            OFFSET 0) c
        CROSS JOIN LATERAL (
            SELECT count(DISTINCT o.d) FILTER (WHERE c.cf IS NULL OR o.d < c.cf OR o.d > c.cl)::int AS new_days,
                   coalesce(sum(o.v) FILTER (WHERE o.d = least(c.cf, rd_utc_day(d.f))), 0) AS v_first,
                   coalesce(bool_or(o.d > c.cf AND o.d < c.cl), false) AS unplaced
            FROM unnest(d.days, d.vals) AS o(d, v)) k),
    ins AS (
        INSERT INTO rd_rollup_new (row_id, customer_id, old_stage, fo, lo, n, rev, fe, le, en,
                                   adv_at, adv_kind, referrer, days, v1)
        SELECT row_id, customer_id, stage, fo, lo, n, rev, first_engaged_at, last_engaged_at,
               event_count, last_advocacy_at, advocacy_kind, referrer, days, v1
        FROM j WHERE NOT unplaced)
    SELECT recompute || array_agg(customer_id) FILTER (WHERE unplaced) INTO recompute FROM j;
    PERFORM rd_rollup_apply(p_tenant, changed_at);

    -- a referred customer's first order is its referrer's advocacy: recompute those too
    SELECT array_agg(DISTINCT x) INTO recompute FROM (
        SELECT unnest(recompute) UNION SELECT r.referrer FROM rd_rollup_new r
                                       WHERE r.referrer IS NOT NULL) s(x);
    IF recompute IS NOT NULL THEN
        PERFORM rd_refresh_customers(p_tenant, recompute, changed_at);
    END IF;
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_order_change r ORDER BY r.idx;
END $$;

-- The BG/NBD / Gamma-Gamma summary of a tenant's customers (or of one, p_customer) at p_as_of:
-- x repeat occasions, t_x and T in days (T ends on the UTC day of the last instant before
-- p_as_of), mbar the mean net value of the repeat occasions. A customer whose last order is
-- before p_as_of is read from the rollup; one with orders at or after it (a fit at a past
-- as_of) is summarised from its orders before p_as_of, through its index.
CREATE FUNCTION rd_clv_sample(p_tenant bigint, p_as_of timestamptz, p_customer text DEFAULT NULL)
RETURNS TABLE (customer_id text, x int, t_x int, "T" int, mbar float8)
LANGUAGE sql STABLE AS $$
    WITH e AS (SELECT rd_utc_day(p_as_of - interval '1 microsecond') AS end_day)
    SELECT c.customer_id, c.order_days - 1,
           rd_utc_day(c.last_order_at) - rd_utc_day(c.first_order_at),
           e.end_day - rd_utc_day(c.first_order_at),
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
        FROM (SELECT rd_utc_day(o.placed_at) AS d, sum(o.net_value) AS v FROM orders o
              WHERE o.tenant_id = p_tenant AND o.customer_id = c.customer_id AND o.qualifying
                AND o.placed_at < p_as_of
              GROUP BY 1) occ) s
    WHERE c.tenant_id = p_tenant AND (p_customer IS NULL OR c.customer_id = p_customer)
      AND c.last_order_at >= p_as_of AND s.k > 0
$$;
