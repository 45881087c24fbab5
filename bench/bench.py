#!/usr/bin/env python3
"""retentiond benchmark suite (`make bench`): the service beside PostgreSQL doing the same work.

Everything runs on this machine against one private PostgreSQL cluster with default (durable)
settings, started with the integration-test harness (tests/integration/harness.py), and the
real server binary on a free port. Speed is measured, never asserted: the output is one table
of figures and ratios (service / PostgreSQL), also written as JSON to
bench/results/bench-<timestamp>.json. See bench/README.md for what each figure means.

  python3 bench/bench.py            # full run: 100 k customers / ~1 M orders
  python3 bench/bench.py --quick    # ~100 k orders, shorter ingest runs
"""
import argparse
import csv
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402  (the integration tests' PostgreSQL + server harness)
import report_sql  # noqa: E402  (bench/report_sql.py: the reports as PostgreSQL statements)

END = "2026-11-01"                   # end of the generated history (gen.py --end)
PERIOD_FROM = "2025-11-01T00:00:00Z"  # reports cover the last 12 months of the history
PERIOD_TO = "2026-11-01T00:00:00Z"
POOL = 10000                         # customers the single-event ingest draws from


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    out = subprocess.run(cmd, **kw)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def ratio(a, b):
    return (a / b) if (a is not None and b) else None


# ---------------------------------------------------------------- machine

def machine(pg):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576)
    fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", pg.dir],
                        capture_output=True, text=True).stdout.strip() or "?"
    settings = dict(r for r in pg.sql(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('fsync','synchronous_commit','shared_buffers','wal_level','max_connections','full_page_writes')"))
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram": mem,
        "kernel": platform.release(),
        "postgresql": pg.scalar("SHOW server_version"),
        "pg_settings": settings,
        "pg_data_fs": fs,
        "wrk": (wrk.stdout + wrk.stderr).splitlines()[0] if (wrk.stdout + wrk.stderr) else "?",
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------- server helpers

def rss_kb(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def check_server(srv, res, phase):
    """If the server died, record how (exit status, the log's tail) and start it again so the
    remaining figures can still be measured."""
    rc = srv.proc.poll() if srv.proc else None
    if rc is None:
        return
    srv.log.close()
    tail = srv.read_log().splitlines()[-40:]
    res.setdefault("server_deaths", []).append({"before": phase, "exit": rc, "log_tail": tail})
    log(f"bench: THE SERVER EXITED ({rc}) before {phase}; restarting it. Log tail:\n  " + "\n  ".join(tail[-10:]))
    srv.proc = None
    srv.start()


def tenant_id(pg, name):
    return int(pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", name))


def new_tenant(srv, prefix):
    name, key = srv.tenant()
    return name, key


# ---------------------------------------------------------------- 1. single-event ingest

PGBENCH_INGEST = """\\set cid random(1, {pool})
\\set oid random(1, 9000000000000000)
\\set secs random(0, 63071999)
SELECT * FROM rd_ingest_orders({tenant}::bigint, ARRAY['g' || :oid], ARRAY['p' || :cid],
    ARRAY[now() - :secs * interval '1 second'], ARRAY[now() - :secs * interval '1 second'],
    ARRAY['USD'], ARRAY[(random() * 295 + 5)::numeric(12,2)], ARRAY[0]::numeric[],
    ARRAY[(random() * 295 + 5)::numeric(12,2)], ARRAY[0]::numeric[], ARRAY['placed'], ARRAY['api'],
    ARRAY[false], ARRAY[NULL]::text[]);
"""


def wrk_ingest(srv, key, conns, secs, work):
    out = os.path.join(work, f"wrk-{conns}.json")
    env = dict(os.environ, RD_KEY=key, RD_RUN=f"{conns}x{int(time.time())}", RD_POOL=str(POOL), RD_OUT=out)
    threads = min(conns, 2)
    run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{secs}s", "--timeout", "10s",
         "-s", os.path.join(HERE, "post_order.lua"), f"http://127.0.0.1:{srv.port}"], env=env)
    with open(out) as f:
        r = json.load(f)
    dur = r["duration_us"] / 1e6
    return {"events_per_s": r["ok"] / dur, "requests": r["requests"], "ok": r["ok"], "non2xx": r["non2xx"],
            "statuses": r["statuses"], "socket_errors": r["errors"],
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "duration_s": dur}


def pgbench_log(logdir, prefix):
    """Per-transaction records of a pgbench -l run: (completion time in s, latency in ms)."""
    rows = []
    for fn in os.listdir(logdir):
        if fn.startswith(prefix + "."):
            with open(os.path.join(logdir, fn)) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 6 and parts[2].isdigit():
                        rows.append((int(parts[4]) + int(parts[5]) / 1e6, int(parts[2]) / 1000.0))
            os.unlink(os.path.join(logdir, fn))
    return rows


def pgbench(pg, script, work, tag, clients=1, secs=None, txns=None, warmup=0.0, skip=0):
    """Runs a pgbench custom script (prepared statements, per-transaction log). Returns
    (transactions per second, latencies in ms, failed transactions, pgbench's own tps). With
    warmup, transactions completing in the first `warmup` seconds are left out of both the
    rate and the latencies (fresh sessions: connection, plan caches, temp tables); with skip,
    the first `skip` transactions are left out of the latencies (run them in addition)."""
    path = os.path.join(work, f"{tag}.sql")
    with open(path, "w") as f:
        f.write(script)
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
           "-f", path, "-l", "--log-prefix", os.path.join(work, tag + "-log")]
    cmd += ["-T", str(secs)] if secs else ["-t", str(txns)]
    out = run(cmd + [pg.url], cwd=work)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    rows = pgbench_log(work, tag + "-log")
    own_tps = float(m.group(1)) if m else None
    if warmup and rows:
        first = min(t for t, _ in rows)
        last = max(t for t, _ in rows)
        cut = first + warmup
        kept = [lat for t, lat in rows if t >= cut]
        tps = len(kept) / (last - cut) if last > cut else own_tps
    else:
        kept = [lat for _, lat in sorted(rows)[skip:]]
        tps = own_tps
    return tps, kept, (int(failed.group(1)) if failed else 0), own_tps


def bench_ingest(pg, srv, secs, work, results):
    t_srv, key = new_tenant(srv, "ingest")
    t_pg, _ = new_tenant(srv, "pgbench")
    tid = tenant_id(pg, t_pg)
    results["ingest"] = []
    for conns in (1, 16, 64):
        log(f"  ingest: wrk POST /v1/orders, {conns} connection(s), 1s warm-up + {secs}s")
        wrk_ingest(srv, key, conns, 1, work)
        s = wrk_ingest(srv, key, conns, secs, work)
        log(f"  ingest: pgbench rd_ingest_orders, {conns} client(s), {secs + 1}s (first 1s left out)")
        tps, lat, failed, own = pgbench(pg, PGBENCH_INGEST.format(pool=POOL, tenant=tid), work,
                                        f"pgb-ingest-{conns}", clients=conns, secs=secs + 1, warmup=1.0)
        p = {"tps": tps, "pgbench_reported_tps": own, "p50_ms": pct(lat, 50) if lat else None,
             "p99_ms": pct(lat, 99) if lat else None, "transactions": len(lat), "failed": failed}
        results["ingest"].append({"connections": conns, "service": s, "pgbench": p,
                                  "ratio_throughput": ratio(s["events_per_s"], tps)})
    # sanity: every 2xx order is in the table
    stored = int(pg.scalar("SELECT count(*) FROM orders WHERE tenant_id = :'v1'", tenant_id(pg, t_srv)))
    results["ingest_stored_orders"] = stored
    results["ingest_acknowledged_orders"] = sum(r["service"]["ok"] for r in results["ingest"])


class HangingReceiver:
    """A webhook receiver that accepts every connection, reads, and never answers: the sender's
    attempts to it all run into WEBHOOK_TIMEOUT_MS."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.held = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(c)

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def bench_webhooks(pg, srv, secs, work, results, conns=16):
    """Ingest into a tenant whose rung changes go to a subscriber that hangs, against ingest into
    one without a subscriber, alternately (plain, hanging, plain, hanging) so that drift in the
    machine falls on both sides alike. Every first and second order of a customer is a rung
    change: the outbox is written in the ingest's transaction and the sender keeps trying."""
    plain_t, plain_key = new_tenant(srv, "plain")
    hook_t, hook_key = new_tenant(srv, "hooked")
    hang = HangingReceiver()
    try:
        r = srv.post("/v1/subscriptions", {"url": hang.url, "events": ["customer.stage_changed"]}, hook_key)
        if r.status != 201:
            raise RuntimeError(f"bench: subscription refused: {r}")
        runs = {"plain": [], "hanging": []}
        for side, key in (("plain", plain_key), ("hanging", hook_key)) * 2:
            log(f"  webhooks: wrk POST /v1/orders, {conns} connections, {secs}s, {side} subscriber")
            wrk_ingest(srv, key, conns, 1, work)
            runs[side].append(wrk_ingest(srv, key, conns, secs, work))
        rate = {k: sum(x["ok"] for x in v) / sum(x["duration_s"] for x in v) for k, v in runs.items()}
        p50 = {k: statistics.median(x["p50_ms"] for x in v) for k, v in runs.items()}
        changes = int(pg.scalar("SELECT count(*) FROM subscription_deliveries WHERE tenant_id = :'v1'",
                                tenant_id(pg, hook_t))) + int(pg.scalar(
            "SELECT count(*) FROM outbox WHERE tenant_id = :'v1'", tenant_id(pg, hook_t)))
        results["webhooks"] = {"connections": conns, "plain": runs["plain"], "hanging": runs["hanging"],
                               "plain_events_per_s": rate["plain"], "hanging_events_per_s": rate["hanging"],
                               "plain_p50_ms": p50["plain"], "hanging_p50_ms": p50["hanging"],
                               "ratio": ratio(rate["hanging"], rate["plain"]), "changes_to_send": changes,
                               "held_connections": len(hang.held)}
        srv.request("DELETE", f"/v1/subscriptions/{r.json['id']}", key=hook_key)
    finally:
        hang.close()


# ---------------------------------------------------------------- 2. bulk backfill

def post_file(srv, key, path, content_type, timeout=3600):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout, blocksize=1 << 16)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/batch", body=f, headers={
            "Authorization": "Bearer " + key, "Content-Type": content_type, "Content-Length": str(size)})
        r = conn.getresponse()
        body = r.read()
        dt = time.perf_counter() - t0
    conn.close()
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {"raw": body[:500].decode("utf-8", "replace")}
    return r.status, doc, dt


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def copy_file(csv_path, out_path, tid, currency="USD"):
    """The generated orders CSV as rows of the orders table (untimed preparation)."""
    with open(csv_path, newline="") as src, open(out_path, "w", newline="") as dst:
        r = csv.reader(src)
        next(r)
        w = csv.writer(dst)
        for order_id, customer_id, placed_at, total, refunded, status in r:
            w.writerow((tid, order_id, customer_id, placed_at, placed_at, currency, total, refunded,
                        total, refunded, status, "import", "false"))


