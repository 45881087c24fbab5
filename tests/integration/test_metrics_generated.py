"""A generated shop of thousands of customers: every endpoint's numbers against an
independent plain-SQL computation of the same definitions over the raw orders and events
(not the rollup, not the service's code).

The same checks run three times: with the summary, retention and cohorts computed from the
service's report snapshot (the default), from the tenant's rows streamed from PostgreSQL (a
server with REPORT_SNAPSHOT_MB=0), and after the shop changed in every way a report reads while
a snapshot was held (the snapshot must be brought current, customer by customer). Each run
also asks both servers the same reports, a 130-week series and a 120-month matrix among them,
and requires the same bytes."""
import datetime
import json
import random
import unittest

from harness import Postgres, Server

pg = server = sql_server = None
FROM, TO, W = "2025-07-01", "2026-01-01", 365

# qualifying, recomputed from raw columns
Q = ("o.status NOT IN ('cancelled','refunded') AND NOT o.test"
     " AND NOT (o.shop_total > 0 AND o.shop_refunded >= o.shop_total)")


def setUpModule():
    global pg, server, sql_server
    pg = Postgres().start()
    server = Server(pg).start()
    sql_server = Server(pg, REPORT_SNAPSHOT_MB=0).start()


def tearDownModule():
    for s in (server, sql_server):
        if s:
            s.stop()
    if pg:
        pg.destroy()


def counters(srv):
    """The report-snapshot counters of srv's /metrics."""
    out = {}
    for line in srv.get("/metrics").body.decode().splitlines():
        if line.startswith("retentiond_report_snapshot_"):
            name, value = line.split()
            out[name[len("retentiond_report_snapshot_"):]] = int(float(value))
    return out


def shop_lines(rnd, start, customers):
    lines = []
    for c in range(customers):
        n = rnd.choice([0, 1, 1, 1, 2, 2, 3, 5])
        first = rnd.randint(0, 730)
        for k in range(n):
            day = start + datetime.timedelta(days=min(760, first + rnd.randint(0, 200) * k))
            total = rnd.randint(100, 30000) / 100
            o = {"kind": "order", "order_id": f"o{c}-{k}", "customer_id": f"c{c}",
                 "placed_at": f"{day}T{rnd.randint(0, 23):02d}:00:00Z", "total": f"{total:.2f}"}
            r = rnd.random()
            if r < 0.04:
                o["status"] = "cancelled"
            elif r < 0.07:
                o["refunded"] = o["total"]
                o["status"] = "refunded"
            elif r < 0.12:
                o["refunded"] = f"{total / 3:.2f}"
            elif r < 0.13:
                o["test"] = True
            lines.append(o)
        if rnd.random() < 0.15:
            lines.append({"kind": "event", "event_id": f"v{c}", "customer_id": f"c{c}", "type": "visit",
                          "occurred_at": f"{start + datetime.timedelta(days=rnd.randint(0, 760))}T08:00:00Z"})
    return lines


