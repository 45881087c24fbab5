-- 015_bulk_rollup_deferred.sql - a bulk load brings each customer's rollup current once, at
-- its end, instead of once per 5 000-row chunk the customer appears in.
--
-- A backfill chunk of 5 000 orders cost about 450 ms here: 180 ms writing the orders, 350 ms
-- locking, recomputing and rewriting the ~4 300 customers they touch. A backfill in time order
-- touches a ten-order customer in up to ten chunks, so the customer rows were rewritten far
-- more often than the orders were written (batch at 0.29 of \copy plus one refresh).
--
-- A chunk of a bulk load (POST /v1/batch past its first chunk, `retentiond import`) now calls
-- rd_ingest_orders_deferred: it writes the orders exactly as rd_ingest_orders does and records
-- each touched customer in rollup_pending, in the same transaction. When the load ends,
-- rd_rollup_flush creates the customer rows still missing and recomputes the pending customers
-- from their orders, 5 000 per transaction, before the load's reply is sent. A load cut short (process
-- killed, connection lost) leaves its pending rows, committed with its orders; the service's
-- background upkeep flushes rows older than ROLLUP_SWEEP_AFTER. Reports read committed orders
-- with a rollup that lags while a bulk load runs; after its reply it is current.
--
-- Races. A chunk takes a row lock on every pending row it needs (an existing row through
-- ON CONFLICT DO UPDATE ... WHERE false, which locks and writes nothing), and a flush takes
-- only rows nobody holds (SKIP LOCKED). So a flush either runs before the chunk commits (the
-- chunk then waits, finds the row deleted and inserts it again) or skips the row, which stays
-- for a later flush: a committed order is never left behind a deleted pending row. Flushes of
-- one tenant take turns (advisory lock) and lock customers in key order, as ingest does.

CREATE TABLE rollup_pending (
    tenant_id   bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    customer_id text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);

-- Plans that hold whatever the statistics say. A backfill into a new database creates the
-- customer rows at its end, so the plans a session caches then were made for a nearly empty
-- customers table: they found "customer_id = ANY(ids)" by scanning all of the tenant's
-- customers (the primary key used for tenant_id alone, the ids a filter), and each flush of a
-- 1 M-order load took longer than the one before (0.6 s, 1.3 s, 2.1 s, ... per 5 000).
-- Customers by id are now read with one primary-key lookup each, as 007 does for the delta.

-- The customer rows of p_ids (each id once), each read by its primary key.
CREATE FUNCTION rd_customer_rows(p_tenant bigint, p_ids text[]) RETURNS SETOF customers
LANGUAGE sql STABLE AS $$
    SELECT c.* FROM (SELECT DISTINCT unnest(p_ids) AS id) ids
    CROSS JOIN LATERAL (SELECT * FROM customers c
                        WHERE c.tenant_id = p_tenant AND c.customer_id = ids.id OFFSET 0) c
$$;

