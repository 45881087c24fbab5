-- privacy.sql - erasure (GDPR Art. 17) of customers, of orders, of a shop's whole data, and
-- the audit row that records it without the personal data (migrations/003_privacy.sql).

-- Erases customers p_ids (each with everything stored about them: record, orders, events, rung
-- history, prediction, pending rollup, data requests) and orders p_orders (of anyone: Shopify's
-- orders_to_redact), in the caller's transaction. Derived content follows: the ladder's daily
-- aggregate through stage_history's trigger (sql/ladder.sql), the report snapshots through one
-- whole-tenant row of report_changes (and the rows naming the customers are deleted), the RFM
-- boundaries (which hold customer ids) are dropped to be recomputed at the next read. Customers
-- they referred lose the link; their referrers, and the owners of erased orders, get their
-- rollups recomputed. One audit row per erased customer (or one for orders alone), by the hash
-- of "<tenant>:<id>". Returns the rows removed per kind (customers 0: none of p_ids existed).
CREATE OR REPLACE FUNCTION rd_erase(p_tenant bigint, p_ids text[], p_orders text[], p_by text)
 RETURNS TABLE(kind text, n bigint)
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
#variable_conflict use_column
DECLARE
    ids text[];
    gone_orders text[];
    recompute text[];
    c_customers bigint := 0;
    c_orders bigint := 0;
    c_events bigint := 0;
    c_rungs bigint := 0;
    c_predictions bigint := 0;
    c_pending bigint := 0;
    c_refunds bigint := 0;
    c_requests bigint := 0;
    c_referrals bigint := 0;
    c_rfm bigint := 0;
BEGIN
    p_ids := coalesce(p_ids, '{}');
    p_orders := coalesce(p_orders, '{}');
    -- whose rollups change: the referrers of the erased and the owners of erased orders (that
    -- exist and are not erased themselves); then all of them locked in key order, as ingest
    -- locks customers, and the erased that exist
    SELECT coalesce(array_agg(DISTINCT s.x), '{}') INTO recompute FROM (
        SELECT c.referred_by FROM customers c
        WHERE c.tenant_id = p_tenant AND c.customer_id = ANY (p_ids) AND c.referred_by IS NOT NULL
        UNION
        SELECT o.customer_id FROM orders o WHERE o.tenant_id = p_tenant AND o.order_id = ANY (p_orders)) s(x)
    WHERE NOT s.x = ANY (p_ids)
      AND EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id = s.x);
    PERFORM 1 FROM (SELECT c.customer_id FROM customers c
                    WHERE c.tenant_id = p_tenant AND c.customer_id = ANY (p_ids || recompute)
                    ORDER BY c.customer_id FOR UPDATE) l;
    SELECT coalesce(array_agg(c.customer_id ORDER BY c.customer_id), '{}') INTO ids
    FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id = ANY (p_ids);

    WITH d AS (DELETE FROM orders o WHERE o.tenant_id = p_tenant
                   AND (o.customer_id = ANY (ids) OR o.order_id = ANY (p_orders))
               RETURNING o.order_id)
    SELECT coalesce(array_agg(order_id), '{}'), count(*) INTO gone_orders, c_orders FROM d;
    DELETE FROM webhook_refunds r WHERE r.tenant_id = p_tenant AND r.order_id = ANY (gone_orders || p_orders);
    GET DIAGNOSTICS c_refunds = ROW_COUNT;
    DELETE FROM events e WHERE e.tenant_id = p_tenant AND e.customer_id = ANY (ids);
    GET DIAGNOSTICS c_events = ROW_COUNT;
    DELETE FROM stage_history h WHERE h.tenant_id = p_tenant AND h.customer_id = ANY (ids);
    GET DIAGNOSTICS c_rungs = ROW_COUNT;
    DELETE FROM customer_predictions p WHERE p.tenant_id = p_tenant AND p.customer_id = ANY (ids);
    GET DIAGNOSTICS c_predictions = ROW_COUNT;
    DELETE FROM rollup_pending p WHERE p.tenant_id = p_tenant AND p.customer_id = ANY (ids);
    GET DIAGNOSTICS c_pending = ROW_COUNT;
    DELETE FROM privacy_requests q WHERE q.tenant_id = p_tenant AND q.customer_id = ANY (ids);
    GET DIAGNOSTICS c_requests = ROW_COUNT;
    UPDATE customers c SET referred_by = NULL WHERE c.tenant_id = p_tenant AND c.referred_by = ANY (ids);
    GET DIAGNOSTICS c_referrals = ROW_COUNT;
    DELETE FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id = ANY (ids);
    GET DIAGNOSTICS c_customers = ROW_COUNT;
    DELETE FROM rfm_cutoffs r WHERE r.tenant_id = p_tenant;
    GET DIAGNOSTICS c_rfm = ROW_COUNT;

    IF cardinality(recompute) > 0 THEN
        PERFORM rd_refresh_customers(p_tenant, recompute, NULL);
    END IF;
    -- the snapshots read the tenant again; no row names an erased customer any more
    INSERT INTO report_changes (tenant_id, customer_id) VALUES (p_tenant, NULL);
    DELETE FROM report_changes r WHERE r.tenant_id = p_tenant AND r.customer_id = ANY (ids);

    IF c_customers + c_orders > 0 THEN
        INSERT INTO privacy_erasures (tenant_id, subject_hash, requested_by, counts)
        SELECT p_tenant, CASE WHEN s.id IS NULL THEN NULL
                              ELSE encode(sha256(convert_to(p_tenant || ':' || s.id, 'UTF8')), 'hex') END,
               p_by,
               jsonb_build_object('customers', c_customers, 'orders', c_orders, 'events', c_events,
                                  'rung_changes', c_rungs, 'predictions', c_predictions,
                                  'pending_rollups', c_pending, 'refunds', c_refunds,
                                  'data_requests', c_requests, 'referrals_unlinked', c_referrals)
        FROM (SELECT unnest(CASE WHEN cardinality(ids) > 0 THEN ids ELSE ARRAY[NULL::text] END) AS id) s;
    END IF;
    RETURN QUERY VALUES ('customers', c_customers), ('orders', c_orders), ('events', c_events),
                        ('rung_changes', c_rungs), ('predictions', c_predictions),
                        ('pending_rollups', c_pending), ('refunds', c_refunds),
                        ('data_requests', c_requests), ('referrals_unlinked', c_referrals);
