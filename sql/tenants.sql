-- tenants.sql - changes to a tenant's settings that reach into what was computed under them.

-- Moves a tenant to another time zone (an IANA name), in one transaction: the purchase days of
-- every customer's rollup (CLV occasions are local days, sql/rollup.sql) are recomputed, and
-- the ladder's daily aggregate (sql/ladder.sql) is dropped with its mark, so the ladder reads
-- stage_history itself until the upkeep has aggregated the days again, in the new calendar.
-- The report snapshots hold instants only, and each report resolves its calendar afresh. The
-- rollups are recomputed first, which locks the customers in the order ingest does, and the
-- aggregate's lock (1382, tenant) is taken after them, as ingest takes it: a zone change waits
-- for the writers of the moment and they for it, never in a cycle. Returns false when the
-- tenant is unknown; raises invalid_parameter_value (22023) for an unknown zone.
CREATE OR REPLACE FUNCTION rd_tenant_set_timezone(p_tenant bigint, p_zone text)
 RETURNS boolean
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
DECLARE
    old text;
    ids text[];
BEGIN
    IF NOT rd_zone_known(p_zone) THEN
        RAISE EXCEPTION 'unknown time zone "%"', p_zone USING ERRCODE = 'invalid_parameter_value',
            HINT = 'an IANA name such as Europe/Berlin or America/New_York';
    END IF;
    SELECT timezone INTO old FROM tenants WHERE tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF old = p_zone THEN
        RETURN true;
    END IF;
    UPDATE tenants SET timezone = p_zone WHERE tenant_id = p_tenant;
    SELECT array_agg(customer_id ORDER BY customer_id) INTO ids
    FROM customers WHERE tenant_id = p_tenant AND order_count > 0;
    IF ids IS NOT NULL THEN
        PERFORM rd_lock_customers(p_tenant, ids);
        PERFORM rd_refresh_customers(p_tenant, ids, NULL, false);
    END IF;
    PERFORM pg_advisory_xact_lock(1382, (p_tenant % 2147483647)::int);
    DELETE FROM stage_history_days WHERE tenant_id = p_tenant;
    DELETE FROM stage_history_late WHERE tenant_id = p_tenant;
    DELETE FROM stage_history_compacted WHERE tenant_id = p_tenant;
    RETURN true;
END $function$;
