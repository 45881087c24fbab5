"""Privacy (GDPR Art. 15, 17, 20): erasing a customer, exporting what is kept, Shopify's
compliance webhooks.

An erased customer must leave a shop exactly as if they had never existed: every endpoint is
compared with a second tenant loaded with the same records without them. Every table is then
searched, from the catalog, for any trace of the erased customer's id or e-mail, so a table
added later is covered without editing this test."""
import base64
import hashlib
import hmac
import json
import time
import unittest
import uuid

from harness import Server, module_cluster

pg = server = None
SECRET = "whsec-privacy-0123456789"
GONE = "erase-me-7f3a"          # an id and e-mail that appear nowhere else
GONE_EMAIL = "erase-me-7f3a@example.com"


# the upkeep every second: the ladder's days are compacted at once
setUpModule, tearDownModule = module_cluster(globals(), UPKEEP_INTERVAL=1)


def tenant(secret=False):
    name = "t" + uuid.uuid4().hex[:12]
    server.cli("tenant", "create", name)
    if secret:
        server.cli("tenant", "set-secret", name, "shopify", SECRET)
    return name, server.key(name, "ingest,read,admin")


def tid(name):
    return pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", name)


def order(oid, cid, placed, total):
    return {"kind": "order", "order_id": oid, "customer_id": cid, "placed_at": placed, "total": total}


def shop():
    """A small shop, loaded by one batch."""
    return [
        {"kind": "customer", "customer_id": "a", "email": "a@example.com", "created_at": "2026-01-02T00:00:00Z",
         "channel": "email"},
        {"kind": "customer", "customer_id": "b", "email": "b@example.com", "channel": "ads"},
        order("a1", "a", "2026-02-01T10:00:00Z", "40"), order("a2", "a", "2026-06-01T10:00:00Z", "60"),
        order("b1", "b", "2026-03-01T10:00:00Z", "25"), order("c1", "c", "2026-05-05T10:00:00Z", "90"),
        order("c2", "c", "2026-09-05T10:00:00Z", "10"),
        {"kind": "event", "event_id": "e-a", "customer_id": "a", "type": "page_view",
         "occurred_at": "2026-01-20T00:00:00Z"},
        {"kind": "spend", "type": "acquisition", "channel": "email", "period": "2026-02", "amount": "100"},
    ]


# The GONE customer, posted one record at a time in time order, so that every rung is recorded:
# suspect -> prospect (the page view), customer, client, advocate (the review)
GONE_RECORDS = [
    ("/v1/customers", {"customer_id": GONE, "email": GONE_EMAIL, "created_at": "2026-01-10T00:00:00Z",
                       "channel": "email", "attributes": {"note": GONE}}),
    ("/v1/events", {"event_id": "e-g2", "customer_id": GONE, "type": "page_view", "occurred_at": "2026-01-15T00:00:00Z"}),
    ("/v1/orders", {"order_id": "g1", "customer_id": GONE, "placed_at": "2026-02-10T10:00:00Z", "total": "70"}),
    ("/v1/orders", {"order_id": "g2", "customer_id": GONE, "placed_at": "2026-04-10T10:00:00Z", "total": "30"}),
    ("/v1/orders", {"order_id": "g3", "customer_id": GONE, "placed_at": "2026-08-10T10:00:00Z", "total": "55"}),
    ("/v1/events", {"event_id": "e-g1", "customer_id": GONE, "type": "review", "occurred_at": "2026-08-20T00:00:00Z",
                    "properties": {"rating": 5, "by": GONE_EMAIL}}),
]


def load(key, with_gone):
    r = server.post("/v1/batch", shop(), key)
    assert r.json["rejected"] == 0, r
    for path, body in GONE_RECORDS if with_gone else []:
        r = server.post(path, body, key)
        assert r.status in (200, 201), r


