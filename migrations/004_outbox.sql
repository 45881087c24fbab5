-- 004_outbox.sql - outgoing webhooks (sql/outbox.sql, src/sender.c): a tenant's subscriptions,
-- the transactional outbox its rung and status changes are written to, and the deliveries the
-- sender makes of them.

-- What a tenant wants to hear of, and where. secret signs every body (HMAC-SHA256); it must be
-- usable to compute one, so it is kept as it was shown, like webhook_secrets. A deleted
-- subscription is kept (deleted_at) so that its deliveries stay readable until they are pruned.
CREATE TABLE subscriptions (
    tenant_id          bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    subscription_id    bigint GENERATED ALWAYS AS IDENTITY,
    url                text NOT NULL CHECK (url ~ '^https?://'),
    events             text[] NOT NULL
                       CHECK (cardinality(events) > 0
                              AND events <@ ARRAY['customer.stage_changed','customer.status_changed']),
    filter_to          text[],            -- only changes to one of these rungs or statuses
    min_predicted_clv  double precision,  -- only customers predicted to be worth at least this
    description        text,
    secret             text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    PRIMARY KEY (tenant_id, subscription_id)
);

-- The outbox: one row per customer and kind of change not yet fanned out to the subscriptions.
-- Written in the transaction of the change (sql/rollup.sql: rd_rollup_apply for rungs;
-- sql/outbox.sql: rd_status_sweep for statuses), only when the tenant subscribes to its kind.
-- A second change of the same customer in the same transaction is folded into the first (from
-- stays, to and occurred_at move on): a batch moving a customer up two rungs is one change, as
-- it is one row of stage_history, and a change undone within it (from = to) is dropped by the
-- fan-out. Changes of separate transactions stay separate, in order.
CREATE TABLE outbox (
    tenant_id    bigint NOT NULL,
    event_id     bigint GENERATED ALWAYS AS IDENTITY,
    customer_id  text NOT NULL,
    type         text NOT NULL CHECK (type IN ('customer.stage_changed','customer.status_changed')),
    from_value   text,
    to_value     text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (tenant_id, event_id),
    UNIQUE (tenant_id, customer_id, type, txid)
);
-- the fan-out takes the oldest rows of every tenant
CREATE INDEX outbox_order ON outbox (event_id);

-- The status each customer with orders had when the upkeep last looked, for the tenants with a
-- status subscription: the sweep writes a change where the status computed now differs.
CREATE TABLE customer_status (
    tenant_id    bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,  -- written by the upkeep only
    customer_id  text NOT NULL,
    status       text NOT NULL,
    since        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id)
);

-- One delivery per change and subscription (or per test). body is built once, at the fan-out,
-- so that every retry sends the same bytes under the same delivery id. A pending delivery is
-- due at next_attempt_at; while an attempt is in flight leased_until holds it (a sender that
-- died leaves it to be retried when the lease runs out).
CREATE TABLE subscription_deliveries (
    tenant_id        bigint NOT NULL,
    delivery_id      bigint GENERATED ALWAYS AS IDENTITY,
    subscription_id  bigint NOT NULL,
    event_id         bigint,          -- the outbox row it came from; NULL for a test
    customer_id      text,            -- NULL for a test
    type             text NOT NULL,
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','delivered','failed')),
    attempts         int NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    leased_until     timestamptz,
    done_at          timestamptz,
    PRIMARY KEY (tenant_id, delivery_id),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES subscriptions ON DELETE CASCADE
);
-- the claims walk a subscription's pending deliveries in order (never its history)
CREATE INDEX subscription_deliveries_pending ON subscription_deliveries (tenant_id, subscription_id, delivery_id)
    WHERE status = 'pending';
-- in order per customer: a delivery waits while an earlier one of its customer is pending
CREATE INDEX subscription_deliveries_customer ON subscription_deliveries (tenant_id, subscription_id, customer_id, delivery_id)
    WHERE status = 'pending';
-- (the recent deliveries of a subscription are read backwards along the primary key: one index
-- less to write per delivery)

-- Every attempt, for GET /v1/subscriptions/{id}/deliveries: the HTTP status the receiver
-- answered (NULL when it did not: timeout, refused, DNS), or the error.
CREATE TABLE subscription_attempts (
    tenant_id     bigint NOT NULL,
    delivery_id   bigint NOT NULL,
    attempt       int NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    http_status   int,
    error         text,
    duration_ms   double precision,
    PRIMARY KEY (tenant_id, delivery_id, attempt),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES subscription_deliveries ON DELETE CASCADE
);
