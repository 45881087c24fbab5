-- ingest.sql - writing orders, customers, events and spend, each call in the caller's
-- transaction and with every touched customer's rollup and rung current when it returns
-- (sql/rollup.sql).
--
-- Concurrent single requests share one call: the service sends the single orders (and the
-- single events but referrals, which touch a second customer) of a commit group as one
-- rd_ingest_orders_each / rd_ingest_events_each call, in rounds where no customer and no id
-- appears twice, so each is ingested as if alone: same outcome, same rollup, same rung change
-- and change time. A call's fixed cost (about a dozen statements) is then paid once a group.

-- The order upsert, shared by the immediate and the deferred forms:
-- fills rd_order_change with each input position's outcome and new state. The previous states
-- are read by primary key, one lookup per order.
CREATE OR REPLACE FUNCTION rd_upsert_orders(p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamp with time zone[], p_updated timestamp with time zone[], p_currency text[], p_total numeric[], p_refunded numeric[], p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[], p_test boolean[])
 RETURNS void
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS rd_order_change (
        idx int, outcome text, at timestamptz, customer_id text, old_customer text,
        placed_at timestamptz, qualifying boolean, net_value numeric) ON COMMIT DELETE ROWS;
    DELETE FROM rd_order_change;

    WITH input AS (
        SELECT u.*, u.ord::int AS i FROM unnest(p_ids, p_customers, p_placed, p_updated, p_currency,
            p_total, p_refunded, p_shop_total, p_shop_refunded, p_status, p_source, p_test)
            WITH ORDINALITY AS u(order_id, customer_id, placed_at, updated_at, currency, total,
                                 refunded, shop_total, shop_refunded, status, source, test, ord)),
    newest AS (
        SELECT DISTINCT ON (order_id) * FROM input ORDER BY order_id, updated_at DESC, i DESC),
    prev AS (
        SELECT n.order_id, o.updated_at, o.customer_id FROM newest n
        CROSS JOIN LATERAL (SELECT o.updated_at, o.customer_id FROM orders o
                            WHERE o.tenant_id = p_tenant AND o.order_id = n.order_id OFFSET 0) o),
    ups AS (
        INSERT INTO orders AS o (tenant_id, order_id, customer_id, placed_at, updated_at, currency,
                                 total, refunded, shop_total, shop_refunded, status, source, test)
        SELECT p_tenant, order_id, customer_id, placed_at, updated_at, currency, total, refunded,
               shop_total, shop_refunded, status, source, test FROM newest
        ON CONFLICT (tenant_id, order_id) DO UPDATE SET
            customer_id = EXCLUDED.customer_id, placed_at = EXCLUDED.placed_at,
            updated_at = EXCLUDED.updated_at, currency = EXCLUDED.currency, total = EXCLUDED.total,
            refunded = EXCLUDED.refunded, shop_total = EXCLUDED.shop_total,
            shop_refunded = EXCLUDED.shop_refunded, status = EXCLUDED.status,
            source = EXCLUDED.source, test = EXCLUDED.test
        WHERE o.updated_at < EXCLUDED.updated_at
           OR (o.updated_at = EXCLUDED.updated_at
               AND (o.customer_id, o.placed_at, o.currency, o.total, o.refunded, o.shop_total,
                    o.shop_refunded, o.status, o.test)
                   IS DISTINCT FROM
                   (EXCLUDED.customer_id, EXCLUDED.placed_at, EXCLUDED.currency, EXCLUDED.total,
                    EXCLUDED.refunded, EXCLUDED.shop_total, EXCLUDED.shop_refunded,
                    EXCLUDED.status, EXCLUDED.test))
        RETURNING o.order_id, (o.xmax = 0) AS inserted, o.customer_id, o.placed_at, o.qualifying,
                  o.net_value)
    INSERT INTO rd_order_change
    SELECT input.i,
           CASE WHEN input.i <> newest.i THEN 'superseded'
                WHEN ups.order_id IS NULL AND prev.updated_at > input.updated_at THEN 'stale'
                WHEN ups.order_id IS NULL THEN 'duplicate'
                WHEN ups.inserted THEN 'created'
                ELSE 'updated' END,
           CASE WHEN ups.inserted THEN input.placed_at ELSE input.updated_at END,
           ups.customer_id, prev.customer_id, ups.placed_at, ups.qualifying, ups.net_value
    FROM input JOIN newest USING (order_id)
    LEFT JOIN ups USING (order_id) LEFT JOIN prev USING (order_id);
