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
-- it. A segment filter needs every customer's RFM quintiles (ntile over all customers with
-- orders), so it scans.

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

-- A listed customer, with its RFM segment (rd_rfm_segment).
CREATE OR REPLACE FUNCTION rd_customer_list_item(p_id text, p_email text, p_stage text, p_status text, p_count integer, p_revenue numeric, p_last timestamp with time zone, p_r integer, p_f integer, p_m integer, p_alive double precision, p_expected double precision, p_clv double precision)
 RETURNS json
 LANGUAGE sql
 STABLE
AS $function$
    SELECT json_build_object(
        'customer_id', p_id, 'email', p_email, 'stage', p_stage, 'status', p_status,
        'order_count', p_count, 'net_revenue', p_revenue, 'last_order_at', p_last,
        'rfm', CASE WHEN p_r IS NOT NULL THEN json_build_object('r', p_r, 'f', p_f, 'm', p_m,
                                                                'segment', rd_rfm_segment(p_r, p_f)) END,
        'p_alive', p_alive, 'expected_orders', p_expected, 'predicted_clv', p_clv)
$function$;

-- The reply to GET /v1/customers, whole: the page's items, its size, and when it is full the
-- cursor after its last row (its key and id as a JSON array, hex-encoded: opaque, URL-safe).
-- Built here so that the service sends it as it is, and amounts never pass through a double.
CREATE OR REPLACE FUNCTION rd_customer_list_doc(p_items json, p_count bigint, p_limit integer, p_last_key text, p_last_id text)
 RETURNS json
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT json_build_object(
        'customers', coalesce(p_items, '[]'),
        'next_cursor', CASE WHEN p_count > 0 AND p_count = p_limit
                            THEN encode(convert_to(json_build_array(p_last_key, p_last_id)::text, 'UTF8'), 'hex') END,
        'count', p_count)
$function$;

-- Filtered lists and the prediction sorts: every customer of the tenant, filtered, sorted.
-- Order: the sort's key descending, customers without one last, ties by customer_id
-- descending; without a key (sort=customer_id), customer_id ascending. A page continues
-- strictly after (p_after_value, p_after_id) in that order.
CREATE OR REPLACE FUNCTION rd_customer_list_scan(p_tenant bigint, p_stage text, p_status text, p_segment text, p_min_p_alive double precision, p_sort text, p_after_value text, p_after_id text, p_limit integer, p_as_of timestamp with time zone)
 RETURNS json
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
END $function$;

-- The next p_limit customers after the cursor in the list's order, unfiltered: each with its
-- sort key as the cursor carries it, whether it passes the filters, and, for the first p_need
-- that pass, its list item. p_part narrows the candidates for a filter that only customers
-- with orders ('with orders': a status, or the rungs customer, client and advocate) or only
-- customers without ('without orders': suspects or prospects sorted by net revenue, order
-- count or last order, who then come in customer_id order) can pass; otherwise 'all'.
CREATE OR REPLACE FUNCTION rd_customer_list_next(p_tenant bigint, p_sort text, p_after_value text, p_after_id text, p_limit integer, p_need integer, p_part text, p_stage text, p_status text, p_min_p_alive double precision, p_as_of timestamp with time zone)
 RETURNS TABLE(customer_id text, sort_key text, listed boolean, item json)
 LANGUAGE plpgsql
 STABLE
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
 SET extra_float_digits TO '1'
AS $function$
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
    SELECT z.customer_id, z.sort_key, z.listed,
           CASE WHEN z.listed AND z.nth <= p_need THEN rd_customer_list_item(z.customer_id, z.email, z.stage, z.status, z.order_count,
                                                         z.net_revenue, z.last_order_at, NULL, NULL, NULL,
                                                         z.p_alive, z.expected_orders, z.predicted_clv) END
    FROM (SELECT v.*, count(*) FILTER (WHERE v.listed) OVER (ORDER BY v.pos) AS nth
          FROM (SELECT y.*, coalesce((p_stage IS NULL OR y.stage = p_stage) AND (p_status IS NULL OR y.status = p_status)
                                     AND (p_min_p_alive IS NULL OR y.p_alive >= p_min_p_alive), false) AS listed
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
                JOIN tenants t ON t.tenant_id = p_tenant) y) v) z
    ORDER BY z.pos;