COPY_SQL = """\\set ON_ERROR_STOP 1
BEGIN;
\\copy orders (tenant_id, order_id, customer_id, placed_at, updated_at, currency, total, refunded, shop_total, shop_refunded, status, source, test) FROM '{path}' WITH (FORMAT csv)
INSERT INTO customers (tenant_id, customer_id)
    SELECT DISTINCT {tid}, customer_id FROM orders WHERE tenant_id = {tid} ON CONFLICT DO NOTHING;
ANALYZE orders, customers;
-- the rollups, recomputed 5 000 customers per call like the service's chunks
DO $$
DECLARE ids text[];
BEGIN
    FOR ids IN SELECT array_agg(customer_id) FROM
        (SELECT customer_id, (row_number() OVER (ORDER BY customer_id) - 1) / 5000 AS chunk
         FROM customers WHERE tenant_id = {tid}) s GROUP BY chunk
    LOOP
        PERFORM rd_refresh_customers({tid}, ids, NULL);
    END LOOP;
END $$;
COMMIT;
"""

STATE_SQL = """SELECT count(*), coalesce(sum(net_value) FILTER (WHERE qualifying), 0),
       (SELECT count(*) FROM customers c WHERE c.tenant_id = :'v1' AND order_count > 0),
       (SELECT coalesce(sum(net_revenue), 0) FROM customers c WHERE c.tenant_id = :'v1'),
       (SELECT string_agg(stage || '=' || n, ',' ORDER BY stage) FROM
            (SELECT stage, count(*) n FROM customers c WHERE c.tenant_id = :'v1' GROUP BY 1) s)
FROM orders WHERE tenant_id = :'v1'"""


