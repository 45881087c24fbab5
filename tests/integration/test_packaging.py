"""Packaging: the binary `make install` puts in place runs from a clean directory with nothing of
the source tree, and every shared library it needs comes from a package in the install
script's `runtime` set (what the container's runtime stage installs), so the image cannot be
short of one. The Docker build context leaves out the live cluster and the host's objects."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import ROOT, Postgres, Server

REQUIRED = {"libc6"}  # Debian's priority-required C library: in every image, debian:12-slim too


def install_set(level):
    """The packages scripts/install-deps.sh installs at `level`, read from the script."""
    with open(os.path.join(ROOT, "scripts", "install-deps.sh")) as f:
        text = f.read()
    sets = dict(re.findall(r'^(\w+)="([^"]*)"', text, re.M))
    case = re.search(r"^\s*%s\)\s+pkgs=\"([^\"]*)\"" % level, text, re.M).group(1)
    pkgs = set()
    for ref in re.findall(r"\$(\w+)", case):
        pkgs |= set(sets[ref].split())
    return pkgs


class Runtime(unittest.TestCase):
    """On the release binary as `make install` installs it (also under the sanitizer suite,
    whose binary links the sanitizers' own libraries)."""

    @classmethod
    def setUpClass(cls):
        cls.dest = tempfile.mkdtemp(prefix="rdinstall-")
        subprocess.run(["make", "-s", "-C", ROOT, "install", f"DESTDIR={cls.dest}", "PREFIX=/usr/local"],
                       check=True, capture_output=True, text=True)
        cls.binary = os.path.join(cls.dest, "usr", "local", "bin", "retentiond")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def test_every_needed_library_is_in_the_runtime_set(self):
        out = subprocess.run(["readelf", "-d", self.binary], capture_output=True, text=True, check=True).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
        self.assertIn("libcurl.so.4", needed)
        ldd = subprocess.run(["ldd", self.binary], capture_output=True, text=True, check=True).stdout
        paths = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
        runtime = install_set("runtime")
        for lib in needed:
            self.assertIn(lib, paths, f"{lib} does not resolve")
            # dpkg knows a file by the path its package installed it at: /lib or /usr/lib (merged /usr)
            for path in {paths[lib], os.path.realpath(paths[lib]), os.path.realpath(paths[lib]).replace("/usr/lib/", "/lib/", 1)}:
                owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
                if owner.returncode == 0:
                    break
            self.assertEqual(owner.returncode, 0, f"no package owns {paths[lib]}")
            pkg = owner.stdout.split(":")[0]
            self.assertTrue(pkg in runtime or pkg in REQUIRED,
                            f"{lib} comes from {pkg}, which install-deps.sh runtime does not install")

    def test_installed_binary_runs_from_a_clean_directory(self):
        clean = tempfile.mkdtemp(prefix="rdclean-")
        pg = None
        srv = None
        binary = self.binary
        try:
            self.assertTrue(os.access(binary, os.X_OK))
            out = subprocess.run([binary, "--help"], cwd=clean, capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("WEBHOOK_TIMEOUT_MS", out.stdout + out.stderr)
            # migrate and serve from the clean directory: schema, OpenAPI and dashboard are inside
            pg = Postgres().start()
            srv = Server(pg, bin=binary, cwd=clean)
            srv.start()
            self.assertEqual(srv.get("/readyz").status, 200)
            self.assertEqual(srv.get("/openapi.json").json["openapi"], "3.1.0")
            self.assertIn(b"<html", srv.get("/").body.lower())
        finally:
            if srv:
                srv.stop()
            if pg:
                pg.destroy()
            shutil.rmtree(clean, ignore_errors=True)

    def test_run_needs_no_test_tools(self):
        run, test = install_set("run"), install_set("test")
        for tool in ("chromium", "prometheus", "check", "nodejs", "npm"):
            self.assertNotIn(tool, run)
        self.assertIn("postgresql", run)          # make run starts a private cluster
        self.assertTrue(run < test)
        with open(os.path.join(ROOT, "Makefile")) as f:
            self.assertRegex(f.read(), r"(?m)^run:.*\n.*DEPS_LEVEL=run")


class DockerContext(unittest.TestCase):
    def test_context_leaves_out_the_cluster_and_host_objects(self):
        with open(os.path.join(ROOT, ".dockerignore")) as f:
            patterns = {line.strip().rstrip("/") for line in f if line.strip() and not line.startswith("#")}
        for p in (".pgdata", "build", "tests/node/node_modules", ".git"):
            self.assertIn(p, patterns)


if __name__ == "__main__":
    unittest.main()
