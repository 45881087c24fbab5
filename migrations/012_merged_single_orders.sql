-- 012_merged_single_orders.sql - concurrent single-order requests share one ingest call.
--
-- Group commit already gives concurrent POST /v1/orders one transaction and one commit, but each
-- request still paid a whole rd_ingest_orders call: about a dozen statements whose fixed cost
-- (2.1 ms a call here, against 0.16 ms an order in a call of 32) bounded throughput at high
-- concurrency. The service now sends the single orders of a commit group as one call, in rounds
-- where no customer and no order appears twice, so each order is ingested as if alone: same
-- outcome, same rollup, same ladder transitions.
--
-- The one thing a call of one order did differently is the time of a rung change: the order's
-- own time (placed_at when new, updated_at when changed), where a call of many takes the
-- customer's latest activity. rd_ingest_orders_each passes each customer's time to
-- rd_rollup_apply in a transaction-local setting, rd.change_at, a JSON object
-- {customer_id: time}: the customer of an order, the customer it moved away from, and their
-- referrers (whose advocacy a first order can start).

-- As in 009, with a customer's time from rd.change_at when the caller gives no single time.
CREATE OR REPLACE FUNCTION rd_rollup_apply(p_tenant bigint, p_at timestamptz) RETURNS void
LANGUAGE plpgsql SET jit = off SET enable_hashjoin = off SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    w int;
    ats jsonb := nullif(current_setting('rd.change_at', true), '')::jsonb;
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
                THEN coalesce(p_at, (ats ->> st.customer_id)::timestamptz,
                              greatest(st.lo, st.le, st.adv_at), now())
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

-- rd_ingest_orders for independent single orders: the caller guarantees no customer and no
-- order id appears twice. Each customer's rung change is dated as a call of its order alone
-- would date it.
CREATE FUNCTION rd_ingest_orders_each(
    p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamptz[],
    p_updated timestamptz[], p_currency text[], p_total numeric[], p_refunded numeric[],
    p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[],
    p_test boolean[], p_email text[])
RETURNS TABLE (idx int, outcome text) LANGUAGE plpgsql
SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    ats jsonb;
BEGIN
    WITH own AS (
        SELECT u.cu, o.customer_id AS old_cu,
               CASE WHEN o.order_id IS NULL THEN u.placed ELSE u.updated END AS at
        FROM unnest(p_ids, p_customers, p_placed, p_updated) AS u(id, cu, placed, updated)
        LEFT JOIN LATERAL (SELECT o.order_id, o.customer_id FROM orders o
                           WHERE o.tenant_id = p_tenant AND o.order_id = u.id OFFSET 0) o ON true),
    touched AS (
        SELECT cu AS k, at, 1 AS pri FROM own
        UNION ALL SELECT old_cu, at, 2 FROM own WHERE old_cu IS NOT NULL AND old_cu <> cu),
    keyed AS (
        SELECT k, at, pri FROM touched
        UNION ALL
        SELECT r.referred_by, t.at, 3 FROM touched t
        CROSS JOIN LATERAL (SELECT c.referred_by FROM customers c
                            WHERE c.tenant_id = p_tenant AND c.customer_id = t.k OFFSET 0) r
        WHERE r.referred_by IS NOT NULL)
    SELECT jsonb_object_agg(k, at) INTO ats
    FROM (SELECT DISTINCT ON (k) k, at FROM keyed ORDER BY k, pri) s;

    PERFORM set_config('rd.change_at', coalesce(ats::text, ''), true);
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_ingest_orders(p_tenant, p_ids, p_customers,
        p_placed, p_updated, p_currency, p_total, p_refunded, p_shop_total, p_shop_refunded,
        p_status, p_source, p_test, p_email) r;
    PERFORM set_config('rd.change_at', '', true);
END $$;
