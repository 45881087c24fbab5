-- 002_ingest.sql - set-based ingest functions, one per kind, used alike by single-event
-- requests (arrays of one) and by batches (arrays of thousands): one round trip, one code path.
--
-- Locking: each function first makes sure every customer it touches exists, then locks those
-- rows in customer_id order before reading or writing anything else. Two transactions that
-- touch the same customer therefore serialise at that lock, and the rollup each computes sees
-- the other's committed rows (READ COMMITTED takes a new snapshot per statement).

CREATE FUNCTION rd_lock_customers(p_tenant bigint, p_ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO customers (tenant_id, customer_id)
    SELECT p_tenant, c FROM (SELECT DISTINCT unnest(p_ids) AS c) s ORDER BY c
    ON CONFLICT DO NOTHING;
    PERFORM 1 FROM customers WHERE tenant_id = p_tenant AND customer_id = ANY(p_ids)
    ORDER BY customer_id FOR UPDATE;
END $$;

-- Orders: insert, or replace when the incoming state is newer (updated_at later, or equal with
-- different content: last write wins on a tie). Outcome per input position:
-- created | updated | duplicate (same state again) | stale (older than stored) |
-- superseded (a newer state of the same order later in the same call).
CREATE FUNCTION rd_ingest_orders(
    p_tenant bigint, p_ids text[], p_customers text[], p_placed timestamptz[],
    p_updated timestamptz[], p_currency text[], p_total numeric[], p_refunded numeric[],
    p_shop_total numeric[], p_shop_refunded numeric[], p_status text[], p_source text[],
    p_test boolean[], p_email text[])
RETURNS TABLE (idx int, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    affected text[];
    changed_at timestamptz;
BEGIN
    SELECT array_agg(DISTINCT c) INTO affected FROM (
        SELECT unnest(p_customers) AS c
        UNION SELECT o.customer_id FROM orders o
              WHERE o.tenant_id = p_tenant AND o.order_id = ANY(p_ids)) s;
    PERFORM rd_lock_customers(p_tenant, affected);

    -- an e-mail carried by an order fills a customer's missing e-mail
    UPDATE customers c SET email = u.e
    FROM (SELECT DISTINCT ON (cu) cu, e FROM unnest(p_customers, p_email) AS x(cu, e)
          WHERE e IS NOT NULL ORDER BY cu) u
    WHERE c.tenant_id = p_tenant AND c.customer_id = u.cu AND c.email IS NULL;

    CREATE TEMP TABLE IF NOT EXISTS rd_order_outcome (idx int, outcome text, at timestamptz)
        ON COMMIT DELETE ROWS;
    DELETE FROM rd_order_outcome;

    WITH input AS (
        SELECT u.*, u.ord::int AS i FROM unnest(p_ids, p_customers, p_placed, p_updated, p_currency,
            p_total, p_refunded, p_shop_total, p_shop_refunded, p_status, p_source, p_test)
            WITH ORDINALITY AS u(order_id, customer_id, placed_at, updated_at, currency, total,
                                 refunded, shop_total, shop_refunded, status, source, test, ord)),
    newest AS (
        SELECT DISTINCT ON (order_id) * FROM input ORDER BY order_id, updated_at DESC, i DESC),
    prev AS (
        SELECT o.order_id, o.updated_at FROM orders o JOIN newest n USING (order_id)
        WHERE o.tenant_id = p_tenant),
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
        RETURNING o.order_id, (o.xmax = 0) AS inserted)
    INSERT INTO rd_order_outcome
    SELECT input.i,
           CASE WHEN input.i <> newest.i THEN 'superseded'
                WHEN ups.order_id IS NULL AND prev.updated_at > input.updated_at THEN 'stale'
                WHEN ups.order_id IS NULL THEN 'duplicate'
                WHEN ups.inserted THEN 'created'
                ELSE 'updated' END,
           CASE WHEN ups.inserted THEN input.placed_at ELSE input.updated_at END
    FROM input JOIN newest USING (order_id)
    LEFT JOIN ups USING (order_id) LEFT JOIN prev USING (order_id);

    IF cardinality(p_ids) = 1 THEN
        SELECT r.at INTO changed_at FROM rd_order_outcome r;
    END IF;
    IF EXISTS (SELECT 1 FROM rd_order_outcome r WHERE r.outcome IN ('created', 'updated')) THEN
        PERFORM rd_refresh_customers(p_tenant, affected, changed_at);
    END IF;
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_order_outcome r ORDER BY r.idx;
END $$;

-- Customers: insert or fill in. Fields given replace stored ones; fields absent keep theirs.
-- Outcome: created (new, or first explicit post of a customer implied by an order/event) |
-- updated | duplicate.
CREATE FUNCTION rd_ingest_customers(
    p_tenant bigint, p_ids text[], p_email text[], p_created timestamptz[], p_channel text[],
    p_referred_by text[], p_attributes jsonb[])
RETURNS TABLE (idx int, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    refresh text[];
BEGIN
    PERFORM rd_lock_customers(p_tenant, p_ids || array_remove(p_referred_by, NULL));
    RETURN QUERY
    WITH input AS (
        SELECT u.*, u.ord::int AS i FROM unnest(p_ids, p_email, p_created, p_channel, p_referred_by,
                                                p_attributes)
            WITH ORDINALITY AS u(customer_id, email, created_at, channel, referred_by, attributes, ord)),
    last AS (SELECT DISTINCT ON (customer_id) * FROM input ORDER BY customer_id, i DESC),
    upd AS (
        UPDATE customers c SET
            email = coalesce(l.email, c.email), created_at = coalesce(l.created_at, c.created_at),
            channel = coalesce(l.channel, c.channel), referred_by = coalesce(l.referred_by, c.referred_by),
            attributes = coalesce(l.attributes, c.attributes), is_known = true
        FROM last l, customers old
        WHERE c.tenant_id = p_tenant AND c.customer_id = l.customer_id
          AND old.tenant_id = c.tenant_id AND old.customer_id = c.customer_id
          AND (NOT c.is_known
               OR (coalesce(l.email, c.email), coalesce(l.created_at, c.created_at),
                   coalesce(l.channel, c.channel), coalesce(l.referred_by, c.referred_by),
                   coalesce(l.attributes, c.attributes))
                  IS DISTINCT FROM (c.email, c.created_at, c.channel, c.referred_by, c.attributes))
        RETURNING c.customer_id, old.is_known AS was_known)
    SELECT input.i, CASE WHEN input.i <> last.i OR upd.customer_id IS NULL THEN 'duplicate'
                         WHEN NOT upd.was_known THEN 'created' ELSE 'updated' END
    FROM input JOIN last USING (customer_id) LEFT JOIN upd USING (customer_id)
    ORDER BY input.i;

    -- created_at defaults to the first time we hear of a customer
    UPDATE customers SET created_at = coalesce(first_order_at, first_engaged_at, inserted_at)
    WHERE tenant_id = p_tenant AND customer_id = ANY(p_ids) AND created_at IS NULL;
    SELECT array_agg(DISTINCT x) INTO refresh FROM unnest(p_ids || array_remove(p_referred_by, NULL)) x;
    PERFORM rd_refresh_customers(p_tenant, refresh, NULL);
END $$;

-- Events: idempotent by event_id. A referral names the customer it brought
-- (properties.referred_customer_id), whose referred_by is set if still empty.
CREATE FUNCTION rd_ingest_events(
    p_tenant bigint, p_ids text[], p_customers text[], p_types text[], p_occurred timestamptz[],
    p_properties jsonb[], p_source text)
RETURNS TABLE (idx int, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    referred text[];
    touched text[];
    changed_at timestamptz;
BEGIN
    SELECT array_agg(DISTINCT pr->>'referred_customer_id') INTO referred
    FROM unnest(p_types, p_properties) AS u(t, pr)
    WHERE t = 'referral' AND pr ? 'referred_customer_id';
    touched := p_customers || coalesce(referred, '{}');
    PERFORM rd_lock_customers(p_tenant, touched);

    CREATE TEMP TABLE IF NOT EXISTS rd_event_outcome (idx int, outcome text) ON COMMIT DELETE ROWS;
    DELETE FROM rd_event_outcome;
    WITH input AS (
        SELECT u.*, u.ord::int AS i FROM unnest(p_ids, p_customers, p_types, p_occurred, p_properties)
            WITH ORDINALITY AS u(event_id, customer_id, type, occurred_at, properties, ord)),
    first AS (SELECT DISTINCT ON (event_id) * FROM input ORDER BY event_id, i),
    ins AS (
        INSERT INTO events (tenant_id, event_id, customer_id, type, occurred_at, properties, source)
        SELECT p_tenant, event_id, customer_id, type, occurred_at, properties, p_source FROM first
        ON CONFLICT DO NOTHING RETURNING event_id)
    INSERT INTO rd_event_outcome
    SELECT input.i, CASE WHEN input.i = first.i AND ins.event_id IS NOT NULL THEN 'created'
                         ELSE 'duplicate' END
    FROM input JOIN first USING (event_id) LEFT JOIN ins USING (event_id);

    UPDATE customers c SET referred_by = u.referrer
    FROM (SELECT DISTINCT ON (pr->>'referred_customer_id') pr->>'referred_customer_id' AS referred,
                 cu AS referrer
          FROM unnest(p_types, p_properties, p_customers) AS x(t, pr, cu)
          WHERE t = 'referral' AND pr ? 'referred_customer_id'
          ORDER BY pr->>'referred_customer_id') u
    WHERE c.tenant_id = p_tenant AND c.customer_id = u.referred AND c.referred_by IS NULL
      AND u.referred <> u.referrer;

    IF cardinality(p_ids) = 1 THEN
        changed_at := p_occurred[1];
    END IF;
    IF EXISTS (SELECT 1 FROM rd_event_outcome r WHERE r.outcome = 'created') THEN
        PERFORM rd_refresh_customers(p_tenant, touched, changed_at);
    END IF;
    RETURN QUERY SELECT r.idx, r.outcome FROM rd_event_outcome r ORDER BY r.idx;
END $$;

CREATE FUNCTION rd_ingest_spend(
    p_tenant bigint, p_kind text[], p_channel text[], p_start date[], p_end date[], p_amount numeric[])
RETURNS TABLE (idx int, outcome text) LANGUAGE sql AS $$
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
    ORDER BY input.i
$$;
