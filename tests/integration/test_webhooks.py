"""Shopify and WooCommerce webhooks through real HTTP against the real server and PostgreSQL.

Every request is signed here, as the platform would sign it, with a test secret set through
`retentiond tenant set-secret`. The payloads are the captured samples in
tests/fixtures/webhooks (see SOURCE.md), or edits of them; expected values are computed from
the payload JSON itself (amounts summed with Decimal), never copied from the service's output.
"""
import base64
import copy
import hashlib
import hmac
import json
import os
import sys
import time
import unittest
import uuid
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FIXTURES, Postgres, Server, module_cluster  # noqa: E402

pg = server = None
SECRET = "whsec-test-0123456789"


setUpModule, tearDownModule = module_cluster(globals())  # sets pg and server


def fixture_bytes(name):
    with open(os.path.join(FIXTURES, "webhooks", name), "rb") as f:
        return f.read()


def fixture(name):
    return json.loads(fixture_bytes(name))


def sign(body, secret=SECRET):
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def as_body(payload):
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def shopify(tenant, topic, payload, secret=SECRET, webhook_id=None, signature=None, body_override=None, srv=None):
    body = as_body(payload)
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": topic,
               "X-Shopify-Shop-Domain": "test.myshopify.com", "X-Shopify-API-Version": "2026-04",
               "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4())}
    if signature is not False:
        headers["X-Shopify-Hmac-Sha256"] = signature or sign(body, secret)
    return (srv or server).request("POST", f"/v1/webhooks/shopify/{tenant}",
                          body_override if body_override is not None else body, headers=headers)


