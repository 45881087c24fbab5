"""The ladder and the customer list (sql/ladder.sql, sql/customers.sql) through HTTP, on a generated shop with
advocates, customers without orders and many ties, against plain SQL written here:

* rungs from the raw orders and events by the ladder's rule (SPEC §4, applied as the endpoint
  always has: the customer's current order count and latest advocacy signal, at
  least(to, now));
* transitions as a plain count of stage_history over [from, to), whatever part of it the
  daily aggregate holds: before and after compaction, after rung changes dated into days
  already compacted (late orders, events, a bulk backfill, by hand), at mid-day edges;
* list pages walked through next_cursor, concatenated, against ORDER BY over the raw rows.

Dates are relative to now, so that "days already compacted" exist whenever this runs."""
import datetime
import json
import random
import subprocess
import time
import unittest

from harness import Postgres, Server

pg = server = None

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
START = (NOW - datetime.timedelta(days=730)).replace(hour=0, minute=0, second=0)

# qualifying, from the raw columns
Q = ("o.status NOT IN ('cancelled','refunded') AND NOT o.test"
     " AND NOT (o.shop_total > 0 AND o.shop_refunded >= o.shop_total)")


def ts(days, hour=12, minute=0, second=0):
    t = START + datetime.timedelta(days=days, hours=hour, minutes=minute, seconds=second)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def setUpModule():
    global pg, server
    pg = Postgres().start()
    # the upkeep is off: these tests compact when they mean to (one test starts its own)
    server = Server(pg, UPKEEP_INTERVAL=0).start()


def tearDownModule():
    if server:
        server.stop()
    if pg:
        pg.destroy()


def generated_shop(seed, n_customers, prefix="c"):
    """NDJSON lines of a shop whose amounts and order times repeat (ties in every sort key),
    with customers who never order (some engaged) and free orders (customers with orders and no
    revenue, who tie with those without), refunds, cancellations, reviews and NPS answers around
    the advocacy thresholds; and a second list of referral events, to post once the customers
    they name exist."""
    rnd = random.Random(seed)
    lines, referrals, with_orders = [], [], []
    for i in range(n_customers):
        cid = f"{prefix}{i:05d}"
        kind = rnd.random()
        if kind < 0.08:                                   # known, nothing else: suspect
            lines.append({"kind": "customer", "customer_id": cid, "email": f"{cid}@example.com"})
        elif kind >= 0.15:                                # 7 % only engage: prospects
            # purchases as BG/NBD has them (so that the CLV fit behind p_alive converges): a
            # Poisson rate per customer, gamma-distributed, and a chance to drop out after each
            day, rate, drop = rnd.randint(0, 690), rnd.gammavariate(0.6, 1 / 15), rnd.betavariate(1, 3)
            days = [day]
            while rnd.random() >= drop:
                day += 1 + int(rnd.expovariate(rate))
                if day > 700:
                    break
                days.append(day)
            for k, day in enumerate(days):
                o = {"kind": "order", "order_id": f"{cid}-o{k}", "customer_id": cid,
                     "placed_at": ts(day),                            # all at noon: last orders tie
                     "total": rnd.choice(["0.00", "10.00", "25.00", "25.00", "49.90", "99.00"])}
                r = rnd.random()
                if r < 0.04:
                    o["status"] = "cancelled"
                elif r < 0.07:
                    o["status"], o["refunded"] = "refunded", o["total"]
                elif r < 0.12 and o["total"] != "0.00":
                    o["refunded"] = "5.00"
                elif r < 0.13:
                    o["test"] = True
                lines.append(o)
            with_orders.append(cid)
        if rnd.random() < 0.2 or 0.08 <= kind < 0.15:
            lines.append({"kind": "event", "event_id": f"{cid}-v", "customer_id": cid, "type": "visit",
                          "occurred_at": ts(rnd.randint(0, 720), 8)})
        if rnd.random() < 0.12:
            lines.append({"kind": "event", "event_id": f"{cid}-r", "customer_id": cid, "type": "review",
                          "occurred_at": ts(rnd.randint(0, 725), 9), "properties": {"rating": rnd.choice([5, 4, 3])}})
        if rnd.random() < 0.06:
            lines.append({"kind": "event", "event_id": f"{cid}-n", "customer_id": cid, "type": "nps",
                          "occurred_at": ts(rnd.randint(0, 725), 10), "properties": {"score": rnd.choice([10, 9, 6])}})
    rnd.shuffle(with_orders)
    for k in range(0, min(len(with_orders) - 1, 160), 2):    # each referred customer named once
        referrer, referred = with_orders[k], with_orders[k + 1]
        referrals.append({"kind": "event", "event_id": f"ref-{referred}", "customer_id": referrer, "type": "referral",
                          "occurred_at": ts(rnd.randint(0, 720), 11),
                          "properties": {"referred_customer_id": referred}})
    return lines, referrals


