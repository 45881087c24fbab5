"""Predictive CLV through the real service: the CDNOW sample posted as orders over HTTP, fitted
by POST /v1/models/clv/fit and by `retentiond fit`, checked against the published BG/NBD and
Gamma-Gamma estimates; the model report, live profile predictions checked against the
closed-form P(alive) computed here, lists sorted by the stored predictions, the scheduled
refit, and degenerate shops that must get a plain 422 (or a finite model), never a 500 or NaN.

Time convention (SPEC §8): an instant as_of is the exclusive end of the observation window; a
date as_of is the end of that local day, inclusive, as lifetimes' observation_period_end.
Durations are whole days between the shop's calendar days (UTC here), T running to the day
holding the last instant before as_of. The CDNOW calibration period ends *with* 1997-09-30, so
these tests pass as_of = 1997-09-30: orders of that day count and T = 272 days for a first
purchase on 1997-01-01, exactly the published summary (38.86 weeks). The instant
1997-10-01T00:00:00Z is the same end, and is checked to give the same model.
"""
import collections
import datetime
import json
import math
import os
import time
import unittest

from harness import FIXTURES, Postgres, Server, module_cluster

pg = server = None

CAL_END = datetime.date(1997, 9, 30)   # last day of the calibration period (inclusive)
AS_OF = "1997-09-30"                   # a date: the whole of that day counts

# Published BG/NBD maximum-likelihood estimates (weeks) and Gamma-Gamma estimates.
PUB = {"r": 0.242593, "alpha_weeks": 4.413532, "a": 0.792886, "b": 2.425752, "ll_weeks": -9582.43}
PUB_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


setUpModule, tearDownModule = module_cluster(globals())  # sets pg and server


def strict_json(resp):
    """Parses a reply, failing on NaN/Infinity (which are not JSON)."""
    def bad(c):
        raise AssertionError(f"non-JSON number {c} in {resp.body[:300]!r}")
    return json.loads(resp.body, parse_constant=bad)


def sig3(v):
    return float(f"{v:.3g}")


def cdnow_rows():
    rows = []
    with open(os.path.join(FIXTURES, "cdnow", "CDNOW_sample.txt")) as f:
        for line in f:
            p = line.split()
            if len(p) == 5:
                d = datetime.date(int(p[2][:4]), int(p[2][4:6]), int(p[2][6:]))
                rows.append((int(p[1]), d, p[4]))
    return rows


def cdnow_summary(rows):
    """x, t_x, T (days) and mbar per sample id, from the raw rows, by the README's convention."""
    occ = collections.defaultdict(lambda: collections.defaultdict(float))
    for cid, d, dollars in rows:
        if d <= CAL_END:
            occ[cid][d] += float(dollars)
    out = {}
    for cid, days in occ.items():
        ds = sorted(days)
        x = len(ds) - 1
        mbar = sum(days[d] for d in ds[1:]) / x if x else 0.0
        out[cid] = (x, (ds[-1] - ds[0]).days, (CAL_END - ds[0]).days, mbar)
    return out


def p_alive(x, t_x, T, r, alpha, a, b):
    """FHL 2005 eq. (11)."""
    if x == 0:
        return 1.0
    return 1.0 / (1.0 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))


