"""Ingestion through real HTTP: status codes, validation naming every field, idempotency,
out-of-order updates, implicit customers, rollup and rung changes on refunds, batches."""
import json
import threading
import unittest

from harness import Postgres, Server, module_cluster

pg = server = None


setUpModule, tearDownModule = module_cluster(globals())  # sets pg and server


def order(oid, cid, placed="2026-01-05T10:00:00Z", total="10.00", **kw):
    d = {"order_id": oid, "customer_id": cid, "placed_at": placed, "total": total}
    d.update(kw)
    return d


class Base(unittest.TestCase):
    def setUp(self):
        self.tenant, self.key = server.tenant()
        self.tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", self.tenant)

    def q(self, sql, *args):
        return pg.scalar(sql.replace("$T", self.tid), *args)

    def customer(self, cid):
        rows = pg.sql("SELECT order_count, net_revenue::text, stage FROM customers"
                      f" WHERE tenant_id = {self.tid} AND customer_id = :'v1'", cid)
        return tuple(rows[0]) if rows else None


class StatusCodes(Base):
    def test_created_then_duplicate(self):
        r = server.post("/v1/orders", order("o1", "c1"), self.key)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["status"], "created")
        self.assertEqual(r.json["order_id"], "o1")
        r = server.post("/v1/orders", order("o1", "c1"), self.key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["status"], "duplicate")
        self.assertEqual(self.q("SELECT count(*) FROM orders WHERE tenant_id = $T"), "1")

    def test_malformed_json_is_400(self):
        r = server.post("/v1/orders", '{"order_id": "x", ', self.key, content_type="application/json")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.headers["content-type"], "application/problem+json")
        self.assertIn("column", r.json["detail"])

    def test_duplicate_keys_are_400(self):
        r = server.post("/v1/orders", '{"order_id": "x", "order_id": "y"}', self.key, content_type="application/json")
        self.assertEqual(r.status, 400)

    def test_wrong_content_type_is_415(self):
        r = server.post("/v1/orders", json.dumps(order("o2", "c1")), self.key, content_type="text/plain")
        self.assertEqual(r.status, 415)

    def test_body_over_limit_is_413(self):
        big = json.dumps(order("o3", "c1", note="x" * (2 * 1024 * 1024)))
        r = server.post("/v1/orders", big, self.key, content_type="application/json")
        self.assertEqual(r.status, 413)
        self.assertEqual(self.q("SELECT count(*) FROM orders WHERE tenant_id = $T"), "0")

    def test_early_413_reaches_a_client_still_sending(self):
        """The 413 for a declared over-limit body waits until the body is dropped: sent at once,
        the connection would close under a client still sending, which then reads a reset
        instead of the reply."""
        import socket
        import time
        body = b"x" * (2 * 1024 * 1024)
        head = (f"POST /v1/orders HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {self.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(head.encode())
            time.sleep(0.5)   # the server has read the headers and decided
            sock.sendall(body)
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:200])

    def test_invalid_record_names_every_field_and_stores_nothing(self):
        bad = {"order_id": "", "placed_at": "2026-02-30T10:00:00Z", "total": "-5", "refunded": "abc",
               "status": "shipped", "currency": "EUR", "test": "yes"}
        r = server.post("/v1/orders", bad, self.key)
        self.assertEqual(r.status, 422, r)
        fields = {e["field"] for e in r.json["errors"]}
        self.assertEqual(fields, {"order_id", "customer_id", "placed_at", "total", "refunded", "status",
                                  "currency", "test"})
        self.assertEqual(self.q("SELECT count(*) FROM orders WHERE tenant_id = $T"), "0")
        self.assertEqual(self.q("SELECT count(*) FROM customers WHERE tenant_id = $T"), "0")

    def test_refund_above_total_is_422(self):
        r = server.post("/v1/orders", order("o4", "c1", total="10", refunded="10.01"), self.key)
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json["errors"][0]["field"], "refunded")

    def test_overlong_string_and_impossible_date(self):
        r = server.post("/v1/customers", {"customer_id": "x" * 300, "created_at": "2025-13-01"}, self.key)
        self.assertEqual(r.status, 422)
        self.assertEqual({e["field"] for e in r.json["errors"]}, {"customer_id", "created_at"})

    def test_foreign_currency_needs_shop_money(self):
        r = server.post("/v1/orders", order("o5", "c1", currency="EUR", total="20.00"), self.key)
        self.assertEqual(r.status, 422)
        r = server.post("/v1/orders", order("o5", "c1", currency="EUR", total="20.00",
                                            shop_money={"total": "21.70"}), self.key)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.q("SELECT shop_total::text || ' ' || total::text FROM orders WHERE tenant_id = $T"),
                         "21.70 20.00")

    def test_money_is_exact(self):
        r = server.post("/v1/orders", order("o6", "c1", total="123456789012345.123456"), self.key)
        self.assertEqual(r.status, 201, r)
        r = server.post("/v1/orders", order("o7", "c1", total=0.1), self.key)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.q("SELECT string_agg(total::text, ' ' ORDER BY order_id) FROM orders WHERE tenant_id = $T"),
                         "123456789012345.123456 0.1")
        self.assertEqual(self.q("SELECT net_revenue::text FROM customers WHERE tenant_id = $T"),
                         "123456789012345.223456")

    def test_events_customers_spend(self):
        self.assertEqual(server.post("/v1/customers", {"customer_id": "k1", "email": "k1@example.com",
                                                       "created_at": "2025-12-01T00:00:00+01:00"}, self.key).status, 201)
        r = server.post("/v1/events", {"event_id": "e1", "customer_id": "k1", "type": "review",
                                       "occurred_at": "2026-01-02T00:00:00Z", "properties": {"rating": 9}}, self.key)
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json["errors"][0]["field"], "properties.rating")
        r = server.post("/v1/events", {"event_id": "e1", "customer_id": "k1", "type": "visit",
                                       "occurred_at": "2026-01-02T00:00:00Z"}, self.key)
        self.assertEqual(r.status, 201)
        self.assertEqual(server.post("/v1/events", {"event_id": "e1", "customer_id": "k1", "type": "visit",
                                                    "occurred_at": "2026-01-02T00:00:00Z"}, self.key).json["status"],
                         "duplicate")
        self.assertEqual(self.customer("k1"), ("0", "0", "prospect"))
        r = server.post("/v1/spend", {"kind": "acquisition", "channel": "ads", "period": "2026-01", "amount": "500"},
                        self.key)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.q("SELECT period_end::text FROM spend WHERE tenant_id = $T"), "2026-02-01")


