#!/usr/bin/env python3
"""Deterministic shop-history generator for retentiond's benchmarks (stdlib only).

N customers are acquired uniformly over a two-year window ending at --end. Each buyer
follows a BG/NBD-like process: a personal purchase rate lambda ~ Gamma (orders per year)
and, after every purchase, a dropout probability p ~ Beta; spend per order follows a
Gamma-Gamma-like model (a personal mean spend nu ~ Gamma, each order ~ Gamma around nu).
About 3 % of orders are refunded (a third in full, the rest partially) and about 2 % are
cancelled. Engagement events: visits, reviews with ratings, NPS answers and referrals that
name a customer acquired later. Everything comes from one seeded random.Random, so the same
flags always give byte-identical files.

Outputs (any combination):
  --ndjson FILE    everything in the /v1/batch format: customers, then orders, then events
  --csv FILE       orders only: order_id,customer_id,placed_at,total,refunded,status
  --out-dir DIR    DIR/orders.ndjson (orders only), DIR/extras.ndjson (customers and events),
                   DIR/orders.csv  -- what bench/bench.py uses

  python3 bench/gen.py --customers 10000 --ndjson shop.ndjson     # ~100 k orders
  python3 bench/gen.py --customers 100000 --out-dir /tmp/shop     # ~1 M orders
"""
import argparse
import calendar
import json
import math
import os
import random
import sys
import time

DAY = 86400.0
YEAR = 365.0 * DAY
CHANNELS = ("organic", "paid_search", "social", "email", "affiliate")
RATINGS = (1, 2, 3, 4, 5)
RATING_W = (5, 5, 15, 35, 40)
NPS_W = (2, 1, 1, 2, 2, 4, 6, 10, 18, 25, 29)   # scores 0..10


