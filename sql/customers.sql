-- customers.sql - per-customer reads: the profile with the inputs behind every figure, and
-- keyset-paginated lists for campaigns.
--
-- Lists. Order: the sort's key descending, customers without one last, ties by customer_id
-- descending (so that a backward walk of an index gives the page in order); without a key
-- (sort=customer_id), customer_id ascending. The cursor carries the exact key as PostgreSQL
-- prints it (text, or null for "no value"), never a float. An unfiltered page sorted by net
-- revenue, order count or last order is a backward walk of that sort's rank index
-- (customers_rfm_m, _f, _r) that stops after the page, plus the start of
-- customers_without_orders in key order for the customers the rank indexes leave out; sorted by
-- P(alive) or predicted CLV, a walk of customer_predictions' indexes.
--
-- Filtered by stage, status or min_p_alive: these are per-row tests on the customer, its
-- tenant's windows and its prediction, so the page is the first p_limit customers that pass
-- them in the list's order. rd_customer_list_next gives the next n customers after a cursor in
-- that order, each with whether it passes; the list walks chunks of 4 x p_limit (at least 256),
-- then 4 times more each time, until the page is full or the list ends. When the next chunk
-- would take the walk past 4 096 customers, the page comes from the scan after all
-- (rd_customer_list_scan: every customer of the tenant, filtered, sorted). Suspects and
-- prospects have no orders, so sorted by net revenue, order count or last order they come among
-- themselves by customer_id descending: their pages walk customers_without_orders instead. A
-- status, and the other rungs, need orders: those walks leave out the customers without. Lapsed
-- customers sorted by last order are the list from the activity window's start on, where the
-- walk starts; sorted by P(alive), the walk for min_p_alive ends at the first customer below
-- it. A segment filter, or one by R or F score, needs every customer's RFM quintiles
-- (rd_rfm_ntiles: ntile over all customers with orders), so it scans.
--
-- Both reads return rows, not documents: the store fills structs from them
-- (src/store/customers.c) and the service writes the replies (src/api/customers.c).

-- The key of a sort as the cursor carries it: text as PostgreSQL prints it, so that it reads
-- back exactly; null when the customer has none (and for sort=customer_id).
CREATE OR REPLACE FUNCTION rd_customer_sort_key(p_sort text, p_count integer, p_revenue numeric, p_last timestamp with time zone, p_alive double precision, p_clv double precision)
 RETURNS text
 LANGUAGE sql
 STABLE
AS $function$
    SELECT CASE p_sort WHEN 'net_revenue' THEN p_revenue::text WHEN 'order_count' THEN p_count::text
                       WHEN 'last_order_at' THEN to_json(p_last) #>> '{}'
                       WHEN 'p_alive' THEN p_alive::text WHEN 'predicted_clv' THEN p_clv::text END
$function$;

-- Filtered lists and the prediction sorts: every customer of the tenant, filtered, sorted.
-- Order: the sort's key descending, customers without one last, ties by customer_id
-- descending; without a key (sort=customer_id), customer_id ascending. A page continues
-- strictly after (p_after_value, p_after_id) in that order. The page's rows as rd_customer_list
-- returns them, with the RFM scores and segment when a segment, R or F filter asked for them.
CREATE OR REPLACE FUNCTION rd_customer_list_scan(p_tenant bigint, p_stage text, p_status text, p_segment text, p_min_p_alive double precision, p_sort text, p_after_value text, p_after_id text, p_limit integer, p_as_of timestamp with time zone, p_r integer, p_f integer)
 RETURNS TABLE(customer_id text, sort_key text, email text, stage text, status text, order_count integer, net_revenue numeric, last_order_at text, r integer, f integer, m integer, segment text, p_alive double precision, expected_orders double precision, predicted_clv double precision)
 LANGUAGE plpgsql
 STABLE
 SET extra_float_digits TO '1'
