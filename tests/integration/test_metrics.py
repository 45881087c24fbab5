"""Retention analytics through HTTP on hand-built shops whose every figure is derived here,
by hand, from the definitions of SPEC §4."""
import time
import unittest

from harness import Postgres, Server, module_cluster

pg = server = None


setUpModule, tearDownModule = module_cluster(globals())  # sets pg and server


def order(oid, cid, placed, total, **kw):
    d = {"kind": "order", "order_id": oid, "customer_id": cid, "placed_at": placed + "T12:00:00Z", "total": total}
    d.update(kw)
    return d


class SeedsWorkedExample(unittest.TestCase):
    """A month that starts with 100 customers, gains 60 new and ends with 150: retention 90 %."""

    def test_ninety_percent(self):
        _, key = server.tenant()
        items = [order(f"s{i}", f"stay{i}", "2025-06-15", "10") for i in range(90)]      # active at from and to
        items += [order(f"l{i}", f"lost{i}", "2025-01-15", "10") for i in range(10)]     # active at from only
        items += [order(f"n{i}", f"new{i}", "2026-01-10", "10") for i in range(60)]      # new in January
        self.assertEqual(server.post("/v1/batch", items, key).json["accepted"], 160)
        r = server.get("/v1/metrics/summary?from=2026-01-01&to=2026-02-01&window=365", key)
        self.assertEqual(r.status, 200, r)
        c, m = r.json["counts"], r.json["metrics"]
        self.assertEqual((c["S"], c["N"], c["E"], c["lost"]), (100, 60, 150, 10))
        self.assertAlmostEqual(m["retention_rate"], (150 - 60) / 100)
        self.assertAlmostEqual(m["churn_rate"], 10 / 100)


