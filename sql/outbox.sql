-- outbox.sql - outgoing webhooks (migrations/004_outbox.sql): the outbox a rung or status change
-- is written to in the transaction that makes it, the fan-out of its rows into one delivery per
-- matching subscription, and the deliveries' claims and outcomes, for the sender (src/sender.c).
-- Nothing here talks to the network; the sender does, between these calls.

-- True when the tenant has a live subscription to changes of p_type: only then are they written.
CREATE OR REPLACE FUNCTION rd_outbox_wanted(p_tenant bigint, p_type text)
 RETURNS boolean
 LANGUAGE plpgsql
 STABLE
AS $function$
BEGIN
    RETURN EXISTS (SELECT 1 FROM subscriptions s
                   WHERE s.tenant_id = p_tenant AND s.deleted_at IS NULL AND p_type = ANY (s.events));
END $function$;

-- Writes changes of p_type (customer p_ids[i] from p_from[i] to p_to[i] at p_at[i]) to the
-- outbox, in the caller's transaction. A change of the same customer made earlier in this
-- transaction is folded into: it keeps its from and takes the new to and time. Returns the rows
-- written.
CREATE OR REPLACE FUNCTION rd_outbox_add(p_tenant bigint, p_type text, p_ids text[], p_from text[], p_to text[], p_at timestamp with time zone[])
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    n int;
BEGIN
    INSERT INTO outbox AS o (tenant_id, customer_id, type, from_value, to_value, occurred_at)
    SELECT p_tenant, u.id, p_type, u.f, u.t, u.a
    FROM unnest(p_ids, p_from, p_to, p_at) AS u(id, f, t, a)
    ORDER BY u.id
    ON CONFLICT (tenant_id, customer_id, type, txid)
        DO UPDATE SET to_value = excluded.to_value, occurred_at = excluded.occurred_at;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $function$;

-- Every status of the tenant's customers with orders now, by the lists' rule (rd_status with
-- the stored prediction).
CREATE OR REPLACE FUNCTION rd_status_now(p_tenant bigint)
 RETURNS TABLE(customer_id text, status text)
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    t tenants%ROWTYPE;
BEGIN
    SELECT * INTO t FROM tenants x WHERE x.tenant_id = p_tenant;
    RETURN QUERY
    SELECT c.customer_id,
           rd_status(c.first_order_at, c.last_order_at, c.order_count, now(), t.activity_window_days,
                     t.at_risk_gap_factor, p.p_alive, t.at_risk_p_alive)
    FROM customers c
    LEFT JOIN customer_predictions p ON p.tenant_id = c.tenant_id AND p.customer_id = c.customer_id
    WHERE c.tenant_id = p_tenant AND c.order_count > 0;
END $function$;

-- Status changes happen with the passage of time and with a refit, not in a transaction of
-- their own: the upkeep compares each customer's status now with the one recorded in
-- customer_status and writes each difference to the outbox, in one transaction with the new
-- record. A customer seen for the first time (a first order) is recorded without a change (its
-- rung change says it); one that has no orders any more is forgotten. Does nothing (returns 0)
-- for a tenant without a status subscription. Returns the changes written.
CREATE OR REPLACE FUNCTION rd_status_sweep(p_tenant bigint)
 RETURNS integer
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
DECLARE
    ids text[];
    froms text[];
    tos text[];
    t_now timestamptz := now();  -- (Citus: only immutable functions in DO UPDATE SET)
    now_ids text[];
    now_status text[];
