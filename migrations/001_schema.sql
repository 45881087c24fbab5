-- 001_schema.sql - the whole multi-tenant schema.
-- Every table's primary key starts with tenant_id (the Citus distribution column, should the
-- database ever be sharded); every query filters by it.

CREATE TABLE tenants (
    tenant_id             bigserial PRIMARY KEY,
    name                  text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_-]{1,64}$'),
    currency              char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at            timestamptz NOT NULL DEFAULT now(),
    -- per-tenant thresholds (SPEC §4), with the spec's defaults
    activity_window_days  int NOT NULL DEFAULT 365 CHECK (activity_window_days BETWEEN 1 AND 3650),
    advocacy_window_days  int NOT NULL DEFAULT 365 CHECK (advocacy_window_days BETWEEN 1 AND 3650),
    advocacy_min_review   int NOT NULL DEFAULT 4 CHECK (advocacy_min_review BETWEEN 1 AND 5),
    advocacy_min_nps      int NOT NULL DEFAULT 9 CHECK (advocacy_min_nps BETWEEN 0 AND 10),
    at_risk_p_alive       double precision NOT NULL DEFAULT 0.5 CHECK (at_risk_p_alive BETWEEN 0 AND 1),
    at_risk_gap_factor    double precision NOT NULL DEFAULT 1.5 CHECK (at_risk_gap_factor > 0)
);

-- API keys: "rk_<key_id>_<secret>". Only SHA-256 of the whole key is kept; the key_id prefix
-- finds the row, the hash is compared in constant time by the service.
CREATE TABLE api_keys (
    tenant_id   bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    key_id      text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL,
    scopes      text[] NOT NULL CHECK (scopes <@ ARRAY['ingest','read','admin']),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, key_id)
);

-- Platform webhook secrets. They must be usable to compute an HMAC, so they cannot be hashed.
-- previous_secret is still accepted for an hour after a rotation (Shopify keeps signing with
-- the old one for a while).
CREATE TABLE webhook_secrets (
    tenant_id        bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    platform         text NOT NULL CHECK (platform IN ('shopify','woocommerce')),
    secret           text NOT NULL,
    previous_secret  text,
    rotated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, platform)
);

-- Redelivery memory: a webhook id seen once is acknowledged without reprocessing.
CREATE TABLE webhook_deliveries (
    tenant_id    bigint NOT NULL,
    platform     text NOT NULL,
    delivery_id  text NOT NULL,
    topic        text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, platform, delivery_id)
);

-- A customer record and its rollup in one row: the rollup columns are recomputed from the
-- customer's own orders and events in the same transaction as every ingest that touches them.
CREATE TABLE customers (
    tenant_id          bigint NOT NULL,
    customer_id        text NOT NULL,
    email              text,
    created_at         timestamptz,
    channel            text,
    referred_by        text,
    attributes         jsonb NOT NULL DEFAULT '{}',
    is_known           boolean NOT NULL DEFAULT false,  -- posted as a customer, not only implied
    inserted_at        timestamptz NOT NULL DEFAULT now(),
    -- rollup
    first_order_at     timestamptz,
    last_order_at      timestamptz,
    order_count        int NOT NULL DEFAULT 0,
    net_revenue        numeric NOT NULL DEFAULT 0,
    first_engaged_at   timestamptz,
    last_engaged_at    timestamptz,
    event_count        int NOT NULL DEFAULT 0,
    last_advocacy_at   timestamptz,
    advocacy_kind      text,
    stage              text NOT NULL DEFAULT 'suspect',
    stage_changed_at   timestamptz,
    PRIMARY KEY (tenant_id, customer_id)
);
CREATE INDEX customers_referred_by ON customers (tenant_id, referred_by) WHERE referred_by IS NOT NULL;
CREATE INDEX customers_first_order ON customers (tenant_id, first_order_at) WHERE first_order_at IS NOT NULL;
CREATE INDEX customers_last_order ON customers (tenant_id, last_order_at) WHERE last_order_at IS NOT NULL;
CREATE INDEX customers_stage ON customers (tenant_id, stage, customer_id);

