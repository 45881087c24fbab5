"""Outgoing webhooks: subscriptions, the transactional outbox, signed deliveries at least once
and in order, retries, a receiver that hangs, status changes found by the upkeep.

The receiver is a real HTTP server in this process (http.server on a free loopback port); the
service delivers to it over a real socket, so WEBHOOK_ALLOW_PRIVATE=1 as the issue says. What
each change must be is worked out by hand from the ladder and status rules (SPEC §4), never
read back from the service; signatures are checked with Python's hmac over the raw body."""
import hashlib
import hmac
import http.server
import json
import os
import signal
import threading
import time
import unittest
import uuid
from datetime import datetime, timedelta, timezone

from harness import Postgres, Server

pg = server = None
SETTINGS = dict(WEBHOOK_ALLOW_PRIVATE=1, WEBHOOK_POLL_MS=50, WEBHOOK_RETRY_BASE_MS=100, WEBHOOK_TIMEOUT_MS=1500,
                UPKEEP_INTERVAL=1)


def setUpModule():
    global pg, server
    pg = Postgres().start()
    server = Server(pg, **SETTINGS).start()


def tearDownModule():
    if server:
        server.stop()
    if pg:
        pg.destroy()


class Receiver:
    """A webhook receiver on 127.0.0.1. `plan` is a list of what to answer, in order, to the
    requests it gets (an HTTP status, or "hang": hold the request without answering until
    released); once used up it answers 200."""

    def __init__(self, plan=()):
        self.plan = list(plan)
        self.got = []                  # (headers dict lower-cased, raw body bytes), in arrival order
        self.lock = threading.Condition()
        self.release = threading.Event()
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with recv.lock:
                    recv.got.append(({k.lower(): v for k, v in self.headers.items()}, body, self.path))
                    answer = recv.plan.pop(0) if recv.plan else 200
                    recv.lock.notify_all()
                if answer == "hang":
                    recv.release.wait(120)
                    return
                self.send_response(answer)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, n, timeout=60):
        """Waits until at least n requests have arrived; returns them."""
        deadline = time.time() + timeout
        with self.lock:
            while len(self.got) < n:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"the receiver got {len(self.got)} requests, expected {n}: {self.bodies()}")
                self.lock.wait(left)
            return list(self.got)

    def bodies(self):
        return [json.loads(b) for _, b, _ in self.got]

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def tenant(srv=None):
    srv = srv or server
    name = "t" + uuid.uuid4().hex[:12]
    srv.cli("tenant", "create", name, "--currency", "EUR")
    return name, srv.key(name, "ingest,read,admin")