END $function$;

-- Customers: insert or fill in. Fields given replace stored ones; fields absent keep theirs.
-- Outcome: created (new, or first explicit post of a customer implied by an order/event) |
-- updated | duplicate.
CREATE OR REPLACE FUNCTION rd_ingest_customers(p_tenant bigint, p_ids text[], p_email text[], p_created timestamp with time zone[], p_channel text[], p_referred_by text[], p_attributes jsonb[], p_updated timestamp with time zone[])
 RETURNS TABLE(idx integer, outcome text)
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    refresh text[];
BEGIN
    PERFORM rd_lock_customers(p_tenant, p_ids || array_remove(p_referred_by, NULL));
    RETURN QUERY
    WITH input AS (
        SELECT u.*, u.ord::int AS i FROM unnest(p_ids, p_email, p_created, p_channel, p_referred_by,
                                                p_attributes, p_updated)
            WITH ORDINALITY AS u(customer_id, email, created_at, channel, referred_by, attributes, updated, ord)),
    -- the newest state of each customer in the input: by updated (a record without one counts as
    -- newest), then by position
    last AS (SELECT DISTINCT ON (customer_id) * FROM input
             ORDER BY customer_id, updated DESC NULLS FIRST, i DESC),
    upd AS (
        UPDATE customers c SET
            email = coalesce(l.email, c.email), created_at = coalesce(l.created_at, c.created_at),
            channel = coalesce(l.channel, c.channel), referred_by = coalesce(l.referred_by, c.referred_by),
            attributes = coalesce(l.attributes, c.attributes), is_known = true,
            record_updated_at = greatest(c.record_updated_at, l.updated)
        FROM last l, customers old
        WHERE c.tenant_id = p_tenant AND c.customer_id = l.customer_id
          AND old.tenant_id = c.tenant_id AND old.customer_id = c.customer_id
          -- a state older than the stored one (a platform's late retry) changes nothing
          AND NOT (l.updated IS NOT NULL AND c.record_updated_at IS NOT NULL AND l.updated < c.record_updated_at)
          AND (NOT c.is_known
               OR (coalesce(l.email, c.email), coalesce(l.created_at, c.created_at),
                   coalesce(l.channel, c.channel), coalesce(l.referred_by, c.referred_by),
                   coalesce(l.attributes, c.attributes))
                  IS DISTINCT FROM (c.email, c.created_at, c.channel, c.referred_by, c.attributes))
        RETURNING c.customer_id, old.is_known AS was_known, old.record_updated_at AS was_updated)
    SELECT input.i, CASE WHEN input.i <> last.i THEN 'duplicate'
                         WHEN upd.customer_id IS NULL THEN
                              CASE WHEN last.updated < cur.record_updated_at THEN 'stale' ELSE 'duplicate' END
                         WHEN NOT upd.was_known THEN 'created' ELSE 'updated' END
    FROM input JOIN last USING (customer_id) LEFT JOIN upd USING (customer_id)
    LEFT JOIN customers cur ON cur.tenant_id = p_tenant AND cur.customer_id = input.customer_id
    ORDER BY input.i;

    -- created_at defaults to the customer's first business time we know of (never the time
    -- the row was inserted: SPEC §8; a record with neither stays without one)
    UPDATE customers SET created_at = coalesce(first_order_at, first_engaged_at)
    WHERE tenant_id = p_tenant AND customer_id = ANY(p_ids) AND created_at IS NULL;
    SELECT array_agg(DISTINCT x) INTO refresh FROM unnest(p_ids || array_remove(p_referred_by, NULL)) x;
    PERFORM rd_refresh_customers(p_tenant, refresh, NULL);
END $function$;

-- Orders: upsert (rd_upsert_orders; an order is replaced only by a newer updated_at), then
-- bring the rollups of their customers, and of the customers they moved away from, current.
-- Outcome per input position: created | updated | duplicate | stale.
CREATE OR REPLACE FUNCTION rd_ingest_orders(p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamp with time zone[], p_updated timestamp with time zone[], p_currency text[], p_total numeric[], p_refunded numeric[], p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[], p_test boolean[], p_email text[])
 RETURNS TABLE(idx integer, outcome text)
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    affected text[];
    recompute text[];
    changed_at timestamptz;
    zone text;