ENDPOINTS = [
    "/v1/metrics/summary?from=2026-01-01&to=2027-01-01",
    "/v1/metrics/summary?from=2026-04-01&to=2026-10-01&window=90",
    "/v1/metrics/retention?from=2026-01-01&to=2027-01-01&period=month",
    "/v1/metrics/retention?from=2026-01-05&to=2026-11-30&period=week",
    "/v1/metrics/cohorts?from=2026-01-01&to=2027-01-01&period=month",
    "/v1/metrics/cohorts?from=2026-01-01&to=2027-01-01&period=quarter&breakdown=channel",
    "/v1/metrics/ladder?from=2026-01-01&to=2027-01-01",
    "/v1/metrics/clv",
    "/v1/customers?sort=net_revenue&as_of=2026-11-30",
    "/v1/customers?sort=last_order_at&as_of=2026-11-30",
    "/v1/customers?stage=client&as_of=2026-11-30",
    "/v1/customers?segment=champions&as_of=2026-11-30",
    "/v1/customers/a?as_of=2026-11-30", "/v1/customers/b?as_of=2026-11-30", "/v1/customers/c?as_of=2026-11-30",
    f"/v1/customers/{GONE}?as_of=2026-11-30",
]


def answers(key):
    """Each endpoint's reply, without the instant the RFM boundaries were computed at (when the
    read happened to recompute them, not what they are)."""
    out = {}
    for path in ENDPOINTS:
        r = server.get(path, key)
        body = r.json if r.status == 200 else None
        if isinstance(body, dict) and isinstance(body.get("rfm"), dict):
            body["rfm"].get("inputs", {}).pop("quintiles_computed_at", None)
        out[path] = (r.status, body)
    return out


def wait_compacted(name):
    deadline = time.time() + 60
    while time.time() < deadline:
        if pg.scalar("SELECT count(*) FROM stage_history_compacted WHERE tenant_id = :'v1'", tid(name)) == "1":
            return
        time.sleep(0.2)
    raise AssertionError("the upkeep did not compact the ladder's days")


def traces(name, needles):
    """Every (table, row) of the tenant, in any public table with a tenant_id column, whose text
    holds one of needles; tables listed from the catalog."""
    tables = [r[0] for r in pg.sql(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND column_name = 'tenant_id' ORDER BY 1")]
    found = []
    for t in tables:
        for n in needles:
            k = pg.scalar(f"SELECT count(*) FROM {t} x WHERE x.tenant_id = :'v1' AND row_to_json(x)::text LIKE :'v2'",
                          tid(name), f"%{n}%")
            if k != "0":
                found.append((t, n, k))
    return tables, found


class EraseACustomer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.name, cls.key = tenant()
        cls.twin, cls.twin_key = tenant()
        load(cls.key, True)
        load(cls.twin_key, False)
        wait_compacted(cls.name)
        wait_compacted(cls.twin)
        # reports, a profile and a list read before the erasure: snapshots and RFM boundaries
        # hold the customer when it happens
        cls.before = answers(cls.key)
        assert cls.before[f"/v1/customers/{GONE}?as_of=2026-11-30"][0] == 200
        cls.reply = server.request("DELETE", f"/v1/customers/{GONE}", key=cls.key)

    def test_reply_counts_what_was_removed(self):
        self.assertEqual(self.reply.status, 200, self.reply)
        erased = self.reply.json["erased"]
        # by hand: the record, its 3 orders, 2 events, its rung changes (suspect -> prospect on the
        # first page view, -> customer, -> client, -> advocate with the review: 4)
        self.assertEqual((erased["customers"], erased["orders"], erased["events"], erased["rung_changes"]),
                         (1, 3, 2, 4))
        self.assertEqual(self.reply.json["customer_id"], GONE)

    def test_every_endpoint_as_if_never_there(self):
        self.assertNotEqual(self.before, answers(self.twin_key))   # the shops did differ
        after, twin = answers(self.key), answers(self.twin_key)
        for path in ENDPOINTS:
            self.assertEqual(after[path], twin[path], path)

    def test_no_table_keeps_a_trace(self):
        tables, found = traces(self.name, [GONE, GONE_EMAIL])
        self.assertIn("orders", tables)
        self.assertIn("rfm_cutoffs", tables)
        self.assertEqual(found, [])

    def test_the_audit_row_holds_no_personal_data(self):
        key_id = self.key.split("_")[1]
        rows = pg.sql("SELECT subject_hash, requested_by, counts::text FROM privacy_erasures WHERE tenant_id = :'v1'",
                      tid(self.name))
        want = hashlib.sha256(f"{tid(self.name)}:{GONE}".encode()).hexdigest()
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0][0], want)
        self.assertEqual(rows[0][1], f"key {key_id}")
        self.assertEqual(json.loads(rows[0][2])["orders"], 3)

    def test_twice_is_404_and_unknown_is_404(self):
        r = server.request("DELETE", f"/v1/customers/{GONE}", key=self.key)
        self.assertEqual(r.status, 404, r)
        r = server.request("DELETE", "/v1/customers/nobody-at-all", key=self.key)
        self.assertEqual(r.status, 404, r)
        r = server.get(f"/v1/customers/{GONE}/export", self.key)
        self.assertEqual(r.status, 404, r)


