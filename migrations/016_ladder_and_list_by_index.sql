-- 016_ladder_and_list_by_index.sql - the ladder and the customer list answered through indexes
-- and a daily aggregate of rung changes, instead of reading every customer of the tenant.
--
-- On the 1 M-order shop the ladder took 250-450 ms and the first page of the customer list
-- 150-300 ms; both now take a few milliseconds, with the same answers.
--
-- Rungs. rd_metrics_ladder evaluated rd_stage (a SQL function call per row) for every customer.
-- A rung at as_of depends on the order count, on whether the customer engaged, and, for the
-- advocates only, on last_advocacy_at falling in (as_of - window, as_of]. So the counts come
-- from three index-only scans: customers_rfm_f (005) counts those with one and with more
-- orders, customers_without_orders (below) those without, split by engagement, and
-- customers_advocacy (below) the advocates among the first two, by a range of
-- last_advocacy_at. Both new indexes are partial and small: a customer with orders enters
-- customers_without_orders never, and customers_advocacy only once it has an advocacy signal.
-- Engagement is read from first_engaged_at, which an event changes only when it is the
-- customer's earliest, rather than event_count, which every event changes: an indexed column
-- that changes takes away the heap-only (HOT) update an event can otherwise get.
--
-- Two facts of the rollup, true of every row written so far and by every write path
-- (rd_rollup_apply, fed by the recompute and the two deltas), become constraints, since the
-- counts and the list rely on them: a customer without qualifying orders has no order dates
-- and no revenue (and never a negative count), and event_count > 0 exactly when
-- first_engaged_at is set.
--
-- Transitions. Counting stage_history rows by (from, to) over a year read ~80 k rows per
-- request. stage_history_days keeps, per tenant and UTC day, how many changes went from one
-- rung to another, for every day before the tenant's mark (stage_history_compacted.through);
-- the background upkeep moves the mark to the start of the current UTC day
-- (rd_stage_history_compact). A report reads the aggregate for the whole days of its period
-- before the mark and stage_history itself for the rest: the partial days at its edges and
-- the days from the mark on (today, usually).
--
-- A rung change can be dated long before it is recorded (a late order, a backfill dates it by
-- the customer's latest activity), into a day already compacted. So every statement that
-- changes stage_history also writes, for its rows dated before their tenant's mark, a delta
-- row per (tenant, day, from, to) to stage_history_late, which reports add and the upkeep
-- folds into stage_history_days. Deltas are only ever inserted: concurrent ingest never waits
-- on a shared counter row. Ingest only inserts stage_history rows; updates, deletes and
-- truncation (by hand) are accounted for the same way.
--
-- The one race is between moving the mark and a transaction still writing changes dated
-- before the new mark: the compaction cannot see them, and they saw the old mark. A statement
-- changing stage_history therefore holds a shared advisory lock on its tenant (1382, tenant)
-- until it commits, and takes it before reading the mark; rd_stage_history_compact moves the
-- mark only under the exclusive lock, after those writers have committed, and only by
-- pg_try_advisory_xact_lock: it never queues, so ingest never waits behind a compaction that
-- is itself waiting (ingest holds customer row locks; a queued exclusive request would make
-- later shared requests wait and could close a cycle). Under the lock it reads the mark
-- afresh (READ COMMITTED: each statement sees what committed before it). Writers of a
-- tenant wait only while a compaction of that tenant runs: one day of changes, usually.
--
-- Customer list. A page sorted by net revenue, order count or last order built every customer
-- row of the tenant, then sorted them. The unfiltered page is now a backward walk of the rank
-- index of its sort (customers_rfm_m, _f, _r of 005) that stops after the page, plus the
-- start of customers_without_orders in key order for the customers the rank indexes leave out
-- (their key is 0, 0 or null by the constraint). For a backward walk to give the page in
-- order, ties now break by customer_id descending (they broke ascending), and the sort key is
-- the column itself: net_revenue was compared as float8, which two revenues of more than 15
-- significant digits can share. The cursor therefore carries the exact key as PostgreSQL
-- prints it (text, or null for "no value": no order, no prediction) instead of a float.
-- Customers without a value (last order, P(alive), predicted CLV) still come last. With the
-- page down to a millisecond, the service's parsing and re-encoding of it cost half as much
-- again, so rd_customer_list now returns the reply whole (with the RFM segment, rd_rfm_segment,
-- the same grid as the service's, and the cursor), which the service sends as it is; amounts
-- are printed as stored instead of through a double.
-- Filters (stage, status, segment, min_p_alive) and the prediction sorts scan as before:
-- status and the prediction sorts read customer_predictions, whose indexes 009 dropped
-- because each fit rewrites them; a segment needs quintiles over all customers anyway.
--
-- rd_stage and rd_status are declared STABLE, which they are (timestamptz - interval depends
-- on the session's TimeZone): PostgreSQL does not inline a function declared IMMUTABLE whose
-- body is not, so every row paid a SQL function call. A list filtered by stage or status
-- takes half the time it took (~190 ms from ~430 on the 1 M shop); nothing relied on their
-- immutability (no index or generated column uses them).

-- 0. Inlinable rung and status.
ALTER FUNCTION rd_stage(int, boolean, timestamptz, timestamptz, int) STABLE;
ALTER FUNCTION rd_status(timestamptz, timestamptz, int, timestamptz, int, float8, float8, float8) STABLE;

-- 1. The rollup's two facts.
ALTER TABLE customers ADD CONSTRAINT customers_orders_rollup
    CHECK (order_count > 0 OR (order_count = 0 AND net_revenue = 0 AND first_order_at IS NULL
                               AND last_order_at IS NULL)) NOT VALID;
ALTER TABLE customers ADD CONSTRAINT customers_events_rollup
    CHECK ((event_count > 0) = (first_engaged_at IS NOT NULL)) NOT VALID;
ALTER TABLE customers VALIDATE CONSTRAINT customers_orders_rollup;
ALTER TABLE customers VALIDATE CONSTRAINT customers_events_rollup;

CREATE INDEX customers_without_orders ON customers (tenant_id, customer_id) INCLUDE (first_engaged_at)
    WHERE order_count = 0;
CREATE INDEX customers_advocacy ON customers (tenant_id, last_advocacy_at) INCLUDE (order_count)
    WHERE order_count > 0 AND last_advocacy_at IS NOT NULL;

-- 2. Rung changes per UTC day.
CREATE TABLE stage_history_days (
    tenant_id   bigint NOT NULL,
    day         date NOT NULL,
    from_stage  text NOT NULL,
    to_stage    text NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, from_stage, to_stage)
);

-- Changes to days already compacted, not yet folded into stage_history_days (n may be
-- negative: a removed row).
CREATE TABLE stage_history_late (
    tenant_id   bigint NOT NULL,
    day         date NOT NULL,
    seq         bigserial,
    from_stage  text NOT NULL,
    to_stage    text NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, seq)
);

-- Every day before `through` is in stage_history_days (+ stage_history_late). No row: none is.
CREATE TABLE stage_history_compacted (
    tenant_id  bigint PRIMARY KEY,
    through    date NOT NULL
);

-- The instant a UTC day starts.
CREATE FUNCTION rd_utc_day_start(p_day date) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT p_day::timestamp AT TIME ZONE 'UTC' $$;

-- Statement trigger on stage_history: takes the shared lock of every tenant the statement
-- touched, then records its rows dated before their tenant's mark as deltas (+1 written,
-- -1 removed). Rows of an UPDATE are both.
CREATE FUNCTION rd_stage_history_track() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM stage_history_days;
        DELETE FROM stage_history_late;
        DELETE FROM stage_history_compacted;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_advisory_xact_lock_shared(1382, (tenant_id % 2147483647)::int)
        FROM (SELECT DISTINCT tenant_id FROM new_rows ORDER BY 1) t;
        INSERT INTO stage_history_late (tenant_id, day, from_stage, to_stage, n)
        SELECT r.tenant_id, rd_utc_day(r.changed_at), r.from_stage, r.to_stage, count(*)
        FROM new_rows r JOIN stage_history_compacted m ON m.tenant_id = r.tenant_id
        WHERE r.changed_at < rd_utc_day_start(m.through)
        GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_advisory_xact_lock_shared(1382, (tenant_id % 2147483647)::int)
        FROM (SELECT DISTINCT tenant_id FROM old_rows ORDER BY 1) t;
        INSERT INTO stage_history_late (tenant_id, day, from_stage, to_stage, n)
        SELECT r.tenant_id, rd_utc_day(r.changed_at), r.from_stage, r.to_stage, -count(*)
        FROM old_rows r JOIN stage_history_compacted m ON m.tenant_id = r.tenant_id
        WHERE r.changed_at < rd_utc_day_start(m.through)
        GROUP BY 1, 2, 3, 4;
    ELSE
        PERFORM pg_advisory_xact_lock_shared(1382, (tenant_id % 2147483647)::int)
        FROM (SELECT tenant_id FROM new_rows UNION SELECT tenant_id FROM old_rows ORDER BY 1) t;
        INSERT INTO stage_history_late (tenant_id, day, from_stage, to_stage, n)
        SELECT r.tenant_id, rd_utc_day(r.changed_at), r.from_stage, r.to_stage, sum(r.n)
        FROM (SELECT tenant_id, changed_at, from_stage, to_stage, 1 AS n FROM new_rows
              UNION ALL
              SELECT tenant_id, changed_at, from_stage, to_stage, -1 FROM old_rows) r
        JOIN stage_history_compacted m ON m.tenant_id = r.tenant_id
        WHERE r.changed_at < rd_utc_day_start(m.through)
        GROUP BY 1, 2, 3, 4
        HAVING sum(r.n) <> 0;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER stage_history_track_insert AFTER INSERT ON stage_history
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rd_stage_history_track();
CREATE TRIGGER stage_history_track_update AFTER UPDATE ON stage_history
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rd_stage_history_track();
CREATE TRIGGER stage_history_track_delete AFTER DELETE ON stage_history
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rd_stage_history_track();
CREATE TRIGGER stage_history_track_truncate AFTER TRUNCATE ON stage_history
    FOR EACH STATEMENT EXECUTE FUNCTION rd_stage_history_track();