def tid(name, cluster=None):
    return int((cluster or pg).scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", name))


def subscribe(key, url, events=("customer.stage_changed",), srv=None, **extra):
    r = (srv or server).post("/v1/subscriptions", dict(url=url, events=list(events), **extra), key)
    return r


def days_ago(n):
    return (datetime.now(timezone.utc) - timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def order(oid, cid, placed, total="20.00"):
    return {"order_id": oid, "customer_id": cid, "placed_at": placed, "total": total, "currency": "EUR"}


def signature_ok(secret, headers, body):
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, headers.get("x-retentiond-signature", ""))


def settled(name, cluster=None):
    """Waits until nothing of the tenant is left to send: outbox empty, no delivery pending."""
    cluster = cluster or pg
    t = tid(name, cluster)
    deadline = time.time() + 60
    while time.time() < deadline:
        left = cluster.scalar("SELECT (SELECT count(*) FROM outbox WHERE tenant_id = :'v1') + "
                         "(SELECT count(*) FROM subscription_deliveries WHERE tenant_id = :'v1' "
                         " AND status = 'pending')", t)
        if left == "0":
            return
        time.sleep(0.05)
    raise AssertionError("deliveries still pending after 60 s")


class Subscriptions(unittest.TestCase):
    def test_create_list_get_delete(self):
        name, key = tenant()
        r = subscribe(key, "https://93.184.216.34/a", events=["customer.stage_changed", "customer.status_changed"],
                      filter={"to": ["advocate", "at_risk"], "min_predicted_clv": 50}, description="win-back")
        self.assertEqual(r.status, 201, r)
        s = r.json
        self.assertTrue(s["secret"].startswith("whsec_") and len(s["secret"]) == 6 + 48, s)
        self.assertEqual(s["filter"], {"to": ["advocate", "at_risk"], "min_predicted_clv": 50})
        listed = server.get("/v1/subscriptions", key).json["items"]
        self.assertEqual([x["id"] for x in listed], [s["id"]])
        self.assertNotIn("secret", json.dumps(listed))      # shown once, never again
        self.assertEqual(listed[0]["events"], ["customer.stage_changed", "customer.status_changed"])
        self.assertEqual(listed[0]["filter"], {"to": ["advocate", "at_risk"], "min_predicted_clv": 50})
        self.assertEqual(listed[0]["description"], "win-back")
        one = server.get(f"/v1/subscriptions/{s['id']}", key)
        self.assertEqual(one.status, 200)
        self.assertEqual(one.json["url"], "https://93.184.216.34/a")
        # another tenant sees none of it
        _, other = tenant()
        self.assertEqual(server.get("/v1/subscriptions", other).json["items"], [])
        self.assertEqual(server.get(f"/v1/subscriptions/{s['id']}", other).status, 404)
        self.assertEqual(server.request("DELETE", f"/v1/subscriptions/{s['id']}", key=other).status, 404)
        # delete: gone from the list, a second delete is 404
        self.assertEqual(server.request("DELETE", f"/v1/subscriptions/{s['id']}", key=key).status, 200)
        self.assertEqual(server.get("/v1/subscriptions", key).json["items"], [])
        self.assertEqual(server.request("DELETE", f"/v1/subscriptions/{s['id']}", key=key).status, 404)
        self.assertEqual(server.get("/v1/subscriptions/abc", key).status, 404)

    def test_admin_scope_only(self):
        name, _ = tenant()
        for scopes in ("read", "ingest", "ingest,read"):
            k = server.key(name, scopes)
            self.assertEqual(subscribe(k, "https://93.184.216.34/").status, 403, scopes)
            self.assertEqual(server.get("/v1/subscriptions", k).status, 403, scopes)

    def test_bad_input_names_the_field(self):
        _, key = tenant()
        cases = [
            ({"events": ["customer.stage_changed"]}, "url"),
            ({"url": "ftp://example.com/x", "events": ["customer.stage_changed"]}, "url"),
            ({"url": "example.com/x", "events": ["customer.stage_changed"]}, "url"),
            ({"url": 5, "events": ["customer.stage_changed"]}, "url"),
            ({"url": "https://93.184.216.34/"}, "events"),
            ({"url": "https://93.184.216.34/", "events": []}, "events"),
            ({"url": "https://93.184.216.34/", "events": ["order.created"]}, "events"),
            ({"url": "https://93.184.216.34/", "events": ["customer.stage_changed", "customer.stage_changed"]}, "events"),
            ({"url": "https://93.184.216.34/", "events": ["customer.stage_changed"], "filter": {"to": ["at_risk"]}},
             "filter.to"),   # a status, but only rung changes are subscribed
            ({"url": "https://93.184.216.34/", "events": ["customer.status_changed"], "filter": {"to": ["client"]}},
             "filter.to"),
            ({"url": "https://93.184.216.34/", "events": ["customer.stage_changed"], "filter": {"min_predicted_clv": -1}},
             "filter.min_predicted_clv"),
            ({"url": "https://93.184.216.34/", "events": ["customer.stage_changed"], "filter": {"min_predicted_clv": "9"}},
             "filter.min_predicted_clv"),
            ({"url": "https://93.184.216.34/", "events": ["customer.stage_changed"], "filter": {"rung": ["client"]}},
             "filter"),
            ({"url": "https://93.184.216.34/", "events": ["customer.stage_changed"], "description": 7}, "description"),
            ({"url": "https://93.184.216.34/", "events": ["customer.stage_changed"], "secret": "mine"}, "secret"),
        ]
        for body, field in cases:
            r = server.post("/v1/subscriptions", body, key)
            self.assertEqual(r.status, 422, (body, r))
            self.assertIn(field, [e["field"] for e in r.json["errors"]], (body, r))
        self.assertEqual(server.post("/v1/subscriptions", "[1]", key, content_type="application/json").status, 400)
        self.assertEqual(server.post("/v1/subscriptions", "{", key, content_type="application/json").status, 400)
        self.assertEqual(server.get("/v1/subscriptions", key).json["items"], [])  # nothing half-stored

    def test_private_addresses_refused_unless_allowed(self):
        guarded = Server(pg, WEBHOOK_ALLOW_PRIVATE=0, WEBHOOK_CONCURRENCY=0).start()
        try:
            _, key = tenant()
            for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://10.1.2.3/x", "http://192.168.0.10/",
                        "http://172.16.5.5/", "http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/",
                        "http://[fd00::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/"):
                r = subscribe(key, url, srv=guarded)
                self.assertEqual(r.status, 422, (url, r))
                self.assertEqual(r.json["errors"][0]["field"], "url", url)
                self.assertIn("WEBHOOK_ALLOW_PRIVATE", r.json["errors"][0]["message"], url)
            # a public address literal needs no DNS and is accepted
            self.assertEqual(subscribe(key, "http://93.184.216.34/hook", srv=guarded).status, 201)
            # the operator's switch lets a trusted network through
            self.assertEqual(subscribe(key, "http://127.0.0.1:9/x").status, 201)
        finally:
            guarded.stop()


