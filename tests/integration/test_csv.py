"""CSV exports (issue 22): GET /v1/customers as CSV (streamed: src/http/stream.c), the cohort
matrix and the retention series as CSV, through HTTP against the JSON replies they restate.

* The CSV rows of a list are the JSON items of all its pages, field by field as the JSON prints
  them (numbers as their literal text), on a generated shop whose ids and e-mail addresses hold
  commas, quotes and non-ASCII letters, under every filter and sort; parsed by Python's csv
  module, which undoes RFC 4180's quoting.
* E-mail only for a key with scope admin.
* A 100 000-customer export streams with flat memory: the server's resident set grows by far
  less than the export's size while a client reads it in pieces.
* Clients that go away midway, more of them than the pool has connections, leave the server
  healthy, the pool whole and no transaction open; exports beyond MAX_EXPORTS get 503 while the
  others stream, and other requests still run.
No assertion is about time: a wait for something to happen has a generous deadline only."""
import csv
import io
import json
import os
import socket
import time
import unittest

from harness import Server, module_cluster
from test_ladder_and_lists import AS_OF, generated_shop

POOL = 4
MAX_EXPORTS = 2
# ASan keeps freed memory in a quarantine (256 MiB by default) instead of reusing it, which
# would make every byte the export ever allocated resident; the memory test needs reuse
_asan = os.environ.get("ASAN_OPTIONS", "")
setUpModule, tearDownModule = module_cluster(globals(), UPKEEP_INTERVAL=0, DB_POOL_SIZE=POOL,
                                             MAX_EXPORTS=MAX_EXPORTS,
                                             ASAN_OPTIONS=(_asan + ":" if _asan else "") + "quarantine_size_mb=1")
pg = server = None

PREFIX = 'ü,"k'   # every id and e-mail address holds a comma, a quote and a non-ASCII letter


def parse_csv(body):
    """The records of a CSV body, after checking that every record ends with CRLF."""
    text = body.decode("utf-8")
    assert text == "" or text.endswith("\r\n"), text[-50:]
    return list(csv.reader(io.StringIO(text, newline=""), strict=True))


def exact(body):
    """A JSON reply with its numbers as the text it printed them in."""
    return json.loads(body, parse_float=str, parse_int=str)


def field(v):
    return "" if v is None else v


def item_record(item, with_email):
    rfm = item["rfm"] or {}
    out = [item["customer_id"]] + ([field(item["email"])] if with_email else [])
    out += [field(item[k]) for k in ("stage", "status", "order_count", "net_revenue", "last_order_at")]
    out += [field(rfm.get(k)) for k in ("r", "f", "m", "segment")]
    return out + [field(item[k]) for k in ("p_alive", "expected_orders", "predicted_clv")]


HEADER = ["customer_id", "email", "stage", "status", "order_count", "net_revenue", "last_order_at", "rfm_r",
          "rfm_f", "rfm_m", "rfm_segment", "p_alive", "expected_orders", "predicted_clv"]


