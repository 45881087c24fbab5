-- 003_privacy.sql - what the service keeps of erasures and data requests (GDPR Art. 15, 17, 20;
-- sql/privacy.sql). Neither table holds personal data beyond what a data request needs to be
-- answered: an erasure is recorded by a hash of the customer's id, never the id or e-mail.

-- One row per erasure: of a customer (DELETE /v1/customers/{id}, Shopify customers/redact) or of
-- a whole shop's data (shop/redact, subject_hash NULL). counts: rows removed per kind.
CREATE TABLE privacy_erasures (
    tenant_id     bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    erasure_id    bigint GENERATED ALWAYS AS IDENTITY,
    subject_hash  text,          -- hex SHA-256 of "<tenant id>:<customer id>"; NULL: the whole shop
    erased_at     timestamptz NOT NULL DEFAULT now(),
    requested_by  text NOT NULL, -- "key <key id>" or "shopify <topic>"
    counts        jsonb NOT NULL,
    PRIMARY KEY (tenant_id, erasure_id)
);

-- Data requests received from a platform (Shopify customers/data_request), for the shop owner
-- to answer with GET /v1/customers/{id}/export. customer_id is the id the export is asked for.
CREATE TABLE privacy_requests (
    tenant_id     bigint NOT NULL REFERENCES tenants ON DELETE CASCADE,
    request_id    text NOT NULL,  -- the platform's data_request id
    platform      text NOT NULL,
    customer_id   text,
    orders        text[] NOT NULL DEFAULT '{}',
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, platform, request_id)
);

-- When a key was last used (`retentiond key list`): set when a server looks the key up, which
-- it does again once its cache entry is AUTH_CACHE_TTL (30 s) old, at most once a minute.
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

-- When a customer record was last changed at its source (a platform's updated_at, or Shopify's
-- X-Shopify-Triggered-At): a late retry of an older state changes nothing (sql/ingest.sql).
ALTER TABLE customers ADD COLUMN record_updated_at timestamptz;