class Isolation(unittest.TestCase):
    def test_another_tenants_customer_is_404_and_untouched(self):
        mine, my_key = tenant()
        theirs, their_key = tenant()
        server.post("/v1/batch", [order("x1", "shared-id", "2025-03-01T00:00:00Z", "10")], their_key)
        for method, path in (("DELETE", "/v1/customers/shared-id"), ("GET", "/v1/customers/shared-id/export")):
            r = server.request(method, path, key=my_key)
            self.assertEqual(r.status, 404, (method, r))
        self.assertEqual(server.get("/v1/customers/shared-id", their_key).status, 200)

    def test_admin_scope_is_needed(self):
        name, _ = tenant()
        read = server.key(name, "ingest,read")
        for method, path in (("DELETE", "/v1/customers/x"), ("GET", "/v1/customers/x/export"),
                             ("GET", "/v1/privacy/requests")):
            self.assertEqual(server.request(method, path, key=read).status, 403, path)


class Referrals(unittest.TestCase):
    def test_links_are_removed_not_the_other_customers(self):
        name, key = tenant()
        r = server.post("/v1/batch", [
            {"kind": "customer", "customer_id": "z"},
            {"kind": "customer", "customer_id": "x", "referred_by": "z"},
            {"kind": "customer", "customer_id": "y", "referred_by": "x"},
            order("z1", "z", "2026-01-01T00:00:00Z", "10"), order("x1", "x", "2026-02-01T00:00:00Z", "10"),
            order("y1", "y", "2026-03-01T00:00:00Z", "10"),
        ], key)
        self.assertEqual(r.json["rejected"], 0, r)
        # z referred x, who bought: z is an advocate; x referred y: so is x
        self.assertEqual(server.get("/v1/customers/z", key).json["stage"], "advocate")
        r = server.request("DELETE", "/v1/customers/x", key=key)
        self.assertEqual(r.json["erased"]["referrals_unlinked"], 1)
        y = server.get("/v1/customers/y", key).json
        self.assertIsNone(y["referred_by"])
        self.assertEqual(y["order_count"], 1)
        z = server.get("/v1/customers/z", key).json
        self.assertEqual((z["stage"], z["order_count"]), ("customer", 1))   # no referred customer left


class Export(unittest.TestCase):
    def test_everything_kept_about_one_customer(self):
        name, key = tenant()
        load(key, True)
        r = server.get(f"/v1/customers/{GONE}/export", key)
        self.assertEqual(r.status, 200, r)
        doc = r.json
        self.assertEqual(doc["customer_id"], GONE)
        self.assertEqual(doc["record"]["email"], GONE_EMAIL)
        self.assertEqual(doc["record"]["attributes"], {"note": GONE})
        self.assertEqual([o["order_id"] for o in doc["orders"]], ["g1", "g2", "g3"])
        self.assertEqual(doc["orders"][0]["total"], "70")
        self.assertEqual(sorted(e["event_id"] for e in doc["events"]), ["e-g1", "e-g2"])
        self.assertEqual(doc["events"][0]["properties"], {})   # the page view, first in time
        self.assertEqual([h["to_stage"] for h in doc["rung_history"]], ["prospect", "customer", "client", "advocate"])
        self.assertIsNone(doc["prediction"])


def sign(body):
    return base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()


