"""GET /metrics through a whole migration, as Prometheus scrapes it: before
it starts, while the backfill runs (rows done grow, an ETA), while the
backfill is paused, while an operator's pause and then the fleet fence
hold client sessions, and after the cutover (attempts, hold times). Every
scrape must pass `promtool check metrics`.

The alert rules (config/prometheus/alerts.yml) pass `promtool check rules`
and their unit tests (alerts_test.yml), and the alert rules and the Grafana
dashboard (config/grafana/pgtandem.json) name only series that a proxy
running a migration really exports."""
import json
import os
import re
import subprocess
import threading

import psycopg
import pytest

from support import (fleet_proxy, NAME, pg_raw_session, PROMTOOL, promtool_check, query_outcome, run_pgtandem,
                     Scrape, throttle, TOP, UNIFY, wait_for)

LEASE_MS = 2000
ALERTS = os.path.join(TOP, "config", "prometheus", "alerts.yml")
ALERTS_TEST = os.path.join(TOP, "config", "prometheus", "alerts_test.yml")
DASHBOARD = os.path.join(TOP, "config", "grafana", "pgtandem.json")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")


def scrape(p):
    code, text = p.admin("GET", "/metrics")
    assert code == 200, text
    promtool_check(text)
    return Scrape(text)


def wait_scrape(p, what, fn, timeout=60.0):
    """Scrapes until fn(scrape) holds; returns that scrape."""
    last = []

    def holds():
        last[:] = [scrape(p)]
        return last[0] if fn(last[0]) else None
    return wait_for(holds, timeout, what, interval=0.1,
                    detail=lambda: "last scrape:\n%s\nproxy log:\n%s" % (last[0].text if last else "", p.log()[-3000:]))


def phase(s):
    on = [ls["phase"] for n, ls, v in s.samples if n == "pgtandem_migration_phase" and v == 1]
    assert len(on) <= 1, on
    return on[0] if on else None


def throttled_unify(rows_per_sec):
    with open(UNIFY) as f:
        mig = json.load(f)
    mig["backfill"] = {"max_rows_per_sec": rows_per_sec, "batch_rows": 500, "max_rows": 1000}
    return json.dumps(mig)


def held_query(sock, timeout):
    """Sends SELECT 1 on a raw session in a thread; returns the thread and
    a dict that gets the outcome."""
    outcome = {}
    t = threading.Thread(target=lambda: outcome.update(what=query_outcome(sock, "SELECT 1", timeout)[0]))
    t.start()
    return t, outcome


def check_hold(s, reason, held_at_least):
    """Exactly `reason` holds (or nothing when reason is "none")."""
    for n, ls, v in s.samples:
        if n == "pgtandem_hold_active":
            assert v == (1 if ls["reason"] == reason else 0), (ls, v, s.text)
        if n == "pgtandem_held_sessions" and ls["reason"] != reason:
            assert v == 0, (ls, v, s.text)
    if reason != "none":
        assert s.get("pgtandem_held_sessions", reason=reason) >= held_at_least, s.text
        assert s.get("pgtandem_paused") == 1, s.text