class OrderingAndRollup(Base):
    def test_newer_update_wins_older_is_ignored(self):
        server.post("/v1/orders", order("o1", "c1", total="50", updated_at="2026-01-05T10:00:00Z"), self.key)
        r = server.post("/v1/orders", order("o1", "c1", total="50", status="cancelled",
                                            updated_at="2026-01-07T10:00:00Z"), self.key)
        self.assertEqual(r.json["status"], "updated")
        r = server.post("/v1/orders", order("o1", "c1", total="50", status="paid",
                                            updated_at="2026-01-06T10:00:00Z"), self.key)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["status"], "stale")
        self.assertEqual(self.q("SELECT status FROM orders WHERE tenant_id = $T"), "cancelled")
        self.assertEqual(self.customer("c1"), ("0", "0", "suspect"))

    def test_order_before_customer(self):
        server.post("/v1/orders", order("o1", "late"), self.key)
        self.assertEqual(self.q("SELECT coalesce(email, '-') || ' ' || is_known FROM customers WHERE tenant_id = $T"),
                         "- false")
        r = server.post("/v1/customers", {"customer_id": "late", "email": "late@example.com"}, self.key)
        self.assertEqual(r.status, 201)
        self.assertEqual(self.q("SELECT email || ' ' || is_known || ' ' || order_count FROM customers"
                                " WHERE tenant_id = $T"), "late@example.com true 1")

    def test_refund_moves_client_back_to_customer(self):
        server.post("/v1/orders", order("o1", "c1", placed="2026-01-01T00:00:00Z", total="30"), self.key)
        server.post("/v1/orders", order("o2", "c1", placed="2026-02-01T00:00:00Z", total="20"), self.key)
        self.assertEqual(self.customer("c1"), ("2", "50", "client"))
        # a partial refund lowers revenue but keeps the order
        server.post("/v1/orders", order("o2", "c1", placed="2026-02-01T00:00:00Z", total="20", refunded="5",
                                        updated_at="2026-02-03T00:00:00Z"), self.key)
        self.assertEqual(self.customer("c1"), ("2", "45", "client"))
        # a full refund removes it: one qualifying order left
        server.post("/v1/orders", order("o2", "c1", placed="2026-02-01T00:00:00Z", total="20", refunded="20",
                                        status="refunded", updated_at="2026-02-05T00:00:00Z"), self.key)
        self.assertEqual(self.customer("c1"), ("1", "30", "customer"))
        hist = pg.sql(f"SELECT from_stage, to_stage, changed_at::date::text FROM stage_history WHERE tenant_id = {self.tid}"
                      " ORDER BY seq")
        self.assertEqual(hist, [["suspect", "customer", "2026-01-01"], ["customer", "client", "2026-02-01"],
                                ["client", "customer", "2026-02-05"]])

    def test_advocate_by_review_and_referral(self):
        server.post("/v1/orders", order("o1", "fan", placed="2026-01-01T00:00:00Z"), self.key)
        server.post("/v1/events", {"event_id": "r1", "customer_id": "fan", "type": "review",
                                   "occurred_at": "2026-01-03T00:00:00Z", "properties": {"rating": 5}}, self.key)
        self.assertEqual(self.customer("fan")[2], "advocate")
        server.post("/v1/orders", order("o2", "ref", placed="2026-01-01T00:00:00Z"), self.key)
        server.post("/v1/customers", {"customer_id": "friend", "referred_by": "ref"}, self.key)
        self.assertEqual(self.customer("ref")[2], "customer")  # brought nobody who bought yet
        server.post("/v1/orders", order("o3", "friend", placed="2026-01-10T00:00:00Z"), self.key)
        self.assertEqual(self.customer("ref")[2], "advocate")

    def test_concurrent_orders_for_one_customer(self):
        n = 40
        results = []

        def post(i):
            results.append(server.post("/v1/orders", order(f"p{i}", "busy", total="1.25"), self.key).status)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [201] * n)
        self.assertEqual(self.customer("busy"), (str(n), f"{n * 1.25:.2f}", "client"))


