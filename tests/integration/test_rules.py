"""Rules that exist in C and in SQL hold the same answer over their whole input space.

The status (SPEC §4) is decided in SQL by rd_status (sql/rules.sql) for the lists, with the
stored prediction, and in C by rules_status (src/domain/rules.c) for the profile, with the live
P(alive). A grid of rd_status's arguments crosses every branch with its boundaries: no orders
and missing instants, one order and several, the last order a microsecond before, at and after
the activity window's start, at as_of and after it, P(alive) absent, below, at and above the
threshold (NaN and the infinities too, and a NaN threshold), the time since the last order a
microsecond under, at and over gap factor x the mean gap, spans past 285 years (where float8
rounding of the seconds shows), and gap factors the tenants' CHECK lets through (NaN,
Infinity). The same rows go to rd_status in PostgreSQL, in a session set up as the service's
(time zone UTC), and to tests/tools/rules_table, which prints rules_status's answer; any
difference fails. The rung (rd_stage) and the RFM grid (rd_rfm_segment) exist in SQL only; the
grid is checked here against SPEC §4's table over all 25 cells and NULL.
"""
import datetime
import itertools
import os
import subprocess
import unittest

from harness import BIN, Postgres

pg = None
TOOL = os.path.join(os.path.dirname(BIN), "tools", "rules_table")

DAY = 86_400_000_000                       # microseconds
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def setUpModule():
    global pg
    pg = Postgres().start()
    # the functions of sql/, as `retentiond migrate` applies them
    subprocess.run([BIN, "migrate"], env=dict(os.environ, DATABASE_URL=pg.url), check=True, capture_output=True)


def tearDownModule():
    if pg:
        pg.destroy()


def us(t):
    return (t - EPOCH) // datetime.timedelta(microseconds=1)


def sql_time(u):
    return (EPOCH + datetime.timedelta(microseconds=u)).isoformat()


