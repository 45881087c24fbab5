#!/usr/bin/env python3
"""Soak test: SOAK_SECONDS (default 600) of mixed load against the real server on a private
PostgreSQL cluster, with a fault injected every FAULT_EVERY seconds (default 60; shorter runs
use a fifth of the run so each fault kind happens), cycling through

    PostgreSQL fast restart, PostgreSQL immediate (crash) restart, SIGKILL + restart of the service.

Load: ingest threads (orders, customers, events), reader threads (summary, customer lists and
profiles) and one NDJSON batch thread. Every acknowledged order id (2xx for a single order, a
200 batch with no rejected line) is checked against the orders table at the end: lost must be 0.
Reports throughput, status counts, lost, and the server's RSS over time.

    RETENTIOND_BIN=build/retentiond SOAK_SECONDS=60 python3 tests/soak.py
"""
import http.client
import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
from harness import Postgres, Server  # noqa: E402

SOAK_SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
FAULT_EVERY = int(os.environ.get("FAULT_EVERY", str(min(60, max(10, SOAK_SECONDS // 5)))))
INGEST_THREADS = int(os.environ.get("SOAK_INGEST_THREADS", "4"))
READ_THREADS = int(os.environ.get("SOAK_READ_THREADS", "2"))
FAULTS = ("postgres fast restart", "postgres immediate restart", "service SIGKILL + restart")


class State:
    def __init__(self, pg, server, key):
        self.pg = pg
        self.server = server
        self.key = key
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.acked = set()
        self.counts = {}         # (kind, status) -> n ; status None = connection error
        self.rss = []            # (t, MB)
        self.faults = []         # (t, name, seconds until the first 2xx after it)
        self.known_customers = []

    def count(self, kind, status):
        with self.lock:
            self.counts[(kind, status)] = self.counts.get((kind, status), 0) + 1


def request(conn_box, st, method, path, body=None, ctype="application/json"):
    """One request on the thread's keep-alive connection; returns (status, body) or (None, b"")."""
    try:
        if conn_box[0] is None or conn_box[1] != st.server.port:
            if conn_box[0]:
                conn_box[0].close()
            conn_box[0] = http.client.HTTPConnection("127.0.0.1", st.server.port, timeout=30)
            conn_box[1] = st.server.port
        h = {"Authorization": "Bearer " + st.key}
        if body is not None:
            h["Content-Type"] = ctype
        conn_box[0].request(method, path, body=body, headers=h)
        r = conn_box[0].getresponse()
        data = r.read()
        if (r.getheader("Connection") or "").lower() == "close":
            conn_box[0].close()
            conn_box[0] = None
        return r.status, data
    except (OSError, http.client.HTTPException):
        if conn_box[0]:
            conn_box[0].close()
        conn_box[0] = None
        return None, b""


def ingest_worker(st, i):
    box = [None, None]
    n = 0
    while not st.stop.is_set():
        n += 1
        cid = f"s{i}-c{n % 500}"
        kind = ("order", "order", "order", "customer", "event")[n % 5]
        if kind == "order":
            oid = f"s{i}-o{n}"
            body = {"order_id": oid, "customer_id": cid, "total": f"{(n % 97) + 1}.50",
                    "placed_at": f"2025-{(n % 12) + 1:02d}-{(n % 28) + 1:02d}T10:00:00Z"}
            status, _ = request(box, st, "POST", "/v1/orders", json.dumps(body))
            if status and 200 <= status < 300:
                with st.lock:
                    st.acked.add(oid)
                    if len(st.known_customers) < 2000:
                        st.known_customers.append(cid)
        elif kind == "customer":
            status, _ = request(box, st, "POST", "/v1/customers",
                                json.dumps({"customer_id": cid, "email": cid + "@example.com"}))
        else:
            status, _ = request(box, st, "POST", "/v1/events",
                                json.dumps({"event_id": f"s{i}-e{n}", "customer_id": cid, "type": "view",
                                            "occurred_at": "2026-01-02T00:00:00Z"}))
        st.count(kind, status)
        if status is None or status >= 500:
            time.sleep(0.05)


def read_worker(st, i):
    box = [None, None]
    n = 0
    while not st.stop.is_set():
        n += 1
        which = n % 4
        if which == 0:
            path, kind = "/v1/metrics/summary?from=2025-01-01&to=2026-12-31", "read summary"
        elif which == 1:
            path, kind = "/v1/customers?limit=50", "read list"
        elif which == 2:
            path, kind = "/v1/metrics/retention?period=quarter&from=2025-01-01&to=2026-12-31", "read retention"
        else:
            with st.lock:
                cid = st.known_customers[n % len(st.known_customers)] if st.known_customers else "none"
            path, kind = "/v1/customers/" + cid, "read profile"
        status, _ = request(box, st, "GET", path)
        st.count(kind, 200 if status == 404 and kind == "read profile" and path.endswith("none") else status)
        time.sleep(0.02 if status and status < 500 else 0.1)


def batch_worker(st):
    box = [None, None]
    n = 0
    while not st.stop.is_set():
        n += 1
        ids = [f"b{n}-o{k}" for k in range(200)]
        lines = "\n".join(json.dumps({"kind": "order", "order_id": oid, "customer_id": f"b-c{k % 300}",
                                      "placed_at": "2025-06-01T00:00:00Z", "total": "20"})
                          for k, oid in enumerate(ids))
        status, data = request(box, st, "POST", "/v1/batch", lines + "\n", "application/x-ndjson")
        if status == 200:
            rep = json.loads(data)
            if rep.get("rejected") == 0:
                with st.lock:
                    st.acked.update(ids)
        st.count("batch", status)
        time.sleep(0.5)


def rss_sampler(st):
    while not st.stop.is_set():
        proc = st.server.proc
        if proc and proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            st.rss.append((time.time(), int(line.split()[1]) / 1024))
            except OSError:
                pass
        st.stop.wait(5)


def ok_since(st, t):
    """Seconds until a 2xx order ingest appears after time t (polls the counters)."""
    before = sum(v for (k, s), v in st.counts.items() if k == "order" and s and 200 <= s < 300)
    deadline = time.time() + 60
    while time.time() < deadline and not st.stop.is_set():
        now = sum(v for (k, s), v in st.counts.items() if k == "order" and s and 200 <= s < 300)
        if now > before:
            return time.time() - t
        time.sleep(0.1)
    return None


def inject(st, n):
    name = FAULTS[n % len(FAULTS)]
    t = time.time()
    print(f"[{t - st.t0:6.1f}s] fault: {name}", flush=True)
    if name == "postgres fast restart":
        st.pg.stop("fast")
        time.sleep(2)
        st.pg.start()
    elif name == "postgres immediate restart":
        st.pg.stop("immediate")
        time.sleep(2)
        st.pg.start()
    else:
        old = st.server
        old.stop(signal.SIGKILL)
        st.server = Server(st.pg).start()
    rec = ok_since(st, time.time())
    st.faults.append((t - st.t0, name, rec))
    print(f"[{time.time() - st.t0:6.1f}s]   recovered: first 2xx {rec:.2f} s after the restart"
          if rec is not None else "   NOT RECOVERED within 60 s", flush=True)


def main():
    pg = Postgres().start()
    server = Server(pg).start()
    _, key = server.tenant()
    st = State(pg, server, key)
    st.t0 = time.time()
    threads = [threading.Thread(target=ingest_worker, args=(st, i), daemon=True) for i in range(INGEST_THREADS)]
    threads += [threading.Thread(target=read_worker, args=(st, i), daemon=True) for i in range(READ_THREADS)]
    threads += [threading.Thread(target=batch_worker, args=(st,), daemon=True),
                threading.Thread(target=rss_sampler, args=(st,), daemon=True)]
    print(f"soak: {SOAK_SECONDS} s, a fault every {FAULT_EVERY} s, {INGEST_THREADS} ingest + "
          f"{READ_THREADS} read + 1 batch threads", flush=True)
    failed = False
    try:
        for t in threads:
            t.start()
        end = st.t0 + SOAK_SECONDS
        n = 0
        next_fault = st.t0 + FAULT_EVERY
        while time.time() < end:
            time.sleep(min(1, max(0, end - time.time())))
            if time.time() >= next_fault and time.time() < end - 5:
                inject(st, n)
                n += 1
                next_fault = time.time() + FAULT_EVERY
        st.stop.set()
        for t in threads:
            t.join(60)
        elapsed = time.time() - st.t0

        rows = pg.sql("SELECT order_id FROM orders")
        stored = {r[0] for r in rows}
        lost = st.acked - stored
        print("\n=== soak report ===")
        print(f"duration {elapsed:.0f} s, faults injected: {len(st.faults)}")
        for t, name, rec in st.faults:
            print(f"  at {t:6.1f}s {name:30s} recovery {'%.2f s' % rec if rec is not None else 'NONE'}")
        total = sum(st.counts.values())
        ok = sum(v for (k, s), v in st.counts.items() if s and 200 <= s < 300)
        print(f"requests {total} ({total / elapsed:.0f}/s), 2xx {ok} ({ok / elapsed:.0f}/s)")
        kinds = sorted({k for k, _ in st.counts})
        for k in kinds:
            per = {s: v for (kk, s), v in st.counts.items() if kk == k}
            print(f"  {k:15s} " + ", ".join(f"{s if s else 'conn-error'}: {v}"
                                           for s, v in sorted(per.items(), key=lambda x: (x[0] is None, x[0] or 0))))
        unexpected = {(k, s): v for (k, s), v in st.counts.items() if s is not None and s not in (200, 201, 503)}
        print(f"unexpected statuses: {unexpected or 'none'}")
        print(f"acknowledged orders {len(st.acked)}, stored {len(stored & st.acked)}, lost {len(lost)}")
        if st.rss:
            print("server RSS (MB) over time: " + ", ".join(f"{t - st.t0:.0f}s={mb:.1f}" for t, mb in st.rss))
            print(f"RSS min {min(m for _, m in st.rss):.1f} MB, max {max(m for _, m in st.rss):.1f} MB")
        if lost:
            print("LOST: " + ", ".join(sorted(lost)[:20]))
        failed = bool(lost) or bool(unexpected) or any(rec is None for _, _, rec in st.faults)
    finally:
        st.stop.set()
        st.server.stop()
        pg.destroy()
    print("soak: FAILED" if failed else "soak: OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