class HandBuiltShop(unittest.TestCase):
    """Period [2026-01-01, 2026-04-01), window 365 days. See each customer's comment."""

    @classmethod
    def setUpClass(cls):
        cls.tenant, cls.key = server.tenant()
        items = [
            order("a1", "A", "2025-05-01", "100"), order("a2", "A", "2026-02-01", "50"),   # retained, returning
            order("b1", "B", "2025-03-01", "80"),                                          # lost
            order("c1", "C", "2024-06-01", "30"), order("c2", "C", "2026-03-01", "40"),    # reactivated
            order("d1", "D", "2026-01-15", "20"), order("d2", "D", "2026-01-20", "30"),    # new, repeat
            order("e1", "E", "2026-02-10", "60"),                                          # new
            order("e2", "E", "2026-02-11", "100", refunded="100", status="refunded"),     # fully refunded
            order("f1", "F", "2026-03-05", "70", status="cancelled"),                      # never qualified
            order("g1", "G", "2026-03-06", "90", test=True),                               # test order
            order("h1", "H", "2025-12-01", "10", refunded="4"),                            # partial refund
            {"kind": "event", "event_id": "rv1", "customer_id": "D", "type": "review",
             "occurred_at": "2026-03-10T00:00:00Z", "properties": {"rating": 5}},          # advocate by review
            {"kind": "spend", "type": "acquisition", "channel": "ads", "period": "2026-01", "amount": "100"},
        ]
        r = server.post("/v1/batch", items, cls.key)
        assert r.json["rejected"] == 0, r

    def test_summary_counts_and_ratios(self):
        r = server.get("/v1/metrics/summary?from=2026-01-01&to=2026-04-01&window=365", self.key)
        self.assertEqual(r.status, 200, r)
        c, m = r.json["counts"], r.json["metrics"]
        self.assertEqual({k: c[k] for k in ("S", "E", "N", "lost", "retained", "reactivated", "ordering",
                                             "repeat_ordering", "returning", "orders")},
                         {"S": 3, "E": 5, "N": 2, "lost": 1, "retained": 2, "reactivated": 1, "ordering": 4,
                          "repeat_ordering": 1, "returning": 2, "orders": 5})
        self.assertAlmostEqual(c["revenue"], 200)
        self.assertAlmostEqual(m["retention_rate"], (5 - 2) / 3)
        self.assertAlmostEqual(m["churn_rate"], 1 / 3)
        self.assertAlmostEqual(m["repeat_purchase_rate"], 1 / 4)
        self.assertAlmostEqual(m["purchase_frequency"], 5 / 4)
        self.assertAlmostEqual(m["average_order_value"], 200 / 5)
        self.assertAlmostEqual(m["customer_value"], 40 * 5 / 4)
        self.assertAlmostEqual(m["returning_customer_rate"], 2 / 4)
        self.assertAlmostEqual(m["returning_revenue_share"], (50 + 40) / 200)
        self.assertAlmostEqual(m["top20_revenue_share"], 60 / 200)   # one customer (ceil 0.8): E with 60
        self.assertAlmostEqual(m["cac"], 100 / 2)
        days = 90
        annual = 1 - (1 - 1 / 3) ** (365 / days)
        self.assertAlmostEqual(m["average_lifespan_years"], 1 / annual)
        self.assertAlmostEqual(m["ltv_historical"], 50 * 365 / days / annual)

    def test_zero_denominators_are_null(self):
        r = server.get("/v1/metrics/summary?from=2020-01-01&to=2020-02-01", self.key)
        m = r.json["metrics"]
        for k in ("retention_rate", "churn_rate", "repeat_purchase_rate", "purchase_frequency",
                  "average_order_value", "returning_revenue_share", "cac"):
            self.assertIsNone(m[k], k)

    def test_ladder_now(self):
        r = server.get("/v1/metrics/ladder?from=2026-01-01", self.key)
        self.assertEqual(r.status, 200, r)
        stages = {s["stage"]: s["count"] for s in r.json["stages"]}
        self.assertEqual(stages, {"suspect": 2, "prospect": 0, "customer": 3, "client": 2, "advocate": 1})

    def test_retention_series_by_quarter(self):
        r = server.get("/v1/metrics/retention?period=quarter&from=2026-01-01&to=2026-04-01&window=365", self.key)
        self.assertEqual(r.status, 200, r)
        [q] = r.json["series"]
        self.assertEqual((q["S"], q["E"], q["N"], q["lost"]), (3, 5, 2, 1))
        # ordered in Q1 2026: A, C, D, E. Q4 2025: H. new: D, E; resurrecting: A (last ordered Q2 2025), C
        self.assertEqual((q["new"], q["returning"], q["resurrecting"], q["dormant"]), (2, 0, 2, 1))
        self.assertAlmostEqual(q["retention_rate"], 1.0)

    def test_cohorts(self):
        r = server.get("/v1/metrics/cohorts?period=month&from=2026-01-01&to=2026-04-01", self.key)
        self.assertEqual(r.status, 200, r)
        [jan, feb] = r.json["cohorts"]           # D in January, E in February
        self.assertEqual((jan["size"], feb["size"]), (1, 1))
        self.assertEqual([c["active"] for c in jan["cells"]], [1, 0, 0])
        self.assertAlmostEqual(jan["cells"][0]["revenue"], 50)
        self.assertEqual(len(feb["cells"]), 2)

    def test_profile_with_rfm_by_hand(self):
        # customers with orders: A B C D E H (n = 6; ntile(5) sizes 2,1,1,1,1)
        # recency order B H D A E C -> D at 2 -> r 2; frequency (count, id): B E H A C D -> D at 5 -> f 5;
        # money H6 D50 E60 C70 B80 A150 -> D at 1 -> m 1; r 2 f 5 = cannot_lose_them
        r = server.get("/v1/customers/D?as_of=2026-04-01", self.key)
        self.assertEqual(r.status, 200, r)
        p = r.json
        self.assertEqual((p["stage"], p["order_count"], p["status"]), ("advocate", 2, "at_risk"))
        self.assertAlmostEqual(p["net_revenue"], 50)
        self.assertAlmostEqual(p["avg_days_between_orders"], 5)
        self.assertEqual((p["rfm"]["r"], p["rfm"]["f"], p["rfm"]["m"], p["rfm"]["segment"]),
                         (2, 5, 1, "cannot_lose_them"))
        self.assertEqual(server.get("/v1/customers/nobody", self.key).status, 404)

    def test_lists_filter_sort_and_paginate(self):
        r = server.get("/v1/customers?stage=customer&sort=net_revenue&limit=2", self.key)
        self.assertEqual(r.status, 200, r)
        page1 = r.json
        self.assertEqual([c["customer_id"] for c in page1["customers"]], ["B", "E"])  # 80, 60
        r = server.get("/v1/customers?stage=customer&sort=net_revenue&limit=2&cursor=" + page1["next_cursor"], self.key)
        self.assertEqual([c["customer_id"] for c in r.json["customers"]], ["H"])
        r = server.get("/v1/customers?segment=cannot_lose_them", self.key)
        self.assertEqual([c["customer_id"] for c in r.json["customers"]], ["D"])
        r = server.get("/v1/customers?sort=shoe_size&cursor=zz", self.key)
        self.assertEqual({e["field"] for e in r.json["errors"]}, {"sort", "cursor"})

    def test_bad_parameters_are_400_naming_fields(self):
        r = server.get("/v1/metrics/summary?from=yesterday&window=0", self.key)
        self.assertEqual(r.status, 400)
        self.assertEqual({e["field"] for e in r.json["errors"]}, {"from", "window"})
        r = server.get("/v1/metrics/retention?period=fortnight", self.key)
        self.assertEqual(r.json["errors"][0]["field"], "period")

    def test_too_many_periods_is_400_naming_from(self):
        # 1 000 weeks (19 years) of series and 400 months of matrix are the most one report spans
        for path, ok in (("/v1/metrics/retention?period=week&from=2007-02-05&to=2026-04-01", True),
                         ("/v1/metrics/retention?period=week&from=2007-01-29&to=2026-04-01", False),
                         ("/v1/metrics/cohorts?period=month&from=1992-12-01&to=2026-04-01", True),
                         ("/v1/metrics/cohorts?period=month&from=1992-11-01&to=2026-04-01", False)):
            with self.subTest(path=path):
                r = server.get(path, self.key)
                if ok:
                    self.assertEqual(r.status, 200, r)
                else:
                    self.assertEqual(r.status, 400, r)
                    self.assertEqual([e["field"] for e in r.json["errors"]], ["from"])


