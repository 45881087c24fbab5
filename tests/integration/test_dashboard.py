"""The dashboard (GET /) and what it reads beyond the reports: the RFM grid
(GET /v1/metrics/rfm), the customer list's r and f filters (JSON pages and the CSV export),
the predicted-CLV histogram (GET /v1/metrics/clv) and a customer's orders and rung history.

Everything runs on the demo shop (`retentiond demo`). The API's answers are held to plain
SQL over the raw orders and the stored predictions, with the quintiles, percentiles and bins
computed here in Python; then headless Chromium (tests/node/dashboard.mjs) opens the page and
every panel's numbers are held to the API's replies."""
import calendar
import csv
import io
import json
import math
import os
import subprocess
import unittest
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlencode

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


def months_back(day, n):
    """The day n months before, clamped to the month's end (the page's addMonths)."""
    y, m = divmod(day.year * 12 + day.month - 1 - n, 12)
    return date(y, m + 1, min(day.day, calendar.monthrange(y, m + 1)[1]))


def usd(v):
    return "–" if v is None else ("-" if v < 0 else "") + f"${abs(v):,.2f}"


class Browser(unittest.TestCase):
    """Headless Chromium walks the page (tests/node/dashboard.mjs); every number it showed is
    the API's for the period and options it showed it for."""

    @classmethod
    def setUpClass(cls):
        s = demo_shop()
        cls.key = s["key"]
        cls.artifacts = os.path.join(ROOT, "tests", "artifacts")
        os.makedirs(cls.artifacts, exist_ok=True)
        cls.days = {datetime.now(timezone.utc).date()}
        out = subprocess.run(["node", os.path.join(ROOT, "tests", "node", "dashboard.mjs"),
                              f"http://127.0.0.1:{server.port}", cls.key, cls.artifacts],
                             capture_output=True, text=True, cwd=os.path.join(ROOT, "tests", "node"), timeout=900)
        cls.days.add(datetime.now(timezone.utc).date())
        assert out.returncode == 0, out.stderr + out.stdout[-2000:]
        cls.shown = json.loads(out.stdout)

    def api(self, path, **params):
        r = server.get(path + ("?" + urlencode(params) if params else ""), self.key)
        self.assertEqual(r.status, 200, r)
        return r.json

    def check_reports(self, step, unit, **filters):
        period = dict(frm=step["from"], to=step["to"])
        q = {"from": step["from"], "to": step["to"], **filters}
        summary = self.api("/v1/metrics/summary", **q)
        prev = self.api("/v1/metrics/summary", **{**q, "from": step["prev_from"], "to": step["from"]})
        days = (date.fromisoformat(step["to"]) - date.fromisoformat(step["from"])).days
        self.assertEqual(date.fromisoformat(step["prev_from"]), date.fromisoformat(step["from"]) - timedelta(days=days))
        for name, get in (("customers", lambda x: x["counts"]["customers"]), ("active", lambda x: x["counts"]["E"]),
                          ("new", lambda x: x["counts"]["N"]), ("lost", lambda x: x["counts"]["lost"]),
                          ("revenue", lambda x: x["counts"]["revenue"]), ("orders", lambda x: x["counts"]["orders"]),
                          ("retention_rate", lambda x: x["metrics"]["retention_rate"]),
                          ("churn_rate", lambda x: x["metrics"]["churn_rate"]),
                          ("average_order_value", lambda x: x["metrics"]["average_order_value"]),
                          ("cac", lambda x: x["metrics"]["cac"])):
            self.assertEqual(step["kpi"][name]["value"], get(summary), (name, period))
            self.assertEqual(step["kpi"][name]["previous"], get(prev), (name, period))
        self.assertEqual(step["kpi"]["customers"]["text"], f"{summary['counts']['customers']:,}")
        self.assertEqual(step["kpi"]["revenue"]["text"], usd(summary["counts"]["revenue"]))
        self.assertEqual(step["kpi"]["average_order_value"]["text"], usd(summary["metrics"]["average_order_value"]))
        d = summary["counts"]["revenue"] - prev["counts"]["revenue"]
        self.assertTrue(step["kpi"]["revenue"]["delta"].startswith(("▲ +" if d > 0 else "▼ −" if d < 0 else "■ +")
                                                                    + usd(abs(d))), step["kpi"]["revenue"])
        series = self.api("/v1/metrics/retention", **q, period=unit)["series"]
        want = [{"series": name, "period": p["period_start"], "value": p[key]}
                for key, name in (("retention_rate", "retention"), ("churn_rate", "churn"))
                for p in series if p[key] is not None]
        self.assertEqual(step["unit"], unit)
        self.assertEqual(step["points"], want)
        self.assertTrue(step["x_ticks"] and step["y_ticks"][0] == "0 %")
        cohorts = self.api("/v1/metrics/cohorts", **q, period="month" if unit == "week" else unit)["cohorts"]
        self.check_cohorts(step["cohort_cells"], cohorts, "share")
        ladder = self.api("/v1/metrics/ladder", **{"from": step["from"], "to": step["to"]})
        self.assertEqual(step["stages"], {s["stage"]: s["count"] for s in ladder["stages"]})
        self.assertEqual(step["transitions"], [[t["from"], t["to"], t["count"]] for t in ladder["transitions"]])
        return summary

    def check_cohorts(self, cells, cohorts, mode):
        key = {"share": "share", "count": "active", "revenue": "revenue",
               "cumulative": "cumulative_revenue_per_customer"}[mode]
        width = max((len(c["cells"]) for c in cohorts), default=0)
        want = []
        for c in cohorts:
            for i in range(width):
                cell = c["cells"][i] if i < len(c["cells"]) else None
                want.append({"cohort": c["cohort"], "period": i, "value": cell[key] if cell else None, "future": cell is None})
        self.assertEqual([{k: x[k] for k in ("cohort", "period", "value", "future")} for x in cells], want, mode)
        for x in cells:
            self.assertEqual(x["text"] == "", x["future"])

    def test_start_reads_the_key_and_shows_the_last_12_months(self):
        st = self.shown["steps"]["start"]
        self.assertEqual(self.shown["session_key"], self.key)
        self.assertEqual(st["hash"], "", "the key stays in the visible address")
        self.assertIn(st["to"], {(d + timedelta(days=1)).isoformat() for d in self.days})
        self.assertEqual(st["from"], months_back(date.fromisoformat(st["to"]), 12).isoformat())
        self.check_reports(st, "month")
        self.assertEqual(self.shown["page_errors"], [])
        for name in ("start", "week", "all_quarter", "all_month", "breakdown", "rfm_list"):
            self.assertIsNone(self.shown["steps"][name]["error"], name)

    def test_tooltip_says_the_periods_values(self):
        st = self.shown["steps"]["start"]
        series = self.api("/v1/metrics/retention", **{"from": st["from"], "to": st["to"]}, period="month")["series"]
        p = series[3]
        pct = lambda x: "–" if x is None else f"{100 * x:.1f}%"
        self.assertEqual(self.shown["tooltip"]["period"], p["period_start"])
        self.assertEqual(self.shown["tooltip"]["text"], f"{p['period_start'][:7]} · retention {pct(p['retention_rate'])} · "
                                                        f"churn {pct(p['churn_rate'])} · active {p['E']:,} of {p['S']:,}")

    def test_period_and_chart_mode_switches(self):
        steps = self.shown["steps"]
        self.check_reports(steps["week"], "week")
        first = self.api("/v1/metrics/rfm")["first_order_at"][:10]
        self.assertEqual(steps["all_quarter"]["from"], first)
        self.check_reports(steps["all_quarter"], "quarter")
        self.check_reports(steps["all_month"], "month")
        self.assertGreater(len(steps["all_month"]["cohort_cells"]), 10)
        self.assertTrue(any(c["future"] for c in steps["all_month"]["cohort_cells"]))
        q = {"from": steps["all_quarter"]["from"], "to": steps["all_quarter"]["to"], "period": "quarter"}
        cohorts = self.api("/v1/metrics/cohorts", **q)["cohorts"]
        for mode in ("count", "revenue", "cumulative", "share"):
            self.check_cohorts(steps["cohorts_" + mode], cohorts, mode)

    def test_breakdown_and_its_filter(self):
        steps = self.shown["steps"]
        st = steps["breakdown"]
        b = self.api("/v1/metrics/summary", **{"from": st["from"], "to": st["to"]}, breakdown="channel")
        self.assertEqual(st["breakdown"], [[e["value"], e["customers"]] for e in b["entries"]])
        filtered = self.check_reports(steps["filtered"], "month", channel="search")
        self.assertEqual(filtered["filters"], {"channel": "search"})

    def test_rfm_histogram_and_lists(self):
        steps = self.shown["steps"]
        grid = self.api("/v1/metrics/rfm")
        self.assertEqual(sorted(steps["start"]["rfm"]), sorted([c["r"], c["f"], c["customers"]] for c in grid["cells"]))
        bins = self.api("/v1/metrics/clv")["predictions"]["histogram"]["bins"]
        self.assertEqual(steps["start"]["bins"], [b["customers"] for b in bins])
        self.assertEqual(steps["start"]["list_query"], "status=at_risk&sort=predicted_clv")
        page = self.api("/v1/customers", status="at_risk", sort="predicted_clv", limit=25)
        self.assertEqual(steps["start"]["list"], [c["customer_id"] for c in page["customers"]])
        # the cell R5 F5 opened its list, and its next page
        self.assertEqual(steps["rfm_list"]["list_query"], "r=5&f=5&sort=net_revenue")
        p1 = self.api("/v1/customers", r=5, f=5, sort="net_revenue", limit=25)
        p2 = self.api("/v1/customers", r=5, f=5, sort="net_revenue", limit=25, cursor=p1["next_cursor"])
        self.assertEqual(steps["rfm_list"]["list"], [c["customer_id"] for c in p1["customers"]])
        self.assertEqual(steps["rfm_list_page2"]["list"], [c["customer_id"] for c in p2["customers"]])
        cell = next(c for c in grid["cells"] if (c["r"], c["f"]) == (5, 5))
        r = server.get("/v1/customers?" + urlencode({"sort": "net_revenue", "r": 5, "f": 5, "format": "csv"}), self.key)
        self.assertEqual(self.shown["csv"]["body"], r.body.decode())
        self.assertEqual(len(list(csv.reader(io.StringIO(self.shown["csv"]["body"])))), cell["customers"] + 1)
        self.assertRegex(self.shown["csv"]["name"], r"^customers-\d{4}-\d\d-\d\d\.csv$")

    def test_customer_page(self):
        c = self.shown["customer"]
        p = self.api(f"/v1/customers/{c['id']}")
        shown = c["profile"]
        self.assertEqual((shown["stage"], shown["status"], shown["order_count"]), (p["stage"], p["status"], str(p["order_count"])))
        self.assertEqual(shown["net_revenue"], usd(p["net_revenue"]))
        self.assertEqual(shown["predicted_clv"], usd(p["predicted_clv"]))
        self.assertEqual(shown["rfm"].split(" · ")[0], f"R{p['rfm']['r']} F{p['rfm']['f']} M{p['rfm']['m']}")
        self.assertEqual(shown["last_order_at"], p["last_order_at"][:10])
        h = self.api(f"/v1/customers/{c['id']}/history")["changes"]
        self.assertEqual(c["history"], [[x["changed_at"][:10], x["from"], x["to"]] for x in h])
        orders = self.api(f"/v1/customers/{c['id']}/orders", limit=1000)["orders"]
        self.assertEqual(c.get("orders_more", c["orders"]), [o["order_id"] for o in orders])
        self.assertEqual(c["orders"], [o["order_id"] for o in orders[:20]])

    def test_failures_show_the_problem_detail(self):
        bad = self.shown["steps"]["bad_period"]
        r = server.get("/v1/metrics/summary?from=2026-06-01&to=2026-01-01", self.key)
        self.assertEqual(r.status, 400)
        self.assertEqual(bad["error"]["detail"], r.json["detail"])
        self.assertEqual(bad["error"]["fields"], [f"{e['field']}: {e['message']}" for e in r.json["errors"]])
        r = server.get("/v1/metrics/summary", "rk_0000000000000000_notakey")
        self.assertEqual(r.status, 401)
        self.assertEqual(self.shown["bad_key"]["error"]["detail"], r.json["detail"])
        self.assertTrue(self.shown["bad_key"]["key_form"])

    def test_screenshots_at_desktop_and_phone_widths(self):
        self.assertFalse(self.shown["phone_overflow"], "the page is wider than a 390 px screen")
        for name in ("dashboard-desktop.png", "dashboard-phone.png"):
            path = os.path.join(self.artifacts, name)
            self.assertGreater(os.path.getsize(path), 20000, name)

    def test_page_is_served(self):
        r = server.get("/")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        self.assertIn(b"/v1/metrics/rfm", r.body)


if __name__ == "__main__":
    unittest.main()
