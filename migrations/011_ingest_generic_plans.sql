-- 011_ingest_generic_plans.sql - ingest plans that do not depend on a tenant's statistics.
--
-- A young tenant is missing from the statistics' most-common values of tenant_id, so the planner
-- puts its share of customers and orders at about one row. Costed that way, an index on
-- (tenant_id, ...) used for tenant_id alone looks as good as the primary key used for the whole
-- key, and custom plans picked the former: every single-order request scanned all the tenant's
-- customers (lock, e-mail fill) and orders (previous state), so ingest slowed down linearly as a
-- new shop grew, until autovacuum happened to analyze the shared table (10 % of it changed).
-- Measured on a fresh tenant at ~10 k customers: 70 single-order calls/s without fsync, 480 with
-- generic plans; event backfill 7.4 k -> 24.9 k rows/s.
--
-- A generic plan costs tenant_id = $1 at the average tenant's share, so lookups use the whole
-- key. The arrays' sizes are unknown to it too (ten elements assumed), which suits these
-- functions: every statement in them reads by key per element, and the batch-sized ones were
-- checked to keep their rates (orders 16.8 k -> 18.5 k, customers 23 k -> 24 k rows/s).
ALTER FUNCTION rd_lock_customers(bigint, text[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION rd_rollup_apply(bigint, timestamptz) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION rd_refresh_customers(bigint, text[], timestamptz, boolean)
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION rd_ingest_orders(bigint, text[], text[], timestamptz[], timestamptz[], text[], numeric[],
                                numeric[], numeric[], numeric[], text[], text[], boolean[], text[])
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION rd_ingest_events(bigint, text[], text[], text[], timestamptz[], jsonb[], text)
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION rd_ingest_customers(bigint, text[], text[], timestamptz[], text[], text[], jsonb[])
    SET plan_cache_mode = force_generic_plan;