def tenant_state(pg, tid):
    return pg.sql(STATE_SQL, tid)[0]


EVENTS_SAMPLE = 20000

EXTRAS_SQL = """\\set ON_ERROR_STOP 1
BEGIN;
CREATE TEMP TABLE sc (customer_id text, email text, created_at timestamptz, channel text);
\\copy sc FROM '{customers}' WITH (FORMAT csv)
INSERT INTO customers (tenant_id, customer_id, email, created_at, channel, is_known)
    SELECT {tid}, customer_id, email, created_at, channel, true FROM sc
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET email = EXCLUDED.email,
        created_at = EXCLUDED.created_at, channel = EXCLUDED.channel, is_known = true;
\\copy events (tenant_id, event_id, customer_id, type, occurred_at, properties, source) FROM '{events}' WITH (FORMAT csv)
INSERT INTO customers (tenant_id, customer_id)
    SELECT DISTINCT {tid}, customer_id FROM events WHERE tenant_id = {tid} ON CONFLICT DO NOTHING;
ANALYZE customers, events;
UPDATE customers c SET referred_by = r.referrer
FROM (SELECT DISTINCT ON (properties->>'referred_customer_id') properties->>'referred_customer_id' AS referred,
             customer_id AS referrer
      FROM events WHERE tenant_id = {tid} AND type = 'referral' ORDER BY 1, occurred_at) r
WHERE c.tenant_id = {tid} AND c.customer_id = r.referred AND c.referred_by IS NULL AND r.referred <> r.referrer;
DO $$
DECLARE ids text[];
BEGIN
    FOR ids IN SELECT array_agg(customer_id) FROM
        (SELECT customer_id, (row_number() OVER (ORDER BY customer_id) - 1) / 5000 AS chunk
         FROM customers WHERE tenant_id = {tid}) s GROUP BY chunk
    LOOP
        PERFORM rd_refresh_customers({tid}, ids, NULL);
    END LOOP;
END $$;
COMMIT;
"""