END $function$;

-- GET /v1/customers: the page after the cursor, by index walk or scan (see the top of this
-- file), returning the whole reply (rd_customer_list_doc).
CREATE OR REPLACE FUNCTION rd_customer_list(p_tenant bigint, p_stage text, p_status text, p_segment text, p_min_p_alive double precision, p_sort text, p_after_value text, p_after_id text, p_limit integer, p_as_of timestamp with time zone)
 RETURNS json
 LANGUAGE plpgsql
 STABLE
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
 SET extra_float_digits TO '1'
AS $function$
DECLARE
    items json[] := '{}';
    keys text[] := '{}';
    ids text[] := '{}';
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
    IF p_segment IS NOT NULL THEN
        RETURN rd_customer_list_scan(p_tenant, p_stage, p_status, p_segment, p_min_p_alive, p_sort,
                                     p_after_value, p_after_id, p_limit, p_as_of);
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
        SELECT items || coalesce(array_agg(x.item ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               keys || coalesce(array_agg(x.sort_key ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               ids || coalesce(array_agg(x.customer_id ORDER BY x.ordinality) FILTER (WHERE x.listed), '{}'),
               count(*), (array_agg(x.sort_key ORDER BY x.ordinality DESC))[1],
               (array_agg(x.customer_id ORDER BY x.ordinality DESC))[1]
        INTO items, keys, ids, got, after_value, after_id
        FROM rd_customer_list_next(p_tenant, p_sort, after_value, after_id, n, p_limit - cardinality(items),
                                   part, p_stage, p_status, p_min_p_alive, p_as_of) WITH ORDINALITY AS x;
        walked := walked + got;
        EXIT WHEN cardinality(items) >= p_limit OR got < n;
        -- by P(alive), nobody after a customer below min_p_alive, or without a prediction, passes it
        EXIT WHEN p_sort = 'p_alive' AND coalesce(after_value::float8 < p_min_p_alive, p_min_p_alive IS NOT NULL);
        n := 4 * n;
        IF walked + n > 4096 THEN   -- few customers pass: sorting those that do costs less
            RETURN rd_customer_list_scan(p_tenant, p_stage, p_status, p_segment, p_min_p_alive, p_sort,
                                         p_after_value, p_after_id, p_limit, p_as_of);
        END IF;
    END LOOP;
    n := least(cardinality(items), p_limit);
    RETURN rd_customer_list_doc(array_to_json(items[1:n]), n, p_limit, keys[n], ids[n]);
END $function$;

-- A customer's profile at p_as_of (GET /v1/customers/{id}): the record, the rollup, the rung
-- and status, RFM scores and the inputs behind every figure. PL/pgSQL, so that its statements
-- are prepared once per connection; each reads by primary key, so a generic plan suits it.
CREATE OR REPLACE FUNCTION rd_customer_profile(p_tenant bigint, p_id text, p_as_of timestamp with time zone)
 RETURNS json
 LANGUAGE plpgsql
 STABLE
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
    RETURN (SELECT json_build_object(
            'customer_id', c.customer_id, 'email', c.email, 'created_at', c.created_at,
            'channel', c.channel, 'referred_by', c.referred_by, 'attributes', c.attributes,
            'known', c.is_known,
            'stage', rd_stage(c.order_count, c.event_count > 0, c.last_advocacy_at, p_as_of, t.advocacy_window_days),
            'status', rd_status(c.first_order_at, c.last_order_at, c.order_count, p_as_of, t.activity_window_days,
                                t.at_risk_gap_factor, p.p_alive, t.at_risk_p_alive),
            'order_count', c.order_count, 'net_revenue', c.net_revenue, 'historic_clv', c.net_revenue,
            'first_order_at', c.first_order_at, 'last_order_at', c.last_order_at,
            'avg_days_between_orders', CASE WHEN c.order_count >= 2 THEN
                extract(epoch FROM c.last_order_at - c.first_order_at) / 86400 / (c.order_count - 1) END,
            'days_since_last_order', extract(epoch FROM p_as_of - c.last_order_at) / 86400,
            'event_count', c.event_count, 'first_engaged_at', c.first_engaged_at, 'last_engaged_at', c.last_engaged_at,
            'last_advocacy_at', c.last_advocacy_at, 'advocacy_kind', c.advocacy_kind,
            'settings', json_build_object('activity_window_days', t.activity_window_days,
                                          'advocacy_window_days', t.advocacy_window_days,
                                          'at_risk_p_alive', t.at_risk_p_alive,
                                          'at_risk_gap_factor', t.at_risk_gap_factor),
            'rfm_scores', CASE WHEN c.order_count > 0 THEN
                rd_rfm_scores(p_tenant, c.last_order_at, c.order_count, c.net_revenue, c.customer_id) END,
            'prediction', CASE WHEN p.customer_id IS NOT NULL THEN json_build_object(
                'fitted_at', p.fitted_at, 'p_alive', p.p_alive, 'expected_orders_90d', p.expected_orders,
                'predicted_clv_12m', p.predicted_clv) END)
        FROM customers c JOIN tenants t USING (tenant_id)
        LEFT JOIN customer_predictions p ON p.tenant_id = c.tenant_id AND p.customer_id = c.customer_id
        WHERE c.tenant_id = p_tenant AND c.customer_id = p_id);
END $function$;

-- The profile page in one statement: the profile, the instant it is at, the tenant's newest
-- model and the customer's purchase summary (x, t_x, T, mbar) for the service's live
-- prediction. The summary of a customer whose orders all precede as_of is computed here from
-- its row as rd_clv_sample computes it from the rollup. EXECUTE gives the past-as_of case the
-- custom plan rd_clv_sample's optional customer filter needs.
CREATE OR REPLACE FUNCTION rd_customer_profile_page(p_tenant bigint, p_customer text, p_as_of timestamp with time zone)
 RETURNS TABLE(profile text, as_of text, fitted_at text, model_as_of text, sample_size integer, repeat_size integer, r double precision, alpha double precision, a double precision, b double precision, bgnbd_loglik double precision, p double precision, q double precision, v double precision, gg_loglik double precision, fit_ms double precision, x integer, t_x integer, "T" integer, mbar double precision, as_of_epoch double precision)
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    at timestamptz := coalesce(p_as_of, now());
    doc text;
    cu customers%ROWTYPE;
    sx int;
    stx int;
    st int;
    sm float8;
BEGIN
    PERFORM rd_rfm_ensure(p_tenant);
    doc := rd_customer_profile(p_tenant, p_customer, at)::text;
    IF doc IS NOT NULL THEN
        SELECT * INTO cu FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id = p_customer;
        IF cu.order_count > 0 AND cu.last_order_at < at THEN
            sx := cu.order_days - 1;
            stx := rd_utc_day(cu.last_order_at) - rd_utc_day(cu.first_order_at);
            st := rd_utc_day(at - interval '1 microsecond') - rd_utc_day(cu.first_order_at);
            sm := coalesce(((cu.net_revenue - cu.first_day_value) / nullif(cu.order_days - 1, 0))::float8, 0);
        ELSIF cu.last_order_at >= at THEN
            EXECUTE 'SELECT s.x, s.t_x, s."T", s.mbar FROM rd_clv_sample($1, $2, $3) s'
                INTO sx, stx, st, sm USING p_tenant, at, p_customer;
        END IF;
    END IF;
    RETURN QUERY
    SELECT doc, at::text, to_json(m.fitted_at)#>>'{}', to_json(m.as_of)#>>'{}', m.sample_size,
           m.repeat_size, m.r, m.alpha, m.a, m.b, m.bgnbd_loglik, m.p, m.q, m.v, m.gg_loglik,
           m.fit_ms, sx, stx, st, sm, extract(epoch FROM at)::float8
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT * FROM clv_models cm WHERE cm.tenant_id = p_tenant
                       ORDER BY cm.fitted_at DESC LIMIT 1) m ON true;
END $function$;
