"""Faults under a real load: PostgreSQL stopped (fast and immediate) mid-load, the service
killed with SIGKILL mid-load, and SIGTERM mid-load; and the service's connections closed by
PostgreSQL while idle.

Each test has its own cluster and server. A bounded loop of concurrent clients (8 threads,
http.client over loopback, keep-alive) posts distinct orders and records every id the
service acknowledged with a 2xx. The invariant of README "What a 2xx means": every
acknowledged id is in the orders table at the end (lost == 0), and while PostgreSQL is down
no request sent during the outage is acknowledged; each answer is 503 with Retry-After or a
connection error.
"""
import http.client
import json
import signal
import threading
import time
import unittest

from harness import Postgres, Server

THREADS = 8


class Load:
    """THREADS clients posting distinct orders until stopped (or max_seconds)."""

    def __init__(self, server, key, prefix, max_seconds=60):
        self.server = server
        self.key = key
        self.prefix = prefix
        self.max_seconds = max_seconds
        self.lock = threading.Lock()
        self.stop_evt = threading.Event()
        self.acked = set()
        # (sent_at, answered_at, status or None for a connection error, retry_after, order id)
        self.log = []
        self.threads = []

    def start(self):
        for i in range(THREADS):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stop_evt.set()
        for t in self.threads:
            t.join(90)
            assert not t.is_alive(), "a load thread hung"

    def _run(self, i):
        n = 0
        conn = None
        deadline = time.time() + self.max_seconds
        while not self.stop_evt.is_set() and time.time() < deadline:
            oid = f"{self.prefix}-{i}-{n}"
            n += 1
            body = json.dumps({"order_id": oid, "customer_id": f"c{i}-{n % 50}",
                               "placed_at": "2026-01-05T10:00:00Z", "total": "12.50"})
            sent = time.time()
            status = retry = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
                conn.request("POST", "/v1/orders", body=body,
                             headers={"Authorization": "Bearer " + self.key,
                                      "Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
                retry = r.getheader("Retry-After")
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn:
                    conn.close()
                conn = None
            with self.lock:
                self.log.append((sent, time.time(), status, retry, oid))
                if status is not None and 200 <= status < 300:
                    self.acked.add(oid)
            if status is None or status >= 500:
                time.sleep(0.02)  # back off a little on errors; bounded by the loop
        if conn:
            conn.close()

    def count_2xx_since(self, t):
        with self.lock:
            return sum(1 for s, _, st, _, _ in self.log if s >= t and st and 200 <= st < 300)

    def wait_for_2xx_since(self, t, n=20, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.count_2xx_since(t) >= n:
                return True
            time.sleep(0.05)
        return False

    def answers(self, since, until):
        """Entries for requests sent in [since, until)."""
        with self.lock:
            return [e for e in self.log if since <= e[0] < until]


def stored_ids(pg, prefix):
    rows = pg.sql("SELECT order_id FROM orders WHERE order_id LIKE :'v1'", prefix + "-%")
    return {r[0] for r in rows}


def report(tc, pg, load, what):
    stored = stored_ids(pg, load.prefix)
    lost = load.acked - stored
    statuses = {}
    for e in load.log:
        statuses[e[2]] = statuses.get(e[2], 0) + 1
    print(f"\n[{what}] requests={len(load.log)} statuses={statuses} acknowledged={len(load.acked)} "
          f"stored={len(stored)} lost={len(lost)}", flush=True)
    tc.assertEqual(len(lost), 0, f"acknowledged but not stored: {sorted(lost)[:20]}")
    tc.assertGreater(len(load.acked), 0)


class PostgresOutage(unittest.TestCase):
    def test_fast_and_immediate_stop_under_load(self):
        pg = Postgres().start()
        server = Server(pg).start()
        try:
            _, key = server.tenant()
            load = Load(server, key, "pgout").start()
            self.assertTrue(load.wait_for_2xx_since(0, 50), "no load before the fault")
            for mode in ("fast", "immediate"):
                pg.stop(mode)
                down_at = time.time()          # pg_ctl -w returned: the cluster is down
                time.sleep(1.5)                # the load keeps hitting the service meanwhile
                up_at = time.time()
                # exercise readiness during the outage too
                r = server.get("/readyz")
                self.assertEqual(r.status, 503, r)
                self.assertIn("retry-after", r.headers)
                pg.start()
                during = load.answers(down_at, up_at)
                self.assertGreater(len(during), 0, "no request was sent during the outage")
                for sent, _, status, retry, oid in during:
                    self.assertFalse(status is not None and 200 <= status < 300,
                                     f"{mode}: {oid} sent during the outage was acknowledged ({status})")
                    if status is not None:
                        self.assertEqual(status, 503, f"{mode}: {oid} got {status} during the outage")
                        self.assertIsNotNone(retry, f"{mode}: 503 without Retry-After")
                print(f"\n[{mode} stop] answers during outage: "
                      f"{sum(1 for e in during if e[2] == 503)} x 503, "
                      f"{sum(1 for e in during if e[2] is None)} connection errors", flush=True)
                # recovers by itself, without a restart of the service
                self.assertTrue(load.wait_for_2xx_since(time.time(), 20, timeout=30),
                                f"no 2xx within 30 s after PostgreSQL came back ({mode})")
            load.stop()
            # nothing other than 2xx / 503 / connection errors, at any time
            odd = [e for e in load.log if e[2] is not None and e[2] not in (200, 201, 503)]
            self.assertEqual(odd, [], "unexpected statuses")
            report(self, pg, load, "postgres fast+immediate stop")
        finally:
            server.stop()
            pg.destroy()


class ClosedConnections(unittest.TestCase):
    """Connections PostgreSQL closed behind the service's back (a restart, an idle timeout, a
    proxy) are found by the check a worker makes before using a connection idle for
    DB_IDLE_CHECK seconds, and replaced, so that no request fails on them. The control run,
    with a check interval longer than the test, shows the requests that would have failed."""

    def statuses_after_closing(self, idle_check):
        pg = Postgres().start()
        server = Server(pg, DB_IDLE_CHECK=str(idle_check)).start()
        try:
            _, key = server.tenant()
            self.assertEqual(server.get("/v1/customers?limit=5", key).status, 200)
            rounds = []
            # Two rounds: the second closes connections the first has just opened, so a worker
            # that throttled reconnects after a successful connect too would answer 503 here
            # however fast the machine is.
            for _ in range(2):
                closed = int(pg.scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                       " WHERE application_name = 'retentiond'"))
                deadline = time.time() + 10
                while time.time() < deadline and pg.scalar(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'retentiond'") != "0":
                    time.sleep(0.05)
                rounds.append((closed, [server.get("/v1/customers?limit=5", key).status for _ in range(24)]))
            return rounds
        finally:
            server.stop()
            pg.destroy()

    def test_closed_connections_are_replaced_before_use(self):
        for closed, statuses in self.statuses_after_closing(0):
            self.assertGreaterEqual(closed, 1)
            self.assertEqual(statuses, [200] * 24)

    def test_control_without_the_check_requests_fail_on_them(self):
        (closed, statuses), _ = self.statuses_after_closing(3600)
        self.assertGreaterEqual(closed, 8)      # the eight workers' connections at least
        self.assertIn(503, statuses)
        self.assertEqual(set(statuses), {200, 503})


class BatchOutage(unittest.TestCase):
    def test_database_stopped_mid_batch(self):
        """A streamed batch whose database goes away after its first chunk: 503 naming how many
        records were committed and the line it stopped at; exactly those are stored."""
        import re
        import socket
        pg = Postgres().start()
        server = Server(pg).start()
        try:
            tenant, key = server.tenant()
            lines = [json.dumps({"kind": "order", "order_id": f"mb-{i}", "customer_id": f"c{i % 700}",
                                 "placed_at": "2026-02-03T10:00:00Z", "total": "9.90"}) + "\n"
                     for i in range(1, 14001)]
            body = "".join(lines).encode()
            first = "".join(lines[:6000]).encode()
            with socket.create_connection(("127.0.0.1", server.port), timeout=120) as sock:
                sock.sendall((f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                              "Content-Type: application/x-ndjson\r\nConnection: close\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n").encode())
                sock.sendall(first)
                deadline = time.time() + 60
                while pg.scalar("SELECT count(*) FROM orders WHERE order_id LIKE 'mb-%'") == "0":
                    self.assertLess(time.time(), deadline, "the first chunk was never committed")
                    time.sleep(0.1)
                pg.stop("fast")
                sock.sendall(body[len(first):])
                raw = b"".join(iter(lambda: sock.recv(65536), b""))
            head, _, payload = raw.partition(b"\r\n\r\n")
            status, reply = int(head.split()[1]), json.loads(payload)
            pg.start()
            self.assertEqual(status, 503, reply)
            self.assertIn(b"retry-after", head.lower())
            m = re.search(r"stopped at line (\d+): the database failed\. (\d+) records before it were committed",
                          reply["detail"])
            self.assertIsNotNone(m, reply)
            line, committed = int(m.group(1)), int(m.group(2))
            stored = int(pg.scalar("SELECT count(*) FROM orders WHERE order_id LIKE 'mb-%'"))
            self.assertEqual(committed, stored)
            self.assertGreaterEqual(stored, 5000)
            # every line is valid and new, so the chunk that failed begins right after them
            self.assertEqual(line, stored + 1)
            self.assertEqual(pg.scalar("SELECT max(substr(order_id, 4)::int) FROM orders "
                                       "WHERE order_id LIKE 'mb-%'"), str(stored))
        finally:
            server.stop()
            server.assert_no_sanitizer_reports()
            pg.destroy()


    def test_client_gone_while_a_chunk_is_written(self):
        """The client resets the connection while its first chunk is being written in the
        background (held up on a lock here): the request ends at once, the chunk still commits
        when the lock goes (its context outlives the request), the service goes on."""
        import socket
        import struct
        import subprocess
        pg = Postgres().start()
        server = Server(pg).start()
        locker = None
        try:
            tenant, key = server.tenant()
            body = "".join(json.dumps({"kind": "order", "order_id": f"gone-{i}", "customer_id": f"c{i % 300}",
                                       "placed_at": "2026-02-03T10:00:00Z", "total": "5"}) + "\n"
                           for i in range(1, 6001)).encode()
            locker = subprocess.Popen(["psql", pg.url, "-X", "-q"], stdin=subprocess.PIPE, text=True)
            locker.stdin.write("BEGIN; LOCK TABLE rollup_pending IN EXCLUSIVE MODE;\n")
            locker.stdin.flush()
            deadline = time.time() + 30
            while pg.scalar("SELECT count(*) FROM pg_locks WHERE relation = 'rollup_pending'::regclass "
                            "AND granted AND mode = 'ExclusiveLock'") == "0":
                self.assertLess(time.time(), deadline, "the lock was not taken")
                time.sleep(0.05)
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            sock.sendall((f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                          "Content-Type: application/x-ndjson\r\n"
                          f"Content-Length: {len(body) * 2}\r\n\r\n").encode() + body)
            # the chunk's write waits on the lock
            while pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") == "0":
                self.assertLess(time.time(), deadline, "the chunk was never written")
                time.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()   # a reset: the server ends the request at once
            while "aborted=true" not in server.read_log():
                self.assertLess(time.time(), deadline, "the request did not end")
                time.sleep(0.05)
            locker.stdin.write("COMMIT;\n")
            locker.stdin.close()
            locker.wait(30)
            while int(pg.scalar("SELECT count(*) FROM orders WHERE order_id LIKE 'gone-%'")) < 5000:
                self.assertLess(time.time(), deadline + 30, "the chunk in flight was not committed")
                time.sleep(0.1)
            self.assertEqual(server.get("/healthz").status, 200)
            r = server.post("/v1/orders", {"order_id": "after", "customer_id": "c1",
                                           "placed_at": "2026-02-04T10:00:00Z", "total": "1"}, key)
            self.assertEqual(r.status, 201, r)
        finally:
            if locker and locker.poll() is None:
                locker.kill()
            server.stop()
            server.assert_no_sanitizer_reports()
            pg.destroy()


class ServiceKilled(unittest.TestCase):
    def test_sigkill_mid_load_then_restart(self):
        pg = Postgres().start()
        server = Server(pg).start()
        try:
            _, key = server.tenant()
            load = Load(server, key, "kill9").start()
            self.assertTrue(load.wait_for_2xx_since(0, 100))
            server.stop(signal.SIGKILL)
            load.stop()
            report(self, pg, load, "SIGKILL")
            # a new service on the same cluster serves at once and keeps the acknowledged data
            server = Server(pg).start()
            load2 = Load(server, key, "after9").start()
            self.assertTrue(load2.wait_for_2xx_since(0, 20))
            load2.stop()
            report(self, pg, load2, "after SIGKILL restart")
            self.assertFalse(load.acked - stored_ids(pg, "kill9"))
        finally:
            server.stop()
            pg.destroy()


class ServiceTerminated(unittest.TestCase):
    def test_sigterm_mid_load_drains_and_exits_zero(self):
        pg = Postgres().start()
        server = Server(pg).start()
        try:
            _, key = server.tenant()
            load = Load(server, key, "term").start()
            self.assertTrue(load.wait_for_2xx_since(0, 100))
            t0 = time.time()
            proc = server.proc
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(40)
            took = time.time() - t0
            load.stop()
            self.assertEqual(rc, 0, server.read_log()[-3000:])
            print(f"\n[SIGTERM] exited {rc} after {took:.2f} s", flush=True)
            # every response received was a proper one: a 2xx, or a 503 (the load balancer retries)
            odd = [e for e in load.log if e[2] is not None and e[2] not in (200, 201, 503)]
            self.assertEqual(odd, [], "unexpected statuses")
            report(self, pg, load, "SIGTERM")
            log = server.read_log()
            self.assertIn("msg=stopped", log)
            self.assertNotIn("requires MHD_USE_ITC", log)
        finally:
            if server.proc and server.proc.poll() is None:
                server.stop()
            elif server.proc:
                server.proc = None
                server.log.close()
                from harness import SANITIZED
                if SANITIZED:
                    server.assert_no_sanitizer_reports()
            pg.destroy()


if __name__ == "__main__":
    unittest.main()
