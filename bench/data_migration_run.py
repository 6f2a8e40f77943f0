"""The data-migration benchmark's measuring part (bench/data_migration.sh
starts the cluster): a migration written the way ORMs write a required
column and a data fix, as SQL,

    ALTER TABLE "accounts" ADD COLUMN "email_domain" TEXT;
    UPDATE "accounts" SET "email_domain" = split_part("email", '@', 2) WHERE "email_domain" IS NULL;
    ALTER TABLE "accounts" ALTER COLUMN "email_domain" SET NOT NULL;
    UPDATE "accounts" SET "plan" = 'free' WHERE "plan" IS NULL;

run by `pgtandem migrate start FILE --proxy` on ROWS rows while both
releases write through the proxy: the old release (no version declared)
inserts rows and changes emails, the new release (pgtandem.version) inserts
rows with their domain and changes emails and domains together. Every
statement is timed by its writer. Measured: the writers' p99 before the
migration (the old release alone: the new one does not exist yet) and while
its batches run, per release; the batches' rows/s; the budget the proxy kept.
Checked at the end, row by row: both shapes hold the same rows with the same
values, every row's domain is its email's, every write a writer was told
committed is there (inserts by id, each row's last change by value), none of
the rows that had no plan is left without one; then `complete` and the
column is NOT NULL."""
import json
import os
import random
import subprocess
import threading
import time

import psycopg

from benchlib import EngineProxy, bench_database, run_header

ROWS = int(os.environ["ROWS"])
WRITERS = int(os.environ["WRITERS"])  # per release
BEFORE = float(os.environ["SECONDS_BEFORE"])
PAUSE_S = float(os.environ["PAUSE_MS"]) / 1000.0
BIN, WORK, OUT = os.environ["BIN"], os.environ["WORK"], os.environ["OUT"]
TOKEN = os.environ["PGTANDEM_ADMIN_TOKEN"]
NAME = "20261126120000_accounts_email_domain"
MIGRATION = """ALTER TABLE "accounts" ADD COLUMN "email_domain" TEXT;
UPDATE "accounts" SET "email_domain" = split_part("email", '@', 2) WHERE "email_domain" IS NULL;
ALTER TABLE "accounts" ALTER COLUMN "email_domain" SET NOT NULL;
UPDATE "accounts" SET "plan" = 'free' WHERE "plan" IS NULL;
"""
DB = bench_database()


def run(sql):
    with psycopg.connect(DB, autocommit=True) as c:
        return c.execute(sql).fetchall() if sql.lstrip().upper().startswith("SELECT") else c.execute(sql)


def one(sql, options=""):
    with psycopg.connect(DB, autocommit=True, options=options) as c:
        return c.execute(sql).fetchone()


def release_uri(proxy, version=None):
    """The proxy's URI for a session of the old release, or of `version`."""
    opt = "&options=-c%%20pgtandem.version%%3D%s" % version if version else ""
    return proxy.uri + opt


