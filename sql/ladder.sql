-- ladder.sql - the loyalty ladder report: rung counts at as_of and the transitions of a period.
--
-- Rungs. A rung at as_of depends on the order count, on whether the customer engaged, and, for
-- the advocates only, on last_advocacy_at falling in (as_of - window, as_of]. So the counts come
-- from three index-only scans: customers_rfm_f counts those with one and with more orders,
-- customers_without_orders those without, split by engagement, and customers_advocacy the
-- advocates among the first two, by a range of last_advocacy_at (indexes of
-- migrations/001_baseline.sql). Engagement is read from first_engaged_at, which an event changes
-- only when it is the customer's earliest: an indexed column that changes takes away the
-- heap-only (HOT) update an event can otherwise get.
--
-- Transitions. stage_history_days keeps, per tenant and local day (the tenant's zone, sql/rules.sql), how many changes went from one
-- rung to another, for every day before the tenant's mark (stage_history_compacted.through);

-- the background upkeep moves the mark to the start of the current local day
-- (rd_stage_history_compact). A report reads the aggregate for the whole days of its period
-- before the mark and stage_history itself for the rest: the partial days at its edges and the
-- days from the mark on (today, usually).
--
-- A rung change can be dated long before it is recorded (a late order; a backfill dates it by
-- the customer's latest activity), into a day already compacted. So every statement that
-- changes stage_history also writes, for its rows dated before their tenant's mark, a delta row
-- per (tenant, day, from, to) to stage_history_late, which reports add and the upkeep folds into
-- stage_history_days. Deltas are only ever inserted: concurrent ingest never waits on a shared
-- counter row.
--
-- The one race is between moving the mark and a transaction still writing changes dated before
-- the new mark. A statement changing stage_history therefore holds a shared advisory lock on its
-- tenant (1382, tenant) until it commits, and takes it before reading the mark;

-- rd_stage_history_compact moves the mark only under the exclusive lock, and only by
-- pg_try_advisory_xact_lock: it never queues, so ingest never waits behind a compaction that is
-- itself waiting (a queued exclusive request would make later shared requests wait and could
-- close a cycle with the customer row locks ingest holds).

-- Statement trigger on stage_history: takes the shared lock of every tenant the statement
-- touched, then records its rows dated before their tenant's mark as deltas (+1 written,
-- -1 removed). Rows of an UPDATE are both.
CREATE OR REPLACE FUNCTION rd_stage_history_track()
 RETURNS trigger
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
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
        SELECT r.tenant_id, rd_local_day(r.changed_at, t.timezone), r.from_stage, r.to_stage, count(*)
        FROM new_rows r JOIN stage_history_compacted m ON m.tenant_id = r.tenant_id
        JOIN tenants t ON t.tenant_id = r.tenant_id
        WHERE r.changed_at < rd_local_day_start(m.through, t.timezone)
        GROUP BY 1, 2, 3, 4;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_advisory_xact_lock_shared(1382, (tenant_id % 2147483647)::int)
        FROM (SELECT DISTINCT tenant_id FROM old_rows ORDER BY 1) t;
        INSERT INTO stage_history_late (tenant_id, day, from_stage, to_stage, n)
        SELECT r.tenant_id, rd_local_day(r.changed_at, t.timezone), r.from_stage, r.to_stage, -count(*)
        FROM old_rows r JOIN stage_history_compacted m ON m.tenant_id = r.tenant_id
        JOIN tenants t ON t.tenant_id = r.tenant_id
        WHERE r.changed_at < rd_local_day_start(m.through, t.timezone)
        GROUP BY 1, 2, 3, 4;
    ELSE
        PERFORM pg_advisory_xact_lock_shared(1382, (tenant_id % 2147483647)::int)
        FROM (SELECT tenant_id FROM new_rows UNION SELECT tenant_id FROM old_rows ORDER BY 1) t;
        INSERT INTO stage_history_late (tenant_id, day, from_stage, to_stage, n)
        SELECT r.tenant_id, rd_local_day(r.changed_at, t.timezone), r.from_stage, r.to_stage, sum(r.n)
        FROM (SELECT tenant_id, changed_at, from_stage, to_stage, 1 AS n FROM new_rows
              UNION ALL
              SELECT tenant_id, changed_at, from_stage, to_stage, -1 FROM old_rows) r
        JOIN stage_history_compacted m ON m.tenant_id = r.tenant_id
        JOIN tenants t ON t.tenant_id = r.tenant_id
        WHERE r.changed_at < rd_local_day_start(m.through, t.timezone)
        GROUP BY 1, 2, 3, 4
        HAVING sum(r.n) <> 0;
    END IF;
    RETURN NULL;
END $function$;

CREATE OR REPLACE TRIGGER stage_history_track_delete AFTER DELETE ON stage_history REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rd_stage_history_track();
CREATE OR REPLACE TRIGGER stage_history_track_insert AFTER INSERT ON stage_history REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rd_stage_history_track();
CREATE OR REPLACE TRIGGER stage_history_track_truncate AFTER TRUNCATE ON stage_history FOR EACH STATEMENT EXECUTE FUNCTION rd_stage_history_track();
CREATE OR REPLACE TRIGGER stage_history_track_update AFTER UPDATE ON stage_history REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rd_stage_history_track();

-- The same deltas where the triggers above are absent: on Citus, whose migration drops them
-- (src/store/migrate.c), since a statement trigger fires on the worker's shard, where neither
-- its transition table nor the coordinator's advisory locks are to be had. The service's
-- writers of stage_history call it with the rows they wrote (p_n +1, rd_rollup_apply in
-- sql/rollup.sql) or removed (p_n -1, rd_erase in sql/privacy.sql); where the triggers exist
-- (plain PostgreSQL: they record every writer's rows, an operator's too) it does nothing.
-- Takes the tenant's shared lock before reading the mark, as the triggers do.
CREATE OR REPLACE FUNCTION rd_stage_history_late_add(p_tenant bigint, p_at timestamp with time zone[], p_from text[], p_to text[], p_n integer)
 RETURNS void
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
DECLARE
    mark date;
    zone text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger
               WHERE tgrelid = 'stage_history'::regclass AND tgname = 'stage_history_track_insert') THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1382, (p_tenant % 2147483647)::int);
    SELECT m.through, t.timezone INTO mark, zone
    FROM stage_history_compacted m JOIN tenants t ON t.tenant_id = m.tenant_id
    WHERE m.tenant_id = p_tenant;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO stage_history_late (tenant_id, day, from_stage, to_stage, n)
    SELECT p_tenant, rd_local_day(r.at, zone), r.f, r.t, p_n * count(*)
    FROM unnest(p_at, p_from, p_to) AS r(at, f, t)
    WHERE r.at < rd_local_day_start(mark, zone)
    GROUP BY 2, 3, 4;