-- As in 002, locking in key order through one lookup per id.
CREATE OR REPLACE FUNCTION rd_lock_customers(p_tenant bigint, p_ids text[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    INSERT INTO customers (tenant_id, customer_id)
    SELECT p_tenant, c FROM (SELECT DISTINCT unnest(p_ids) AS c) s ORDER BY c
    ON CONFLICT DO NOTHING;
    PERFORM 1 FROM (SELECT DISTINCT unnest(p_ids) AS id ORDER BY 1) ids
    CROSS JOIN LATERAL (SELECT 1 FROM customers c
                        WHERE c.tenant_id = p_tenant AND c.customer_id = ids.id FOR UPDATE) l;
END $$;

-- As in 009, reading the customers by primary key, and cascading to every referrer of the
-- refreshed customers: 009 skipped a referrer refreshed in the same call, whose advocacy was
-- then computed from its referred customers' rollups before they were brought current.
CREATE OR REPLACE FUNCTION rd_refresh_customers(p_tenant bigint, p_ids text[], p_at timestamptz,
                                                p_cascade boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql
SET jit = off SET enable_hashjoin = off SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan AS $$
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
    CROSS JOIN LATERAL (
        SELECT c.ctid, c.customer_id, c.stage FROM customers c
        WHERE c.tenant_id = p_tenant AND c.customer_id = ids.customer_id OFFSET 0) c
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

    -- the referrers of these customers, whose advocacy their first orders can start; also
    -- those refreshed above, which read the first orders before they were brought current
    IF p_cascade THEN
        SELECT array_agg(DISTINCT referred_by) INTO referrers FROM rd_customer_rows(p_tenant, p_ids)
        WHERE referred_by IS NOT NULL;
        IF referrers IS NOT NULL THEN
            PERFORM rd_refresh_customers(p_tenant, referrers, p_at, false);
        END IF;
    END IF;
END $$;

-- The order upsert of rd_ingest_orders (009), shared by the immediate and the deferred forms:
-- fills rd_order_change with each input position's outcome and new state. The previous states
-- are read by primary key, one lookup per order.
CREATE FUNCTION rd_upsert_orders(
    p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamptz[],
    p_updated timestamptz[], p_currency text[], p_total numeric[], p_refunded numeric[],
    p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[],
    p_test boolean[])
RETURNS void LANGUAGE plpgsql
SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
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
        SELECT n.order_id, o.updated_at, o.customer_id FROM newest n
        CROSS JOIN LATERAL (SELECT o.updated_at, o.customer_id FROM orders o
                            WHERE o.tenant_id = p_tenant AND o.order_id = n.order_id OFFSET 0) o),
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
END $$;

-- As in 009, with the upsert moved to rd_upsert_orders and the orders' previous customers read
-- by primary key.
CREATE OR REPLACE FUNCTION rd_ingest_orders(
    p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamptz[],
    p_updated timestamptz[], p_currency text[], p_total numeric[], p_refunded numeric[],
    p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[],
    p_test boolean[], p_email text[])
RETURNS TABLE (idx int, outcome text) LANGUAGE plpgsql
SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    affected text[];
    recompute text[];
    changed_at timestamptz;
BEGIN
    SELECT array_agg(DISTINCT c) INTO affected FROM (
        SELECT unnest(p_customers) AS c
        UNION SELECT o.customer_id FROM unnest(p_ids) AS x(id)
              CROSS JOIN LATERAL (SELECT o.customer_id FROM orders o
                                  WHERE o.tenant_id = p_tenant AND o.order_id = x.id OFFSET 0) o) s;
    PERFORM rd_lock_customers(p_tenant, affected);

    -- an e-mail carried by an order fills a customer's missing e-mail
    UPDATE customers c SET email = u.e
    FROM (SELECT DISTINCT ON (cu) cu, e FROM unnest(p_customers, p_email) AS x(cu, e)
          WHERE e IS NOT NULL ORDER BY cu) u
    WHERE c.tenant_id = p_tenant AND c.customer_id = u.cu AND c.email IS NULL;

    PERFORM rd_upsert_orders(p_tenant, p_ids, p_customers, p_placed, p_updated, p_currency,
                             p_total, p_refunded, p_shop_total, p_shop_refunded, p_status,
                             p_source, p_test);

    IF cardinality(p_ids) = 1 THEN
        SELECT r.at INTO changed_at FROM rd_order_change r;
    END IF;

    -- customers with a changed order (new state, or moved away): recompute from their orders
    SELECT array_agg(DISTINCT x) INTO recompute FROM (
        SELECT r.customer_id FROM rd_order_change r WHERE r.outcome = 'updated'
        UNION SELECT r.old_customer FROM rd_order_change r
              WHERE r.outcome = 'updated' AND r.old_customer IS NOT NULL) s(x);

    -- everyone else gains only new orders: add them to the stored rollup (009 explains the
    -- "unplaced" customers, recomputed instead)
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

-- rd_ingest_orders for a chunk of a bulk load: the same orders and outcomes; the customers'
-- rollups are left to rd_rollup_flush, which also creates the customer rows still missing
-- (rd_lock_customers), so a chunk writes a customer row only to fill an e-mail. Pending rows
-- are locked before that customer row, so a chunk never waits for a flush while holding a
-- customer row the flush may need.
CREATE FUNCTION rd_ingest_orders_deferred(
    p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamptz[],
    p_updated timestamptz[], p_currency text[], p_total numeric[], p_refunded numeric[],
    p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[],
    p_test boolean[], p_email text[])
RETURNS TABLE (idx int, outcome text) LANGUAGE plpgsql
SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    PERFORM rd_upsert_orders(p_tenant, p_ids, p_customers, p_placed, p_updated, p_currency,
                             p_total, p_refunded, p_shop_total, p_shop_refunded, p_status,
                             p_source, p_test);

    INSERT INTO rollup_pending AS p (tenant_id, customer_id)
    SELECT p_tenant, x FROM (
        SELECT r.customer_id FROM rd_order_change r WHERE r.outcome IN ('created', 'updated')
        UNION SELECT r.old_customer FROM rd_order_change r
              WHERE r.outcome = 'updated' AND r.old_customer IS NOT NULL) s(x)
    ORDER BY x
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET since = p.since WHERE false;

    INSERT INTO customers AS c (tenant_id, customer_id, email)
    SELECT DISTINCT ON (cu) p_tenant, cu, e FROM unnest(p_customers, p_email) AS x(cu, e)
    WHERE e IS NOT NULL ORDER BY cu
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET email = EXCLUDED.email WHERE c.email IS NULL;

    RETURN QUERY SELECT r.idx, r.outcome FROM rd_order_change r ORDER BY r.idx;
END $$;

-- Brings up to p_limit of a tenant's pending customers current (those pending for longer than
-- p_older_than, when given) and returns how many; 0 when none is left that no one holds.
CREATE FUNCTION rd_rollup_flush(p_tenant bigint, p_limit int, p_older_than interval DEFAULT NULL)
RETURNS int LANGUAGE plpgsql
SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    ids text[];
BEGIN
    PERFORM pg_advisory_xact_lock(1381, (p_tenant % 2147483647)::int);
    SELECT array_agg(customer_id ORDER BY customer_id) INTO ids FROM (
        SELECT p.customer_id FROM rollup_pending p
        WHERE p.tenant_id = p_tenant AND (p_older_than IS NULL OR p.since < now() - p_older_than)
        ORDER BY p.customer_id LIMIT p_limit
        FOR UPDATE SKIP LOCKED) s;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM rd_lock_customers(p_tenant, ids);
    PERFORM rd_refresh_customers(p_tenant, ids, NULL);
    DELETE FROM rollup_pending WHERE tenant_id = p_tenant AND customer_id = ANY(ids);
    RETURN cardinality(ids);
END $$;