class ExactMoney(unittest.TestCase):
    """Net values of six decimals, and values beyond the 64 bits a report snapshot holds per order
    (9.2 * 10^12 in millionths), are summed exactly: the snapshot leaves such a tenant to the
    stream, whose answer equals a server's without snapshots, byte for byte."""

    def test_wide_and_fine_values(self):
        from decimal import Decimal
        _, key = server.tenant()
        totals = {"w1": "12345678901234.56", "w2": "0.000001", "f1": "0.123456", "f2": "999999999999999999.999999"}
        items = [order("w1", "W", "2026-01-10", totals["w1"]), order("w2", "W", "2026-02-10", totals["w2"]),
                 order("f1", "F", "2026-01-11", totals["f1"]), order("f2", "F", "2026-03-11", totals["f2"]),
                 order("s1", "S", "2026-03-12", "1.5")]
        self.assertEqual(server.post("/v1/batch", items, key).json["accepted"], 5)
        period = "from=2026-01-01&to=2026-04-01"
        streamed = Server(pg, REPORT_SNAPSHOT_MB=0).start()
        try:
            for path in (f"/v1/metrics/summary?{period}", f"/v1/metrics/cohorts?period=month&{period}"):
                a, b = server.get(path, key), streamed.get(path, key)
                self.assertEqual((a.status, b.status), (200, 200), path)
                self.assertEqual(a.body, b.body, path)
        finally:
            self.assertEqual(streamed.stop(), 0)

        def printed(d):   # the service prints reals with 15 significant digits
            return float(f"{float(d):.15g}")
        c = server.get(f"/v1/metrics/summary?{period}", key).json["counts"]
        w, f = Decimal(totals["w1"]) + Decimal(totals["w2"]), Decimal(totals["f1"]) + Decimal(totals["f2"])
        self.assertEqual(c["revenue"], printed(w + f + Decimal("1.5")))
        self.assertEqual(c["top20_revenue"], printed(f))   # ceil(3 * 0.2) = 1 customer: F
        cohorts = server.get(f"/v1/metrics/cohorts?period=month&{period}", key).json["cohorts"]
        [jan, mar] = cohorts
        self.assertEqual([x["revenue"] for x in jan["cells"]],
                         [printed(Decimal(totals["w1"]) + Decimal(totals["f1"])), printed(totals["w2"]),
                          printed(totals["f2"])])
        self.assertEqual(mar["cells"][0]["revenue"], 1.5)


class OrdersWithoutCustomersRow(unittest.TestCase):
    """Ingest always writes the customers row; one deleted around the service leaves orders that
    count by themselves (activity, orders, revenue) but not where the row is read (customers,
    N, returning, new revenue, cohorts), in the snapshot and in the stream alike."""

    def test_orphan_orders_count_by_themselves(self):
        tenant, key = server.tenant()
        items = [order("a1", "A", "2026-01-10", "10"), order("b1", "B", "2025-06-01", "5"),
                 order("b2", "B", "2026-02-10", "20")]
        self.assertEqual(server.post("/v1/batch", items, key).json["accepted"], 3)
        path = "/v1/metrics/summary?from=2026-01-01&to=2026-04-01&window=365"
        self.assertEqual(server.get(path, key).status, 200)   # the snapshot is read, then B's row goes
        tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", tenant)
        pg.sql(f"DELETE FROM customers WHERE tenant_id = {tid} AND customer_id = 'B'")
        streamed = Server(pg, REPORT_SNAPSHOT_MB=0).start()
        try:
            for p in (path, "/v1/metrics/retention?period=month&from=2026-01-01&to=2026-04-01",
                      "/v1/metrics/cohorts?period=month&from=2025-01-01&to=2026-04-01"):
                a, b = server.get(p, key), streamed.get(p, key)
                self.assertEqual((a.status, b.status), (200, 200), p)
                self.assertEqual(a.body, b.body, p)
        finally:
            self.assertEqual(streamed.stop(), 0)
        c = server.get(path, key).json["counts"]
        self.assertEqual({k: c[k] for k in ("customers", "S", "E", "N", "lost", "retained", "reactivated", "ordering",
                                             "orders", "returning")},
                         {"customers": 1, "S": 1, "E": 2, "N": 1, "lost": 0, "retained": 1, "reactivated": 0,
                          "ordering": 2, "orders": 2, "returning": 0})
        self.assertEqual((c["revenue"], c["new_revenue"], c["returning_revenue"]), (30.0, 10.0, 0.0))