class Batches(Base):
    def test_bad_lines_reported_by_number_good_ones_stored(self):
        lines = [
            json.dumps({"kind": "customer", "customer_id": "b1", "email": "b1@example.com"}),
            json.dumps({"kind": "order", **order("bo1", "b1", total="12.50")}),
            "{not json",
            json.dumps({"kind": "order", "order_id": "bo2"}),
            "",
            json.dumps({"kind": "unicorn"}),
            json.dumps({"kind": "event", "event_id": "be1", "customer_id": "b1", "type": "visit",
                        "occurred_at": "2026-01-01T00:00:00Z"}),
        ]
        r = server.post("/v1/batch", "\n".join(lines) + "\n", self.key, content_type="application/x-ndjson")
        self.assertEqual(r.status, 200, r)
        body = r.json
        self.assertEqual(body["accepted"], 3)
        self.assertEqual(body["rejected"], 3)
        self.assertEqual([e["line"] for e in body["errors"]], [3, 4, 6])
        self.assertEqual({e["field"] for e in body["errors"][1]["errors"]}, {"customer_id", "placed_at", "total"})
        self.assertEqual(self.customer("b1"), ("1", "12.50", "customer"))

    def test_json_array_batch_and_replay_is_all_duplicates(self):
        items = [{"kind": "order", **order(f"a{i}", f"c{i % 3}", total=str(i))} for i in range(1, 10)]
        r = server.post("/v1/batch", items, self.key)
        self.assertEqual(r.json["accepted"], 9, r)
        r = server.post("/v1/batch", items, self.key)
        self.assertEqual((r.json["accepted"], r.json["duplicates"]), (0, 9))
        # c0 gets orders 3, 6, 9
        self.assertEqual(self.customer("c0"), ("3", "18", "client"))

    def test_hundred_thousand_lines(self):
        n, customers = 100_000, 7_919
        body = "".join(json.dumps({"kind": "order", "order_id": f"h{i}", "customer_id": f"hc{i % customers}",
                                   "placed_at": f"2025-{i % 12 + 1:02d}-{i % 28 + 1:02d}T12:00:00Z",
                                   "total": f"{i % 100}.{i % 10}0",
                                   "status": "cancelled" if i % 50 == 0 else "paid"}) + "\n"
                       for i in range(n))
        r = server.post("/v1/batch", body, self.key, content_type="application/x-ndjson", timeout=600)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["lines"], r.json["accepted"], r.json["rejected"]), (n, n, 0))
        qualifying = [i for i in range(n) if i % 50 != 0]
        revenue = sum((i % 100) * 100 + (i % 10) * 10 for i in qualifying)  # in cents
        self.assertEqual(self.q("SELECT count(*) FROM orders WHERE tenant_id = $T"), str(n))
        self.assertEqual(self.q("SELECT sum(order_count) FROM customers WHERE tenant_id = $T"), str(len(qualifying)))
        self.assertEqual(self.q("SELECT (sum(net_revenue) * 100)::bigint FROM customers WHERE tenant_id = $T"),
                         str(revenue))
        self.assertEqual(self.q("SELECT count(*) FROM customers WHERE tenant_id = $T"), str(customers))