def woo(tenant, topic, payload, secret=SECRET, delivery_id=None, signature=None):
    body = as_body(payload)
    headers = {"Content-Type": "application/json", "X-WC-Webhook-Topic": topic,
               "X-WC-Webhook-Source": "https://shop.example.com/", "X-WC-Webhook-ID": "7",
               "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex}
    if signature is not False:
        headers["X-WC-Webhook-Signature"] = signature or sign(body, secret)
    return server.request("POST", f"/v1/webhooks/woocommerce/{tenant}", body, headers=headers)


def new_tenant(currency, platforms=("shopify", "woocommerce"), secret=SECRET):
    name, _ = server.tenant(currency=currency)
    for p in platforms:
        server.cli("tenant", "set-secret", name, p, secret)
    return name


def order_row(tenant, order_id):
    rows = pg.sql("SELECT o.customer_id, o.currency, o.total, o.refunded, o.shop_total, o.shop_refunded, o.status, "
                  "o.test, o.source, o.placed_at, o.updated_at FROM orders o JOIN tenants t USING (tenant_id) "
                  "WHERE t.name = :'v1' AND o.order_id = :'v2'", tenant, str(order_id))
    if not rows:
        return None
    r = rows[0]
    return {"customer_id": r[0], "currency": r[1].strip(), "total": Decimal(r[2]), "refunded": Decimal(r[3]),
            "shop_total": Decimal(r[4]), "shop_refunded": Decimal(r[5]), "status": r[6], "test": r[7] == "t",
            "source": r[8], "placed_at": r[9], "updated_at": r[10]}


def same_instant(a, b):
    return pg.scalar("SELECT (:'v1'::timestamptz = :'v2'::timestamptz)::text", a, b) == "true"


def count(table, tenant):
    return int(pg.scalar(f"SELECT count(*) FROM {table} x JOIN tenants t USING (tenant_id) WHERE t.name = :'v1'",
                         tenant))


def customer_value(tenant, customer_id, column):
    return pg.scalar(f"SELECT c.{column} FROM customers c JOIN tenants t USING (tenant_id) "
                     "WHERE t.name = :'v1' AND c.customer_id = :'v2'", tenant, customer_id)


def refund_total(refund):
    """What a refund moved: its successful refund transactions."""
    return sum((Decimal(t["amount"]) for t in refund["transactions"]
                if t["kind"] == "refund" and t["status"] == "success"), Decimal(0))


def usd_order(order_id, total="200.00", updated_at="2021-12-31T10:00:00-05:00", **changes):
    """The captured orders/create body re-dated and re-priced as a live USD order."""
    o = fixture("shopify_orders_create.json")
    o.update({"id": order_id, "test": False, "currency": "USD", "presentment_currency": "USD",
              "processed_at": "2021-12-30T10:00:00-05:00", "created_at": "2021-12-30T10:00:00-05:00",
              "updated_at": updated_at, "total_price": total})
    o["total_price_set"] = {"shop_money": {"amount": total, "currency_code": "USD"},
                            "presentment_money": {"amount": total, "currency_code": "USD"}}
    o.update(changes)
    return o


class ShopifySamples(unittest.TestCase):
    def test_orders_create_sample_stored(self):
        raw = fixture_bytes("shopify_orders_create.json")
        p = json.loads(raw)
        tenant = new_tenant(p["total_price_set"]["shop_money"]["currency_code"])
        r = shopify(tenant, "orders/create", raw)  # signed over the exact bytes of the file
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "created")
        self.assertEqual(r.json["order_id"], str(p["id"]))
        row = order_row(tenant, p["id"])
        self.assertEqual(row["customer_id"], str(p["customer"]["id"]))
        self.assertEqual(row["currency"], p["presentment_currency"])
        self.assertEqual(row["total"], Decimal(p["total_price_set"]["presentment_money"]["amount"]))
        self.assertEqual(row["shop_total"], Decimal(p["total_price_set"]["shop_money"]["amount"]))
        self.assertEqual(row["refunded"], 0)
        self.assertEqual(row["status"], "paid")
        self.assertEqual(row["test"], p["test"])
        self.assertEqual(row["source"], "shopify")
        self.assertTrue(same_instant(row["placed_at"], p["processed_at"]))
        self.assertTrue(same_instant(row["updated_at"], p["updated_at"]))
        # a test order is stored but never counts
        self.assertEqual(customer_value(tenant, str(p["customer"]["id"]), "order_count"), "0")

    def test_customers_create_sample_stored(self):
        raw = fixture_bytes("shopify_customers_create.json")
        p = json.loads(raw)
        tenant = new_tenant("USD")
        r = shopify(tenant, "customers/create", raw)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["customer_id"], str(p["id"]))
        self.assertEqual(customer_value(tenant, str(p["id"]), "email"), p["email"])
        self.assertTrue(same_instant(customer_value(tenant, str(p["id"]), "created_at"), p["created_at"]))
        attrs = json.loads(customer_value(tenant, str(p["id"]), "attributes"))
        self.assertEqual(attrs.get("state"), p["state"])

    def test_partial_refund_reduces_net_value(self):
        refund_raw = fixture_bytes("shopify_refunds_create.json")
        refund = json.loads(refund_raw)
        tenant = new_tenant("USD")
        order = usd_order(refund["order_id"], total="200.00")
        customer_id = str(order["customer"]["id"])
        self.assertEqual(shopify(tenant, "orders/create", order).status, 200)
        self.assertEqual(Decimal(customer_value(tenant, customer_id, "net_revenue")), Decimal("200.00"))

        r = shopify(tenant, "refunds/create", refund_raw)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "updated")
        refunded = refund_total(refund)
        self.assertGreater(refunded, 0)
        row = order_row(tenant, refund["order_id"])
        self.assertEqual(row["refunded"], refunded)
        self.assertEqual(row["shop_refunded"], refunded)
        self.assertEqual(Decimal(customer_value(tenant, customer_id, "net_revenue")), Decimal("200.00") - refunded)
        self.assertEqual(customer_value(tenant, customer_id, "order_count"), "1")

        # the same refund under another delivery id is not counted twice
        self.assertEqual(shopify(tenant, "refunds/create", refund_raw).status, 200)
        self.assertEqual(order_row(tenant, refund["order_id"])["shop_refunded"], refunded)

        # a later order state that does not list the refund keeps it
        later = usd_order(refund["order_id"], total="200.00", updated_at="2022-01-05T10:00:00-05:00",
                          fulfillment_status="fulfilled")
        r = shopify(tenant, "orders/updated", later)
        self.assertEqual(r.json["status"], "updated", r)
        row = order_row(tenant, refund["order_id"])
        self.assertEqual(row["status"], "fulfilled")
        self.assertEqual(row["shop_refunded"], refunded)
        self.assertEqual(Decimal(customer_value(tenant, customer_id, "net_revenue")), Decimal("200.00") - refunded)

    def test_refund_before_its_order(self):
        refund = fixture("shopify_refunds_create.json")
        tenant = new_tenant("USD")
        r = shopify(tenant, "refunds/create", refund)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "pending")
        self.assertIsNone(order_row(tenant, refund["order_id"]))
        self.assertEqual(shopify(tenant, "orders/create", usd_order(refund["order_id"])).status, 200)
        self.assertEqual(order_row(tenant, refund["order_id"])["shop_refunded"], refund_total(refund))

    def test_refunds_inside_an_order_body(self):
        tenant = new_tenant("USD")
        txs = [{"id": 1, "kind": "refund", "status": "success", "amount": "12.50"},
               {"id": 2, "kind": "refund", "status": "failure", "amount": "99.00"},
               {"id": 3, "kind": "refund", "status": "success", "amount": "7.25"}]
        order = usd_order(5550001, total="100.00", financial_status="partially_refunded",
                          refunds=[{"id": 777001, "transactions": txs[:2]}, {"id": 777002, "transactions": txs[2:]}])
        self.assertEqual(shopify(tenant, "orders/updated", order).status, 200)
        want = sum(refund_total(r) for r in order["refunds"])
        row = order_row(tenant, 5550001)
        self.assertEqual(row["refunded"], want)
        self.assertEqual(row["status"], "paid")


