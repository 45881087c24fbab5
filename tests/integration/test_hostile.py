"""Hostile input: a table of bad requests, each followed by a check that nothing was stored;
limits (body size, chunked bodies, headers, slow clients, connections per IP, request rate);
authentication of every route in the route table; tenant isolation on every GET route.

The route list is parsed from src/api/routes.c, so new routes are covered automatically.
"""
import http.client
import json
import os
import re
import select
import socket
import time
import unittest
import uuid

from harness import ROOT, Postgres, Server

pg = server = None
TENANT = KEY = TID = None

ROUTE_RE = re.compile(r'\{\s*"(GET|POST|PUT|DELETE|PATCH)"\s*,\s*"([^"]+)"\s*,\s*(SCOPE_\w+)')


def routes():
    with open(os.path.join(ROOT, "src", "api", "routes.c")) as f:
        found = ROUTE_RE.findall(f.read())
    assert len(found) >= 10, "could not parse the route table"
    return found


def setUpModule():
    global pg, server, TENANT, KEY, TID
    pg = Postgres().start()
    server = Server(pg, MAX_BODY_BYTES=65536, REQUEST_TIMEOUT=2).start()
    TENANT, KEY = server.tenant()
    TID = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", TENANT)


def tearDownModule():
    if server:
        server.stop()
    if pg:
        pg.destroy()


# ---- raw HTTP over a socket ----