class Import(Base):
    def test_import_csv_and_ndjson_files(self):
        import os
        import tempfile
        d = tempfile.mkdtemp()
        csv_path = os.path.join(d, "orders.csv")
        with open(csv_path, "w") as f:
            f.write("order_id,customer_id,placed_at,total,status\n"
                    "i1,ic1,2026-01-01,10.10,paid\n"
                    'i2,ic1,2026-02-01,"5.05",paid\n'
                    "i3,,2026-01-01,1,paid\n")
        out = server.cli("import", csv_path, "--tenant", self.tenant, "--kind", "order")
        self.assertIn("2 new", out.stderr)
        self.assertIn('"line":4', out.stderr)
        nd_path = os.path.join(d, "events.ndjson")
        with open(nd_path, "w") as f:
            f.write(json.dumps({"kind": "event", "event_id": "v1", "customer_id": "ic2", "type": "visit",
                                "occurred_at": "2026-01-01T00:00:00Z"}) + "\n")
        server.cli("import", nd_path, "--tenant", self.tenant)
        self.assertEqual(self.customer("ic1"), ("2", "15.15", "client"))
        self.assertEqual(self.customer("ic2"), ("0", "0", "prospect"))
        self.assertEqual(self.q("SELECT string_agg(DISTINCT source, ',') FROM orders WHERE tenant_id = $T"), "import")



# The rollup of every customer recomputed from its stored orders and events in plain SQL, from
# SPEC §2/§4 (qualifying: not cancelled, not refunded, not a test order, not fully refunded;
# advocacy: a review rated >= 4, an NPS score >= 9, or the first order of a customer it referred).
ROLLUP_FROM_HISTORY = """
WITH q AS (
    SELECT customer_id, placed_at, shop_total - shop_refunded AS net FROM orders
    WHERE tenant_id = $T AND status NOT IN ('cancelled', 'refunded') AND NOT test
      AND NOT (shop_total > 0 AND shop_refunded >= shop_total)),
adv AS (
    SELECT customer_id, occurred_at AS at FROM events
    WHERE tenant_id = $T AND ((type = 'review' AND (properties->>'rating')::numeric >= 4)
                           OR (type = 'nps' AND (properties->>'score')::numeric >= 9))
    UNION ALL
    SELECT c.referred_by, min(q.placed_at) FROM customers c JOIN q USING (customer_id)
    WHERE c.tenant_id = $T AND c.referred_by IS NOT NULL GROUP BY c.customer_id, c.referred_by)
SELECT c.customer_id,
       (SELECT min(placed_at) FROM q WHERE q.customer_id = c.customer_id),
       (SELECT max(placed_at) FROM q WHERE q.customer_id = c.customer_id),
       (SELECT count(*) FROM q WHERE q.customer_id = c.customer_id),
       (SELECT coalesce(sum(net), 0) FROM q WHERE q.customer_id = c.customer_id),
       (SELECT min(occurred_at) FROM events e WHERE e.tenant_id = $T AND e.customer_id = c.customer_id),
       (SELECT max(occurred_at) FROM events e WHERE e.tenant_id = $T AND e.customer_id = c.customer_id),
       (SELECT count(*) FROM events e WHERE e.tenant_id = $T AND e.customer_id = c.customer_id),
       (SELECT max(at) FROM adv WHERE adv.customer_id = c.customer_id),
       (SELECT count(DISTINCT (placed_at AT TIME ZONE 'UTC')::date) FROM q WHERE q.customer_id = c.customer_id),
       (SELECT coalesce(sum(net), 0) FROM q WHERE q.customer_id = c.customer_id
          AND (placed_at AT TIME ZONE 'UTC')::date = (SELECT min((placed_at AT TIME ZONE 'UTC')::date)
                                                      FROM q q1 WHERE q1.customer_id = c.customer_id))
FROM customers c WHERE c.tenant_id = $T ORDER BY 1"""

ROLLUP_STORED = """
SELECT customer_id, first_order_at, last_order_at, order_count, net_revenue, first_engaged_at,
       last_engaged_at, event_count, last_advocacy_at, order_days, first_day_value
FROM customers WHERE tenant_id = $T ORDER BY 1"""


