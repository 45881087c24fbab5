"""Operations: /metrics in valid Prometheus text format (checked by promtool), counters that
move when requests are made."""
import os
import re
import subprocess
import unittest

from harness import Postgres, ROOT, Server, module_cluster

pg = server = None


setUpModule, tearDownModule = module_cluster(globals())  # sets pg and server


def sample(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + ("{" + want if want else "")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Prometheus(unittest.TestCase):
    def test_format_is_valid_and_counters_move(self):
        _, key = server.tenant()
        before = server.get("/metrics").body.decode()
        o = {"order_id": "m1", "customer_id": "c", "placed_at": "2026-01-01", "total": "1"}
        self.assertEqual(server.post("/v1/orders", o, key).status, 201)
        self.assertEqual(server.post("/v1/orders", o, key).status, 200)
        self.assertEqual(server.post("/v1/orders", {"order_id": "m2"}, key).status, 422)
        r = server.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"))
        text = r.body.decode()
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        route = dict(method="POST", route="/v1/orders")
        self.assertEqual(sample(text, "retentiond_http_requests_total", **route, status=201)
                         - sample(before, "retentiond_http_requests_total", **route, status=201), 1)
        self.assertEqual(sample(text, "retentiond_http_requests_total", **route, status=422), 1)
        self.assertEqual(sample(text, "retentiond_records_ingested_total", kind="order", source="api")
                         - sample(before, "retentiond_records_ingested_total", kind="order", source="api"), 1)
        self.assertGreaterEqual(sample(text, "retentiond_records_duplicate_total"), 1)
        self.assertGreaterEqual(sample(text, "retentiond_records_rejected_total"), 1)
        self.assertGreater(sample(text, "retentiond_db_pool_size"), 0)
        # (as deltas: other tests of this module post orders to the same server)
        inf = dict(route, status=201, le="+Inf")
        self.assertEqual(sample(text, "retentiond_http_request_duration_seconds_bucket", **inf)
                         - sample(before, "retentiond_http_request_duration_seconds_bucket", **inf), 1)



class OpenAPI(unittest.TestCase):
    def test_document_is_valid_openapi_31(self):
        r = server.get("/openapi.json")
        self.assertEqual(r.status, 200)
        out = subprocess.run(["node", os.path.join(ROOT, "tests", "node", "validate.mjs"), "-"], input=r.body,
                             capture_output=True, cwd=os.path.join(ROOT, "tests", "node"))
        self.assertEqual(out.returncode, 0, out.stderr.decode() + out.stdout.decode())
        self.assertEqual(r.json["openapi"], "3.1.0")

    def test_redocly_recommended_rules_pass(self):
        # the rules client generators rely on: operationIds, security on every operation, 4xx
        r = server.get("/openapi.json")
        out = subprocess.run(["node", os.path.join(ROOT, "tests", "node", "lint.mjs"), "-"], input=r.body,
                             capture_output=True, cwd=os.path.join(ROOT, "tests", "node"))
        self.assertEqual(out.returncode, 0, out.stdout.decode() + out.stderr.decode())
        self.assertIn(b"0 errors, 0 warnings", out.stdout)

    def test_a_generated_typed_client_calls_the_server(self):
        import json
        name, key = server.tenant()
        out = subprocess.run(["node", os.path.join(ROOT, "tests", "node", "typed_client.mjs"),
                              f"http://127.0.0.1:{server.port}", key],
                             capture_output=True, text=True, cwd=os.path.join(ROOT, "tests", "node"), timeout=300)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(got["order_status"], 201)
        self.assertEqual(got["summary_status"], 200)
        # the report the typed client read is the server's, with the order it posted
        direct = server.get("/v1/metrics/summary?from=2026-01-01&to=2026-02-01", key).json
        self.assertEqual(got["summary"], direct)
        self.assertEqual(direct["counts"]["N"], 1)
        self.assertEqual(got["missing_status"], 404)
        self.assertEqual(got["missing_error"]["status"], 404)

    def test_every_route_is_documented_and_vice_versa(self):
        with open(os.path.join(ROOT, "src", "api", "routes.c")) as f:
            served = set(re.findall(r'\{"(GET|POST|PUT|PATCH|DELETE)", "([^"]+)"', f.read()))
        doc = server.get("/openapi.json").json
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops
                      if m in ("get", "post", "put", "patch", "delete")}
        self.assertTrue(served)
        self.assertEqual(served - documented, set(), "routes missing from the OpenAPI document")
        self.assertEqual(documented - served, set(), "documented paths the server does not serve")


class Readme(unittest.TestCase):
    def test_configuration_table_is_the_binarys(self):
        # README's settings table is the one the binary prints from its own table (config.c)
        table = server.cli("config-table").stdout.strip()
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        self.assertIn("| environment | flag | default | meaning |", table)
        self.assertIn(table, readme, "README's configuration table differs from `retentiond config-table`")


if __name__ == "__main__":
    unittest.main()
