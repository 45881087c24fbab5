"""The first run: `retentiond demo` loads the sample shop (the CDNOW purchases, moved to end
yesterday) into an empty tenant and fits it; `make run`'s script does it for the demo tenant it
creates and prints the dashboard's address with the key; DEMO=0 leaves the tenant empty.

What the shop must hold is read from the fixture file itself, in Python, independently of the
service: every purchase, on its own date moved by the same number of days, with its amount."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from harness import FIXTURES, ROOT, Postgres, Server, free_port, module_cluster

pg = server = None
setUpModule, tearDownModule = module_cluster(globals(), CLV_REFIT_INTERVAL=0)


def cdnow():
    """(customer id, date, amount) of every purchase in the fixture."""
    rows = []
    with open(os.path.join(FIXTURES, "cdnow", "CDNOW_sample.txt")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 5:
                d = parts[2]
                rows.append((int(parts[0]), date(int(d[:4]), int(d[4:6]), int(d[6:])), Decimal(parts[4])))
    return rows


class Demo(unittest.TestCase):
    def test_loads_the_sample_shop_moved_to_end_yesterday(self):
        name, key = server.tenant()
        out = server.cli("demo", "--tenant", name)
        self.assertIn("demo: done", out.stderr)
        tid = pg.scalar("SELECT tenant_id FROM tenants WHERE name = :'v1'", name)
        rows = cdnow()
        self.assertEqual(len(rows), 6919)
        self.assertEqual(len({r[0] for r in rows}), 2357)
        yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
        shift = yesterday - max(r[1] for r in rows)
        want = Counter((f"cdnow-{c:05d}", (d + shift).isoformat(), str(a)) for c, d, a in rows)
        got = Counter(tuple(r) for r in pg.sql(
            "SELECT customer_id, (placed_at AT TIME ZONE 'UTC')::date, total FROM orders WHERE tenant_id = :'v1'", tid))
        self.assertEqual(got, want)
        # every customer of the orders, and the leads who only browsed
        self.assertEqual(pg.scalar("SELECT count(*) FROM customers WHERE tenant_id = :'v1' AND order_count > 0", tid),
                         "2357")
        self.assertEqual(pg.scalar("SELECT count(*) FROM customers WHERE tenant_id = :'v1' AND order_count = 0 "
                                   "AND event_count > 0", tid), "300")
        # a rung for everyone, advocates among them, spend by channel, and a fitted model
        ladder = server.get("/v1/metrics/ladder", key).json
        self.assertEqual(sum(s["count"] for s in ladder["stages"]), 2657)
        self.assertGreater(int(pg.scalar("SELECT count(*) FROM customers WHERE tenant_id = :'v1' "
                                         "AND stage = 'advocate'", tid)), 0)
        self.assertEqual(pg.scalar("SELECT count(DISTINCT channel) FROM spend WHERE tenant_id = :'v1'", tid), "4")
        clv = server.get("/v1/metrics/clv", key)
        self.assertEqual(clv.status, 200, clv)
        self.assertEqual(pg.scalar("SELECT count(*) FROM customer_predictions WHERE tenant_id = :'v1'", tid), "2357")
        # a second load is refused and changes nothing
        again = server.cli("demo", "--tenant", name, check=False)
        self.assertEqual(again.returncode, 2)
        self.assertIn("has data already", again.stderr)
        self.assertEqual(pg.scalar("SELECT count(*) FROM orders WHERE tenant_id = :'v1'", tid), "6919")

    def test_unknown_tenant_and_usage(self):
        self.assertEqual(server.cli("demo", "--tenant", "nobody-" + uuid.uuid4().hex[:6], check=False).returncode, 3)
        self.assertEqual(server.cli("demo", check=False).returncode, 2)


class FirstRun(unittest.TestCase):
    """scripts/run.sh, what `make run` runs once the binary is built, against a cluster of its own."""

    def start(self, demo, database=True, **extra):
        own = Postgres()
        self.addCleanup(shutil.rmtree, own.dir, True)
        if database:
            own.start()
            self.addCleanup(own.destroy)
        port = free_port()
        env = dict(os.environ, PORT=str(port), BIND_ADDRESS="127.0.0.1", DEMO=demo, CLV_REFIT_INTERVAL="0",
                   PGPORT_PRIVATE=str(free_port()), **extra)
        env.pop("DATABASE_URL", None)
        if database:
            env["DATABASE_URL"] = own.url
        log = open(os.path.join(own.dir, "run.log"), "w+")
        proc = subprocess.Popen([os.path.join(ROOT, "scripts", "run.sh")], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

        def stop():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            log.close()
        self.addCleanup(stop)
        srv = Server(own)
        srv.port = port
        deadline = time.time() + 120
        while time.time() < deadline:
            log.seek(0)
            text = log.read()
            m = re.search(r"http://localhost:%d/#key=(rk_\S+)" % port, text)
            if m:
                try:
                    if srv.get("/readyz").status == 200:
                        return srv, m.group(1), text
                except OSError:
                    pass
            if proc.poll() is not None:
                self.fail("run.sh exited:\n" + text)
            time.sleep(0.1)
        self.fail("run.sh did not start:\n" + text)

    def test_private_cluster_when_there_is_no_database_url(self):
        # as a newcomer runs it: no DATABASE_URL, the checkout under a private directory (as root's
        # home is) that the postgres user cannot enter
        private = tempfile.mkdtemp(prefix="rdprivate-")   # mode 700
        self.addCleanup(shutil.rmtree, private, True)
        srv, key, text = self.start("0", database=False, PGDATA_PRIVATE=os.path.join(private, "pgdata"))
        m = re.search(r"private PostgreSQL running in (\S+)", text)
        self.assertIsNotNone(m, text)
        pgdir = m.group(1)
        self.addCleanup(shutil.rmtree, pgdir, True)
        self.addCleanup(subprocess.run, [os.path.join(ROOT, "scripts", "pg.sh"), "stop", pgdir], capture_output=True)
        if os.geteuid() == 0:
            self.assertTrue(pgdir.startswith("/var/lib/postgresql/retentiond-"), pgdir)
        self.assertEqual(srv.get("/v1/customers", key).status, 200)

    def test_make_run_shows_the_sample_shop(self):
        srv, key, text = self.start("1")
        self.assertIn("demo: loading the sample shop", text)
        summary = srv.get("/v1/metrics/summary", key).json
        self.assertEqual(summary["counts"]["customers"], 2657)
        self.assertEqual(srv.get("/v1/metrics/clv", key).status, 200)

    def test_demo_0_starts_empty(self):
        srv, key, text = self.start("0")
        self.assertNotIn("demo: loading", text)
        self.assertEqual(srv.get("/v1/customers", key).json["customers"], [])


if __name__ == "__main__":
    unittest.main()