def test_metrics_through_a_migration(cluster, proxy_factory, legacy_db):  # noqa: F811
    p = fleet_proxy(proxy_factory, cluster, legacy_db, LEASE_MS)
    old = pg_raw_session(p.port, database=legacy_db)

    # before: the families are there, with nothing to say about a migration
    before = wait_scrape(p, "the first heartbeat", lambda s: s.get("pgtandem_fleet_lease_age_seconds") is not None)
    assert before.get("pgtandem_build_info", version=re.search(r'version="([^"]+)"', before.text).group(1)) == 1
    assert "# TYPE pgtandem_migration_phase gauge" in before.text
    assert "# TYPE pgtandem_migration_batch_duration_seconds histogram" in before.text
    assert phase(before) is None and before.get("pgtandem_migration_rows_done") is None
    assert before.get("pgtandem_sessions", version="old") >= 1
    check_hold(before, "none", 0)
    assert before.get("pgtandem_paused") == 0 and before.get("pgtandem_fenced") == 0
    assert before.get("pgtandem_fleet_connected") == 1
    assert before.get("pgtandem_fleet_lease_seconds") == LEASE_MS / 1000.0
    assert before.get("pgtandem_fleet_bypassing_sessions") >= 0   # a session not yet claimed may count
    lease_age = before.get("pgtandem_fleet_lease_age_seconds")
    assert 0 <= lease_age < LEASE_MS / 1000.0, lease_age

    # during the backfill (1000 rows/s: about 20 s for 20000 rows, paused
    # long before the end, then let go unthrottled)
    code, ans = p.admin("POST", "/migrations", throttled_unify(1000))
    assert code == 202, ans
    m = {"migration": NAME}
    first = wait_scrape(p, "rows done while backfilling",
                        lambda s: phase(s) == "backfilling" and (s.get("pgtandem_migration_rows_done", **m) or 0) > 0)
    later = wait_scrape(p, "rows done growing",
                        lambda s: phase(s) == "backfilling" and s.get("pgtandem_migration_rows_done", **m)
                        > first.get("pgtandem_migration_rows_done", **m)
                        and s.get("pgtandem_migration_eta_seconds", **m) is not None)
    assert later.get("pgtandem_migration_eta_seconds", **m) > 0, later.text
    assert later.get("pgtandem_migration_rows_per_second", **m) > 0, later.text
    assert later.get("pgtandem_migration_rows_estimated", **m) >= later.get("pgtandem_migration_rows_done", **m)
    assert 0 < later.get("pgtandem_migration_progress_ratio", **m) < 1, later.text
    assert later.get("pgtandem_migration_batches_total", **m) >= 1
    assert later.get("pgtandem_migration_batch_duration_seconds_count", **m) == \
        later.get("pgtandem_migration_batches_total", **m)
    assert later.get("pgtandem_migration_paused", **m) == 0
    assert later.get("pgtandem_migration_following", **m) == 0
    assert later.get("pgtandem_migration_phase", phase="active", **m) == 0
    # the two shapes' sessions, counted apart
    new = pg_raw_session(p.port, database=legacy_db, options="-c pgtandem.version=%s" % NAME)
    both = wait_scrape(p, "sessions of each shape", lambda s: (s.get("pgtandem_sessions", version=NAME) or 0) >= 1)
    assert both.get("pgtandem_sessions", version="old") >= 1, both.text
    new.close()

    # a session straight to the database, through no proxy
    with psycopg.connect(cluster.uri(db=legacy_db)) as direct:
        direct.execute("SELECT 1")
        wait_scrape(p, "a bypassing session", lambda s: s.get("pgtandem_fleet_bypassing_sessions") >= 1)

    # the backfill paused by an operator
    throttle(p, paused=True)
    paused = wait_scrape(p, "the backfill paused", lambda s: s.get("pgtandem_migration_paused", **m) == 1)
    assert phase(paused) == "backfilling", paused.text
    assert all(v == 0 for n, ls, v in paused.samples if n == "pgtandem_migration_throttled"), paused.text

    # an operator's pause holds a session
    code, ans = p.admin("POST", "/pause?timeout_ms=5000")
    assert code == 200, ans
    t, outcome = held_query(old, 30)
    try:
        held = wait_scrape(p, "a session held by the pause",
                           lambda s: (s.get("pgtandem_held_sessions", reason="operator_pause") or 0) >= 1)
        check_hold(held, "operator_pause", 1)
        assert held.get("pgtandem_fenced") == 0
    finally:
        code, ans = p.admin("POST", "/resume")
        assert code == 200, ans
    t.join(10)
    assert outcome.get("what") == "ok", outcome
    check_hold(wait_scrape(p, "the pause lifted", lambda s: s.get("pgtandem_paused") == 0), "none", 0)

    # the fence: the lease's renewal waits behind a lock, the lease runs out
    locker = psycopg.connect(cluster.uri(db=legacy_db))
    locker.execute("LOCK TABLE pgtandem.fleet_leases IN ACCESS EXCLUSIVE MODE")
    try:
        wait_scrape(p, "fenced", lambda s: s.get("pgtandem_fenced") == 1, timeout=3 * LEASE_MS / 1000.0 + 4)
        t, outcome = held_query(old, 30)
        fenced = wait_scrape(p, "a session held by the fence",
                             lambda s: (s.get("pgtandem_held_sessions", reason="fence") or 0) >= 1, timeout=5)
        check_hold(fenced, "fence", 1)
        assert fenced.get("pgtandem_fleet_lease_age_seconds") >= LEASE_MS / 1000.0, fenced.text
        assert fenced.get("pgtandem_fleet_heartbeat_failures_total") >= 1, fenced.text
    finally:
        locker.rollback()
        locker.close()
    t.join(30)
    assert outcome.get("what") is not None, outcome   # answered, or closed by the fence's bound
    lifted = wait_scrape(p, "the fence lifted", lambda s: s.get("pgtandem_fenced") == 0, timeout=10)
    check_hold(lifted, "none", 0)
    assert lifted.get("pgtandem_fleet_lease_age_seconds") < LEASE_MS / 1000.0, lifted.text

    # the rest of the backfill, unthrottled, then the cutover
    throttle(p, paused=False, max_rows_per_sec=0)
    active = wait_scrape(p, "phase active", lambda s: phase(s) == "active", timeout=120)
    assert active.get("pgtandem_migration_eta_seconds", **m) == 0, active.text
    assert active.get("pgtandem_migration_progress_ratio", **m) == 1, active.text
    assert active.get("pgtandem_migration_rows_done", **m) == 20000, active.text
    assert active.get("pgtandem_migration_paused", **m) == 0, active.text
    r = run_pgtandem(["migrate", "complete", "--proxy", "http://127.0.0.1:%d" % p.admin_port, "--force"])
    assert r.returncode == 0, r.stdout + r.stderr + p.log()[-3000:]
    after = wait_scrape(p, "phase completed", lambda s: phase(s) == "completed")
    assert after.get("pgtandem_migration_cutover_attempts_total", outcome="committed", **m) >= 1, after.text
    assert after.get("pgtandem_migration_cutover_hold_seconds_count", **m) >= 1, after.text
    assert after.get("pgtandem_migration_cutover_hold_seconds_sum", **m) > 0, after.text
    assert after.get("pgtandem_migration_cutover_attempts_total", outcome="failed", **m) == 0, after.text
    check_hold(after, "none", 0)
    old.close()