class Cdnow(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tenant, cls.key = server.tenant()
        cls.read_key = server.key(cls.tenant, "read")
        cls.rows = cdnow_rows()
        cls.summary = cdnow_summary(cls.rows)
        lines = [json.dumps({"kind": "order", "order_id": str(i), "customer_id": str(cid),
                             "placed_at": d.isoformat() + "T00:00:00Z", "total": dollars})
                 for i, (cid, d, dollars) in enumerate(cls.rows, 1)]
        r = server.post("/v1/batch", "\n".join(lines) + "\n", cls.key, content_type="application/x-ndjson",
                        timeout=600)
        assert r.status == 200, r
        assert r.json["accepted"] == len(cls.rows), r
        # Before any fit: the report says so, the profile has null predictions.
        cls.before = server.get("/v1/metrics/clv", cls.read_key)
        cls.profile_before = server.get(f"/v1/customers/1?as_of={AS_OF}", cls.read_key)
        t0 = time.time()
        cls.fit = server.post("/v1/models/clv/fit", {"as_of": AS_OF}, cls.key)
        cls.fit_wall_ms = (time.time() - t0) * 1000
        print(f"\nCDNOW fit through HTTP: {cls.fit_wall_ms:.0f} ms wall; service timings "
              f"{cls.fit.json.get('timings') if cls.fit.status == 201 else cls.fit}")

    def test_before_fit(self):
        self.assertEqual(self.before.status, 200, self.before)
        body = strict_json(self.before)
        self.assertIsNone(body["model"])
        self.assertIn("no model", body["detail"])
        self.assertEqual(self.profile_before.status, 200, self.profile_before)
        p = strict_json(self.profile_before)
        self.assertEqual(p["model"], "not fitted")
        for k in ("p_alive", "churn_probability", "expected_orders", "predicted_clv", "total_clv",
                  "expected_next_order_at"):
            self.assertIsNone(p[k], k)

    def check_published(self, m):
        bg, gg = m["bgnbd"], m["gamma_gamma"]
        self.assertEqual(m["time_unit"], "days")
        self.assertEqual(m["sample_size"], 2357)
        self.assertEqual(m["repeat_customers"], 946)
        self.assertEqual(sig3(bg["r"]), 0.243)
        self.assertEqual(sig3(bg["a"]), 0.793)
        self.assertEqual(sig3(bg["b"]), 2.43)              # 2.426 to 3 significant figures
        self.assertAlmostEqual(bg["b"], 2.426, delta=0.0015)
        self.assertEqual(sig3(bg["alpha"]), sig3(7 * 4.414))   # 30.9 days
        self.assertEqual(sig3(bg["alpha"] / 7), 4.41)
        # Same optimum as the weekly fit: the log-likelihoods differ by sum(x) * log 7 exactly.
        sum_x = sum(s[0] for s in self.summary.values())
        self.assertAlmostEqual(bg["log_likelihood"], PUB["ll_weeks"] - sum_x * math.log(7), delta=0.02)
        self.assertEqual(sig3(gg["p"]), PUB_GG["p"])
        self.assertEqual(sig3(gg["q"]), PUB_GG["q"])
        self.assertEqual(sig3(gg["v"]), sig3(PUB_GG["v"]))
        self.assertAlmostEqual(gg["v"], PUB_GG["v"], delta=0.01)
        self.assertTrue(m["as_of"].startswith("1997-10-01T00:00:00"), m["as_of"])
        self.assertIsInstance(m["fit_ms"], float)

    def test_fit_over_http_reproduces_published_estimates(self):
        self.assertEqual(self.fit.status, 201, self.fit)
        body = strict_json(self.fit)
        self.check_published(body["model"])
        self.assertEqual(body["predictions_written"], 2357)
        n = pg.scalar("SELECT count(*) FROM customer_predictions p JOIN tenants t USING (tenant_id) "
                      "WHERE t.name = :'v1'", self.tenant)
        self.assertEqual(int(n), 2357)

    def test_fit_needs_admin_scope(self):
        r = server.post("/v1/models/clv/fit", {"as_of": AS_OF}, self.read_key)
        self.assertEqual(r.status, 403, r)

    def test_fit_rejects_bad_parameters(self):
        r = server.post("/v1/models/clv/fit", {"as_of": "1997-02-30"}, self.key)
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.json["errors"][0]["field"], "as_of")
        r = server.post("/v1/models/clv/fit", {"as_of": AS_OF, "horizon": 3}, self.key)
        self.assertEqual(r.status, 422, r)
        r = server.post("/v1/models/clv/fit", "{", self.key, content_type="application/json")
        self.assertEqual(r.status, 400, r)

    def test_fit_from_query_and_cli(self):
        r = server.post(f"/v1/models/clv/fit?as_of={AS_OF}", None, self.key)
        self.assertEqual(r.status, 201, r)
        self.check_published(strict_json(r)["model"])
        out = server.cli("fit", "--tenant", self.tenant, "--as-of", AS_OF)
        text = out.stdout
        vals = dict(kv.split("=") for kv in text.split() if "=" in kv and kv.split("=")[0] in
                    ("r", "alpha", "a", "b", "p", "q", "v"))
        self.assertEqual(sig3(float(vals["r"])), 0.243, text)
        self.assertEqual(sig3(float(vals["a"])), 0.793, text)
        self.assertEqual(sig3(float(vals["alpha"])), 30.9, text)
        self.assertEqual(sig3(float(vals["q"])), 3.74, text)
        self.assertIn("2357 (946 repeat)", text)
        self.assertIn("log-likelihood", text)
        print(f"\n`retentiond fit` on CDNOW:\n{text}")
        bad = server.cli("fit", "--tenant", "no-such-tenant", check=False)
        self.assertEqual(bad.returncode, 3)
        # the instant that ends 30 September is the same observation end
        r = server.post("/v1/models/clv/fit", {"as_of": "1997-10-01T00:00:00Z"}, self.key)
        self.assertEqual(r.status, 201, r)
        self.check_published(strict_json(r)["model"])
        # and the day before is not: 30 September's orders are left out, T a day shorter
        r = server.post("/v1/models/clv/fit", {"as_of": "1997-09-29"}, self.key)
        self.assertEqual(r.status, 201, r)
        self.assertNotEqual(sig3(strict_json(r)["model"]["bgnbd"]["r"]), 0.243)
        server.post("/v1/models/clv/fit", {"as_of": AS_OF}, self.key)  # leave the published fit newest

    def test_metrics_after_fit(self):
        r = server.get("/v1/metrics/clv", self.read_key)
        self.assertEqual(r.status, 200, r)
        body = strict_json(r)
        self.check_published(body["model"])
        d = body["predictions"]["predicted_clv"]
        self.assertEqual(d["count"], 2357)
        qs = [d[k] for k in ("min", "p10", "p25", "p50", "p75", "p90", "p99", "max")]
        self.assertEqual(qs, sorted(qs))
        self.assertGreater(d["p99"], d["p10"])
        self.assertAlmostEqual(d["sum"], d["mean"] * d["count"], delta=1e-6 * d["sum"])
        self.assertEqual(body["predictions"]["predicted_clv_months"], 12)

    def test_profile_matches_closed_form(self):
        r_, alpha, a, b = PUB["r"], PUB["alpha_weeks"] * 7, PUB["a"], PUB["b"]
        # a spread of customers: x = 0, 1, 2, several, long and short recency
        ids = [1, 2, 3, 18, 50, 100, 1000, 2000]
        ids += sorted(self.summary, key=lambda c: -self.summary[c][0])[:3]
        for cid in ids:
            x, t_x, T, mbar = self.summary[cid]
            resp = server.get(f"/v1/customers/{cid}?as_of={AS_OF}", self.read_key)
            self.assertEqual(resp.status, 200, resp)
            p = strict_json(resp)
            inp = p["prediction_inputs"]
            self.assertEqual((inp["x"], inp["t_x"], inp["T"]), (x, t_x, T), cid)
            self.assertAlmostEqual(inp["mbar"], mbar, places=6)
            want = p_alive(x, t_x, T, r_, alpha, a, b)
            self.assertAlmostEqual(p["p_alive"], want, delta=1e-3, msg=f"customer {cid}")
            self.assertAlmostEqual(p["churn_probability"], 1 - p["p_alive"], places=12)
            self.assertAlmostEqual(p["total_clv"], float(p["net_revenue"]) + p["predicted_clv"], places=6)
            self.assertGreaterEqual(p["predicted_clv"], 0)
            self.assertEqual(p["model"], "fitted")
            # the stored prediction of the fit (same as_of, 90 days, 12 months) agrees with the live one
            stored = p["prediction"]
            self.assertAlmostEqual(stored["p_alive"], p["p_alive"], places=9)
            self.assertAlmostEqual(stored["expected_orders_90d"], p["expected_orders"], places=9)
            self.assertAlmostEqual(stored["predicted_clv_12m"], p["predicted_clv"], delta=1e-9 * (1 + p["predicted_clv"]))
            if p["status"] == "active":
                self.assertGreaterEqual(p["p_alive"], p["settings"]["at_risk_p_alive"])

    def test_profile_expected_orders_published_example(self):
        # FHL 2005: x = 2, t_x = 30.43, T = 38.86 weeks (customer 1) -> 1.226 purchases in 39 weeks.
        p = strict_json(server.get(f"/v1/customers/1?as_of={AS_OF}&days=273", self.read_key))
        self.assertAlmostEqual(p["expected_orders"], 1.226, delta=0.002)
        self.assertEqual(p["prediction_inputs"]["days"], 273)
        # expected purchases in 273 days exceed 1, so the next order is expected within them
        nxt = datetime.datetime.fromisoformat(p["expected_next_order_at"].replace("Z", "+00:00"))
        self.assertLess(nxt, datetime.datetime(1997, 10, 1, tzinfo=datetime.timezone.utc)
                        + datetime.timedelta(days=273))
        self.assertGreater(nxt, datetime.datetime(1997, 10, 1, tzinfo=datetime.timezone.utc))
        # 12 months with 1 % monthly discount vs 24 months: more horizon, more value
        p24 = strict_json(server.get(f"/v1/customers/1?as_of={AS_OF}&horizon_months=24", self.read_key))
        self.assertGreater(p24["predicted_clv"], p["predicted_clv"])

    def test_profile_low_p_alive_is_at_risk(self):
        # customers who repeated early and then went silent: P(alive) small
        low = [c for c, (x, t_x, T, _) in self.summary.items()
               if x >= 1 and p_alive(x, t_x, T, PUB["r"], PUB["alpha_weeks"] * 7, PUB["a"], PUB["b"]) < 0.3]
        self.assertTrue(low)
        p = strict_json(server.get(f"/v1/customers/{low[0]}?as_of={AS_OF}", self.read_key))
        self.assertLess(p["p_alive"], 0.5)
        self.assertIn(p["status"], ("at_risk", "lapsed"))

    def test_profile_without_orders(self):
        r = server.post("/v1/customers", {"customer_id": "prospect-1", "email": "p@example.com"}, self.key)
        self.assertIn(r.status, (200, 201), r)
        p = strict_json(server.get(f"/v1/customers/prospect-1?as_of={AS_OF}", self.read_key))
        self.assertEqual(p["model"], "fitted")
        self.assertIsNone(p["p_alive"])
        self.assertIsNone(p["total_clv"])
        self.assertIn("no qualifying order", p["prediction_detail"])

    def test_list_sorted_by_p_alive(self):
        seen, cursor, pages = [], None, 0
        while pages < 10:
            q = "/v1/customers?sort=p_alive&min_p_alive=0.5&limit=500" + (f"&cursor={cursor}" if cursor else "")
            r = server.get(q, self.read_key)
            self.assertEqual(r.status, 200, r)
            body = strict_json(r)
            seen += [c["p_alive"] for c in body["customers"]]
            cursor, pages = body["next_cursor"], pages + 1
            if not cursor:
                break
        self.assertTrue(seen)
        self.assertTrue(all(v >= 0.5 for v in seen))
        self.assertEqual(seen, sorted(seen, reverse=True))
        # everyone with p_alive >= 0.5 at the fit's as_of, as computed here from the raw file
        r_, alpha, a, b = PUB["r"], PUB["alpha_weeks"] * 7, PUB["a"], PUB["b"]
        want = sum(1 for (x, t_x, T, _) in self.summary.values() if p_alive(x, t_x, T, r_, alpha, a, b) >= 0.5)
        self.assertAlmostEqual(len(seen), want, delta=5)