class ShopifyRules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tenant = new_tenant("USD")

    def test_guest_keyed_by_email(self):
        order = usd_order(6660001, customer=None, email="Guest.Buyer@Example.COM")
        r = shopify(self.tenant, "orders/create", order)
        self.assertEqual(r.status, 200, r)
        want = "email:" + order["email"].lower()
        self.assertEqual(order_row(self.tenant, 6660001)["customer_id"], want)
        self.assertEqual(customer_value(self.tenant, want, "order_count"), "1")

    def test_multi_currency_stored_in_shop_money(self):
        tenant = new_tenant("EUR")
        order = usd_order(6660002)
        order["currency"] = "EUR"
        order["presentment_currency"] = "USD"
        order["total_price"] = "184.10"
        order["total_price_set"] = {"shop_money": {"amount": "184.10", "currency_code": "EUR"},
                                    "presentment_money": {"amount": "200.00", "currency_code": "USD"}}
        r = shopify(tenant, "orders/create", order)
        self.assertEqual(r.status, 200, r)
        row = order_row(tenant, 6660002)
        self.assertEqual(row["currency"], order["total_price_set"]["presentment_money"]["currency_code"])
        self.assertEqual(row["total"], Decimal(order["total_price_set"]["presentment_money"]["amount"]))
        self.assertEqual(row["shop_total"], Decimal(order["total_price_set"]["shop_money"]["amount"]))
        cid = str(order["customer"]["id"])
        self.assertEqual(Decimal(customer_value(tenant, cid, "net_revenue")),
                         Decimal(order["total_price_set"]["shop_money"]["amount"]))

    def test_shop_money_in_another_currency_is_ignored(self):
        order = usd_order(6660003)
        for side in order["total_price_set"].values():
            side["currency_code"] = "CAD"
        order["currency"] = "CAD"
        r = shopify(self.tenant, "orders/create", order)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "ignored")
        self.assertIsNone(order_row(self.tenant, 6660003))

    def test_cancelled_is_not_resurrected_by_an_older_update(self):
        oid = 6660004
        self.assertEqual(shopify(self.tenant, "orders/create",
                                 usd_order(oid, updated_at="2022-01-01T10:00:00Z", financial_status="paid")).status, 200)
        cancelled = usd_order(oid, updated_at="2022-01-03T10:00:00Z", financial_status="paid",
                              cancelled_at="2022-01-03T10:00:00Z", cancel_reason="customer")
        self.assertEqual(shopify(self.tenant, "orders/cancelled", cancelled).status, 200)
        self.assertEqual(order_row(self.tenant, oid)["status"], "cancelled")
        late = usd_order(oid, updated_at="2022-01-02T10:00:00Z", fulfillment_status="fulfilled")
        r = shopify(self.tenant, "orders/updated", late)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "stale")
        self.assertEqual(order_row(self.tenant, oid)["status"], "cancelled")
        newer = usd_order(oid, updated_at="2022-01-04T10:00:00Z", financial_status="paid", cancelled_at=None)
        self.assertEqual(shopify(self.tenant, "orders/updated", newer).json["status"], "updated")
        self.assertEqual(order_row(self.tenant, oid)["status"], "paid")

    def test_redelivery_is_a_duplicate(self):
        oid = 6660005
        wid = str(uuid.uuid4())
        first = usd_order(oid, total="50.00")
        self.assertEqual(shopify(self.tenant, "orders/create", first, webhook_id=wid).json["status"], "created")
        before = order_row(self.tenant, oid)
        # same webhook id: acknowledged without reprocessing, even with a different body
        changed = usd_order(oid, total="75.00", updated_at="2023-01-01T00:00:00Z")
        r = shopify(self.tenant, "orders/updated", changed, webhook_id=wid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "duplicate")
        self.assertEqual(order_row(self.tenant, oid), before)
        self.assertEqual(int(pg.scalar("SELECT count(*) FROM webhook_deliveries WHERE delivery_id = :'v1'", wid)), 1)

    def test_unknown_topic_is_ignored(self):
        r = shopify(self.tenant, "products/create", {"id": 1, "title": "Lamp"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "ignored")
        self.assertIn("products/create", server.read_log())

    def test_orders_delete_cancels(self):
        oid = 6660006
        self.assertEqual(shopify(self.tenant, "orders/create", usd_order(oid)).status, 200)
        r = shopify(self.tenant, "orders/delete", {"id": oid})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(order_row(self.tenant, oid)["status"], "cancelled")


class Signatures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tenant = new_tenant("USD")

    def assert_rejected(self, r):
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.headers["content-type"], "application/problem+json")
        self.assertEqual(r.json["status"], 401)

    def test_wrong_secret(self):
        self.assert_rejected(shopify(self.tenant, "orders/create", usd_order(7770001), secret="not-the-secret"))
        self.assertIsNone(order_row(self.tenant, 7770001))

    def test_missing_signature(self):
        self.assert_rejected(shopify(self.tenant, "orders/create", usd_order(7770002), signature=False))
        self.assert_rejected(woo(self.tenant, "order.created", fixture("woocommerce_order_created.json"),
                                 signature=False))
        self.assertEqual(count("orders", self.tenant), 0)

    def test_tampered_body(self):
        order = usd_order(7770003, total="10.00")
        body = as_body(order)
        tampered = body.replace(b'"10.00"', b'"1000.00"')
        self.assertNotEqual(body, tampered)
        self.assert_rejected(shopify(self.tenant, "orders/create", order, signature=sign(body), body_override=tampered))
        self.assertIsNone(order_row(self.tenant, 7770003))

    def test_garbage_signature_and_unknown_tenant(self):
        self.assert_rejected(shopify(self.tenant, "orders/create", usd_order(7770004), signature="abc"))
        self.assert_rejected(shopify("no-such-tenant", "orders/create", usd_order(7770004)))
        other = new_tenant("USD", secret="other-tenant-secret")
        self.assert_rejected(shopify(self.tenant, "orders/create", usd_order(7770004), secret="other-tenant-secret"))
        self.assertIsNone(order_row(other, 7770004))
        self.assertIsNone(order_row(self.tenant, 7770004))
        self.assertEqual(count("webhook_deliveries", self.tenant), 0)

    def test_woocommerce_secret_is_not_shopify_secret(self):
        tenant = new_tenant("USD", platforms=("shopify",))
        self.assert_rejected(woo(tenant, "order.created", fixture("woocommerce_order_created.json")))

    def test_previous_secret_accepted_after_rotation(self):
        tenant = new_tenant("USD", platforms=("shopify",), secret="old-secret")
        server.cli("tenant", "set-secret", tenant, "shopify", "new-secret")
        self.assertEqual(shopify(tenant, "orders/create", usd_order(7770005), secret="old-secret").status, 200)
        self.assertEqual(shopify(tenant, "orders/create", usd_order(7770006), secret="new-secret").status, 200)
        self.assert_rejected(shopify(tenant, "orders/create", usd_order(7770007), secret="older-secret"))