BEGIN
    SELECT array_agg(DISTINCT c) INTO affected FROM (
        SELECT unnest(p_customers) AS c
        UNION SELECT o.customer_id FROM unnest(p_ids) AS x(id)
              CROSS JOIN LATERAL (SELECT o.customer_id FROM orders o
                                  WHERE o.tenant_id = p_tenant AND o.order_id = x.id OFFSET 0) o) s;
    PERFORM rd_lock_customers(p_tenant, affected);
    -- purchase days are the shop's local days; read under the locks, after any zone change that
    -- holds them (sql/tenants.sql)
    zone := rd_tenant_zone(p_tenant);

    -- an e-mail carried by an order fills a customer's missing e-mail
    UPDATE customers c SET email = u.e
    FROM (SELECT DISTINCT ON (cu) cu, e FROM unnest(p_customers, p_email) AS x(cu, e)
          WHERE e IS NOT NULL ORDER BY cu) u
    WHERE c.tenant_id = p_tenant AND c.customer_id = u.cu AND c.email IS NULL;

    PERFORM rd_upsert_orders(p_tenant, p_ids, p_customers, p_placed, p_updated, p_currency,
                             p_total, p_refunded, p_shop_total, p_shop_refunded, p_status,
                             p_source, p_test);

    IF cardinality(p_ids) = 1 THEN
        SELECT r.at INTO changed_at FROM rd_order_change r;
    END IF;

    -- customers with a changed order (new state, or moved away): recompute from their orders
    SELECT array_agg(DISTINCT x) INTO recompute FROM (
        SELECT r.customer_id FROM rd_order_change r WHERE r.outcome = 'updated'
        UNION SELECT r.old_customer FROM rd_order_change r
              WHERE r.outcome = 'updated' AND r.old_customer IS NOT NULL) s(x);

    -- everyone else gains only new orders: add them to the stored rollup (sql/rollup.sql explains the
    -- "unplaced" customers, recomputed instead)
    PERFORM rd_rollup_begin();
    WITH d AS (
        SELECT r.customer_id, min(r.placed_at) AS f, max(r.placed_at) AS l, count(*)::int AS n,
               sum(r.net_value) AS rev, array_agg(rd_local_day(r.placed_at, zone)) AS days,
               array_agg(r.net_value) AS vals
        FROM rd_order_change r
        WHERE r.outcome = 'created' AND r.qualifying
          AND r.customer_id NOT IN (SELECT unnest(coalesce(recompute, '{}')))
        GROUP BY r.customer_id),
    j AS (
        SELECT c.customer_id, c.stage, least(c.first_order_at, d.f) AS fo,
               greatest(c.last_order_at, d.l) AS lo, c.order_count + d.n AS n,
               c.net_revenue + d.rev AS rev, c.first_engaged_at, c.last_engaged_at, c.event_count,
               c.last_advocacy_at, c.advocacy_kind,
               CASE WHEN least(c.first_order_at, d.f) IS DISTINCT FROM c.first_order_at
                    THEN c.referred_by END AS referrer,
               c.order_days + k.new_days AS days,
               CASE WHEN c.cf <= rd_local_day(d.f, zone) THEN c.first_day_value ELSE 0 END + k.v_first AS v1,
               k.unplaced
        FROM d
        CROSS JOIN LATERAL (
            SELECT c.*, rd_local_day(c.first_order_at, zone) AS cf,
                   rd_local_day(c.last_order_at, zone) AS cl
            FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id = d.customer_id
            OFFSET 0) c
        CROSS JOIN LATERAL (
            SELECT count(DISTINCT o.d) FILTER (WHERE c.cf IS NULL OR o.d < c.cf OR o.d > c.cl)::int AS new_days,
                   coalesce(sum(o.v) FILTER (WHERE o.d = least(c.cf, rd_local_day(d.f, zone))), 0) AS v_first,
                   coalesce(bool_or(o.d > c.cf AND o.d < c.cl), false) AS unplaced
            FROM unnest(d.days, d.vals) AS o(d, v)) k),
    ins AS (
        INSERT INTO rd_rollup_new (customer_id, old_stage, fo, lo, n, rev, fe, le, en,
                                   adv_at, adv_kind, referrer, days, v1)
        SELECT customer_id, stage, fo, lo, n, rev, first_engaged_at, last_engaged_at,
               event_count, last_advocacy_at, advocacy_kind, referrer, days, v1
        FROM j WHERE NOT unplaced)
    SELECT recompute || array_agg(customer_id) FILTER (WHERE unplaced) INTO recompute FROM j;
    PERFORM rd_rollup_apply(p_tenant, changed_at);

    -- a referred customer's first order is its referrer's advocacy: recompute those too
    SELECT array_agg(DISTINCT x) INTO recompute FROM (
        SELECT unnest(recompute) UNION SELECT r.referrer FROM rd_rollup_new r
                                       WHERE r.referrer IS NOT NULL) s(x);
    IF recompute IS NOT NULL THEN
        PERFORM rd_refresh_customers(p_tenant, recompute, changed_at);
    END IF;
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_order_change r ORDER BY r.idx;
END $function$;