-- Folds the tenant's deltas into stage_history_days, then, when a UTC day has ended since its
-- mark, aggregates the changes of the days up to today's start and moves the mark there.
-- Returns the number of days the mark moved (0: none had ended), or -1 when writers of the
-- tenant kept its lock for a whole second (the next round tries again).
CREATE FUNCTION rd_stage_history_compact(p_tenant bigint) RETURNS int
LANGUAGE plpgsql SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    upto date := rd_utc_day(now());
    since date;
    folded bigint;
BEGIN
    -- deltas: only inserted by writers, so no lock is needed to move them (a concurrent fold
    -- finds the rows it would delete gone and skips them)
    WITH l AS (
        DELETE FROM stage_history_late WHERE tenant_id = p_tenant
        RETURNING day, from_stage, to_stage, n)
    INSERT INTO stage_history_days AS d (tenant_id, day, from_stage, to_stage, n)
    SELECT p_tenant, day, from_stage, to_stage, sum(n) FROM l GROUP BY day, from_stage, to_stage
    ON CONFLICT (tenant_id, day, from_stage, to_stage) DO UPDATE SET n = d.n + EXCLUDED.n;
    GET DIAGNOSTICS folded = ROW_COUNT;
    IF folded > 0 THEN
        DELETE FROM stage_history_days WHERE tenant_id = p_tenant AND n = 0;
    END IF;

    SELECT c.through INTO since FROM stage_history_compacted c WHERE c.tenant_id = p_tenant;
    IF since >= upto THEN
        RETURN 0;
    END IF;
    FOR attempt IN 1..100 LOOP
        EXIT WHEN pg_try_advisory_xact_lock(1382, (p_tenant % 2147483647)::int);
        IF attempt = 100 THEN
            RETURN -1;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    -- under the lock: every writer that could have read an older mark has committed
    SELECT c.through INTO since FROM stage_history_compacted c WHERE c.tenant_id = p_tenant;
    IF since >= upto THEN
        RETURN 0;
    END IF;
    INSERT INTO stage_history_days (tenant_id, day, from_stage, to_stage, n)
    SELECT p_tenant, rd_utc_day(h.changed_at), h.from_stage, h.to_stage, count(*)
    FROM stage_history h
    WHERE h.tenant_id = p_tenant AND h.changed_at >= rd_utc_day_start(coalesce(since, '-infinity'))
      AND h.changed_at < rd_utc_day_start(upto)
    GROUP BY 2, 3, 4;
    INSERT INTO stage_history_compacted AS c (tenant_id, through) VALUES (p_tenant, upto)
    ON CONFLICT (tenant_id) DO UPDATE SET through = EXCLUDED.through;
    RETURN CASE WHEN since IS NULL THEN 1 ELSE upto - since END;