class Writer(threading.Thread):
    """One session of a release: inserts (ids of its own) and email changes
    of the rows it owns (ids = its slot modulo the writers), every statement
    timed; what it was told committed is kept to check against the table."""

    def __init__(self, uri, release, slot, nslots):
        super().__init__(daemon=True)
        self.uri, self.release, self.slot, self.nslots = uri, release, slot, nslots
        self.stop_ev, self.samples, self.errors = threading.Event(), [], []
        self.inserted, self.last = [], {}  # ids; id -> (email, domain or None)

    def run(self):
        rnd = random.Random(self.slot)
        n = 0
        try:
            with psycopg.connect(self.uri, autocommit=True) as c:
                while not self.stop_ev.is_set():
                    n += 1
                    dom = "d%d.example" % rnd.randrange(50)
                    email = "w%d_%d@%s" % (self.slot, n, dom)
                    t0 = time.monotonic()
                    if n % 2:
                        i = 10_000_000 + self.slot * 1_000_000 + n
                        if self.release == "new":
                            c.execute("INSERT INTO accounts (id, email, plan, email_domain) VALUES (%s, %s, 'pro', %s)",
                                      (i, email, dom))
                        else:
                            c.execute("INSERT INTO accounts (id, email, plan) VALUES (%s, %s, 'pro')", (i, email))
                        self.inserted.append(i)
                    else:
                        i = rnd.randrange(ROWS // self.nslots) * self.nslots + self.slot + 1
                        if i > ROWS:
                            continue
                        if self.release == "new":
                            c.execute("UPDATE accounts SET email = %s, email_domain = %s WHERE id = %s", (email, dom, i))
                        else:
                            c.execute("UPDATE accounts SET email = %s WHERE id = %s", (email, i))
                        self.last[i] = email
                    self.samples.append((time.time(), (time.monotonic() - t0) * 1000.0))
                    if PAUSE_S:
                        time.sleep(PAUSE_S)
        except Exception as e:  # noqa: BLE001 - counted in the results
            self.errors.append(repr(e))


def p99(writers, t0, t1):
    ms = sorted(s for w in writers for t, s in w.samples if t0 <= t < t1)
    return {"n": len(ms), "p50_ms": ms[len(ms) // 2] if ms else None,
            "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else None, "max_ms": ms[-1] if ms else None}


def prepare():
    print("== %d rows of accounts (a tenth without a plan)" % ROWS, flush=True)
    run("CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, plan text,"
        " created_at timestamptz NOT NULL DEFAULT now())")
    run("INSERT INTO accounts (id, email, plan) SELECT g, 'user' || g || '@d' || (g %% 50) || '.example',"
        " CASE WHEN g %% 10 = 0 THEN NULL ELSE 'basic' END FROM generate_series(1, %d) g" % ROWS)
    run("VACUUM (ANALYZE) accounts")
    run("CHECKPOINT")


def main():
    prepare()
    path = os.path.join(WORK, NAME + ".sql")
    with open(path, "w") as f:
        f.write(MIGRATION)
    proxy = EngineProxy("data", WORK, BIN, DB, TOKEN)
    admin = "http://127.0.0.1:%d" % proxy.aport
    res = dict(run_header(DB), rows=ROWS, writers_per_release=WRITERS, pause_ms=PAUSE_S * 1000,
               command=os.environ["COMMAND"], migration=MIGRATION, load_before=os.getloadavg()[0])
    nslots = 2 * WRITERS
    old = [Writer(release_uri(proxy), "old", k, nslots) for k in range(WRITERS)]
    new = [Writer(release_uri(proxy, NAME), "new", WRITERS + k, nslots) for k in range(WRITERS)]
    for w in old:
        w.start()
    time.sleep(BEFORE)
    t_start = time.time()
    print("== migrate start %s through the proxy, the old release writing" % NAME, flush=True)
    start = subprocess.Popen([BIN, "migrate", "start", path, "--quiet", "--proxy", admin],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=dict(os.environ, PGTANDEM_ADMIN_TOKEN=TOKEN))
    polls, t_batches, t_done, new_started = [], None, None, False
    while True:
        code, cur = proxy.api("GET", "/migrations/current")
        cur = cur if code == 200 else {"error": code}
        bf = cur.get("backfill") or {}
        if cur.get("phase") == "backfilling" and t_batches is None:
            t_batches = time.time()
        if cur.get("phase") in ("backfilling", "finishing", "active") and not new_started:
            for w in new:  # the new release exists once its shape does
                w.start()
            new_started = True
        if bf and cur.get("phase") == "backfilling":
            polls.append(bf)
        if cur.get("phase") == "active" and bf.get("done"):
            t_done = time.time()
            break
        if cur.get("phase") in ("failed", "rolled_back") or start.poll() not in (None, 0):
            raise SystemExit("the migration did not become active: %s\n%s" % (cur, start.communicate()[0]))
        time.sleep(0.2)
    out = start.communicate(timeout=300)[0]
    time.sleep(2)  # the new release's writers: some statements against the active migration too
    for w in old + new:
        w.stop_ev.set()
    for w in old + new:
        w.join()
    t_batches = t_batches or t_start
    res.update(seconds_to_active=t_done - t_start, seconds_of_batches=t_done - t_batches,
               rows_per_s=ROWS / (t_done - t_batches), start_exit=start.returncode, start_output=out[-2000:],
               baseline_old=p99(old, t_start - BEFORE + 1, t_start), during_old=p99(old, t_batches, t_done),
               during_new=p99(new, t_batches, t_done),
               errors={"old": sum(len(w.errors) for w in old), "new": sum(len(w.errors) for w in new)},
               error_samples=[e for w in old + new for e in w.errors][:5])
    last = polls[-1] if polls else {}
    bud = last.get("budget") or {}
    res["budget"] = {"kind": bud.get("kind"), "baseline_p99_ms": bud.get("baseline_p99_ms"),
                     "limit_ms": bud.get("limit_ms"), "polls": len(polls),
                     "engaged_polls": sum(1 for p in polls if (p.get("budget") or {}).get("engaged")),
                     "lock_conflicts": last.get("lock_conflicts")}

    print("== checking every row in both shapes", flush=True)
    new_opts = "-c pgtandem.version=%s -c search_path=pgtandem_%s,public" % (NAME, NAME)
    checks = {}
    checks["rows"] = one("SELECT count(*) FROM public.accounts")[0]
    acked = [i for w in old + new for i in w.inserted]
    checks["inserts_acknowledged"] = len(acked)
    checks["inserts_missing"] = one("SELECT count(*) FROM unnest(%s::bigint[]) i WHERE NOT EXISTS"
                                    " (SELECT 1 FROM public.accounts a WHERE a.id = i)" % ("'{%s}'" % ",".join(
                                        map(str, acked))))[0] if acked else 0
    checks["rows_expected"] = ROWS + len(acked)
    with psycopg.connect(DB, autocommit=True, options=new_opts) as c:
        checks["shapes_differ"] = c.execute(
            "SELECT count(*) FROM accounts n FULL JOIN public.accounts o USING (id)"
            " WHERE n.id IS NULL OR o.id IS NULL OR n.email IS DISTINCT FROM o.email"
            " OR n.plan IS DISTINCT FROM o.plan").fetchone()[0]
        checks["domain_not_the_emails"] = c.execute(
            "SELECT count(*) FROM accounts WHERE email_domain IS DISTINCT FROM split_part(email, '@', 2)").fetchone()[0]
        checks["without_plan"] = c.execute("SELECT count(*) FROM accounts WHERE plan IS NULL").fetchone()[0]
        changed = {i: e for w in old + new for i, e in w.last.items()}
        got = dict(c.execute("SELECT id, email FROM accounts WHERE id = ANY(%s)", (list(changed),)).fetchall())
        checks["changes_acknowledged"] = len(changed)
        checks["changes_lost"] = sum(1 for i, e in changed.items() if got.get(i) != e)
    r = subprocess.run([BIN, "migrate", "complete", "--quiet", "--proxy", admin], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, PGTANDEM_ADMIN_TOKEN=TOKEN))
    checks["complete_exit"] = r.returncode
    checks["not_null_after_complete"] = one(
        "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'public.accounts'::regclass"
        " AND attname = 'email_domain'")[0]
    proxy.stop()
    res["checks"] = checks
    res["load_after"] = os.getloadavg()[0]
    ok = (checks["inserts_missing"] == 0 and checks["rows"] == checks["rows_expected"] and
          checks["shapes_differ"] == 0 and checks["domain_not_the_emails"] == 0 and checks["without_plan"] == 0
          and checks["changes_lost"] == 0 and checks["complete_exit"] == 0 and checks["not_null_after_complete"]
          and res["errors"]["old"] == 0 and res["errors"]["new"] == 0)
    res["all_checks_passed"] = ok
    write(res)
    raise SystemExit(0 if ok else 1)


def fmt(x, spec="%.1f"):
    return spec % x if x is not None else "-"


def write(r):
    with open(OUT + ".json", "w") as f:
        json.dump(r, f, indent=1)
    c, b = r["checks"], r["budget"]
    base = (b.get("baseline_p99_ms") or {}).get("old") if isinstance(b.get("baseline_p99_ms"), dict) else None
    lim = (b.get("limit_ms") or {}).get("old") if isinstance(b.get("limit_ms"), dict) else None
    md = ["# A data migration under both releases' writes, %s" % r["date"], "",
          "`%s`; %s; Postgres %s. Load average %.2f before, %.2f after." % (
              r["command"], r["machine"], r["postgres"], r["load_before"], r["load_after"]), "",
          "%d rows; the migration, as an ORM writes it, run by `migrate start FILE --proxy`:" % r["rows"], "",
          "```sql", r["migration"].rstrip(), "```", "",
          "%d writers per release through the proxy (psycopg, autocommit, a statement every %g ms: half inserts, "
          "half email changes of rows of their own; the new release sets the domain with the email)." % (
              r["writers_per_release"], r["pause_ms"]), "",
          "| | statements | p50 | p99 | max |", "|---|---:|---:|---:|---:|"]
    for label, key in (("old release, before the migration (baseline)", "baseline_old"),
                       ("old release, while the batches ran", "during_old"),
                       ("new release, while the batches ran", "during_new")):
        s = r[key]
        md.append("| %s | %d | %s ms | %s ms | %s ms |" % (label, s["n"], fmt(s["p50_ms"], "%.2f"),
                                                          fmt(s["p99_ms"], "%.2f"), fmt(s["max_ms"], "%.1f")))
    md += ["", "Batches: %d rows in %.1f s (**%.0f rows/s**), from `start` to active %.1f s; the budget (%s): "
           "its baseline %s ms, its limit %s ms, engaged in %d of %d polls; %s lock conflicts with the writers." % (
               r["rows"], r["seconds_of_batches"], r["rows_per_s"], r["seconds_to_active"], b.get("kind"),
               fmt(base, "%.2f"), fmt(lim, "%.2f"), b["engaged_polls"], b["polls"], b.get("lock_conflicts")), "",
           "Writers' errors: old release %d, new release %d." % (r["errors"]["old"], r["errors"]["new"]), "",
           "Checked after the batches, row by row: %d rows (%d expected: %d + %d inserts acknowledged, %d missing); "
           "rows that differ between the two shapes: %d; rows whose domain is not their email's: %d; rows "
           "without a plan: %d; changes acknowledged %d, lost %d. `complete` exited %d; the column is NOT NULL "
           "after it: %s. **%s**" % (
               c["rows"], c["rows_expected"], r["rows"], c["inserts_acknowledged"], c["inserts_missing"],
               c["shapes_differ"], c["domain_not_the_emails"], c["without_plan"], c["changes_acknowledged"],
               c["changes_lost"], c["complete_exit"], c["not_null_after_complete"],
               "every check passed" if r["all_checks_passed"] else "A CHECK FAILED")]
    with open(OUT + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