class GeneratedShop(unittest.TestCase):
    """The reports from the service's snapshot of the shop."""

    @classmethod
    def setUpClass(cls):
        cls.srv = server
        cls.tenant, cls.key = server.tenant()
        cls.tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", cls.tenant)
        rnd = random.Random(20261123)
        lines = shop_lines(rnd, datetime.date(2024, 1, 1), 4000)
        body = "\n".join(json.dumps(x) for x in lines) + "\n"
        r = server.post("/v1/batch", body, cls.key, content_type="application/x-ndjson", timeout=600)
        assert r.status == 200 and r.json["rejected"] == 0, r
        pg.sql("ANALYZE")   # planner statistics for the plain-SQL references below

    def sql(self, query):
        for token, value in (("$FROM", f"'{FROM}'::timestamptz"), ("$TO", f"'{TO}'::timestamptz"),
                             ("$W", f"interval '{W} days'"), ("$Q", Q), ("$T", self.tid)):
            query = query.replace(token, value)
        return pg.sql(query)

    def test_summary_matches_plain_sql(self):
        [row] = self.sql("""
            WITH q AS (SELECT * FROM orders o WHERE tenant_id = $T AND $Q),
            s AS (SELECT DISTINCT customer_id FROM q WHERE placed_at >= $FROM - $W AND placed_at < $FROM),
            e AS (SELECT DISTINCT customer_id FROM q WHERE placed_at >= $TO - $W AND placed_at < $TO),
            f AS (SELECT customer_id, min(placed_at) AS first FROM q GROUP BY 1),
            p AS (SELECT customer_id, count(*) AS n, sum(shop_total - shop_refunded) AS rev FROM q
                  WHERE placed_at >= $FROM AND placed_at < $TO GROUP BY 1)
            SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM e),
                   (SELECT count(*) FROM f WHERE first >= $FROM AND first < $TO),
                   (SELECT count(*) FROM s WHERE customer_id NOT IN (SELECT customer_id FROM e)),
                   (SELECT count(*) FROM p JOIN f USING (customer_id) WHERE first < $FROM
                      AND customer_id NOT IN (SELECT customer_id FROM s)),
                   (SELECT count(*) FROM p), (SELECT count(*) FROM p WHERE n >= 2), (SELECT sum(n) FROM p),
                   (SELECT sum(rev) FROM p),
                   (SELECT count(*) FROM p JOIN f USING (customer_id) WHERE first < $FROM),
                   (SELECT sum(rev) FROM p JOIN f USING (customer_id) WHERE first < $FROM),
                   (SELECT sum(rev) FROM (SELECT rev FROM p ORDER BY rev DESC
                                          LIMIT (SELECT ceil(count(*) * 0.2) FROM p)) t)
        """)
        S, E, N, lost, react, ordering, repeat, orders = map(int, row[:8])
        revenue, returning, ret_rev, top20 = float(row[8]), int(row[9]), float(row[10]), float(row[11])
        r = self.srv.get(f"/v1/metrics/summary?from={FROM}&to={TO}&window={W}", self.key)
        self.assertEqual(r.status, 200, r)
        c, m = r.json["counts"], r.json["metrics"]
        self.assertGreater(S, 100)
        self.assertEqual((c["S"], c["E"], c["N"], c["lost"], c["reactivated"]), (S, E, N, lost, react))
        self.assertEqual((c["ordering"], c["repeat_ordering"], c["orders"], c["returning"]),
                         (ordering, repeat, orders, returning))
        self.assertAlmostEqual(c["revenue"], revenue, places=2)
        self.assertAlmostEqual(m["retention_rate"], (E - N) / S)
        self.assertAlmostEqual(m["churn_rate"], lost / S)
        self.assertAlmostEqual(m["repeat_purchase_rate"], repeat / ordering)
        self.assertAlmostEqual(m["average_order_value"], revenue / orders)
        self.assertAlmostEqual(m["returning_revenue_share"], ret_rev / revenue)
        self.assertAlmostEqual(m["top20_revenue_share"], top20 / revenue)

    def retention_expected(self, unit, frm, to, window):
        """Per period [ps, pe) of `unit` covering [frm, to): S, E, N, lost and the lifecycle
        split, each straight from its definition over the raw orders."""
        step = "3 months" if unit == "quarter" else f"1 {unit}"
        columns = ", ".join(f"coalesce(sum(c.n) FILTER (WHERE c.k = '{k}'), 0)" for k in
                            ("S", "E", "N", "lost", "returning", "resurrecting", "dormant"))
        return [tuple(r) for r in self.sql(f"""
            WITH q AS (SELECT customer_id, placed_at FROM orders o WHERE tenant_id = $T AND $Q),
            f AS (SELECT customer_id, min(placed_at) AS first FROM q GROUP BY 1),
            p AS (SELECT ps, ps + interval '{step}' AS pe FROM generate_series(
                      date_trunc('{unit}', '{frm}'::timestamptz), '{to}'::timestamptz - interval '1 microsecond',
                      interval '{step}') ps),
            act AS (SELECT p.ps, q.customer_id FROM p JOIN q ON q.placed_at >= p.ps - interval '{window} days'
                        AND q.placed_at < p.ps GROUP BY 1, 2),
            act_end AS (SELECT p.ps, q.customer_id FROM p JOIN q ON q.placed_at >= p.pe - interval '{window} days'
                        AND q.placed_at < p.pe GROUP BY 1, 2),
            ord AS (SELECT DISTINCT date_trunc('{unit}', placed_at) AS ps, customer_id FROM q),
            counts AS (
                SELECT ps, 'S' AS k, count(*) AS n FROM act GROUP BY 1
                UNION ALL SELECT ps, 'E', count(*) FROM act_end GROUP BY 1
                UNION ALL SELECT p.ps, 'N', count(*) FROM p JOIN f ON f.first >= p.ps AND f.first < p.pe GROUP BY 1
                UNION ALL SELECT a.ps, 'lost', count(*) FROM act a LEFT JOIN act_end e USING (ps, customer_id)
                          WHERE e.customer_id IS NULL GROUP BY 1
                UNION ALL SELECT a.ps, 'returning', count(*) FROM ord a JOIN ord b
                          ON b.customer_id = a.customer_id AND b.ps = a.ps - interval '{step}' GROUP BY 1
                UNION ALL SELECT a.ps, 'resurrecting', count(*) FROM ord a JOIN f USING (customer_id)
                          LEFT JOIN ord b ON b.customer_id = a.customer_id AND b.ps = a.ps - interval '{step}'
                          WHERE f.first < a.ps AND b.customer_id IS NULL GROUP BY 1
                UNION ALL SELECT b.ps + interval '{step}', 'dormant', count(*) FROM ord b
                          LEFT JOIN ord a ON a.customer_id = b.customer_id AND a.ps = b.ps + interval '{step}'
                          WHERE a.customer_id IS NULL GROUP BY 1)
            SELECT to_char(p.ps, 'YYYY-MM-DD'),
                   {columns}
            FROM p LEFT JOIN counts c USING (ps) GROUP BY p.ps ORDER BY p.ps""")]

    def test_retention_series_matches_plain_sql(self):
        # months, weeks with a short window, quarters, and two years of weeks (105 periods)
        for unit, frm, to, window in (("month", FROM, TO, W), ("week", FROM, TO, 30),
                                      ("quarter", "2024-01-01", "2026-01-01", 90),
                                      ("week", "2024-01-01", "2026-01-01", W)):
            with self.subTest(unit=unit, frm=frm, window=window):
                expected = self.retention_expected(unit, frm, to, window)
                r = self.srv.get(f"/v1/metrics/retention?period={unit}&from={frm}&to={to}&window={window}",
                               self.key)
                self.assertEqual(r.status, 200, r)
                got = [(x["period_start"][:10], x["S"], x["E"], x["N"], x["lost"], x["returning"],
                        x["resurrecting"], x["dormant"]) for x in r.json["series"]]
                self.assertEqual(got, [(d, *map(int, rest)) for d, *rest in expected])
                self.assertTrue(all(x["new"] == x["N"] for x in r.json["series"]))
                self.assertGreater(sum(x["S"] for x in r.json["series"]), 0)

    def test_130_week_series_matches_plain_sql(self):
        # weeks over two and a half years: beyond the 60 periods the SQL function's bit masks held
        frm, to = "2023-07-10", "2026-01-01"   # Mondays from 2023-07-10 to 2025-12-29
        expected = self.retention_expected("week", frm, to, W)
        r = self.srv.get(f"/v1/metrics/retention?period=week&from={frm}&to={to}&window={W}", self.key)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json["series"]), 130)
        got = [(x["period_start"][:10], x["S"], x["E"], x["N"], x["lost"], x["returning"],
                x["resurrecting"], x["dormant"]) for x in r.json["series"]]
        self.assertEqual(got, [(d, *map(int, rest)) for d, *rest in expected])

    def matrix_expected(self, frm, to):
        """Monthly cohorts of first qualifying orders in [frm, to): their sizes, and per cohort
        and month since the first, the members ordering, their net revenue and the members
        ordering for the last time; straight from the raw orders."""
        sizes = {c: int(n) for c, n in self.sql(f"""
            WITH q AS (SELECT customer_id, placed_at FROM orders o WHERE tenant_id = $T AND $Q)
            SELECT to_char(date_trunc('month', first), 'YYYY-MM'), count(*)
            FROM (SELECT customer_id, min(placed_at) AS first FROM q GROUP BY 1) f
            WHERE first >= '{frm}' AND first < '{to}' GROUP BY 1""")}
        rows = self.sql(f"""
            WITH q AS (SELECT customer_id, placed_at, shop_total - shop_refunded AS v FROM orders o
                       WHERE tenant_id = $T AND $Q),
            f AS (SELECT customer_id, date_trunc('month', min(placed_at)) AS cohort FROM q GROUP BY 1
                  HAVING min(placed_at) >= '{frm}' AND min(placed_at) < '{to}'),
            a AS (SELECT f.customer_id, f.cohort, q.v,
                         ((extract(year FROM q.placed_at) - extract(year FROM f.cohort)) * 12
                          + extract(month FROM q.placed_at) - extract(month FROM f.cohort))::int AS k
                  FROM f JOIN q USING (customer_id) WHERE q.placed_at < '{to}'),
            l AS (SELECT a.*, max(k) OVER (PARTITION BY customer_id) AS last_k FROM a)
            SELECT to_char(cohort, 'YYYY-MM'), k, count(DISTINCT customer_id), sum(v),
                   count(DISTINCT customer_id) FILTER (WHERE k = last_k)
            FROM l GROUP BY 1, 2""")
        # (cohort, month since) -> members ordering, their revenue, members ordering last then
        cells = {(c, int(k)): (int(active), float(revenue), int(last)) for c, k, active, revenue, last in rows}
        return sizes, cells

    def test_120_month_matrix_matches_plain_sql(self):
        frm, to = "2016-02-01", "2026-02-01"
        sizes, cells = self.matrix_expected(frm, to)
        r = self.srv.get(f"/v1/metrics/cohorts?period=month&from={frm}&to={to}", self.key)
        self.assertEqual(r.status, 200, r)
        cohorts = r.json["cohorts"]
        self.assertEqual({c["cohort"][:7]: c["size"] for c in cohorts}, sizes)
        self.assertGreater(len(cohorts), 20)
        for c in cohorts:
            month = c["cohort"][:7]
            since = (int(month[:4]) - 2016) * 12 + int(month[5:]) - 2   # months since 2016-02
            self.assertEqual(len(c["cells"]), 120 - since, month)
            cumulative = 0.0
            on_or_after = c["size"]   # members ordering in this month or later: none ordered earlier
            for cell in c["cells"]:
                active, revenue, last = cells.get((month, cell["period"]), (0, 0.0, 0))
                cumulative += revenue
                where = (month, cell["period"])
                self.assertEqual((cell["active"], cell["active_on_or_after"]), (active, on_or_after), where)
                self.assertAlmostEqual(cell["revenue"], revenue, places=2, msg=where)
                self.assertAlmostEqual(cell["share"], active / c["size"], msg=where)
                self.assertAlmostEqual(cell["share_on_or_after"], on_or_after / c["size"], msg=where)
                self.assertAlmostEqual(cell["cumulative_revenue_per_customer"], cumulative / c["size"], places=6,
                                       msg=where)
                on_or_after -= last

    def test_snapshot_and_stream_give_the_same_bytes(self):
        q = f"from={FROM}&to={TO}"
        paths = [f"/v1/metrics/summary?{q}&window={W}", f"/v1/metrics/summary?{q}&window=30",
                 f"/v1/metrics/retention?period=month&{q}", f"/v1/metrics/retention?period=week&{q}&window=30",
                 f"/v1/metrics/retention?period=quarter&from=2024-01-01&to={TO}",
                 f"/v1/metrics/cohorts?period=month&{q}", f"/v1/metrics/cohorts?period=week&{q}",
                 "/v1/metrics/retention?period=week&from=2023-07-10&to=2026-01-01",
                 "/v1/metrics/cohorts?period=month&from=2016-02-01&to=2026-02-01"]
        before = counters(server), counters(sql_server)
        for path in paths:
            a, b = server.get(path, self.key), sql_server.get(path, self.key)
            self.assertEqual((a.status, b.status), (200, 200), path)
            self.assertEqual(a.body, b.body, path)
        after = counters(server), counters(sql_server)
        # the default server answered from its snapshot, the other streamed every report
        self.assertEqual(after[0]["reports_total"] - before[0]["reports_total"], len(paths))
        self.assertEqual(after[0]["fallbacks_total"], before[0]["fallbacks_total"])
        self.assertEqual(after[1]["fallbacks_total"] - before[1]["fallbacks_total"], len(paths))

    def test_ladder_matches_plain_sql(self):
        rows = self.sql("""
            WITH n AS (SELECT c.customer_id,
                              (SELECT count(*) FROM orders o WHERE o.tenant_id = $T AND o.customer_id = c.customer_id AND $Q) AS n,
                              EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = $T AND e.customer_id = c.customer_id) AS engaged
                       FROM customers c WHERE c.tenant_id = $T)
            SELECT CASE WHEN n >= 2 THEN 'client' WHEN n = 1 THEN 'customer' WHEN engaged THEN 'prospect'
                        ELSE 'suspect' END, count(*) FROM n GROUP BY 1""")
        expected = {"suspect": 0, "prospect": 0, "customer": 0, "client": 0, "advocate": 0}
        expected.update({k: int(v) for k, v in rows})
        r = self.srv.get("/v1/metrics/ladder", self.key)
        self.assertEqual({s["stage"]: s["count"] for s in r.json["stages"]}, expected)

    def test_cohorts_match_plain_sql(self):
        rows = self.sql("""
            WITH q AS (SELECT * FROM orders o WHERE tenant_id = $T AND $Q),
            f AS (SELECT customer_id, date_trunc('month', min(placed_at)) AS cohort FROM q GROUP BY 1
                  HAVING min(placed_at) >= $FROM AND min(placed_at) < $TO)
            SELECT to_char(f.cohort, 'YYYY-MM'), count(DISTINCT f.customer_id),
                   count(DISTINCT q.customer_id) FILTER (WHERE date_trunc('month', q.placed_at) = f.cohort + interval '1 month'
                                                         AND q.placed_at < $TO)
            FROM f JOIN q USING (customer_id) GROUP BY 1 ORDER BY 1""")
        r = self.srv.get(f"/v1/metrics/cohorts?period=month&from={FROM}&to={TO}", self.key)
        got = [(c["cohort"][:7], c["size"], c["cells"][1]["active"] if len(c["cells"]) > 1 else 0)
               for c in r.json["cohorts"]]
        self.assertEqual(got, [(a, int(b), int(c)) for a, b, c in rows])

    def test_profiles_match_plain_sql(self):
        rows = self.sql("""
            WITH a AS (SELECT customer_id, count(*) AS n, sum(shop_total - shop_refunded) AS rev,
                              max(placed_at) AS last FROM orders o WHERE tenant_id = $T AND $Q GROUP BY 1)
            SELECT customer_id, n, rev, ntile(5) OVER (ORDER BY last, customer_id),
                   ntile(5) OVER (ORDER BY n, customer_id), ntile(5) OVER (ORDER BY rev, customer_id)
            FROM a ORDER BY customer_id LIMIT 25""")
        for cid, n, rev, rr, ff, mm in rows:
            p = self.srv.get(f"/v1/customers/{cid}", self.key).json
            self.assertEqual(p["order_count"], int(n), cid)
            self.assertAlmostEqual(p["net_revenue"], float(rev), places=2)
            self.assertEqual((p["rfm"]["r"], p["rfm"]["f"], p["rfm"]["m"]), (int(rr), int(ff), int(mm)), cid)