END $function$;

-- Folds the tenant's deltas into stage_history_days, then, when a local day has ended since its
-- mark, aggregates the changes of the days up to today's start and moves the mark there.
-- Returns the number of days the mark moved (0: none had ended), or -1 when writers of the
-- tenant kept its lock for a whole second (the next round tries again).
CREATE OR REPLACE FUNCTION rd_stage_history_compact(p_tenant bigint)
 RETURNS integer
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    zone text := rd_tenant_zone(p_tenant);
    upto date := rd_local_day(now(), zone);
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
    SELECT p_tenant, rd_local_day(h.changed_at, zone), h.from_stage, h.to_stage, count(*)
    FROM stage_history h
    WHERE h.tenant_id = p_tenant AND h.changed_at >= rd_local_day_start(coalesce(since, '-infinity'), zone)
      AND h.changed_at < rd_local_day_start(upto, zone)
    GROUP BY 2, 3, 4;
    INSERT INTO stage_history_compacted AS c (tenant_id, through) VALUES (p_tenant, upto)
    ON CONFLICT (tenant_id) DO UPDATE SET through = EXCLUDED.through;
    RETURN CASE WHEN since IS NULL THEN 1 ELSE upto - since END;
END $function$;

-- The ladder: rung counts by index, transitions from the daily aggregate and the raw rows of
-- the rest of the period.
CREATE OR REPLACE FUNCTION rd_metrics_ladder(p_tenant bigint, p_from timestamp with time zone, p_to timestamp with time zone)
 RETURNS json
 LANGUAGE plpgsql
 STABLE
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    as_of timestamptz := least(p_to, now());
    w int;
    zone text;
    stages json := '{}';
    mark date;
    d_lo date;           -- whole local days [d_lo, d_hi) come from the aggregate,
    d_hi date;
    lo_ts timestamptz;   -- [p_from, lo_ts) and [hi_ts, p_to) from stage_history
    hi_ts timestamptz;
    transitions json;
BEGIN
    SELECT t.advocacy_window_days, t.timezone INTO w, zone FROM tenants t WHERE t.tenant_id = p_tenant;
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
    d_lo := rd_local_day(p_from - interval '1 microsecond', zone) + 1;
    d_hi := least(rd_local_day(p_to, zone), coalesce(mark, '-infinity'));
    IF d_lo < d_hi THEN
        lo_ts := rd_local_day_start(d_lo, zone);
        hi_ts := rd_local_day_start(d_hi, zone);
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
END $function$;