END $$;

-- Every tenant's history up to today, now: the trigger above holds stage_history's writers
-- off until this migration commits.
INSERT INTO stage_history_days (tenant_id, day, from_stage, to_stage, n)
SELECT tenant_id, rd_utc_day(changed_at), from_stage, to_stage, count(*)
FROM stage_history WHERE changed_at < rd_utc_day_start(rd_utc_day(now()))
GROUP BY 1, 2, 3, 4;
INSERT INTO stage_history_compacted (tenant_id, through)
SELECT tenant_id, rd_utc_day(now()) FROM tenants;

-- 3. The ladder: rung counts by index, transitions from the daily aggregate and the raw rows
-- of the rest of the period. Same document as 004's.
CREATE OR REPLACE FUNCTION rd_metrics_ladder(p_tenant bigint, p_from timestamptz, p_to timestamptz)
RETURNS json LANGUAGE plpgsql STABLE SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    as_of timestamptz := least(p_to, now());
    w int;
    stages json := '{}';
    mark date;
    d_lo date;           -- whole UTC days [d_lo, d_hi) come from the aggregate,
    d_hi date;
    lo_ts timestamptz;   -- [p_from, lo_ts) and [hi_ts, p_to) from stage_history
    hi_ts timestamptz;
    transitions json;
