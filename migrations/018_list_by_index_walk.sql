-- 018_list_by_index_walk.sql - every customer list but the segment-filtered one reads its page
-- through an index in the list's order instead of sorting every customer of the tenant.
--
-- Since 016 an unfiltered page by net revenue, order count or last order reads only its
-- candidates through the rank indexes. The rest still built every customer row, filtered and
-- sorted them (rd_customer_list_scan: 150-500 ms on a 100 k-customer shop):
--
-- * Sorted by p_alive or predicted_clv. 009 dropped the two prediction indexes because each
--   fit rewrote them at random (0.9 s of a 1.5 s store for 90 k rows) and the list then sorted
--   on an expression they did not serve. Since 016 it sorts on the bare columns (customers
--   without a prediction last, ties by customer_id descending), which a backward walk of
--   (tenant_id, column, customer_id) gives in order. The indexes are back, at the price 009
--   named: storing a fit of 90-100 k predictions takes 0.8-1.8 s instead of 0.4-0.7 s here.
--   A fit is a background job run every CLV_REFIT_INTERVAL; a page by P(alive) is read by
--   every dashboard, and takes about 1 ms instead of 150-300 ms.
--
-- * Filtered by stage, status or min_p_alive. These are per-row tests on the customer, its
--   tenant's windows and its prediction, so the page is the first p_limit customers that pass
--   them in the list's order. rd_customer_list_next gives the next n customers after a cursor
--   in that order, each with whether it passes. The list walks chunks of 4 x p_limit (at
--   least 256), then 4 times more each time, until the page is full or the list ends. A
--   filter that passes few customers would walk far (about 10 us a customer here, against
--   150-200 ms for the scan), so when the next chunk would take the walk past 4 096
--   customers, the page comes from the scan after all. Suspects and prospects have no
--   orders, so sorted by net revenue, order count or last order they come among themselves
--   by customer_id descending: their pages walk customers_without_orders instead. A status,
--   and the other rungs, need orders: those walks leave out the customers without. Two
--   filters are ranges of their sort's key: lapsed customers sorted by last order are the
--   list from the activity window's start on, where the walk starts; sorted by P(alive), the
--   walk for min_p_alive ends at the first customer below it.
--
-- * A segment filter needs every customer's RFM quintiles (ntile over all customers with
--   orders), so it still scans.
--
-- rd_customer_list_next holds 016's candidate logic (a rank index walk, then the customers
-- without orders, or now without a prediction) and 016's ordering, and renders the customers
-- that pass (rd_customer_list_item), so that a page reads each row once. rd_customer_list
-- keeps the first p_limit of them and the cursor after the last.

CREATE INDEX customer_predictions_p_alive ON customer_predictions (tenant_id, p_alive, customer_id);
CREATE INDEX customer_predictions_clv ON customer_predictions (tenant_id, predicted_clv, customer_id);

-- The next p_limit customers after the cursor in the list's order, unfiltered: each with its
-- sort key as the cursor carries it, whether it passes the filters, and, for the first p_need
-- that pass, its list item. p_part narrows the candidates for a filter that only customers
-- with orders ('with orders': a status, or the rungs customer, client and advocate) or only
-- customers without ('without orders': suspects or prospects sorted by net revenue, order
-- count or last order, who then come in customer_id order) can pass; otherwise 'all'.
CREATE FUNCTION rd_customer_list_next(p_tenant bigint, p_sort text, p_after_value text, p_after_id text,
                                      p_limit int, p_need int, p_part text, p_stage text,
                                      p_status text, p_min_p_alive float8, p_as_of timestamptz)
RETURNS TABLE (customer_id text, sort_key text, listed boolean, item json)
LANGUAGE plpgsql STABLE
SET jit = off SET plan_cache_mode = force_generic_plan SET extra_float_digits = 1 AS $$
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
END $$;

-- Lists for campaigns (005's filters and keyset pagination, in rd_customer_list_scan's order),
-- returning the whole reply (rd_customer_list_doc).
CREATE OR REPLACE FUNCTION rd_customer_list(p_tenant bigint, p_stage text, p_status text, p_segment text,
                                            p_min_p_alive float8, p_sort text, p_after_value text,
                                            p_after_id text, p_limit int, p_as_of timestamptz)
RETURNS json LANGUAGE plpgsql STABLE
SET jit = off SET plan_cache_mode = force_generic_plan SET extra_float_digits = 1 AS $$
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
END $$;