# BG/NBD inputs by definition (SPEC §4): occasions are UTC days with a qualifying order before
# as_of; x = occasions - 1, t_x = last - first day, T = day of the last instant before as_of -
# first day, mbar = mean value of the occasions after the first (0 without any).
CLV_SUMMARY_FROM_HISTORY = """
WITH occ AS (
    SELECT customer_id, (placed_at AT TIME ZONE 'UTC')::date AS d, sum(shop_total - shop_refunded) AS v
    FROM orders WHERE tenant_id = $T AND status NOT IN ('cancelled', 'refunded') AND NOT test
      AND NOT (shop_total > 0 AND shop_refunded >= shop_total) AND placed_at < :'v1'::timestamptz
    GROUP BY 1, 2),
firsts AS (SELECT customer_id, min(d) AS f FROM occ GROUP BY 1)
SELECT o.customer_id, count(*) - 1, max(d) - f.f,
       ((:'v1'::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date - f.f,
       round(coalesce(avg(v) FILTER (WHERE d > f.f), 0), 6)
FROM occ o JOIN firsts f USING (customer_id) GROUP BY o.customer_id, f.f ORDER BY 1"""


class RandomHistory:
    """A seeded random history: new orders (many on a day their customer already bought on, at
    another hour), later states of them (refunded, partly refunded, moved to another customer,
    re-dated) and events (visits, reviews, NPS scores, referrals)."""

    def __init__(self, rnd, customers, prefix="m"):
        self.rnd, self.customers, self.prefix = rnd, customers, prefix
        self.orders = {}          # order_id -> last posted state
        self.n_events = 0

    def day(self, d):
        return f"2026-{1 + d // 28:02d}-{1 + d % 28:02d}T{self.rnd.randrange(24):02d}:00:00Z"

    def new_order(self):
        rnd = self.rnd
        oid = f"{self.prefix}o{len(self.orders)}"
        total = rnd.randrange(0, 20000)
        who = rnd.choice(self.customers)
        placed = self.day(rnd.randrange(90))
        theirs = [o["placed_at"] for o in self.orders.values() if o["customer_id"] == who]
        if theirs and rnd.random() < 0.4:     # another order on a day the customer bought
            placed = f"{rnd.choice(theirs)[:10]}T{rnd.randrange(24):02d}:30:00Z"
        o = {"order_id": oid, "customer_id": who, "placed_at": placed,
             "updated_at": "2026-11-01T00:00:00Z", "total": f"{total / 100:.2f}",
             "status": rnd.choice(["paid"] * 8 + ["cancelled", "fulfilled"])}
        self.orders[oid] = o
        return o

    def changed_order(self):
        rnd = self.rnd
        o = dict(self.orders[rnd.choice(list(self.orders))])
        o["updated_at"] = f"2026-11-{2 + len(self.orders) % 27:02d}T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:00Z"
        change = rnd.randrange(4)
        if change == 0:
            o["status"] = "refunded"
        elif change == 1:
            total = float(o["total"])
            o["refunded"] = f"{rnd.choice([total, total / 2]):.2f}"
        elif change == 2:
            o["customer_id"] = rnd.choice(self.customers)      # moved to another customer
        else:
            o["placed_at"] = self.day(rnd.randrange(90))
        self.orders[o["order_id"]] = o
        return o

    def new_event(self):
        rnd = self.rnd
        self.n_events += 1
        kind = rnd.choice(["visit", "visit", "review", "nps", "referral"])
        who = rnd.choice(self.customers)
        e = {"event_id": f"{self.prefix}e{self.n_events}", "customer_id": who, "type": kind,
             "occurred_at": self.day(rnd.randrange(300))}
        if kind == "review":
            e["properties"] = {"rating": rnd.randint(1, 5)}
        elif kind == "nps":
            e["properties"] = {"score": rnd.randint(0, 10)}
        elif kind == "referral":
            e["properties"] = {"referred_customer_id": rnd.choice([c for c in self.customers if c != who])}
        return e

    def item(self):
        pick = self.rnd.random()
        if pick < 0.55 or not self.orders:
            return {"kind": "order", **self.new_order()}
        if pick < 0.75:
            return {"kind": "order", **self.changed_order()}
        return {"kind": "event", **self.new_event()}