class Degenerate(unittest.TestCase):
    """Shops whose data cannot identify the model: a plain 422 or a finite model; never a 500 or NaN."""

    def shop(self, orders):
        tenant, key = server.tenant()
        items = [{"kind": "order", "order_id": f"o{i}", "customer_id": cid, "placed_at": at, "total": total}
                 for i, (cid, at, total) in enumerate(orders)]
        r = server.post("/v1/batch", items, key)
        self.assertEqual(r.json["accepted"], len(items), r)
        return tenant, key

    def check(self, orders, expect_422=None, as_of="2026-01-01"):
        tenant, key = self.shop(orders)
        r = server.post("/v1/models/clv/fit", {"as_of": as_of}, key)
        self.assertIn(r.status, (201, 422), r)
        body = strict_json(r)
        if expect_422 is not None:
            self.assertEqual(r.status, 422, r)
            self.assertIn(expect_422, body["detail"])
            self.assertEqual(r.headers["content-type"].split(";")[0], "application/problem+json")
            n = pg.scalar("SELECT count(*) FROM clv_models m JOIN tenants t USING (tenant_id) WHERE t.name = :'v1'",
                          tenant)
            self.assertEqual(n, "0")
            cli = server.cli("fit", "--tenant", tenant, "--as-of", as_of, check=False)
            self.assertEqual(cli.returncode, 1, cli)
            self.assertIn(expect_422, cli.stderr)
        else:
            print(f"\n{self.id().split('.')[-1]}: {r.status} {body.get('detail') or body['model']['bgnbd']}")
        if expect_422 is None and r.status == 201:
            for k, v in list(body["model"]["bgnbd"].items()) + list(body["model"]["gamma_gamma"].items()):
                self.assertTrue(v is None or math.isfinite(v), (k, v))
        m = server.get("/v1/metrics/clv", key)
        self.assertEqual(m.status, 200, m)
        strict_json(m)
        p = server.get(f"/v1/customers/{orders[0][0]}?as_of={as_of}", key)
        self.assertEqual(p.status, 200, p)
        strict_json(p)
        lst = server.get("/v1/customers?sort=p_alive&min_p_alive=0.5", key)
        self.assertEqual(lst.status, 200, lst)
        return r

    def test_no_orders_at_all(self):
        tenant, key = server.tenant()
        r = server.post("/v1/models/clv/fit", None, key)
        self.assertEqual(r.status, 422, r)
        self.assertIn("too little data", r.json["detail"])

    def test_one_customer(self):
        self.check([("solo", "2025-01-05T10:00:00Z", "10"), ("solo", "2025-03-05T10:00:00Z", "20"),
                    ("solo", "2025-06-05T10:00:00Z", "30")], expect_422="at least 3 customers")

    def test_nobody_repeats(self):
        self.check([(f"c{i}", f"2025-0{1 + i % 9}-1{i % 10}T10:00:00Z", str(10 + i)) for i in range(20)],
                   expect_422="ordered again")

    def test_all_orders_on_one_day(self):
        orders = []
        for i in range(10):
            orders += [(f"c{i}", "2025-05-05T08:00:00Z", "10"), (f"c{i}", "2025-05-05T20:00:00Z", "15")]
        self.check(orders, expect_422="ordered again")

    def test_orders_after_as_of_are_ignored(self):
        self.check([(f"c{i}", "2027-01-01T00:00:00Z", "10") for i in range(5)], expect_422="there are 0")

    def test_clockwork_shop(self):
        # everyone orders every 10 days for the same amount: either refused plainly or finite
        orders = [(f"c{i}", (datetime.date(2025, 1, 1) + datetime.timedelta(days=i + 10 * k)).isoformat()
                   + "T12:00:00Z", "25") for i in range(8) for k in range(20)]
        self.check(orders)

    def test_two_repeaters_among_few(self):
        orders = [("a", "2025-01-01T00:00:00Z", "10"), ("a", "2025-02-01T00:00:00Z", "30"),
                  ("b", "2025-01-10T00:00:00Z", "5"), ("b", "2025-04-01T00:00:00Z", "7"),
                  ("b", "2025-05-01T00:00:00Z", "9"), ("c", "2025-03-01T00:00:00Z", "50"),
                  ("d", "2025-06-01T00:00:00Z", "20")]
        self.check(orders)