class Deliveries(unittest.TestCase):
    def setUp(self):
        self.receivers = []

    def tearDown(self):
        for r in self.receivers:
            r.close()

    def receiver(self, plan=()):
        r = Receiver(plan)
        self.receivers.append(r)
        return r

    def test_one_signed_delivery_per_rung_change_in_order(self):
        name, key = tenant()
        rec = self.receiver()
        s = subscribe(key, rec.url).json
        # a: suspect -> customer (first order) -> client (second order), two requests
        self.assertEqual(server.post("/v1/orders", order("a1", "a", days_ago(30)), key).status, 201)
        self.assertEqual(server.post("/v1/orders", order("a2", "a", days_ago(10)), key).status, 201)
        # b: three orders in one batch, one transaction: suspect -> client, one change
        batch = [dict(order(f"b{i}", "b", days_ago(40 - i)), kind="order") for i in range(3)]
        self.assertEqual(server.post("/v1/batch", batch, key).status, 200)
        # c: a customer record and a page view: suspect -> prospect
        self.assertEqual(server.post("/v1/events", {"event_id": "c-e1", "customer_id": "c", "type": "page_view",
                                                    "occurred_at": days_ago(5)}, key).status, 201)
        # a fourth order of a, and a re-post of a1: no rung change, nothing sent
        self.assertEqual(server.post("/v1/orders", order("a3", "a", days_ago(2)), key).status, 201)
        self.assertIn(server.post("/v1/orders", order("a1", "a", days_ago(30)), key).status, (200, 201))
        settled(name)
        got = rec.wait_for(4)
        time.sleep(0.5)  # anything extra the sender might still make would have arrived by now
        got = list(rec.got)
        changes = sorted((b["customer_id"], b["from"], b["to"]) for b in rec.bodies())
        self.assertEqual(changes, [("a", "customer", "client"), ("a", "suspect", "customer"),
                                   ("b", "suspect", "client"), ("c", "suspect", "prospect")])
        a = [b for b in rec.bodies() if b["customer_id"] == "a"]
        self.assertEqual([x["to"] for x in a], ["customer", "client"])   # in order per customer
        ids = set()
        for headers, body, path in got:
            self.assertEqual(path, "/hook")
            self.assertTrue(signature_ok(s["secret"], headers, body), headers)
            self.assertEqual(headers["content-type"], "application/json")
            d = json.loads(body)
            self.assertEqual(d["type"], "customer.stage_changed")
            self.assertEqual(d["tenant"], name)
            self.assertTrue(d["id"].startswith("evt_"))
            datetime.fromisoformat(d["occurred_at"])
            ids.add(headers["x-retentiond-delivery"])
            self.assertEqual(d["customer"]["currency"], "EUR")
        self.assertEqual(len(ids), 4)  # a distinct delivery id per delivery
        b = next(x for x in rec.bodies() if x["customer_id"] == "b")
        self.assertEqual(b["customer"]["order_count"], 3)
        self.assertEqual(b["customer"]["net_revenue"], 60)
        self.assertEqual(b["customer"]["stage"], "client")
        # a forged body fails the check the receiver makes
        self.assertFalse(signature_ok(s["secret"], got[0][0], got[0][1] + b" "))
        # the deliveries endpoint shows them delivered, one attempt each, answered 200
        items = server.get(f"/v1/subscriptions/{s['id']}/deliveries", key).json["items"]
        self.assertEqual(len(items), 4)
        for it in items:
            self.assertEqual(it["status"], "delivered", it)
            self.assertEqual([a["http_status"] for a in it["attempt_log"]], [200])

    def test_filters(self):
        name, key = tenant()
        advocates, rich = self.receiver(), self.receiver()
        subscribe(key, advocates.url, filter={"to": ["advocate"]})
        subscribe(key, rich.url, filter={"min_predicted_clv": 100})
        t = tid(name)
        # stored predictions as a fit would leave them: r is worth 500, p 5
        for cid, clv in (("r", 500), ("p", 5)):
            server.post("/v1/customers", {"customer_id": cid, "email": f"{cid}@example.com"}, key)
            pg.sql("INSERT INTO customer_predictions VALUES (:'v1', :'v2', now(), 0.9, 1.0, :'v3')", t, cid, clv)
        for cid in ("r", "p"):
            self.assertEqual(server.post("/v1/orders", order(cid + "1", cid, days_ago(20)), key).status, 201)
        # p writes a 5-star review after its order: customer -> advocate
        self.assertEqual(server.post("/v1/events", {"event_id": "p-rev", "customer_id": "p", "type": "review",
                                                    "occurred_at": days_ago(1), "properties": {"rating": 5}},
                                     key).status, 201)
        settled(name)
        time.sleep(0.3)
        self.assertEqual([(b["customer_id"], b["from"], b["to"]) for b in advocates.bodies()],
                         [("p", "customer", "advocate")])
        self.assertEqual([(b["customer_id"], b["from"], b["to"]) for b in rich.bodies()],
                         [("r", "suspect", "customer")])
        self.assertEqual(rich.bodies()[0]["customer"]["predicted_clv"], 500)
        self.assertEqual(rich.bodies()[0]["customer"]["email"], "r@example.com")

    def test_500_then_200_same_delivery(self):
        name, key = tenant()
        rec = self.receiver([500, 503])
        s = subscribe(key, rec.url).json
        before = metrics()
        server.post("/v1/orders", order("x1", "x", days_ago(3)), key)
        got = rec.wait_for(3)
        settled(name)
        ids = [h["x-retentiond-delivery"] for h, _, _ in got]
        self.assertEqual(len(set(ids)), 1, ids)                     # the same delivery, three times
        self.assertEqual(len({b for _, b, _ in got}), 1)            # byte for byte the same body
        self.assertEqual([h["x-retentiond-attempt"] for h, _, _ in got], ["1", "2", "3"])
        for h, b, _ in got:
            self.assertTrue(signature_ok(s["secret"], h, b))
        it = server.get(f"/v1/subscriptions/{s['id']}/deliveries", key).json["items"][0]
        self.assertEqual(it["status"], "delivered")
        self.assertEqual(it["attempts"], 3)
        self.assertEqual([a["http_status"] for a in it["attempt_log"]], [500, 503, 200])
        self.assertEqual(it["attempt_log"][0]["error"], "HTTP 500")
        after = metrics()
        self.assertGreaterEqual(after['retentiond_webhook_deliveries_total{outcome="retried"}']
                                - before['retentiond_webhook_deliveries_total{outcome="retried"}'], 2)
        self.assertGreaterEqual(after['retentiond_webhook_deliveries_total{outcome="delivered"}']
                                - before['retentiond_webhook_deliveries_total{outcome="delivered"}'], 1)
        self.assertIn("retentiond_webhook_outbox_backlog", after)
        self.assertIn("retentiond_webhook_pending", after)

    def test_gives_up_past_the_horizon(self):
        # a sender of its own with a 2-second horizon, against a receiver that always fails
        # (a cluster of its own: the module's server would deliver with its own horizon)
        own = Postgres().start()
        srv = Server(own, WEBHOOK_ALLOW_PRIVATE=1, WEBHOOK_POLL_MS=50, WEBHOOK_RETRY_BASE_MS=200,
                     WEBHOOK_RETRY_HORIZON=2).start()
        try:
            name, key = tenant(srv)
            rec = self.receiver([500] * 1000)
            s = subscribe(key, rec.url, srv=srv).json
            srv.post("/v1/orders", order("h1", "h", days_ago(3)), key)
            deadline = time.time() + 60
            while time.time() < deadline:
                items = srv.get(f"/v1/subscriptions/{s['id']}/deliveries", key).json["items"]
                if items and items[0]["status"] != "pending":
                    break
                time.sleep(0.1)
            self.assertEqual(items[0]["status"], "failed", items)
            self.assertGreaterEqual(items[0]["attempts"], 2)
            self.assertTrue(all(a["http_status"] == 500 for a in items[0]["attempt_log"]))
            n = len(rec.got)
            time.sleep(0.5)
            self.assertEqual(len(rec.got), n)  # no attempt after failing for good
            self.assertGreaterEqual(metrics(srv)['retentiond_webhook_deliveries_total{outcome="failed"}'], 1)
        finally:
            srv.stop()
            own.destroy()

    def test_test_delivery(self):
        name, key = tenant()
        rec = self.receiver()
        s = subscribe(key, rec.url).json
        r = server.post(f"/v1/subscriptions/{s['id']}/test", None, key)
        self.assertEqual(r.status, 202, r)
        (h, body, _), = rec.wait_for(1)
        self.assertEqual(h["x-retentiond-delivery"], str(r.json["delivery_id"]))
        self.assertTrue(signature_ok(s["secret"], h, body))
        d = json.loads(body)
        self.assertEqual((d["type"], d["tenant"], d["subscription_id"]), ("subscription.test", name, s["id"]))
        self.assertEqual(server.post("/v1/subscriptions/999999/test", None, key).status, 404)

    def test_deleted_subscription_stops(self):
        name, key = tenant()
        rec = self.receiver()
        s = subscribe(key, rec.url).json
        server.request("DELETE", f"/v1/subscriptions/{s['id']}", key=key)
        server.post("/v1/orders", order("d1", "d", days_ago(3)), key)
        self.assertEqual(pg.scalar("SELECT count(*) FROM outbox WHERE tenant_id = :'v1'", tid(name)), "0")
        time.sleep(0.5)
        self.assertEqual(rec.got, [])

    def test_hanging_receiver_blocks_nothing_else(self):
        slow_name, slow_key = tenant()
        fast_name, fast_key = tenant()
        hang = self.receiver(["hang"] * 1000)
        fast = self.receiver()
        subscribe(slow_key, hang.url)
        subscribe(fast_key, fast.url)
        # many customers of the slow tenant, each with a change to send to the hanging receiver
        for i in range(20):
            self.assertEqual(server.post("/v1/orders", order(f"s{i}", f"s{i}", days_ago(3)), slow_key).status, 201)
        hang.wait_for(1)
        # while it hangs, ingest answers and the other tenant's changes are delivered
        for i in range(10):
            self.assertEqual(server.post("/v1/orders", order(f"f{i}", f"f{i}", days_ago(3)), fast_key).status, 201)
        fast.wait_for(10)
        settled(fast_name)
        self.assertEqual(sorted(b["customer_id"] for b in fast.bodies()), sorted(f"f{i}" for i in range(10)))
        # the hanging one holds at most its per-subscription slots (4 by default)
        in_flight = int(pg.scalar("SELECT count(*) FROM subscription_deliveries WHERE tenant_id = :'v1' "
                                  "AND status = 'pending' AND leased_until > now()", tid(slow_name)))
        self.assertLessEqual(in_flight, 4)
        # and the attempts it times out are due again, not lost
        r = server.get("/v1/subscriptions", slow_key).json["items"][0]
        self.assertEqual(r["pending"], 20)

    def test_erasure_forgets_webhooks(self):
        name, key = tenant()
        rec = self.receiver(["hang"] * 10)
        subscribe(key, rec.url)
        server.post("/v1/customers", {"customer_id": "gone-4b1", "email": "gone-4b1@example.com"}, key)
        server.post("/v1/orders", order("g1", "gone-4b1", days_ago(3)), key)
        rec.wait_for(1)
        r = server.request("DELETE", "/v1/customers/gone-4b1", key=key)
        self.assertEqual(r.status, 200, r)
        self.assertGreaterEqual(r.json["erased"]["webhook_deliveries"], 1)
        t = tid(name)
        for table in ("outbox", "subscription_deliveries", "customer_status"):
            self.assertEqual(pg.scalar(f"SELECT count(*) FROM {table} WHERE tenant_id = :'v1' "
                                       "AND customer_id = 'gone-4b1'", t), "0", table)
        self.assertEqual(pg.scalar("SELECT count(*) FROM subscription_deliveries WHERE tenant_id = :'v1' "
                                   "AND body LIKE '%gone-4b1%'", t), "0")


