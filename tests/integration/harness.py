"""Integration-test harness: a throw-away PostgreSQL cluster and the real retentiond server.

Nothing is mocked. The cluster lives in a temporary directory and listens only on a unix
socket there (scripts/pg.sh, run as the unprivileged `postgres` user when we are root); under
RETENTIOND_CITUS=1 (make test-citus) it is a Citus coordinator with two workers, and the tests
talk to the coordinator (CITUS is then true). The
server is the built binary (RETENTIOND_BIN, the sanitizer build under `make test-asan`) on a
free TCP port, and tests talk HTTP to it through a real socket with http.client.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("RETENTIOND_BIN", os.path.join(ROOT, "build", "retentiond"))
SANITIZED = os.environ.get("RETENTIOND_SANITIZED") == "1"
CITUS = os.environ.get("RETENTIOND_CITUS") == "1"
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A private cluster for one test module."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rdtest-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.url = None

    def start(self):
        out = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "start", self.dir, str(self.port)],
                             check=True, capture_output=True, text=True)
        self.url = out.stdout.strip().splitlines()[-1]
        return self

    def stop(self, mode="fast"):
        """Stops the cluster (under RETENTIOND_CITUS=1 the coordinator and both workers)."""
        subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop", self.dir, mode], check=False,
                       capture_output=True)

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, query, *args):
        """Runs one query with psql and returns rows as lists of strings (NULL -> None).
        Arguments are passed as psql variables and quoted by psql (:'v1', :'v2', ...)."""
        cmd = ["psql", self.url, "-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-P", "null=\\N"]
        for i, a in enumerate(args, 1):
            cmd += ["-v", f"v{i}={a}"]
        out = subprocess.run(cmd, input=query, check=True, capture_output=True, text=True)
        rows = []
        for line in out.stdout.splitlines():
            rows.append([None if c == "\\N" else c for c in line.split("\t")])
        return rows

    def scalar(self, query, *args):
        rows = self.sql(query, *args)
        return rows[0][0] if rows else None


def module_cluster(module_globals, **env):
    """setUpModule and tearDownModule for a test module sharing one cluster and one server,
    which they set as the module's `pg` and `server`."""
    def set_up():
        module_globals["pg"] = Postgres().start()
        module_globals["server"] = Server(module_globals["pg"], **env).start()

    def tear_down():
        if module_globals.get("server"):
            module_globals["server"].stop()
        if module_globals.get("pg"):
            module_globals["pg"].destroy()
    return set_up, tear_down


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Server:
    """The real binary, serving on a free port against a cluster. Settings come as environment
    variables (keyword arguments); `flags` are command-line options for `serve`."""

    def __init__(self, pg, bin=None, flags=(), cwd=None, **env):
        self.pg = pg
        self.cwd = cwd  # the working directory of its commands (None: the test's)
        self.bin = bin or BIN  # another build of the service (the upgrade test's older one)
        self.flags = list(flags)
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update({"DATABASE_URL": pg.url, "PORT": str(self.port), "BIND_ADDRESS": "127.0.0.1",
                         "LOG_LEVEL": "info"})
        self.env.update({k: str(v) for k, v in env.items()})
        self.log_path = os.path.join(pg.dir, f"server-{self.port}.log")
        self.proc = None

    def cli(self, *args, check=True):
        out = subprocess.run([self.bin] + list(args), env=self.env, capture_output=True, text=True, cwd=self.cwd)
        if check and out.returncode != 0:
            raise RuntimeError(f"retentiond {' '.join(args)} failed: {out.stderr}")
        return out

    def start(self):
        self.cli("migrate")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.bin] + self.flags + ["serve"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.cwd)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start; log:\n" + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.proc:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        if SANITIZED:
            self.assert_no_sanitizer_reports()
        return rc

    def assert_no_sanitizer_reports(self):
        """Under `make test-asan` a sanitizer finding (leak, overflow, UB) fails the test run."""
        log = self.read_log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in log:
                raise AssertionError(f"sanitizer report in {self.log_path}:\n" + log[log.index(marker) - 200:][:4000])

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def tenant(self, currency="USD", scopes="ingest,read,admin"):
        """Creates a fresh tenant and returns (name, key)."""
        name = "t" + uuid.uuid4().hex[:12]
        self.cli("tenant", "create", name, "--currency", currency)
        key = self.cli("key", "create", "--tenant", name, "--scope", scopes).stdout.strip()
        return name, key

    def key(self, tenant, scopes):
        return self.cli("key", "create", "--tenant", tenant, "--scope", scopes).stdout.strip()

    def request(self, method, path, body=None, key=None, headers=None, content_type=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if key:
            h["Authorization"] = "Bearer " + key
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if content_type:
            h["Content-Type"] = content_type
        if isinstance(body, str):
            body = body.encode()
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except OSError:
            # if the server died, say so with the end of its log instead of a bare refusal
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; log tail:\n"
                                   + self.read_log()[-4000:]) from None
            raise
        finally:
            conn.close()

    def post(self, path, body, key, **kw):
        return self.request("POST", path, body, key=key, **kw)

    def get(self, path, key=None, **kw):
        return self.request("GET", path, key=key, **kw)

    def post_ndjson(self, key, lines, timeout=1200):
        """Posts records as one streamed NDJSON batch; asserts that none was rejected."""
        body = "\n".join(json.dumps(x) for x in lines) + "\n"
        r = self.post("/v1/batch", body, key, content_type="application/x-ndjson", timeout=timeout)
        assert r.status == 200 and r.json["rejected"] == 0, r
        return r.json