-- rd_ingest_orders for independent single orders: the caller guarantees no customer and no
-- order id appears twice. Each customer's rung change is dated as a call of its order alone
-- would date it.
CREATE OR REPLACE FUNCTION rd_ingest_orders_each(p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamp with time zone[], p_updated timestamp with time zone[], p_currency text[], p_total numeric[], p_refunded numeric[], p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[], p_test boolean[], p_email text[])
 RETURNS TABLE(idx integer, outcome text)
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    ats jsonb;
BEGIN
    WITH own AS (
        SELECT u.cu, o.customer_id AS old_cu,
               CASE WHEN o.order_id IS NULL THEN u.placed ELSE u.updated END AS at
        FROM unnest(p_ids, p_customers, p_placed, p_updated) AS u(id, cu, placed, updated)
        LEFT JOIN LATERAL (SELECT o.order_id, o.customer_id FROM orders o
                           WHERE o.tenant_id = p_tenant AND o.order_id = u.id OFFSET 0) o ON true),
    touched AS (
        SELECT cu AS k, at, 1 AS pri FROM own
        UNION ALL SELECT old_cu, at, 2 FROM own WHERE old_cu IS NOT NULL AND old_cu <> cu),
    keyed AS (
        SELECT k, at, pri FROM touched
        UNION ALL
        SELECT r.referred_by, t.at, 3 FROM touched t
        CROSS JOIN LATERAL (SELECT c.referred_by FROM customers c
                            WHERE c.tenant_id = p_tenant AND c.customer_id = t.k OFFSET 0) r
        WHERE r.referred_by IS NOT NULL)
    SELECT jsonb_object_agg(k, at) INTO ats
    FROM (SELECT DISTINCT ON (k) k, at FROM keyed ORDER BY k, pri) s;

    PERFORM set_config('rd.change_at', coalesce(ats::text, ''), true);
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_ingest_orders(p_tenant, p_ids, p_customers,
        p_placed, p_updated, p_currency, p_total, p_refunded, p_shop_total, p_shop_refunded,
        p_status, p_source, p_test, p_email) r;
    PERFORM set_config('rd.change_at', '', true);
END $function$;

-- rd_ingest_orders for a chunk of a bulk load: the same orders and outcomes; the customers'
-- rollups are left to rd_rollup_flush, which also creates the customer rows still missing
-- (rd_lock_customers), so a chunk writes a customer row only to fill an e-mail. Pending rows
-- are locked before that customer row, so a chunk never waits for a flush while holding a
-- customer row the flush may need.
CREATE OR REPLACE FUNCTION rd_ingest_orders_deferred(p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamp with time zone[], p_updated timestamp with time zone[], p_currency text[], p_total numeric[], p_refunded numeric[], p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[], p_test boolean[], p_email text[])
 RETURNS TABLE(idx integer, outcome text)
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
    PERFORM rd_upsert_orders(p_tenant, p_ids, p_customers, p_placed, p_updated, p_currency,
                             p_total, p_refunded, p_shop_total, p_shop_refunded, p_status,
                             p_source, p_test);

    INSERT INTO rollup_pending AS p (tenant_id, customer_id)
    SELECT p_tenant, x FROM (
        SELECT r.customer_id FROM rd_order_change r WHERE r.outcome IN ('created', 'updated')
        UNION SELECT r.old_customer FROM rd_order_change r
              WHERE r.outcome = 'updated' AND r.old_customer IS NOT NULL) s(x)
    ORDER BY x
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET since = p.since WHERE false;

    INSERT INTO customers AS c (tenant_id, customer_id, email)
    SELECT DISTINCT ON (cu) p_tenant, cu, e FROM unnest(p_customers, p_email) AS x(cu, e)
    WHERE e IS NOT NULL ORDER BY cu
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET email = EXCLUDED.email WHERE c.email IS NULL;

    RETURN QUERY SELECT r.idx, r.outcome FROM rd_order_change r ORDER BY r.idx;
