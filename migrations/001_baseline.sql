-- 001_baseline.sql - the whole multi-tenant schema: tables, indexes and the data a fresh
-- database starts with. No functions and no triggers: every function (and each trigger, next
-- to its function) is defined in sql/ and applied by `retentiond migrate` after the numbered
-- migrations, so that its current text lives in one place (see src/store/migrate.c).
--
-- This file squashes the schema's history up to its eighteenth migration: a database migrated
-- that far is recognised as being at this baseline and continues from here.
--
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
-- The memory grows with every delivery: this index lets an operator prune old rows
-- (DELETE ... WHERE received_at < now() - interval '30 days'; platforms stop retrying after
-- a few hours).
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);

-- Refunds learnt from Shopify webhooks. A Shopify refund reaches us twice: inside later
-- orders/updated bodies (refunds[]) and as a refunds/create delivery of its own, in either
-- order, possibly before the order itself. Each is kept once by its refund id, and an order's
-- refunded amount is the sum over its rows (capped at the total), so neither path can count a
-- refund twice or lose one.
CREATE TABLE webhook_refunds (
    tenant_id    bigint NOT NULL,
    order_id     text NOT NULL,
    refund_id    text NOT NULL,
    amount       numeric NOT NULL CHECK (amount >= 0),        -- the order's (presentment) currency
    shop_amount  numeric CHECK (shop_amount >= 0),            -- tenant currency; NULL: convert at the order's ratio
    refunded_at  timestamptz,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, order_id, refund_id)
);

-- A customer record and its rollup in one row: the rollup columns are recomputed from the
-- customer's own orders and events in the same transaction as every ingest that touches them
-- (sql/rollup.sql).
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
    -- What predictive CLV needs, so that a fit reads one row per customer instead of grouping
    -- every order by customer and day. BG/NBD counts purchase occasions (UTC days with a
    -- qualifying order, SPEC §4) and Gamma-Gamma averages the value of the repeat ones:
    --   order_days       distinct UTC days holding a qualifying order   -> x = order_days - 1
    --   first_day_value  net value of the qualifying orders of the first day
    --                    -> mean repeat value = (net_revenue - first_day_value) / x
    order_days         int NOT NULL DEFAULT 0,
    first_day_value    numeric NOT NULL DEFAULT 0,
    -- The rollup's two facts, which the rung counts and lists rely on.
    CONSTRAINT customers_orders_rollup
        CHECK (order_count > 0 OR (order_count = 0 AND net_revenue = 0 AND first_order_at IS NULL
                                   AND last_order_at IS NULL)),
    CONSTRAINT customers_events_rollup CHECK ((event_count > 0) = (first_engaged_at IS NOT NULL)),
    PRIMARY KEY (tenant_id, customer_id)
);
-- No index on the stored stage: no report reads customers by it (the rung is recomputed at
-- as_of, since advocacy expires), and for a young tenant the planner took such an index as
-- just as good as the primary key to look up (tenant_id, customer_id).
CREATE INDEX customers_referred_by ON customers (tenant_id, referred_by) WHERE referred_by IS NOT NULL;
CREATE INDEX customers_first_order ON customers (tenant_id, first_order_at) WHERE first_order_at IS NOT NULL;
CREATE INDEX customers_last_order ON customers (tenant_id, last_order_at) WHERE last_order_at IS NOT NULL;
-- Rank indexes: RFM quintiles are positions in these orders among customers with orders; the
-- lists sorted by these columns walk them (sql/customers.sql).
CREATE INDEX customers_rfm_r ON customers (tenant_id, last_order_at, customer_id) WHERE order_count > 0;
CREATE INDEX customers_rfm_f ON customers (tenant_id, order_count, customer_id) WHERE order_count > 0;
CREATE INDEX customers_rfm_m ON customers (tenant_id, net_revenue, customer_id) WHERE order_count > 0;
-- Suspects and prospects (no orders) among themselves, and the advocates: the ladder's counts
-- (sql/ladder.sql) and the lists' walks of customers without orders.
CREATE INDEX customers_without_orders ON customers (tenant_id, customer_id) INCLUDE (first_engaged_at)
    WHERE order_count = 0;