BEGIN
    IF NOT rd_outbox_wanted(p_tenant, 'customer.status_changed') THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(1382, (p_tenant % 2147483647)::int);
    -- the statuses now, read first: a statement joining them to customer_status goes to the
    -- tenant's shard on Citus, where rd_status_now's own query could not run
    SELECT coalesce(array_agg(n.customer_id), '{}'), coalesce(array_agg(n.status), '{}')
    INTO now_ids, now_status FROM rd_status_now(p_tenant) n;
    WITH diff AS (
        SELECT coalesce(n.customer_id, s.customer_id) AS customer_id, s.status AS old, n.status AS new
        FROM unnest(now_ids, now_status) AS n(customer_id, status)
        FULL JOIN (SELECT * FROM customer_status x WHERE x.tenant_id = p_tenant) s ON s.customer_id = n.customer_id
        WHERE s.status IS DISTINCT FROM n.status),
    gone AS (
        DELETE FROM customer_status s USING diff
        WHERE s.tenant_id = p_tenant AND s.customer_id = diff.customer_id AND diff.new IS NULL),
    kept AS (
        INSERT INTO customer_status (tenant_id, customer_id, status)
        SELECT p_tenant, diff.customer_id, diff.new FROM diff WHERE diff.new IS NOT NULL
        ON CONFLICT (tenant_id, customer_id) DO UPDATE SET status = excluded.status, since = t_now)
    SELECT array_agg(diff.customer_id ORDER BY diff.customer_id), array_agg(diff.old ORDER BY diff.customer_id),
           array_agg(diff.new ORDER BY diff.customer_id)
    INTO ids, froms, tos
    FROM diff WHERE diff.old IS NOT NULL AND diff.new IS NOT NULL;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN rd_outbox_add(p_tenant, 'customer.status_changed', ids, froms, tos,
                         array_fill(t_now, ARRAY[cardinality(ids)]));
END $function$;

-- Records every status of the tenant now without writing changes: the starting point of its
-- first status subscription (older changes were never promised to anyone).
CREATE OR REPLACE FUNCTION rd_status_seed(p_tenant bigint)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    PERFORM pg_advisory_xact_lock(1382, (p_tenant % 2147483647)::int);
    DELETE FROM customer_status s WHERE s.tenant_id = p_tenant;
    INSERT INTO customer_status (tenant_id, customer_id, status)
    SELECT p_tenant, n.customer_id, n.status FROM rd_status_now(p_tenant) n;
END $function$;

-- A new subscription; the caller made the secret. When it is the tenant's first to statuses,
-- today's statuses become the starting point (rd_status_seed).
CREATE OR REPLACE FUNCTION rd_subscription_create(p_tenant bigint, p_url text, p_events text[], p_to text[], p_min_clv double precision, p_description text, p_secret text)
 RETURNS TABLE(subscription_id bigint, created_at timestamp with time zone)
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF 'customer.status_changed' = ANY (p_events)
       AND NOT rd_outbox_wanted(p_tenant, 'customer.status_changed') THEN
        PERFORM rd_status_seed(p_tenant);
    END IF;
    RETURN QUERY
    INSERT INTO subscriptions AS s (tenant_id, url, events, filter_to, min_predicted_clv, description, secret)
    VALUES (p_tenant, p_url, p_events, p_to, p_min_clv, p_description, p_secret)
    RETURNING s.subscription_id, s.created_at;
END $function$;

-- Deletes a subscription: it stops receiving at once, its pending deliveries are given up (kept,
-- as failed, with its history). Returns false when there was no such live subscription.
CREATE OR REPLACE FUNCTION rd_subscription_delete(p_tenant bigint, p_id bigint)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE subscriptions s SET deleted_at = now()
    WHERE s.tenant_id = p_tenant AND s.subscription_id = p_id AND s.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE subscription_deliveries d SET status = 'failed', done_at = now(), leased_until = NULL
    WHERE d.tenant_id = p_tenant AND d.subscription_id = p_id AND d.status = 'pending';
    IF NOT rd_outbox_wanted(p_tenant, 'customer.status_changed') THEN
        DELETE FROM customer_status s WHERE s.tenant_id = p_tenant;
    END IF;
    RETURN true;
END $function$;

