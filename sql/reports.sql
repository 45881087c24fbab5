-- reports.sql - what the period reports (summary, retention, cohorts; SPEC §4) need from
-- PostgreSQL, and the change tracking that keeps the service's report snapshots exact.
--
-- The reports are computed by the service over each customer's qualifying orders
-- (src/domain/reports.c), held in memory per tenant (src/store/report_snapshot.c) or, for a
-- tenant beyond the snapshot budget, streamed from PostgreSQL (src/store/report_stream.c). What makes
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

-- Everything a period report needs from PostgreSQL besides the customers and orders, in the
-- same statement as the snapshot it is read in: the period with its defaults resolved (the
-- head of the reply, with the time zone), its bounds in microseconds since 1970, the boundaries
-- of p_unit's periods (the period before the first, the starts, the end of the last; empty
-- when the period holds none) both in microseconds and as JSON timestamps, where the activity
-- window of each instant starts (W days before it: from's, to's, each boundary's), the spend
-- of the period, and the snapshot itself. It runs with TimeZone set to the tenant's zone
-- (src/store/reports.c): date_trunc, the units and the window's days are local, so a period
-- with a daylight-saving change is an hour shorter or longer, exactly. Only the spend's
-- statement reads a tenant table; everything cut in the calendar is computed apart from it,
-- on the server the function runs on (the coordinator, on Citus).
CREATE OR REPLACE FUNCTION rd_report_frame(p_tenant bigint, p_from timestamp with time zone, p_to timestamp with time zone, p_window integer, p_unit text)
 RETURNS TABLE(head text, from_us bigint, to_us bigint, window_days integer, bounds_us bigint[], bounds json, from_window_us bigint, to_window_us bigint, bounds_window_us bigint[], acquisition_spend numeric, retention_spend numeric, snap text)
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    v_f timestamptz;
    v_t timestamptz;
    v_w int;
    v_zone text;
    d_from date;
    d_to date;
    acq numeric;
    ret numeric;
BEGIN
    SELECT coalesce(p_from, coalesce(p_to, now()) - interval '12 months'), coalesce(p_to, now()),
           coalesce(p_window, t.activity_window_days), t.timezone
    INTO v_f, v_t, v_w, v_zone
    FROM tenants t WHERE t.tenant_id = p_tenant;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- the period's local dates, cut here: on Citus the spend's statement runs on a worker,
    -- whose TimeZone is not the transaction's
    d_from := v_f::date;
    d_to := v_t::date;
    SELECT sum(s.amount) FILTER (WHERE s.kind = 'acquisition'), sum(s.amount) FILTER (WHERE s.kind = 'retention')
    INTO acq, ret
    FROM spend s WHERE s.tenant_id = p_tenant AND s.period_start >= d_from AND s.period_start < d_to;
    RETURN QUERY
    WITH x AS (SELECT v_f AS f, v_t AS t_, v_w AS w, v_zone AS zone),
    starts AS (
        SELECT gs FROM x, generate_series(date_trunc(p_unit, x.f), x.t_ - interval '1 microsecond',
                                          rd_unit_interval(p_unit)) gs
        WHERE p_unit IS NOT NULL),
    b AS (
        SELECT gs FROM starts
        UNION ALL SELECT min(gs) - rd_unit_interval(p_unit) FROM starts HAVING count(*) > 0
        UNION ALL SELECT max(gs) + rd_unit_interval(p_unit) FROM starts HAVING count(*) > 0)
    SELECT json_build_object('from', x.f, 'to', x.t_, 'window_days', x.w,
                             'period_days', extract(epoch FROM x.t_ - x.f) / 86400, 'timezone', x.zone)::text,
           rd_report_us(x.f), rd_report_us(x.t_), x.w,
           (SELECT coalesce(array_agg(rd_report_us(gs) ORDER BY gs), '{}') FROM b),
           (SELECT coalesce(json_agg(gs ORDER BY gs), '[]') FROM b),
           rd_report_us(x.f - make_interval(days => x.w)), rd_report_us(x.t_ - make_interval(days => x.w)),
           (SELECT coalesce(array_agg(rd_report_us(gs - make_interval(days => x.w)) ORDER BY gs), '{}') FROM b),
           acq, ret, pg_current_snapshot()::text
    FROM x;
END $function$;

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
 LANGUAGE plpgsql
 STABLE
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT NULL::text FROM report_changes_horizon h WHERE pg_snapshot_xmin(p_snap) < h.horizon
    UNION ALL
    (SELECT DISTINCT r.customer_id FROM report_changes r
     WHERE r.tenant_id = p_tenant AND r.xid >= pg_snapshot_xmin(p_snap)
       AND NOT pg_visible_in_snapshot(r.xid, p_snap)
     LIMIT p_limit);
END $function$;

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