BEGIN
    SELECT t.advocacy_window_days INTO w FROM tenants t WHERE t.tenant_id = p_tenant;
    IF FOUND THEN
        -- rd_stage's rule: advocate = an order and last_advocacy_at in (as_of - w, as_of];
        -- otherwise by order count, then engagement
        SELECT coalesce(json_object_agg(v.stage, v.n), '{}') INTO stages
        FROM (SELECT count(*) FILTER (WHERE c.order_count = 1) AS one,
                     count(*) FILTER (WHERE c.order_count >= 2) AS more
              FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count > 0) k,
             (SELECT count(*) FILTER (WHERE c.first_engaged_at IS NOT NULL) AS engaged,
                     count(*) FILTER (WHERE c.first_engaged_at IS NULL) AS idle
              FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count = 0) z,
             (SELECT count(*) FILTER (WHERE c.order_count = 1) AS one,
                     count(*) FILTER (WHERE c.order_count >= 2) AS more
              FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count > 0
                AND c.last_advocacy_at <= as_of AND c.last_advocacy_at > as_of - make_interval(days => w)) a,
             LATERAL (VALUES ('suspect', z.idle), ('prospect', z.engaged), ('customer', k.one - a.one),
                             ('client', k.more - a.more), ('advocate', a.one + a.more)) v(stage, n)
        WHERE v.n > 0;
    END IF;

    SELECT c.through INTO mark FROM stage_history_compacted c WHERE c.tenant_id = p_tenant;
    d_lo := rd_utc_day(p_from - interval '1 microsecond') + 1;
    d_hi := least(rd_utc_day(p_to), coalesce(mark, '-infinity'));
    IF d_lo < d_hi THEN
        lo_ts := rd_utc_day_start(d_lo);
        hi_ts := rd_utc_day_start(d_hi);
    ELSE
        d_lo := NULL;
        lo_ts := p_to;
        hi_ts := p_to;
    END IF;
    SELECT coalesce(json_agg(json_build_object('from', x.from_stage, 'to', x.to_stage, 'count', x.n)
                             ORDER BY x.n DESC, x.from_stage, x.to_stage), '[]') INTO transitions
    FROM (SELECT s.from_stage, s.to_stage, sum(s.n)::bigint AS n FROM (
              SELECT d.from_stage, d.to_stage, d.n FROM stage_history_days d
              WHERE d.tenant_id = p_tenant AND d.day >= d_lo AND d.day < d_hi
              UNION ALL
              SELECT l.from_stage, l.to_stage, l.n FROM stage_history_late l
              WHERE l.tenant_id = p_tenant AND l.day >= d_lo AND l.day < d_hi
              UNION ALL
              SELECT h.from_stage, h.to_stage, 1 FROM stage_history h
              WHERE h.tenant_id = p_tenant AND h.changed_at >= p_from AND h.changed_at < lo_ts
              UNION ALL
              SELECT h.from_stage, h.to_stage, 1 FROM stage_history h
              WHERE h.tenant_id = p_tenant AND h.changed_at >= hi_ts AND h.changed_at < p_to) s
          GROUP BY 1, 2 HAVING sum(s.n) <> 0) x;
    RETURN json_build_object('stages', stages, 'transitions', transitions);
