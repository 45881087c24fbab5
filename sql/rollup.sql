-- rollup.sql - the per-customer rollup on the customers row (first/last order, count, net
-- revenue, purchase days, engagement, advocacy, rung), kept current in the same transaction as
-- every ingest that touches a customer.
--
-- Cost follows the rows touched, not the size of the tenant:
--  * new orders and new events, the bulk of every backfill and of live traffic, are added to
--    the stored rollup as deltas (count + n, sum + x, least/greatest of dates) without reading
--    the customer's history (sql/ingest.sql); changed orders (refunds, cancellations, moves
--    between customers), referrals and an order on a day strictly between the first and the
--    last order day fall back to the recompute, rd_refresh_customers;

--  * a recompute reads each customer's rows through its (tenant_id, customer_id, ...) index,
--    in a LATERAL subquery per customer;

--  * both paths write the new values to one temp table (rd_rollup_begin) and share
--    rd_rollup_apply, the single place that sets rungs and records stage_history (and, for a
--    tenant with a subscription to rung changes, the outbox of sql/outbox.sql).
-- JIT is off in these functions: its compile time (hundreds of milliseconds, set off by the
-- inflated cost estimates of array parameters) dwarfs the work. Customers by id are read with
-- one primary-key lookup each, with plans that hold whatever the statistics say (a backfill
-- into a new database creates the customer rows at its end, when cached plans were made for a
-- nearly empty table).
--
-- A bulk load (POST /v1/batch past its first chunk, `retentiond import`) defers the rollup: its
-- chunks record each touched customer in rollup_pending in the same transaction as the orders
-- (sql/ingest.sql: rd_ingest_orders_deferred), and rd_rollup_flush brings them current, 5 000
-- per transaction, before the load's reply is sent; rows a load cut short left are flushed by
-- the background upkeep after ROLLUP_SWEEP_AFTER. A chunk takes a row lock on every pending row
-- it needs (an existing row through ON CONFLICT DO UPDATE ... WHERE false, which locks and
-- writes nothing), and a flush takes only rows nobody holds (SKIP LOCKED): a committed order is
-- never left behind a deleted pending row. Flushes of one tenant take turns (advisory lock) and
-- lock customers in key order, as ingest does.

-- The customer rows of p_ids (each id once), each read by its primary key.
CREATE OR REPLACE FUNCTION rd_customer_rows(p_tenant bigint, p_ids text[])
 RETURNS SETOF customers
 LANGUAGE plpgsql
 STABLE
AS $function$
BEGIN
    RETURN QUERY
    SELECT c.* FROM (SELECT DISTINCT unnest(p_ids) AS id) ids
    CROSS JOIN LATERAL (SELECT * FROM customers c
                        WHERE c.tenant_id = p_tenant AND c.customer_id = ids.id OFFSET 0) c;
END $function$;