class WooCommerce(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tenant = new_tenant("USD")

    def test_order_sample_stored_as_guest(self):
        raw = fixture_bytes("woocommerce_order_created.json")
        p = json.loads(raw)
        tenant = new_tenant(p["currency"])
        r = woo(tenant, "order.created", raw)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "created")
        row = order_row(tenant, p["id"])
        self.assertEqual(p["customer_id"], 0)
        self.assertEqual(row["customer_id"], "email:" + p["billing"]["email"].lower())
        self.assertEqual(row["total"], Decimal(p["total"]))
        self.assertEqual(row["shop_total"], Decimal(p["total"]))
        self.assertEqual(row["currency"], p["currency"])
        self.assertEqual(row["status"], "paid")  # processing
        self.assertFalse(row["test"])
        self.assertEqual(row["source"], "woocommerce")
        self.assertTrue(same_instant(row["placed_at"], p["date_created_gmt"] + "Z"))
        self.assertTrue(same_instant(row["updated_at"], p["date_modified_gmt"] + "Z"))
        self.assertEqual(Decimal(customer_value(tenant, row["customer_id"], "net_revenue")), Decimal(p["total"]))

    def test_refund_via_order_updated(self):
        p = fixture("woocommerce_order_created.json")
        p["id"] = 8880001
        p["billing"]["email"] = "Refund.Buyer@example.com"  # a guest of their own in the shared tenant
        self.assertEqual(woo(self.tenant, "order.created", p).status, 200)
        p["status"] = "completed"
        p["date_modified_gmt"] = "2017-03-25T10:00:00"
        p["refunds"] = [{"id": 901, "reason": "", "total": "-5.00"}, {"id": 902, "reason": "", "total": "-2.35"}]
        r = woo(self.tenant, "order.updated", p)
        self.assertEqual(r.json["status"], "updated", r)
        refunded = -sum(Decimal(x["total"]) for x in p["refunds"])
        row = order_row(self.tenant, 8880001)
        self.assertEqual(row["refunded"], refunded)
        self.assertEqual(row["status"], "fulfilled")
        self.assertEqual(Decimal(customer_value(self.tenant, row["customer_id"], "net_revenue")),
                         Decimal(p["total"]) - refunded)

    def test_pending_does_not_count_and_delete_cancels(self):
        p = fixture("woocommerce_order_created.json")
        p.update({"id": 8880002, "status": "pending", "customer_id": 41})
        self.assertEqual(woo(self.tenant, "order.created", p).status, 200)
        row = order_row(self.tenant, 8880002)
        self.assertEqual(row["customer_id"], "41")
        self.assertEqual(row["status"], "cancelled")
        self.assertEqual(customer_value(self.tenant, "41", "order_count"), "0")
        p.update({"status": "processing", "date_modified_gmt": "2017-03-23T10:00:00"})
        woo(self.tenant, "order.updated", p)
        self.assertEqual(customer_value(self.tenant, "41", "order_count"), "1")
        r = woo(self.tenant, "order.deleted", {"id": 8880002})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(order_row(self.tenant, 8880002)["status"], "cancelled")
        self.assertEqual(customer_value(self.tenant, "41", "order_count"), "0")

    def test_foreign_currency_is_ignored(self):
        p = fixture("woocommerce_order_created.json")
        p.update({"id": 8880003, "currency": "EUR"})
        r = woo(self.tenant, "order.created", p)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "ignored")
        self.assertIn("EUR", r.json["reason"])
        self.assertIsNone(order_row(self.tenant, 8880003))

    def test_delivery_id_dedupes(self):
        p = fixture("woocommerce_order_created.json")
        p["id"] = 8880004
        did = uuid.uuid4().hex
        self.assertEqual(woo(self.tenant, "order.created", p, delivery_id=did).json["status"], "created")
        changed = copy.deepcopy(p)
        changed.update({"status": "cancelled", "date_modified_gmt": "2018-01-01T00:00:00"})
        r = woo(self.tenant, "order.updated", changed, delivery_id=did)
        self.assertEqual(r.json["status"], "duplicate", r)
        self.assertEqual(order_row(self.tenant, 8880004)["status"], "paid")

    def test_customer_created(self):
        c = {"id": 25, "email": "john.doe@example.com", "date_created_gmt": "2017-03-21T19:09:28",
             "role": "customer", "username": "john.doe", "is_paying_customer": False}
        r = woo(self.tenant, "customer.created", c)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(customer_value(self.tenant, "25", "email"), c["email"])
        self.assertTrue(same_instant(customer_value(self.tenant, "25", "created_at"), c["date_created_gmt"] + "Z"))

    def test_ping(self):
        r = server.request("POST", f"/v1/webhooks/woocommerce/{self.tenant}", b"webhook_id=15",
                           content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 200, r)

    def test_unknown_topic_is_ignored(self):
        r = woo(self.tenant, "coupon.created", {"id": 3, "code": "SPRING"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "ignored")


class DatabaseOutage(unittest.TestCase):
    """On its own cluster so other tests never see the outage."""

    def test_503_while_down_then_the_redelivery_is_stored(self):
        own_pg = Postgres().start()
        own = Server(own_pg).start()
        try:
            name, _ = own.tenant(currency="USD")
            own.cli("tenant", "set-secret", name, "shopify", SECRET)
            own_pg.stop("fast")
            wid = str(uuid.uuid4())
            r = shopify(name, "orders/create", usd_order(4440001), webhook_id=wid, srv=own)
            self.assertEqual(r.status, 503, r)
            self.assertIn("retry-after", r.headers)
            own_pg.start()
            deadline = time.time() + 20
            while time.time() < deadline and own.get("/readyz").status != 200:
                time.sleep(0.2)
            r = shopify(name, "orders/create", usd_order(4440001), webhook_id=wid, srv=own)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["status"], "created")
        finally:
            own.stop()
            own_pg.destroy()