class RfmRefreshInBackground(unittest.TestCase):
    """RFM quintile boundaries are kept fresh by a background task, so no profile request pays
    for the sort of a tenant's customers: they appear for a tenant nobody has asked a profile
    of, and equal ntile(5) computed here over the same customers."""

    def test_boundaries_appear_without_a_request(self):
        import time
        tenant, key = server.tenant()
        items = [order(f"o{i}-{k}", f"c{i}", f"2026-0{1 + k}-{10 + i:02d}", str(10 * (i + 1)))
                 for i in range(12) for k in range(1 + i % 3)]
        self.assertEqual(server.post("/v1/batch", items, key).json["accepted"], len(items))
        tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", tenant)
        second = Server(pg, UPKEEP_INTERVAL=1).start()
        try:
            deadline = time.time() + 30
            while time.time() < deadline and pg.scalar(f"SELECT count(*) FROM rfm_cutoffs WHERE tenant_id = {tid}") == "0":
                time.sleep(0.2)
        finally:
            self.assertEqual(second.stop(), 0)
        self.assertEqual(pg.scalar(f"SELECT n FROM rfm_cutoffs WHERE tenant_id = {tid}"), "12")
        # the boundaries score every customer as ntile(5) does (SPEC: frequency ties split by id)
        want = pg.sql(f"""SELECT customer_id, ntile(5) OVER (ORDER BY last_order_at, customer_id),
                                 ntile(5) OVER (ORDER BY order_count, customer_id),
                                 ntile(5) OVER (ORDER BY net_revenue, customer_id)
                          FROM customers WHERE tenant_id = {tid} AND order_count > 0 ORDER BY 1""")
        # the customers are read first and scored over their values: on Citus a function that
        # reads a table cannot run inside a statement pushed to a shard
        rows = pg.sql(f"""SELECT customer_id, last_order_at, order_count, net_revenue FROM customers
                          WHERE tenant_id = {tid} AND order_count > 0""")
        values = ", ".join(f"('{c}', '{l}'::timestamptz, {n}, {m}::numeric)" for c, l, n, m in rows)
        got = pg.sql(f"""SELECT customer_id, (s).r, (s).f, (s).m
                         FROM (SELECT v.customer_id, rd_rfm_scores({tid}, v.l, v.n, v.m, v.customer_id) AS s
                               FROM (VALUES {values}) v(customer_id, l, n, m)) x ORDER BY 1""")
        self.assertEqual(got, want)


class UpkeepIntervalOldName(unittest.TestCase):
    """UPKEEP_INTERVAL / --upkeep-interval was called RFM_REFRESH_INTERVAL /
    --rfm-refresh-interval. The old names are still read, and where both are given the new one
    wins. A server whose upkeep runs logs each round (msg="upkeep", at debug level when it had
    nothing to report); with the default interval its first round is a minute away."""

    def upkeep_runs(self, flags=(), **env):
        other = Server(pg, flags=flags, LOG_LEVEL="debug", **env).start()
        try:
            deadline = time.time() + 15
            while time.time() < deadline and 'msg="upkeep"' not in other.read_log():
                time.sleep(0.2)
        finally:
            self.assertEqual(other.stop(), 0)
        return 'msg="upkeep"' in other.read_log()

    def test_old_environment_variable(self):
        self.assertTrue(self.upkeep_runs(RFM_REFRESH_INTERVAL=1))

    def test_old_flag(self):
        self.assertTrue(self.upkeep_runs(flags=["--rfm-refresh-interval", "1"]))

    def test_new_name_wins(self):
        self.assertTrue(self.upkeep_runs(UPKEEP_INTERVAL=1, RFM_REFRESH_INTERVAL=0))
        self.assertTrue(self.upkeep_runs(flags=["--upkeep-interval", "1", "--rfm-refresh-interval", "0"]))

    def test_old_names_are_bounds_checked_as_the_new(self):
        r = server.cli("--rfm-refresh-interval", "86401", "migrate", check=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--rfm-refresh-interval: expected an integer in [0, 86400]", r.stderr)
        other = Server(pg, RFM_REFRESH_INTERVAL="soon")
        r = other.cli("migrate", check=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn("RFM_REFRESH_INTERVAL: expected an integer in [0, 86400]", r.stderr)


if __name__ == "__main__":
    unittest.main()