-- The session's rd_rollup_new, emptied: one row per customer to bring current, with its new
-- rollup values; days and v1 are the new order_days and first_day_value, or null to keep the
-- stored ones (the engagement paths never change them). A session holding the table in an
-- older shape (without v1, or with the row_id of the rows' ctid) drops it.
CREATE OR REPLACE FUNCTION rd_rollup_begin()
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF to_regclass('pg_temp.rd_rollup_new') IS NOT NULL AND (NOT EXISTS (
           SELECT 1 FROM pg_attribute
           WHERE attrelid = to_regclass('pg_temp.rd_rollup_new') AND attname = 'v1') OR EXISTS (
           SELECT 1 FROM pg_attribute
           WHERE attrelid = to_regclass('pg_temp.rd_rollup_new') AND attname = 'row_id')) THEN
        DROP TABLE pg_temp.rd_rollup_new;
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS rd_rollup_new (
        customer_id text, old_stage text, fo timestamptz, lo timestamptz, n int,
        rev numeric, fe timestamptz, le timestamptz, en int, adv_at timestamptz, adv_kind text,
        referrer text, days int, v1 numeric) ON COMMIT DELETE ROWS;
    DELETE FROM rd_rollup_new;
END $function$;

-- Writes rd_rollup_new to the customers rows, sets their rungs and records each change in
-- stage_history (whose trigger, or on Citus rd_stage_history_late_add, keeps the ladder's daily
-- aggregate, sql/ladder.sql). The rows are found by
-- primary key, and now() is read once into t_now, the dates of rd.change_at are cast before
-- the UPDATE: Citus routes an UPDATE to the tenant's shard by its key and refuses a
-- non-immutable function or cast inside CASE or COALESCE (it evaluates such expressions on the
-- coordinator, which it cannot do there). A change is dated p_at, or, when the caller gives no single time, by the
-- customer's entry in the transaction-local setting rd.change_at ({customer_id: time}, set by
-- the merged single-order and single-event calls of sql/ingest.sql, so that each change is
-- dated as a call of its order or event alone would date it).
CREATE OR REPLACE FUNCTION rd_rollup_apply(p_tenant bigint, p_at timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET enable_hashjoin TO 'off'
 SET enable_mergejoin TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    w int;
    ats jsonb := nullif(current_setting('rd.change_at', true), '')::jsonb;
    wanted boolean := rd_outbox_wanted(p_tenant, 'customer.stage_changed');
    ids text[];
    froms text[];
    tos text[];
    ats_out timestamptz[];
    t_now timestamptz := now();
BEGIN
    SELECT advocacy_window_days INTO w FROM tenants WHERE tenant_id = p_tenant;
    WITH st AS (
        SELECT r.*, rd_stage(r.n, r.en > 0, r.adv_at, greatest(t_now, r.lo, r.le), w) AS stage,
               (ats ->> r.customer_id)::timestamptz AS at_hint
        FROM rd_rollup_new r),
    upd AS (
        UPDATE customers c SET
            first_order_at = st.fo, last_order_at = st.lo, order_count = st.n, net_revenue = st.rev,
            first_engaged_at = st.fe, last_engaged_at = st.le, event_count = st.en,
            last_advocacy_at = st.adv_at, advocacy_kind = st.adv_kind, stage = st.stage,
            order_days = coalesce(st.days, c.order_days),
            first_day_value = coalesce(st.v1, c.first_day_value),
            stage_changed_at = CASE WHEN st.stage <> st.old_stage
                THEN coalesce(p_at, st.at_hint, greatest(st.lo, st.le, st.adv_at), t_now)
                ELSE c.stage_changed_at END
        FROM st
        WHERE c.tenant_id = p_tenant AND c.customer_id = st.customer_id
          AND (c.first_order_at, c.last_order_at, c.order_count, c.net_revenue, c.first_engaged_at,
               c.last_engaged_at, c.event_count, c.last_advocacy_at, c.advocacy_kind, c.stage,
               c.order_days, c.first_day_value)
              IS DISTINCT FROM
              (st.fo, st.lo, st.n, st.rev, st.fe, st.le, st.en, st.adv_at, st.adv_kind, st.stage,
               coalesce(st.days, c.order_days), coalesce(st.v1, c.first_day_value))
        RETURNING c.customer_id, st.old_stage AS from_stage, c.stage AS to_stage, c.stage_changed_at),
    hist AS (
        INSERT INTO stage_history (tenant_id, customer_id, changed_at, from_stage, to_stage)
        SELECT p_tenant, customer_id, stage_changed_at, from_stage, to_stage FROM upd
        WHERE from_stage <> to_stage
        RETURNING customer_id, from_stage, to_stage, changed_at)
    SELECT array_agg(customer_id), array_agg(from_stage), array_agg(to_stage), array_agg(changed_at)
    INTO ids, froms, tos, ats_out
    FROM hist;
    IF ids IS NOT NULL THEN
        PERFORM rd_stage_history_late_add(p_tenant, ats_out, froms, tos, 1);
        -- the outgoing webhooks' outbox (sql/outbox.sql), in this same transaction
        IF wanted THEN
            PERFORM rd_outbox_add(p_tenant, 'customer.stage_changed', ids, froms, tos, ats_out);
        END IF;
    END IF;
END $function$;

-- Recomputes the rollup of p_ids from their orders and events, reading the customers by
-- primary key, then (p_cascade) of every referrer of the refreshed customers, whose advocacy
-- depends on the referred customers' rollups just brought current.
CREATE OR REPLACE FUNCTION rd_refresh_customers(p_tenant bigint, p_ids text[], p_at timestamp with time zone, p_cascade boolean DEFAULT true)
 RETURNS void
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET enable_hashjoin TO 'off'
 SET enable_mergejoin TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    t tenants%ROWTYPE;
    referrers text[];
BEGIN
    SELECT * INTO t FROM tenants WHERE tenant_id = p_tenant;
    PERFORM rd_rollup_begin();
    INSERT INTO rd_rollup_new (customer_id, old_stage, fo, lo, n, rev, fe, le, en,
                               adv_at, adv_kind, days, v1)
    SELECT c.customer_id, c.stage, o.f, o.l, o.n, o.rev, e.f, e.l, e.n, adv.at, adv.kind,
           o.days, o.v1
    FROM (SELECT DISTINCT unnest(p_ids) AS customer_id) ids
    CROSS JOIN LATERAL (
        SELECT c.customer_id, c.stage FROM customers c
        WHERE c.tenant_id = p_tenant AND c.customer_id = ids.customer_id OFFSET 0) c
    CROSS JOIN LATERAL (
        SELECT min(placed_at) AS f, max(placed_at) AS l, count(*)::int AS n,
               coalesce(sum(net_value), 0) AS rev,
               count(DISTINCT rd_local_day(placed_at, t.timezone))::int AS days,
               coalesce(sum(net_value) FILTER (WHERE rd_local_day(placed_at, t.timezone) = (
                   SELECT rd_local_day(min(placed_at), t.timezone) FROM orders
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
END $function$;

-- Creates the customer rows of p_ids still missing and locks them all, in key order (so that
-- concurrent ingests never deadlock), through one lookup per id.
CREATE OR REPLACE FUNCTION rd_lock_customers(p_tenant bigint, p_ids text[])
 RETURNS void
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
    INSERT INTO customers (tenant_id, customer_id)
    SELECT p_tenant, c FROM (SELECT DISTINCT unnest(p_ids) AS c) s ORDER BY c
    ON CONFLICT DO NOTHING;
    PERFORM 1 FROM (SELECT DISTINCT unnest(p_ids) AS id ORDER BY 1) ids
    CROSS JOIN LATERAL (SELECT 1 FROM customers c
                        WHERE c.tenant_id = p_tenant AND c.customer_id = ids.id FOR UPDATE) l;
END $function$;

-- Brings up to p_limit of a tenant's pending customers current (those pending for longer than
-- p_older_than, when given) and returns how many; 0 when none is left that no one holds.
CREATE OR REPLACE FUNCTION rd_rollup_flush(p_tenant bigint, p_limit integer, p_older_than interval DEFAULT NULL::interval)
 RETURNS integer
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
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
END $function$;