AS $function$
DECLARE
    key text := CASE p_sort WHEN 'net_revenue' THEN 'c.net_revenue' WHEN 'order_count' THEN 'c.order_count'
                            WHEN 'last_order_at' THEN 'c.last_order_at' WHEN 'p_alive' THEN 'p.p_alive'
                            WHEN 'predicted_clv' THEN 'p.predicted_clv' END;
    typ text := CASE p_sort WHEN 'net_revenue' THEN 'numeric' WHEN 'order_count' THEN 'int'
                            WHEN 'last_order_at' THEN 'timestamptz' ELSE 'float8' END;
    after text;
    order_by text;
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
    RETURN QUERY EXECUTE format($q$
        WITH base AS (
            SELECT c.*, t.advocacy_window_days, t.activity_window_days, t.at_risk_gap_factor, t.at_risk_p_alive,
                   p.p_alive, p.expected_orders, p.predicted_clv, %1$s AS sort_key
            FROM customers c JOIN tenants t USING (tenant_id)
            LEFT JOIN customer_predictions p ON p.tenant_id = c.tenant_id AND p.customer_id = c.customer_id
            WHERE c.tenant_id = $1
              AND ($6::float8 IS NULL OR p.p_alive >= $6)
              AND ($8 IS NULL OR %2$s)),
        rfm AS (
            SELECT * FROM rd_rfm_ntiles($1) WHERE $4 IS NOT NULL OR $11 IS NOT NULL OR $12 IS NOT NULL),
        rows AS (
            SELECT b.*, rfm.r, rfm.f, rfm.m,
                   rd_stage(b.order_count, b.event_count > 0, b.last_advocacy_at, $10, b.advocacy_window_days) AS stage_now,
                   rd_status(b.first_order_at, b.last_order_at, b.order_count, $10, b.activity_window_days,
                             b.at_risk_gap_factor, b.p_alive, b.at_risk_p_alive) AS status_now
            FROM base b LEFT JOIN rfm USING (customer_id))
        SELECT customer_id, rd_customer_sort_key($5, order_count, net_revenue, last_order_at, p_alive, predicted_clv),
               email, stage_now, status_now, order_count, net_revenue, to_json(last_order_at) #>> '{}',
               r, f, m, CASE WHEN r IS NOT NULL THEN rd_rfm_segment(r, f) END,
               p_alive, expected_orders, predicted_clv
        FROM rows
        WHERE ($2 IS NULL OR stage_now = $2) AND ($3 IS NULL OR status_now = $3)
          AND ($4 IS NULL OR rd_rfm_segment(r, f) = $4) AND ($11 IS NULL OR r = $11) AND ($12 IS NULL OR f = $12)
        ORDER BY %3$s LIMIT $9
    $q$, key, after, order_by)
    USING p_tenant, p_stage, p_status, p_segment, p_sort, p_min_p_alive, p_after_value, p_after_id, p_limit, p_as_of,
          p_r, p_f;
END $function$;

