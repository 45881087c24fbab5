"""Breakdowns and filters of the period reports (SPEC §8): summary, retention and cohorts by
channel, source of the first order, month of the first order and an attribute, the same names
as filters; the 20 largest values by customers, then "(other)" and "(none)", adding up to the
whole; CAC, LTV:CAC and retention spend per retained customer per channel.

The expected figures come from plain SQL over the raw orders and customers (not the rollup, not
the service's code), and, for the series and matrices, from a second tenant loaded with only
one value's customers and reported whole."""
import datetime
import json
import os
import random
import tempfile
import unittest
import uuid

from harness import Server, module_cluster

pg = server = None
setUpModule, tearDownModule = module_cluster(globals())

FROM, TO, W = "2026-01-01", "2026-07-01", 365
PERIOD = f"from={FROM}&to={TO}"
ADDITIVE = ("customers", "S", "E", "N", "lost", "retained", "reactivated", "ordering", "repeat_ordering",
            "returning", "orders")


def tenant():
    name = "t" + uuid.uuid4().hex[:12]
    server.cli("tenant", "create", name)
    return name, server.key(name, "ingest,read,admin")


def get(path, key):
    r = server.get(path, key)
    assert r.status == 200, r
    return r.json


class Shop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rnd = random.Random(7)
        cls.customers, cls.orders, imported = [], [], []
        channels = ["email", "ads", "social", "", None]
        for c in range(360):
            cid = f"c{c:03d}"
            rec = {"kind": "customer", "customer_id": cid, "created_at": "2024-06-01T00:00:00Z",
                   "attributes": {}}
            ch = rnd.choice(channels)
            if ch is not None:
                rec["channel"] = ch
            if rnd.random() < 0.8:
                rec["attributes"]["country"] = rnd.choice(["DE", "FR", "IT"])
            rec["attributes"]["seg"] = f"v{min(int(rnd.expovariate(0.12)), 29):02d}"   # ~30 values, uneven
            cls.customers.append(rec)
            t = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
                hours=rnd.randrange(0, 540 * 24))
            for k in range(rnd.choice((1, 1, 2, 3, 4))):
                o = {"kind": "order", "order_id": f"{cid}-{k}", "customer_id": cid,
                     "placed_at": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "total": str(rnd.randrange(5, 200))}
                (imported if c % 4 == 0 and k == 0 else cls.orders).append(o)
                t += datetime.timedelta(hours=rnd.randrange(24, 200 * 24))
        cls.spend = [{"kind": "spend", "type": "acquisition", "channel": "email", "period": "2026-02", "amount": "100"},
                     {"kind": "spend", "type": "acquisition", "channel": "ads", "period": "2026-03", "amount": "300"},
                     {"kind": "spend", "type": "retention", "channel": "email", "period": "2026-04", "amount": "40"},
                     {"kind": "spend", "type": "acquisition", "channel": "tv", "period": "2026-03", "amount": "50"}]
        cls.name, cls.key = tenant()
        r = server.post("/v1/batch", cls.customers + cls.orders + cls.spend, cls.key)
        assert r.json["rejected"] == 0, r
        # every fourth customer's first order comes by `retentiond import`: source "import"
        with tempfile.NamedTemporaryFile("w", suffix=".ndjson", delete=False) as f:
            f.write("\n".join(json.dumps(o) for o in imported) + "\n")
        server.cli("import", f.name, "--tenant", cls.name)
        os.unlink(f.name)
        cls.all_orders = cls.orders + imported
        cls.tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", cls.name)

    def sql_counts(self, group_sql):
        """S, E, N, orders and revenue per value of group_sql (over customers c), by plain SQL over
        the raw orders: active = an order in the 365 days before the instant."""
        q = f"""
            WITH g AS (SELECT c.customer_id, coalesce({group_sql}, '(none)') AS v FROM customers c
                       WHERE c.tenant_id = {self.tid}),
                 o AS (SELECT customer_id, placed_at, shop_total AS total FROM orders WHERE tenant_id = {self.tid})
            SELECT g.v,
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM o WHERE o.customer_id = g.customer_id
                        AND o.placed_at >= '{FROM}'::timestamptz - interval '{W} days' AND o.placed_at < '{FROM}')),
                   count(*) FILTER (WHERE EXISTS (SELECT 1 FROM o WHERE o.customer_id = g.customer_id
                        AND o.placed_at >= '{TO}'::timestamptz - interval '{W} days' AND o.placed_at < '{TO}')),
                   count(*) FILTER (WHERE (SELECT min(placed_at) FROM o WHERE o.customer_id = g.customer_id)
                        >= '{FROM}' AND (SELECT min(placed_at) FROM o WHERE o.customer_id = g.customer_id) < '{TO}'),
                   (SELECT count(*) FROM o JOIN g g2 USING (customer_id) WHERE g2.v = g.v
                        AND o.placed_at >= '{FROM}' AND o.placed_at < '{TO}'),
                   (SELECT coalesce(sum(total), 0) FROM o JOIN g g2 USING (customer_id) WHERE g2.v = g.v
                        AND o.placed_at >= '{FROM}' AND o.placed_at < '{TO}')
            FROM g GROUP BY g.v"""
        return {r[0]: {"S": int(r[1]), "E": int(r[2]), "N": int(r[3]), "orders": int(r[4]), "revenue": float(r[5])}
                for r in pg.sql(q)}

    def entries(self, report, breakdown, extra=""):
        body = get(f"/v1/metrics/{report}?{PERIOD}&breakdown={breakdown}{extra}", self.key)
        self.assertEqual(body["breakdown"], breakdown)
        return body, {e["value"]: e for e in body["entries"]}

    def test_summary_by_channel_against_sql(self):
        body, by = self.entries("summary", "channel")
        want = self.sql_counts("nullif(c.channel, '')")
        self.assertEqual(set(by), set(want))
        for v, w in want.items():
            c = by[v]["counts"]
            self.assertEqual({k: c[k] for k in ("S", "E", "N", "orders")}, {k: w[k] for k in ("S", "E", "N", "orders")}, v)
            self.assertAlmostEqual(c["revenue"], w["revenue"], places=6)
        # the entries add up to the whole
        whole = get(f"/v1/metrics/summary?{PERIOD}", self.key)["counts"]
        for k in ADDITIVE:
            self.assertEqual(sum(e["counts"][k] for e in body["entries"]), whole[k], k)
        self.assertAlmostEqual(sum(e["counts"]["revenue"] for e in body["entries"]), whole["revenue"], places=6)
        self.assertEqual(body["timezone"], "UTC")
        self.assertEqual(sum(e["customers"] for e in body["entries"]), len(self.customers))

    def test_acquisition_economics_per_channel(self):
        _, by = self.entries("summary", "channel")
        n_email, n_ads = by["email"]["counts"]["N"], by["ads"]["counts"]["N"]
        self.assertGreater(n_email * n_ads, 0)
        self.assertEqual(by["email"]["counts"]["acquisition_spend"], 100)
        self.assertAlmostEqual(by["email"]["metrics"]["cac"], 100 / n_email)
        self.assertAlmostEqual(by["ads"]["metrics"]["cac"], 300 / n_ads)
        ltv = by["email"]["metrics"]["ltv_historical"]
        self.assertAlmostEqual(by["email"]["metrics"]["ltv_to_cac"], ltv / (100 / n_email))
        retained = by["email"]["counts"]["retained"]
        self.assertAlmostEqual(by["email"]["metrics"]["retention_spend_per_retained_customer"], 40 / retained)
        self.assertIsNone(by["social"]["metrics"]["cac"])   # no spend recorded for it
        # tv acquired no one: its spend is in (none), so the spend adds up to the whole's
        self.assertEqual(by["(none)"]["counts"]["acquisition_spend"], 50)
        whole = get(f"/v1/metrics/summary?{PERIOD}", self.key)["counts"]
        self.assertEqual(sum(e["counts"]["acquisition_spend"] or 0 for e in by.values()), whole["acquisition_spend"])

    def test_top_twenty_then_other_then_none(self):
        body, by = self.entries("summary", "attribute:seg")
        counts = {}
        for c in self.customers:
            counts[c["attributes"]["seg"]] = counts.get(c["attributes"]["seg"], 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        self.assertGreater(len(ranked), 20)
        values = [e["value"] for e in body["entries"]]
        self.assertEqual(values, [v for v, _ in ranked[:20]] + ["(other)", "(none)"])
        self.assertEqual(by["(other)"]["customers"], sum(n for _, n in ranked[20:]))
        self.assertEqual([by[v]["customers"] for v, _ in ranked[:20]], [n for _, n in ranked[:20]])
        self.assertEqual(by["(none)"]["customers"], 0)

    def test_source_and_first_order_month(self):
        _, by = self.entries("summary", "source")
        want = self.sql_counts("(SELECT o.source FROM orders o WHERE o.tenant_id = c.tenant_id AND o.customer_id ="
                               " c.customer_id ORDER BY o.placed_at, o.order_id LIMIT 1)")
        self.assertEqual(set(by), set(want) | {"(none)"})
        self.assertEqual({v: by[v]["counts"]["N"] for v in want}, {v: w["N"] for v, w in want.items()})
        self.assertEqual(set(want), {"api", "import"})
        _, by = self.entries("summary", "first_order_month")
        want = self.sql_counts("to_char((SELECT min(placed_at) FROM orders o WHERE o.tenant_id = c.tenant_id"
                               " AND o.customer_id = c.customer_id) AT TIME ZONE 'UTC', 'YYYY-MM')")
        for v, w in want.items():
            self.assertEqual((by[v]["counts"]["S"], by[v]["counts"]["N"]), (w["S"], w["N"]), v)

    def test_series_and_matrix_per_value_as_a_tenant_of_its_own(self):
        # the email customers alone, in a tenant of their own, reported whole
        name, key = tenant()
        ids = {c["customer_id"] for c in self.customers if c.get("channel") == "email"}
        r = server.post("/v1/batch", [c for c in self.customers if c["customer_id"] in ids]
                        + [o for o in self.all_orders if o["customer_id"] in ids], key)
        self.assertEqual(r.json["rejected"], 0, r)
        for report, extra in (("retention", "&period=month"), ("cohorts", "&period=quarter")):
            _, by = self.entries(report, "channel", extra)
            alone = get(f"/v1/metrics/{report}?{PERIOD}{extra}", key)
            entry = {k: v for k, v in by["email"].items() if k not in ("value", "customers")}
            self.assertEqual(entry, alone, report)
            # and the filter gives the same report, saying what it filtered
            filtered = get(f"/v1/metrics/{report}?{PERIOD}{extra}&channel=email", key=self.key)
            self.assertEqual(filtered.pop("filters"), {"channel": "email"})
            self.assertEqual(filtered, alone, report)

    def test_filters_combine_with_breakdowns(self):
        body, by = self.entries("summary", "channel", "&attribute:country=DE")
        self.assertEqual(body["filters"], {"attribute:country": "DE"})
        want = self.sql_counts("CASE WHEN c.attributes ->> 'country' = 'DE' THEN nullif(c.channel, '') END")
        for v, w in want.items():
            if v != "(none)":
                self.assertEqual(by[v]["counts"]["N"], w["N"], v)
        de = sum(1 for c in self.customers if c["attributes"].get("country") == "DE")
        self.assertEqual(sum(e["customers"] for e in body["entries"]), de)

    def test_streamed_reports_give_the_same_bytes(self):
        streamed = Server(pg, REPORT_SNAPSHOT_MB=0).start()
        try:
            for path in (f"/v1/metrics/summary?{PERIOD}&breakdown=channel",
                         f"/v1/metrics/retention?{PERIOD}&period=week&breakdown=attribute:country&source=api",
                         f"/v1/metrics/cohorts?{PERIOD}&breakdown=first_order_month"):
                # the first report of the copy records its groups, the second replays them
                a, a2, b = server.get(path, self.key), server.get(path, self.key), streamed.get(path, self.key)
                self.assertEqual((a.status, a.body), (b.status, b.body), path)
                self.assertEqual((a2.status, a2.body), (b.status, b.body), path)
                self.assertEqual(a.status, 200, a)
        finally:
            streamed.stop()

    def test_the_groups_follow_changes_to_the_customers_and_the_zone(self):
        name, key = tenant()
        r = server.post("/v1/batch", [
            {"kind": "customer", "customer_id": "p", "channel": "email"},
            {"kind": "customer", "customer_id": "q", "channel": "email"},
            {"kind": "customer", "customer_id": "r", "channel": "ads"},
            {"kind": "order", "order_id": "p1", "customer_id": "p", "placed_at": "2026-03-31T22:30:00Z", "total": "10"},
            {"kind": "order", "order_id": "r1", "customer_id": "r", "placed_at": "2026-02-01T12:00:00Z", "total": "10"},
        ], key)
        self.assertEqual(r.json["rejected"], 0, r)

        def customers(breakdown):
            body = get(f"/v1/metrics/summary?{PERIOD}&breakdown={breakdown}", key)
            return {e["value"]: e["customers"] for e in body["entries"] if e["customers"]}
        self.assertEqual(customers("channel"), {"email": 2, "ads": 1})
        self.assertEqual(customers("channel"), {"email": 2, "ads": 1})   # the same copy: kept groups
        self.assertEqual(server.post("/v1/customers", {"customer_id": "r", "channel": "email"}, key).status, 200)
        self.assertEqual(customers("channel"), {"email": 3})
        self.assertEqual(customers("first_order_month"), {"2026-03": 1, "2026-02": 1, "(none)": 1})
        server.cli("tenant", "set-timezone", name, "Europe/Berlin")      # p's first order is 1 April there
        self.assertEqual(customers("first_order_month"), {"2026-04": 1, "2026-02": 1, "(none)": 1})

    def test_bad_segments_are_400_naming_the_field(self):
        for query, field in (("breakdown=colour", "breakdown"), ("breakdown=attribute:", "breakdown"),
                             ("source=fax", "source"), ("first_order_month=2026-13", "first_order_month"),
                             ("channel=", "channel")):
            r = server.get(f"/v1/metrics/summary?{PERIOD}&{query}", self.key)
            self.assertEqual(r.status, 400, query)
            self.assertEqual([e["field"] for e in r.json["errors"]], [field], query)


if __name__ == "__main__":
    unittest.main()