# ---- alert rules and the dashboard against a real scrape ----

def run_promtool(*args):
    r = subprocess.run([PROMTOOL] + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "promtool %s:\n%s%s" % (" ".join(args), r.stdout, r.stderr)
    return r.stdout


def test_alert_rules_pass_promtool():
    out = run_promtool("check", "rules", ALERTS)
    assert "SUCCESS" in out, out
    run_promtool("test", "rules", ALERTS_TEST)


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
                "unless", "inf", "nan"}


def metric_names(expr):
    """Series names in a PromQL expression: identifiers that are neither
    functions (followed by "("), label names (inside {...} or by/on (...)),
    keywords, nor template variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    expr = re.sub(r"\$\{?\w+\}?", "", expr)                  # $__rate_interval, ${DS_PROMETHEUS}
    expr = re.sub(r"\{[^}]*\}", "", expr)                    # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)                   # ranges
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = m.group(0)
        after = expr[m.end():].lstrip()
        if word.lower() in PROMQL_WORDS or after.startswith("("):
            continue
        if re.match(r"^\d", expr[m.start() - 1:m.start()] or "x"):   # 5m, 1e3
            continue
        names.add(word)
    return names


def dashboard_exprs(dash):
    exprs = []

    def walk(panels):
        for panel in panels:
            for t in panel.get("targets", []):
                exprs.append((panel.get("title"), t["expr"]))
            walk(panel.get("panels", []))

    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if v.get("type") == "query":
            q = q.get("query") if isinstance(q, dict) else q
            m = re.match(r"label_values\((\w+)", q)
            exprs.append(("variable " + v["name"], m.group(1) if m else q))
    return exprs


def alert_exprs():
    exprs, expr = [], None
    with open(ALERTS) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\s*expr:\s*(\|)?(.*)$", line)
        if not m:
            continue
        if not m.group(1):
            exprs.append(m.group(2).strip())
            continue
        indent, body = None, []
        for nxt in lines[i + 1:]:
            if not nxt.strip():
                continue
            ind = len(nxt) - len(nxt.lstrip())
            if indent is None:
                indent = ind
            if ind < indent:
                break
            body.append(nxt.strip())
        expr = " ".join(body)
        exprs.append(expr)
    return exprs


def test_dashboard_and_alerts_name_only_exported_series(cluster, proxy_factory, legacy_db):  # noqa: F811
    p = fleet_proxy(proxy_factory, cluster, legacy_db, LEASE_MS)
    code, ans = p.admin("POST", "/migrations", throttled_unify(0))
    assert code == 202, ans
    active = wait_scrape(p, "phase active", lambda s: phase(s) == "active", timeout=120)
    r = run_pgtandem(["migrate", "complete", "--proxy", "http://127.0.0.1:%d" % p.admin_port])
    assert r.returncode == 0, r.stdout + r.stderr + p.log()[-3000:]
    s = wait_scrape(p, "phase completed", lambda s: phase(s) == "completed")
    # a series of the migration in flight (pgtandem_migration_in_flight*) is
    # there while it is, and gone once the fleet's look finds it completed:
    # what both scrapes saw is what the proxy exports over the migration
    exported = active.names() | s.names()
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert "${DS_PROMETHEUS}" in json.dumps(dash)
    assert any(i.get("name") == "DS_PROMETHEUS" for i in dash.get("__inputs", [])), dash.get("__inputs")
    exprs = dashboard_exprs(dash)
    assert len(exprs) >= 12, exprs
    used = set()
    for title, expr in exprs:
        names = metric_names(expr)
        assert names, (title, expr)
        unknown = names - exported
        assert not unknown, "panel %r names series the proxy does not export: %s\n%s" % (title, unknown, expr)
        used |= names
    for expr in alert_exprs():
        names = metric_names(expr)
        assert names and not names - exported, "alert expression names series the proxy does not export: %s\n%s" \
            % (names - exported, expr)
    # every migration and fleet family is on the dashboard
    families = {n for n in exported if n.startswith(("pgtandem_migration_", "pgtandem_fleet_"))}
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in families}
    missing = {f for f in families if not any(u == f or u.startswith(f + "_") for u in used)}
    assert not missing, "families the dashboard does not show: %s" % sorted(missing)