-- The next p_limit customers after the cursor in the list's order, unfiltered: each with its
-- sort key as the cursor carries it, whether it passes the filters, and its list columns.
-- p_part narrows the candidates for a filter that only customers with orders ('with
-- orders': a status, or the rungs customer, client and advocate) or only customers without
-- ('without orders': suspects or prospects sorted by net revenue, order count or last order,
-- who then come in customer_id order) can pass; otherwise 'all'. Every column name below is
-- qualified; use_column says so should one slip past.
CREATE OR REPLACE FUNCTION rd_customer_list_next(p_tenant bigint, p_sort text, p_after_value text, p_after_id text, p_limit integer, p_part text, p_stage text, p_status text, p_min_p_alive double precision, p_as_of timestamp with time zone)
 RETURNS TABLE(customer_id text, sort_key text, listed boolean, email text, stage text, status text, order_count integer, net_revenue numeric, last_order_at timestamp with time zone, p_alive double precision, expected_orders double precision, predicted_clv double precision)
 LANGUAGE plpgsql
 STABLE
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
 SET extra_float_digits TO '1'
AS $function$
#variable_conflict use_column
DECLARE
    ids text[] := '{}';
    rest text := 'none';   -- customers without orders after the cursor: 'all', 'after' (p_after_id), 'none'
    below text;            -- a walk by customer_id descending starts below this one (NULL: at the top)
BEGIN
    IF p_part = 'without orders' THEN
        -- their key (0, or no last order) puts them after every customer with orders but those
        -- tied at 0, and among themselves by customer_id descending: a backward walk of
        -- customers_without_orders (first_engaged_at is set exactly when event_count > 0:
        -- customers_events_rollup). The cursor becomes a bound on customer_id, or none.
        IF p_after_id IS NOT NULL AND p_sort = 'last_order_at' THEN
            below := CASE WHEN p_after_value IS NULL THEN p_after_id END;
        ELSIF p_after_id IS NOT NULL THEN
            IF p_after_value IS NULL OR p_after_value::numeric < 0 THEN
                RETURN;   -- the cursor is past every customer without orders
            END IF;
            below := CASE WHEN p_after_value::numeric = 0 THEN p_after_id END;
        END IF;
        IF below IS NULL THEN
            ids := ARRAY(SELECT c.customer_id FROM customers c
                         WHERE c.tenant_id = p_tenant AND c.order_count = 0
                           AND (c.first_engaged_at IS NOT NULL) = (p_stage = 'prospect')
                         ORDER BY c.customer_id DESC LIMIT p_limit);
        ELSE
            ids := ARRAY(SELECT c.customer_id FROM customers c
                         WHERE c.tenant_id = p_tenant AND c.order_count = 0 AND c.customer_id < below
                           AND (c.first_engaged_at IS NOT NULL) = (p_stage = 'prospect')
                         ORDER BY c.customer_id DESC LIMIT p_limit);
        END IF;
    ELSIF p_sort = 'net_revenue' THEN
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
    ELSIF p_sort IN ('p_alive', 'predicted_clv') THEN
        -- customers without a prediction come after every predicted one (both columns are NOT
        -- NULL), by customer_id descending
        IF p_after_id IS NULL AND p_sort = 'p_alive' THEN
            ids := ARRAY(SELECT p.customer_id FROM customer_predictions p WHERE p.tenant_id = p_tenant
                         ORDER BY p.p_alive DESC, p.customer_id DESC LIMIT p_limit);
        ELSIF p_after_id IS NULL THEN
            ids := ARRAY(SELECT p.customer_id FROM customer_predictions p WHERE p.tenant_id = p_tenant
                         ORDER BY p.predicted_clv DESC, p.customer_id DESC LIMIT p_limit);
        ELSIF p_after_value IS NOT NULL AND p_sort = 'p_alive' THEN
            ids := ARRAY(SELECT p.customer_id FROM customer_predictions p WHERE p.tenant_id = p_tenant
                           AND (p.p_alive, p.customer_id) < (p_after_value::float8, p_after_id)
                         ORDER BY p.p_alive DESC, p.customer_id DESC LIMIT p_limit);
        ELSIF p_after_value IS NOT NULL THEN
            ids := ARRAY(SELECT p.customer_id FROM customer_predictions p WHERE p.tenant_id = p_tenant
                           AND (p.predicted_clv, p.customer_id) < (p_after_value::float8, p_after_id)
                         ORDER BY p.predicted_clv DESC, p.customer_id DESC LIMIT p_limit);
        END IF;
        -- a short page goes on with the customers without a prediction: a backward walk of the
        -- customers that stops at the first p_limit it finds (the whole tenant only at the end),
        -- from the top, or below the cursor's customer when it had no prediction itself
        below := CASE WHEN p_after_value IS NULL THEN p_after_id END;
        IF cardinality(ids) < p_limit AND below IS NULL THEN
            ids := ids || ARRAY(
                SELECT c.customer_id FROM customers c
                WHERE c.tenant_id = p_tenant
                  AND NOT EXISTS (SELECT 1 FROM customer_predictions p
                                  WHERE p.tenant_id = p_tenant AND p.customer_id = c.customer_id)
                ORDER BY c.customer_id DESC LIMIT p_limit - cardinality(ids));
        ELSIF cardinality(ids) < p_limit THEN
            ids := ids || ARRAY(
                SELECT c.customer_id FROM customers c
                WHERE c.tenant_id = p_tenant AND c.customer_id < below
                  AND NOT EXISTS (SELECT 1 FROM customer_predictions p
                                  WHERE p.tenant_id = p_tenant AND p.customer_id = c.customer_id)
                ORDER BY c.customer_id DESC LIMIT p_limit - cardinality(ids));
        END IF;
    ELSIF p_after_id IS NULL THEN
        ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant
                     ORDER BY c.customer_id LIMIT p_limit);
    ELSE
        ids := ARRAY(SELECT c.customer_id FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id > p_after_id
                     ORDER BY c.customer_id LIMIT p_limit);
    END IF;
    -- a full page of customers with orders whose last one still comes before every customer
    -- without (net_revenue above 0; any order count or last order does), or a filter that
    -- customers without orders cannot pass: nothing to merge
    IF p_part = 'with orders' THEN
        rest := 'none';
    ELSIF rest = 'all' AND cardinality(ids) = p_limit
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

    RETURN QUERY
    SELECT y.customer_id, y.sort_key,
           coalesce((p_stage IS NULL OR y.stage = p_stage) AND (p_status IS NULL OR y.status = p_status)
                    AND (p_min_p_alive IS NULL OR y.p_alive >= p_min_p_alive), false),
           y.email, y.stage, y.status, y.order_count, y.net_revenue, y.last_order_at,
           y.p_alive, y.expected_orders, y.predicted_clv
    FROM (SELECT x.*,
                 rd_customer_sort_key(p_sort, x.order_count, x.net_revenue, x.last_order_at, x.p_alive,
                                      x.predicted_clv) AS sort_key,
                 rd_stage(x.order_count, x.event_count > 0, x.last_advocacy_at, p_as_of,
                          t.advocacy_window_days) AS stage,
                 rd_status(x.first_order_at, x.last_order_at, x.order_count, p_as_of, t.activity_window_days,
                           t.at_risk_gap_factor, x.p_alive, t.at_risk_p_alive) AS status
          FROM (SELECT c.customer_id, c.email, c.order_count, c.net_revenue, c.last_order_at, c.first_order_at,
                       c.event_count, c.last_advocacy_at, p.p_alive, p.expected_orders, p.predicted_clv,
                       row_number() OVER w AS pos
                FROM unnest(ids) AS i(id)
                CROSS JOIN LATERAL (SELECT * FROM customers c
                                    WHERE c.tenant_id = p_tenant AND c.customer_id = i.id OFFSET 0) c
                LEFT JOIN LATERAL (SELECT * FROM customer_predictions p
                                   WHERE p.tenant_id = p_tenant AND p.customer_id = i.id OFFSET 0) p ON true
                WINDOW w AS (ORDER BY CASE WHEN p_sort = 'net_revenue' THEN c.net_revenue END DESC NULLS LAST,
                                      CASE WHEN p_sort = 'order_count' THEN c.order_count END DESC NULLS LAST,
                                      CASE WHEN p_sort = 'last_order_at' THEN c.last_order_at END DESC NULLS LAST,
                                      CASE p_sort WHEN 'p_alive' THEN p.p_alive
                                                  WHEN 'predicted_clv' THEN p.predicted_clv END DESC NULLS LAST,
                                      CASE WHEN p_sort IN ('net_revenue', 'order_count', 'last_order_at',
                                                           'p_alive', 'predicted_clv')
                                           THEN c.customer_id END DESC,
                                      c.customer_id)
                ORDER BY pos LIMIT p_limit) x
          JOIN tenants t ON t.tenant_id = p_tenant) y
    ORDER BY y.pos;