class Logs(unittest.TestCase):
    def test_no_secret_or_sanitizer_report_in_log(self):
        tenant = new_tenant("USD", platforms=("shopify",), secret="log-probe-secret")
        shopify(tenant, "orders/create", usd_order(9990001), secret="log-probe-secret")
        shopify(tenant, "orders/create", usd_order(9990002), secret="wrong")
        log = server.read_log()
        self.assertNotIn("log-probe-secret", log)
        self.assertNotIn(SECRET, log)
        self.assertNotIn("runtime error", log)
        self.assertNotIn("AddressSanitizer", log)


def metric(name):
    for line in server.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


class ConcurrentDeliveries(unittest.TestCase):
    """A burst of deliveries goes through group commit (each a job of a shared transaction):
    every order is stored with its own total, a delivery sent twice at once is stored once and
    answered "duplicate" once, and a forged or invalid delivery in the same burst changes
    nothing for the others."""

    def test_burst_shares_commits_and_keeps_each_answer(self):
        import threading
        tenant = new_tenant("USD")
        base = 7770000
        work = []   # (key, kwargs for shopify())
        for i in range(24):
            work.append((f"o{i}", dict(topic="orders/create", payload=usd_order(base + i, total=f"{10 + i}.50"))))
        for j in range(3):
            wid = str(uuid.uuid4())
            body = usd_order(base + 100 + j, total="99.00")
            work += [(f"twice{j}", dict(topic="orders/create", payload=body, webhook_id=wid))] * 2
        work.append(("forged", dict(topic="orders/create", payload=usd_order(base + 200), secret="not-the-secret")))
        broken = usd_order(base + 300)
        del broken["id"]
        work.append(("invalid", dict(topic="orders/create", payload=broken)))
        jobs_before = metric("retentiond_db_group_commit_jobs_total")
        barrier = threading.Barrier(len(work))
        replies = {}

        def send(key, kw):
            barrier.wait()
            replies.setdefault(key, []).append(shopify(tenant, **kw))

        threads = [threading.Thread(target=send, args=w) for w in work]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(24):
            (r,) = replies[f"o{i}"]
            self.assertEqual((r.status, r.json["status"]), (200, "created"), r)
            self.assertEqual(order_row(tenant, base + i)["total"], Decimal(f"{10 + i}.50"))
        for j in range(3):
            self.assertEqual(sorted(r.json["status"] for r in replies[f"twice{j}"]), ["created", "duplicate"])
        self.assertEqual(replies["forged"][0].status, 401)
        self.assertIsNone(order_row(tenant, base + 200))
        self.assertEqual(replies["invalid"][0].status, 422)
        self.assertEqual(count("orders", tenant), 27)
        self.assertEqual(count("webhook_deliveries", tenant), 27)
        # every signed delivery ran as a group-commit job
        self.assertEqual(metric("retentiond_db_group_commit_jobs_total") - jobs_before, len(work))


if __name__ == "__main__":
    unittest.main()
