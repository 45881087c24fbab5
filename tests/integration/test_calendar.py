"""The shop's calendar (SPEC §8): a tenant's IANA time zone cuts its days, ISO weeks, months,
cohorts, activity windows, ladder days and CLV purchase days.

A hand-built Berlin shop, each expected figure derived by hand in the comments (orders at 22:30
and 23:30 UTC on the last day of March and October, the daylight-saving nights, a week across
a month, a 7-day window across the spring change); the same orders in a UTC tenant show what
changes. A generated shop in two zones is then checked against an independent computation
that converts times with Python's zoneinfo, both from the report snapshot and streamed. When
a customer becomes known is business time only."""
import datetime
import random
import time
import unittest
import uuid
import zoneinfo

from harness import Server, module_cluster

pg = server = stream_server = None
UTC = datetime.timezone.utc
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
# the upkeep every second: the ladder's days are compacted at once
_cluster_up, _cluster_down = module_cluster(globals(), UPKEEP_INTERVAL=1)


def setUpModule():
    global stream_server
    _cluster_up()
    stream_server = Server(pg, REPORT_SNAPSHOT_MB=0).start()   # the same reports, streamed


def tearDownModule():
    if stream_server:
        stream_server.stop()
    _cluster_down()


def tenant(zone=None):
    name = "t" + uuid.uuid4().hex[:12]
    args = ["tenant", "create", name] + (["--timezone", zone] if zone else [])
    out = server.cli(*args)
    assert f"time zone {zone or 'UTC'}" in out.stdout, out.stdout
    return name, server.key(name, "ingest,read,admin")


def order(cid, placed, oid=None, total="10"):
    return {"kind": "order", "order_id": oid or f"{cid}-{placed}", "customer_id": cid, "placed_at": placed,
            "total": total}


def get(path, key, srv=None):
    r = (srv or server).get(path, key)
    assert r.status == 200, r
    return r.json


def at(s):
    return datetime.datetime.fromisoformat(s)


# Each customer's one order (G has two), in UTC, and what it is in Berlin:
HAND = [
    order("A", "2026-03-31T22:30:00Z"),   # Berlin Wed 1 Apr 00:30 CEST: April; UTC: March
    order("B", "2026-03-31T21:30:00Z"),   # Berlin Tue 31 Mar 23:30 CEST: March in both
    order("C", "2026-10-31T22:30:00Z"),   # Berlin Sat 31 Oct 23:30 CET: October in both
    order("D", "2026-10-31T23:30:00Z"),   # Berlin Sun 1 Nov 00:30 CET: November; UTC: October
    order("E", "2026-03-29T22:30:00Z"),   # Berlin Mon 30 Mar 00:30 CEST (the night after the
                                          # spring change): week of 30 Mar; UTC: Sun 29, week of 23 Mar
    order("F", "2026-03-24T22:30:00Z"),   # Berlin Tue 24 Mar 23:30 CET
    order("G", "2026-05-10T21:30:00Z", "G1"),   # Berlin 10 May 23:30 CEST
    order("G", "2026-05-10T22:30:00Z", "G2"),   # Berlin 11 May 00:30 CEST: a second purchase day
]