def float_text(v):
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def status_grid():
    """Rows of rd_status's arguments: (order_count, first, last, as_of, window, gap_factor,
    p_alive, p_alive_min), instants in microseconds, None for NULL."""
    rows = []
    as_ofs = [us(datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.timezone.utc)),
              us(datetime.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=datetime.timezone.utc))]
    below, above = 0.49999999999999994, 0.5000000000000001     # the floats next to 0.5
    p_cases = [(None, 0.5), (below, 0.5), (0.5, 0.5), (above, 0.5), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0),
               (0.3, 0.0), (float("nan"), 0.5), (float("-inf"), 0.5), (float("inf"), 1.0),
               # thresholds the tenants' CHECK (0 to 1) rules out, where float8's order (NaN above
               # every number) and C's differ
               (0.3, float("nan")), (float("nan"), float("nan"))]
    for as_of, window in itertools.product(as_ofs, (1, 30, 365)):
        edge = as_of - window * DAY
        lasts = [edge - 1, edge, edge + 1, (edge + as_of) // 2, as_of - DAY, as_of - 1, as_of, as_of + DAY]
        for last, n, span, gap, (p, p_min) in itertools.product(
                lasts, (1, 2, 3, 7), (0, 1, DAY, 10 * DAY, 400 * DAY), (0.5, 1.5), p_cases):
            rows.append((n, last - span, last, as_of, window, gap, p, p_min))
    # the gap rule at its boundary: since the last order = gap x mean gap exactly (every value
    # exact in float8), and a microsecond either side; P(alive) absent or above the threshold
    as_of = as_ofs[0]
    for n, gap, mean, p in itertools.product((2, 3, 7), (0.5, 1.0, 1.5, 2.5), (1_000_000, 3600 * 1_000_000, DAY),
                                             (None, 0.9)):
        since = int(gap * mean)
        for d in (-1, 0, 1):
            last = as_of - since - d
            rows.append((n, last - (n - 1) * mean, last, as_of, 365, gap, p, 0.5))
    # spans beyond 2^53 microseconds (285 years), where PostgreSQL's exact extract(epoch) read
    # as float8 and a plain microseconds / 1e6 in C round differently and the comparison flips
    for span, d in ((17546988402409725, 2), (12461354694548787, 1), (16161341210511536, 1)):
        last = as_of - span - d
        rows.append((2, last - span, last, as_of, 300_000, 1.0, None, 0.5))
    # gap factors outside reason that the tenants' CHECK (> 0) admits
    for gap, span, n in itertools.product((float("nan"), float("inf"), 1e-300), (0, DAY), (2, 5)):
        rows.append((n, as_of - 2 * DAY - span, as_of - 2 * DAY, as_of, 365, gap, None, 0.5))
    # no orders, and the NULLs the rollup's CHECK rules out but the function takes (before
    # 1970 too, where a missing first order read as 0 would make the mean gap negative)
    for at in (as_of, us(datetime.datetime(1969, 6, 1, tzinfo=datetime.timezone.utc))):
        for n, first, last in ((0, None, None), (0, at - DAY, at - DAY), (1, None, None), (3, None, at - DAY),
                               (3, at - 5 * DAY, None), (-1, at - DAY, at - DAY)):
            for p in (None, 0.1, 0.9):
                rows.append((n, first, last, at, 365, 1.5, p, 0.5))
    return rows


def sql_status(rows):
    lines = []
    for i, (n, first, last, as_of, window, gap, p, p_min) in enumerate(rows):
        cols = [str(i), str(n), sql_time(first) if first is not None else "\\N",
                sql_time(last) if last is not None else "\\N", sql_time(as_of), str(window), float_text(gap),
                float_text(p) if p is not None else "\\N", float_text(p_min)]
        lines.append("\t".join(cols))
    script = ("\\set QUIET on\nSET TIME ZONE 'UTC';\n"
              "CREATE TEMP TABLE g (i int, n int, first timestamptz, last timestamptz, as_of timestamptz,"
              " w int, gap float8, p float8, p_min float8);\n"
              "COPY g FROM STDIN;\n" + "\n".join(lines) + "\n\\.\n"
              "SELECT rd_status(first, last, n, as_of, w, gap, p, p_min) FROM g ORDER BY i;\n")
    return [r[0] for r in pg.sql(script)]


def c_status(rows):
    lines = []
    for n, first, last, as_of, window, gap, p, p_min in rows:
        cols = [str(n), str(first) if first is not None else "\\N", str(last) if last is not None else "\\N",
                str(as_of), str(window), float_text(gap), float_text(p) if p is not None else "\\N",
                float_text(p_min)]
        lines.append("\t".join(cols))
    out = subprocess.run([TOOL, "status"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"rules_table failed: {out.stderr}")
    return [None if v == "\\N" else v for v in out.stdout.splitlines()]


class Status(unittest.TestCase):
    def test_c_and_sql_agree_on_every_row(self):
        self.assertTrue(os.access(TOOL, os.X_OK), f"{TOOL} is missing: make {os.path.relpath(TOOL)} (make "
                        "integration and make test-asan build it)")
        rows = status_grid()
        want, got = sql_status(rows), c_status(rows)
        self.assertEqual(len(want), len(rows))
        self.assertEqual(len(got), len(rows))
        differ = [(rows[i], want[i], got[i]) for i in range(len(rows)) if want[i] != got[i]]
        self.assertEqual(differ[:10], [], f"{len(differ)} of {len(rows)} rows differ (row, SQL, C)")
        # the grid reaches every answer, and each boundary falls on both sides
        self.assertEqual(set(want), {None, "active", "at_risk", "lapsed"})


# SPEC §4's R x F grid, as the SPEC writes it: segment -> (R values, F values)
SPEC_GRID = {
    "champions": ({5}, {4, 5}),
    "loyal": ({3, 4}, {4, 5}),
    "potential_loyalist": ({4, 5}, {2, 3}),
    "new": ({5}, {1}),
    "promising": ({4}, {1}),
    "need_attention": ({3}, {3}),
    "about_to_sleep": ({3}, {1, 2}),
    "at_risk": ({1, 2}, {3, 4}),
    "cannot_lose_them": ({1, 2}, {5}),
    "hibernating": ({1, 2}, {1, 2}),
}


class RfmGrid(unittest.TestCase):
    def test_every_cell_is_specs(self):
        got = {(int(r), int(f)): seg for r, f, seg in pg.sql(
            "SELECT r, f, rd_rfm_segment(r, f) FROM generate_series(1, 5) r, generate_series(1, 5) f")}
        want = {(r, f): seg for seg, (rs, fs) in SPEC_GRID.items() for r in rs for f in fs}
        self.assertEqual(len(want), 25)    # the SPEC's cells cover the grid once
        self.assertEqual(got, want)
        # customers without orders have no scores
        self.assertEqual(pg.scalar("SELECT rd_rfm_segment(NULL, NULL)"), "prospect")


if __name__ == "__main__":
    unittest.main()