def json_items(key, query):
    items, cursor = [], None
    while True:
        path = f"/v1/customers?{query}&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        r = server.get(path, key)
        assert r.status == 200, r
        page = exact(r.body)
        items += page["customers"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def eventually(check, what, deadline=120):
    """Waits for check() to hold (a condition reached at the server's pace, not a timing test)."""
    end = time.time() + deadline
    while not check():
        if time.time() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


def pool_gauge(name):
    text = server.get("/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def open_export(key, path="/v1/customers?format=csv", port=None):
    """A raw connection that asked for an export and read its status line and headers. Its
    receive buffer is small, so that the kernel does not take the export in for the client."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(120)
    sock.connect(("127.0.0.1", port or server.port))
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return sock, head.decode("latin-1")


def quiet():
    """No export left running: every database worker idle, no transaction of ours left open."""
    return (pool_gauge("retentiond_db_pool_in_use") == 0 and
            pg.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'retentiond'"
                      " AND state <> 'idle'") == "0")


class SmallShop(unittest.TestCase):
    """The CSV against the JSON pages on a generated shop with predictions."""

    @classmethod
    def setUpClass(cls):
        cls.tenant, cls.admin = server.tenant()
        cls.read = server.key(cls.tenant, "read")
        lines, referrals = generated_shop(23, 2400, prefix=PREFIX)
        server.post_ndjson(cls.admin, lines)
        server.post_ndjson(cls.admin, referrals)
        r = server.post(f"/v1/models/clv/fit?as_of={AS_OF}", {}, cls.admin)
        assert r.status in (200, 201), r

    def export(self, query, key=None, headers=None):
        r = server.get(f"/v1/customers?{query}", key or self.admin, headers=headers)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["content-type"], "text/csv; charset=utf-8")
        self.assertRegex(r.headers["content-disposition"], r'^attachment; filename="customers-\d{4}-\d\d-\d\d\.csv"$')
        return parse_csv(r.body)

    def test_rows_are_the_json_pages_under_every_filter_and_sort(self):
        queries = ["", "sort=customer_id", "sort=order_count", "sort=last_order_at", "sort=p_alive",
                   "sort=predicted_clv", "stage=client", "stage=advocate&sort=last_order_at", "stage=suspect",
                   "stage=prospect&sort=order_count", "status=at_risk", "status=lapsed&sort=last_order_at",
                   "status=active&sort=p_alive", "segment=champions", "segment=hibernating&sort=order_count",
                   "min_p_alive=0.5&sort=p_alive", "min_p_alive=0.3&stage=client&sort=net_revenue",
                   f"as_of={AS_OF[:10]}&status=at_risk"]
        tricky = 0
        for q in queries:
            with self.subTest(query=q):
                want = [item_record(it, True) for it in json_items(self.admin, q)]
                got = self.export(f"{q}&format=csv")
                self.assertEqual(got[0], HEADER)
                self.assertEqual(got[1:], want)
                tricky += sum(1 for rec in got[1:] if rec[0].startswith(PREFIX) and "," in rec[1])
        self.assertGreater(tricky, 0)  # the quoting was exercised
        self.assertGreater(len(json_items(self.admin, "")), 1000)  # more than one JSON page

    def test_email_only_for_scope_admin(self):
        got = self.export("format=csv", key=self.read)
        self.assertEqual(got[0], [h for h in HEADER if h != "email"])
        self.assertEqual(got[1:], [item_record(it, False) for it in json_items(self.read, "")])
        self.assertFalse(any("@" in f for rec in got for f in rec))
        admin = self.export("format=csv")
        self.assertTrue(all("@" in rec[1] for rec in admin[1:] if rec[1]))

    def test_accept_and_format_choose(self):
        self.assertEqual(self.export("stage=client", headers={"Accept": "text/csv"})[0], HEADER)
        self.assertEqual(self.export("", headers={"Accept": "application/json;q=0.5, text/csv"})[0], HEADER)
        for accept in ("application/json, text/csv", "application/json", "*/*", "text/csv;q=0"):
            r = server.get("/v1/customers?limit=3", self.admin, headers={"Accept": accept})
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.json["customers"]), 3, accept)
        r = server.get("/v1/customers?format=json&limit=3", self.admin, headers={"Accept": "text/csv"})
        self.assertEqual(len(r.json["customers"]), 3)
        for path in ("/v1/customers?format=xml", "/v1/metrics/cohorts?format=xlsx", "/v1/metrics/retention?format="):
            r = server.get(path, self.admin)
            self.assertEqual(r.status, 400, path)
            self.assertEqual(r.headers["content-type"], "application/problem+json")
            self.assertEqual([e["field"] for e in r.json["errors"]], ["format"])
        # the list's other errors are problems before any byte, as in JSON
        r = server.get("/v1/customers?format=csv&stage=vip&cursor=zz", self.admin)
        self.assertEqual(r.status, 400)
        self.assertEqual({e["field"] for e in r.json["errors"]}, {"stage", "cursor"})
        self.assertEqual(server.get("/v1/customers?format=csv").status, 401)

    def test_cursor_resumes_and_limit_does_not_apply(self):
        page = exact(server.get("/v1/customers?sort=order_count&limit=100", self.admin).body)
        rest = self.export(f"sort=order_count&limit=5&cursor={page['next_cursor']}&format=csv")
        everything = json_items(self.admin, "sort=order_count")
        self.assertEqual(rest[1:], [item_record(it, True) for it in everything[100:]])
        self.assertEqual(len(self.export("limit=1&format=csv")), len(everything) + 1)

    def test_empty_list_is_the_header(self):
        _, key = server.tenant()
        self.assertEqual(self.export("format=csv", key=key), [HEADER])

    def test_cohorts_and_retention_are_their_json(self):
        shapes = {
            "/v1/metrics/retention": (["period_start", "period_end", "S", "E", "N", "lost", "new", "returning",
                                       "resurrecting", "dormant", "retention_rate", "churn_rate"],
                                      lambda doc: doc["series"]),
            "/v1/metrics/cohorts": (["cohort", "size", "period", "active", "share", "revenue", "active_on_or_after",
                                     "share_on_or_after", "cumulative_revenue_per_customer"],
                                    lambda doc: [dict(cell, cohort=c["cohort"], size=c["size"])
                                                 for c in doc["cohorts"] for cell in c["cells"]]),
        }
        for path, (columns, rows) in shapes.items():
            name = path.rsplit("/", 1)[1]
            for q in ("", "period=week", "period=quarter&mode=on_or_after", "source=api", "breakdown=source"):
                with self.subTest(path=path, query=q):
                    doc = exact(server.get(f"{path}?from=2024-06-01&{q}", self.admin).body)
                    r = server.get(f"{path}?from=2024-06-01&{q}", self.admin, headers={"Accept": "text/csv"})
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.headers["content-type"], "text/csv; charset=utf-8")
                    self.assertIn(f'filename="{name}-', r.headers["content-disposition"])
                    got = parse_csv(r.body)
                    if "breakdown" in q:
                        self.assertEqual(got[0], ["source"] + columns)
                        want = [[e["value"]] + [field(x[k]) for k in columns] for e in doc["entries"] for x in rows(e)]
                    else:
                        self.assertEqual(got[0], columns)
                        want = [[field(x[k]) for k in columns] for x in rows(doc)]
                    self.assertGreater(len(want), 3)
                    self.assertEqual(got[1:], want)
                    self.assertEqual(got[1:], parse_csv(server.get(f"{path}?from=2024-06-01&{q}&format=csv",
                                                                   self.admin).body)[1:])


class LargeExport(unittest.TestCase):
    """100 000 customers: memory, clients that go away, the cap on concurrent exports."""

    N = 100_000

    @classmethod
    def setUpClass(cls):
        cls.tenant, cls.key = server.tenant()
        lines = []
        for i in range(cls.N):
            cid = f"big{i:06d}"
            lines.append({"kind": "customer", "customer_id": cid, "email": f"{cid}@example.com"})
            if i % 2:
                lines.append({"kind": "order", "order_id": f"{cid}-1", "customer_id": cid,
                              "placed_at": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z",
                              "total": f"{i % 500}.{i % 100:02d}"})
        server.post_ndjson(cls.key, lines)   # one request

    def test_streams_100k_customers_with_flat_memory(self):
        # once, so that what any export allocates for good (a worker's malloc arena, libpq's
        # buffers) is there before the measurement
        warm = server.get("/v1/customers?format=csv&stage=customer", self.key, timeout=600)
        self.assertEqual(warm.status, 200)
        pid = server.proc.pid

        def status(field_name):
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field_name + ":"):
                        return int(line.split()[1]) * 1024
            raise AssertionError(field_name)

        try:   # the peak from now on (Linux: 5 resets VmHWM to the current VmRSS)
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            hwm_reset = True
        except OSError:
            hwm_reset = False
        before = status("VmRSS")
        sock, head = open_export(self.key)
        self.assertTrue(head.startswith("HTTP/1.1 200"), head)
        self.assertIn("Transfer-Encoding: chunked", head)
        body, peak, reads = bytearray(), before, 0
        while True:   # a slow reader: small pieces, a pause now and then, the resident set watched
            chunk = sock.recv(32 * 1024)
            if not chunk:
                break
            body += chunk
            reads += 1
            if reads % 16 == 0:
                time.sleep(0.01)
                peak = max(peak, status("VmRSS"))
            if body.endswith(b"\r\n0\r\n\r\n"):
                break
        sock.close()
        if hwm_reset:
            peak = max(peak, status("VmHWM"))
        # undo the chunked framing
        data, pos = bytearray(), 0
        while True:
            eol = body.index(b"\r\n", pos)
            size = int(body[pos:eol].split(b";")[0], 16)
            if size == 0:
                break
            data += body[eol + 2:eol + 2 + size]
            pos = eol + 2 + size + 2
        records = parse_csv(bytes(data))
        self.assertEqual(len(records), self.N + 1)
        self.assertEqual(records[0], HEADER)
        self.assertEqual(len({r[0] for r in records[1:]}), self.N)
        growth = peak - before
        bound = 1024 * 1024   # the buffer is 64 KiB; one fetch of 500 rows about 60 KiB of text
        self.assertGreater(len(data), 4 * bound)   # the test means something: the export is far larger
        self.assertLess(growth, bound, f"resident set grew by {growth} bytes for a {len(data)}-byte export")

    def test_clients_that_go_away_midway(self):
        for i in range(3 * POOL):
            for _ in range(600):   # the previous export may still be stopping: MAX_EXPORTS counts it
                sock, head = open_export(self.key, "/v1/customers?format=csv&sort=customer_id")
                if not head.startswith("HTTP/1.1 503"):
                    break
                sock.close()
                time.sleep(0.1)
            self.assertTrue(head.startswith("HTTP/1.1 200"), head)
            got = 0
            while got < 100_000:
                chunk = sock.recv(16 * 1024)
                self.assertTrue(chunk)
                got += len(chunk)
            if i % 2:   # a reset rather than an orderly close
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        eventually(quiet, "the exports stopped, their workers idle and their transactions closed")
        self.assertEqual(pool_gauge("retentiond_db_pool_connected"), POOL)
        r = server.get("/v1/customers?limit=2", self.key)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.json["customers"]), 2)
        whole = server.get("/v1/customers?format=csv&stage=suspect", self.key, timeout=600)
        self.assertEqual(whole.status, 200)
        self.assertEqual(len(parse_csv(whole.body)), self.N // 2 + 1)

    def test_exports_beyond_the_cap_wait_and_others_run(self):
        eventually(quiet, "no export running")
        held = [open_export(self.key) for _ in range(MAX_EXPORTS)]   # nobody reads them
        try:
            for _, head in held:
                self.assertTrue(head.startswith("HTTP/1.1 200"), head)
            r = server.get("/v1/customers?format=csv", self.key)
            self.assertEqual(r.status, 503)
            self.assertEqual(r.headers["content-type"], "application/problem+json")
            self.assertIn("retry-after", r.headers)
            # the held exports hold MAX_EXPORTS workers, no more: everything else still runs
            self.assertEqual(server.get("/v1/customers?limit=1", self.key).status, 200)
            self.assertEqual(server.get("/v1/metrics/cohorts?format=csv", self.key).status, 200)
            self.assertEqual(pool_gauge("retentiond_db_pool_in_use"), MAX_EXPORTS)
        finally:
            for sock, _ in held:
                sock.close()
        eventually(quiet, "the held exports stopped")

    def test_stop_cuts_a_slow_export(self):
        """SIGTERM while a client reads an export slowly: past the grace period (REQUEST_TIMEOUT)
        the export is cut, the body ends without its last chunk, and the server stops cleanly."""
        other = Server(pg, UPKEEP_INTERVAL=0, REQUEST_TIMEOUT=2, DB_POOL_SIZE=2).start()
        try:
            sock, head = open_export(self.key, port=other.port)
            self.assertTrue(head.startswith("HTTP/1.1 200"), head)
            other.proc.send_signal(15)
            body = bytearray()
            while True:   # slowly: the connection stays active past the grace period
                chunk = sock.recv(2048)
                if not chunk:
                    break
                body += chunk
                time.sleep(0.02)
            sock.close()
            self.assertEqual(other.proc.wait(120), 0)
            self.assertFalse(body.endswith(b"\r\n0\r\n\r\n"))   # not taken for a whole file
            self.assertGreater(len(body), 0)
            self.assertIn("streamed replies cut short by the stop", other.read_log())
            self.assertIn("msg=stopped", other.read_log())
        finally:
            other.stop()


if __name__ == "__main__":
    unittest.main()
