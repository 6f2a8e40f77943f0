"""A stand-in application release for `make demo` (tests/demo.sh).

  demo_writer.py write old|new URI LOG STATS   runs until SIGTERM/SIGINT
  demo_writer.py verify URI LOG...              row-by-row check, prints JSON
  demo_writer.py verify-old URI LOG...          the same under the old names (after a revert)

`old` is the release before the migration: it inserts, updates and reads
`checks` by claim_text / aggregation / diagnostics (JSON kept as text). `new`
is the next release: it connects with pgtandem.version (put in URI by the
caller) and uses claim / config_json / counts_by_template_json (jsonb), and
also reads `SELECT *` through a prepared statement, across the cutover.

Every committed transaction appends the row id and the values it wrote to LOG
(one JSON object per line). At exit STATS gets {"transactions", "failures",
"errors"}. `verify` reads the logs and checks every row, under the new names,
against the last values its writer reported.
"""
import json
import os
import random
import signal
import sys
import time

import psycopg

OLD = {
    "insert": "INSERT INTO checks (claim_text, aggregation, diagnostics, env, anon_token)"
              " VALUES (%s, %s, %s, 'prod', %s) RETURNING id",
    "update": "UPDATE checks SET aggregation = %s, diagnostics = %s WHERE id = %s",
    "read": "SELECT claim_text, aggregation::jsonb, diagnostics::jsonb FROM checks WHERE id = %s",
}
NEW = {
    "insert": "INSERT INTO checks (claim, config_json, counts_by_template_json, env, anon_token)"
              " VALUES (%s, %s::jsonb, %s::jsonb, 'prod', %s) RETURNING id",
    "update": "UPDATE checks SET config_json = %s::jsonb, counts_by_template_json = %s::jsonb WHERE id = %s",
    "read": "SELECT claim, config_json, counts_by_template_json FROM checks WHERE id = %s",
}


class Writer:
    def __init__(self, release, uri, log_path):
        self.release = release
        self.uri = uri
        self.sql = OLD if release == "old" else NEW
        self.log = open(log_path, "a", buffering=1)
        self.written = {}  # id -> (claim, config, counts) as last committed
        self.transactions = 0
        self.failures = 0
        self.errors = []
        self.conn = None
        self.n = 0

    def connect(self):
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.uri, connect_timeout=10)

    def one_transaction(self):
        self.n += 1
        tag = "%s-%d-%d" % (self.release, os.getpid(), self.n)
        config = {"release": self.release, "n": self.n, "model": "demo"}
        counts = {"template_a": self.n % 13, "template_b": self.n % 5}
        with self.conn.transaction():
            cur = self.conn.cursor()
            rid = cur.execute(self.sql["insert"], (tag, json.dumps(config), json.dumps(counts),
                                                   "tok-" + tag)).fetchone()[0]
            done = {rid: (tag, config, counts)}
            if self.written:
                old_id = random.choice(list(self.written))
                claim = self.written[old_id][0]
                config2 = {"release": self.release, "updated_in": self.n}
                counts2 = {"template_c": self.n % 7}
                cur.execute(self.sql["update"], (json.dumps(config2), json.dumps(counts2), old_id))
                done[old_id] = (claim, config2, counts2)
                got = cur.execute(self.sql["read"], (old_id,)).fetchone()
                if got is None or (got[0], got[1], got[2]) != done[old_id]:
                    raise RuntimeError("read back row %d: %r, wrote %r" % (old_id, got, done[old_id]))
            if self.release == "new":
                star = cur.execute("SELECT * FROM checks WHERE id = %s", (rid,), prepare=True).fetchone()
                if star is None:
                    raise RuntimeError("SELECT * did not find row %d" % rid)
        for k, v in done.items():
            self.written[k] = v
            self.log.write(json.dumps({"id": k, "claim": v[0], "config": v[1], "counts": v[2]}) + "\n")
        self.transactions += 1

    def run(self, stop):
        while not stop["now"]:
            try:
                self.connect()
                self.one_transaction()
            except Exception as e:  # counted, reported, and the writer carries on
                self.failures += 1
                if len(self.errors) < 20:
                    self.errors.append("%s: %s" % (type(e).__name__, str(e).strip()[:300]))
                if self.conn is not None and self.conn.broken:
                    self.conn = None
                time.sleep(0.05)
            time.sleep(0.005)


def write(release, uri, log_path, stats_path):
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    w = Writer(release, uri, log_path)
    w.run(stop)
    if w.conn is not None:
        w.conn.close()
    with open(stats_path, "w") as f:
        json.dump({"release": release, "transactions": w.transactions, "failures": w.failures,
                   "errors": w.errors, "rows": len(w.written)}, f)
    return 0


NEW_COLUMNS = "claim, config_json, counts_by_template_json"
OLD_COLUMNS = "claim_text, aggregation::jsonb, diagnostics::jsonb"


def verify(uri, logs, columns=NEW_COLUMNS):
    expected = {}
    for path in logs:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                expected[r["id"]] = (r["claim"], r["config"], r["counts"], os.path.basename(path))
    found = {}
    with psycopg.connect(uri) as c:
        ids = list(expected)
        for i in range(0, len(ids), 5000):
            for row in c.execute("SELECT id, %s FROM checks WHERE id = ANY(%%s)" % columns, (ids[i:i + 5000],)):
                found[row[0]] = (row[1], row[2], row[3])
    missing = [i for i in expected if i not in found]
    mismatched = [i for i in expected if i in found and found[i] != expected[i][:3]]
    for i in (missing + mismatched)[:10]:
        print("  row %d (%s): expected %r, found %r" % (i, expected[i][3], expected[i][:3], found.get(i)),
              file=sys.stderr)
    print(json.dumps({"rows_checked": len(expected), "missing": len(missing), "mismatches": len(mismatched)}))
    return 0 if not missing and not mismatched else 1


def main(argv):
    if len(argv) == 5 and argv[0] == "write" and argv[1] in ("old", "new"):
        return write(argv[1], argv[2], argv[3], argv[4])
    if len(argv) >= 3 and argv[0] == "verify":
        return verify(argv[1], argv[2:])
    if len(argv) >= 3 and argv[0] == "verify-old":  # after a revert: the same rows under the old names
        return verify(argv[1], argv[2:], OLD_COLUMNS)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