def split_extras(extras_nd, work, tid):
    """extras.ndjson -> customers.csv + events.csv (all but the newest EVENTS_SAMPLE events,
    for \\copy) and events-sample.ndjson (the newest events, for POST /v1/batch)."""
    with open(extras_nd) as f:
        lines = f.readlines()
    events_at = next((i for i, l in enumerate(lines) if l.startswith('{"kind":"event"')), len(lines))
    n_events = len(lines) - events_at
    n_sample = min(EVENTS_SAMPLE, n_events // 5)
    cut = len(lines) - n_sample
    cpath, epath = os.path.join(work, "customers.csv"), os.path.join(work, "events.csv")
    with open(cpath, "w", newline="") as fc, open(epath, "w", newline="") as fe:
        wc, we = csv.writer(fc), csv.writer(fe)
        for line in lines[:cut]:
            o = json.loads(line)
            if o["kind"] == "customer":
                wc.writerow((o["customer_id"], o.get("email"), o.get("created_at"), o.get("channel")))
            else:
                we.writerow((tid, o["event_id"], o["customer_id"], o["type"], o["occurred_at"],
                             json.dumps(o.get("properties") or {}), "import"))
    sample = os.path.join(work, "events-sample.ndjson")
    with open(sample, "w") as f:
        f.writelines(lines[cut:])
    with open(os.path.join(work, "extras.sql"), "w") as f:
        f.write(EXTRAS_SQL.format(customers=cpath, events=epath, tid=tid))
    return cut, sample, n_sample


def bench_backfill(pg, srv, data, work, results, rss_samples):
    orders_nd = os.path.join(data, "orders.ndjson")
    extras_nd = os.path.join(data, "extras.ndjson")
    n_orders = count_lines(orders_nd)
    bf = results["backfill"] = {"orders": n_orders}

    log(f"  backfill: POST /v1/batch, {n_orders} orders (NDJSON streamed)")
    t_batch, key_batch = new_tenant(srv, "batch")
    status, doc, dt = post_file(srv, key_batch, orders_nd, "application/x-ndjson")
    bf["batch"] = {"status": status, "seconds": dt, "rows_per_s": n_orders / dt,
                   "reply": {k: v for k, v in doc.items() if k != "errors"} if isinstance(doc, dict) else doc,
                   "first_errors": doc.get("errors", [])[:5] if isinstance(doc, dict) else None,
                   "rejected": doc.get("rejected") if isinstance(doc, dict) else None}

    log(f"  backfill: retentiond import, {n_orders} orders")
    t_imp, _ = new_tenant(srv, "import")
    t0 = time.perf_counter()
    out = subprocess.run([harness.BIN, "import", orders_nd, "--tenant", t_imp], env=srv.env,
                         capture_output=True, text=True)
    dt = time.perf_counter() - t0
    bf["import"] = {"exit": out.returncode, "seconds": dt, "rows_per_s": n_orders / dt,
                    "summary": out.stderr.strip().splitlines()[-1][:300] if out.stderr.strip() else ""}

    log(f"  backfill: psql \\copy + rd_refresh_customers, {n_orders} orders")
    t_copy, _ = new_tenant(srv, "copy")
    tid_copy = tenant_id(pg, t_copy)
    cpath = os.path.join(work, "copy-orders.csv")
    copy_file(os.path.join(data, "orders.csv"), cpath, tid_copy)
    spath = os.path.join(work, "copy.sql")
    with open(spath, "w") as f:
        f.write(COPY_SQL.format(path=cpath, tid=tid_copy))
    t0 = time.perf_counter()
    run(["psql", pg.url, "-X", "-q", "-f", spath])
    dt = time.perf_counter() - t0
    bf["copy"] = {"seconds": dt, "rows_per_s": n_orders / dt}
    bf["ratio_batch"] = ratio(bf["batch"]["rows_per_s"], bf["copy"]["rows_per_s"])
    bf["ratio_import"] = ratio(bf["import"]["rows_per_s"], bf["copy"]["rows_per_s"])

    # the three loads must end in the same state (orders, net revenue, rollups, rungs)
    states = {name: tenant_state(pg, tenant_id(pg, t)) for name, t in
              (("batch", t_batch), ("import", t_imp), ("copy", t_copy))}
    bf["states"] = states
    bf["same_state"] = states["batch"] == states["import"] == states["copy"]
    rss_samples["after_orders_backfill"] = rss_kb(srv.proc.pid)

    # Customers and engagement events complete the shop used by the read figures. The history
    # goes in the PostgreSQL-native way (untimed set-up: \copy + one rollup recompute); the
    # newest EVENTS_SAMPLE events then arrive through POST /v1/batch, which is timed.
    n_native, sample_path, n_sample = split_extras(extras_nd, work, tenant_id(pg, t_batch))
    log(f"  backfill: set-up: \\copy {n_native} customers and events into the shop")
    t0 = time.perf_counter()
    run(["psql", pg.url, "-X", "-q", "-f", os.path.join(work, "extras.sql")])
    bf["extras_native_setup"] = {"rows": n_native, "seconds": time.perf_counter() - t0}
    log(f"  backfill: POST /v1/batch, the newest {n_sample} events")
    status, doc, dt = post_file(srv, key_batch, sample_path, "application/x-ndjson")
    bf["batch_events"] = {"status": status, "rows": n_sample, "seconds": dt, "rows_per_s": n_sample / dt,
                          "reply": {k: v for k, v in doc.items() if k != "errors"} if isinstance(doc, dict) else doc,
                          "first_errors": doc.get("errors", [])[:5] if isinstance(doc, dict) else None,
                          "rejected": doc.get("rejected") if isinstance(doc, dict) else None}
    return t_batch, key_batch


def native_shop(pg, srv, data, work):
    """The read figures' shop without the timed backfills (--native-shop): the orders, their
    customers and rollups as the \\copy baseline loads them, then the customers and engagement
    history as the backfill's set-up does, the newest events through POST /v1/batch (untimed).
    Returns the tenant's name and key.

    First a small tenant gets a few orders through the API, as the ingest tenant of a full run
    is there before the shop: with the shop alone in the orders table, the generic plans of
    rd_refresh_customers go superlinear (200 k orders: 47 s instead of 3.9 s)."""
    _, other = new_tenant(srv, "other")
    for i in range(50):
        r = srv.post("/v1/orders", {"order_id": f"o{i}", "customer_id": f"c{i % 7}", "placed_at": END,
                                    "total": "5.00"}, other)
        if r.status not in (200, 201):
            raise RuntimeError(f"bench: an order of the small tenant was refused: {r}")
    shop, key = new_tenant(srv, "shop")
    tid = tenant_id(pg, shop)
    cpath, spath = os.path.join(work, "copy-orders.csv"), os.path.join(work, "copy.sql")
    copy_file(os.path.join(data, "orders.csv"), cpath, tid)
    with open(spath, "w") as f:
        f.write(COPY_SQL.format(path=cpath, tid=tid))
    run(["psql", pg.url, "-X", "-q", "-f", spath])
    _, sample_path, _ = split_extras(os.path.join(data, "extras.ndjson"), work, tid)
    run(["psql", pg.url, "-X", "-q", "-f", os.path.join(work, "extras.sql")])
    status, doc, _ = post_file(srv, key, sample_path, "application/x-ndjson")
    if status != 200:
        raise RuntimeError(f"bench: the newest events were refused: {status} {str(doc)[:300]}")
    return shop, key


# ---------------------------------------------------------------- 3. reads

def read_specs(tid, n_customers):
    q = f"from={PERIOD_FROM}&to={PERIOD_TO}"
    args = f"{tid}::bigint, '{PERIOD_FROM}'::timestamptz, '{PERIOD_TO}'::timestamptz"
    return [
        ("summary", f"/v1/metrics/summary?{q}", report_sql.summary(tid, PERIOD_FROM, PERIOD_TO, 365), 30),
        ("retention month", f"/v1/metrics/retention?period=month&{q}",
         report_sql.retention(tid, PERIOD_FROM, PERIOD_TO, 365, "month"), 30),
        ("cohorts month", f"/v1/metrics/cohorts?period=month&{q}",
         report_sql.cohorts(tid, PERIOD_FROM, PERIOD_TO, "month"), 30),
        ("ladder", f"/v1/metrics/ladder?{q}", f"SELECT rd_metrics_ladder({args})::text;\n", 30),
        ("customers top 50", "/v1/customers?sort=net_revenue&limit=50",
         f"SELECT * FROM rd_customer_list({tid}::bigint, NULL, NULL, NULL, NULL, 'net_revenue', NULL, NULL, 50, now(), NULL, NULL);\n",
         300),
        ("customers by P(alive)", "/v1/customers?sort=p_alive&limit=50",
         f"SELECT * FROM rd_customer_list({tid}::bigint, NULL, NULL, NULL, NULL, 'p_alive', NULL, NULL, 50, now(), NULL, NULL);\n",
         300),
        ("customers at risk by predicted CLV", "/v1/customers?status=at_risk&sort=predicted_clv&limit=50",
         f"SELECT * FROM rd_customer_list({tid}::bigint, NULL, 'at_risk', NULL, NULL, 'predicted_clv', NULL, NULL, 50, "
         f"now(), NULL, NULL);\n", 300),
        # the service's one statement per profile: record, rung, RFM, model and purchase summary
        ("customer profile", None,
         f"\\set i random(1, {n_customers})\nSELECT * FROM rd_customer_profile_page({tid}::bigint, 'c' || :i, NULL);\n",
         300),
    ]


def wrk_read(srv, key, path, n_customers, secs, work):
    """GET one read endpoint with wrk on one connection for `secs` seconds (see get_read.lua)."""
    out = os.path.join(work, "wrk-read.json")
    if os.path.exists(out):
        os.unlink(out)
    env = dict(os.environ, RD_KEY=key, RD_PATH=path or "", RD_CUSTOMERS=str(n_customers), RD_OUT=out)
    run(["wrk", "-t", "1", "-c", "1", "-d", f"{max(1, round(secs))}s", "--timeout", "10s",
         "-s", os.path.join(HERE, "get_read.lua"), f"http://127.0.0.1:{srv.port}"], env=env)
    with open(out) as f:
        return json.load(f)


def service_read(srv, key, path, n_customers, secs, work):
    """Three warm-up requests on one connection (the first timed apart: for summary, retention
    and cohorts it may read the tenant's report snapshot), then wrk on one keep-alive connection
    for secs. Returns the figures and wrk's request count."""
    hdr = {"Authorization": "Bearer " + key}
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=600)
    first = None
    for i in range(3):
        t0 = time.perf_counter()
        conn.request("GET", path or "/v1/customers/c1", headers=hdr)
        r = conn.getresponse()
        r.read()
        if i == 0:
            first = (time.perf_counter() - t0) * 1000
    conn.close()
    w = wrk_read(srv, key, path, n_customers, secs, work)
    return {"runs": w["requests"], "non200": w["non200"] + sum(w["errors"].values()), "socket_errors": w["errors"],
            "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000, "mean_ms": w["mean_us"] / 1000,
            "first_ms": first, "client": "wrk -t1 -c1"}


