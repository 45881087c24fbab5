-- 007_rollup_by_index_and_delta.sql - rollup maintenance whose cost follows the rows touched,
-- not the size of the tenant.
--
-- The first rd_refresh_customers joined its id list to orders and events as whole tables. With
-- a few thousand ids (a batch chunk) the planner chose hash joins over every order of the
-- tenant, so backfilling N orders in chunks cost O(N^2 / chunk). Now:
--  * a recompute reads each customer's rows through its (tenant_id, customer_id, ...) index,
--    in a LATERAL subquery per customer, and writes back through the row's TID;
--  * new orders and new events, the bulk of every backfill and of live traffic, are added to
--    the stored rollup (count + n, sum + x, least/greatest of dates) without reading the
--    customer's history; only changed orders (refunds, cancellations, moves between
--    customers) and referrals fall back to the recompute;
--  * both paths write the new values to one temp table and share rd_rollup_apply, the single
--    place that sets rungs and records stage_history.
-- JIT is off in these functions: its compile time (hundreds of milliseconds, set off by the
-- inflated cost estimates of array parameters) dwarfs the work.

-- Which advocacy signal an engagement event is, if any (SPEC §4): a review rated at least
-- min_review, or an NPS answer scoring at least min_nps.
CREATE FUNCTION rd_advocacy_kind(p_type text, p_props jsonb, p_min_review int, p_min_nps int)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_type = 'review' AND jsonb_typeof(p_props->'rating') = 'number'
             AND (p_props->>'rating')::numeric >= p_min_review THEN 'review'
        WHEN p_type = 'nps' AND jsonb_typeof(p_props->'score') = 'number'
             AND (p_props->>'score')::numeric >= p_min_nps THEN 'nps' END
$$;

-- The new rollup values of some customers, one row each, written by the recompute or by a
-- delta and applied by rd_rollup_apply. row_id is the customer row's TID as read (the rows are
-- locked by rd_lock_customers, so it cannot move before the apply); referrer is the customer's
-- referred_by when its first order moved, since the referrer's advocacy depends on it.
CREATE FUNCTION rd_rollup_begin() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS rd_rollup_new (
        row_id tid, customer_id text, old_stage text, fo timestamptz, lo timestamptz, n int,
        rev numeric, fe timestamptz, le timestamptz, en int, adv_at timestamptz, adv_kind text,
        referrer text) ON COMMIT DELETE ROWS;
    DELETE FROM rd_rollup_new;
END $$;

-- Writes rd_rollup_new to the customers, sets each rung (rd_stage) and records the rung changes
-- in stage_history, dated p_at, or the customer's latest activity when p_at is null.
CREATE FUNCTION rd_rollup_apply(p_tenant bigint, p_at timestamptz) RETURNS void
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
            stage_changed_at = CASE WHEN st.stage <> st.old_stage
                THEN coalesce(p_at, greatest(st.lo, st.le, st.adv_at), now())
                ELSE c.stage_changed_at END
        FROM st
        WHERE c.ctid = st.row_id
          AND (c.first_order_at, c.last_order_at, c.order_count, c.net_revenue, c.first_engaged_at,
               c.last_engaged_at, c.event_count, c.last_advocacy_at, c.advocacy_kind, c.stage)
              IS DISTINCT FROM
              (st.fo, st.lo, st.n, st.rev, st.fe, st.le, st.en, st.adv_at, st.adv_kind, st.stage)
        RETURNING c.customer_id, st.old_stage AS from_stage, c.stage AS to_stage, c.stage_changed_at)
    INSERT INTO stage_history (tenant_id, customer_id, changed_at, from_stage, to_stage)
    SELECT p_tenant, customer_id, stage_changed_at, from_stage, to_stage FROM upd
    WHERE from_stage <> to_stage;
END $$;

