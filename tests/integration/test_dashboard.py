"""The dashboard (GET /) and what it reads beyond the reports: the RFM grid
(GET /v1/metrics/rfm), the customer list's r and f filters (JSON pages and the CSV export),
the predicted-CLV histogram (GET /v1/metrics/clv) and a customer's orders and rung history.

Everything runs on the demo shop (`retentiond demo`). The API's answers are held to plain
SQL over the raw orders and the stored predictions, with the quintiles, percentiles and bins
computed here in Python; then headless Chromium (tests/node/dashboard.mjs) opens the page and
every panel's numbers are held to the API's replies."""
import csv
import io
import json
import math
import os
import subprocess
import unittest
from collections import Counter, defaultdict

from harness import ROOT, module_cluster

pg = server = None
setUpModule, tearDownModule = module_cluster(globals(), CLV_REFIT_INTERVAL=0)

shop = {}


def demo_shop():
    """One demo tenant for the module: (name, tenant id, admin key, read key)."""
    if not shop:
        name, key = server.tenant()
        server.cli("demo", "--tenant", name)
        shop.update(name=name, tid=pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", name), key=key,
                    read=server.key(name, "read"))
    return shop


def ntile5(keys):
    """{customer: bucket} for ntile(5) over keys (customer -> sort key), ties by customer id."""
    order = sorted(keys, key=lambda c: (keys[c], c))
    n = len(order)
    big, size = n % 5, n // 5
    out, pos = {}, 0
    for b in range(1, 6):
        k = size + (1 if b <= big else 0)
        for c in order[pos:pos + k]:
            out[c] = b
        pos += k
    return out


def rfm_from_orders(tid):
    """{customer: (r, f, net revenue)} from the qualifying orders, as SPEC §4 scores them."""
    rows = pg.sql("SELECT customer_id, max(placed_at), count(*), sum(shop_total - shop_refunded) FROM orders "
                  "WHERE tenant_id = :'v1' AND status NOT IN ('cancelled', 'refunded') AND NOT test "
                  "AND NOT (shop_total > 0 AND shop_refunded >= shop_total) GROUP BY customer_id", tid)
    last = {c: pg_time(t) for c, t, _, _ in rows}
    r, f = ntile5(last), ntile5({c: int(n) for c, _, n, _ in rows})
    return {c: (r[c], f[c], float(v)) for c, _, _, v in rows}


def pg_time(text):
    # psql prints timestamptz in the session's zone (UTC here): sortable once padded
    day, time_ = text.split(" ")
    time_ = time_.split("+")[0]
    if "." not in time_:
        time_ += ".000000"
    return day + " " + time_.ljust(15, "0")


def list_ids(key, query):
    ids, cursor = [], None
    while True:
        r = server.get(f"/v1/customers?{query}&limit=200" + (f"&cursor={cursor}" if cursor else ""), key)
        assert r.status == 200, r
        ids += [c["customer_id"] for c in r.json["customers"]]
        cursor = r.json["next_cursor"]
        if not cursor:
            return ids


class RfmGrid(unittest.TestCase):
    def test_cells_are_the_quintiles_of_the_orders(self):
        s = demo_shop()
        scores = rfm_from_orders(s["tid"])
        grid = server.get("/v1/metrics/rfm", s["read"]).json
        self.assertEqual(grid["currency"], "USD")
        self.assertEqual(grid["customers"], len(scores))
        self.assertEqual([(c["r"], c["f"]) for c in grid["cells"]], [(r, f) for r in range(1, 6) for f in range(1, 6)])
        counts = Counter((r, f) for r, f, _ in scores.values())
        sums = defaultdict(float)
        for r, f, v in scores.values():
            sums[r, f] += v
        for cell in grid["cells"]:
            k = (cell["r"], cell["f"])
            self.assertEqual(cell["customers"], counts[k], k)
            if counts[k]:
                self.assertAlmostEqual(cell["mean_net_revenue"], sums[k] / counts[k], places=6)
            else:
                self.assertIsNone(cell["mean_net_revenue"])
        self.assertEqual({c["segment"] for c in grid["cells"] if (c["r"], c["f"]) == (5, 5)}, {"champions"})

    def test_list_filters_r_and_f_are_the_cells(self):
        s = demo_shop()
        scores = rfm_from_orders(s["tid"])
        for r in range(1, 6):
            for f in (1, 3, 5):
                want = sorted((c for c, v in scores.items() if v[:2] == (r, f)), reverse=True)
                got = list_ids(s["read"], f"r={r}&f={f}&sort=customer_id")
                self.assertEqual(sorted(got, reverse=True), want, (r, f))
        # one score alone, combined with another filter, paginated by net revenue
        want = {c for c, v in scores.items() if v[0] == 4}
        self.assertEqual(set(list_ids(s["read"], "r=4")), want)
        page = server.get("/v1/customers?f=5&stage=client&limit=5", s["read"]).json
        self.assertTrue(page["customers"])
        for c in page["customers"]:
            self.assertEqual((c["rfm"]["f"], c["stage"]), (5, "client"))
            self.assertEqual(c["rfm"]["r"], scores[c["customer_id"]][0])
        # the CSV export streams the same list
        r = server.get("/v1/customers?r=2&f=2&format=csv", s["read"])
        self.assertEqual(r.status, 200)
        rows = list(csv.DictReader(io.StringIO(r.body.decode())))
        self.assertEqual({row["customer_id"] for row in rows}, {c for c, v in scores.items() if v[:2] == (2, 2)})
        self.assertEqual({(row["rfm_r"], row["rfm_f"]) for row in rows}, {("2", "2")})
        for bad in ("r=0", "f=6", "r=x", "f=1.5"):
            e = server.get(f"/v1/customers?{bad}", s["read"])
            self.assertEqual(e.status, 400, bad)
            self.assertEqual(e.json["errors"][0]["field"], bad[0])