END $function$;

-- GET /v1/customers: the page after the cursor, by index walk or scan (see the top of this
-- file), a row a customer in the list's order: the sort key the cursor after it carries, the
-- list columns, and the RFM scores and segment when a segment, R or F filter computed them. The
-- walk gathers the customers that pass a column an array at a time.
CREATE OR REPLACE FUNCTION rd_customer_list(p_tenant bigint, p_stage text, p_status text, p_segment text, p_min_p_alive double precision, p_sort text, p_after_value text, p_after_id text, p_limit integer, p_as_of timestamp with time zone, p_r integer, p_f integer)
 RETURNS TABLE(customer_id text, sort_key text, email text, stage text, status text, order_count integer, net_revenue numeric, last_order_at text, r integer, f integer, m integer, segment text, p_alive double precision, expected_orders double precision, predicted_clv double precision)
 LANGUAGE plpgsql
 STABLE
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
 SET extra_float_digits TO '1'
AS $function$
#variable_conflict use_column
DECLARE
    ids text[] := '{}';
    keys text[] := '{}';
    emails text[] := '{}';
    stages text[] := '{}';
    statuses text[] := '{}';
    counts int[] := '{}';
    revenues numeric[] := '{}';
    lasts timestamptz[] := '{}';
    alive float8[] := '{}';
    expected float8[] := '{}';
    clv float8[] := '{}';
    n int := p_limit;
    got int;
    walked int := 0;
    after_value text := p_after_value;
    after_id text := p_after_id;
    part text := CASE WHEN p_stage IN ('suspect', 'prospect') AND p_status IS NULL AND p_min_p_alive IS NULL
                           AND p_sort IN ('net_revenue', 'order_count', 'last_order_at') THEN 'without orders'
                      WHEN p_status IS NOT NULL OR p_stage IN ('customer', 'client', 'advocate') THEN 'with orders'
                      ELSE 'all' END;
    lapsed_before timestamptz;