def raw(port, data, timeout=10):
    """Sends bytes, reads until the server closes or a full response is in. Returns
    (status or None, headers dict, body bytes); status None = closed without an answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    chunks = []
    try:
        # send while watching for an early answer (413 before the whole upload): a client that
        # only reads after sending everything would lose it to the reset of the unread rest
        off = 0
        deadline = time.time() + timeout
        while off < len(data) and time.time() < deadline:
            r, w, _ = select.select([s], [s], [], 1)
            if r:
                break
            if w:
                try:
                    off += s.send(data[off:off + 65536])
                except OSError:
                    break
        while True:
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not c:
                break
            chunks.append(c)
            resp = b"".join(chunks)
            head, sep, body = resp.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
    finally:
        s.close()
    resp = b"".join(chunks)
    if not resp.startswith(b"HTTP/"):
        return None, {}, resp
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        headers[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return status, headers, body


def build(method, path, headers=None, body=None, key=None):
    h = {"Host": "127.0.0.1", "Connection": "close"}
    if key:
        h["Authorization"] = "Bearer " + key
    h.update(headers or {})
    if isinstance(body, str):
        body = body.encode()
    if body is not None and "Transfer-Encoding" not in h and "Content-Length" not in h:
        h["Content-Length"] = str(len(body))
    if isinstance(path, str):
        path = path.encode("latin-1")
    out = method.encode() + b" " + path + b" HTTP/1.1\r\n"
    for k, v in h.items():
        out += k.encode() + b": " + (v if isinstance(v, bytes) else v.encode("latin-1")) + b"\r\n"
    return out + b"\r\n" + (body or b"")


def chunked(payload, size=8192):
    out = b""
    for i in range(0, len(payload), size):
        part = payload[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def order(oid="h1", **kw):
    d = {"order_id": oid, "customer_id": "hc1", "placed_at": "2026-01-05T10:00:00Z", "total": "10.00"}
    d.update(kw)
    return d


def j(v):
    return json.dumps(v).encode()


J = {"Content-Type": "application/json"}
DEEP = 10000
SQLI = "x'); DROP TABLE orders;--"

# (name, method, path, headers, body, expected status or set; None in the set = connection closed)
CASES = [
    ("malformed json", "POST", "/v1/orders", J, b'{"order_id": "a", ', 400),
    ("truncated json", "POST", "/v1/orders", J, j(order())[:-5], 400),
    ("trailing garbage", "POST", "/v1/orders", J, j(order()) + b"}}", 400),
    ("not json at all", "POST", "/v1/orders", J, b"\xff\xfe\x00garbage", 400),
    ("deep arrays", "POST", "/v1/orders", J, b"[" * DEEP + b"]" * DEEP, 400),
    ("deep arrays unclosed", "POST", "/v1/orders", J, b"[" * DEEP, 400),
    ("deep objects", "POST", "/v1/orders", J, b'{"a":' * DEEP + b"1" + b"}" * DEEP, 400),
    ("deep in a field", "POST", "/v1/events", J,
     b'{"event_id":"e1","customer_id":"c","type":"view","occurred_at":"2026-01-01","properties":'
     + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}", 400),
    ("duplicate keys", "POST", "/v1/orders", J,
     b'{"order_id":"a","order_id":"b","customer_id":"c","placed_at":"2026-01-01","total":"1"}', 400),
    ("invalid utf-8", "POST", "/v1/orders", J, j(order()).replace(b'"h1"', b'"h\xc3\x28\xff1"'), 400),
    ("overlong utf-8", "POST", "/v1/orders", J, j(order()).replace(b'"h1"', b'"\xc0\xafh1"'), 400),
    ("lone surrogate", "POST", "/v1/orders", J, j(order()).replace(b'"h1"', b'"\\ud800h1"'), 400),
    ("raw NUL in string", "POST", "/v1/orders", J, j(order()).replace(b'"h1"', b'"h\x001"'), 400),
    ("raw NUL outside string", "POST", "/v1/orders", J, j(order()) + b"\x00", 400),
    ("escaped NUL", "POST", "/v1/orders", J, j(order()).replace(b'"h1"', b'"h\\u00001"'), {400, 422}),
    ("control char in id", "POST", "/v1/orders", J, j(order("h\u00071")), 422),
    ("1 MB string (over body limit)", "POST", "/v1/orders", J, j(order("x" * 1_000_000)), 413),
    ("60 KB string id", "POST", "/v1/orders", J, j(order("x" * 60_000)), 422),
    ("60 KB email", "POST", "/v1/customers", J, j({"customer_id": "c", "email": "a@" + "b" * 60_000}), 422),
    ("1e400 total", "POST", "/v1/orders", J, j(order()).replace(b'"10.00"', b"1e400"), {400, 422}),
    ("1e400 in extra field", "POST", "/v1/orders", J, j(order())[:-1] + b', "x": 1e400}', {400, 422}),
    ("huge integer", "POST", "/v1/orders", J, j(order()).replace(b'"10.00"', b"9" * 400), {400, 422}),
    ("huge money string", "POST", "/v1/orders", J, j(order(total="9" * 40)), 422),
    ("huge money number", "POST", "/v1/orders", J, j(order()).replace(b'"10.00"', b"1e20"), 422),
    ("negative money", "POST", "/v1/orders", J, j(order(total="-5.00")), 422),
    ("negative money number", "POST", "/v1/orders", J, j(order(total=-5)), 422),
    ("negative tiny", "POST", "/v1/orders", J, j(order()).replace(b'"10.00"', b"-0.01"), 422),
    ("NaN money", "POST", "/v1/orders", J, j(order(total="NaN")), 422),
    ("NaN literal", "POST", "/v1/orders", J, j(order()).replace(b'"10.00"', b"NaN"), 400),
    ("money with exponent string", "POST", "/v1/orders", J, j(order(total="1e3")), 422),
    ("too many decimals", "POST", "/v1/orders", J, j(order(total="1.0000001")), 422),
    ("refund above total", "POST", "/v1/orders", J, j(order(refunded="11")), 422),
    ("impossible date", "POST", "/v1/orders", J, j(order(placed_at="2026-02-30")), 422),
    ("date garbage", "POST", "/v1/orders", J, j(order(placed_at="yesterday")), 422),
    ("year 0", "POST", "/v1/orders", J, j(order(placed_at="0000-01-01")), 422),
    ("wrong types", "POST", "/v1/orders", J,
     j({"order_id": {"a": 1}, "customer_id": [1], "placed_at": 5, "total": True}), 422),
    ("bad currency", "POST", "/v1/orders", J, j(order(currency="usd'; --")), 422),
    ("bad status", "POST", "/v1/orders", J, j(order(status="paid' OR 1=1")), 422),
    ("empty body", "POST", "/v1/orders", J, b"", 400),
    ("whitespace body", "POST", "/v1/orders", J, b"   \n ", 400),
    ("json array", "POST", "/v1/orders", J, j([order()]), {400, 422}),
    ("json string", "POST", "/v1/customers", J, b'"hello"', {400, 422}),
    ("json null", "POST", "/v1/events", J, b"null", {400, 422}),
    ("empty object", "POST", "/v1/spend", J, b"{}", 422),
    ("wrong content type", "POST", "/v1/orders", {"Content-Type": "text/plain"}, j(order()), 415),
    ("form content type", "POST", "/v1/orders", {"Content-Type": "application/x-www-form-urlencoded"},
     b"order_id=a", 415),
    ("no content type", "POST", "/v1/orders", {}, j(order()), 415),
    ("content type prefix trick", "POST", "/v1/orders", {"Content-Type": "application/jsonx"}, j(order()), 415),
    ("body over limit", "POST", "/v1/orders", J, b" " * 70_000, 413),
    ("declared length over limit", "POST", "/v1/orders", dict(J, **{"Content-Length": "99999999999"}), b"", 413),
    ("chunked over limit", "POST", "/v1/orders", dict(J, **{"Transfer-Encoding": "chunked"}),
     chunked(b" " * 200_000), 413),
    ("chunked malformed", "POST", "/v1/orders", dict(J, **{"Transfer-Encoding": "chunked"}),
     b"zz\r\nabc\r\n0\r\n\r\n", {400, None}),
    ("bad content-length", "POST", "/v1/orders", dict(J, **{"Content-Length": "12abc"}), b"{}", {400, None}),
    ("negative content-length", "POST", "/v1/orders", dict(J, **{"Content-Length": "-1"}), b"{}", {400, None}),
    ("batch of garbage lines", "POST", "/v1/batch", {"Content-Type": "application/x-ndjson"},
     b"{\n" + b"[" * DEEP + b"\n\xff\xfe\n" + b'{"kind":"order","order_id":"a","total":"-1"}\n'
     + b'{"kind":"nope"}\n{"kind":"order","kind":"order"}\n', 200),
    ("batch csv garbage", "POST", "/v1/batch", {"Content-Type": "text/csv"},
     b'kind,order_id,total\n"unterminated,a,b\norder,,\n,,,,,,,,\n\x00\x01,\xff\n', 200),
    ("batch json array of junk", "POST", "/v1/batch", J, b'[1, "a", null, [], {"kind": "order"}]', {200, 400, 422}),
    ("batch deep array", "POST", "/v1/batch", J, b"[" * DEEP + b"]" * DEEP, {200, 400, 422}),
    ("wrong method PUT", "PUT", "/v1/orders", J, j(order()), 405),
    ("wrong method DELETE", "DELETE", "/v1/customers", {}, None, 405),
    ("wrong method GET on ingest", "GET", "/v1/orders", {}, None, 405),
    ("wrong method PATCH", "PATCH", "/v1/metrics/summary", J, b"{}", 405),
    ("unknown method", "BREW", "/v1/orders", {}, None, {400, 405, 501, None}),
    ("unknown route", "GET", "/v1/nope", {}, None, 404),
    ("unknown deeper route", "POST", "/v1/orders/extra", J, j(order()), 404),
    ("path traversal", "GET", "/v1/../../etc/passwd", {}, None, {400, 404}),
    ("bad percent-encoding", "GET", "/v1/customers/%zz", {}, None, {400, 404}),
    ("percent NUL", "GET", "/v1/customers/%00", {}, None, {400, 404}),
    ("percent NUL in middle", "GET", "/v1/customers/a%00b", {}, None, {400, 404}),
    ("truncated percent", "GET", "/v1/customers/%", {}, None, {400, 404}),
    ("bad query encoding", "GET", "/v1/metrics/summary?from=%zz&to=%", {}, None, 400),
    ("sql in query", "GET", "/v1/customers?stage=x'%3B%20DROP%20TABLE%20orders%3B--", {}, None, 400),
    ("huge limit", "GET", "/v1/customers?limit=99999999999999999999", {}, None, 400),
    ("negative limit", "GET", "/v1/customers?limit=-1", {}, None, 400),
    ("garbage cursor", "GET", "/v1/customers?cursor=%ff%fe'--", {}, None, 400),
    ("long path", "GET", "/v1/customers/" + "a" * 30_000, {}, None, {400, 404, 414, 431, None}),
    ("100 KB header", "GET", "/healthz", {"X-Big": "a" * 100_000}, None, {400, 413, 431, None}),
    ("many headers", "GET", "/healthz", {f"X-H{i}": "v" * 100 for i in range(1000)}, None, {400, 413, 431, None}),
    ("100 KB authorization", "GET", "/v1/metrics/summary", {"Authorization": "Bearer " + "k" * 100_000}, None,
     {400, 401, 413, 431, None}),
    ("header with NUL", "GET", "/healthz", {"X-A": b"a\x00b"}, None, {200, 400, None}),
    ("webhook unsigned garbage", "POST", "/v1/webhooks/shopify/$TENANT", J, b"[" * DEEP, 401),
    ("webhook bad signature", "POST", "/v1/webhooks/woocommerce/$TENANT",
     dict(J, **{"X-WC-Webhook-Signature": "AAAA", "X-WC-Webhook-Topic": "order.created"}), j({"id": 1}), 401),
    ("webhook unknown tenant", "POST", "/v1/webhooks/shopify/..%2f..%2fetc", J, b"{}", {401, 404}),
]

NO_KEY_CASES = [
    ("empty bearer", "GET", "/v1/metrics/summary", {"Authorization": "Bearer "}, None, 401),
    ("basic auth", "GET", "/v1/metrics/summary", {"Authorization": "Basic YTpi"}, None, 401),
    ("forged key", "GET", "/v1/metrics/summary", {"Authorization": "Bearer rk_x_" + "0" * 40}, None, 401),
    ("sql in key", "GET", "/v1/metrics/summary", {"Authorization": "Bearer rk_' OR '1'='1_x"}, None, 401),
]


class Base(unittest.TestCase):
    def assert_nothing_stored(self, name):
        tables = ("orders", "customers", "events", "spend")
        counts = pg.sql("SELECT " + ", ".join(f"(SELECT count(*) FROM {t} WHERE tenant_id = {TID})"
                                              for t in tables))[0]
        self.assertEqual(counts, ["0"] * len(tables), f"{name}: rows in {dict(zip(tables, counts))}")

    def check(self, name, method, path, headers, body, expected, key):
        path = path.replace("$TENANT", TENANT)
        status, h, rbody = raw(server.port, build(method, path, headers, body, key=key))
        allowed = expected if isinstance(expected, set) else {expected}
        self.assertIn(status, allowed, f"{name}: got {status} {rbody[:300]!r}")
        if status is not None and status >= 400 and method != "HEAD":
            ct = h.get("content-type", "")
            # our replies are problem+json; libmicrohttpd's own early 4xx (bad framing) are not
            if ct.startswith("application/problem+json"):
                p = json.loads(rbody)
                self.assertEqual(p["status"], status, name)
        self.assert_nothing_stored(name)
        return status, h, rbody


class HostileTable(Base):
    def test_table(self):
        for case in CASES:
            with self.subTest(case[0]):
                self.check(*case, key=KEY)
        for case in NO_KEY_CASES:
            with self.subTest(case[0]):
                self.check(*case, key=None)
        self.assertEqual(server.get("/healthz").status, 200)
        self.assertEqual(server.get("/readyz").status, 200)

    def test_sql_looking_id_is_stored_literally(self):
        try:
            r = server.post("/v1/orders", order(SQLI, customer_id=SQLI + "c"), KEY)
            self.assertEqual(r.status, 201, r)
            self.assertEqual(r.json["order_id"], SQLI)
            self.assertEqual(pg.scalar(f"SELECT order_id FROM orders WHERE tenant_id = {TID}"), SQLI)
            self.assertEqual(pg.scalar("SELECT to_regclass('public.orders') IS NOT NULL"), "t")
            r = server.get("/v1/customers/" + "".join("%%%02X" % b for b in (SQLI + "c").encode()), KEY)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json.get("customer_id"), SQLI + "c")
        finally:
            for t in ("orders", "customers", "events", "stage_history"):
                pg.sql(f"DELETE FROM {t} WHERE tenant_id = {TID}")

    def test_negative_zero_is_zero(self):
        """-0 is a valid zero total: stored as 0, never as a negative amount."""
        try:
            r = server.request("POST", "/v1/orders", j(order("negzero")).replace(b'"10.00"', b"-0"), key=KEY,
                               content_type="application/json")
            self.assertIn(r.status, (201, 422), r)
            if r.status == 201:
                self.assertEqual(pg.scalar(f"SELECT total::text FROM orders WHERE tenant_id = {TID}"), "0")
            r = server.request("POST", "/v1/orders", j(order("negzero2")).replace(b'"10.00"', b"-0.0"), key=KEY,
                               content_type="application/json")
            self.assertIn(r.status, (201, 422), r)
            self.assertEqual(pg.scalar(f"SELECT count(*) FROM orders WHERE tenant_id = {TID} AND total < 0"), "0")
        finally:
            for t in ("orders", "customers", "events", "stage_history"):
                pg.sql(f"DELETE FROM {t} WHERE tenant_id = {TID}")


class Limits(Base):
    def test_big_header_then_server_still_answers(self):
        for _ in range(3):
            status, _, _ = raw(server.port, build("GET", "/healthz", {"X-Big": "a" * 100_000}))
            self.assertTrue(status is None or 400 <= status < 500, status)
        self.assertEqual(server.get("/healthz").status, 200)

    def _slow(self, prefix, drip):
        """Sends `prefix`, then one byte of `drip` per second. Returns the seconds until the
        server closed the connection (None if it did not within 12 s) and what it answered."""
        s = socket.create_connection(("127.0.0.1", server.port), timeout=1)
        t0 = time.time()
        closed_after = None
        got = b""
        try:
            s.sendall(prefix)
            for i in range(12):
                try:
                    s.sendall(drip[i % len(drip):i % len(drip) + 1])
                except OSError:
                    closed_after = time.time() - t0
                    break
                # meanwhile the server keeps serving other clients
                self.assertEqual(server.get("/healthz", timeout=5).status, 200)
                deadline = time.time() + 1.0
                while time.time() < deadline:
                    try:
                        c = s.recv(4096)
                    except socket.timeout:
                        continue
                    except OSError:
                        c = b""
                    if not c:
                        closed_after = time.time() - t0
                        break
                    got += c
                if closed_after is not None:
                    break
        finally:
            s.close()
        return closed_after, got

    def test_slow_headers_are_cut_off(self):
        closed, got = self._slow(b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaa\r\n")
        print(f"\n[slow headers] closed after {closed} s, answer {got[:40]!r}", flush=True)
        self.assertIsNotNone(closed, "a client dripping headers one byte a second was never cut off")
        self.assertLess(closed, 8)

    def test_slow_body_is_cut_off(self):
        body = j(order("slow"))
        head = build("POST", "/v1/orders", J, None, key=KEY).replace(
            b"\r\n\r\n", b"\r\nContent-Length: %d\r\n\r\n" % len(body))
        closed, got = self._slow(head, body)
        print(f"\n[slow body] closed after {closed} s, answer {got[:40]!r}", flush=True)
        self.assertIsNotNone(closed, "a client dripping its body one byte a second was never cut off")
        self.assertLess(closed, 8)
        self.assert_nothing_stored("slow body")

    def test_idle_connection_is_closed(self):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=8)
        t0 = time.time()
        try:
            self.assertEqual(s.recv(1), b"")
        except OSError:
            pass
        finally:
            s.close()
        self.assertLess(time.time() - t0, 7)

    def test_connections_per_ip(self):
        other = Server(pg, MAX_CONN_PER_IP=5).start()
        try:
            socks = []
            for _ in range(10):
                socks.append(socket.create_connection(("127.0.0.1", other.port), timeout=3))
                time.sleep(0.02)
            working = refused = 0
            for s in socks:
                try:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 200"):
                    working += 1
                else:
                    refused += 1
            print(f"\n[MAX_CONN_PER_IP=5] 10 sockets: {working} served, {refused} refused", flush=True)
            self.assertEqual(working, 5)
            self.assertEqual(refused, 5)
            for s in socks:
                s.close()
            deadline = time.time() + 5
            while time.time() < deadline:
                try:
                    if other.get("/healthz", timeout=2).status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            self.assertEqual(other.get("/healthz").status, 200)
        finally:
            other.stop()

    def test_rate_limit(self):
        other = Server(pg, RATE_LIMIT=5, RATE_BURST=5)
        # the harness polls /healthz while starting; let the bucket refill before the burst
        other.start()
        time.sleep(1.2)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", other.port, timeout=5)
            statuses, retry = [], []
            for _ in range(30):
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                r.read()
                statuses.append(r.status)
                if r.status == 429:
                    retry.append(r.getheader("Retry-After"))
            conn.close()
            print(f"\n[RATE_LIMIT=5 burst 5] 30 requests: {statuses.count(200)} x 200, "
                  f"{statuses.count(429)} x 429", flush=True)
            self.assertGreaterEqual(statuses.count(200), 5)
            self.assertGreater(statuses.count(429), 10)
            self.assertTrue(all(r and int(r) >= 1 for r in retry), retry)
            self.assertEqual(set(statuses), {200, 429})
        finally:
            other.stop()


class Auth(Base):
    def test_every_route_without_key_and_without_scope(self):
        _, read_only = TENANT, server.key(TENANT, "read")
        ingest_only = server.key(TENANT, "ingest")
        for method, pattern, scope in routes():
            path = pattern.replace("{id}", "c1").replace("{tenant}", TENANT)
            body = b"{}" if method == "POST" else None
            hdr = J if method == "POST" else {}
            with self.subTest(f"{method} {pattern} no key"):
                status, _, b = raw(server.port, build(method, path, hdr, body))
                if scope == "SCOPE_PUBLIC":
                    self.assertEqual(status, 200, f"{pattern}: {b[:200]!r}")
                else:  # keyed routes and webhooks (no signature) alike
                    self.assertEqual(status, 401, f"{pattern}: {b[:200]!r}")
            with self.subTest(f"{method} {pattern} wrong key"):
                status, _, _ = raw(server.port, build(method, path, hdr, body, key="rk_nope_" + "a" * 43))
                self.assertEqual(status, 200 if scope == "SCOPE_PUBLIC" else 401)
            if scope in ("SCOPE_PUBLIC", "SCOPE_WEBHOOK"):
                continue
            lacking = read_only if scope in ("SCOPE_INGEST", "SCOPE_ADMIN") else ingest_only
            with self.subTest(f"{method} {pattern} lacking scope"):
                status, _, b = raw(server.port, build(method, path, hdr, body, key=lacking))
                self.assertEqual(status, 403, f"{pattern}: {b[:200]!r}")
        self.assert_nothing_stored("auth")


class TenantIsolation(unittest.TestCase):
    def test_get_routes_never_show_another_tenants_data(self):
        a_name, a_key = server.tenant()
        b_name, b_key = server.tenant()
        secret = "bsecret" + uuid.uuid4().hex[:10]
        bcid = secret + "-cust"
        self.assertEqual(server.post("/v1/customers", {"customer_id": bcid, "email": secret + "@b.example"},
                                     b_key).status, 201)
        for i, d in enumerate(("2025-03-01", "2025-06-01", "2025-09-01", "2026-01-01")):
            r = server.post("/v1/orders", {"order_id": f"{secret}-o{i}", "customer_id": bcid,
                                           "placed_at": d + "T10:00:00Z", "total": "100.00"}, b_key)
            self.assertEqual(r.status, 201, r)
        self.assertEqual(server.post("/v1/events", {"event_id": secret + "-e", "customer_id": bcid,
                                                    "type": "review", "occurred_at": "2026-01-02",
                                                    "properties": {"rating": 5}}, b_key).status, 201)
        # B sees its own customer
        self.assertEqual(server.get("/v1/customers/" + bcid, b_key).status, 200)
        gets = [(m, p) for m, p, _ in routes() if m == "GET"]
        self.assertTrue(any("{id}" in p for _, p in gets))
        for _, pattern in gets:
            path = pattern.replace("{id}", bcid).replace("{tenant}", b_name)
            sep = "&" if "?" in path else "?"
            for query in ("", sep + "from=2020-01-01&to=2027-01-01"):
                with self.subTest(pattern + query):
                    r = server.get(path + query, a_key)
                    self.assertNotIn(secret.encode(), r.body, f"{pattern}: B's data leaked to A")
                    self.assertNotIn(b_name.encode(), r.body)
                    if "{id}" in pattern:
                        self.assertEqual(r.status, 404, r)
                    elif pattern.startswith("/v1/") and r.status == 200:
                        self.assert_zero_counts(pattern, r.json)
        # A's key naming B in a query string changes nothing either
        r = server.get(f"/v1/customers?tenant={b_name}&tenant_id=1", a_key)
        self.assertNotIn(secret.encode(), r.body)

    def assert_zero_counts(self, pattern, doc):
        """Counts in A's reports are all zero: A has no data."""
        def walk(v, path):
            if isinstance(v, dict):
                for k, x in v.items():
                    kl = k.lower()
                    if isinstance(x, (int, float)) and not isinstance(x, bool) and (
                            kl in ("customers", "count", "orders", "active", "new", "returning", "lost",
                                   "reactivated", "order_count", "revenue", "net_revenue", "sample_size")
                            or kl.endswith("_count")):
                        self.assertEqual(x, 0, f"{pattern}: {path}.{k} = {x} for a tenant without data")
                    walk(x, f"{path}.{k}")
            elif isinstance(v, list):
                if path.endswith(".items") or path.endswith(".customers") or path == "$.data":
                    self.assertEqual(v, [], f"{pattern}: {path} lists records for a tenant without data")
                for i, x in enumerate(v):
                    walk(x, f"{path}[{i}]")
        walk(doc, "$")


if __name__ == "__main__":
    unittest.main()