def shopify(name, topic, payload, signature=None, event_id=None):
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": topic,
               "X-Shopify-Shop-Domain": "test.myshopify.com", "X-Shopify-Webhook-Id": str(uuid.uuid4()),
               "X-Shopify-Hmac-Sha256": signature or sign(body)}
    if event_id:
        headers["X-Shopify-Event-Id"] = event_id
    return server.request("POST", f"/v1/webhooks/shopify/{name}", body, headers=headers)


class ShopifyCompliance(unittest.TestCase):
    def load(self):
        name, key = tenant(secret=True)
        r = server.post("/v1/batch", [
            order("5001", "111", "2025-02-01T00:00:00Z", "10"), order("5002", "111", "2025-03-01T00:00:00Z", "20"),
            order("5003", "email:guest@example.com", "2025-02-05T00:00:00Z", "30"),
            order("5004", "222", "2025-02-07T00:00:00Z", "40"), order("5005", "222", "2025-04-07T00:00:00Z", "50"),
            {"kind": "customer", "customer_id": "111", "email": "Guest@Example.com"},
        ], key)
        self.assertEqual(r.json["rejected"], 0, r)
        return name, key

    def test_customers_redact_erases_the_customer_the_guest_and_the_listed_orders(self):
        name, key = self.load()
        payload = {"shop_id": 954889, "shop_domain": "test.myshopify.com",
                   "customer": {"id": 111, "email": "Guest@Example.com", "phone": "555-625-1199"},
                   "orders_to_redact": [5004]}
        r = shopify(name, "customers/redact", payload, signature="bm90IHRoZSBzaWduYXR1cmU=")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(server.get("/v1/customers/111", key).status, 200)   # nothing erased
        r = shopify(name, "customers/redact", payload)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "erased")
        self.assertEqual((r.json["erased"]["customers"], r.json["erased"]["orders"]), (2, 4))
        for cid in ("111", "email:guest@example.com"):
            self.assertEqual(server.get(f"/v1/customers/{cid}", key).status, 404, cid)
        c = server.get("/v1/customers/222", key).json        # 222 keeps its other order
        self.assertEqual(c["order_count"], 1)
        _, found = traces(name, ["guest@example.com", "Guest@Example.com", "5004"])
        self.assertEqual(found, [])

    def test_shop_redact_erases_the_data_and_keeps_the_shop(self):
        name, key = self.load()
        server.post("/v1/batch", [{"kind": "spend", "type": "acquisition", "channel": "ads", "period": "2025-02",
                                   "amount": "5"}], key)
        r = shopify(name, "shop/redact", {"shop_id": 954889, "shop_domain": "test.myshopify.com"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["erased"]["customers"], r.json["erased"]["orders"], r.json["erased"]["spend"]),
                         (3, 5, 1))
        for t in ("customers", "orders", "events", "spend", "stage_history", "customer_predictions"):
            self.assertEqual(pg.scalar(f"SELECT count(*) FROM {t} WHERE tenant_id = :'v1'", tid(name)), "0", t)
        # the tenant, its key and its secret stay: the shop can come back
        self.assertEqual(server.get("/v1/metrics/summary", key).json["counts"]["customers"], 0)
        r = shopify(name, "customers/create", {"id": 333, "email": "new@example.com",
                                               "created_at": "2026-01-01T00:00:00Z"})
        self.assertEqual(r.status, 200, r)

    def test_data_request_is_recorded_and_listed(self):
        name, key = self.load()
        payload = {"shop_id": 954889, "shop_domain": "test.myshopify.com", "orders_requested": [5001, 5002],
                   "customer": {"id": 111, "email": "Guest@Example.com", "phone": "555-625-1199"},
                   "data_request": {"id": 9999}}
        r = shopify(name, "customers/data_request", payload, event_id="ev-1")
        self.assertEqual((r.status, r.json["status"]), (200, "recorded"), r)
        r = shopify(name, "customers/data_request", payload, event_id="ev-1")   # a redelivery of the event
        self.assertEqual(r.json["status"], "duplicate", r)
        reqs = server.get("/v1/privacy/requests", key).json["requests"]
        self.assertEqual([(q["request_id"], q["customer_id"], q["orders"]) for q in reqs],
                         [("9999", "111", ["5001", "5002"])])
        self.assertEqual(server.get("/v1/customers/111/export", key).json["record"]["customer_id"], "111")

    def test_a_late_retry_of_an_older_state_changes_nothing(self):
        name, key = tenant(secret=True)
        def update(email, triggered, updated=None, event=None):
            body = {"id": 444, "email": email, "created_at": "2026-01-01T00:00:00Z"}
            if updated:
                body["updated_at"] = updated
            raw = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", "X-Shopify-Topic": "customers/update",
                       "X-Shopify-Webhook-Id": str(uuid.uuid4()), "X-Shopify-Event-Id": event or str(uuid.uuid4()),
                       "X-Shopify-Triggered-At": triggered, "X-Shopify-Hmac-Sha256": sign(raw)}
            return server.request("POST", f"/v1/webhooks/shopify/{name}", raw, headers=headers)
        self.assertEqual(update("new@example.com", "2026-03-02T10:00:00Z").json["status"], "created")
        # the event of the day before, retried late: older, so it changes nothing
        r = update("old@example.com", "2026-03-01T10:00:00Z")
        self.assertEqual((r.status, r.json["status"]), (200, "stale"), r)
        self.assertEqual(server.get("/v1/customers/444", key).json["email"], "new@example.com")
        # the payload's own updated_at wins over the header when given
        r = update("newer@example.com", "2026-02-01T00:00:00Z", updated="2026-03-03T00:00:00Z")
        self.assertEqual(r.json["status"], "updated", r)
        self.assertEqual(server.get("/v1/customers/444", key).json["email"], "newer@example.com")

    def test_a_payload_without_a_customer_is_422(self):
        name, _ = self.load()
        r = shopify(name, "customers/redact", {"shop_id": 1, "shop_domain": "x", "customer": {}})
        self.assertEqual(r.status, 422, r)


