"""Upgrading in place: a database migrated and filled by the service as it was before its
migrations were squashed into migrations/001_baseline.sql and its functions moved to sql/ is
upgraded by this binary's `migrate` and then answers every read endpoint exactly as the older
service answered it on the same data.

The older service is built from the repository's own history (LEGACY_COMMIT, the last commit
with the eighteen migrations) into build/legacy-<commit>/, once, and reused by later runs.
"""
import json
import os
import random
import re
import subprocess
import unittest

from harness import ROOT, Postgres, Server
from test_clv import cdnow_rows

LEGACY_COMMIT = "f4563dfed23642ce95efccd462a3dc4eededa3b7"
AS_OF = "1998-06-30T12:00:00Z"
FIT_AS_OF = "1997-09-30"


def legacy_binary():
    out = os.path.join(ROOT, "build", "legacy-" + LEGACY_COMMIT[:12])
    binary = os.path.join(out, "build", "retentiond")
    if os.path.exists(binary):
        return binary
    src = out + ".tmp"
    subprocess.run(["rm", "-rf", src], check=True)
    os.makedirs(src)
    # the history is part of the repository: a clone has it (a shallow one would not, and fails here)
    archive = subprocess.run(["git", "-C", ROOT, "archive", LEGACY_COMMIT], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env["CFLAGS"] = "-O1"
    build = subprocess.run(["make", "-C", src, "-j2", "build/retentiond", "DEPS_LEVEL=build"], env=env,
                           capture_output=True, text=True)
    if build.returncode != 0:
        raise RuntimeError("building the older service failed:\n" + build.stdout[-3000:] + build.stderr[-3000:])
    os.rename(src, out)
    return binary


def sample_shop():
    """The CDNOW sample's orders (tests/fixtures/cdnow), a few of them refunded, cancelled or
    test orders, with customer records, engagement carrying advocacy signals, referrals and
    spend; fixed by the seed."""
    rnd = random.Random(20261203)
    lines = []
    for i, (cid, d, dollars) in enumerate(cdnow_rows(), 1):
        lines.append({"kind": "order", "order_id": str(i), "customer_id": str(cid),
                      "placed_at": d.isoformat() + f"T{rnd.randrange(24):02d}:15:00Z", "total": dollars,
                      "status": rnd.choice(["paid"] * 30 + ["refunded", "cancelled"]), "test": rnd.random() < 0.01})
    for c in range(1, 2400, 3):  # some beyond the sample: records without orders
        lines.append({"kind": "customer", "customer_id": str(c), "email": f"c{c}@example.com",
                      "created_at": f"1996-{1 + c % 12:02d}-{1 + c % 27:02d}T08:00:00Z",
                      "channel": ["ads", "organic", "email"][c % 3]})
        if c % 4 == 0:
            lines.append({"kind": "event", "event_id": f"e{c}-v", "customer_id": str(c), "type": "page_view",
                          "occurred_at": "1997-03-01T10:00:00Z"})
        if c % 7 == 0:
            lines.append({"kind": "event", "event_id": f"e{c}-r", "customer_id": str(c), "type": "review",
                          "occurred_at": "1998-02-01T10:00:00Z", "properties": {"rating": 4 + c % 2}})
        if c % 11 == 0:
            lines.append({"kind": "event", "event_id": f"e{c}-n", "customer_id": str(c), "type": "nps",
                          "occurred_at": "1998-05-01T10:00:00Z", "properties": {"score": 8 + c % 3}})
        if c % 13 == 0:
            lines.append({"kind": "event", "event_id": f"e{c}-ref", "customer_id": str(c + 1),
                          "type": "referral", "occurred_at": "1997-09-01T10:00:00Z",
                          "properties": {"referred_customer_id": str(c)}})
    for m in range(1, 13):
        lines.append({"kind": "spend", "type": "acquisition", "channel": "ads", "period": f"1997-{m:02d}",
                      "amount": f"{100 + 10 * m}"})
        lines.append({"kind": "spend", "type": "retention", "channel": "email", "period": f"1997-{m:02d}",
                      "amount": "40"})
    return "".join(json.dumps(x) + "\n" for x in lines)


# Every read a client can make, with explicit instants so that the answers do not move with the clock.
PERIOD = "from=1997-01-01T00:00:00Z&to=1998-07-01T00:00:00Z"
READS = [f"/v1/metrics/summary?{PERIOD}", f"/v1/metrics/summary?{PERIOD}&window=90",
         f"/v1/metrics/retention?{PERIOD}&period=week", f"/v1/metrics/retention?{PERIOD}&period=month",
         f"/v1/metrics/retention?{PERIOD}&period=quarter", f"/v1/metrics/cohorts?{PERIOD}&period=month",
         f"/v1/metrics/cohorts?{PERIOD}&period=quarter", f"/v1/metrics/ladder?{PERIOD}", "/v1/metrics/clv"]
READS += [f"/v1/customers?sort={s}&limit=25&as_of={AS_OF}"
          for s in ("net_revenue", "order_count", "last_order_at", "p_alive", "predicted_clv", "customer_id")]
READS += [f"/v1/customers?{q}&limit=500&as_of={AS_OF}"
          for q in ("stage=advocate", "stage=suspect", "stage=client&sort=last_order_at", "status=at_risk",
                    "status=lapsed&sort=last_order_at", "segment=champions", "segment=hibernating",
                    "min_p_alive=0.5&sort=p_alive")]
READS += [f"/v1/customers/{c}?as_of={AS_OF}" for c in (1, 7, 14, 22, 33, 39, 77, 88, 143, 1001, 2358, 2398)]
READS += ["/v1/customers/14?as_of=1997-06-01T00:00:00Z", "/v1/customers/nobody"]


def functions_in(path):
    with open(path) as f:
        return set(re.findall(r"^CREATE OR REPLACE FUNCTION (\w+)\(", f.read(), re.M))


class UpgradeInPlace(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.legacy = legacy_binary()
        cls.pg = Postgres().start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.destroy()

    # keys the replies gained after the older service, each with what it must say for a
    # tenant the older service created (reports in UTC), or a test of it and its object: the
    # CLV histogram bins every stored prediction
    ADDED = {"timezone": "UTC", "currency": "USD",
             "histogram": lambda h, obj: sum(b["customers"] for b in h["bins"]) == obj["customers"] > 0}

    def answers(self, server, key, added=None):
        out = {}
        for path in READS:
            r = server.get(path, key)
            body = r.json if r.body else None
            if added is not None and r.status == 200:
                for obj in (body, body.get("period"), body.get("predictions")):
                    for k, want in added.items():
                        if isinstance(obj, dict) and k in obj:
                            if callable(want):
                                self.assertTrue(want(obj.pop(k), obj), (path, k))
                            else:
                                self.assertEqual(obj.pop(k), want, (path, k))
            out[path] = (r.status, body)
        return out

    def test_a_database_of_the_older_service_answers_the_same_after_migrate(self):
        old = Server(self.pg, bin=self.legacy).start()  # its own migrate: the eighteen files
        try:
            self.assertEqual(self.pg.scalar("SELECT max(version) FROM schema_migrations"), "18")
            _, key = old.tenant()
            r = old.post("/v1/batch", sample_shop(), key, content_type="application/x-ndjson", timeout=300)
            self.assertEqual(r.status, 200, r)
            r = old.post("/v1/models/clv/fit", {"as_of": FIT_AS_OF}, key)
            self.assertEqual(r.status, 201, r)
            before = self.answers(old, key)
        finally:
            old.stop()
        self.assertTrue(any(s == 200 and v.get("customers") for s, v in before.values() if isinstance(v, dict)))

        new = Server(self.pg)
        out = new.cli("migrate")
        self.assertIn("recorded as 001_baseline.sql", out.stderr)
        # the history stands as the baseline, and the migrations after it are applied
        after_baseline = sorted(f for f in os.listdir(os.path.join(ROOT, "migrations")) if f != "001_baseline.sql")
        self.assertEqual(self.pg.sql("SELECT version, name FROM schema_migrations ORDER BY version"),
                         [["1", "001_baseline.sql"]] + [[str(int(f[:3])), f] for f in after_baseline])
        new.start()
        try:
            after = self.answers(new, key, self.ADDED)
        finally:
            new.stop()
        for path in READS:
            self.assertEqual(after[path], before[path], path)

        # nothing the older service defined outlives the upgrade unless sql/ defines it now
        defined = set()
        for name in os.listdir(os.path.join(ROOT, "sql")):
            defined |= functions_in(os.path.join(ROOT, "sql", name))
        present = {row[0] for row in self.pg.sql(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'")}
        self.assertEqual(present, defined)


class Checksums(unittest.TestCase):
    def test_migrate_refuses_an_applied_migration_that_differs_from_its_file(self):
        pg = Postgres().start()
        try:
            srv = Server(pg)
            srv.cli("migrate")
            pg.sql("UPDATE schema_migrations SET checksum = md5(checksum) WHERE version = 1")
            out = srv.cli("migrate", check=False)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("migration 001_baseline.sql differs from the one this database applied", out.stderr)
        finally:
            pg.destroy()

    def test_a_partly_applied_squashed_history_is_refused(self):
        pg = Postgres().start()
        try:
            srv = Server(pg)
            pg.sql("CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
                   " applied_at timestamptz NOT NULL DEFAULT now())")
            pg.sql("INSERT INTO schema_migrations (version, name)"
                   " SELECT v, lpad(v::text, 3, '0') || '_old.sql' FROM generate_series(1, 12) v")
            out = srv.cli("migrate", check=False)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("at migration 12 of the history 001_baseline.sql squashes", out.stderr)
            # nothing of the failed run stays behind, not even the tables it records itself in
            self.assertEqual(pg.scalar("SELECT to_regclass('customers') IS NULL AND to_regclass('schema_functions') IS NULL"), "t")
        finally:
            pg.destroy()

    def test_changed_functions_reach_a_migrated_database_and_migrate_is_idempotent(self):
        files = len(os.listdir(os.path.join(ROOT, "sql")))
        pg = Postgres().start()
        try:
            srv = Server(pg)
            self.assertIn(f"sql/ files applied: {files}\n", srv.cli("migrate").stdout)
            self.assertIn("sql/ files applied: 0 (current)", srv.cli("migrate").stdout)
            # a function as an older binary left it (here: another volatility), recorded under
            # another text
            volatility = "SELECT provolatile FROM pg_proc WHERE proname = 'rd_unit_interval'"
            pg.sql("ALTER FUNCTION rd_unit_interval(text) VOLATILE")
            self.assertEqual(pg.scalar(volatility), "v")
            pg.sql("UPDATE schema_functions SET checksum = 'older' WHERE file = 'sql/rules.sql'")
            srv.start()  # its own migrate brings the functions current
            try:
                self.assertEqual(pg.scalar(volatility), "i")
                self.assertEqual(srv.get("/readyz").status, 200)
                pg.sql("UPDATE schema_functions SET checksum = 'older' WHERE file = 'sql/rules.sql'")
                r = srv.get("/readyz")
                self.assertEqual(r.status, 503)
                self.assertIn("behind", r.json["detail"])
            finally:
                srv.stop()
        finally:
            pg.destroy()

if __name__ == "__main__":
    unittest.main()