class GeneratedShopStreamed(GeneratedShop):
    """The same reports computed from the tenant's rows streamed from PostgreSQL: a server
    without report snapshots."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = sql_server

    def test_no_report_came_from_a_snapshot(self):
        self.srv.get(f"/v1/metrics/summary?from={FROM}&to={TO}", self.key)
        self.assertEqual(counters(self.srv)["reports_total"], 0)


class ChangedShop(GeneratedShop):
    """The snapshot is read, then the shop changes in every way the reports read: new orders,
    refunds and cancellations of counted ones, an order dated before a customer's first (which
    moves the customer to another cohort and out of N), orders moved to another customer, a new
    customer with orders, and a customer's created_at. Every report must then equal the plain SQL over the changed shop, and
    the snapshot must have been brought current customer by customer, not read again."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reports = [f"/v1/metrics/summary?from={FROM}&to={TO}&window={W}",
                   f"/v1/metrics/retention?period=month&from={FROM}&to={TO}&window={W}",
                   f"/v1/metrics/cohorts?period=month&from={FROM}&to={TO}"]
        for path in reports:
            assert server.get(path, cls.key).status == 200
        before = counters(server)
        rows = pg.sql(f"""
            SELECT customer_id, min(order_id), min(placed_at)::date FROM orders
            WHERE tenant_id = {cls.tid} AND qualifying AND placed_at >= '{FROM}' AND placed_at < '{TO}'
            GROUP BY 1 ORDER BY 1 LIMIT 30""")
        later = "2026-01-02T00:00:00Z"
        changed = set()
        for i, (cid, oid, day) in enumerate(rows):
            if i < 10:    # another order in the period
                o = {"order_id": f"new-{i}", "customer_id": cid, "placed_at": f"{day}T12:00:00Z",
                     "total": f"{10 + i}.25"}
            elif i < 15:  # refunded in full: no longer counted
                o = {"order_id": oid, "customer_id": cid, "placed_at": f"{day}T00:00:00Z", "total": "5.00",
                     "refunded": "5.00", "status": "refunded", "updated_at": later}
            elif i < 20:  # cancelled
                o = {"order_id": oid, "customer_id": cid, "placed_at": f"{day}T00:00:00Z", "total": "5.00",
                     "status": "cancelled", "updated_at": later}
            elif i < 25:  # an order a year before: the customer's first moves out of the period
                o = {"order_id": f"early-{i}", "customer_id": cid, "placed_at": "2024-03-05T10:00:00Z",
                     "total": "42.10"}
            else:         # the order moves to another customer
                o = {"order_id": oid, "customer_id": "adopter", "placed_at": f"{day}T00:00:00Z",
                     "total": "77.00", "updated_at": later}
                changed.add("adopter")
            r = server.post("/v1/orders", o, cls.key)
            assert r.status in (200, 201), r
            changed.add(cid)
        for k in range(3):  # a new customer, two orders in the period
            o = {"order_id": f"fresh-{k}", "customer_id": "fresh", "placed_at": f"2025-{8 + k:02d}-10T09:00:00Z",
                 "total": "99.99"}
            assert server.post("/v1/orders", o, cls.key).status in (200, 201)
        changed.add("fresh")
        r = server.post("/v1/customers", {"customer_id": "signed-up", "created_at": "2025-12-01T00:00:00Z"}, cls.key)
        assert r.status in (200, 201), r
        changed.add("signed-up")
        for path in reports:
            assert server.get(path, cls.key).status == 200
        after = counters(server)
        cls.loads = after["loads_total"] - before["loads_total"]
        cls.refreshed = after["refreshed_customers_total"] - before["refreshed_customers_total"]
        cls.changed = len(changed)
        pg.sql("ANALYZE")

    def test_snapshot_was_brought_current_not_read_again(self):
        self.assertEqual(self.loads, 0)
        self.assertGreaterEqual(self.refreshed, self.changed)
        self.assertGreater(counters(server)["reports_total"], 0)


if __name__ == "__main__":
    unittest.main()