-- The fan-out, first half: takes up to p_limit of the oldest outbox rows no one else holds
-- (locked until the caller's transaction ends) and returns each with every live subscription it
-- matches (NULL subscription_id: none; the row is consumed all the same) and the customer's key
-- figures now, for the bodies. A subscription hears of changes written after it was made, to
-- one of its filter_to values, of customers predicted at least its min_predicted_clv.
-- One fan-out at a time across every sender (a try-lock: another sender's look returns nothing),
-- so that the deliveries of one customer are made in the order of its changes. The rows are
-- taken tenant by tenant, the tenant with the oldest row first, each tenant's oldest first:
-- every statement that locks or joins rows names its tenant, so on Citus it runs on the
-- tenant's worker (Citus locks rows only by a distribution column's value).
CREATE OR REPLACE FUNCTION rd_outbox_take(p_limit integer)
 RETURNS TABLE(tenant_id bigint, event_id bigint, subscription_id bigint, tenant text, currency text,
               customer_id text, type text, from_value text, to_value text, occurred_at timestamp with time zone,
               email text, stage text, status text, order_count integer, net_revenue numeric,
               first_order_at timestamp with time zone, last_order_at timestamp with time zone,
               p_alive double precision, expected_orders double precision, predicted_clv double precision)
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
#variable_conflict use_column
DECLARE
    left_ int := p_limit;
    tid bigint;
    ids bigint[];
BEGIN
    IF NOT pg_try_advisory_xact_lock(1383, 0) THEN
        RETURN;
    END IF;
    FOR tid IN SELECT x.tenant_id FROM outbox x GROUP BY x.tenant_id ORDER BY min(x.event_id) LOOP
        EXIT WHEN left_ <= 0;
        SELECT array_agg(l.event_id) INTO ids FROM (
            SELECT x.event_id FROM outbox x WHERE x.tenant_id = tid
            ORDER BY x.event_id LIMIT left_ FOR UPDATE SKIP LOCKED) l;
        CONTINUE WHEN ids IS NULL;
        left_ := left_ - cardinality(ids);
        RETURN QUERY
        WITH o AS (SELECT x.* FROM outbox x WHERE x.tenant_id = tid AND x.event_id = ANY (ids))
        SELECT o.tenant_id, o.event_id, s.subscription_id, t.name, t.currency::text, o.customer_id, o.type,
           o.from_value, o.to_value, o.occurred_at, c.email, c.stage,
           rd_status(c.first_order_at, c.last_order_at, c.order_count, now(), t.activity_window_days,
                     t.at_risk_gap_factor, p.p_alive, t.at_risk_p_alive),
           c.order_count, c.net_revenue, c.first_order_at, c.last_order_at, p.p_alive, p.expected_orders,
           p.predicted_clv
    FROM o
    JOIN tenants t ON t.tenant_id = o.tenant_id
    LEFT JOIN customers c ON c.tenant_id = o.tenant_id AND c.customer_id = o.customer_id
    LEFT JOIN customer_predictions p ON p.tenant_id = o.tenant_id AND p.customer_id = o.customer_id
    LEFT JOIN subscriptions s
        ON s.tenant_id = o.tenant_id AND s.deleted_at IS NULL AND o.type = ANY (s.events)
       AND s.created_at <= o.created_at
       AND o.from_value IS DISTINCT FROM o.to_value
       AND c.customer_id IS NOT NULL
       AND (s.filter_to IS NULL OR o.to_value = ANY (s.filter_to))
       AND (s.min_predicted_clv IS NULL OR p.predicted_clv >= s.min_predicted_clv)
        ORDER BY o.event_id, s.subscription_id;
    END LOOP;
END $function$;

-- The fan-out, second half, in the transaction of rd_outbox_take: one delivery per (event,
-- subscription) with its body, then the taken outbox rows (p_events, all of them) deleted.
CREATE OR REPLACE FUNCTION rd_outbox_fan_out(p_tenants bigint[], p_events bigint[], p_subs bigint[], p_customers text[], p_types text[], p_bodies text[], p_taken_tenants bigint[], p_taken bigint[])
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    n int;
BEGIN
    INSERT INTO subscription_deliveries (tenant_id, subscription_id, event_id, customer_id, type, body)
    SELECT u.t, u.s, u.e, u.c, u.ty, u.b
    FROM unnest(p_tenants, p_events, p_subs, p_customers, p_types, p_bodies) WITH ORDINALITY AS u(t, e, s, c, ty, b, k)
    ORDER BY u.k;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM outbox o USING unnest(p_taken_tenants, p_taken) AS u(t, e)
    WHERE o.tenant_id = u.t AND o.event_id = u.e;
    RETURN n;
END $function$;

-- A test delivery of a live subscription; NULL when there is none.
CREATE OR REPLACE FUNCTION rd_subscription_test(p_tenant bigint, p_id bigint, p_body text)
 RETURNS bigint
 LANGUAGE plpgsql
AS $function$
DECLARE
    d bigint;
BEGIN
    PERFORM 1 FROM subscriptions s WHERE s.tenant_id = p_tenant AND s.subscription_id = p_id AND s.deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO subscription_deliveries (tenant_id, subscription_id, type, body)
    VALUES (p_tenant, p_id, 'subscription.test', p_body)
    RETURNING delivery_id INTO d;
    RETURN d;
END $function$;

-- Claims up to p_limit due deliveries for attempts, at most p_per_sub in flight per subscription
-- (a slow receiver holds its own slots, never another's), in delivery order per subscription,
-- and a customer's delivery only once the earlier ones of the same customer and subscription
-- are done: in order per customer. Each claimed delivery's attempt count goes up and a lease of
-- p_lease holds it: a sender that dies mid-attempt leaves it to be retried when the lease ends.
-- Tenant by tenant (those with a due delivery, the longest due first), each table of the
-- statement filtered by the tenant's id itself, so that on Citus it runs on the tenant's worker
-- (Citus cannot push a LIMIT in a LATERAL subquery across shards).
CREATE OR REPLACE FUNCTION rd_deliveries_claim(p_limit integer, p_per_sub integer, p_lease interval)
 RETURNS TABLE(tenant_id bigint, delivery_id bigint, subscription_id bigint, attempt integer, url text, secret text,
               body text)
 LANGUAGE plpgsql
 SET jit TO 'off'
AS $function$
#variable_conflict use_column
DECLARE
    left_ int := p_limit;
    tid bigint;
    n int;
    t_now timestamptz := now();
BEGIN
    FOR tid IN SELECT d.tenant_id FROM subscription_deliveries d
               WHERE d.status = 'pending' AND d.next_attempt_at <= t_now
               GROUP BY d.tenant_id ORDER BY min(d.next_attempt_at) LOOP
    EXIT WHEN left_ <= 0;
    RETURN QUERY
    WITH subs AS (
        SELECT s.tenant_id, s.subscription_id, s.url, s.secret,
               p_per_sub - (SELECT count(*) FROM subscription_deliveries b
                            WHERE b.tenant_id = tid AND b.tenant_id = s.tenant_id AND b.subscription_id = s.subscription_id
                              AND b.status = 'pending' AND b.leased_until > t_now)::int AS free
        FROM subscriptions s
        WHERE s.tenant_id = tid AND s.deleted_at IS NULL
          AND EXISTS (SELECT 1 FROM subscription_deliveries d
                      WHERE d.tenant_id = tid AND d.tenant_id = s.tenant_id AND d.subscription_id = s.subscription_id
                        AND d.status = 'pending' AND d.next_attempt_at <= t_now)),
    pick AS (
        SELECT d.tenant_id, d.delivery_id, subs.url, subs.secret
        FROM subs
        CROSS JOIN LATERAL (
            SELECT d.tenant_id, d.delivery_id FROM subscription_deliveries d
            WHERE d.tenant_id = tid AND d.tenant_id = subs.tenant_id AND d.subscription_id = subs.subscription_id
              AND d.status = 'pending' AND d.next_attempt_at <= t_now
              AND (d.customer_id IS NULL OR NOT EXISTS (
                  SELECT 1 FROM subscription_deliveries e
                  WHERE e.tenant_id = tid AND e.tenant_id = d.tenant_id AND e.subscription_id = d.subscription_id
                    AND e.customer_id = d.customer_id AND e.status = 'pending' AND e.delivery_id < d.delivery_id))
            ORDER BY d.delivery_id LIMIT greatest(subs.free, 0)
            FOR UPDATE SKIP LOCKED) d
        ORDER BY d.delivery_id LIMIT left_)
    UPDATE subscription_deliveries d
    SET attempts = d.attempts + 1, leased_until = t_now + p_lease, next_attempt_at = t_now + p_lease
    FROM pick
    WHERE d.tenant_id = tid AND d.tenant_id = pick.tenant_id AND d.delivery_id = pick.delivery_id
    RETURNING d.tenant_id, d.delivery_id, d.subscription_id, d.attempts, pick.url, pick.secret, d.body;
    GET DIAGNOSTICS n = ROW_COUNT;
    left_ := left_ - n;
    END LOOP;
END $function$;

-- The outcome of attempt p_attempt of a delivery (a stale one, whose lease another sender has
-- taken over since, changes nothing but the attempts log): delivered; or due again in p_retry_in
-- unless that is past its created_at + p_horizon, when it has failed for good. Returns the
-- delivery's status after it. (The instants are computed before the UPDATE: Citus refuses a
-- non-immutable function or operator, such as timestamptz + interval, in its CASEs.)
CREATE OR REPLACE FUNCTION rd_delivery_record(p_tenant bigint, p_delivery bigint, p_attempt integer, p_ok boolean, p_http_status integer, p_error text, p_duration_ms double precision, p_retry_in interval, p_horizon interval)
 RETURNS text
 LANGUAGE plpgsql
AS $function$
DECLARE
    st text;
    t_now timestamptz := now();
    t_next timestamptz := t_now + p_retry_in;
    -- due again past the horizon: t_next > created_at + p_horizon
    t_created_before timestamptz := t_next - p_horizon;
BEGIN
    INSERT INTO subscription_attempts (tenant_id, delivery_id, attempt, http_status, error, duration_ms)
    VALUES (p_tenant, p_delivery, p_attempt, p_http_status, p_error, p_duration_ms)
    ON CONFLICT DO NOTHING;
    UPDATE subscription_deliveries d SET
        status = CASE WHEN p_ok THEN 'delivered'
                      WHEN d.created_at < t_created_before THEN 'failed'
                      ELSE 'pending' END,
        done_at = CASE WHEN p_ok OR d.created_at < t_created_before THEN t_now END,
        next_attempt_at = t_next,
        leased_until = NULL
    WHERE d.tenant_id = p_tenant AND d.delivery_id = p_delivery AND d.attempts = p_attempt AND d.status = 'pending'
    RETURNING d.status INTO st;
    RETURN coalesce(st, 'stale');
END $function$;

-- Gives back the lease of an attempt that was not made to the end (the service is stopping).
CREATE OR REPLACE FUNCTION rd_delivery_release(p_tenant bigint, p_delivery bigint, p_attempt integer)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE subscription_deliveries d SET leased_until = NULL, next_attempt_at = now(), attempts = d.attempts - 1
    WHERE d.tenant_id = p_tenant AND d.delivery_id = p_delivery AND d.attempts = p_attempt AND d.status = 'pending';
END $function$;

-- The sender's gauges: outbox rows not fanned out, deliveries pending, the oldest pending's age.
CREATE OR REPLACE FUNCTION rd_outbox_backlog(OUT outbox bigint, OUT pending bigint, OUT oldest_seconds double precision)
 LANGUAGE plpgsql
 STABLE
AS $function$
BEGIN
    SELECT count(*) INTO outbox FROM outbox;
    SELECT count(*), coalesce(extract(epoch FROM now() - min(d.created_at)), 0)
    INTO pending, oldest_seconds FROM subscription_deliveries d WHERE d.status = 'pending';
END $function$;

-- Deletes deliveries done (delivered or failed) more than p_keep ago, with their attempts.
CREATE OR REPLACE FUNCTION rd_deliveries_prune(p_keep interval)
 RETURNS bigint
 LANGUAGE plpgsql
AS $function$
DECLARE
    n bigint;
BEGIN
    DELETE FROM subscription_deliveries d WHERE d.status <> 'pending' AND d.done_at < now() - p_keep;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $function$;
