-- rules.sql - the business rules the SQL side applies row by row: calendar helpers, the rung
-- (SPEC §4's ladder), the status, the advocacy signal, and the RFM quintiles and grid.
--
-- Where the service needs the same rule in C (src/domain/), a test compares the two over every
-- case (tests/integration/test_rules.py).

CREATE OR REPLACE FUNCTION rd_unit_interval(p_unit text)
 RETURNS interval
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT CASE p_unit WHEN 'week' THEN interval '1 week' WHEN 'quarter' THEN interval '3 months'
                       ELSE interval '1 month' END
$function$;

-- The shop's calendar (SPEC §8). Every tenant has an IANA zone (tenants.timezone, default UTC);
-- its days, weeks, months, quarters, cohorts, ladder days and CLV purchase occasions are local.
-- Functions that cut time into days take the zone explicitly; a tenant's report transaction
-- also sets TimeZone to it (src/store/reports.c), so that date_trunc, interval arithmetic and
-- the instants written in replies are local there too.
CREATE OR REPLACE FUNCTION rd_tenant_zone(p_tenant bigint)
 RETURNS text
 LANGUAGE plpgsql
 STABLE PARALLEL SAFE
AS $function$ BEGIN RETURN (SELECT timezone FROM tenants WHERE tenant_id = p_tenant); END $function$;

-- Whether PostgreSQL's zone database knows p_zone by that name (IANA names; no abbreviations
-- or POSIX offsets, whose meaning is not a place's calendar).
CREATE OR REPLACE FUNCTION rd_zone_known(p_zone text)
 RETURNS boolean
 LANGUAGE sql
 STABLE
AS $function$ SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_zone) $function$;

-- The local calendar day of an instant.
CREATE OR REPLACE FUNCTION rd_local_day(p_at timestamp with time zone, p_zone text)
 RETURNS date
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT (p_at AT TIME ZONE p_zone)::date $function$;

-- The instant a local day starts (its midnight; on a day whose midnight a clock change skips,
-- the first instant of the day).
CREATE OR REPLACE FUNCTION rd_local_day_start(p_day date, p_zone text)
 RETURNS timestamp with time zone
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT p_day::timestamp AT TIME ZONE p_zone $function$;