def bench_reads(pg, srv, key, tid, n_customers, work, results, budget, deadline):
    """Each endpoint: the service (service_read) for the endpoint's share of the time left, then
    pgbench running the same SQL on one connection as many times (at most `runs`). Both sides
    are C clients sending one request at a time, so the ratio compares the service with the
    statement, not two client libraries."""
    results["reads"] = []
    specs = read_specs(tid, n_customers)
    for left, (name, path, sql, runs) in zip(range(len(specs), 0, -1), specs):
        share = max(2.0, (deadline - time.time()) / (2 * left))
        secs = min(budget, share, 5.0)
        s = service_read(srv, key, path, n_customers, secs, work)
        n = min(runs, s["runs"])
        log(f"  reads: {name}: {s['runs']} requests in {secs:.0f} s, p50 {s['p50_ms']:.2f} ms; "
            f"pgbench the same SQL {n} times")
        # one pgbench session: its first three transactions warm it as the service's three
        # warm-up requests warm a worker's connection, and are left out
        _, plat, failed, _ = pgbench(pg, sql, work, "pgb-read", txns=n + 3, skip=3)
        b = {"runs": len(plat), "failed": failed, "p50_ms": pct(plat, 50), "p99_ms": pct(plat, 99),
             "mean_ms": statistics.mean(plat), "client": "pgbench -c1 -M prepared"}
        results["reads"].append({"name": name, "path": path or "/v1/customers/{random id}", "sql": sql.strip(),
                                 "service": s, "psql": b, "ratio_p50": ratio(s["p50_ms"], b["p50_ms"])})


# ---------------------------------------------------------------- 3b. reports of many periods

# Each long report beside a 12-period one that reads the same orders, the whole two-year
# history: the 12 months' series reaches a 365-day window back, the 12 quarters' matrix starts
# before the history does.
LONG_REPORTS = [
    ("retention week, 130 periods", f"/v1/metrics/retention?period=week&from=2024-05-06T00:00:00Z&to={PERIOD_TO}",
     "retention month, 12 periods", f"/v1/metrics/retention?period=month&from={PERIOD_FROM}&to={PERIOD_TO}"),
    ("cohorts month, 120 periods", f"/v1/metrics/cohorts?period=month&from=2016-11-01T00:00:00Z&to={PERIOD_TO}",
     "cohorts quarter, 12 periods", f"/v1/metrics/cohorts?period=quarter&from=2024-01-01T00:00:00Z&to={PERIOD_TO}"),
]


def bench_long_reports(pg, srv, key, work, results, secs):
    """A 130-week retention series and a 120-month cohort matrix against the same server's
    12-period report over the same orders (ratio = long p50 / 12-period p50), from the report
    snapshot (the server of the other figures) and streamed from PostgreSQL (a second server
    with REPORT_SNAPSHOT_MB=0)."""
    out = results["long_reports"] = []
    streamed = harness.Server(pg, CLV_REFIT_INTERVAL=0, REPORT_SNAPSHOT_MB=0).start()
    try:
        for mode, server in (("snapshot", srv), ("streamed", streamed)):
            for name, path, base_name, base_path in LONG_REPORTS:
                s = service_read(server, key, path, 0, secs, work)
                b = service_read(server, key, base_path, 0, secs, work)
                log(f"  long reports, {mode}: {name} p50 {s['p50_ms']:.2f} ms, {base_name} {b['p50_ms']:.2f} ms")
                out.append({"name": name, "mode": mode, "path": path, "service": s, "baseline_name": base_name,
                            "baseline_path": base_path, "baseline": b, "ratio_p50": ratio(s["p50_ms"], b["p50_ms"])})
    finally:
        streamed.stop()