class RollupMatchesHistory(Base):
    """New orders and events are added to the stored rollup as deltas; changed orders, referrals
    and new orders on a day between a customer's first and last order days recompute it. After a
    seeded random mix of both, through singles and batches, every customer's rollup (with the
    purchase days and first day's value that predictive CLV reads) must equal the one recomputed
    from the history. Many new orders fall on a day the customer already bought on, at another hour."""

    def test_random_mix_of_new_changed_and_moved_orders_events_and_referrals(self):
        import random
        rnd = random.Random(20261123)
        mix = RandomHistory(rnd, [f"m{i}" for i in range(25)])

        for round_ in range(12):
            items = []
            for _ in range(rnd.randrange(1, 40)):
                items.append(mix.item())
            if round_ % 3 == 2:   # the same records one request at a time
                for it in items:
                    kind = it.pop("kind")
                    r = server.post("/v1/orders" if kind == "order" else "/v1/events", it, self.key)
                    self.assertLess(r.status, 300, r)
            else:
                r = server.post("/v1/batch", items, self.key)
                self.assertEqual((r.status, r.json["rejected"]), (200, 0), r)

        expected = pg.sql(ROLLUP_FROM_HISTORY.replace("$T", self.tid))
        stored = pg.sql(ROLLUP_STORED.replace("$T", self.tid))
        self.assertGreaterEqual(len(expected), 20)
        self.assertEqual(stored, expected)
        # predictive CLV's per-customer summary, from the rollup (as_of after every order) and
        # from the orders (as_of in the middle of the history), against occasions grouped here
        for as_of in ("2027-01-01T00:00:00Z", "2026-02-15T00:00:00Z", "2026-02-15T12:00:00Z"):
            expected = pg.sql(CLV_SUMMARY_FROM_HISTORY.replace("$T", self.tid), as_of)
            got = pg.sql("SELECT customer_id, x, t_x, \"T\", round(mbar::numeric, 6)"
                         " FROM rd_clv_sample($T, :'v1') ORDER BY 1".replace("$T", self.tid), as_of)
            self.assertGreaterEqual(len(expected), 10, as_of)
            self.assertEqual(got, expected, as_of)
        # and the rungs follow from those rollups
        self.assertEqual(self.q("SELECT count(*) FROM customers WHERE tenant_id = $T AND stage <> CASE"
                                " WHEN order_count >= 1 AND last_advocacy_at > now() - interval '365 days'"
                                " THEN 'advocate' WHEN order_count >= 2 THEN 'client'"
                                " WHEN order_count = 1 THEN 'customer' WHEN event_count > 0 THEN 'prospect'"
                                " ELSE 'suspect' END"), "0")


def metric(name, srv=None):
    for line in (srv or server).get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def merged_total():
    return metric("retentiond_records_merged_total")


