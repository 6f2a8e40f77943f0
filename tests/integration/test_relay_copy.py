"""COPY both ways through the relay: psql's \\copy of ~100 MB in and out with
a checksum compare, and COPY errors that leave the session usable."""
import hashlib
import os
import subprocess

import psycopg

TARGET_BYTES = 100 * 1024 * 1024


def _generate(path):
    """Writes a deterministic COPY text file of about 100 MB (id order); returns
    (rows, sha256)."""
    h = hashlib.sha256()
    rows = 0
    with open(path, "wb") as f:
        written = 0
        i = 0
        while written < TARGET_BYTES:
            lines = []
            for j in range(i, i + 10000):
                d = hashlib.md5(str(j).encode()).hexdigest()
                lines.append("%d\t%s\t%s%s\t%d\n" % (j, d, d[::-1], d, j * 7919 % 1000003))
            chunk = "".join(lines).encode()
            f.write(chunk)
            h.update(chunk)
            written += len(chunk)
            i += 10000
        rows = i
    return rows, h.hexdigest()


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _psql(uri, *args):
    r = subprocess.run(["psql", uri, "-X", "-At", "-v", "ON_ERROR_STOP=1", *args],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_copy_100mb_in_and_out(relay, cluster, tmp_path):
    src = tmp_path / "in.tsv"
    out = tmp_path / "out.tsv"
    rows, digest = _generate(src)
    assert os.path.getsize(src) >= TARGET_BYTES
    uri = relay.uri()
    _psql(uri, "-c", "DROP TABLE IF EXISTS relay_copy; "
                     "CREATE TABLE relay_copy (id bigint primary key, a text, b text, n int)")
    try:
        res = _psql(uri, "-c", "\\copy relay_copy FROM '%s'" % src)
        assert res == "COPY %d" % rows, res
        # the server agrees on what arrived (checked without the relay)
        direct = cluster.psql("SELECT count(*), sum(n), md5(string_agg(a || b, '' ORDER BY id)) "
                              "FROM relay_copy WHERE id % 1000 = 0")
        cnt = _psql(uri, "-c", "SELECT count(*) FROM relay_copy")
        assert int(cnt) == rows
        _psql(uri, "-c", "\\copy (SELECT * FROM relay_copy ORDER BY id) TO '%s'" % out)
        assert os.path.getsize(out) == os.path.getsize(src)
        assert _sha256(out) == digest
        via = _psql(uri, "-c", "SELECT count(*), sum(n), md5(string_agg(a || b, '' ORDER BY id)) "
                               "FROM relay_copy WHERE id % 1000 = 0")
        assert via == direct
    finally:
        # a stalled COPY would hold its lock: end it before dropping the table
        cluster.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE pid <> pg_backend_pid() AND query ILIKE '%relay_copy%'", check=False)
        cluster.psql("DROP TABLE IF EXISTS relay_copy")


def test_copy_errors_leave_session_usable(relay):
    with psycopg.connect(relay.uri(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS relay_copy_err")
        conn.execute("CREATE TABLE relay_copy_err (id int primary key, v text)")
        try:
            # bad data: the server rejects the COPY mid-stream
            try:
                with conn.cursor().copy("COPY relay_copy_err FROM STDIN") as cp:
                    cp.write("1\tone\n2\ttwo\nnot-a-number\tx\n")
                raise AssertionError("COPY with bad data succeeded")
            except psycopg.errors.InvalidTextRepresentation:
                pass
            # client-side abort (CopyFail)
            try:
                with conn.cursor().copy("COPY relay_copy_err FROM STDIN") as cp:
                    cp.write_row((10, "ten"))
                    raise RuntimeError("client gives up")
            except RuntimeError:
                pass
            except psycopg.errors.QueryCanceled:
                pass
            assert conn.execute("SELECT count(*) FROM relay_copy_err").fetchone()[0] == 0
            # a good COPY in, then COPY out in binary
            with conn.cursor().copy("COPY relay_copy_err FROM STDIN") as cp:
                for i in range(1000):
                    cp.write_row((i, "v%d" % i))
            got = []
            with conn.cursor().copy("COPY (SELECT id, v FROM relay_copy_err ORDER BY id) TO STDOUT") as cp:
                for row in cp.rows():
                    got.append(row)
            assert got == [(str(i), "v%d" % i) for i in range(1000)]
            # COPY TO STDOUT interrupted by an error part-way
            try:
                with conn.cursor().copy("COPY (SELECT 1/(500 - g) FROM generate_series(1, 1000) g) "
                                        "TO STDOUT") as cp:
                    for _ in cp:
                        pass
                raise AssertionError("COPY OUT with error succeeded")
            except psycopg.errors.DivisionByZero:
                pass
            assert conn.execute("SELECT 'ok'").fetchone()[0] == "ok"
        finally:
            conn.execute("DROP TABLE IF EXISTS relay_copy_err")