# ---------------------------------------------------------------- 3c. breakdowns

BREAKDOWN_REPORTS = [
    ("summary by channel", f"/v1/metrics/summary?from={PERIOD_FROM}&to={PERIOD_TO}&breakdown=channel",
     "summary", f"/v1/metrics/summary?from={PERIOD_FROM}&to={PERIOD_TO}"),
    ("retention month by channel", f"/v1/metrics/retention?period=month&from={PERIOD_FROM}&to={PERIOD_TO}&breakdown=channel",
     "retention month", f"/v1/metrics/retention?period=month&from={PERIOD_FROM}&to={PERIOD_TO}"),
]


def bench_breakdowns(srv, key, work, results, secs):
    """Each report broken down by channel against the same report whole, on the same server and
    orders (ratio = breakdown p50 / whole p50)."""
    out = results["breakdowns"] = []
    for name, path, base_name, base_path in BREAKDOWN_REPORTS:
        s = service_read(srv, key, path, 0, secs, work)
        b = service_read(srv, key, base_path, 0, secs, work)
        log(f"  breakdowns: {name} p50 {s['p50_ms']:.2f} ms, {base_name} {b['p50_ms']:.2f} ms")
        out.append({"name": name, "path": path, "service": s, "baseline_name": base_name, "baseline_path": base_path,
                    "baseline": b, "ratio_p50": ratio(s["p50_ms"], b["p50_ms"])})


# ---------------------------------------------------------------- 3d. the shop's time zone

ZONE_REPORTS = [
    ("summary", f"/v1/metrics/summary?from={PERIOD_FROM}&to={PERIOD_TO}"),
    ("retention month", f"/v1/metrics/retention?period=month&from={PERIOD_FROM}&to={PERIOD_TO}"),
    ("cohorts month", f"/v1/metrics/cohorts?period=month&from={PERIOD_FROM}&to={PERIOD_TO}"),
]


def bench_timezone(pg, srv, shop, key, work, results, secs):
    """The plain reports in UTC, then the same after `tenant set-timezone SHOP Europe/Berlin`
    (timed: it recomputes every customer's purchase days), on the same server and orders:
    ratio = Berlin p50 / UTC p50, the cost of cutting periods in a zone with daylight saving."""
    out = results["timezone"] = {"reports": []}
    utc = {name: service_read(srv, key, path, 0, secs, work) for name, path in ZONE_REPORTS}
    t0 = time.perf_counter()
    r = subprocess.run([harness.BIN, "tenant", "set-timezone", shop, "Europe/Berlin"], env=srv.env,
                       capture_output=True, text=True)
    out["set_timezone_seconds"] = time.perf_counter() - t0 if r.returncode == 0 else None
    log(f"  time zone: set-timezone Europe/Berlin exit {r.returncode} in {time.perf_counter() - t0:.1f} s")
    for name, path in ZONE_REPORTS:
        b = service_read(srv, key, path, 0, secs, work)
        u = utc[name]
        log(f"  time zone: {name} p50 Berlin {b['p50_ms']:.2f} ms, UTC {u['p50_ms']:.2f} ms")
        out["reports"].append({"name": name, "path": path, "berlin": b, "utc": u,
                               "ratio_p50": ratio(b["p50_ms"], u["p50_ms"])})


# ---------------------------------------------------------------- 4. CLV fit