class BulkLoads(Base):
    """Past its first chunk of 5 000 records a batch or an import is a bulk load: each chunk
    commits its orders with their customers marked pending, and the rollups are brought
    current once, before the reply. A load cut short leaves its pending customers to the
    background upkeep. Whichever way, every rollup ends equal to the one recomputed from the
    history, and nothing stays pending."""

    def history(self, seed, n, prefix):
        import random
        mix = RandomHistory(random.Random(seed), [f"{prefix}{i}" for i in range(300)], prefix)
        return [mix.item() for _ in range(n)]

    def assert_rollups_match_history(self):
        expected = pg.sql(ROLLUP_FROM_HISTORY.replace("$T", self.tid))
        stored = pg.sql(ROLLUP_STORED.replace("$T", self.tid))
        self.assertGreaterEqual(len(expected), 250)
        self.assertEqual(stored, expected)
        self.assertEqual(self.q("SELECT count(*) FROM rollup_pending WHERE tenant_id = $T"), "0")
        self.assertEqual(self.q("SELECT count(*) FROM customers WHERE tenant_id = $T AND stage <> CASE"
                                " WHEN order_count >= 1 AND last_advocacy_at > now() - interval '365 days'"
                                " THEN 'advocate' WHEN order_count >= 2 THEN 'client'"
                                " WHEN order_count = 1 THEN 'customer' WHEN event_count > 0 THEN 'prospect'"
                                " ELSE 'suspect' END"), "0")

    def test_batch_of_several_chunks(self):
        self.check_batch(8000, 8001)

    def test_batch_of_whole_chunks(self):
        # the last line arrives alone and fills the second chunk, so the end of the body finds
        # nothing left to write but the flush
        self.check_batch(10000, 8004, last_alone=True)

    def check_batch(self, n, seed, last_alone=False):
        import socket
        import time
        items = self.history(seed, n, "b")
        # a few of its customers have a rollup before the load
        for it in items[:30]:
            if it["kind"] == "order":
                it = {k: v for k, v in it.items() if k != "kind"}
                self.assertLess(server.post("/v1/orders", it, self.key).status, 300)
        before = metric("retentiond_rollups_flushed_total")
        body = "".join(json.dumps(it) + "\n" for it in items).encode()
        if not last_alone:
            r = server.post("/v1/batch", body, self.key, content_type="application/x-ndjson", timeout=600)
            reply = (r.status, r.json)
        else:
            # lines 1-5 000 (a chunk exactly), 5 001-9 999, then the last one, each part given
            # time to be read, so the set holds exactly 5 000 records after the last line
            ends = [i + 1 for i, b in enumerate(body) if b == 10]
            parts = [body[:ends[4999]], body[ends[4999]:ends[-2]], body[ends[-2]:]]
            with socket.create_connection(("127.0.0.1", server.port), timeout=600) as sock:
                sock.sendall((f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
                              "Content-Type: application/x-ndjson\r\nConnection: close\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n").encode())
                for part in parts:
                    sock.sendall(part)
                    time.sleep(1)
                raw = b"".join(iter(lambda: sock.recv(65536), b""))
            head, _, payload = raw.partition(b"\r\n\r\n")
            reply = (int(head.split()[1]), json.loads(payload))
        self.assertEqual((reply[0], reply[1]["lines"], reply[1]["rejected"]), (200, n, 0), reply)
        self.assert_rollups_match_history()
        ordering = {it["customer_id"] for it in items if it["kind"] == "order"}
        self.assertGreaterEqual(metric("retentiond_rollups_flushed_total") - before, len(ordering))

    def test_import_of_several_chunks(self):
        import os
        import tempfile
        path = os.path.join(tempfile.mkdtemp(), "history.ndjson")
        with open(path, "w") as f:
            f.writelines(json.dumps(it) + "\n" for it in self.history(8002, 7000, "i"))
        out = server.cli("import", path, "--tenant", self.tenant)
        self.assertIn("rollups current", out.stderr)
        self.assert_rollups_match_history()

    def test_load_cut_short_is_swept_by_the_upkeep(self):
        import signal
        import socket
        import time
        first = Server(pg).start()          # default upkeep: nothing swept for minutes
        try:
            self.tenant, self.key = first.tenant()
            self.tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", self.tenant)
            body = "".join(json.dumps(it) + "\n" for it in self.history(8003, 7000, "k")).encode()
            sent = body[:body.index(b"\n", len(body) * 6 // 7) + 1]   # 6 000 lines: one chunk
            sock = socket.create_connection(("127.0.0.1", first.port))
            sock.sendall((f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
                          f"Content-Type: application/x-ndjson\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                         + sent)
            deadline = time.time() + 300
            while self.q("SELECT count(*) FROM rollup_pending WHERE tenant_id = $T") == "0":
                self.assertLess(time.time(), deadline, "the first chunk was never committed")
                time.sleep(0.2)
            # committed orders whose customers' rollups are not current yet
            self.assertLess(int(self.q("SELECT coalesce(sum(order_count), 0) FROM customers WHERE tenant_id = $T")),
                            int(self.q("SELECT count(*) FROM orders WHERE tenant_id = $T AND qualifying")))
            first.stop(signal.SIGKILL)
            sock.close()
        finally:
            first.stop()
        second = Server(pg, UPKEEP_INTERVAL=1, ROLLUP_SWEEP_AFTER=1).start()
        try:
            deadline = time.time() + 300
            while self.q("SELECT count(*) FROM rollup_pending WHERE tenant_id = $T") != "0":
                self.assertLess(time.time(), deadline, "the upkeep never swept the pending customers")
                time.sleep(0.2)
            self.assert_rollups_match_history()
            self.assertGreater(metric("retentiond_rollups_flushed_total", second), 0)
        finally:
            second.stop()


class MergedSingleOrders(Base):
    """Concurrent single orders share one ingest call per commit group, in rounds without a
    repeated customer or order. Each must still be ingested as if alone: a second, older order
    dates the customer's move to client at its own placed_at (a call of many would take the
    customer's latest order), two identical posts of one order answer created and duplicate
    (never "superseded"), and the rollup equals the history."""

    def burst(self, tag, customers):
        barrier = threading.Barrier(len(customers) + 8)
        replies = {}

        def post(key, body):
            barrier.wait()
            replies.setdefault(key, []).append(server.post("/v1/orders", body, self.key))

        threads = []
        for i, cid in enumerate(customers):
            # older than the customer's first order: the move to client is dated here
            threads.append((f"b-{cid}", order(f"{tag}-b-{cid}", cid, placed=f"2025-03-{1 + i % 28:02d}T08:00:00Z")))
        for j in range(4):   # one order posted twice at once, and a brand-new customer's order
            body = order(f"{tag}-twice-{j}", f"{tag}-new-{j}", placed="2026-02-01T00:00:00Z", total="7.00")
            threads.append((f"twice-{j}", body))
            threads.append((f"twice-{j}", dict(body)))
        ts = [threading.Thread(target=post, args=a) for a in threads]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return replies

    def test_concurrent_singles_are_each_ingested_as_if_alone(self):
        customers = [f"k{i}" for i in range(40)]
        for cid in customers:
            r = server.post("/v1/orders", order(f"a-{cid}", cid, placed="2026-06-01T12:00:00Z"), self.key)
            self.assertEqual(r.status, 201, r)
        merged_before = merged_total()
        # groups form only when requests queue up; repeat (with new customers) until some did
        for attempt in range(6):
            tag = f"t{attempt}"
            if attempt:
                customers = [f"{tag}-k{i}" for i in range(40)]
                for cid in customers:
                    server.post("/v1/orders", order(f"a-{cid}", cid, placed="2026-06-01T12:00:00Z"), self.key)
            replies = self.burst(tag, customers)
            for cid in customers:
                (r,) = replies[f"b-{cid}"]
                self.assertEqual((r.status, r.json["status"]), (201, "created"), r)
            for j in range(4):
                got = sorted((r.status, r.json["status"]) for r in replies[f"twice-{j}"])
                self.assertEqual(got, [(200, "duplicate"), (201, "created")])
            moves = pg.sql("SELECT customer_id, to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                           f" FROM stage_history WHERE tenant_id = {self.tid} AND to_stage = 'client'"
                           " AND customer_id = ANY(string_to_array(:'v1', ','))", ",".join(customers))
            self.assertEqual(sorted(moves), sorted([cid, f"2025-03-{1 + i % 28:02d}T08:00:00Z"]
                                                   for i, cid in enumerate(customers)))
            if merged_total() > merged_before:
                break
        self.assertGreater(merged_total(), merged_before, "no commit group ever merged its orders")
        self.assertEqual(pg.sql(ROLLUP_STORED.replace("$T", self.tid)),
                         pg.sql(ROLLUP_FROM_HISTORY.replace("$T", self.tid)))


class MergedSingleEvents(Base):
    """Concurrent single events are merged as orders are: a review older than the customer's
    last order dates the move to advocate at its own occurred_at (a call of many would take the
    customer's latest activity), an event posted twice at once answers created and duplicate,
    and a referral in the same burst (never merged) still does its work."""

    def test_concurrent_events_are_each_ingested_as_if_alone(self):
        merged_before = merged_total()
        for attempt in range(6):
            tag = f"e{attempt}"
            customers = [f"{tag}-k{i}" for i in range(40)]
            for cid in customers:
                r = server.post("/v1/orders", order(f"a-{cid}", cid, placed="2026-06-01T12:00:00Z"), self.key)
                self.assertEqual(r.status, 201, r)
            work = [(cid, {"event_id": f"{tag}-rv-{cid}", "customer_id": cid, "type": "review",
                           "occurred_at": f"2026-05-{1 + i % 28:02d}T08:00:00Z", "properties": {"rating": 5}})
                    for i, cid in enumerate(customers)]
            twice = {"event_id": f"{tag}-visit", "customer_id": f"{tag}-visitor", "type": "visit",
                     "occurred_at": "2026-05-01T00:00:00Z"}
            work += [("twice", twice), ("twice", dict(twice))]
            work.append(("referral", {"event_id": f"{tag}-ref", "customer_id": customers[0], "type": "referral",
                                      "occurred_at": "2026-05-02T00:00:00Z",
                                      "properties": {"referred_customer_id": f"{tag}-friend"}}))
            barrier = threading.Barrier(len(work))
            replies = {}

            def post(key, body):
                barrier.wait()
                replies.setdefault(key, []).append(server.post("/v1/events", body, self.key))

            ts = [threading.Thread(target=post, args=w) for w in work]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            for cid in customers:
                (r,) = replies[cid]
                self.assertEqual((r.status, r.json["status"]), (201, "created"), r)
            self.assertEqual(sorted((r.status, r.json["status"]) for r in replies["twice"]),
                             [(200, "duplicate"), (201, "created")])
            self.assertEqual(replies["referral"][0].status, 201)
            self.assertEqual(self.q(f"SELECT referred_by FROM customers WHERE tenant_id = $T AND customer_id = '{tag}-friend'"),
                             customers[0])
            moves = pg.sql("SELECT customer_id, to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                           f" FROM stage_history WHERE tenant_id = {self.tid} AND to_stage = 'advocate'"
                           " AND customer_id = ANY(string_to_array(:'v1', ','))", ",".join(customers))
            self.assertEqual(sorted(moves), sorted([cid, f"2026-05-{1 + i % 28:02d}T08:00:00Z"]
                                                   for i, cid in enumerate(customers)))
            if merged_total() > merged_before:
                break
        self.assertGreater(merged_total(), merged_before, "no commit group ever merged its events")
        self.assertEqual(pg.sql(ROLLUP_STORED.replace("$T", self.tid)),
                         pg.sql(ROLLUP_FROM_HISTORY.replace("$T", self.tid)))


if __name__ == "__main__":
    unittest.main()