class HandBuiltBerlinShop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.berlin, cls.bkey = tenant("Europe/Berlin")
        cls.utc, cls.ukey = tenant()
        for key in (cls.bkey, cls.ukey):
            r = server.post("/v1/batch", HAND, key)
            assert r.json["rejected"] == 0, r

    def cohorts(self, key):
        body = get("/v1/metrics/cohorts?from=2026-01-01&to=2027-01-01&period=month", key)
        return body, {c["cohort"]: c["size"] for c in body["cohorts"]}

    def test_months_and_cohort_labels_are_local(self):
        body, sizes = self.cohorts(self.bkey)
        self.assertEqual(body["timezone"], "Europe/Berlin")
        # from and to are dates: local midnights
        self.assertEqual((body["from"], body["to"]), ("2026-01-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00"))
        self.assertEqual(sizes, {"2026-03-01T00:00:00+01:00": 3,    # B, E, F
                                 "2026-04-01T00:00:00+02:00": 1,    # A
                                 "2026-05-01T00:00:00+02:00": 1,    # G
                                 "2026-10-01T00:00:00+02:00": 1,    # C
                                 "2026-11-01T00:00:00+01:00": 1})   # D
        body, sizes = self.cohorts(self.ukey)
        self.assertEqual(body["timezone"], "UTC")
        self.assertEqual(sizes, {"2026-03-01T00:00:00+00:00": 4,    # A, B, E, F
                                 "2026-05-01T00:00:00+00:00": 1,
                                 "2026-10-01T00:00:00+00:00": 2})   # C, D

    def test_iso_weeks_are_local_and_daylight_saving_weeks_exact(self):
        body = get("/v1/metrics/retention?from=2026-03-16&to=2026-04-13&period=week", self.bkey)
        self.assertEqual(body["timezone"], "Europe/Berlin")
        rows = [(r["period_start"], r["period_end"], r["N"]) for r in body["series"]]
        self.assertEqual(rows, [
            ("2026-03-16T00:00:00+01:00", "2026-03-23T00:00:00+01:00", 0),
            # the spring change falls in this week: 167 hours
            ("2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 1),   # F
            # a week across a month: 30 March to 5 April
            ("2026-03-30T00:00:00+02:00", "2026-04-06T00:00:00+02:00", 3),   # E, B, A
            ("2026-04-06T00:00:00+02:00", "2026-04-13T00:00:00+02:00", 0)])
        self.assertEqual(at(rows[1][1]) - at(rows[1][0]), datetime.timedelta(hours=167))
        body = get("/v1/metrics/retention?from=2026-03-16&to=2026-04-13&period=week", self.ukey)
        self.assertEqual([r["N"] for r in body["series"]], [0, 2, 2, 0])   # F, E | B, A
        # the autumn change: the week of 19 October has 169 hours
        body = get("/v1/metrics/retention?from=2026-10-19&to=2026-10-26&period=week", self.bkey)
        (row,) = body["series"]
        self.assertEqual((row["period_start"], row["period_end"]),
                         ("2026-10-19T00:00:00+02:00", "2026-10-26T00:00:00+01:00"))
        self.assertEqual(at(row["period_end"]) - at(row["period_start"]), datetime.timedelta(hours=169))

    def test_activity_window_counts_local_days(self):
        # active at 1 April (local midnight) with window=7: an order on 25-31 March, local dates.
        # B (31st) and E (30th) are; F (24th, 23:30 CET) is not, although it is within 7 x 24
        # hours of it (the window is 167 hours long across the spring change)
        body = get("/v1/metrics/summary?from=2026-04-01&to=2026-05-01&window=7", self.bkey)
        self.assertEqual(body["period"], {"from": "2026-04-01T00:00:00+02:00", "to": "2026-05-01T00:00:00+02:00",
                                          "window_days": 7, "timezone": "Europe/Berlin"})
        c = body["counts"]
        self.assertEqual((c["S"], c["N"], c["E"], c["lost"]), (2, 1, 0, 2))   # N: A
        # UTC: [25 March, 1 April) UTC holds E, B and A
        c = get("/v1/metrics/summary?from=2026-04-01&to=2026-05-01&window=7", self.ukey)["counts"]
        self.assertEqual((c["S"], c["N"]), (3, 0))
        # the same windows in a series of months (one boundary on 1 April): S of April
        body = get("/v1/metrics/retention?from=2026-03-01&to=2026-06-01&period=month&window=7", self.bkey)
        self.assertEqual([(r["period_start"], r["S"]) for r in body["series"]],
                         [("2026-03-01T00:00:00+01:00", 0), ("2026-04-01T00:00:00+02:00", 2),
                          ("2026-05-01T00:00:00+02:00", 0)])

    def test_streamed_reports_agree(self):
        for path in ("/v1/metrics/cohorts?from=2026-01-01&to=2027-01-01&period=month",
                     "/v1/metrics/retention?from=2026-03-16&to=2026-04-13&period=week",
                     "/v1/metrics/summary?from=2026-04-01&to=2026-05-01&window=7"):
            a, b = server.get(path, self.bkey), stream_server.get(path, self.bkey)
            self.assertEqual((a.status, a.body), (b.status, b.body), path)

    def test_purchase_days_are_local(self):
        # G's two orders are one UTC day and two Berlin days: one repeat occasion in Berlin
        days = pg.sql("SELECT t.name, c.order_days FROM customers c JOIN tenants t USING (tenant_id)"
                      " WHERE c.customer_id = 'G' AND t.name IN (:'v1', :'v2') ORDER BY t.name = :'v1' DESC",
                      self.berlin, self.utc)
        self.assertEqual([d[1] for d in days], ["2", "1"])

    def test_single_orders_count_local_days_too(self):
        name, key = tenant("Europe/Berlin")
        for o in (HAND[6], HAND[7]):   # one at a time: the per-order ingest path, not the bulk one
            self.assertEqual(server.post("/v1/orders", {k: v for k, v in o.items() if k != "kind"}, key).status, 201)
        self.assertEqual(pg.scalar("SELECT c.order_days FROM customers c JOIN tenants t USING (tenant_id)"
                                   " WHERE c.customer_id = 'G' AND t.name = :'v1'", name), "2")

    def test_as_of_date_is_the_end_of_the_local_day(self):
        p = get("/v1/customers/G?as_of=2026-05-10", self.bkey)
        self.assertEqual(at(p["as_of"]), datetime.datetime(2026, 5, 11, tzinfo=BERLIN))
        p = get("/v1/customers/G?as_of=2026-05-10", self.ukey)
        self.assertEqual(at(p["as_of"]), datetime.datetime(2026, 5, 11, tzinfo=UTC))
        p = get("/v1/customers/G?as_of=2026-05-10T21:45:00Z", self.bkey)   # an instant stays one
        self.assertEqual(at(p["as_of"]), datetime.datetime(2026, 5, 10, 21, 45, tzinfo=UTC))

    def ladder_changes(self, key):
        body = get("/v1/metrics/ladder?from=2026-04-01&to=2026-05-01", key)
        return body["timezone"], sum(t["count"] for t in body["transitions"])

    def wait_compacted(self, name):
        deadline = time.time() + 60
        while time.time() < deadline:
            if pg.scalar("SELECT count(*) FROM stage_history_compacted m JOIN tenants t USING (tenant_id)"
                         " WHERE t.name = :'v1'", name) == "1":
                return
            time.sleep(0.2)
        self.fail(f"the upkeep did not compact {name}'s ladder days")

    def test_ladder_days_are_local_and_a_zone_change_recomputes(self):
        name, key = tenant()
        self.assertEqual(server.post("/v1/batch", HAND, key).json["rejected"], 0)
        # April in UTC: no first order (A's is 31 March UTC); in Berlin: A's, whether read from
        # the raw changes or from the daily aggregate the upkeep compacts
        self.assertEqual(self.ladder_changes(key), ("UTC", 0))
        self.wait_compacted(self.berlin)
        self.assertEqual(self.ladder_changes(self.bkey), ("Europe/Berlin", 1))
        self.wait_compacted(name)
        self.assertEqual(self.ladder_changes(key), ("UTC", 0))
        before = get("/v1/metrics/cohorts?from=2026-01-01&to=2027-01-01&period=month", key)   # loads a snapshot

        out = server.cli("tenant", "set-timezone", name, "Europe/Berlin")
        self.assertIn("Europe/Berlin", out.stdout)
        self.assertEqual(self.ladder_changes(key), ("Europe/Berlin", 1))   # the old days are gone
        self.wait_compacted(name)
        self.assertEqual(self.ladder_changes(key), ("Europe/Berlin", 1))   # and the new ones agree
        # every report now reads as the tenant created in Berlin
        for path in ("/v1/metrics/cohorts?from=2026-01-01&to=2027-01-01&period=month",
                     "/v1/metrics/retention?from=2026-03-16&to=2026-04-13&period=week",
                     "/v1/metrics/summary?from=2026-04-01&to=2026-05-01&window=7",
                     "/v1/metrics/ladder?from=2026-04-01&to=2026-05-01"):
            self.assertEqual(get(path, key), get(path, self.bkey), path)
        self.assertNotEqual(before, get("/v1/metrics/cohorts?from=2026-01-01&to=2027-01-01&period=month", key))
        self.assertEqual(pg.scalar("SELECT c.order_days FROM customers c JOIN tenants t USING (tenant_id)"
                                   " WHERE c.customer_id = 'G' AND t.name = :'v1'", name), "2")


class Zones(unittest.TestCase):
    def test_unknown_zones_are_refused(self):
        name = "t" + uuid.uuid4().hex[:12]
        out = server.cli("tenant", "create", name, "--timezone", "Mars/Olympus_Mons", check=False)
        self.assertEqual(out.returncode, 2, out)
        self.assertIn("unknown time zone \"Mars/Olympus_Mons\"", out.stderr)
        self.assertEqual(pg.scalar("SELECT count(*) FROM tenants WHERE name = :'v1'", name), "0")
        name, key = tenant()
        out = server.cli("tenant", "set-timezone", name, "Europe/Berln", check=False)
        self.assertEqual(out.returncode, 2, out)
        self.assertIn("unknown time zone", out.stderr)
        self.assertEqual(get("/v1/metrics/summary", key)["period"]["timezone"], "UTC")
        out = server.cli("tenant", "set-timezone", "no-such-tenant", "Europe/Berlin", check=False)
        self.assertEqual(out.returncode, 3, out)
        out = server.cli("tenant", "set-timezone", name, "America/New_York")
        self.assertEqual(get("/v1/metrics/summary", key)["period"]["timezone"], "America/New_York")

    def test_default_period_is_the_last_twelve_months(self):
        name, key = tenant("Asia/Tokyo")
        p = get("/v1/metrics/summary", key)["period"]
        self.assertEqual(at(p["to"]) - at(p["from"]) >= datetime.timedelta(days=365), True)
        self.assertTrue(p["to"].endswith("+09:00"), p)


class KnownSince(unittest.TestCase):
    def test_a_visitor_stays_counted_when_they_first_buy_later(self):
        name, key = tenant()
        r = server.post("/v1/batch", [
            {"kind": "event", "event_id": "v1", "customer_id": "V", "type": "page_view",
             "occurred_at": "2025-03-10T10:00:00Z"},
            {"kind": "customer", "customer_id": "R", "created_at": "2024-05-01T00:00:00Z"},
            {"kind": "customer", "customer_id": "L"},            # a record without a date of its own
        ], key)
        self.assertEqual(r.json["rejected"], 0, r)
        path = "/v1/metrics/summary?from=2025-01-01&to=2026-01-01"
        # V (engaged March 2025) and R (created 2024); L has no business time: known in no period
        self.assertEqual(get(path, key)["counts"]["customers"], 2)
        r = server.post("/v1/batch", [order("V", "2026-06-01T12:00:00Z"), order("R", "2026-06-02T12:00:00Z"),
                                      order("L", "2026-06-03T12:00:00Z")], key)
        self.assertEqual(r.json["rejected"], 0, r)
        self.assertEqual(get(path, key)["counts"]["customers"], 2)      # a closed period does not shrink
        self.assertEqual(get("/v1/metrics/summary?from=2026-01-01&to=2027-01-01", key)["counts"]["customers"], 3)


# ---- a generated shop against zoneinfo ----

def local_midnight(d, zone):
    return datetime.datetime(d.year, d.month, d.day, tzinfo=zone)


def unit_start(d, unit):
    if unit == "week":
        return d - datetime.timedelta(days=d.weekday())
    if unit == "month":
        return d.replace(day=1)
    return d.replace(month=(d.month - 1) // 3 * 3 + 1, day=1)


def add_unit(d, unit, k=1):
    if unit == "week":
        return d + datetime.timedelta(weeks=k)
    months = d.month - 1 + k * (3 if unit == "quarter" else 1)
    return d.replace(year=d.year + months // 12, month=months % 12 + 1, day=1)


def oracle_bounds(frm, to, unit, zone):
    """The unit's boundaries as rd_report_frame lays them out: the period before the first, each
    start in [from, to), the end of the last; as local midnights (aware datetimes)."""
    starts, d = [], unit_start(frm, unit)
    while local_midnight(d, zone) < local_midnight(to, zone):
        starts.append(d)
        d = add_unit(d, unit)
    days = [add_unit(starts[0], unit, -1)] + starts + [add_unit(starts[-1], unit)]
    return [local_midnight(x, zone) for x in days]


def window_start(b, days):
    """W calendar days before the local midnight b: wall-clock arithmetic, then the offset of
    the day it lands on (zoneinfo does exactly that for aware datetimes of one zone)."""
    return b - datetime.timedelta(days=days)


class GeneratedShop(unittest.TestCase):
    ZONES = ("Europe/Berlin", "America/New_York")
    W = 30

    @classmethod
    def setUpClass(cls):
        rnd = random.Random(20)
        cls.orders = {}   # customer -> sorted UTC instants
        start = datetime.datetime(2025, 1, 1, tzinfo=UTC)
        items = []
        for c in range(400):
            cid = f"g{c}"
            t = start + datetime.timedelta(minutes=rnd.randrange(0, 700 * 1440))
            times = []
            for k in range(rnd.choice((1, 1, 2, 3, 5))):
                # near midnights often, in either zone: minutes around 22:00-06:00 UTC
                t = t.replace(hour=rnd.choice((21, 22, 23, 0, 3, 4, 5, 12)), minute=rnd.choice((0, 15, 30, 59)))
                times.append(t)
                items.append(order(cid, t.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{cid}-{k}"))
                t += datetime.timedelta(minutes=rnd.randrange(60, 120 * 1440))
            cls.orders[cid] = sorted(times)
        cls.keys = {}
        for zone in cls.ZONES:
            _, key = tenant(zone)
            r = server.post("/v1/batch", items, key)
            assert r.json["rejected"] == 0, r
            cls.keys[zone] = key

    def ordered_in(self, cid, lo, hi):
        return any(lo <= t < hi for t in self.orders[cid])

    def check_series(self, zone, unit, frm, to, srv):
        z = zoneinfo.ZoneInfo(zone)
        body = get(f"/v1/metrics/retention?from={frm}&to={to}&period={unit}&window={self.W}", self.keys[zone], srv)
        b = oracle_bounds(frm, to, unit, z)
        self.assertEqual(len(body["series"]), len(b) - 2)
        for k, row in enumerate(body["series"]):
            lo, hi = b[k + 1], b[k + 2]
            self.assertEqual((at(row["period_start"]), at(row["period_end"])), (lo, hi))
            self.assertEqual(row["period_start"], lo.isoformat())   # written with the local offset
            want = {"S": 0, "E": 0, "N": 0, "lost": 0}
            for cid, times in self.orders.items():
                s = self.ordered_in(cid, window_start(lo, self.W), lo)
                e = self.ordered_in(cid, window_start(hi, self.W), hi)
                want["S"] += s
                want["E"] += e
                want["lost"] += s and not e
                want["N"] += lo <= times[0] < hi
            self.assertEqual({k2: row[k2] for k2 in want}, want, (zone, unit, row["period_start"]))

    def check_cohorts(self, zone, frm, to, srv):
        z = zoneinfo.ZoneInfo(zone)
        body = get(f"/v1/metrics/cohorts?from={frm}&to={to}&period=month", self.keys[zone], srv)
        b = oracle_bounds(frm, to, "month", z)[1:]
        lo_all, hi_all = local_midnight(frm, z), local_midnight(to, z)
        want = {}
        for cid, times in self.orders.items():
            if not lo_all <= times[0] < hi_all:
                continue
            ci = max(i for i in range(len(b) - 1) if b[i] <= times[0])
            size, active = want.setdefault(b[ci].isoformat(), [0, [0] * (len(b) - 1 - ci)])
            want[b[ci].isoformat()][0] += 1
            for j in range(len(b) - 1 - ci):
                active[j] += any(b[ci + j] <= t < b[ci + j + 1] and t < hi_all for t in times)
        got = {c["cohort"]: [c["size"], [x["active"] for x in c["cells"]]] for c in body["cohorts"]}
        self.assertEqual(got, want, zone)

    def test_weeks_months_quarters_and_cohorts_against_zoneinfo(self):
        for srv in (server, stream_server):
            for zone in self.ZONES:
                self.check_series(zone, "week", datetime.date(2025, 10, 1), datetime.date(2026, 4, 15), srv)
                self.check_series(zone, "month", datetime.date(2025, 2, 1), datetime.date(2026, 12, 1), srv)
                self.check_series(zone, "quarter", datetime.date(2025, 1, 1), datetime.date(2026, 10, 1), srv)
                self.check_cohorts(zone, datetime.date(2025, 1, 1), datetime.date(2026, 12, 1), srv)


if __name__ == "__main__":
    unittest.main()