def bench_fit(srv, tenant, results):
    t0 = time.perf_counter()
    out = subprocess.run([harness.BIN, "fit", "--tenant", tenant], env=srv.env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    msg = (out.stderr.strip() or out.stdout.strip())[-300:]
    if out.returncode != 0:
        results["fit"] = {"seconds": None, "exit": out.returncode, "message": msg}
    else:
        # `retentiond fit` reports its phases: "time  load 262.1 ms, fit 268.7 ms, ..."
        phases = {k: float(v) for k, v in re.findall(r"(load|fit|predictions|store) ([0-9.]+) ms", out.stdout)}
        results["fit"] = {"seconds": dt, "exit": 0, "message": msg, "phases_ms": phases}


# ---------------------------------------------------------------- the table

def fmt(v, spec="{:.0f}", none="n/a"):
    return none if v is None else spec.format(v)


def table(res):
    m = res["machine"]
    lines = []
    lines.append(f"retentiond bench  {res['started']}  mode={res['mode']}  server={res['binary']}")
    lines.append(f"machine: {m['nproc']} cpus, {m['cpu']}, {m['ram']} RAM, kernel {m['kernel']}; "
                 f"PostgreSQL {m['postgresql']} (data on {m['pg_data_fs']}, "
                 f"fsync={m['pg_settings'].get('fsync')}, synchronous_commit={m['pg_settings'].get('synchronous_commit')}, "
                 f"shared_buffers={int(m['pg_settings'].get('shared_buffers', 0)) * 8 // 1024} MB); {m['wrk']}")
    d = res["data"]
    lines.append(f"data: {d['customers']} customers, {d['orders']} orders, {d['events']} events "
                 f"(gen.py --customers {d['customers']} --seed {d['seed']}, {d['gen_seconds']:.0f} s)")
    lines.append("ratio = service / PostgreSQL doing the same work (for rates higher is better, for latencies lower); "
                 "for the long reports, / the same service's 12-period report over the same orders")
    rows = [("figure", "service", "PostgreSQL", "ratio")]
    sep = len(rows)
    for r in res.get("ingest", []):
        s, p = r["service"], r["pgbench"]
        extra = f" ({s['non2xx']} non-2xx)" if s["non2xx"] or any(s["socket_errors"].values()) else ""
        rows.append((f"ingest POST /v1/orders, c={r['connections']}: events/s",
                     f"{s['events_per_s']:.0f}{extra}", f"{fmt(p['tps'])} (pgbench)", fmt(r["ratio_throughput"], "{:.2f}")))
        rows.append((f"  p50 / p99 latency ms",
                     f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}", f"{fmt(p['p50_ms'], '{:.2f}')} / {fmt(p['p99_ms'], '{:.2f}')}",
                     fmt(ratio(s["p50_ms"], p["p50_ms"]), "{:.2f}")))
    wh = res.get("webhooks")
    if wh:
        rows.append((f"ingest c={wh['connections']} with a hanging webhook subscriber: events/s",
                     f"{wh['hanging_events_per_s']:.0f}", f"{wh['plain_events_per_s']:.0f} (service, no subscriber)",
                     fmt(wh["ratio"], "{:.2f}")))
        rows.append(("  p50 latency ms; rung changes queued for the subscriber",
                     f"{wh['hanging_p50_ms']:.2f}; {wh['changes_to_send']}", f"{wh['plain_p50_ms']:.2f}", ""))
    bf = res.get("backfill")
    if bf:
        c = bf["copy"]
        for k, label in (("batch", "POST /v1/batch NDJSON"), ("import", "retentiond import")):
            b = bf[k]
            note = ""
            if k == "batch" and (b["status"] != 200 or b.get("rejected")):
                note = f" (HTTP {b['status']}, {b.get('rejected')} rejected)"
            if k == "import" and b["exit"] != 0:
                note = f" (exit {b['exit']})"
            rows.append((f"backfill {bf['orders']} orders, {label}: rows/s",
                         f"{b['rows_per_s']:.0f}{note}", f"{c['rows_per_s']:.0f} (\\copy+refresh)",
                         fmt(bf['ratio_' + k], "{:.2f}")))
        rows.append(("  seconds", f"{bf['batch']['seconds']:.1f} / {bf['import']['seconds']:.1f}", f"{c['seconds']:.1f}", ""))
        rows.append(("  same end state in all three tenants", "yes" if bf["same_state"] else "NO", "", ""))
        e = bf["batch_events"]
        note = f" (HTTP {e['status']}, {e.get('rejected')} rejected)" if e["status"] != 200 or e.get("rejected") else ""
        rows.append((f"newest {e['rows']} events into the shop, /v1/batch: rows/s",
                     f"{e['rows_per_s']:.0f}{note}", "-", ""))
    for r in res.get("reads", []):
        s, b = r["service"], r["psql"]
        rows.append((f"GET {r['name']} p50 / p99 ms (n={s['runs']} / {b['runs']})",
                     f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}" + (f" ({s['non200']} non-200)" if s["non200"] else ""),
                     f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f}" + (f" ({b['failed']} failed)" if b.get("failed") else ""),
                     fmt(r["ratio_p50"], "{:.2f}")))
        if r["name"] in ("summary", "retention month", "cohorts month") and s.get("first_ms") is not None:
            rows.append(("  first request ms (the first report of a tenant reads its snapshot)", f"{s['first_ms']:.0f}", "-", ""))
    for r in res.get("long_reports", []):
        s, b = r["service"], r["baseline"]
        rows.append((f"GET {r['name']}, {r['mode']} p50 / p99 ms (n={s['runs']} / {b['runs']})",
                     f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}" + (f" ({s['non200']} non-200)" if s["non200"] else ""),
                     f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f} (service, {r['baseline_name']})"
                     + (f" ({b['non200']} non-200)" if b["non200"] else ""),
                     fmt(r["ratio_p50"], "{:.2f}")))
    for r in res.get("breakdowns", []):
        s, b = r["service"], r["baseline"]
        rows.append((f"GET {r['name']} p50 / p99 ms (n={s['runs']} / {b['runs']})",
                     f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}" + (f" ({s['non200']} non-200)" if s["non200"] else ""),
                     f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f} (service, {r['baseline_name']} whole)",
                     fmt(r["ratio_p50"], "{:.2f}")))
    tz = res.get("timezone")
    for r in (tz or {}).get("reports", []):
        b, u = r["berlin"], r["utc"]
        rows.append((f"GET {r['name']} in Europe/Berlin p50 / p99 ms (n={b['runs']} / {u['runs']})",
                     f"{b['p50_ms']:.2f} / {b['p99_ms']:.2f}" + (f" ({b['non200']} non-200)" if b["non200"] else ""),
                     f"{u['p50_ms']:.2f} / {u['p99_ms']:.2f} (service, the same report in UTC)",
                     fmt(r["ratio_p50"], "{:.2f}")))
    if tz:
        rows.append(("  tenant set-timezone on the shop: seconds", fmt(tz.get("set_timezone_seconds"), "{:.1f}"), "-", ""))
    f = res.get("fit")
    if f:
        shown = fmt(f["seconds"], "{:.2f}") if f["seconds"] is not None else f"n/a ({f['message'][:50]})"
        rows.append((f"CLV fit, {d['customers']} customers, end to end: seconds", shown, "-", ""))
        ph = f.get("phases_ms") or {}
        if all(k in ph for k in ("load", "fit", "predictions", "store")):
            rows.append(("  load / model fit / predictions / store ms",
                         f"{ph['load']:.0f} / {ph['fit']:.0f} / {ph['predictions']:.0f} / {ph['store']:.0f}", "-", ""))
    for dth in res.get("server_deaths", []):
        rows.append((f"SERVER EXITED before {dth['before']}", f"exit status {dth['exit']}", "restarted", ""))
    rs = res.get("rss_kb", {})
    rows.append(("server RSS MiB at rest / end of load / peak",
                 " / ".join(fmt(rs.get(k) and rs[k] / 1024, "{:.1f}") for k in ("rest", "end", "peak")), "-", ""))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w[j]) if j < 3 else c for j, c in enumerate(r)).rstrip())
        if i + 1 == sep:
            lines.append("  ".join("-" * w[j] for j in range(4)))
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~100 k orders and 5 s ingest runs")
    ap.add_argument("--customers", type=int, help="customers to generate (default 100000, --quick 10000)")
    ap.add_argument("--ingest-seconds", type=int, help="duration of each ingest run (default 10, --quick 5)")
    ap.add_argument("--read-budget", type=float, default=20.0,
                    help="seconds at most per read endpoint and side (at least 5 runs)")
    ap.add_argument("--deadline", type=float, default=13.0,
                    help="minutes the whole run should take: the read figures shorten their runs to fit")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip", default="", help="comma list of: ingest,webhooks,backfill,reads,long-reports,breakdowns,timezone,fit")
    ap.add_argument("--native-shop", action="store_true",
                    help="load the shop of the read figures with \\copy instead of the timed backfills "
                         "(e.g. --native-shop --skip ingest,fit,reads: the long reports alone)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster and data directories")
    a = ap.parse_args(argv)
    customers = a.customers or (10000 if a.quick else 100000)
    secs = a.ingest_seconds or (5 if a.quick else 10)
    skip = set(filter(None, a.skip.split(",")))

    if not os.access(harness.BIN, os.X_OK):
        sys.exit(f"bench: no server binary at {harness.BIN} (build it, or set RETENTIOND_BIN)")
    for tool in ("wrk", "pgbench", "psql"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (scripts/install-deps.sh bench installs it)")

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res = {"started": started, "mode": "quick" if a.quick else "full", "binary": harness.BIN}
    t_all = time.perf_counter()
    deadline = time.time() + a.deadline * 60 - 15
    work = tempfile.mkdtemp(prefix="rdbench-")
    os.chmod(work, 0o755)
    data = os.path.join(work, "data")
    log(f"bench: generating {customers} customers into {data}")
    t0 = time.perf_counter()
    run([sys.executable, os.path.join(HERE, "gen.py"), "--customers", str(customers), "--seed", str(a.seed),
         "--end", END, "--out-dir", data, "--stats", os.path.join(work, "gen-stats.json")])
    with open(os.path.join(work, "gen-stats.json")) as f:
        st = json.load(f)
    res["data"] = {"customers": customers, "orders": st["orders"], "events": st["events"], "seed": a.seed,
                   "gen_seconds": time.perf_counter() - t0, "stats": st}

    outdir = os.path.join(HERE, "results")
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "bench-%s.json" % started.replace(":", "").replace("-", ""))

    def save():   # after every phase, so that an interrupted run keeps what it measured
        with open(path, "w") as f:
            json.dump(res, f, indent=2, default=str)

    pg = harness.Postgres()
    srv = None
    try:
        log("bench: starting PostgreSQL and the server")
        pg.start()
        res["machine"] = machine(pg)
        srv = harness.Server(pg, CLV_REFIT_INTERVAL=0, WEBHOOK_ALLOW_PRIVATE=1).start()
        rss = res["rss_kb"] = {}
        time.sleep(0.5)
        rss["rest"] = rss_kb(srv.proc.pid)
        if "ingest" not in skip:
            log("bench: 1. single-event ingest")
            bench_ingest(pg, srv, secs, work, res)
            rss["after_ingest"] = rss_kb(srv.proc.pid)
            save()
        if "webhooks" not in skip:
            log("bench: 1b. ingest with a hanging webhook subscriber")
            bench_webhooks(pg, srv, secs, work, res)
            save()
        check_server(srv, res, "backfill")
        shop = None
        if a.native_shop:
            log("bench: the shop of the read figures, loaded with \\copy (untimed)")
            shop, key = native_shop(pg, srv, data, work)
        elif "backfill" not in skip:
            log("bench: 2. bulk backfill")
            shop, key = bench_backfill(pg, srv, data, work, res, rss)
            save()
        if shop:
            shop_id = tenant_id(pg, shop)
            pg.sql("VACUUM ANALYZE")
            check_server(srv, res, "fit")
            if "fit" not in skip:
                log("bench: 4. CLV fit")
                bench_fit(srv, shop, res)
                save()
            check_server(srv, res, "reads")
            if "reads" not in skip:
                log("bench: 3. reads")
                bench_reads(pg, srv, key, shop_id, customers, work, res, a.read_budget, deadline)
                save()
            check_server(srv, res, "long reports")
            if "long-reports" not in skip:
                log("bench: 3b. reports of many periods")
                bench_long_reports(pg, srv, key, work, res, min(a.read_budget, 5.0))
                save()
            check_server(srv, res, "breakdowns")
            if "breakdowns" not in skip:
                log("bench: 3c. breakdowns")
                bench_breakdowns(srv, key, work, res, min(a.read_budget, 5.0))
                save()
            check_server(srv, res, "time zone")
            if "timezone" not in skip:
                log("bench: 3d. the shop's time zone")
                bench_timezone(pg, srv, shop, key, work, res, min(a.read_budget, 5.0))
        check_server(srv, res, "the end")
        rss["end"] = rss_kb(srv.proc.pid)
        rss["peak"] = rss_kb(srv.proc.pid, "VmHWM")
        rc = srv.stop()
        res["server_exit"] = rc
        srv = None
    except BaseException:
        if srv and os.path.exists(srv.log_path):
            shutil.copy(srv.log_path, os.path.join(outdir, "server-failed-run.log"))
            log(f"bench: server log kept in {os.path.join(outdir, 'server-failed-run.log')}")
        raise
    finally:
        if srv and srv.proc:
            srv.stop()
        if a.keep:
            log(f"bench: kept {pg.dir} and {work}")
            pg.stop()
        else:
            pg.destroy()
            shutil.rmtree(work, ignore_errors=True)
    res["total_seconds"] = time.perf_counter() - t_all

    text = table(res)
    res["table"] = text
    save()
    print(text)
    print(f"(total {res['total_seconds']:.0f} s; written to {os.path.relpath(path, ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