def post_ndjson(key, lines):
    return server.post_ndjson(key, lines)


def rungs_sql(tid, as_of):
    """A query of (customer_id, rung) at as_of from the raw rows (not the rollup): advocate = a
    qualifying order and the latest advocacy signal (review >= 4, NPS >= 9, a referred
    customer's first qualifying order) in (as_of - 365 days, as_of]; else by qualifying
    orders; else by any event."""
    return f"""
        WITH q AS (SELECT customer_id, placed_at FROM orders o WHERE tenant_id = {tid} AND {Q}),
        n AS (SELECT customer_id, count(*) AS n, min(placed_at) AS first FROM q GROUP BY 1),
        ev AS (SELECT customer_id, count(*) AS k,
                      max(occurred_at) FILTER (WHERE type = 'review' AND (properties->>'rating')::numeric >= 4) AS review_at,
                      max(occurred_at) FILTER (WHERE type = 'nps' AND (properties->>'score')::numeric >= 9) AS nps_at
               FROM events WHERE tenant_id = {tid} GROUP BY 1),
        ref AS (SELECT r.customer_id AS referrer, max(n.first) AS referral_at
                FROM events r JOIN n ON n.customer_id = r.properties->>'referred_customer_id'
                WHERE r.tenant_id = {tid} AND r.type = 'referral' AND r.customer_id <> n.customer_id GROUP BY 1),
        c AS (SELECT c.customer_id, coalesce(n.n, 0) AS n, ev.k IS NOT NULL AS engaged,
                     greatest(ev.review_at, ev.nps_at, ref.referral_at) AS adv
              FROM customers c LEFT JOIN n USING (customer_id) LEFT JOIN ev USING (customer_id)
              LEFT JOIN ref ON ref.referrer = c.customer_id
              WHERE c.tenant_id = {tid})
        SELECT customer_id,
               CASE WHEN n >= 1 AND adv <= '{as_of}'::timestamptz AND adv > '{as_of}'::timestamptz - interval '365 days'
                    THEN 'advocate' WHEN n >= 2 THEN 'client' WHEN n = 1 THEN 'customer'
                    WHEN engaged THEN 'prospect' ELSE 'suspect' END AS rung
        FROM c"""


def stages_sql(tid, as_of):
    """Customers per rung at as_of (rungs_sql)."""
    expected = dict.fromkeys(("suspect", "prospect", "customer", "client", "advocate"), 0)
    expected.update({k: int(v) for k, v in pg.sql(f"SELECT rung, count(*) FROM ({rungs_sql(tid, as_of)}) r GROUP BY 1")})
    return expected


def transitions_sql(tid, frm, to):
    """A plain count of the tenant's stage_history rows in [frm, to), in the report's order."""
    rows = pg.sql(f"""SELECT from_stage, to_stage, count(*) FROM stage_history
                      WHERE tenant_id = {tid} AND changed_at >= :'v1' AND changed_at < :'v2'
                      GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2""", frm, to)
    return [{"from": f, "to": t, "count": int(n)} for f, t, n in rows]