class ScheduledRefit(unittest.TestCase):
    def test_refit_runs_and_stops_promptly(self):
        tenant, key = server.tenant()
        items = []
        for i in range(40):
            for k in range(1 + i % 4):
                d = datetime.date(2025, 1, 1) + datetime.timedelta(days=(i * 7 + k * (20 + i)) % 300)
                items.append({"kind": "order", "order_id": f"{i}-{k}", "customer_id": f"c{i}",
                              "placed_at": d.isoformat() + "T12:00:00Z", "total": str(10 + (i * 13 + k * 7) % 50)})
        self.assertEqual(server.post("/v1/batch", items, key).json["accepted"], len(items))
        second = Server(pg, CLV_REFIT_INTERVAL=1).start()
        try:
            deadline = time.time() + 30
            while time.time() < deadline and "scheduled clv refit" not in second.read_log():
                time.sleep(0.2)
            self.assertIn("scheduled clv refit", second.read_log())
        finally:
            t0 = time.time()
            rc = second.stop()
            stop_s = time.time() - t0
        self.assertEqual(rc, 0)
        self.assertLess(stop_s, 10)
        n = pg.scalar("SELECT count(*) FROM clv_models m JOIN tenants t USING (tenant_id) WHERE t.name = :'v1'",
                      tenant)
        r = server.get("/v1/metrics/clv", key)
        self.assertEqual(r.status, 200, r)
        if int(n):
            self.assertIsNotNone(strict_json(r)["model"])


if __name__ == "__main__":
    unittest.main()