-- Recomputes the rollup of the given customers from their own orders and events, then does the
-- same (once, without cascading further) for the customers who referred them: their advocacy
-- depends on the referred customer's first order.
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
                               adv_at, adv_kind)
    SELECT c.ctid, c.customer_id, c.stage, o.f, o.l, o.n, o.rev, e.f, e.l, e.n, adv.at, adv.kind
    FROM (SELECT DISTINCT unnest(p_ids) AS customer_id) ids
    JOIN customers c ON c.tenant_id = p_tenant AND c.customer_id = ids.customer_id
    CROSS JOIN LATERAL (
        SELECT min(placed_at) AS f, max(placed_at) AS l, count(*)::int AS n,
               coalesce(sum(net_value), 0) AS rev
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

-- Orders, as in 002, with the rollup maintained by delta for new orders.
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

    -- everyone else gains only new orders: add them to the stored rollup
    PERFORM rd_rollup_begin();
    INSERT INTO rd_rollup_new (row_id, customer_id, old_stage, fo, lo, n, rev, fe, le, en,
                               adv_at, adv_kind, referrer)
    SELECT c.ctid, c.customer_id, c.stage, least(c.first_order_at, d.f),
           greatest(c.last_order_at, d.l), c.order_count + d.n, c.net_revenue + d.rev,
           c.first_engaged_at, c.last_engaged_at, c.event_count, c.last_advocacy_at,
           c.advocacy_kind,
           CASE WHEN least(c.first_order_at, d.f) IS DISTINCT FROM c.first_order_at
                THEN c.referred_by END
    FROM (SELECT r.customer_id, min(r.placed_at) AS f, max(r.placed_at) AS l, count(*)::int AS n,
                 sum(r.net_value) AS rev
          FROM rd_order_change r
          WHERE r.outcome = 'created' AND r.qualifying
            AND r.customer_id NOT IN (SELECT unnest(coalesce(recompute, '{}')))
          GROUP BY r.customer_id) d
    JOIN customers c ON c.tenant_id = p_tenant AND c.customer_id = d.customer_id;
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

-- Events, as in 002, with the rollup maintained by delta (events are never changed, only
-- added). A referral names the customer it brought (properties.referred_customer_id), whose
-- referred_by is set if still empty; the referrer's advocacy is then recomputed.
CREATE OR REPLACE FUNCTION rd_ingest_events(
    p_tenant bigint, p_ids text[], p_customers text[], p_types text[], p_occurred timestamptz[],
    p_properties jsonb[], p_source text)
RETURNS TABLE (idx int, outcome text) LANGUAGE plpgsql
SET jit = off AS $$
DECLARE
    t tenants%ROWTYPE;
    referred text[];
    referrers text[];
    changed_at timestamptz;
BEGIN
    SELECT * INTO t FROM tenants WHERE tenant_id = p_tenant;
    SELECT array_agg(DISTINCT pr->>'referred_customer_id') INTO referred
    FROM unnest(p_types, p_properties) AS u(ty, pr)
    WHERE ty = 'referral' AND pr ? 'referred_customer_id';
    PERFORM rd_lock_customers(p_tenant, p_customers || coalesce(referred, '{}'));

    CREATE TEMP TABLE IF NOT EXISTS rd_event_change (
        idx int, outcome text, customer_id text, occurred_at timestamptz, adv_kind text)
        ON COMMIT DELETE ROWS;
    DELETE FROM rd_event_change;
    WITH input AS (
        SELECT u.*, u.ord::int AS i FROM unnest(p_ids, p_customers, p_types, p_occurred, p_properties)
            WITH ORDINALITY AS u(event_id, customer_id, type, occurred_at, properties, ord)),
    first AS (SELECT DISTINCT ON (event_id) * FROM input ORDER BY event_id, i),
    ins AS (
        INSERT INTO events (tenant_id, event_id, customer_id, type, occurred_at, properties, source)
        SELECT p_tenant, event_id, customer_id, type, occurred_at, properties, p_source FROM first
        ON CONFLICT DO NOTHING RETURNING event_id)
    INSERT INTO rd_event_change
    SELECT input.i, CASE WHEN input.i = first.i AND ins.event_id IS NOT NULL THEN 'created'
                         ELSE 'duplicate' END,
           input.customer_id, input.occurred_at,
           rd_advocacy_kind(input.type, input.properties, t.advocacy_min_review, t.advocacy_min_nps)
    FROM input JOIN first USING (event_id) LEFT JOIN ins USING (event_id);

    -- a referral counts for the referrer once the referred customer has ordered
    WITH u AS (
        UPDATE customers c SET referred_by = u.referrer
        FROM (SELECT DISTINCT ON (pr->>'referred_customer_id') pr->>'referred_customer_id' AS referred,
                     cu AS referrer
              FROM unnest(p_types, p_properties, p_customers) AS x(ty, pr, cu)
              WHERE ty = 'referral' AND pr ? 'referred_customer_id'
              ORDER BY pr->>'referred_customer_id') u
        WHERE c.tenant_id = p_tenant AND c.customer_id = u.referred AND c.referred_by IS NULL
          AND u.referred <> u.referrer
        RETURNING c.referred_by, c.first_order_at)
    SELECT array_agg(DISTINCT referred_by) FILTER (WHERE first_order_at IS NOT NULL) INTO referrers
    FROM u;

    IF cardinality(p_ids) = 1 THEN
        changed_at := p_occurred[1];
    END IF;

    PERFORM rd_rollup_begin();
    INSERT INTO rd_rollup_new (row_id, customer_id, old_stage, fo, lo, n, rev, fe, le, en,
                               adv_at, adv_kind)
    SELECT c.ctid, c.customer_id, c.stage, c.first_order_at, c.last_order_at, c.order_count,
           c.net_revenue, least(c.first_engaged_at, d.f), greatest(c.last_engaged_at, d.l),
           c.event_count + d.n,
           CASE WHEN d.adv_at > c.last_advocacy_at OR (c.last_advocacy_at IS NULL AND d.adv_at IS NOT NULL)
                THEN d.adv_at ELSE c.last_advocacy_at END,
           CASE WHEN d.adv_at > c.last_advocacy_at OR (c.last_advocacy_at IS NULL AND d.adv_at IS NOT NULL)
                THEN d.adv_kind ELSE c.advocacy_kind END
    FROM (SELECT r.customer_id, min(r.occurred_at) AS f, max(r.occurred_at) AS l,
                 count(*)::int AS n, max(r.occurred_at) FILTER (WHERE r.adv_kind IS NOT NULL) AS adv_at,
                 (array_agg(r.adv_kind ORDER BY r.occurred_at DESC, r.adv_kind DESC)
                     FILTER (WHERE r.adv_kind IS NOT NULL))[1] AS adv_kind
          FROM rd_event_change r WHERE r.outcome = 'created'
          GROUP BY r.customer_id) d
    JOIN customers c ON c.tenant_id = p_tenant AND c.customer_id = d.customer_id;
    PERFORM rd_rollup_apply(p_tenant, changed_at);

    IF referrers IS NOT NULL THEN
        PERFORM rd_refresh_customers(p_tenant, referrers, changed_at, false);
    END IF;
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_event_change r ORDER BY r.idx;
END $$;