END $$;

-- 4. The customer list.

-- A listed customer, as 005 and the service rendered it (the service added the segment).
CREATE FUNCTION rd_customer_list_item(p_id text, p_email text, p_stage text, p_status text, p_count int,
                                      p_revenue numeric, p_last timestamptz, p_r int, p_f int, p_m int,
                                      p_alive float8, p_expected float8, p_clv float8)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'customer_id', p_id, 'email', p_email, 'stage', p_stage, 'status', p_status,
        'order_count', p_count, 'net_revenue', p_revenue, 'last_order_at', p_last,
        'rfm', CASE WHEN p_r IS NOT NULL THEN json_build_object('r', p_r, 'f', p_f, 'm', p_m,
                                                                'segment', rd_rfm_segment(p_r, p_f)) END,
        'p_alive', p_alive, 'expected_orders', p_expected, 'predicted_clv', p_clv)
$$;

-- The key of a sort as the cursor carries it: text as PostgreSQL prints it, so that it reads
-- back exactly; null when the customer has none (and for sort=customer_id).
CREATE FUNCTION rd_customer_sort_key(p_sort text, p_count int, p_revenue numeric, p_last timestamptz,
                                     p_alive float8, p_clv float8)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE p_sort WHEN 'net_revenue' THEN p_revenue::text WHEN 'order_count' THEN p_count::text
                       WHEN 'last_order_at' THEN to_json(p_last) #>> '{}'
                       WHEN 'p_alive' THEN p_alive::text WHEN 'predicted_clv' THEN p_clv::text END
$$;

-- The reply to GET /v1/customers, whole: the page's items, its size, and when it is full the
-- cursor after its last row (its key and id as a JSON array, hex-encoded: opaque, URL-safe).
-- Built here so that the service sends it as it is, and amounts never pass through a double.
CREATE FUNCTION rd_customer_list_doc(p_items json, p_count bigint, p_limit int, p_last_key text, p_last_id text)
RETURNS json LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object(
        'customers', coalesce(p_items, '[]'),
        'next_cursor', CASE WHEN p_count > 0 AND p_count = p_limit
                            THEN encode(convert_to(json_build_array(p_last_key, p_last_id)::text, 'UTF8'), 'hex') END,
        'count', p_count)