class StatusChanges(unittest.TestCase):
    def test_status_changes_found_by_the_upkeep(self):
        name, key = tenant()
        rec = Receiver()
        try:
            t = tid(name)
            # o ordered 100 and 90 days ago: active with the default 365-day window (a gap of 10
            # days; 90 days since is more than 1.5 x 10: at risk by the gap rule)
            # n ordered yesterday and 3 days ago: active
            for oid, cid, d in (("o1", "o", 100), ("o2", "o", 90), ("n1", "n", 3), ("n2", "n", 1)):
                self.assertEqual(server.post("/v1/orders", order(oid, cid, days_ago(d)), key).status, 201)
            s = subscribe(key, rec.url, events=["customer.status_changed"]).json
            # the starting point is recorded without a change
            self.assertEqual(dict(pg.sql("SELECT customer_id, status FROM customer_status WHERE tenant_id = :'v1'", t)),
                             {"o": "at_risk", "n": "active"})
            # the window shrinks to 30 days: o lapses (its last order is 90 days old), n does not
            pg.sql("UPDATE tenants SET activity_window_days = 30 WHERE tenant_id = :'v1'", t)
            (h, body, _), = rec.wait_for(1)
            d = json.loads(body)
            self.assertEqual((d["type"], d["customer_id"], d["from"], d["to"]),
                             ("customer.status_changed", "o", "at_risk", "lapsed"))
            self.assertEqual(d["customer"]["status"], "lapsed")
            self.assertTrue(signature_ok(s["secret"], h, body))
            # o orders again today: active again (gap rule: 0 days since < 1.5 x mean gap)
            self.assertEqual(server.post("/v1/orders", order("o3", "o", days_ago(0)), key).status, 201)
            got = rec.wait_for(2)
            d = json.loads(got[1][1])
            self.assertEqual((d["customer_id"], d["from"], d["to"]), ("o", "lapsed", "active"))
            # and nothing for n, nor a rung change (not subscribed)
            time.sleep(2.5)  # two more upkeep rounds
            self.assertEqual(len(rec.got), 2, rec.bodies())
        finally:
            rec.close()