CREATE INDEX customers_advocacy ON customers (tenant_id, last_advocacy_at) INCLUDE (order_count)
    WHERE order_count > 0 AND last_advocacy_at IS NOT NULL;

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

-- Rung changes per UTC day, the ladder's daily aggregate (sql/ladder.sql keeps it).
CREATE TABLE stage_history_days (
    tenant_id   bigint NOT NULL,
    day         date NOT NULL,
    from_stage  text NOT NULL,
    to_stage    text NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, from_stage, to_stage)
);

-- Changes to days already compacted, not yet folded into stage_history_days (n may be
-- negative: a removed row).
CREATE TABLE stage_history_late (
    tenant_id   bigint NOT NULL,
    day         date NOT NULL,
    seq         bigserial,
    from_stage  text NOT NULL,
    to_stage    text NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, seq)
);

-- Every day before `through` is in stage_history_days (+ stage_history_late). No row: none is.
CREATE TABLE stage_history_compacted (
    tenant_id  bigint PRIMARY KEY,
    through    date NOT NULL
);

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

-- Per-customer predictions written by each CLV fit, read by the lists for filtering and
-- sorting. A page sorted by P(alive) or predicted CLV walks these indexes backwards (customers
-- without a prediction last, ties by customer_id descending); they make storing a fit of
-- 90-100 k predictions take about a second instead of half of one, while such a page takes
-- about 1 ms instead of 150-300 ms.
CREATE TABLE customer_predictions (
    tenant_id        bigint NOT NULL,
    customer_id      text NOT NULL,
    fitted_at        timestamptz NOT NULL,
    p_alive          double precision NOT NULL,
    expected_orders  double precision NOT NULL,   -- next 90 days
    predicted_clv    double precision NOT NULL,   -- next 12 months, discounted
    PRIMARY KEY (tenant_id, customer_id)
);
CREATE INDEX customer_predictions_p_alive ON customer_predictions (tenant_id, p_alive, customer_id);
CREATE INDEX customer_predictions_clv ON customer_predictions (tenant_id, predicted_clv, customer_id);

-- RFM quintile boundaries per tenant, so that one profile's scores cost a few comparisons
-- instead of three rank counts over every customer. The boundaries are the (value,
-- customer_id) tuples where PostgreSQL's ntile(5) starts buckets 2..5; a customer's score is 1
-- + the number of boundaries at or below its own tuple, exactly what ntile would give
-- (sql/rules.sql: rd_rfm_ensure, rd_rfm_scores).
CREATE TABLE rfm_cutoffs (
    tenant_id    bigint PRIMARY KEY,
    computed_at  timestamptz NOT NULL,
    n            bigint NOT NULL,
    r_last       timestamptz[] NOT NULL, r_id text[] NOT NULL,
    f_count      int[] NOT NULL,         f_id text[] NOT NULL,
    m_revenue    numeric[] NOT NULL,     m_id text[] NOT NULL
);

-- Customers of a bulk load whose rollup is brought current once, at the load's end
-- (sql/rollup.sql: rd_ingest_orders_deferred, rd_rollup_flush); rows a load cut short left are
-- flushed by the background upkeep after ROLLUP_SWEEP_AFTER.
CREATE TABLE rollup_pending (
    tenant_id   bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    customer_id text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);

-- Which customers changed since a given snapshot, so that a report snapshot held by the
-- service (src/store/report_snapshot.c) can be brought current by re-reading only those
-- customers. Every statement that writes orders or customers records the customers it touched
-- (NULL: more than 256 of one tenant, read the tenant again) under the writing transaction's
-- id (sql/reports.sql: rd_report_changes_note). Insert-only; rows older than the horizon are
-- deleted by the upkeep.
CREATE TABLE report_changes (
    tenant_id   bigint NOT NULL,
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    customer_id text   -- NULL: the whole tenant
);
CREATE INDEX report_changes_by_xid ON report_changes (tenant_id, xid);

CREATE TABLE report_changes_horizon (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    horizon    xid8 NOT NULL,         -- rows with xid < horizon may be gone
    candidate  xid8 NOT NULL,         -- the next horizon
    moved_at   timestamptz NOT NULL
);
INSERT INTO report_changes_horizon (horizon, candidate, moved_at)
VALUES ('0', pg_snapshot_xmin(pg_current_snapshot()), now());