END $function$;

-- Events, with the rollup maintained by delta (events are never changed, only added). A referral names the customer it brought (properties.referred_customer_id), whose
-- referred_by is set if still empty; the referrer's advocacy is then recomputed.
CREATE OR REPLACE FUNCTION rd_ingest_events(p_tenant bigint, p_ids text[], p_customers text[], p_types text[], p_occurred timestamp with time zone[], p_properties jsonb[], p_source text)
 RETURNS TABLE(idx integer, outcome text)
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    t tenants%ROWTYPE;
    referred text[];
    referrers text[];
    changed_at timestamptz;
BEGIN
    SELECT * INTO t FROM tenants WHERE tenant_id = p_tenant;
    SELECT array_agg(DISTINCT pr->>'referred_customer_id') INTO referred
    FROM unnest(p_types, p_properties) AS u(ty, pr)
    WHERE ty = 'referral' AND pr ? 'referred_customer_id';
    PERFORM rd_lock_customers(p_tenant, p_customers || coalesce(referred, '{}'));

    CREATE TEMP TABLE IF NOT EXISTS rd_event_change (
        idx int, outcome text, customer_id text, occurred_at timestamptz, adv_kind text)
        ON COMMIT DELETE ROWS;
    DELETE FROM rd_event_change;
    WITH input AS (
        SELECT u.*, u.ord::int AS i FROM unnest(p_ids, p_customers, p_types, p_occurred, p_properties)
            WITH ORDINALITY AS u(event_id, customer_id, type, occurred_at, properties, ord)),
    first AS (SELECT DISTINCT ON (event_id) * FROM input ORDER BY event_id, i),
    ins AS (
        INSERT INTO events (tenant_id, event_id, customer_id, type, occurred_at, properties, source)
        SELECT p_tenant, event_id, customer_id, type, occurred_at, properties, p_source FROM first
        ON CONFLICT DO NOTHING RETURNING event_id)
    INSERT INTO rd_event_change
    SELECT input.i, CASE WHEN input.i = first.i AND ins.event_id IS NOT NULL THEN 'created'
                         ELSE 'duplicate' END,
           input.customer_id, input.occurred_at,
           rd_advocacy_kind(input.type, input.properties, t.advocacy_min_review, t.advocacy_min_nps)
    FROM input JOIN first USING (event_id) LEFT JOIN ins USING (event_id);

    -- a referral counts for the referrer once the referred customer has ordered
    WITH u AS (
        UPDATE customers c SET referred_by = u.referrer
        FROM (SELECT DISTINCT ON (pr->>'referred_customer_id') pr->>'referred_customer_id' AS referred,
                     cu AS referrer
              FROM unnest(p_types, p_properties, p_customers) AS x(ty, pr, cu)
              WHERE ty = 'referral' AND pr ? 'referred_customer_id'
              ORDER BY pr->>'referred_customer_id') u
        WHERE c.tenant_id = p_tenant AND c.customer_id = u.referred AND c.referred_by IS NULL
          AND u.referred <> u.referrer
        RETURNING c.referred_by, c.first_order_at)
    SELECT array_agg(DISTINCT referred_by) FILTER (WHERE first_order_at IS NOT NULL) INTO referrers
    FROM u;

    IF cardinality(p_ids) = 1 THEN
        changed_at := p_occurred[1];
    END IF;

    PERFORM rd_rollup_begin();
    INSERT INTO rd_rollup_new (customer_id, old_stage, fo, lo, n, rev, fe, le, en,
                               adv_at, adv_kind)
    SELECT c.customer_id, c.stage, c.first_order_at, c.last_order_at, c.order_count,
           c.net_revenue, least(c.first_engaged_at, d.f), greatest(c.last_engaged_at, d.l),
           c.event_count + d.n,
           CASE WHEN d.adv_at > c.last_advocacy_at OR (c.last_advocacy_at IS NULL AND d.adv_at IS NOT NULL)
                THEN d.adv_at ELSE c.last_advocacy_at END,
           CASE WHEN d.adv_at > c.last_advocacy_at OR (c.last_advocacy_at IS NULL AND d.adv_at IS NOT NULL)
                THEN d.adv_kind ELSE c.advocacy_kind END
    FROM (SELECT r.customer_id, min(r.occurred_at) AS f, max(r.occurred_at) AS l,
                 count(*)::int AS n, max(r.occurred_at) FILTER (WHERE r.adv_kind IS NOT NULL) AS adv_at,
                 (array_agg(r.adv_kind ORDER BY r.occurred_at DESC, r.adv_kind DESC)
                     FILTER (WHERE r.adv_kind IS NOT NULL))[1] AS adv_kind
          FROM rd_event_change r WHERE r.outcome = 'created'
          GROUP BY r.customer_id) d
    JOIN customers c ON c.tenant_id = p_tenant AND c.customer_id = d.customer_id;
    PERFORM rd_rollup_apply(p_tenant, changed_at);

    IF referrers IS NOT NULL THEN
        PERFORM rd_refresh_customers(p_tenant, referrers, changed_at, false);
    END IF;
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_event_change r ORDER BY r.idx;
END $function$;