BEGIN
    IF p_segment IS NOT NULL OR p_r IS NOT NULL OR p_f IS NOT NULL THEN
        RETURN QUERY SELECT * FROM rd_customer_list_scan(p_tenant, p_stage, p_status, p_segment, p_min_p_alive,
                                                         p_sort, p_after_value, p_after_id, p_limit, p_as_of,
                                                         p_r, p_f);
        RETURN;
    END IF;
    IF (p_stage IS NOT NULL OR p_status IS NOT NULL OR p_min_p_alive IS NOT NULL) AND part <> 'without orders' THEN
        n := greatest(4 * p_limit, 256);
    END IF;
    IF p_status = 'lapsed' AND p_sort = 'last_order_at' THEN
        -- lapsed customers are those whose last order came before the activity window
        -- (rd_status): by last order they are the list from the window's start on, so the walk
        -- starts there unless the cursor is past it
        SELECT p_as_of - make_interval(days => t.activity_window_days) INTO lapsed_before
        FROM tenants t WHERE t.tenant_id = p_tenant;
        IF after_id IS NULL OR after_value::timestamptz >= lapsed_before THEN
            after_value := to_json(lapsed_before) #>> '{}';
            after_id := '';   -- (last_order_at, customer_id) < (lapsed_before, ''): before it
        END IF;
    END IF;
    LOOP
        SELECT ids || coalesce(array_agg(x.customer_id ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               keys || coalesce(array_agg(x.sort_key ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               emails || coalesce(array_agg(x.email ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               stages || coalesce(array_agg(x.stage ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               statuses || coalesce(array_agg(x.status ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               counts || coalesce(array_agg(x.order_count ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               revenues || coalesce(array_agg(x.net_revenue ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               lasts || coalesce(array_agg(x.last_order_at ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               alive || coalesce(array_agg(x.p_alive ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               expected || coalesce(array_agg(x.expected_orders ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               clv || coalesce(array_agg(x.predicted_clv ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               count(*), (array_agg(x.sort_key ORDER BY x.ordinality DESC))[1],
               (array_agg(x.customer_id ORDER BY x.ordinality DESC))[1]
        INTO ids, keys, emails, stages, statuses, counts, revenues, lasts, alive, expected, clv,
             got, after_value, after_id
        FROM rd_customer_list_next(p_tenant, p_sort, after_value, after_id, n, part, p_stage, p_status,
                                   p_min_p_alive, p_as_of) WITH ORDINALITY AS x;
        walked := walked + got;
        EXIT WHEN cardinality(ids) >= p_limit OR got < n;
        -- by P(alive), nobody after a customer below min_p_alive, or without a prediction, passes it
        EXIT WHEN p_sort = 'p_alive' AND coalesce(after_value::float8 < p_min_p_alive, p_min_p_alive IS NOT NULL);
        n := 4 * n;
        IF walked + n > 4096 THEN   -- few customers pass: sorting those that do costs less
            RETURN QUERY SELECT * FROM rd_customer_list_scan(p_tenant, p_stage, p_status, p_segment, p_min_p_alive,
                                                             p_sort, p_after_value, p_after_id, p_limit, p_as_of,
                                                             NULL, NULL);
            RETURN;
        END IF;
    END LOOP;
    n := least(cardinality(ids), p_limit);
    RETURN QUERY
    SELECT u.id, u.key, u.email, u.stage, u.status, u.n, u.revenue, to_json(u.last) #>> '{}',
           NULL::int, NULL::int, NULL::int, NULL::text, u.alive, u.expected, u.clv
    FROM unnest(ids[1:n], keys[1:n], emails[1:n], stages[1:n], statuses[1:n], counts[1:n], revenues[1:n],
                lasts[1:n], alive[1:n], expected[1:n], clv[1:n])
         WITH ORDINALITY AS u(id, key, email, stage, status, n, revenue, last, alive, expected, clv, pos)
    ORDER BY u.pos;
END $function$;

-- A customer's profile page at p_as_of (GET /v1/customers/{id}) in one statement: the record,
-- the rollup and rung, the inputs of its status (which the service decides with the live
-- P(alive): rules_status in src/domain/rules.c, rd_status's twin), its RFM scores against the
-- tenant's boundaries and their segment, the stored prediction, the instant the page is at,
-- the tenant's newest model and the customer's purchase summary (x, t_x, T, mbar) for the
-- service's live prediction. No row when there is no such customer. Instants come as
-- PostgreSQL's JSON prints them, and the ones the status reads as microseconds too. The
-- summary of a customer whose orders all precede as_of is computed here from its row as
-- rd_clv_sample computes it from the rollup. PL/pgSQL, so that its statements are prepared
-- once per connection; each reads by primary key, so a generic plan suits them. EXECUTE gives
-- the past-as_of case the custom plan rd_clv_sample's optional customer filter needs.
CREATE OR REPLACE FUNCTION rd_customer_profile_page(p_tenant bigint, p_customer text, p_as_of timestamp with time zone)
 RETURNS TABLE(customer_id text, email text, created_at text, channel text, referred_by text, attributes text, known boolean, stage text, order_count integer, net_revenue numeric, first_order_at text, last_order_at text, first_order_us bigint, last_order_us bigint, avg_days_between_orders numeric, days_since_last_order numeric, event_count integer, first_engaged_at text, last_engaged_at text, last_advocacy_at text, advocacy_kind text, activity_window_days integer, advocacy_window_days integer, at_risk_p_alive double precision, at_risk_gap_factor double precision, rfm_n bigint, rfm_computed_at text, rfm_r integer, rfm_f integer, rfm_m integer, rfm_segment text, prediction_fitted_at text, prediction_p_alive double precision, prediction_expected_orders double precision, prediction_clv double precision, as_of text, as_of_us bigint, fitted_at text, model_as_of text, sample_size integer, repeat_size integer, r double precision, alpha double precision, a double precision, b double precision, bgnbd_loglik double precision, p double precision, q double precision, v double precision, gg_loglik double precision, fit_ms double precision, x integer, t_x integer, "T" integer, mbar double precision)
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
#variable_conflict use_column
DECLARE
    at timestamptz := coalesce(p_as_of, now());
    cu record;
    sn bigint;
    sat timestamptz;
    sr int;
    sf int;
    sm int;
    px int;
    ptx int;
    pt int;
    pm float8;
BEGIN
    PERFORM rd_rfm_ensure(p_tenant);
    SELECT c.*, t.timezone AS t_zone, t.activity_window_days AS t_activity, t.advocacy_window_days AS t_advocacy,
           t.at_risk_p_alive AS t_p_alive_min, t.at_risk_gap_factor AS t_gap_factor,
           pr.customer_id IS NOT NULL AS has_prediction, pr.fitted_at AS pr_fitted_at, pr.p_alive AS pr_p_alive,
           pr.expected_orders AS pr_expected, pr.predicted_clv AS pr_clv
    INTO cu
    FROM customers c JOIN tenants t USING (tenant_id)
    LEFT JOIN customer_predictions pr ON pr.tenant_id = c.tenant_id AND pr.customer_id = c.customer_id
    WHERE c.tenant_id = p_tenant AND c.customer_id = p_customer;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF cu.order_count > 0 THEN
        SELECT s.n, s.computed_at, s.r, s.f, s.m INTO sn, sat, sr, sf, sm
        FROM rd_rfm_scores(p_tenant, cu.last_order_at, cu.order_count, cu.net_revenue, cu.customer_id) s;
    END IF;
    IF cu.order_count > 0 AND cu.last_order_at < at THEN
        px := cu.order_days - 1;
        ptx := rd_local_day(cu.last_order_at, cu.t_zone) - rd_local_day(cu.first_order_at, cu.t_zone);
        pt := rd_local_day(at - interval '1 microsecond', cu.t_zone) - rd_local_day(cu.first_order_at, cu.t_zone);
        pm := coalesce(((cu.net_revenue - cu.first_day_value) / nullif(cu.order_days - 1, 0))::float8, 0);
    ELSIF cu.last_order_at >= at THEN
        EXECUTE 'SELECT s.x, s.t_x, s."T", s.mbar FROM rd_clv_sample($1, $2, $3) s'
            INTO px, ptx, pt, pm USING p_tenant, at, p_customer;
    END IF;
    RETURN QUERY
    SELECT cu.customer_id, cu.email, to_json(cu.created_at) #>> '{}', cu.channel, cu.referred_by,
           cu.attributes::text, cu.is_known,
           rd_stage(cu.order_count, cu.event_count > 0, cu.last_advocacy_at, at, cu.t_advocacy),
           cu.order_count, cu.net_revenue, to_json(cu.first_order_at) #>> '{}', to_json(cu.last_order_at) #>> '{}',
           (extract(epoch FROM cu.first_order_at) * 1000000)::bigint,
           (extract(epoch FROM cu.last_order_at) * 1000000)::bigint,
           CASE WHEN cu.order_count >= 2 THEN
               extract(epoch FROM cu.last_order_at - cu.first_order_at) / 86400 / (cu.order_count - 1) END,
           extract(epoch FROM at - cu.last_order_at) / 86400,
           cu.event_count, to_json(cu.first_engaged_at) #>> '{}', to_json(cu.last_engaged_at) #>> '{}',
           to_json(cu.last_advocacy_at) #>> '{}', cu.advocacy_kind,
           cu.t_activity, cu.t_advocacy, cu.t_p_alive_min, cu.t_gap_factor,
           sn, to_json(sat) #>> '{}', sr, sf, sm, rd_rfm_segment(sr, sf),
           CASE WHEN cu.has_prediction THEN to_json(cu.pr_fitted_at) #>> '{}' END,
           cu.pr_p_alive, cu.pr_expected, cu.pr_clv,
           at::text, (extract(epoch FROM at) * 1000000)::bigint,
           to_json(m.fitted_at) #>> '{}', to_json(m.as_of) #>> '{}', m.sample_size, m.repeat_size, m.r, m.alpha,
           m.a, m.b, m.bgnbd_loglik, m.p, m.q, m.v, m.gg_loglik, m.fit_ms, px, ptx, pt, pm
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT * FROM clv_models cm WHERE cm.tenant_id = p_tenant
                       ORDER BY cm.fitted_at DESC LIMIT 1) m ON true;
END $function$;

-- A customer's orders (GET /v1/customers/{id}/orders), newest first (placed_at, then order_id,
-- descending), strictly after the cursor (p_after_at, p_after_id) in that order: at most
-- p_limit, each with its amounts in the order's and the shop's currency, its net value in the
-- shop's and whether it qualifies (SPEC §4), through orders_customer. No rows for an unknown
-- customer (rd_customer_exists tells the two apart).
CREATE OR REPLACE FUNCTION rd_customer_orders(p_tenant bigint, p_customer text, p_after_at timestamp with time zone, p_after_id text, p_limit integer)
 RETURNS TABLE(order_id text, placed_at text, status text, currency text, total numeric, refunded numeric, shop_total numeric, shop_refunded numeric, net_value numeric, qualifying boolean, source text)
 LANGUAGE sql
 STABLE
AS $function$
    SELECT o.order_id, to_json(o.placed_at) #>> '{}', o.status, o.currency::text, o.total, o.refunded,
           o.shop_total, o.shop_refunded, o.net_value, o.qualifying, o.source
    FROM orders o
    WHERE o.tenant_id = p_tenant AND o.customer_id = p_customer
      AND (p_after_id IS NULL OR (o.placed_at, o.order_id) < (p_after_at, p_after_id))
    ORDER BY o.placed_at DESC, o.order_id DESC
    LIMIT p_limit
$function$;

-- A customer's rung changes (GET /v1/customers/{id}/history), oldest first, as stage_history
-- keeps them: dated by the business time of the record that caused each.
CREATE OR REPLACE FUNCTION rd_customer_history(p_tenant bigint, p_customer text)
 RETURNS TABLE(changed_at text, from_stage text, to_stage text)
 LANGUAGE sql
 STABLE
AS $function$
    SELECT to_json(h.changed_at) #>> '{}', h.from_stage, h.to_stage
    FROM stage_history h
    WHERE h.tenant_id = p_tenant AND h.customer_id = p_customer
    ORDER BY h.changed_at, h.seq
$function$;

CREATE OR REPLACE FUNCTION rd_customer_exists(p_tenant bigint, p_customer text)
 RETURNS boolean
 LANGUAGE sql
 STABLE
AS $function$
    SELECT EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id = p_customer)
$function$;

-- The span of a tenant's qualifying orders (its first and last order), two probes of
-- orders_qualifying; NULLs without orders. GET /v1/metrics/rfm states it with the grid, and the
-- dashboard starts its "all time" period there.
CREATE OR REPLACE FUNCTION rd_orders_span(p_tenant bigint, OUT first_order_at text, OUT last_order_at text)
 RETURNS record
 LANGUAGE sql
 STABLE
AS $function$
    SELECT to_json(min(o.placed_at)) #>> '{}', to_json(max(o.placed_at)) #>> '{}'
    FROM orders o WHERE o.tenant_id = p_tenant AND o.qualifying
$function$;