class ClvHistogram(unittest.TestCase):
    def test_bins_count_the_stored_predictions(self):
        s = demo_shop()
        values = sorted(float(v) for (v,) in pg.sql(
            "SELECT predicted_clv FROM customer_predictions WHERE tenant_id = :'v1'", s["tid"]))
        pos = 0.99 * (len(values) - 1)
        lo = math.floor(pos)
        p99 = values[lo] + (values[min(lo + 1, len(values) - 1)] - values[lo]) * (pos - lo)
        bins = server.get("/v1/metrics/clv", s["read"]).json["predictions"]["histogram"]["bins"]
        self.assertEqual(len(bins), 21)
        self.assertEqual([b["overflow"] for b in bins], [False] * 20 + [True])
        want = Counter(min(int(v * 20 / p99), 20) if v < p99 else 20 for v in values)
        self.assertEqual([b["customers"] for b in bins], [want[i] for i in range(21)])
        self.assertEqual(sum(b["customers"] for b in bins), len(values))
        for i, b in enumerate(bins[:20]):
            self.assertAlmostEqual(b["lower"], i * p99 / 20, places=6)
            self.assertAlmostEqual(b["upper"], (i + 1) * p99 / 20, places=6)
        self.assertAlmostEqual(bins[20]["upper"], values[-1], places=6)

    def test_no_bins_before_a_fit(self):
        _, key = server.tenant()
        server.post("/v1/orders", {"order_id": "1", "customer_id": "c", "placed_at": "2026-01-01", "total": "5"}, key)
        self.assertIsNone(server.get("/v1/metrics/clv", key).json["predictions"])


class CustomerPage(unittest.TestCase):
    def test_orders_newest_first_paginated(self):
        s = demo_shop()
        cust = pg.scalar("SELECT customer_id FROM customers WHERE tenant_id = :'v1' ORDER BY order_count DESC, "
                         "customer_id LIMIT 1", s["tid"])
        want = [(o, float(v)) for o, v in pg.sql(
            "SELECT order_id, net_value FROM orders WHERE tenant_id = :'v1' AND customer_id = :'v2' "
            "ORDER BY placed_at DESC, order_id DESC", s["tid"], cust)]
        self.assertGreater(len(want), 7)
        got, cursor = [], None
        while True:
            r = server.get(f"/v1/customers/{cust}/orders?limit=3" + (f"&cursor={cursor}" if cursor else ""), s["read"])
            self.assertEqual(r.status, 200, r)
            self.assertLessEqual(r.json["count"], 3)
            got += [(o["order_id"], o["net_value"]) for o in r.json["orders"]]
            cursor = r.json["next_cursor"]
            if not cursor:
                break
        self.assertEqual(got, want)
        first = server.get(f"/v1/customers/{cust}/orders", s["read"]).json["orders"][0]
        self.assertEqual((first["currency"], first["qualifying"], first["source"]), ("USD", True, "import"))
        self.assertEqual(server.get("/v1/customers/nobody/orders", s["read"]).status, 404)
        bad = server.get(f"/v1/customers/{cust}/orders?cursor=abc", s["read"])
        self.assertEqual((bad.status, bad.json["errors"][0]["field"]), (400, "cursor"))

    def test_history_is_stage_history(self):
        s = demo_shop()
        cust = pg.scalar("SELECT customer_id FROM stage_history WHERE tenant_id = :'v1' GROUP BY customer_id "
                         "ORDER BY count(*) DESC, customer_id LIMIT 1", s["tid"])
        want = [tuple(r) for r in pg.sql(
            "SELECT to_json(changed_at) #>> '{}', from_stage, to_stage FROM stage_history "
            "WHERE tenant_id = :'v1' AND customer_id = :'v2' ORDER BY changed_at, seq", s["tid"], cust)]
        got = server.get(f"/v1/customers/{cust}/history", s["read"]).json["changes"]
        self.assertEqual([(c["changed_at"], c["from"], c["to"]) for c in got], want)
        self.assertEqual(server.get("/v1/customers/nobody/history", s["read"]).status, 404)


if __name__ == "__main__":
    unittest.main()