class Ladder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tenant, cls.key = server.tenant()
        cls.tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", cls.tenant)
        lines, referrals = generated_shop(16, 2600)
        assert len(lines) > 5000          # a bulk load: rollups deferred to its end, rung changes backdated
        post_ndjson(cls.key, lines)
        post_ndjson(cls.key, referrals)

    def ladder(self, frm, to):
        r = server.get(f"/v1/metrics/ladder?from={frm}&to={to}", self.key)
        self.assertEqual(r.status, 200, r)
        return {s["stage"]: s["count"] for s in r.json["stages"]}, r.json["transitions"]

    # periods with edges in the middle of days, whole days, today, one hour, nothing
    def periods(self):
        return [(ts(100, 13, 45), ts(400, 7)), (ts(100, 0), ts(101, 0)), (ts(250, 10), ts(250, 18)),
                (ts(-30, 0), (NOW + datetime.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")),
                (NOW.strftime("%Y-%m-%dT00:00:00Z"), (NOW + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")),
                (ts(300, 23, 59, 59), ts(301, 0, 0, 1))]

    def assert_transitions_exact(self, label):
        for frm, to in self.periods():
            with self.subTest(label, frm=frm, to=to):
                _, got = self.ladder(frm, to)
                self.assertEqual(got, transitions_sql(self.tid, frm, to))

    def compact(self):
        return int(pg.scalar(f"SELECT rd_stage_history_compact({self.tid})"))

    def test_1_rungs_match_plain_sql(self):
        # one customer's latest advocacy signal, over 400 days old
        [[adv]] = pg.sql(f"""SELECT extract(epoch FROM min(occurred_at)) FROM events e
                             WHERE tenant_id = {self.tid} AND type = 'review' AND (properties->>'rating')::numeric >= 4
                               AND occurred_at < now() - interval '400 days'
                               AND occurred_at = (SELECT max(occurred_at) FROM events x WHERE x.tenant_id = e.tenant_id
                                                  AND x.customer_id = e.customer_id)
                               AND EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = e.tenant_id
                                           AND o.customer_id = e.customer_id AND {Q})""")
        adv = datetime.datetime.fromtimestamp(float(adv), datetime.timezone.utc)
        # now, two past instants, and the edges of one advocate's window: at its signal, one
        # second before and exactly at 365 days after it
        tos = [NOW - datetime.timedelta(seconds=1), START + datetime.timedelta(days=400, hours=6),
               START + datetime.timedelta(days=200), adv, adv + datetime.timedelta(days=365, seconds=-1),
               adv + datetime.timedelta(days=365)]
        for to in tos:
            to_s = to.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            with self.subTest(to=to_s):
                got, _ = self.ladder("2000-01-01", to_s)
                expected = stages_sql(self.tid, to_s)
                self.assertEqual(got, expected)
        # the shop has every rung, and the edges above change the count of advocates
        self.assertTrue(all(stages_sql(self.tid, tos[0].strftime("%Y-%m-%dT%H:%M:%SZ")).values()))
        at_edge = [stages_sql(self.tid, t.strftime("%Y-%m-%dT%H:%M:%SZ"))["advocate"] for t in tos[4:]]
        self.assertGreater(at_edge[0], at_edge[1])

    def test_2_transitions_exact_before_during_and_after_compaction(self):
        # no mark yet: everything is read from stage_history
        self.assertIsNone(pg.scalar(f"SELECT through FROM stage_history_compacted WHERE tenant_id = {self.tid}"))
        self.assert_transitions_exact("never compacted")
        self.assertGreaterEqual(self.compact(), 1)
        self.assertEqual(pg.scalar(f"SELECT through = (now() AT TIME ZONE 'UTC')::date FROM stage_history_compacted"
                                   f" WHERE tenant_id = {self.tid}"), "t")
        self.assertGreater(int(pg.scalar(f"SELECT count(*) FROM stage_history_days WHERE tenant_id = {self.tid}")), 100)
        self.assert_transitions_exact("compacted")

        # rung changes dated into compacted days: a late second order (customer -> client, dated
        # when placed), a late review (-> advocate), a cancellation dated by its update, and a
        # bulk backfill of new customers (dated by each one's latest activity)
        [[one]] = pg.sql(f"SELECT min(customer_id) FROM customers WHERE tenant_id = {self.tid} AND order_count = 1")
        [[two]] = pg.sql(f"SELECT max(customer_id) FROM customers WHERE tenant_id = {self.tid} AND order_count = 1")
        r = server.post("/v1/orders", {"order_id": "late-1", "customer_id": one, "placed_at": ts(100, 15, 30),
                                       "total": "30.00"}, self.key)
        self.assertIn(r.status, (200, 201), r)
        r = server.post("/v1/events", {"event_id": "late-rv", "customer_id": two, "type": "review",
                                       "occurred_at": ts(600, 16), "properties": {"rating": 5}}, self.key)
        self.assertIn(r.status, (200, 201), r)
        [[oid, placed]] = pg.sql(f"""SELECT o.order_id, to_char(o.placed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                                     FROM orders o JOIN customers c USING (tenant_id, customer_id)
                                     WHERE o.tenant_id = {self.tid} AND c.order_count = 2 AND {Q}
                                       AND o.placed_at < '{ts(250, 0)}' AND o.updated_at < '{ts(250, 0)}'
                                     ORDER BY o.order_id LIMIT 1""")
        r = server.post("/v1/orders", {"order_id": oid, "customer_id": pg.scalar(
            f"SELECT customer_id FROM orders WHERE tenant_id = {self.tid} AND order_id = :'v1'", oid),
            "placed_at": placed, "total": "10.00", "status": "cancelled", "updated_at": ts(250, 14)}, self.key)
        self.assertIn(r.status, (200, 201), r)
        lines, _ = generated_shop(17, 2300, prefix="b")
        post_ndjson(self.key, lines)
        self.assert_transitions_exact("late changes, not folded")
        # (the changes above did go to days already compacted)
        self.assertGreater(int(pg.scalar(f"SELECT count(*) FROM stage_history_late WHERE tenant_id = {self.tid}")), 100)
        self.assertGreaterEqual(self.compact(), 0)          # the same day: the deltas are folded only
        self.assert_transitions_exact("late changes folded")
        self.assertEqual(pg.scalar(f"SELECT count(*) FROM stage_history_late WHERE tenant_id = {self.tid}"), "0")

        # whatever removes or moves rows (nothing in the service does) keeps it exact as well
        pg.sql(f"""DELETE FROM stage_history WHERE tenant_id = {self.tid} AND changed_at >= '{ts(100, 0)}'
                     AND changed_at < '{ts(130, 0)}' AND to_stage = 'client'""")
        pg.sql(f"""UPDATE stage_history SET changed_at = changed_at + interval '3 days 5 hours'
                   WHERE tenant_id = {self.tid} AND changed_at >= '{ts(240, 0)}' AND changed_at < '{ts(260, 0)}'""")
        self.assert_transitions_exact("rows deleted and moved")
        self.compact()
        self.assert_transitions_exact("rows deleted and moved, folded")
        # the rungs are still right after all this
        got, _ = self.ladder("2000-01-01", NOW.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.assertEqual(got, stages_sql(self.tid, NOW.strftime("%Y-%m-%dT%H:%M:%SZ")))

    def test_3_compaction_waits_for_writers_of_older_days(self):
        """A transaction writing a rung change dated in a day that is about to be compacted holds
        the compaction off until it commits; the day then counts it."""
        tenant, key = server.tenant()
        tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", tenant)
        post_ndjson(key, [{"kind": "order", "order_id": f"w{i}", "customer_id": f"w{i % 40}", "placed_at": ts(i, 9),
                           "total": "12.00"} for i in range(100)])
        writer = subprocess.Popen(["psql", pg.url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            writer.stdin.write(f"""BEGIN;
                INSERT INTO stage_history (tenant_id, customer_id, changed_at, from_stage, to_stage)
                VALUES ({tid}, 'w1', '{ts(50, 12)}', 'client', 'advocate');
                SELECT 'written';\n""")
            writer.stdin.flush()
            self.assertEqual(writer.stdout.readline().strip(), "written")
            t0 = time.monotonic()
            self.assertEqual(pg.scalar(f"SELECT rd_stage_history_compact({tid})"), "-1")   # held off
            self.assertGreaterEqual(time.monotonic() - t0, 0.5)
            writer.stdin.write("COMMIT;\nSELECT 'committed';\n")
            writer.stdin.flush()
            self.assertEqual(writer.stdout.readline().strip(), "committed")
        finally:
            writer.stdin.close()
            writer.wait(30)
            writer.stdout.close()
        self.assertEqual(pg.scalar(f"SELECT rd_stage_history_compact({tid})"), "1")
        frm, to = ts(-1, 0), NOW.strftime("%Y-%m-%dT00:00:00Z")
        r = server.get(f"/v1/metrics/ladder?from={frm}&to={to}", key)
        self.assertEqual(r.json["transitions"], transitions_sql(tid, frm, to))
        self.assertIn({"from": "client", "to": "advocate", "count": 1}, r.json["transitions"])


class UpkeepCompacts(unittest.TestCase):
    def test_the_upkeep_compacts_every_tenant(self):
        tenant, key = server.tenant()
        tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", tenant)
        post_ndjson(key, [{"kind": "order", "order_id": f"u{i}", "customer_id": f"u{i % 30}", "placed_at": ts(3 * i, 9),
                           "total": "12.00"} for i in range(90)])
        second = Server(pg, UPKEEP_INTERVAL=1).start()
        try:
            deadline = time.time() + 30
            while time.time() < deadline and pg.scalar(
                    f"SELECT count(*) FROM stage_history_compacted WHERE tenant_id = {tid}") == "0":
                time.sleep(0.2)
        finally:
            self.assertEqual(second.stop(), 0)
        self.assertEqual(pg.scalar(f"SELECT through = (now() AT TIME ZONE 'UTC')::date FROM stage_history_compacted"
                                   f" WHERE tenant_id = {tid}"), "t")
        self.assertEqual(pg.scalar(f"SELECT sum(n) FROM stage_history_days WHERE tenant_id = {tid}"),
                         pg.scalar(f"SELECT count(*) FROM stage_history WHERE tenant_id = {tid}"
                                   f" AND changed_at < (now() AT TIME ZONE 'UTC')::date::timestamp AT TIME ZONE 'UTC'"))
        frm, to = ts(10, 7), ts(200, 19)
        r = server.get(f"/v1/metrics/ladder?from={frm}&to={to}", key)
        self.assertEqual(r.json["transitions"], transitions_sql(tid, frm, to))


# today's start: with the shop's dates relative to it, the CLV fit sees the same data every run
AS_OF = (START + datetime.timedelta(days=730)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Lists(unittest.TestCase):
    """Every page through next_cursor, concatenated, is the whole order of a plain ORDER BY over
    the raw rows: the key descending, customers without one last, ties by customer_id
    descending (customer_id ascending for sort=customer_id)."""

    @classmethod
    def setUpClass(cls):
        cls.tenant, cls.key = server.tenant()
        cls.tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", cls.tenant)
        lines, referrals = generated_shop(23, 2400, prefix="k")
        post_ndjson(cls.key, lines)
        post_ndjson(cls.key, referrals)
        r = server.post(f"/v1/models/clv/fit?as_of={AS_OF}", {}, cls.key)
        assert r.status in (200, 201), r
        # after the fit, 30 one-order customers lose their order: customers without orders
        # that still have a prediction row
        rows = pg.sql(f"""SELECT o.order_id, o.customer_id, o.total,
                                 to_char(o.placed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                          FROM orders o JOIN customers c USING (tenant_id, customer_id)
                          WHERE o.tenant_id = {cls.tid} AND c.order_count = 1 AND {Q}
                            AND o.updated_at < '{ts(729, 0)}'
                          ORDER BY o.customer_id LIMIT 30""")
        assert len(rows) == 30, rows
        for oid, cid, total, placed in rows:
            r = server.post("/v1/orders", {"order_id": oid, "customer_id": cid, "placed_at": placed, "total": total,
                                           "status": "cancelled", "updated_at": ts(729, 12)}, cls.key)
            assert r.status in (200, 201), r
        assert pg.scalar(f"""SELECT count(*) FROM customers c JOIN customer_predictions p USING (tenant_id, customer_id)
                              WHERE c.tenant_id = {cls.tid} AND c.order_count = 0""") == "30"
        pg.sql("ANALYZE")

    def walk(self, query, limit):
        ids, cursor, pages = [], None, 0
        customers = int(pg.scalar(f"SELECT count(*) FROM customers WHERE tenant_id = {self.tid}"))
        while pages <= customers // limit + 1:    # a page more than it takes: a cursor that repeats fails
            r = server.get(f"/v1/customers?{query}&limit={limit}&as_of={AS_OF}"
                           + (f"&cursor={cursor}" if cursor else ""), self.key)
            self.assertEqual(r.status, 200, r)
            ids += [c["customer_id"] for c in r.json["customers"]]
            pages += 1
            cursor = r.json["next_cursor"]
            if cursor is None:
                return ids, pages
            self.assertEqual(r.json["count"], limit)
        self.fail(f"{query}: still a next page after {pages} pages of {limit} for {customers} customers")

    def expected(self, key, where="true", ascending_id=False):
        order = "c.customer_id" if ascending_id else f"{key} DESC NULLS LAST, c.customer_id DESC"
        return [r[0] for r in pg.sql(f"""
            WITH a AS (SELECT customer_id, count(*) AS n, sum(shop_total - shop_refunded) AS rev,
                              min(placed_at) AS first, max(placed_at) AS last
                       FROM orders o WHERE tenant_id = {self.tid} AND {Q} GROUP BY 1),
            x AS (SELECT c.customer_id, coalesce(a.n, 0) AS n, coalesce(a.rev, 0) AS rev, a.first, a.last,
                         p.p_alive, p.predicted_clv
                  FROM customers c LEFT JOIN a USING (customer_id)
                  LEFT JOIN customer_predictions p ON p.tenant_id = c.tenant_id AND p.customer_id = c.customer_id
                  WHERE c.tenant_id = {self.tid}),
            s AS (SELECT x.*, CASE WHEN n = 0 THEN NULL
                                   WHEN last < '{AS_OF}'::timestamptz - interval '365 days' THEN 'lapsed'
                                   WHEN p_alive < 0.5 THEN 'at_risk'
                                   WHEN n >= 2 AND extract(epoch FROM '{AS_OF}'::timestamptz - last)
                                        > 1.5 * extract(epoch FROM last - first) / (n - 1) THEN 'at_risk'
                                   ELSE 'active' END AS status FROM x)
            SELECT customer_id FROM s c WHERE {where} ORDER BY {order}""")]

    def test_unfiltered_sorts_page_through_the_whole_order(self):
        ties = pg.sql(f"""SELECT (SELECT count(*) - count(DISTINCT net_revenue) FROM customers WHERE tenant_id = {self.tid}),
                                 (SELECT count(*) - count(DISTINCT last_order_at) FROM customers WHERE tenant_id = {self.tid}),
                                 (SELECT count(*) FROM customers WHERE tenant_id = {self.tid} AND order_count = 0),
                                 (SELECT count(*) FROM customers WHERE tenant_id = {self.tid} AND order_count > 0
                                    AND net_revenue = 0),
                                 (SELECT count(*) - count(DISTINCT p_alive) FROM customer_predictions WHERE tenant_id = {self.tid})""")[0]
        # ties abound, customers without orders too, and some with orders tie with them at 0
        self.assertTrue(all(int(n) > 20 for n in ties), ties)
        for sort, key in (("net_revenue", "rev"), ("order_count", "n"), ("last_order_at", "last"),
                          ("p_alive", "p_alive"), ("predicted_clv", "predicted_clv")):
            expected = self.expected(key)
            for limit in (7, 500):
                with self.subTest(sort=sort, limit=limit):
                    got, pages = self.walk(f"sort={sort}", limit)
                    self.assertEqual(got, expected)
                    self.assertEqual(pages, len(expected) // limit + 1)
        with self.subTest(sort="customer_id"):
            self.assertEqual(self.walk("sort=customer_id", 333)[0], self.expected(None, ascending_id=True))

    def test_filtered_lists_page_through_the_whole_order(self):
        # pages come from a walk in the list's order, or from the scan when the walk finds few
        # (status=lapsed sorted by last order: they come last); both must give the same order
        for query, key, where in (("status=at_risk&sort=net_revenue", "rev", "status = 'at_risk'"),
                                  ("status=lapsed&sort=last_order_at", "last", "status = 'lapsed'"),
                                  ("status=active&sort=predicted_clv", "predicted_clv", "status = 'active'"),
                                  ("status=at_risk&sort=customer_id", None, "status = 'at_risk'"),
                                  ("min_p_alive=0.6&sort=p_alive", "p_alive", "p_alive >= 0.6"),
                                  ("min_p_alive=0.3&sort=order_count", "n", "p_alive >= 0.3")):
            with self.subTest(query=query):
                expected = self.expected(key, where, ascending_id=key is None)
                self.assertGreater(len(expected), 20)
                self.assertEqual(self.walk(query, 13)[0], expected)
        # by rung, the rungs computed from the raw rows; suspects and prospects (no orders) come
        # from customers_without_orders, except when sorted by a prediction
        for stage, sort, key in (("client", "net_revenue", "rev"), ("prospect", "net_revenue", "rev"),
                                 ("advocate", "net_revenue", "rev"), ("customer", "p_alive", "p_alive"),
                                 ("suspect", "last_order_at", "last"), ("suspect", "order_count", "n"),
                                 ("prospect", "predicted_clv", "predicted_clv")):
            with self.subTest(stage=stage, sort=sort):
                expected = self.expected(key, f"customer_id IN (SELECT customer_id FROM ({rungs_sql(self.tid, AS_OF)}) r"
                                              f" WHERE rung = '{stage}')")
                self.assertGreater(len(expected), 20)
                self.assertEqual(self.walk(f"stage={stage}&sort={sort}", 17)[0], expected)
        # a page of one (every page is a walk's first chunk ending in the customer before it)
        # and pages larger than the first chunk
        for query, key, where, limit in (("status=at_risk&sort=p_alive", "p_alive", "status = 'at_risk'", 1),
                                         ("min_p_alive=0.2&sort=net_revenue", "rev", "p_alive >= 0.2", 300)):
            with self.subTest(query=query, limit=limit):
                expected = self.expected(key, where)
                self.assertGreater(len(expected), 2 * limit)
                self.assertEqual(self.walk(query, limit)[0], expected)

    def test_page_rows_hold_the_raw_figures(self):
        r = server.get(f"/v1/customers?sort=net_revenue&limit=40&as_of={AS_OF}", self.key)
        rows = r.json["customers"]
        want = {cid: (int(n), float(rev)) for cid, n, rev in pg.sql(f"""
            SELECT customer_id, count(*), sum(shop_total - shop_refunded) FROM orders o
            WHERE tenant_id = {self.tid} AND {Q} GROUP BY 1""")}
        for row in rows:
            self.assertEqual((row["order_count"], row["net_revenue"]), want[row["customer_id"]])
            self.assertNotIn("sort_value", row)
        self.assertEqual(rows[0]["net_revenue"], max(v[1] for v in want.values()))

    def test_rows_filtered_by_segment_carry_their_scores(self):
        """With a segment filter, every row carries r, f, m (ntile(5) over the customers with
        orders, ties by id) and the segment of SPEC §4's R x F grid."""
        def grid(r, f):
            if r == 5 and f >= 4: return "champions"
            if r in (3, 4) and f >= 4: return "loyal"
            if r >= 4 and f in (2, 3): return "potential_loyalist"
            if r == 5 and f == 1: return "new"
            if r == 4 and f == 1: return "promising"
            if r == 3 and f == 3: return "need_attention"
            if r == 3 and f <= 2: return "about_to_sleep"
            if r <= 2 and f in (3, 4): return "at_risk"
            if r <= 2 and f == 5: return "cannot_lose_them"
            return "hibernating"
        scores = {cid: (int(r), int(f), int(m)) for cid, r, f, m in pg.sql(f"""
            WITH a AS (SELECT customer_id, count(*) AS n, sum(shop_total - shop_refunded) AS rev, max(placed_at) AS last
                       FROM orders o WHERE tenant_id = {self.tid} AND {Q} GROUP BY 1)
            SELECT customer_id, ntile(5) OVER (ORDER BY last, customer_id), ntile(5) OVER (ORDER BY n, customer_id),
                   ntile(5) OVER (ORDER BY rev, customer_id) FROM a""")}
        for segment in ("loyal", "hibernating", "at_risk"):
            with self.subTest(segment=segment):
                want = sorted(cid for cid, (r, f, _) in scores.items() if grid(r, f) == segment)
                r = server.get(f"/v1/customers?segment={segment}&sort=customer_id&limit=1000&as_of={AS_OF}", self.key)
                rows = r.json["customers"]
                self.assertGreater(len(want), 10)
                self.assertEqual([row["customer_id"] for row in rows], want)
                for row in rows:
                    self.assertEqual((row["rfm"]["r"], row["rfm"]["f"], row["rfm"]["m"], row["rfm"]["segment"]),
                                     (*scores[row["customer_id"]], segment))
        # without a segment filter no scores are computed
        r = server.get(f"/v1/customers?sort=net_revenue&limit=5&as_of={AS_OF}", self.key)
        self.assertEqual([row["rfm"] for row in r.json["customers"]], [None] * 5)

    def test_pages_stay_put_while_customers_arrive(self):
        """A page continues strictly after the previous one: a customer arriving above the cursor
        is not on later pages, one arriving below it is, in its place."""
        first, cursor = [], None
        for _ in range(3):
            r = server.get(f"/v1/customers?sort=net_revenue&limit=25&as_of={AS_OF}"
                           + (f"&cursor={cursor}" if cursor else ""), self.key)
            first += [c["customer_id"] for c in r.json["customers"]]
            cursor = r.json["next_cursor"]
        post_ndjson(self.key, [{"kind": "order", "order_id": "arrive-top", "customer_id": "arrive-top",
                                "placed_at": ts(700), "total": "100000.00"},
                               {"kind": "order", "order_id": "arrive-low", "customer_id": "arrive-low",
                                "placed_at": ts(700), "total": "0.50"}])
        rest = []
        while cursor:
            r = server.get(f"/v1/customers?sort=net_revenue&limit=500&as_of={AS_OF}&cursor={cursor}", self.key)
            rest += [c["customer_id"] for c in r.json["customers"]]
            cursor = r.json["next_cursor"]
        expected = self.expected("rev")
        self.assertEqual(expected[0], "arrive-top")
        self.assertEqual(first + rest, expected[1:])
        self.assertIn("arrive-low", rest)

    def test_cursors_not_ours_are_400(self):
        def cursor(key, cid="k00001"):
            return json.dumps([key, cid]).encode().hex()
        for sort, key in (("net_revenue", "abc"), ("net_revenue", 12.5), ("net_revenue", "1e99999"),
                          ("order_count", "1.5"), ("order_count", "99999999999"), ("last_order_at", "12345"),
                          ("last_order_at", "2026-02-30T00:00:00Z"), ("p_alive", "1e999"), ("p_alive", "0x1p3"),
                          ("predicted_clv", "inf"), ("net_revenue", "1\u00002")):
            with self.subTest(sort=sort, key=key):
                r = server.get(f"/v1/customers?sort={sort}&cursor={cursor(key)}", self.key)
                self.assertEqual(r.status, 400, r)
                self.assertEqual([e["field"] for e in r.json["errors"]], ["cursor"])
        # a null key is "no value": every customer has a revenue, so nothing follows it
        r = server.get(f"/v1/customers?sort=net_revenue&cursor={cursor(None)}", self.key)
        self.assertEqual((r.status, r.json["customers"]), (200, []))
        # a key of another sort that reads as this one's type is just a position
        r = server.get(f"/v1/customers?sort=order_count&limit=3&cursor={cursor('3', 'k01000')}", self.key)
        self.assertEqual([c["customer_id"] for c in r.json["customers"]],
                         self.expected("n", "n < 3 OR (n = 3 AND customer_id < 'k01000')")[:3])


if __name__ == "__main__":
    unittest.main()
