"""The backfill's progress display, as an operator sees it: on a terminal one
status line rewritten in place (rows done / estimated total, percent, rows/s,
ETA, batch, throttle), and plain log lines when stderr is not a terminal; the
same in direct mode (--db) and through the proxy (--proxy). Each run ends with
`migrate verify` (row by row: new columns == up(old))."""
import json
import os
import pty
import re
import subprocess
import threading

from support import BIN, EXAMPLES, load_legacy, migrate, SANITIZER_MARKS, write_migration

ROWS = 20000
LINE = re.compile(r"backfill (?P<table>\S+): (?P<done>\d+)/(?P<total>\d+) rows \((?P<pct>[\d.]+)%\), "
                  r"(?P<rate>\d+) rows/s, ETA (?P<eta>\S+), batch (?P<batch>\d+) rows "
                  r"\((?:last \d+ms, )?max \d+ms\), throttle (?P<throttle>[\w-]+)(?P<done_mark>, done)?")


# below what the backfill does unthrottled even under ASan on a busy machine
# (~5000 rows/s was seen), so that the max-rows throttle shows in the lines
RATE = 3000


def rate_limited_unify(rows_per_sec):
    with open(os.path.join(EXAMPLES, "checks_unify.json")) as f:
        m = json.load(f)
    m["backfill"] = {"max_rows_per_sec": rows_per_sec, "batch_rows": 500, "max_rows": 1000}
    return write_migration(m)


def run_on_terminal(args, timeout=300):
    """Runs bin/pgtandem with stderr on a pseudo-terminal; returns (exit
    status, everything written to the terminal)."""
    master, slave = pty.openpty()
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the last holder of the terminal is gone
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.Popen([BIN] + args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    rc = proc.wait(timeout=timeout)
    reader.join(timeout=10)
    os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    for mark in SANITIZER_MARKS:
        assert mark not in out, "sanitizer report:\n" + out[-4000:]
    return rc, out


def status_lines(text):
    return [m for m in (LINE.search(s) for s in re.split(r"[\r\n]", text)) if m]


def assert_progress(lines, rows, total_name):
    assert lines, "no progress line"
    last = lines[-1]
    assert last.group("done_mark"), last.group(0)
    assert last.group("done") == str(rows) and last.group("pct") == "100.0", last.group(0)
    assert total_name in last.group("table"), last.group(0)
    running = [m for m in lines if not m.group("done_mark")]
    assert running, "no line while the backfill ran: %r" % [m.group(0) for m in lines]
    # rows done never go backwards, and a line shown while running has an ETA and a rate
    done = [int(m.group("done")) for m in lines]
    assert done == sorted(done), done
    assert any(m.group("eta") != "?" and int(m.group("rate")) > 0 for m in running), \
        [m.group(0) for m in running]
    assert any(m.group("throttle") == "max-rows" for m in lines), [m.group(0) for m in lines]


def assert_verified(db, rows):
    v = migrate(db, "verify")
    assert v.returncode == 0, v.stdout + v.stderr
    assert "%d rows, 0 not yet backfilled, 0 where the new shape disagrees" % rows in v.stdout, v.stdout


def test_plain_log_lines_when_not_a_terminal(db):
    load_legacy(db, ROWS)
    r = migrate(db, "start", rate_limited_unify(RATE))
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "\033[K" not in r.stderr, r.stderr[-2000:]
    lines = status_lines(r.stderr)
    assert_progress(lines, ROWS, "checks")
    # one log line per status (with a timestamp and a level), not a line per batch
    log_lines = [s for s in r.stderr.splitlines() if LINE.search(s)]
    assert all(re.match(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d", s) for s in log_lines), log_lines
    assert len(log_lines) < ROWS / 1000, log_lines
    assert_verified(db, ROWS)


def test_one_line_rewritten_on_a_terminal(db):
    load_legacy(db, ROWS)
    rc, out = run_on_terminal(["migrate", "start", rate_limited_unify(RATE), "--db", db])
    assert rc == 0, out[-3000:]
    assert out.count("\r\033[K") >= 2, out[-3000:]
    lines = status_lines(out)
    assert len(lines) >= 3, out[-3000:]
    assert_progress(lines, ROWS, "checks")
    assert_verified(db, ROWS)


def test_same_display_through_the_proxy_on_a_terminal(db, proxy_factory):
    load_legacy(db, ROWS)
    proxy = proxy_factory(extra_args=["--engine-db", db])
    url = "http://127.0.0.1:%d" % proxy.admin_port
    rc, out = run_on_terminal(["migrate", "start", rate_limited_unify(RATE), "--proxy", url])
    if rc == 1 and "advisory lock" in out:
        # the proxy can lose the race for the engine lock right after the expand
        # child exits; submitting again resumes from the recorded state
        rc, out = run_on_terminal(["migrate", "start", rate_limited_unify(RATE), "--proxy", url])
    assert rc == 0, out[-3000:] + proxy.log()[-3000:]
    assert "\r\033[K" in out, out[-3000:]
    lines = status_lines(out)
    assert_progress(lines, ROWS, "0003_checks_unify")
    assert_verified(db, ROWS)
