-- privacy.sql - erasure (GDPR Art. 17) of customers, of orders, of a shop's whole data, and
-- the audit row that records it without the personal data (migrations/003_privacy.sql).

-- The kinds an erasure reports, named for the reply: the loop's tables by what they hold.
CREATE OR REPLACE FUNCTION rd_erase_counts(p_customers bigint, p_orders bigint, p_removed jsonb, p_refunds bigint, p_referrals bigint)
 RETURNS TABLE(kind text, n bigint)
 LANGUAGE sql
 IMMUTABLE
AS $function$
    VALUES ('customers', p_customers), ('orders', p_orders),
           ('events', coalesce((p_removed ->> 'events')::bigint, 0)),
           ('rung_changes', coalesce((p_removed ->> 'stage_history')::bigint, 0)),
           ('predictions', coalesce((p_removed ->> 'customer_predictions')::bigint, 0)),
           ('pending_rollups', coalesce((p_removed ->> 'rollup_pending')::bigint, 0)),
           ('refunds', p_refunds),
           ('data_requests', coalesce((p_removed ->> 'privacy_requests')::bigint, 0)),
           ('webhook_deliveries', coalesce((p_removed ->> 'outbox')::bigint, 0)
                                  + coalesce((p_removed ->> 'subscription_deliveries')::bigint, 0)),
           ('referrals_unlinked', p_referrals)
$function$;

-- Erases customers p_ids (each with everything stored about them: record, orders, events, rung
-- history, prediction, pending rollup, data requests, outgoing webhooks sent or to send) and orders p_orders (of anyone: Shopify's
-- orders_to_redact), in the caller's transaction. Derived content follows: the ladder's daily
-- aggregate through stage_history's trigger (sql/ladder.sql; on Citus rd_stage_history_late_add), the report snapshots through one
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
    c_refunds bigint := 0;
    c_referrals bigint := 0;
    removed jsonb := '{}';   -- rows per table of the loop below
    t text;
    k bigint;
    h_at timestamptz[];
    h_from text[];
    h_to text[];
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
    -- the rung changes, with their deltas of the ladder's aggregate (sql/ladder.sql)
    WITH d AS (DELETE FROM stage_history x WHERE x.tenant_id = p_tenant AND x.customer_id = ANY (ids)
               RETURNING x.changed_at, x.from_stage, x.to_stage)
    SELECT array_agg(d.changed_at), array_agg(d.from_stage), array_agg(d.to_stage), count(*)
    INTO h_at, h_from, h_to, k FROM d;
    removed := removed || jsonb_build_object('stage_history', k);
    IF k > 0 THEN
        PERFORM rd_stage_history_late_add(p_tenant, h_at, h_from, h_to, -1);
    END IF;
    -- every other table of a customer's own rows, by (tenant_id, customer_id)
    FOREACH t IN ARRAY ARRAY['events', 'customer_predictions', 'rollup_pending', 'privacy_requests',
                             'outbox', 'customer_status', 'subscription_deliveries'] LOOP
        EXECUTE format('DELETE FROM %I x WHERE x.tenant_id = $1 AND x.customer_id = ANY ($2)', t) USING p_tenant, ids;
        GET DIAGNOSTICS k = ROW_COUNT;
        removed := removed || jsonb_build_object(t, k);
    END LOOP;
    UPDATE customers c SET referred_by = NULL WHERE c.tenant_id = p_tenant AND c.referred_by = ANY (ids);
    GET DIAGNOSTICS c_referrals = ROW_COUNT;
    DELETE FROM customers c WHERE c.tenant_id = p_tenant AND c.customer_id = ANY (ids);
    GET DIAGNOSTICS c_customers = ROW_COUNT;
    DELETE FROM rfm_cutoffs r WHERE r.tenant_id = p_tenant;

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
               p_by, counts
        FROM (SELECT unnest(CASE WHEN cardinality(ids) > 0 THEN ids ELSE ARRAY[NULL::text] END) AS id) s,
             (SELECT jsonb_object_agg(c.kind, c.n) AS counts FROM rd_erase_counts(c_customers, c_orders, removed,
                                                                                 c_refunds, c_referrals) c) j;
    END IF;
    RETURN QUERY SELECT * FROM rd_erase_counts(c_customers, c_orders, removed, c_refunds, c_referrals);
END $function$;

-- Erases all of a tenant's data (Shopify shop/redact) and keeps the tenant row, its keys and
-- webhook secrets, so the shop can come back. Returns the rows removed per kind.
CREATE OR REPLACE FUNCTION rd_erase_shop(p_tenant bigint, p_by text)
 RETURNS TABLE(kind text, n bigint)
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
DECLARE
    counts jsonb := '{}';
    k bigint;
    t text;
BEGIN
    PERFORM 1 FROM tenants x WHERE x.tenant_id = p_tenant FOR UPDATE;
    -- (reported as) table: orders first, customers last, as the triggers expect
    FOREACH t IN ARRAY ARRAY['orders:orders', 'events:events', 'stage_history:rung_changes',
                             'stage_history_days:', 'stage_history_late:', 'stage_history_compacted:',
                             'customer_predictions:predictions', 'clv_models:models',
                             'rollup_pending:pending_rollups', 'webhook_refunds:refunds',
                             'privacy_requests:data_requests', 'spend:spend', 'rfm_cutoffs:',
                             'outbox:', 'customer_status:', 'subscription_deliveries:webhook_deliveries',
                             'customers:customers'] LOOP
        IF t LIKE 'stage_history:%' THEN
            -- the ladder's aggregate goes below; its lock as every writer of stage_history takes it
            PERFORM pg_advisory_xact_lock_shared(1382, (p_tenant % 2147483647)::int);
        END IF;
        EXECUTE format('DELETE FROM %I x WHERE x.tenant_id = $1', split_part(t, ':', 1)) USING p_tenant;
        GET DIAGNOSTICS k = ROW_COUNT;
        IF split_part(t, ':', 2) <> '' THEN
            counts := counts || jsonb_build_object(split_part(t, ':', 2), k);
        END IF;
    END LOOP;
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