CREATE TABLE orders (
    tenant_id      bigint NOT NULL,
    order_id       text NOT NULL,
    customer_id    text NOT NULL,
    placed_at      timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    currency       char(3) NOT NULL,
    total          numeric NOT NULL CHECK (total >= 0),
    refunded       numeric NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    shop_total     numeric NOT NULL CHECK (shop_total >= 0),      -- in the tenant's currency
    shop_refunded  numeric NOT NULL DEFAULT 0 CHECK (shop_refunded >= 0 AND shop_refunded <= shop_total),
    status         text NOT NULL CHECK (status IN ('placed','paid','fulfilled','cancelled','refunded')),
    source         text NOT NULL CHECK (source IN ('api','shopify','woocommerce','import')),
    test           boolean NOT NULL DEFAULT false,
    inserted_at    timestamptz NOT NULL DEFAULT now(),
    qualifying     boolean GENERATED ALWAYS AS (
                       status NOT IN ('cancelled','refunded') AND NOT test
                       AND NOT (shop_total > 0 AND shop_refunded >= shop_total)) STORED,
    net_value      numeric GENERATED ALWAYS AS (shop_total - shop_refunded) STORED,
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX orders_customer ON orders (tenant_id, customer_id, placed_at);
CREATE INDEX orders_qualifying ON orders (tenant_id, placed_at) INCLUDE (customer_id, net_value) WHERE qualifying;

CREATE TABLE events (
    tenant_id    bigint NOT NULL,
    event_id     text NOT NULL,
    customer_id  text NOT NULL,
    type         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    properties   jsonb NOT NULL DEFAULT '{}',
    source       text NOT NULL DEFAULT 'api',
    inserted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX events_customer ON events (tenant_id, customer_id, occurred_at);

CREATE TABLE spend (
    tenant_id     bigint NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('acquisition','retention')),
    channel       text NOT NULL DEFAULT '',
    period_start  date NOT NULL,
    period_end    date NOT NULL CHECK (period_end > period_start),
    amount        numeric NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (tenant_id, kind, channel, period_start)
);

-- Rung history: one row per change of a customer's ladder rung, for transition reports.
CREATE TABLE stage_history (
    tenant_id    bigint NOT NULL,
    customer_id  text NOT NULL,
    seq          bigserial,
    changed_at   timestamptz NOT NULL,
    from_stage   text NOT NULL,
    to_stage     text NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, seq)
);
CREATE INDEX stage_history_time ON stage_history (tenant_id, changed_at);

-- Fitted predictive models, newest per tenant wins.
CREATE TABLE clv_models (
    tenant_id     bigint NOT NULL,
    fitted_at     timestamptz NOT NULL DEFAULT now(),
    as_of         timestamptz NOT NULL,
    sample_size   int NOT NULL,
    repeat_size   int NOT NULL,
    r double precision, alpha double precision, a double precision, b double precision,
    bgnbd_loglik  double precision,
    p double precision, q double precision, v double precision,
    gg_loglik     double precision,
    fit_ms        double precision,
    PRIMARY KEY (tenant_id, fitted_at)
);

-- The ladder rule (SPEC §4), one definition used by ingest and by reads at any as_of.
CREATE FUNCTION rd_stage(order_count int, engaged boolean, last_advocacy timestamptz,
                         as_of timestamptz, advocacy_days int) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN order_count >= 1 AND last_advocacy IS NOT NULL AND last_advocacy <= as_of
             AND last_advocacy > as_of - make_interval(days => advocacy_days) THEN 'advocate'
        WHEN order_count >= 2 THEN 'client'
        WHEN order_count = 1 THEN 'customer'
        WHEN engaged THEN 'prospect'
        ELSE 'suspect' END
$$;