$$;

-- Filtered lists and the prediction sorts: every customer of the tenant, filtered, sorted.
-- Order: the sort's key descending, customers without one last, ties by customer_id
-- descending; without a key (sort=customer_id), customer_id ascending. A page continues
-- strictly after (p_after_value, p_after_id) in that order.
CREATE FUNCTION rd_customer_list_scan(p_tenant bigint, p_stage text, p_status text, p_segment text,
                                      p_min_p_alive float8, p_sort text, p_after_value text,
                                      p_after_id text, p_limit int, p_as_of timestamptz)
RETURNS json LANGUAGE plpgsql STABLE SET extra_float_digits = 1 AS $$
DECLARE
    key text := CASE p_sort WHEN 'net_revenue' THEN 'c.net_revenue' WHEN 'order_count' THEN 'c.order_count'
                            WHEN 'last_order_at' THEN 'c.last_order_at' WHEN 'p_alive' THEN 'p.p_alive'
                            WHEN 'predicted_clv' THEN 'p.predicted_clv' END;
    typ text := CASE p_sort WHEN 'net_revenue' THEN 'numeric' WHEN 'order_count' THEN 'int'
                            WHEN 'last_order_at' THEN 'timestamptz' ELSE 'float8' END;
    after text;
    order_by text;
    result json;