class Durability(unittest.TestCase):
    def test_sigkill_between_commit_and_delivery(self):
        """Killed after the commit and before any delivery (no sender running), then killed again
        while an attempt is in flight: after each restart everything is delivered, a repeat
        carrying the same delivery id."""
        own = Postgres().start()  # no other sender may see these changes
        srv = Server(own, WEBHOOK_ALLOW_PRIVATE=1, WEBHOOK_CONCURRENCY=0).start()
        rec = Receiver(["hang"])
        try:
            name, key = tenant(srv)
            s = subscribe(key, rec.url, srv=srv).json
            for i in range(5):
                self.assertEqual(srv.post("/v1/orders", order(f"k{i}", f"k{i}", days_ago(3)), key).status, 201)
            srv.stop(signal.SIGKILL)
            self.assertEqual(rec.got, [])
            # a sender now: the first attempt hangs (the receiver holds it), and the process dies
            # (a 5 s timeout: the kill comes long before it; the lease it takes is 15 s)
            srv = Server(own, WEBHOOK_ALLOW_PRIVATE=1, WEBHOOK_POLL_MS=50, WEBHOOK_TIMEOUT_MS=5000,
                         WEBHOOK_PER_SUBSCRIPTION=1).start()
            first = rec.wait_for(1)[0]
            srv.stop(signal.SIGKILL)
            srv = Server(own, WEBHOOK_ALLOW_PRIVATE=1, WEBHOOK_POLL_MS=50, WEBHOOK_TIMEOUT_MS=1000).start()
            settled(name, own)
            bodies = rec.bodies()
            self.assertEqual(sorted({b["customer_id"] for b in bodies}), [f"k{i}" for i in range(5)])
            ids = [h["x-retentiond-delivery"] for h, _, _ in rec.got]
            # the attempt that hung is made again under its id; every other delivery once
            self.assertEqual(ids.count(first[0]["x-retentiond-delivery"]), 2, ids)
            self.assertEqual(len(ids), 6, ids)
            for h, b, _ in rec.got:
                self.assertTrue(signature_ok(s["secret"], h, b))
        finally:
            rec.close()
            srv.stop()
            own.destroy()


def metrics(srv=None):
    text = (srv or server).get("/metrics").body.decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


if __name__ == "__main__":
    unittest.main()
