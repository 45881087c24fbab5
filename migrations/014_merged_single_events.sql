-- 014_merged_single_events.sql - concurrent single events share one ingest call, as orders do
-- since 012.
--
-- The service merges the single events of a commit group (all but referrals, which touch a
-- second customer) into rounds where no customer and no event id repeats. A call of one event
-- dates its customer's rung change at the event's occurred_at; rd_ingest_events_each passes
-- each customer's occurred_at to rd_rollup_apply through rd.change_at (012), so a merged call
-- dates it the same way.
CREATE FUNCTION rd_ingest_events_each(
    p_tenant bigint, p_ids text[], p_customers text[], p_types text[], p_occurred timestamptz[],
    p_properties jsonb[], p_source text)
RETURNS TABLE (idx int, outcome text) LANGUAGE plpgsql
SET jit = off SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    PERFORM set_config('rd.change_at',
        coalesce((SELECT jsonb_object_agg(cu, at) FROM unnest(p_customers, p_occurred) AS u(cu, at))::text, ''),
        true);
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_ingest_events(p_tenant, p_ids, p_customers, p_types,
        p_occurred, p_properties, p_source) r;
    PERFORM set_config('rd.change_at', '', true);
END $$;