-- A parameter as an instant: an RFC 3339 instant as it is; a date YYYY-MM-DD as the local
-- midnight that starts it, or, with p_end_of_day, the one that ends it (an as_of date counts
-- its whole day, as lifetimes' observation_period_end does).
CREATE OR REPLACE FUNCTION rd_param_instant(p text, p_zone text, p_end_of_day boolean)
 RETURNS timestamp with time zone
 LANGUAGE sql
 STABLE
AS $function$
    SELECT CASE WHEN p ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'
                THEN rd_local_day_start(p::date + p_end_of_day::int, p_zone)
                ELSE p::timestamptz END
$function$;

-- The ladder rule (SPEC §4), one definition used by ingest and by reads at any as_of. STABLE,
-- which it is (timestamptz - interval depends on the session's TimeZone), so that PostgreSQL
-- inlines it into the queries that call it per row.
CREATE OR REPLACE FUNCTION rd_stage(order_count integer, engaged boolean, last_advocacy timestamp with time zone, as_of timestamp with time zone, advocacy_days integer)
 RETURNS text
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
    SELECT CASE
        WHEN order_count >= 1 AND last_advocacy IS NOT NULL AND last_advocacy <= as_of
             AND last_advocacy > as_of - make_interval(days => advocacy_days) THEN 'advocate'
        WHEN order_count >= 2 THEN 'client'
        WHEN order_count = 1 THEN 'customer'
        WHEN engaged THEN 'prospect'
        ELSE 'suspect' END
$function$;

-- Status (SPEC §4): lapsed = not active at as_of (no qualifying order in the window);
-- at_risk = active but P(alive) under the tenant's threshold, or no order for more than
-- gap_factor x the customer's usual gap; active otherwise. NULL for customers without orders.
-- The lists decide it here with the stored prediction; the profile decides it in the service
-- with the live P(alive), by its twin rules_status (src/domain/rules.c), which
-- tests/integration/test_rules.py holds equal to this one over every branch and boundary.
CREATE OR REPLACE FUNCTION rd_status(p_first timestamp with time zone, p_last timestamp with time zone, p_n integer, p_as_of timestamp with time zone, p_window integer, p_gap_factor double precision, p_alive double precision, p_alive_min double precision)
 RETURNS text
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
    SELECT CASE
        WHEN p_n = 0 OR p_last IS NULL THEN NULL
        WHEN p_last < p_as_of - make_interval(days => p_window) THEN 'lapsed'
        WHEN p_alive IS NOT NULL AND p_alive < p_alive_min THEN 'at_risk'
        WHEN p_n >= 2 AND extract(epoch FROM p_as_of - p_last)
                          > p_gap_factor * extract(epoch FROM p_last - p_first) / (p_n - 1) THEN 'at_risk'
        ELSE 'active' END
$function$;

-- Which advocacy signal an engagement event is, if any (SPEC §4): a review rated at least
-- min_review, or an NPS answer scoring at least min_nps.
CREATE OR REPLACE FUNCTION rd_advocacy_kind(p_type text, p_props jsonb, p_min_review integer, p_min_nps integer)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE
        WHEN p_type = 'review' AND jsonb_typeof(p_props->'rating') = 'number'
             AND (p_props->>'rating')::numeric >= p_min_review THEN 'review'
        WHEN p_type = 'nps' AND jsonb_typeof(p_props->'score') = 'number'
             AND (p_props->>'score')::numeric >= p_min_nps THEN 'nps' END
$function$;

-- The R x F segment grid (SPEC §4), used by the lists and the profile (which read it in their
-- statements: the service has no copy).
CREATE OR REPLACE FUNCTION rd_rfm_segment(r integer, f integer)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE
        WHEN r IS NULL THEN 'prospect'
        WHEN r = 5 AND f >= 4 THEN 'champions'
        WHEN r IN (3, 4) AND f >= 4 THEN 'loyal'
        WHEN r >= 4 AND f IN (2, 3) THEN 'potential_loyalist'
        WHEN r = 5 AND f = 1 THEN 'new'
        WHEN r = 4 AND f = 1 THEN 'promising'
        WHEN r = 3 AND f = 3 THEN 'need_attention'
        WHEN r = 3 AND f <= 2 THEN 'about_to_sleep'
        WHEN r <= 2 AND f IN (3, 4) THEN 'at_risk'
        WHEN r <= 2 AND f = 5 THEN 'cannot_lose_them'
        ELSE 'hibernating' END
$function$;

-- RFM quintiles computed on the spot: every customer of the tenant with orders, scored by
-- ntile(5) of last order time, order count and net revenue, ties split by customer id. The
-- lists filtered by segment or by R and F score by it, and so does the R x F grid, so that a
-- grid cell and the list filtered to it hold the same customers; the profile's boundaries
-- (rfm_cutoffs, below) are the same rule in positions, fresh within rd_rfm_ensure's age.
CREATE OR REPLACE FUNCTION rd_rfm_ntiles(p_tenant bigint)
 RETURNS TABLE(customer_id text, r integer, f integer, m integer)
 LANGUAGE sql
 STABLE
AS $function$
    SELECT c.customer_id,
           ntile(5) OVER (ORDER BY c.last_order_at, c.customer_id),
           ntile(5) OVER (ORDER BY c.order_count, c.customer_id),
           ntile(5) OVER (ORDER BY c.net_revenue, c.customer_id)
    FROM customers c WHERE c.tenant_id = p_tenant AND c.order_count > 0
$function$;

-- The R x F grid (GET /v1/metrics/rfm): all 25 cells, each with its customers, their mean net
-- revenue (NULL for an empty cell) and the cell's segment.
CREATE OR REPLACE FUNCTION rd_rfm_grid(p_tenant bigint)
 RETURNS TABLE(r integer, f integer, customers bigint, mean_net_revenue numeric, segment text)
 LANGUAGE sql
 STABLE
AS $function$
    WITH cells AS (
        SELECT s.r, s.f, count(*) AS n, avg(c.net_revenue) AS mean
        FROM rd_rfm_ntiles(p_tenant) s
        JOIN customers c ON c.tenant_id = p_tenant AND c.customer_id = s.customer_id
        GROUP BY s.r, s.f)
    SELECT g.r, h.f, coalesce(x.n, 0), x.mean, rd_rfm_segment(g.r, h.f)
    FROM generate_series(1, 5) g(r) CROSS JOIN generate_series(1, 5) h(f)
    LEFT JOIN cells x ON x.r = g.r AND x.f = h.f
    ORDER BY g.r, h.f
$function$;

-- RFM quintile boundaries (see rfm_cutoffs in migrations/001_baseline.sql), recomputed when
-- older than p_max_age: by the background upkeep, and before a profile is read, so that scores
-- lag ingest by at most that long; lists filtered by segment compute ntile directly.
--
-- 0-based positions where ntile(5) over n rows starts buckets 2..5 (positions >= n: absent).
CREATE OR REPLACE FUNCTION rd_ntile_starts(n bigint)
 RETURNS bigint[]
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT array_agg(CASE WHEN b - 1 <= n % 5 THEN (b - 1) * (n / 5 + 1)
                          ELSE (n % 5) * (n / 5 + 1) + (b - 1 - n % 5) * (n / 5) END ORDER BY b)
    FROM generate_series(2, 5) b
$function$;

CREATE OR REPLACE FUNCTION rd_rfm_ensure(p_tenant bigint, p_max_age interval DEFAULT '00:05:00'::interval)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    cnt bigint;
    starts bigint[];
BEGIN
    IF EXISTS (SELECT 1 FROM rfm_cutoffs WHERE tenant_id = p_tenant AND computed_at > now() - p_max_age) THEN
        RETURN;
    END IF;
    SELECT count(*) INTO cnt FROM customers WHERE tenant_id = p_tenant AND order_count > 0;
    starts := rd_ntile_starts(cnt);
    INSERT INTO rfm_cutoffs AS x (tenant_id, computed_at, n, r_last, r_id, f_count, f_id, m_revenue, m_id)
    SELECT p_tenant, now(), cnt, r.v, r.i, f.v, f.i, m.v, m.i
    FROM (SELECT coalesce(array_agg(last_order_at ORDER BY pos), '{}') AS v, coalesce(array_agg(customer_id ORDER BY pos), '{}') AS i
          FROM (SELECT last_order_at, customer_id, row_number() OVER (ORDER BY last_order_at, customer_id) - 1 AS pos
                FROM customers WHERE tenant_id = p_tenant AND order_count > 0) s WHERE pos = ANY(starts)) r,
         (SELECT coalesce(array_agg(order_count ORDER BY pos), '{}') AS v, coalesce(array_agg(customer_id ORDER BY pos), '{}') AS i
          FROM (SELECT order_count, customer_id, row_number() OVER (ORDER BY order_count, customer_id) - 1 AS pos
                FROM customers WHERE tenant_id = p_tenant AND order_count > 0) s WHERE pos = ANY(starts)) f,
         (SELECT coalesce(array_agg(net_revenue ORDER BY pos), '{}') AS v, coalesce(array_agg(customer_id ORDER BY pos), '{}') AS i
          FROM (SELECT net_revenue, customer_id, row_number() OVER (ORDER BY net_revenue, customer_id) - 1 AS pos
                FROM customers WHERE tenant_id = p_tenant AND order_count > 0) s WHERE pos = ANY(starts)) m
    ON CONFLICT (tenant_id) DO UPDATE SET computed_at = EXCLUDED.computed_at, n = EXCLUDED.n,
        r_last = EXCLUDED.r_last, r_id = EXCLUDED.r_id, f_count = EXCLUDED.f_count, f_id = EXCLUDED.f_id,
        m_revenue = EXCLUDED.m_revenue, m_id = EXCLUDED.m_id;
END $function$;

-- A customer's R, F and M quintiles from the tenant's boundaries (rfm_cutoffs), with how many
-- customers they rank (n) and when they were computed; all NULL when the tenant has none yet.
-- PL/pgSQL, so that its statement is prepared once per connection (a SQL function with a FROM
-- clause is planned afresh on every call); a generic plan suits it.
CREATE OR REPLACE FUNCTION rd_rfm_scores(p_tenant bigint, p_last timestamp with time zone, p_count integer, p_rev numeric, p_id text, OUT n bigint, OUT computed_at timestamp with time zone, OUT r integer, OUT f integer, OUT m integer)
 RETURNS record
 LANGUAGE plpgsql
 STABLE
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
    SELECT x.n, x.computed_at,
           1 + (SELECT count(*) FROM unnest(x.r_last, x.r_id) b(v, i) WHERE (p_last, p_id) >= (b.v, b.i)),
           1 + (SELECT count(*) FROM unnest(x.f_count, x.f_id) b(v, i) WHERE (p_count, p_id) >= (b.v, b.i)),
           1 + (SELECT count(*) FROM unnest(x.m_revenue, x.m_id) b(v, i) WHERE (p_rev, p_id) >= (b.v, b.i))
    INTO n, computed_at, r, f, m
    FROM rfm_cutoffs x WHERE x.tenant_id = p_tenant;
END $function$;
