"""The key-widening benchmark's measuring part (bench/keys.sh starts the
cluster and the proxy): an integer primary key and the foreign key pointing
at it made bigint, online through the proxy against the offline
`ALTER TABLE ... TYPE bigint` of both tables, each on its own database with
the same rows, under the same application.

The application: 4 connections through the proxy, one statement each every
10 ms: two read an order joined to its account by key, one inserts an
account and an order for it, one moves an order to another account. Online
it runs as the old release during `start`, as the new release across
`complete`. Figures: each step's wall time, the contract's own time and its
lock wait, the proxy's hold, and the application's worst and p99 latency
and errors during each step."""
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg

from benchlib import run_header

rows = int(os.environ["ROWS"])
binary, admin, token = os.environ["BIN"], os.environ["ADMIN"], os.environ["PGTANDEM_ADMIN_TOKEN"]
super_uri, proxy_base = os.environ["PGT_SUPER_URI"], os.environ["PROXY_URI"]
out = os.environ["OUT"]
NAME = "widen_keys"
TICK = 0.01
MIGRATION = {"name": NAME, "parent": None, "operations": [
    {"alter_column": {"table": "accounts", "column": "id", "type": "bigint", "up": "id::bigint",
                      "down": "id::int"}},
    {"alter_column": {"table": "orders", "column": "account_id", "type": "bigint", "up": "account_id::bigint",
                      "down": "account_id::int"}}]}
OFFLINE = ("ALTER TABLE accounts ALTER COLUMN id TYPE bigint; ALTER SEQUENCE accounts_id_seq AS bigint;"
           "ALTER TABLE orders ALTER COLUMN account_id TYPE bigint")


def uri(base, dbname):
    return base.replace("/appdb?", "/%s?" % dbname).replace("/bench?", "/%s?" % dbname)