def parse_end(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%d"))


class Clock:
    """RFC 3339 formatting with a per-day cache (most of the cost of writing the files)."""

    def __init__(self):
        self.days = {}

    def fmt(self, t):
        t = int(t)
        d, s = divmod(t, 86400)
        day = self.days.get(d)
        if day is None:
            day = self.days[d] = time.strftime("%Y-%m-%dT", time.gmtime(d * 86400))
        return "%s%02d:%02d:%02dZ" % (day, s // 3600, s // 60 % 60, s % 60)


def money(x):
    return "%.2f" % x


def generate(n_customers, seed, end):
    """Returns (customers, orders, events) as lists of tuples, orders and events sorted by time."""
    rng = random.Random(seed)
    start = end - 2 * YEAR
    # acquisition times, sorted so that customer c<i> joined before c<i+1> (referrals point forward)
    acq = sorted(rng.uniform(start, end - DAY) for _ in range(n_customers))
    customers = []   # (id, created_at, channel, email)
    orders = []      # (placed_at, customer, total, refunded, status)
    events = []      # (occurred_at, customer, type, properties)
    for i in range(n_customers):
        cid = i + 1
        t0 = acq[i]
        channel = CHANNELS[rng.randrange(len(CHANNELS))]
        customers.append((cid, t0, channel))
        buyer = rng.random() < 0.9
        if not buyer:
            # engaged but never bought: a few visits
            for _ in range(1 + int(rng.expovariate(1.0))):
                events.append((rng.uniform(t0, end), cid, "visit", None))
            continue
        lam = rng.gammavariate(1.6, 15.0) / YEAR       # orders per second (mean ~24 a year)
        p = rng.betavariate(2.0, 30.0)                  # dropout after each purchase (mean ~0.06)
        nu = rng.gammavariate(4.0, 15.0)                # personal mean spend (~60)
        t = t0 + rng.uniform(0, 3600)
        n = 0
        while t < end:
            z = max(1.0, rng.gammavariate(6.0, nu / 6.0))
            u = rng.random()
            if u < 0.02:
                status, refunded = "cancelled", 0.0
            elif u < 0.03:
                status, refunded = "refunded", z
            elif u < 0.05:
                status, refunded = "fulfilled", round(z * rng.uniform(0.1, 0.9), 2)
            else:
                status, refunded = ("fulfilled" if t < end - 14 * DAY else "paid"), 0.0
            orders.append((t, cid, z, refunded, status))
            n += 1
            if rng.random() < 0.15:                     # a review a few days later
                rt = t + rng.uniform(DAY, 20 * DAY)
                if rt < end:
                    events.append((rt, cid, "review", {"rating": rng.choices(RATINGS, RATING_W)[0]}))
            if rng.random() < 0.35:                     # a visit around the order
                vt = t - rng.uniform(0, 3 * DAY)
                events.append((max(vt, t0), cid, "visit", None))
            if rng.random() < p:
                break
            t += rng.expovariate(lam) if lam > 0 else end
        if rng.random() < 0.2:                          # one NPS answer
            events.append((rng.uniform(t0, end), cid, "nps", {"score": rng.choices(range(11), NPS_W)[0]}))
        if rng.random() < 0.05 and i + 1 < n_customers:  # brought a later customer
            j = rng.randrange(i + 1, min(n_customers, i + 2000))
            rt = max(t0, acq[j] - rng.uniform(0, 2 * DAY))
            events.append((rt, cid, "referral", {"referred_customer_id": "c%d" % (j + 1)}))
    orders.sort(key=lambda o: o[0])
    events.sort(key=lambda e: e[0])
    return customers, orders, events


def write_customers(f, customers, clock):
    for cid, t0, channel in customers:
        f.write('{"kind":"customer","customer_id":"c%d","email":"c%d@example.com","created_at":"%s","channel":"%s"}\n'
                % (cid, cid, clock.fmt(t0), channel))


def write_orders(f, orders, clock):
    for k, (t, cid, total, refunded, status) in enumerate(orders, 1):
        ts = clock.fmt(t)
        if refunded:
            f.write('{"kind":"order","order_id":"o%d","customer_id":"c%d","placed_at":"%s","total":"%s",'
                    '"refunded":"%s","status":"%s"}\n' % (k, cid, ts, money(total), money(refunded), status))
        else:
            f.write('{"kind":"order","order_id":"o%d","customer_id":"c%d","placed_at":"%s","total":"%s",'
                    '"status":"%s"}\n' % (k, cid, ts, money(total), status))


def write_events(f, events, clock):
    for k, (t, cid, typ, props) in enumerate(events, 1):
        f.write('{"kind":"event","event_id":"e%d","customer_id":"c%d","type":"%s","occurred_at":"%s","properties":%s}\n'
                % (k, cid, typ, clock.fmt(t), json.dumps(props, separators=(",", ":")) if props else "{}"))


def write_csv(f, orders, clock):
    f.write("order_id,customer_id,placed_at,total,refunded,status\n")
    for k, (t, cid, total, refunded, status) in enumerate(orders, 1):
        f.write("o%d,c%d,%s,%s,%s,%s\n" % (k, cid, clock.fmt(t), money(total), money(refunded), status))


def stats(customers, orders, events):
    by_type = {}
    for e in events:
        by_type[e[2]] = by_type.get(e[2], 0) + 1
    return {
        "customers": len(customers),
        "buyers": len({o[1] for o in orders}),
        "orders": len(orders),
        "refunded_full": sum(1 for o in orders if o[4] == "refunded"),
        "refunded_partial": sum(1 for o in orders if o[4] != "refunded" and o[3]),
        "cancelled": sum(1 for o in orders if o[4] == "cancelled"),
        "events": len(events),
        "events_by_type": by_type,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=10000, help="customers (about 10 orders each)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--end", default="2026-11-01", help="end of the two-year history (YYYY-MM-DD)")
    ap.add_argument("--ndjson", help="write everything as one NDJSON file")
    ap.add_argument("--csv", help="write the orders as CSV")
    ap.add_argument("--out-dir", help="write orders.ndjson, extras.ndjson and orders.csv here")
    ap.add_argument("--stats", help="write the counts as JSON here ('-' = stdout)")
    a = ap.parse_args(argv)
    if not (a.ndjson or a.csv or a.out_dir or a.stats):
        ap.error("nothing to write: give --ndjson, --csv, --out-dir or --stats")

    customers, orders, events = generate(a.customers, a.seed, parse_end(a.end))
    clock = Clock()
    big = 1 << 20
    if a.ndjson:
        with open(a.ndjson, "w", buffering=big) as f:
            write_customers(f, customers, clock)
            write_orders(f, orders, clock)
            write_events(f, events, clock)
    if a.csv:
        with open(a.csv, "w", buffering=big) as f:
            write_csv(f, orders, clock)
    if a.out_dir:
        os.makedirs(a.out_dir, exist_ok=True)
        with open(os.path.join(a.out_dir, "orders.ndjson"), "w", buffering=big) as f:
            write_orders(f, orders, clock)
        with open(os.path.join(a.out_dir, "extras.ndjson"), "w", buffering=big) as f:
            write_customers(f, customers, clock)
            write_events(f, events, clock)
        with open(os.path.join(a.out_dir, "orders.csv"), "w", buffering=big) as f:
            write_csv(f, orders, clock)
    st = stats(customers, orders, events)
    if a.stats:
        s = json.dumps(st, indent=2, sort_keys=True)
        if a.stats == "-":
            print(s)
        else:
            with open(a.stats, "w") as f:
                f.write(s + "\n")
    else:
        print("gen: %(customers)d customers (%(buyers)d buyers), %(orders)d orders "
              "(%(refunded_full)d fully and %(refunded_partial)d partly refunded, %(cancelled)d cancelled), "
              "%(events)d events" % st, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
