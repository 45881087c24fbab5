-- 003_webhooks.sql - refunds learnt from Shopify webhooks.
--
-- A Shopify refund reaches us twice: inside later orders/updated bodies (refunds[]) and as a
-- refunds/create delivery of its own, in either order, possibly before the order itself. Each
-- is kept once by its refund id, and an order's refunded amount is the sum over its rows
-- (capped at the total), so neither path can count a refund twice or lose one.
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

-- Redelivery memory grows with every delivery: this index lets an operator prune old rows
-- (DELETE ... WHERE received_at < now() - interval '30 days'; platforms stop retrying after
-- a few hours).
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