def load(dbname):
    if dbname != "bench":   # bench/keys.sh made bench, the proxy's engine database
        with psycopg.connect(super_uri, autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS %s" % dbname)
            c.execute("CREATE DATABASE %s" % dbname)
    with psycopg.connect(uri(super_uri, dbname), autocommit=True) as c:
        c.execute("CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL)")
        c.execute("CREATE TABLE orders (id bigserial PRIMARY KEY,"
                  " account_id integer NOT NULL REFERENCES accounts (id), amount integer NOT NULL)")
        c.execute("INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, %s) g", (rows,))
        c.execute("INSERT INTO orders (account_id, amount) SELECT g %% %s + 1, g FROM generate_series(1, %s) g",
                  (rows, 3 * rows))
        c.execute("CREATE INDEX orders_account ON orders (account_id)")
        c.execute("VACUUM ANALYZE accounts")
        c.execute("VACUUM ANALYZE orders")
        c.execute("CHECKPOINT")


class Client(threading.Thread):
    def __init__(self, app, role, n):
        super().__init__(daemon=True)
        self.app, self.role, self.n, self.samples, self.conn = app, role, n, [], None

    def statement(self, k):
        if self.role == "reader":
            i = 1 + (k * 7919 + self.n) % (3 * rows)
            return ("SELECT o.id, o.amount, a.name FROM orders o JOIN accounts a ON a.id = o.account_id"
                    " WHERE o.id = %s", (i,))
        if self.role == "inserter":
            return ("WITH a AS (INSERT INTO accounts (name) VALUES ('w') RETURNING id)"
                    " INSERT INTO orders (account_id, amount) SELECT id, 1 FROM a", None)
        return ("UPDATE orders SET account_id = %s WHERE id = %s", (1 + (k * 104729) % rows, 1 + (k * 7) % (3 * rows)))

    def run(self):
        k, nxt = 0, time.monotonic()
        while not self.app.stopping:
            k += 1
            opts = self.app.options
            t0 = time.monotonic()
            err = None
            try:
                if self.conn is None or self.conn.closed or getattr(self.conn, "pgt_options", None) != opts:
                    if self.conn is not None:
                        self.conn.close()
                    self.conn = psycopg.connect(self.app.uri, autocommit=True, options=opts,
                                                application_name="keys-" + self.role, connect_timeout=10)
                    self.conn.pgt_options = opts
                sql, params = self.statement(k)
                cur = self.conn.execute(sql, params)
                if cur.description:
                    cur.fetchall()
            except Exception as e:  # kept with the sample
                err = ("%s: %s" % (type(e).__name__, e)).strip().splitlines()[0][:300]
                if self.conn is not None and (self.conn.closed or self.conn.broken):
                    self.conn = None
            self.samples.append((t0, time.monotonic(), err))
            nxt += TICK
            now = time.monotonic()
            nxt = now if nxt < now - TICK else nxt
            time.sleep(max(0.0, nxt - now))
        if self.conn is not None:
            self.conn.close()


class App:
    def __init__(self, dbname):
        self.uri, self.options, self.stopping = uri(proxy_base, dbname), "", False
        self.clients = [Client(self, r, i) for i, r in enumerate(("reader", "reader", "inserter", "mover"))]

    def start(self):
        for c in self.clients:
            c.start()
        return self

    def stop(self):
        self.stopping = True
        for c in self.clients:
            c.join(120)

    def latency(self, t0, t1):
        s = [x for c in self.clients for x in c.samples if x[0] <= t1 and x[1] >= t0]
        lat = sorted((e - b) * 1000.0 for b, e, _ in s)
        errs = [err for _, _, err in s if err]
        if not lat:
            return {"n": 0}
        return {"n": len(lat), "worst_ms": round(lat[-1], 1), "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 1),
                "p50_ms": round(lat[len(lat) // 2], 1), "errors": len(errs), "first_error": errs[0] if errs else None}


def api(method, path, body=None, timeout=900):
    req = urllib.request.Request(admin + path, method=method, data=body if body is not None else
                                 (b"" if method == "POST" else None), headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def online():
    app = App("bench").start()
    time.sleep(2)   # a baseline of the app alone
    path = os.path.join(os.environ["WORK"], NAME + ".json")
    with open(path, "w") as f:
        json.dump(MIGRATION, f)
    t0 = time.monotonic()
    r = subprocess.run([binary, "migrate", "start", path, "--proxy", admin], capture_output=True, text=True,
                       timeout=3600)
    t1 = time.monotonic()
    if r.returncode != 0:
        raise RuntimeError("start: " + r.stderr[-800:])
    app.options = "-c pgtandem.version=" + NAME   # the new release rolls out
    time.sleep(2)
    t2 = time.monotonic()
    code, body = api("POST", "/migrations/current/complete")
    t3 = time.monotonic()
    time.sleep(1)
    app.stop()
    if code != 200:
        raise RuntimeError("complete answered %s: %s" % (code, body))
    with psycopg.connect(uri(super_uri, "bench"), autocommit=True) as c:
        lock_wait = c.execute("SELECT contract_lock_wait_ms FROM pgtandem.migrations WHERE name = %s",
                              (NAME,)).fetchone()[0]
        types = c.execute("SELECT string_agg(table_name || '.' || column_name || ' ' || data_type, ', ' ORDER BY 1)"
                          " FROM information_schema.columns WHERE table_schema = 'public'"
                          " AND column_name IN ('id', 'account_id')").fetchone()[0]
    return {"start_s": round(t1 - t0, 1), "complete_s": round(t3 - t2, 3), "cutover": body,
            "contract_lock_wait_ms": lock_wait, "app_baseline": app.latency(t0 - 2, t0),
            "app_start": app.latency(t0, t1), "app_complete": app.latency(t2, t3), "types_after": types}


def offline():
    app = App("bench_offline").start()
    time.sleep(2)
    t0 = time.monotonic()
    with psycopg.connect(uri(super_uri, "bench_offline"), autocommit=True) as c:
        with c.transaction():
            for stmt in OFFLINE.split(";"):
                c.execute(stmt)
    t1 = time.monotonic()
    time.sleep(1)
    app.stop()
    return {"ddl_s": round(t1 - t0, 2), "app_baseline": app.latency(t0 - 2, t0), "app_ddl": app.latency(t0, t1)}


def main():
    print("== loading %d accounts and %d orders, twice" % (rows, 3 * rows), flush=True)
    load("bench")
    load("bench_offline")
    print("== online: start and complete through the proxy", flush=True)
    on = online()
    print(json.dumps(on, indent=1), flush=True)
    print("== offline: ALTER TABLE ... TYPE bigint of both tables in one transaction", flush=True)
    off = offline()
    print(json.dumps(off, indent=1), flush=True)
    res = {"header": run_header(uri(super_uri, "bench")), "rows": rows, "online": on, "offline": off,
           "command": os.environ.get("COMMAND", "sh bench/keys.sh")}
    with open(out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    h = res["header"]
    cut = on["cutover"] if isinstance(on["cutover"], dict) else {}
    md = ["# int -> bigint of a primary key and its foreign key: online against offline", "",
          "`%s`, %s; %s; %s." % (res["command"], h.get("date"), h.get("machine"), h.get("postgres", "")), "",
          "accounts: %d rows (`id serial PRIMARY KEY`), orders: %d rows (`account_id integer REFERENCES "
          "accounts`, indexed). The application: 4 connections through the proxy, a statement each every 10 ms "
          "(two reads by key with a join, an insert of an account and its order, a move of an order)." %
          (rows, 3 * rows), "",
          "| | online (pgtandem) | offline (ALTER TABLE ... TYPE bigint) |", "|---|---|---|",
          "| time the tables are locked against the app | contract: hold %.1f ms (lock wait %s ms) | %.1f s "
          "(ACCESS EXCLUSIVE on both tables while they are rewritten) |" % (
              cut.get("max_pause_ms", float("nan")), on["contract_lock_wait_ms"], off["ddl_s"]),
          "| whole operation | start %.1f s (expand + backfill), complete %.3f s | %.1f s |" % (
              on["start_s"], on["complete_s"], off["ddl_s"]),
          "| app worst latency during the operation | start %s ms, complete %s ms | %s ms |" % (
              on["app_start"].get("worst_ms"), on["app_complete"].get("worst_ms"), off["app_ddl"].get("worst_ms")),
          "| app p99 during the operation | start %s ms, complete %s ms | %s ms |" % (
              on["app_start"].get("p99_ms"), on["app_complete"].get("p99_ms"), off["app_ddl"].get("p99_ms")),
          "| app p99 before (baseline) | %s ms | %s ms |" % (on["app_baseline"].get("p99_ms"),
                                                            off["app_baseline"].get("p99_ms")),
          "| app errors | %d | %d |" % (on["app_start"].get("errors", 0) + on["app_complete"].get("errors", 0),
                                        off["app_ddl"].get("errors", 0)), "",
          "After the online run: %s." % on["types_after"], ""]
    with open(out + ".md", "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