-- Recomputes the rollup of the given customers from their own orders and events, records rung
-- changes in stage_history (at p_at, or at the customer's latest activity when p_at is null),
-- then does the same (once, without cascading further) for the customers who referred them:
-- their advocacy depends on the referred customer's first order.
CREATE FUNCTION rd_refresh_customers(p_tenant bigint, p_ids text[], p_at timestamptz,
                                     p_cascade boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t tenants%ROWTYPE;
    referrers text[];
BEGIN
    SELECT * INTO t FROM tenants WHERE tenant_id = p_tenant;
    WITH ids AS (SELECT DISTINCT unnest(p_ids) AS customer_id),
    o AS (
        SELECT o.customer_id, min(o.placed_at) AS f, max(o.placed_at) AS l, count(*)::int AS n,
               sum(o.net_value) AS rev
        FROM orders o JOIN ids USING (customer_id)
        WHERE o.tenant_id = p_tenant AND o.qualifying
        GROUP BY o.customer_id),
    e AS (
        SELECT ev.customer_id, min(ev.occurred_at) AS f, max(ev.occurred_at) AS l, count(*)::int AS n,
               max(ev.occurred_at) FILTER (WHERE ev.type = 'review'
                   AND jsonb_typeof(ev.properties->'rating') = 'number'
                   AND (ev.properties->>'rating')::numeric >= t.advocacy_min_review) AS review_at,
               max(ev.occurred_at) FILTER (WHERE ev.type = 'nps'
                   AND jsonb_typeof(ev.properties->'score') = 'number'
                   AND (ev.properties->>'score')::numeric >= t.advocacy_min_nps) AS nps_at
        FROM events ev JOIN ids USING (customer_id)
        WHERE ev.tenant_id = p_tenant
        GROUP BY ev.customer_id),
    rf AS (
        SELECT c.referred_by AS customer_id, max(c.first_order_at) AS referral_at
        FROM customers c JOIN ids ON ids.customer_id = c.referred_by
        WHERE c.tenant_id = p_tenant AND c.first_order_at IS NOT NULL
        GROUP BY c.referred_by),
    nv AS (
        SELECT ids.customer_id, o.f AS fo, o.l AS lo, coalesce(o.n, 0) AS n, coalesce(o.rev, 0) AS rev,
               e.f AS fe, e.l AS le, coalesce(e.n, 0) AS en,
               adv.at AS adv_at, adv.kind AS adv_kind
        FROM ids LEFT JOIN o USING (customer_id) LEFT JOIN e USING (customer_id)
                 LEFT JOIN rf USING (customer_id)
        LEFT JOIN LATERAL (
            SELECT s.at, s.kind FROM (VALUES (e.review_at, 'review'), (e.nps_at, 'nps'),
                                             (rf.referral_at, 'referral')) AS s(at, kind)
            WHERE s.at IS NOT NULL ORDER BY s.at DESC LIMIT 1) adv ON true),
    upd AS (
        UPDATE customers c SET
            first_order_at = nv.fo, last_order_at = nv.lo, order_count = nv.n, net_revenue = nv.rev,
            first_engaged_at = nv.fe, last_engaged_at = nv.le, event_count = nv.en,
            last_advocacy_at = nv.adv_at, advocacy_kind = nv.adv_kind,
            stage = rd_stage(nv.n, nv.en > 0, nv.adv_at, greatest(now(), nv.lo, nv.le), t.advocacy_window_days),
            stage_changed_at = CASE
                WHEN rd_stage(nv.n, nv.en > 0, nv.adv_at, greatest(now(), nv.lo, nv.le), t.advocacy_window_days) <> old.stage
                THEN coalesce(p_at, greatest(nv.lo, nv.le, nv.adv_at), now()) ELSE c.stage_changed_at END
        FROM nv, customers old
        WHERE c.tenant_id = p_tenant AND c.customer_id = nv.customer_id
          AND old.tenant_id = c.tenant_id AND old.customer_id = c.customer_id
        RETURNING c.customer_id, old.stage AS from_stage, c.stage AS to_stage, c.stage_changed_at)
    INSERT INTO stage_history (tenant_id, customer_id, changed_at, from_stage, to_stage)
    SELECT p_tenant, customer_id, stage_changed_at, from_stage, to_stage FROM upd
    WHERE from_stage <> to_stage;

    SELECT array_agg(DISTINCT referred_by) INTO referrers FROM customers
    WHERE tenant_id = p_tenant AND customer_id = ANY(p_ids) AND referred_by IS NOT NULL
      AND NOT (referred_by = ANY(p_ids));
    IF p_cascade AND referrers IS NOT NULL THEN
        PERFORM rd_refresh_customers(p_tenant, referrers, p_at, false);
    END IF;
END $$;