BEGIN
    IF key IS NULL THEN
        key := 'NULL::int';
        after := 'c.customer_id > $8';
        order_by := 'customer_id';
    ELSE
        after := format('CASE WHEN $7 IS NULL THEN %1$s IS NULL AND c.customer_id < $8
                              ELSE %1$s IS NULL OR %1$s < $7::%2$s
                                   OR (%1$s = $7::%2$s AND c.customer_id < $8) END', key, typ);
        order_by := 'sort_key DESC NULLS LAST, customer_id DESC';
    END IF;
    EXECUTE format($q$
        WITH base AS (
            SELECT c.*, t.advocacy_window_days, t.activity_window_days, t.at_risk_gap_factor, t.at_risk_p_alive,
                   p.p_alive, p.expected_orders, p.predicted_clv, %1$s AS sort_key
            FROM customers c JOIN tenants t USING (tenant_id)
            LEFT JOIN customer_predictions p ON p.tenant_id = c.tenant_id AND p.customer_id = c.customer_id
            WHERE c.tenant_id = $1
              AND ($6::float8 IS NULL OR p.p_alive >= $6)
              AND ($8 IS NULL OR %2$s)),
        rfm AS (
            SELECT customer_id,
                   ntile(5) OVER (ORDER BY last_order_at, customer_id) AS r,
                   ntile(5) OVER (ORDER BY order_count, customer_id) AS f,
                   ntile(5) OVER (ORDER BY net_revenue, customer_id) AS m
            FROM customers WHERE tenant_id = $1 AND order_count > 0 AND $4 IS NOT NULL),
        rows AS (
            SELECT b.*, rfm.r, rfm.f, rfm.m,
                   rd_stage(b.order_count, b.event_count > 0, b.last_advocacy_at, $10, b.advocacy_window_days) AS stage_now,
                   rd_status(b.first_order_at, b.last_order_at, b.order_count, $10, b.activity_window_days,
                             b.at_risk_gap_factor, b.p_alive, b.at_risk_p_alive) AS status_now
            FROM base b LEFT JOIN rfm USING (customer_id))
        SELECT rd_customer_list_doc(
                   json_agg(rd_customer_list_item(customer_id, email, stage_now, status_now, order_count,
                                                  net_revenue, last_order_at, r, f, m,
                                                  p_alive, expected_orders, predicted_clv) ORDER BY pos),
                   count(*), $9,
                   (array_agg(rd_customer_sort_key($5, order_count, net_revenue, last_order_at, p_alive,
                                                   predicted_clv) ORDER BY pos DESC))[1],
                   (array_agg(customer_id ORDER BY pos DESC))[1])
        FROM (SELECT page.*, row_number() OVER (ORDER BY %3$s) AS pos
              FROM (SELECT * FROM rows
                    WHERE ($2 IS NULL OR stage_now = $2) AND ($3 IS NULL OR status_now = $3)
                      AND ($4 IS NULL OR rd_rfm_segment(r, f) = $4)
                    ORDER BY %3$s LIMIT $9) page) x
    $q$, key, after, order_by)
    INTO result
    USING p_tenant, p_stage, p_status, p_segment, p_sort, p_min_p_alive, p_after_value, p_after_id, p_limit, p_as_of;
    RETURN result;
END $$;

-- Lists for campaigns (005's filters and keyset pagination, with the order of
-- rd_customer_list_scan), returning the whole reply (rd_customer_list_doc). The
-- unfiltered page by net_revenue, order_count, last_order_at or customer_id reads only its
-- candidates through indexes: the first p_limit after the cursor among customers with orders
-- (a rank index of 005, walked backward) and among those without (customers_without_orders,
-- where net_revenue and order_count are 0 and last_order_at null: in key order when in
-- customer_id order), then reads those rows by primary key and keeps the first p_limit.
CREATE OR REPLACE FUNCTION rd_customer_list(p_tenant bigint, p_stage text, p_status text, p_segment text,
                                            p_min_p_alive float8, p_sort text, p_after_value text,
                                            p_after_id text, p_limit int, p_as_of timestamptz)
RETURNS json LANGUAGE plpgsql STABLE
SET jit = off SET plan_cache_mode = force_generic_plan SET extra_float_digits = 1 AS $$
DECLARE
    ids text[] := '{}';
    rest text := 'none';   -- customers without orders after the cursor: 'all', 'after' (p_after_id), 'none'
BEGIN
    IF p_stage IS NOT NULL OR p_status IS NOT NULL OR p_segment IS NOT NULL OR p_min_p_alive IS NOT NULL
       OR p_sort IN ('p_alive', 'predicted_clv') THEN
        RETURN rd_customer_list_scan(p_tenant, p_stage, p_status, p_segment, p_min_p_alive, p_sort,
                                     p_after_value, p_after_id, p_limit, p_as_of);
    END IF;

    IF p_sort = 'net_revenue' THEN
        IF p_after_id IS NULL THEN
            ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count > 0
                         ORDER BY c.net_revenue DESC, c.customer_id DESC LIMIT p_limit);
            rest := 'all';
        ELSE
            ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count > 0
                           AND (c.net_revenue, c.customer_id) < (p_after_value::numeric, p_after_id)
                         ORDER BY c.net_revenue DESC, c.customer_id DESC LIMIT p_limit);
            rest := CASE sign(p_after_value::numeric) WHEN 1 THEN 'all' WHEN 0 THEN 'after' ELSE 'none' END;
        END IF;
    ELSIF p_sort = 'order_count' THEN
        IF p_after_id IS NULL THEN
            ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count > 0
                         ORDER BY c.order_count DESC, c.customer_id DESC LIMIT p_limit);
            rest := 'all';
        ELSE
            ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count > 0
                           AND (c.order_count, c.customer_id) < (p_after_value::int, p_after_id)
                         ORDER BY c.order_count DESC, c.customer_id DESC LIMIT p_limit);
            rest := CASE sign(p_after_value::int) WHEN 1 THEN 'all' WHEN 0 THEN 'after' ELSE 'none' END;
        END IF;
    ELSIF p_sort = 'last_order_at' THEN
        -- customers without orders have no last order: they come after every dated one
        IF p_after_id IS NULL THEN
            ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count > 0
                         ORDER BY c.last_order_at DESC, c.customer_id DESC LIMIT p_limit);
            rest := 'all';
        ELSIF p_after_value IS NULL THEN
            rest := 'after';
        ELSE
            ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count > 0
                           AND (c.last_order_at, c.customer_id) < (p_after_value::timestamptz, p_after_id)
                         ORDER BY c.last_order_at DESC, c.customer_id DESC LIMIT p_limit);
            rest := 'all';
        END IF;
    ELSIF p_after_id IS NULL THEN
        ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant
                     ORDER BY c.customer_id LIMIT p_limit);
    ELSE
        ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id > p_after_id
                     ORDER BY c.customer_id LIMIT p_limit);
    END IF;
    -- a full page of customers with orders whose last one still comes before every customer
    -- without (net_revenue above 0; any order count or last order does): nothing to merge
    IF rest = 'all' AND cardinality(ids) = p_limit
       AND (p_sort <> 'net_revenue' OR (SELECT c.net_revenue > 0 FROM customers c
                                        WHERE c.tenant_id = p_tenant AND c.customer_id = ids[p_limit])) THEN
        rest := 'none';
    END IF;
    IF rest = 'all' THEN
        ids := ids || ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count = 0
                            ORDER BY c.customer_id DESC LIMIT p_limit);
    ELSIF rest = 'after' THEN
        ids := ids || ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count = 0
                              AND c.customer_id < p_after_id
                            ORDER BY c.customer_id DESC LIMIT p_limit);
    END IF;

    -- the candidates' rows by primary key, in the list's order
    RETURN (SELECT rd_customer_list_doc(
                       json_agg(rd_customer_list_item(x.customer_id, x.email,
                           rd_stage(x.order_count, x.event_count > 0, x.last_advocacy_at, p_as_of, t.advocacy_window_days),
                           rd_status(x.first_order_at, x.last_order_at, x.order_count, p_as_of, t.activity_window_days,
                                     t.at_risk_gap_factor, x.p_alive, t.at_risk_p_alive),
                           x.order_count, x.net_revenue, x.last_order_at, NULL, NULL, NULL,
                           x.p_alive, x.expected_orders, x.predicted_clv) ORDER BY x.pos),
                       count(*), p_limit,
                       (array_agg(rd_customer_sort_key(p_sort, x.order_count, x.net_revenue, x.last_order_at,
                                                       x.p_alive, x.predicted_clv) ORDER BY x.pos DESC))[1],
                       (array_agg(x.customer_id ORDER BY x.pos DESC))[1])
            FROM (SELECT page.*, row_number() OVER (ORDER BY k1 DESC NULLS LAST, k2 DESC NULLS LAST,
                                                    k3 DESC NULLS LAST, desc_id DESC, customer_id) AS pos
                  FROM (SELECT c.*, p.p_alive, p.expected_orders, p.predicted_clv,
                               CASE WHEN p_sort = 'net_revenue' THEN c.net_revenue END AS k1,
                               CASE WHEN p_sort = 'order_count' THEN c.order_count END AS k2,
                               CASE WHEN p_sort = 'last_order_at' THEN c.last_order_at END AS k3,
                               CASE WHEN p_sort IN ('net_revenue', 'order_count', 'last_order_at')
                                    THEN c.customer_id END AS desc_id
                        FROM unnest(ids) AS i(id)
                        CROSS JOIN LATERAL (SELECT * FROM customers c
                                            WHERE c.tenant_id = p_tenant AND c.customer_id = i.id OFFSET 0) c
                        LEFT JOIN LATERAL (SELECT * FROM customer_predictions p
                                           WHERE p.tenant_id = p_tenant AND p.customer_id = i.id OFFSET 0) p ON true
                        ORDER BY k1 DESC NULLS LAST, k2 DESC NULLS LAST, k3 DESC NULLS LAST, desc_id DESC,
                                 c.customer_id
                        LIMIT p_limit) page) x
            JOIN tenants t ON t.tenant_id = p_tenant);
END $$;