-- rd_ingest_events for independent single events (no referrals; no customer and no event id
-- twice): each customer's rung change is dated at its event's occurred_at, as a call of that
-- event alone would date it (rd.change_at, see rd_rollup_apply).
CREATE OR REPLACE FUNCTION rd_ingest_events_each(p_tenant bigint, p_ids text[], p_customers text[], p_types text[], p_occurred timestamp with time zone[], p_properties jsonb[], p_source text)
 RETURNS TABLE(idx integer, outcome text)
 LANGUAGE plpgsql
 SET jit TO 'off'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
    PERFORM set_config('rd.change_at',
        coalesce((SELECT jsonb_object_agg(cu, at) FROM unnest(p_customers, p_occurred) AS u(cu, at))::text, ''),
        true);
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_ingest_events(p_tenant, p_ids, p_customers, p_types,
        p_occurred, p_properties, p_source) r;
    PERFORM set_config('rd.change_at', '', true);
END $function$;

-- Marketing spend per kind, channel and period: the last post of a period replaces its amount.
CREATE OR REPLACE FUNCTION rd_ingest_spend(p_tenant bigint, p_kind text[], p_channel text[], p_start date[], p_end date[], p_amount numeric[])
 RETURNS TABLE(idx integer, outcome text)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT u.*, u.ord::int AS i FROM unnest(p_kind, p_channel, p_start, p_end, p_amount)
            WITH ORDINALITY AS u(kind, channel, period_start, period_end, amount, ord)),
    last AS (SELECT DISTINCT ON (kind, channel, period_start) * FROM input
             ORDER BY kind, channel, period_start, i DESC),
    ups AS (
        INSERT INTO spend AS s (tenant_id, kind, channel, period_start, period_end, amount)
        SELECT p_tenant, kind, channel, period_start, period_end, amount FROM last
        ON CONFLICT (tenant_id, kind, channel, period_start) DO UPDATE
            SET period_end = EXCLUDED.period_end, amount = EXCLUDED.amount
        WHERE (s.period_end, s.amount) IS DISTINCT FROM (EXCLUDED.period_end, EXCLUDED.amount)
        RETURNING s.kind, s.channel, s.period_start, (s.xmax = 0) AS inserted)
    SELECT input.i, CASE WHEN input.i <> last.i OR ups.kind IS NULL THEN 'duplicate'
                         WHEN ups.inserted THEN 'created' ELSE 'updated' END
    FROM input JOIN last USING (kind, channel, period_start)
    LEFT JOIN ups USING (kind, channel, period_start)
    ORDER BY input.i;
END $function$;