END $function$;

-- Erases all of a tenant's data (Shopify shop/redact) and keeps the tenant row, its keys and
-- webhook secrets, so the shop can come back. Returns the rows removed per kind.
CREATE OR REPLACE FUNCTION rd_erase_shop(p_tenant bigint, p_by text)
 RETURNS TABLE(kind text, n bigint)
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
#variable_conflict use_column
DECLARE
    counts jsonb := '{}';
    k bigint;
BEGIN
    PERFORM 1 FROM tenants t WHERE t.tenant_id = p_tenant FOR UPDATE;
    DELETE FROM orders o WHERE o.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('orders', k);
    DELETE FROM events e WHERE e.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('events', k);
    DELETE FROM stage_history h WHERE h.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('rung_changes', k);
    DELETE FROM stage_history_days d WHERE d.tenant_id = p_tenant;
    DELETE FROM stage_history_late l WHERE l.tenant_id = p_tenant;
    DELETE FROM stage_history_compacted m WHERE m.tenant_id = p_tenant;
    DELETE FROM customer_predictions p WHERE p.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('predictions', k);
    DELETE FROM clv_models m WHERE m.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('models', k);
    DELETE FROM rollup_pending p WHERE p.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('pending_rollups', k);
    DELETE FROM webhook_refunds r WHERE r.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('refunds', k);
    DELETE FROM privacy_requests q WHERE q.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('data_requests', k);
    DELETE FROM spend s WHERE s.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('spend', k);
    DELETE FROM rfm_cutoffs r WHERE r.tenant_id = p_tenant;
    DELETE FROM customers c WHERE c.tenant_id = p_tenant;
    GET DIAGNOSTICS k = ROW_COUNT; counts := counts || jsonb_build_object('customers', k);
    INSERT INTO report_changes (tenant_id, customer_id) VALUES (p_tenant, NULL);
    DELETE FROM report_changes r WHERE r.tenant_id = p_tenant AND r.customer_id IS NOT NULL;
    INSERT INTO privacy_erasures (tenant_id, subject_hash, requested_by, counts)
    VALUES (p_tenant, NULL, p_by, counts);
    RETURN QUERY SELECT e.key, e.value::bigint FROM jsonb_each_text(counts) e ORDER BY e.key;
END $function$;

-- Deletes a tenant for good (`retentiond tenant delete`): its data as rd_erase_shop erases it,
-- then its webhook deliveries and change rows, then the tenant row, whose keys, secrets and
-- audit rows go with it (ON DELETE CASCADE).
CREATE OR REPLACE FUNCTION rd_tenant_delete(p_tenant bigint)
 RETURNS void
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
BEGIN
    PERFORM rd_erase_shop(p_tenant, 'cli tenant delete');
    DELETE FROM webhook_deliveries WHERE tenant_id = p_tenant;
    DELETE FROM report_changes WHERE tenant_id = p_tenant;
    DELETE FROM tenants WHERE tenant_id = p_tenant;
END $function$;
