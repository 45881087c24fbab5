-- retired.sql - functions and triggers that no longer exist, dropped by name and signature so
-- that a database migrated by an older binary keeps none of them. Applied first: a function
-- whose signature or return type changes is dropped here and created again by its own file.

-- The customer reads return rows instead of JSON documents (sql/customers.sql): the list's
-- item and reply documents are built by the service now, the profile's document too.
DROP FUNCTION IF EXISTS rd_customer_list_item(text, text, text, text, integer, numeric, timestamp with time zone, integer, integer, integer, double precision, double precision, double precision);
DROP FUNCTION IF EXISTS rd_customer_list_doc(json, bigint, integer, text, text);
DROP FUNCTION IF EXISTS rd_customer_profile(bigint, text, timestamp with time zone);
-- return type changed (json to rows); then p_r and p_f added (the lists' R and F filters)
DROP FUNCTION IF EXISTS rd_customer_list(bigint, text, text, text, double precision, text, text, text, integer, timestamp with time zone);
DROP FUNCTION IF EXISTS rd_customer_list_scan(bigint, text, text, text, double precision, text, text, text, integer, timestamp with time zone);
DROP FUNCTION IF EXISTS rd_customer_profile_page(bigint, text, timestamp with time zone);
-- p_need dropped, return type changed
DROP FUNCTION IF EXISTS rd_customer_list_next(bigint, text, text, text, integer, integer, text, text, text, double precision, timestamp with time zone);
-- return type changed (json to a record of n, computed_at, r, f, m: sql/rules.sql)
DROP FUNCTION IF EXISTS rd_rfm_scores(bigint, timestamp with time zone, integer, numeric, text);
-- The summary, retention series and cohort matrix are computed by the service alone
-- (src/domain/reports.c, over the snapshot or rows streamed from PostgreSQL).
DROP FUNCTION IF EXISTS rd_metrics_summary(bigint, timestamp with time zone, timestamp with time zone, integer);
DROP FUNCTION IF EXISTS rd_metrics_retention(bigint, timestamp with time zone, timestamp with time zone, integer, text);
DROP FUNCTION IF EXISTS rd_metrics_retention_scan(bigint, timestamp with time zone, timestamp with time zone, integer, text);
DROP FUNCTION IF EXISTS rd_metrics_cohorts(bigint, timestamp with time zone, timestamp with time zone, text);
DROP FUNCTION IF EXISTS rd_active_at(bigint, timestamp with time zone, integer);
-- Days are the tenant's local days (rd_local_day, rd_local_day_start: sql/rules.sql).
DROP FUNCTION IF EXISTS rd_utc_day(timestamp with time zone);
DROP FUNCTION IF EXISTS rd_utc_day_start(date);
-- result columns added (the activity window's start of each instant)
DROP FUNCTION IF EXISTS rd_report_frame(bigint, timestamp with time zone, timestamp with time zone, integer, text);
-- p_updated added (a customer record older than the stored one changes nothing)
DROP FUNCTION IF EXISTS rd_ingest_customers(bigint, text[], text[], timestamp with time zone[], text[], text[], jsonb[]);