class TenantsAndKeys(unittest.TestCase):
    def test_tenant_delete_asks_for_yes_then_erases_everything(self):
        name, key = tenant(secret=True)
        server.post("/v1/batch", [order("o1", "c1", "2026-02-01T00:00:00Z", "10")], key)
        t = tid(name)
        out = server.cli("tenant", "delete", name, check=False)
        self.assertEqual(out.returncode, 2, out)
        self.assertIn("--yes", out.stderr)
        self.assertEqual(server.get("/v1/customers/c1", key).status, 200)   # nothing happened
        out = server.cli("tenant", "delete", name, "--yes")
        self.assertIn("deleted", out.stdout)
        tables = [r[0] for r in pg.sql("SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
                                       " AND column_name = 'tenant_id'")]
        for table in tables:
            self.assertEqual(pg.scalar(f"SELECT count(*) FROM {table} WHERE tenant_id = :'v1'", t), "0", table)
        self.assertEqual(server.cli("tenant", "delete", name, "--yes", check=False).returncode, 3)

    def test_key_list_and_revoke(self):
        name, key = tenant()
        key_id = key.split("_")[1]
        self.assertEqual(server.get("/v1/metrics/summary", key).status, 200)   # used once
        out = server.cli("key", "list", "--tenant", name).stdout
        line = next(l for l in out.splitlines() if l.startswith(key_id))
        self.assertIn("ingest,read,admin", line)
        self.assertNotIn(key[3 + len(key_id) + 1:], out)   # never the secret part
        created, last_used, revoked = line.split()[2:5]
        self.assertNotEqual(last_used, "-")
        self.assertEqual(revoked, "-")
        out = server.cli("key", "revoke", key_id)
        self.assertIn("30 seconds", out.stdout)
        self.assertEqual(server.cli("key", "revoke", key_id, check=False).returncode, 3)
        # refused by a server whose cache has not seen the key; the running one within 30 s
        fresh = Server(pg).start()
        try:
            self.assertEqual(fresh.get("/v1/metrics/summary", key).status, 401)
        finally:
            fresh.stop()
        self.assertNotEqual(server.cli("key", "list", "--tenant", name).stdout.split("\n")[1].split()[4], "-")


if __name__ == "__main__":
    unittest.main()
