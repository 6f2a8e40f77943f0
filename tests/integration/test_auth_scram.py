"""auth "scram": the proxy terminates TLS and SCRAM-SHA-256(-PLUS) itself and
logs in upstream on the client's behalf (issue 5).

- a Neon-like TLS front (conftest.TlsFront: wildcard certificate for
  *.pgtandem.test from a CA made here, SNI recorded, endpoint id taken out of
  `options`) in front of the test cluster, reached through a `hostaddr`
  upstream URI with sslmode=verify-full;
- clients on TLS with libpq's defaults, channel_binding=require (bound to the
  proxy's own certificate), verify-full against the proxy, psycopg 3 and
  node-postgres; wrong password / unknown user, the 'y' downgrade and
  malformed SASL messages, each compared with what Postgres itself answers;
- the users file: 0600 enforced, verifier-only users (ClientKey technique),
  password users (any upstream salt, md5, cleartext), SIGHUP reload;
- the upstream leg: TLS, and SCRAM-SHA-256-PLUS observed by a re-encrypting
  middlebox (and refused by Postgres when the middlebox's certificate differs).

The module skips only when the binary does not know `--auth`.
"""
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest

from support import (BIN, free_port, make_cert, make_test_ca, pg_error_fields, pg_read_message, pg_simple_query,
                     pg_startup_packet, pg_tls_socket, psql, run_pgtandem, SANITIZER_MARKS, TlsFront, TOP,
                     wait_log, wait_port, write_users_file)


def _auth_flag_unknown():
    try:
        r = subprocess.run([BIN, "proxy", "--auth", "probe-not-a-mode"], capture_output=True, text=True,
                           timeout=30)
    except OSError:
        return False  # a missing binary is a failure, not a skip
    return "unknown option '--auth'" in r.stderr


pytestmark = pytest.mark.skipif(_auth_flag_unknown(),
                                reason="bin/pgtandem proxy does not accept --auth yet (auth \"scram\" not wired)")

APP_PW = "apppass"
PLUS = "SCRAM-SHA-256-PLUS"
PLAIN = "SCRAM-SHA-256"
FRONT_HOST = "db.pgtandem.test"


# ---------------------------------------------------------------------------
# a raw SCRAM-SHA-256(-PLUS) client, to drive every step by hand

def _b64(b):
    return base64.b64encode(b).decode()


def _hmac(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def cert_end_point(der):
    """tls-server-end-point (RFC 5929) of a certificate signed with SHA-256."""
    return hashlib.sha256(der).digest()


def pg_msg(t, payload):
    return t + struct.pack("!I", len(payload) + 4) + payload


def sasl_initial(mech, data, declared=None):
    n = len(data) if declared is None else declared
    return pg_msg(b"p", mech.encode() + b"\0" + struct.pack("!i", n) + data)


class RawScram:
    """One connection: startup, then SCRAM step by step. `first` is the first
    message the server sent after the startup packet."""

    def __init__(self, port, tls=True, user="app", db="appdb", timeout=15.0, **params):
        self.tls = tls
        self.sock = pg_tls_socket(port, timeout=timeout) if tls else \
            socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.sendall(pg_startup_packet(user, db, **params))
        self.first = self.read()
        self.server_first = None

    def read(self):
        return pg_read_message(self.sock)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def mechanisms(self):
        t, p = self.first
        assert t == b"R" and struct.unpack("!I", p[:4])[0] == 10, "expected AuthenticationSASL, got %r %r" % (t, p)
        return [m.decode() for m in p[4:].split(b"\0") if m]

    def peer_end_point(self):
        return cert_end_point(self.sock.getpeercert(binary_form=True))

    def send(self, raw):
        self.sock.sendall(raw)
        return self.read()

    def login(self, password, mech=None, gs2=None, cb_data=None):
        """Full exchange. Returns {"error": fields or None, "ok": bool,
        "server_first": str, "server_sig_ok": bool}."""
        out = {"error": None, "ok": False, "server_first": None, "server_sig_ok": None}
        if self.first[0] == b"E":
            out["error"] = pg_error_fields(self.first[1])
            return out
        mechs = self.mechanisms()
        if mech is None:
            mech = PLUS if PLUS in mechs else PLAIN
        if gs2 is None:
            gs2 = "p=tls-server-end-point,," if mech == PLUS else ("y,," if self.tls else "n,,")
        nonce = _b64(os.urandom(18))
        bare = "n=,r=" + nonce
        t, p = self.send(sasl_initial(mech, (gs2 + bare).encode()))
        if t == b"E":
            out["error"] = pg_error_fields(p)
            return out
        assert t == b"R" and struct.unpack("!I", p[:4])[0] == 11, (t, p)
        sf = p[4:].decode()
        out["server_first"] = sf
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        salt, iters, rnonce = base64.b64decode(attrs["s"]), int(attrs["i"]), attrs["r"]
        cbind = gs2.encode()
        if gs2.startswith("p="):
            cbind += cb_data if cb_data is not None else self.peer_end_point()
        final_wo = "c=%s,r=%s" % (_b64(cbind), rnonce)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iters)
        ck = _hmac(salted, b"Client Key")
        auth_msg = ("%s,%s,%s" % (bare, sf, final_wo)).encode()
        proof = bytes(a ^ b for a, b in zip(ck, _hmac(hashlib.sha256(ck).digest(), auth_msg)))
        t, p = self.send(pg_msg(b"p", (final_wo + ",p=" + _b64(proof)).encode()))
        if t == b"E":
            out["error"] = pg_error_fields(p)
            return out
        assert t == b"R" and struct.unpack("!I", p[:4])[0] == 12, (t, p)
        sig = _hmac(_hmac(salted, b"Server Key"), auth_msg)
        out["server_sig_ok"] = p[4:].decode() == "v=" + _b64(sig)
        while True:
            t, p = self.read()
            if t is None:
                out["error"] = {"EOF": "connection closed"}
                return out
            if t == b"E":
                out["error"] = pg_error_fields(p)
                return out
            if t == b"Z":
                out["ok"] = True
                return out


def raw_login(port, password, tls=True, user="app", **kw):
    r = RawScram(port, tls=tls, user=user)
    try:
        res = r.login(password, **kw)
        if res["ok"]:
            rows, err = pg_simple_query(r.sock, "SELECT current_user")
            res["rows"] = rows
        return res
    finally:
        r.close()


def error_of(port, build, tls=True, user="app"):
    """Runs `build(RawScram)` (which sends something) and returns the
    ErrorResponse fields the server answered with, {"EOF": ...} when it closed
    the connection, or {"no error": (t, p)} when it answered something else."""
    r = RawScram(port, tls=tls, user=user)
    try:
        t, p = build(r)
        while t == b"R" and struct.unpack("!I", p[:4])[0] in (11,):
            # a SASLContinue: the server wants more; the builder did not finish
            return {"no error": (t, p)}
        if t == b"E":
            return pg_error_fields(p)
        if t is None:
            return {"EOF": "closed"}
        return {"no error": (t, p)}
    except (ConnectionError, socket.timeout) as e:
        return {"EOF": repr(e)}
    finally:
        r.close()


# ---------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA of our own with: a wildcard certificate for *.pgtandem.test (the
    Neon-like front), one for another name, and one for 127.0.0.1/localhost
    that differs from the cluster's (the proxy's, to see what is bound)."""
    d = str(tmp_path_factory.mktemp("scram-pki"))
    ca = make_test_ca(d)
    return {
        "dir": d,
        "ca": ca[0],
        "wild": make_cert(d, "wild", ca, ["DNS:*.pgtandem.test"]),
        "other": make_cert(d, "other", ca, ["DNS:*.other.test"]),
        "proxy": make_cert(d, "proxy", ca, ["DNS:localhost", "IP:127.0.0.1"]),
    }


@pytest.fixture(scope="module")
def app_verifier(cluster):
    v = cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    assert v.startswith("SCRAM-SHA-256$"), v
    return v


def new_verifier(tmp_path, user, password):
    """A verifier made by `pgtandem passwd` (fresh random salt)."""
    f = str(tmp_path / ("passwd-%s.json" % user))
    r = run_pgtandem(["passwd", user, "--file", f, "--verifier-only"], input=password + "\n")
    assert r.returncode == 0, r.stderr
    assert password not in r.stdout + r.stderr
    with open(f) as fh:
        v = json.load(fh)[user]
    assert isinstance(v, str) and v.startswith("SCRAM-SHA-256$4096:"), v
    return v


@pytest.fixture(scope="module")
def vuser(cluster, tmp_path_factory):
    """Role `scramv` whose upstream verifier is the one `pgtandem passwd`
    made (the ClientKey technique needs the same verifier on both sides)."""
    d = tmp_path_factory.mktemp("vuser")
    v = new_verifier(d, "scramv", "vpass-1")
    cluster.psql("DROP ROLE IF EXISTS scramv")
    cluster.psql("CREATE ROLE scramv LOGIN PASSWORD '%s'" % v)
    assert cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'scramv'") == v
    yield {"user": "scramv", "password": "vpass-1", "verifier": v}
    cluster.psql("DROP ROLE IF EXISTS scramv")


@pytest.fixture
def scram_proxy(proxy_factory, cluster, tmp_path):
    """make(users, upstream=None, cert=None, extra=()) -> Proxy in auth scram
    mode. cert: (crt, key) for the client side; default the cluster's."""
    def make(users, upstream=None, cert=None, extra=()):
        path = write_users_file(str(tmp_path / ("users-%d.json" % free_port())), users)
        args = ["--auth", "scram", "--users-file", path]
        if cert:
            args += ["--tls-cert", cert[0], "--tls-key", cert[1]]
        p = proxy_factory(extra_args=args + list(extra), upstream=upstream, tls=cert is None)
        p.users_path = path
        return p
    return make


@pytest.fixture
def fronts():
    started = []

    def make(*a, **kw):
        f = TlsFront(*a, **kw)
        started.append(f)
        return f

    yield make
    for f in started:
        alive = f.stop()
        assert not alive, "front threads still running: %r" % alive


def front_upstream(port, ca, host=FRONT_HOST):
    return "postgresql://%s:%d/?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert=%s" % (host, port, ca)


def who(conn):
    return conn.execute("SELECT current_user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())").fetchone()


def still_serving(p, user="app", password=APP_PW):
    with psycopg.connect(p.uri(user=user, password=password, sslmode="require"), connect_timeout=20) as c:
        assert c.execute("SELECT current_user").fetchone() == (user,)


# ---------------------------------------------------------------------------
# 1. the Neon-like front: SNI, hostaddr, verify-full, endpoint id

def test_front_sni_and_login_through_hostaddr(scram_proxy, fronts, pki, cluster, app_verifier):
    front = fronts(pki["wild"][0], pki["wild"][1], cluster.port)
    p = scram_proxy({"app": app_verifier}, upstream=front_upstream(front.port, pki["ca"]))
    with psycopg.connect(p.uri(sslmode="require"), connect_timeout=20) as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("SELECT current_user, current_database()").fetchone() == ("app", "appdb")
    r = psql(p.uri(sslmode="require"), "SELECT 6 * 7")
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
    front.settle()
    assert not front.errors, front.errors
    conns = [c for c in front.conns]
    assert conns, "the proxy never reached the front"
    assert all(c.get("tls") for c in conns), conns
    assert front.snis() and all(s == FRONT_HOST for s in front.snis()), front.snis()
    starts = [c["startup"] for c in conns if "startup" in c]
    assert starts and all(s.get("user") == "app" and s.get("database") == "appdb" for s in starts), starts
    # the front relays to Postgres in plain TCP: only SCRAM-SHA-256 is offered there
    assert all(c.get("sasl_mechanism") == PLAIN for c in conns if "startup" in c), conns


def test_front_certificate_for_another_name_fails_verify_full(scram_proxy, fronts, pki, cluster, app_verifier):
    front = fronts(pki["other"][0], pki["other"][1], cluster.port)
    p = scram_proxy({"app": app_verifier}, upstream=front_upstream(front.port, pki["ca"]))
    res = raw_login(p.port, APP_PW)
    assert not res["ok"], res
    err = res["error"]
    assert err.get("C") == "08006", err
    text = err.get("M", "") + " " + err.get("D", "")
    assert FRONT_HOST in text, err
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(p.uri(sslmode="require"), connect_timeout=20)
    assert FRONT_HOST in str(ei.value), str(ei.value)
    # the front saw the attempt, with the right SNI, and no startup got through
    assert front.snis() and all(s == FRONT_HOST for s in front.snis()), front.conns
    assert not [c for c in front.conns if "startup" in c], front.conns
    assert FRONT_HOST in p.log(), p.log()[-2000:]
    again = raw_login(p.port, APP_PW)
    assert again["error"].get("C") == "08006", again


def test_front_ca_not_trusted_fails(scram_proxy, fronts, pki, cluster, app_verifier):
    # the cluster's CA did not sign the front's certificate
    front = fronts(pki["wild"][0], pki["wild"][1], cluster.port)
    p = scram_proxy({"app": app_verifier}, upstream=front_upstream(front.port, cluster.ca))
    res = raw_login(p.port, APP_PW)
    assert not res["ok"] and res["error"].get("C") == "08006", res
    assert FRONT_HOST in res["error"].get("M", "") + res["error"].get("D", ""), res


def test_front_default_sslmode_is_verify_full_with_the_system_store(proxy_factory, fronts, pki, cluster,
                                                                   app_verifier, tmp_path):
    """No sslmode in the URI and a host that is not loopback: verify-full
    against the system CA store (OpenSSL's default paths; SSL_CERT_FILE
    stands in for the system store here)."""
    front = fronts(pki["wild"][0], pki["wild"][1], cluster.port)
    users = write_users_file(str(tmp_path / "users.json"), {"app": app_verifier})
    upstream = "postgresql://%s:%d/?hostaddr=127.0.0.1" % (FRONT_HOST, front.port)
    args = ["--auth", "scram", "--users-file", users]
    p = proxy_factory(extra_args=args, upstream=upstream, env={"SSL_CERT_FILE": cluster.ca})
    res = raw_login(p.port, APP_PW)
    assert not res["ok"] and res["error"].get("C") == "08006", res
    assert FRONT_HOST in res["error"].get("M", "") + res["error"].get("D", ""), res
    p2 = proxy_factory(extra_args=args, upstream=upstream, env={"SSL_CERT_FILE": pki["ca"]})
    with psycopg.connect(p2.uri(sslmode="require"), connect_timeout=20) as c:
        assert who(c) == ("app", False)  # the front talks to Postgres in plain TCP
    assert front.snis() and all(s == FRONT_HOST for s in front.snis()), front.snis()


def test_front_endpoint_option(scram_proxy, fronts, pki, cluster, app_verifier):
    front = fronts(pki["wild"][0], pki["wild"][1], cluster.port)
    p = scram_proxy({"app": app_verifier}, upstream=front_upstream(front.port, pki["ca"]),
                    extra=["--neon-endpoint", "ep-test-123"])

    def last_endpoints():
        starts = [c for c in front.conns if "startup" in c]
        assert starts, front.conns
        return starts[-1]["endpoints"]

    with psycopg.connect(p.uri(sslmode="require"), connect_timeout=20) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert last_endpoints() == ["ep-test-123"]
    # the client's own endpoint wins
    with psycopg.connect(p.uri(sslmode="require"), options="endpoint=ep-client-9", connect_timeout=20) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert last_endpoints() == ["ep-client-9"]
    # other options are kept next to the added endpoint
    with psycopg.connect(p.uri(sslmode="require"), options="-c statement_timeout=4321",
                         connect_timeout=20) as c:
        assert c.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
    assert last_endpoints() == ["ep-test-123"]
    assert not front.errors, front.errors


def test_front_no_endpoint_unless_configured(scram_proxy, fronts, pki, cluster, app_verifier):
    front = fronts(pki["wild"][0], pki["wild"][1], cluster.port)
    p = scram_proxy({"app": app_verifier}, upstream=front_upstream(front.port, pki["ca"]))
    with psycopg.connect(p.uri(sslmode="require"), connect_timeout=20) as c:
        c.execute("SELECT 1")
    starts = [c for c in front.conns if "startup" in c]
    assert starts and starts[-1]["endpoints"] == [], starts


def test_front_cancel_goes_over_tls_with_sni(scram_proxy, fronts, pki, cluster, app_verifier):
    front = fronts(pki["wild"][0], pki["wild"][1], cluster.port)
    p = scram_proxy({"app": app_verifier}, upstream=front_upstream(front.port, pki["ca"]))
    with psycopg.connect(p.uri(sslmode="require"), connect_timeout=20, autocommit=True) as c:
        done = threading.Event()

        def canceller():
            while not done.wait(0.5):
                try:
                    c.cancel()
                except Exception:
                    pass

        t = threading.Thread(target=canceller, daemon=True)
        t.start()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                c.execute("SELECT pg_sleep(60)")
        finally:
            done.set()
            t.join(10)
        assert c.execute("SELECT 1").fetchone() == (1,)
    front.settle()
    refused = [x for x in front.conns if not x.get("tls")]
    assert not refused, "upstream connections without TLS reached the front: %r" % refused
    assert len(front.conns) >= 2, front.conns  # the session and at least one cancel request
    assert all(s == FRONT_HOST for s in front.snis()), front.snis()


# ---------------------------------------------------------------------------
# 2. clients of the proxy

def test_libpq_defaults_over_tls(scram_proxy):
    p = scram_proxy({"app": {"password": APP_PW}})
    # psql with libpq's defaults: sslmode=prefer ends on TLS, channel_binding=prefer
    r = psql("postgresql://app:%s@127.0.0.1:%d/appdb" % (APP_PW, p.port),
             "SELECT current_user || ' ' || (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "app true"
    r = psql(p.uri(sslmode="require"), "SELECT 1")
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    with psycopg.connect(p.uri(sslmode="require"), connect_timeout=20) as c:
        assert c.pgconn.ssl_in_use
        assert who(c) == ("app", True)
    # and without TLS (SCRAM-SHA-256 only)
    with psycopg.connect(p.uri(sslmode="disable"), connect_timeout=20) as c:
        assert not c.pgconn.ssl_in_use
        assert who(c) == ("app", True)


def test_mechanisms_offered_like_postgres(scram_proxy, cluster):
    p = scram_proxy({"app": {"password": APP_PW}})
    for port in (p.port, cluster.port):
        r = RawScram(port, tls=True)
        assert r.mechanisms() == [PLUS, PLAIN], port
        r.close()
        r = RawScram(port, tls=False)
        assert r.mechanisms() == [PLAIN], port
        r.close()


def test_channel_binding_require_binds_the_proxys_certificate(scram_proxy, pki, cluster):
    # the proxy's certificate differs from Postgres's: what is bound must be the proxy's
    p = scram_proxy({"app": {"password": APP_PW}}, cert=pki["proxy"])
    uri = p.uri(sslmode="verify-full", extra="sslrootcert=%s&channel_binding=require" % pki["ca"])
    r = psql(uri, "SELECT current_user")
    assert r.returncode == 0 and r.stdout.strip() == "app", r.stderr
    with psycopg.connect(uri, connect_timeout=20) as c:
        assert who(c) == ("app", True)
    # by hand: -PLUS with the end point of the certificate we received works ...
    rr = RawScram(p.port)
    proxy_cert = rr.sock.getpeercert(binary_form=True)
    with open(pki["proxy"][0]) as f:
        import ssl
        assert proxy_cert == ssl.PEM_cert_to_DER_cert(f.read())
    res = rr.login(APP_PW, mech=PLUS)
    rr.close()
    assert res["ok"] and res["server_sig_ok"], res
    # ... and with the end point of Postgres's certificate it is refused, as Postgres refuses it
    with open(os.path.join(cluster.tlsdir, "server.crt")) as f:
        import ssl
        pg_cert = ssl.PEM_cert_to_DER_cert(f.read())
    bad_proxy = raw_login(p.port, APP_PW, mech=PLUS, cb_data=cert_end_point(pg_cert))
    bad_pg = raw_login(cluster.port, APP_PW, mech=PLUS, cb_data=cert_end_point(proxy_cert))
    assert not bad_proxy["ok"] and not bad_pg["ok"]
    assert bad_pg["error"]["M"] == "SCRAM channel binding check failed", bad_pg
    assert (bad_proxy["error"].get("C"), bad_proxy["error"].get("M")) == (bad_pg["error"]["C"], bad_pg["error"]["M"])
    still_serving(p)


def test_verify_full_against_the_proxy(scram_proxy, cluster, pki):
    p = scram_proxy({"app": {"password": APP_PW}})  # the cluster's server.crt (localhost, 127.0.0.1)
    for host in ("127.0.0.1", "localhost"):
        uri = "postgresql://app:%s@%s:%d/appdb?sslmode=verify-full&sslrootcert=%s" % (APP_PW, host, p.port,
                                                                                       cluster.ca)
        with psycopg.connect(uri, connect_timeout=20) as c:
            assert c.pgconn.ssl_in_use
            assert who(c) == ("app", True)
        r = psql(uri + "&channel_binding=require", "SELECT current_user")
        assert r.returncode == 0 and r.stdout.strip() == "app", r.stderr
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(p.uri(sslmode="verify-full", extra="sslrootcert=" + pki["ca"]), connect_timeout=20)
    assert "certificate verify failed" in str(ei.value), str(ei.value)
    still_serving(p)


def test_psycopg3_on_tls(scram_proxy, cluster):
    p = scram_proxy({"app": {"password": APP_PW}})
    uri = p.uri(sslmode="verify-full", extra="sslrootcert=%s&channel_binding=require" % cluster.ca)
    with psycopg.connect(uri, connect_timeout=20) as c:
        assert who(c) == ("app", True)
        c.execute("CREATE TEMP TABLE t (id int, v text)")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, "v%d" % i) for i in range(50)])
        assert c.execute("SELECT count(*), max(v) FROM t WHERE id > %s", (9,)).fetchone() == (40, "v49")
        c.execute("PREPARE q AS SELECT $1::int * 2")
        assert c.execute("EXECUTE q(21)").fetchone() == (42,)
    # async psycopg too
    import asyncio

    async def go():
        async with await psycopg.AsyncConnection.connect(uri, connect_timeout=20) as ac:
            cur = await ac.execute("SELECT current_user")
            return await cur.fetchone()

    assert asyncio.run(go()) == ("app",)


def node(args):
    r = subprocess.run(["node", os.path.join(TOP, "tests", "node", "scram.js"), json.dumps(args)],
                       capture_output=True, text=True, timeout=120, cwd=os.path.join(TOP, "tests", "node"))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_node_postgres_on_tls(scram_proxy, cluster):
    p = scram_proxy({"app": {"password": APP_PW}})
    base = {"host": "127.0.0.1", "port": p.port, "user": "app", "password": APP_PW, "database": "appdb",
            "ca": cluster.ca}
    for cb in (False, True):
        res = node(dict(base, channelBinding=cb))
        assert res == {"ok": True, "user": "app", "answer": 42, "ssl": True}, (cb, res)
    res = node(dict(base, password="not-the-password", channelBinding=True))
    assert not res["ok"] and res["code"] == "28P01", res
    assert res["message"] == 'password authentication failed for user "app"', res
    res = node(dict(base, user="nobody_here", channelBinding=True))
    assert not res["ok"] and res["code"] == "28P01", res
    assert res["message"] == 'password authentication failed for user "nobody_here"', res


def test_wrong_password_and_unknown_user_like_postgres(scram_proxy, cluster):
    p = scram_proxy({"app": {"password": APP_PW}})
    secret = "Wr0ng-S3cret-xyzzy"
    for user in ("app", "nosuchuser"):
        want = 'password authentication failed for user "%s"' % user
        for tls in (True, False):
            got = raw_login(p.port, secret, tls=tls, user=user)
            ref = raw_login(cluster.port, secret, tls=tls, user=user)
            assert not got["ok"] and not ref["ok"]
            assert (ref["error"]["C"], ref["error"]["M"]) == ("28P01", want), ref
            assert (got["error"].get("C"), got["error"].get("M")) == ("28P01", want), (user, tls, got)
            # the unknown user went through a whole exchange, like a known one
            assert got["server_first"] and ",i=4096" in got["server_first"], got
        with pytest.raises(psycopg.OperationalError) as ei:
            psycopg.connect(p.uri(user=user, password=secret, sslmode="require"), connect_timeout=20)
        assert want in str(ei.value), str(ei.value)
        r = psql(p.uri(user=user, password=secret, sslmode="require"), "SELECT 1")
        assert r.returncode != 0 and want in r.stderr, r.stderr
    still_serving(p)
    log = p.log()
    assert secret not in log and APP_PW not in log, "a password in the proxy log"


def test_downgrade_refused_like_postgres(scram_proxy, cluster):
    p = scram_proxy({"app": {"password": APP_PW}})

    def downgrade(r):
        return r.send(sasl_initial(PLAIN, b"y,,n=,r=" + _b64(os.urandom(18)).encode()))

    ref = error_of(cluster.port, downgrade)
    got = error_of(p.port, downgrade)
    assert ref.get("M") == "SCRAM channel binding negotiation error", ref
    assert got.get("M") == "SCRAM channel binding negotiation error", got
    assert got.get("C") == ref.get("C"), (got, ref)  # Postgres: 28000
    # with a complete exchange too (right password): still refused
    res = raw_login(p.port, APP_PW, mech=PLAIN, gs2="y,,")
    assert not res["ok"] and res["error"].get("M") == "SCRAM channel binding negotiation error", res
    # 'y' without TLS is what a client that supports binding says to a server not on TLS: accepted
    res = raw_login(p.port, APP_PW, tls=False, mech=PLAIN, gs2="y,,")
    assert res["ok"] and res["rows"] == [["app"]], res
    # plain SCRAM-SHA-256 with 'n' over TLS (a client without binding support): accepted
    res = raw_login(p.port, APP_PW, tls=True, mech=PLAIN, gs2="n,,")
    assert res["ok"] and res["rows"] == [["app"]], res
    still_serving(p)


def _nonce():
    return _b64(os.urandom(18)).encode()


def _client_final(r, password, build_final):
    """Does a correct client-first (-PLUS on TLS), then sends what
    build_final(server_first, rnonce) returns as the SASLResponse."""
    gs2 = b"p=tls-server-end-point,," if r.tls else b"n,,"
    t, p = r.send(sasl_initial(PLUS if r.tls else PLAIN, gs2 + b"n=,r=" + _nonce()))
    if t != b"R":
        return t, p
    sf = p[4:].decode()
    rnonce = dict(kv.split("=", 1) for kv in sf.split(","))["r"]
    return r.send(pg_msg(b"p", build_final(sf, rnonce, gs2 + r.peer_end_point() if r.tls else gs2)))


MALFORMED = {
    "unknown mechanism": lambda r: r.send(sasl_initial("SCRAM-SHA-1", b"n,,n=,r=" + _nonce())),
    "garbage client-first": lambda r: r.send(sasl_initial(PLUS, b"hello world")),
    "empty client-first attributes": lambda r: r.send(sasl_initial(PLUS, b"p=tls-server-end-point,,")),
    "unsupported channel binding type": lambda r: r.send(sasl_initial(PLUS, b"p=tls-unique,,n=,r=" + _nonce())),
    "PLUS without binding data": lambda r: r.send(sasl_initial(PLUS, b"n,,n=,r=" + _nonce())),
    "plain mechanism with binding data": lambda r: r.send(
        sasl_initial(PLAIN, b"p=tls-server-end-point,,n=,r=" + _nonce())),
    "authorization identity": lambda r: r.send(sasl_initial(PLUS, b"p=tls-server-end-point,a=bob,n=,r=" + _nonce())),
    "mandatory extension": lambda r: r.send(sasl_initial(PLUS, b"p=tls-server-end-point,,m=ext,n=,r=" + _nonce())),
    "non-printable nonce": lambda r: r.send(sasl_initial(PLUS, b"p=tls-server-end-point,,n=,r=ab\x01cd")),
    "not a SASL message": lambda r: r.send(pg_msg(b"Q", b"SELECT 1\0")),
    "final with wrong nonce": lambda r: _client_final(
        r, APP_PW, lambda sf, rn, cb: b"c=" + base64.b64encode(cb) + b",r=" + rn.encode() + b"x,p=" +
        base64.b64encode(b"\0" * 32)),
    "final with bad base64 proof": lambda r: _client_final(
        r, APP_PW, lambda sf, rn, cb: b"c=" + base64.b64encode(cb) + b",r=" + rn.encode() + b",p=!!!notb64"),
    "final with binding of another certificate": lambda r: _client_final(
        r, APP_PW, lambda sf, rn, cb: b"c=" + base64.b64encode(cb[:-1] + b"\0") + b",r=" + rn.encode() + b",p=" +
        base64.b64encode(b"\0" * 32)),
    "final without proof": lambda r: _client_final(
        r, APP_PW, lambda sf, rn, cb: b"c=" + base64.b64encode(cb) + b",r=" + rn.encode()),
    "final garbage": lambda r: _client_final(r, APP_PW, lambda sf, rn, cb: b"\xff\xfe garbage"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_sasl_messages_like_postgres(scram_proxy, cluster, case):
    p = scram_proxy({"app": {"password": APP_PW}})
    build = MALFORMED[case]
    ref = error_of(cluster.port, build)
    got = error_of(p.port, build)
    assert "C" in ref, ("Postgres itself did not answer with an error", ref)
    assert "C" in got, ("no ErrorResponse from the proxy", got)
    assert (got["C"], got["M"]) == (ref["C"], ref["M"]), (got, ref)
    assert APP_PW not in json.dumps(got)
    still_serving(p)


@pytest.mark.parametrize("case", ["declared length beyond the message", "oversized SASLResponse",
                                  "truncated mechanism"])
def test_malformed_sasl_framing(scram_proxy, case):
    p = scram_proxy({"app": {"password": APP_PW}})
    if case == "declared length beyond the message":
        build = lambda r: r.send(sasl_initial(PLUS, b"p=tls-server-end-point,,n=,r=abc", declared=5000))
    elif case == "truncated mechanism":
        build = lambda r: r.send(pg_msg(b"p", b"SCRAM-SHA-256-PL"))
    else:
        def build(r):
            r.sock.sendall(b"p" + struct.pack("!I", 10 * 1024 * 1024) + b"x" * 4096)
            return r.read()
    got = error_of(p.port, build)
    # an ErrorResponse (a closed connection is tolerated only for the oversized message)
    if case == "oversized SASLResponse" and "EOF" in got:
        pass
    else:
        assert got.get("C") in ("08P01", "28000", "28P01"), got
    still_serving(p)
    assert p.proc.poll() is None


def test_users_file_readable_by_others_refused(cluster, tmp_path):
    path = write_users_file(str(tmp_path / "users.json"), {"app": {"password": APP_PW}}, mode=0o644)
    port, admin = free_port(), free_port()
    args = [BIN, "proxy", "--listen", "127.0.0.1:%d" % port, "--admin", "127.0.0.1:%d" % admin,
            "--tls-cert", os.path.join(cluster.tlsdir, "server.crt"),
            "--tls-key", os.path.join(cluster.tlsdir, "server.key"),
            "--auth", "scram", "--users-file", path,
            "--upstream", "postgresql://%s:%d/?sslmode=require" % (cluster.host, cluster.port)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail("the proxy started with a users file of mode 0644")
    assert proc.returncode in (1, 2), (proc.returncode, err)
    assert path in out + err, out + err
    for mark in SANITIZER_MARKS:
        assert mark not in err
    # the same file with 0600 is accepted
    os.chmod(path, 0o600)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, proc=proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_users_file_missing_or_invalid_refused(cluster, tmp_path):
    bad = write_users_file(str(tmp_path / "bad.json"), {"app": "SCRAM-SHA-256$notaverifier"})
    for path in (str(tmp_path / "missing.json"), bad):
        r = subprocess.run([BIN, "proxy", "--listen", "127.0.0.1:%d" % free_port(),
                            "--admin", "127.0.0.1:%d" % free_port(), "--auth", "scram", "--users-file", path,
                            "--upstream", "postgresql://%s:%d/?sslmode=require" % (cluster.host, cluster.port)],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode in (1, 2) and path in r.stderr, (path, r.returncode, r.stderr)


def test_verifier_only_user_client_key_technique(scram_proxy, cluster, vuser, app_verifier):
    # a verifier made by `pgtandem passwd`, set upstream with ALTER/CREATE ROLE ... PASSWORD '<verifier>'
    p = scram_proxy({vuser["user"]: vuser["verifier"], "app": app_verifier})
    uri = p.uri(user=vuser["user"], password=vuser["password"], sslmode="require")
    with psycopg.connect(uri, connect_timeout=20) as c:
        assert who(c) == (vuser["user"], True)
    # pg_authid.rolpassword copied into the users file
    with psycopg.connect(p.uri(sslmode="require", extra="channel_binding=require"), connect_timeout=20) as c:
        assert who(c) == ("app", True)
    # without TLS on the client leg, and through node-postgres
    with psycopg.connect(p.uri(user=vuser["user"], password=vuser["password"]), connect_timeout=20) as c:
        assert who(c)[0] == vuser["user"]
    res = node({"host": "127.0.0.1", "port": p.port, "user": "app", "password": APP_PW, "database": "appdb",
                "ca": cluster.ca, "channelBinding": True})
    assert res.get("ok") and res["user"] == "app", res
    # wrong password for a verifier-only user
    res = raw_login(p.port, "vpass-2", user=vuser["user"])
    assert res["error"] and res["error"].get("C") == "28P01", res
    assert res["error"]["M"] == 'password authentication failed for user "%s"' % vuser["user"]


def test_verifier_only_user_with_a_different_upstream_verifier_fails(scram_proxy, cluster, tmp_path):
    # upstream stores its own salt: the recovered ClientKey cannot log in there
    cluster.psql("DROP ROLE IF EXISTS scramw")
    cluster.psql("CREATE ROLE scramw LOGIN PASSWORD 'wpass'")
    try:
        p = scram_proxy({"scramw": new_verifier(tmp_path, "scramw", "wpass")})
        res = raw_login(p.port, "wpass", user="scramw")
        assert not res["ok"], res
        assert res["error"] and "C" in res["error"], res
        assert "wpass" not in json.dumps(res) and "wpass" not in p.log()
        still_serving_err = raw_login(p.port, "wpass", user="scramw")
        assert not still_serving_err["ok"]
    finally:
        cluster.psql("DROP ROLE IF EXISTS scramw")


def test_password_user_with_a_different_upstream_salt(scram_proxy, cluster, app_verifier):
    p = scram_proxy({"app": {"password": APP_PW}, "md5user": {"password": "md5pass"},
                     "pwuser": {"password": "pwpass"}})
    r = RawScram(p.port)
    res = r.login(APP_PW)
    r.close()
    assert res["ok"] and res["server_sig_ok"], res
    proxy_salt = dict(kv.split("=", 1) for kv in res["server_first"].split(","))["s"]
    upstream_salt = app_verifier.split("$")[1].split(":")[1]
    assert proxy_salt != upstream_salt
    with psycopg.connect(p.uri(sslmode="require"), connect_timeout=20) as c:
        assert who(c) == ("app", True)
    # upstream md5 and cleartext (pg_hba: md5user md5, pwuser password)
    for user, pw in (("md5user", "md5pass"), ("pwuser", "pwpass")):
        with psycopg.connect(p.uri(user=user, password=pw, sslmode="require"), connect_timeout=20) as c:
            assert who(c) == (user, True)
        res = raw_login(p.port, pw + "x", user=user)
        assert res["error"].get("C") == "28P01", res
    # a users-file user whose upstream password differs: the client is told, without secrets
    p2 = scram_proxy({"app": {"password": "not-the-upstream-password"}})
    res = raw_login(p2.port, "not-the-upstream-password")
    assert not res["ok"] and res["error"].get("C"), res
    assert "not-the-upstream-password" not in json.dumps(res) + p2.log()


def test_users_file_reloaded_on_sighup(scram_proxy, tmp_path, vuser):
    p = scram_proxy({"app": {"password": APP_PW}})
    res = raw_login(p.port, vuser["password"], user=vuser["user"])
    assert res["error"].get("C") == "28P01", res
    r = run_pgtandem(["passwd", vuser["user"], "--file", p.users_path], input=vuser["password"] + "\n")
    assert r.returncode == 0, r.stderr
    # passwd wrote a fresh verifier; the upstream needs the same one for a verifier-only user
    with open(p.users_path) as f:
        users = json.load(f)
    users[vuser["user"]] = vuser["verifier"]
    write_users_file(p.users_path, users)
    p.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 20
    while True:
        res = raw_login(p.port, vuser["password"], user=vuser["user"])
        if res["ok"] or time.time() > deadline:
            break
        time.sleep(0.2)
    assert res["ok"] and res["rows"] == [[vuser["user"]]], res
    still_serving(p)
    # a broken file on reload keeps the loaded table
    os.chmod(p.users_path, 0o644)
    p.proc.send_signal(signal.SIGHUP)
    wait_log(p, "(keeping the old users)")
    assert p.proc.poll() is None
    os.chmod(p.users_path, 0o600)
    still_serving(p)


# ---------------------------------------------------------------------------
# 3. the upstream leg

def test_upstream_leg_is_tls(scram_proxy, cluster, app_verifier):
    for users in ({"app": {"password": APP_PW}}, {"app": app_verifier}):
        p = scram_proxy(users, upstream="postgresql://%s:%d/?sslmode=require" % (cluster.host, cluster.port))
        with psycopg.connect(p.uri(sslmode="require"), connect_timeout=20) as c:
            ssl_on, version = c.execute(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            assert ssl_on is True and version.startswith("TLS"), (ssl_on, version)
        p.stop()


@pytest.mark.parametrize("form", ["password", "verifier"])
def test_upstream_uses_scram_plus(scram_proxy, fronts, cluster, app_verifier, form):
    """Postgres does not say which mechanism a session used; a re-encrypting
    middlebox holding Postgres's own certificate and key sees the proxy's
    SASLInitialResponse, and Postgres checks the binding against the same
    certificate, so the login succeeds only if the binding is right."""
    tls = cluster.tlsdir
    front = fronts(os.path.join(tls, "server.crt"), os.path.join(tls, "server.key"), cluster.port, backend_tls=True)
    users = {"app": {"password": APP_PW}} if form == "password" else {"app": app_verifier}
    p = scram_proxy(users, upstream="postgresql://localhost:%d/?sslmode=verify-full&sslrootcert=%s" % (
        front.port, cluster.ca))
    with psycopg.connect(p.uri(sslmode="require"), connect_timeout=20) as c:
        assert who(c) == ("app", True)
    logins = [x for x in front.conns if "startup" in x]
    assert logins, front.conns
    assert all(x.get("sni") == "localhost" for x in logins), logins
    assert all(x.get("sasl_mechanism") == PLUS for x in logins), logins
    assert all(x.get("gs2_header") == "p=tls-server-end-point,," for x in logins), logins


def test_upstream_binding_detects_a_middlebox(scram_proxy, fronts, pki, cluster):
    """A middlebox with a certificate of its own (sslmode=require does not
    verify it): the proxy binds to what it sees, Postgres to its own
    certificate, so the login is refused instead of silently going through."""
    front = fronts(pki["proxy"][0], pki["proxy"][1], cluster.port, backend_tls=True)
    p = scram_proxy({"app": {"password": APP_PW}},
                    upstream="postgresql://127.0.0.1:%d/?sslmode=require" % front.port)
    res = raw_login(p.port, APP_PW)
    assert not res["ok"], res
    logins = [x for x in front.conns if "startup" in x]
    assert logins and all(x.get("sasl_mechanism") == PLUS for x in logins), front.conns
    assert res["error"] and res["error"].get("C"), res


def test_failed_logins_limited_per_address_without_secrets(scram_proxy):
    """Failed attempts are logged without secrets, and the logging is limited
    per client address: a password-guessing loop must not write one log line
    per attempt forever (default log level). Past the limit, failures are
    answered late, but a correct password from the same address still logs in."""
    p = scram_proxy({"app": {"password": APP_PW}})
    secret = "Wr0ng-S3cret-limit"
    attempts = 24
    errors = []
    for i in range(attempts):
        user = "app" if i % 2 else "nosuchuser"
        res = raw_login(p.port, secret, user=user)
        assert not res["ok"], res
        errors.append((user, res["error"]))
    # the first attempts are told exactly what Postgres says; all get an ErrorResponse
    for user, e in errors[:5]:
        assert (e.get("C"), e.get("M")) == ("28P01", 'password authentication failed for user "%s"' % user), e
    assert all("C" in e for _, e in errors), errors
    log = p.log()
    assert secret not in log and APP_PW not in log
    about = [l for l in log.splitlines() if "127.0.0.1:" in l]
    assert any("nosuchuser" in l for l in about) and any('"app"' in l for l in about), about
    assert len(about) <= attempts // 2, "%d log lines for %d failed attempts:\n%s" % (
        len(about), attempts, "\n".join(about[-12:]))
    ok = raw_login(p.port, APP_PW, user="app")
    assert ok["ok"], ok
    assert p.proc.poll() is None


def test_concurrent_logins(scram_proxy, cluster, app_verifier, vuser):
    p = scram_proxy({"app": app_verifier, vuser["user"]: vuser["verifier"]})
    results, lock = [], threading.Lock()

    def one(i):
        user, pw = ("app", APP_PW) if i % 2 else (vuser["user"], vuser["password"])
        try:
            with psycopg.connect(p.uri(user=user, password=pw, sslmode="require"), connect_timeout=30) as c:
                got = c.execute("SELECT current_user, %s::int", (i,)).fetchone()
            ok = got == (user, i)
        except Exception as e:  # reported below
            ok = repr(e)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results.count(True) == 40, [r for r in results if r is not True][:5]


def test_clients_vanishing_mid_exchange(scram_proxy, cluster):
    p = scram_proxy({"app": {"password": APP_PW}})

    def after_startup(r):
        pass

    def after_client_first(r):
        r.send(sasl_initial(PLUS, b"p=tls-server-end-point,,n=,r=" + _nonce()))

    def after_client_final(r):
        # a correct proof: the proxy goes on to log in upstream, the client is gone
        r.sock.settimeout(15)
        mech = PLUS
        nonce = _nonce().decode()
        gs2 = "p=tls-server-end-point,,"
        t, pl = r.send(sasl_initial(mech, (gs2 + "n=,r=" + nonce).encode()))
        sf = pl[4:].decode()
        attrs = dict(kv.split("=", 1) for kv in sf.split(","))
        final_wo = "c=%s,r=%s" % (_b64(gs2.encode() + r.peer_end_point()), attrs["r"])
        salted = hashlib.pbkdf2_hmac("sha256", APP_PW.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        ck = _hmac(salted, b"Client Key")
        am = ("n=,r=%s,%s,%s" % (nonce, sf, final_wo)).encode()
        proof = bytes(a ^ b for a, b in zip(ck, _hmac(hashlib.sha256(ck).digest(), am)))
        r.sock.sendall(pg_msg(b"p", (final_wo + ",p=" + _b64(proof)).encode()))

    def half_message(r):
        r.sock.sendall(sasl_initial(PLUS, b"p=tls-server-end-point,,n=,r=" + _nonce())[:9])

    for step in (after_startup, after_client_first, after_client_final, half_message):
        for _ in range(3):
            r = RawScram(p.port)
            step(r)
            r.close()
    # and a plain TCP client that leaves right after the startup packet
    for _ in range(3):
        RawScram(p.port, tls=False).close()
    assert p.proc.poll() is None
    # no upstream session is left behind for the clients that went away
    deadline = time.time() + 20
    while True:
        n = int(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"))
        if n == 0 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert n == 0, cluster.psql("SELECT pid, state, backend_start FROM pg_stat_activity WHERE usename = 'app'")
    still_serving(p)


def test_mock_exchange_is_stable_for_unknown_users(scram_proxy, cluster):
    """An unknown user's salt and iteration count do not change between
    attempts (as with Postgres's mock), so probing cannot tell unknown users
    from known ones by asking twice."""
    p = scram_proxy({"app": {"password": APP_PW}})

    def server_first(port, user):
        r = RawScram(port, user=user)
        try:
            t, pl = r.send(sasl_initial(PLUS, b"p=tls-server-end-point,,n=,r=" + _nonce()))
            assert t == b"R" and struct.unpack("!I", pl[:4])[0] == 11, (t, pl)
            attrs = dict(kv.split("=", 1) for kv in pl[4:].decode().split(","))
            return attrs["s"], attrs["i"]
        finally:
            r.close()

    for user in ("app", "nosuchuser", "another_unknown"):
        a, b = server_first(p.port, user), server_first(p.port, user)
        assert a == b, (user, a, b)
        assert a[1] == "4096" and len(base64.b64decode(a[0])) == 16, a
    assert server_first(p.port, "nosuchuser") != server_first(p.port, "another_unknown")
    # Postgres does the same
    assert server_first(cluster.port, "nosuchuser") == server_first(cluster.port, "nosuchuser")


def test_auth_settings_from_the_config_file(cluster, tmp_path, fronts, pki, app_verifier):
    front = fronts(pki["wild"][0], pki["wild"][1], cluster.port)
    users = write_users_file(str(tmp_path / "users.json"), {"app": app_verifier})
    port, admin = free_port(), free_port()
    cfg = tmp_path / "pgtandem.json"
    cfg.write_text(json.dumps({
        "listen": "127.0.0.1:%d" % port, "admin": "127.0.0.1:%d" % admin,
        "upstream": front_upstream(front.port, pki["ca"]),
        "tls_cert": os.path.join(cluster.tlsdir, "server.crt"),
        "tls_key": os.path.join(cluster.tlsdir, "server.key"),
        "auth": "scram", "users_file": users, "neon_endpoint": "ep-from-config",
    }))
    log = open(str(tmp_path / "proxy.log"), "w")
    proc = subprocess.Popen([BIN, "proxy", "--config", str(cfg)], stdout=log, stderr=log)
    try:
        wait_port(port, proc=proc)
        with psycopg.connect("postgresql://app:%s@127.0.0.1:%d/appdb?sslmode=require&channel_binding=require"
                             % (APP_PW, port), connect_timeout=20) as c:
            assert c.execute("SELECT current_user").fetchone() == ("app",)
        starts = [x for x in front.conns if "startup" in x]
        assert starts and starts[-1]["endpoints"] == ["ep-from-config"], front.conns
        # the proxy authenticates: a wrong password never reaches the front
        n = len(front.conns)
        res = raw_login(port, "wrong-one")
        assert res["error"].get("C") == "28P01", res
        front.settle()
        assert len(front.conns) == n, front.conns
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# ---------------------------------------------------------------------------
# SASLprep (RFC 4013) as Postgres applies it: a password is hashed in its
# SASLprep form, or as raw bytes when SASLprep refuses it. Cases from
# Postgres's src/test/authentication/t/002_saslprep.pl and RFC 4013.
# (stored password, other spellings that are the same password, spellings
# that are not, whether node-postgres's own SASLprep agrees with Postgres)

SASLPREP_CASES = [
    ("IX-\u2168", ["IX-IX", "I\u00adX-\u2168"], ["ix-ix", "IX-"], True),   # NFKC, soft hyphen
    ("pass\u00adword", ["password"], ["pass-word"], True),               # U+00AD mapped to nothing
    ("no\u00a0break", ["no break", "no\u3000break"], ["nobreak"], True),  # non-ASCII spaces -> space
    ("\ufb01le", ["file"], ["fle"], True),                               # ligature under NFKC
    ("\u00aa-a", ["a-a", "\u00aa-\u00aa"], [], True),                    # RFC 4013 example 4
    ("foo\x07bar", [], ["foobar"], True),                                # prohibited ASCII: raw bytes
    ("foo\u06271bar", [], ["foo1\u0627bar", "foobar"], True),            # bidi failure: raw bytes
    ("caf\u00e9\x07", [], ["caf\u00e9"], True),                          # prohibited, non-ASCII: raw
    ("e\u0340x", [], ["\u00e8x"], False),                                # checked before NFKC: raw
]


def _pg_literal(s):
    """A string literal for any password: U&'' with escapes for everything
    but printable ASCII."""
    return "U&'%s'" % "".join(c if 0x20 <= ord(c) < 0x7f and c not in "'\\" else "\\+%06x" % ord(c) for c in s)


@pytest.fixture(scope="module")
def saslprep_roles(cluster):
    """One role per case, its password set by Postgres itself
    (password_encryption = scram-sha-256: Postgres SASLpreps on its side)."""
    roles = []
    for i, (pw, same, other, node_ok) in enumerate(SASLPREP_CASES):
        role = "saslprep%d" % i
        cluster.psql("DROP ROLE IF EXISTS %s" % role)
        cluster.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE %s LOGIN PASSWORD %s"
                     % (role, _pg_literal(pw)))
        stored = cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = '%s'" % role)
        assert stored.startswith("SCRAM-SHA-256$"), stored
        roles.append({"role": role, "password": pw, "same": same, "other": other, "node": node_ok,
                      "verifier": stored})
    yield roles
    for r in roles:
        cluster.psql("DROP ROLE IF EXISTS %s" % r["role"])


def psql_as(port, role, password):
    uri = "postgresql://%s@127.0.0.1:%d/appdb?sslmode=require" % (role, port)
    return psql(uri, "SELECT current_user", env={"PGPASSWORD": password})


def test_saslprep_password_logs_in_like_postgres(scram_proxy, cluster, saslprep_roles):
    """The users file holds the plain password: the proxy's verifier for the
    client leg and its proof toward Postgres both hash the SASLprep form."""
    p = scram_proxy({r["role"]: {"password": r["password"]} for r in saslprep_roles})
    for r in saslprep_roles:
        # Postgres itself agrees on every spelling (the test's own premise)
        for pw in [r["password"]] + r["same"]:
            direct = psql_as(cluster.port, r["role"], pw)
            assert direct.returncode == 0, (r["role"], pw, direct.stderr)
            got = psql_as(p.port, r["role"], pw)
            assert got.returncode == 0 and got.stdout.strip() == r["role"], (r["role"], repr(pw), got.stderr)
        for pw in r["other"]:
            got = psql_as(p.port, r["role"], pw)
            assert got.returncode != 0 and "password authentication failed" in got.stderr, (r["role"], pw, got)
        if r["node"]:
            for pw in [r["password"]] + r["same"]:
                res = node({"host": "127.0.0.1", "port": p.port, "user": r["role"], "password": pw,
                            "database": "appdb", "ca": cluster.ca, "channelBinding": True})
                assert res.get("ok") and res["user"] == r["role"], (r["role"], repr(pw), res)
    log = p.log()
    assert not [r["role"] for r in saslprep_roles if r["password"] in log]


def test_saslprep_password_agrees_with_postgres_verifier(scram_proxy, saslprep_roles):
    """Password and pg_authid's verifier side by side: the proxy checks at
    load that the password hashes to the verifier, which holds only when it
    prepares the password exactly as Postgres did."""
    p = scram_proxy({r["role"]: {"password": r["password"], "verifier": r["verifier"]} for r in saslprep_roles})
    for r in saslprep_roles:
        got = psql_as(p.port, r["role"], r["password"])
        assert got.returncode == 0 and got.stdout.strip() == r["role"], (r["role"], got.stderr)


def test_saslprep_passwd_stores_what_postgres_would(scram_proxy, cluster, tmp_path):
    """`pgtandem passwd` hashes the SASLprep form: Postgres accepts its
    verifier for every spelling of the password, and so does the proxy
    (ClientKey technique, the same verifier on both sides)."""
    cases = [c for c in SASLPREP_CASES if c[0] in ("IX-\u2168", "pass\u00adword", "e\u0340x", "foo\u06271bar")]
    users = {}
    try:
        for i, (pw, same, other, _) in enumerate(cases):
            role = "saslpasswd%d" % i
            v = new_verifier(tmp_path, role, pw)
            cluster.psql("DROP ROLE IF EXISTS %s" % role)
            cluster.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (role, v))
            users[role] = (v, pw, same, other)
        p = scram_proxy({role: v for role, (v, _, _, _) in users.items()})
        for role, (v, pw, same, other) in users.items():
            for spelling in [pw] + same:
                direct = psql_as(cluster.port, role, spelling)
                assert direct.returncode == 0, (role, repr(spelling), direct.stderr)
                got = psql_as(p.port, role, spelling)
                assert got.returncode == 0 and got.stdout.strip() == role, (role, repr(spelling), got.stderr)
            for spelling in other:
                assert psql_as(cluster.port, role, spelling).returncode != 0, (role, spelling)
                assert psql_as(p.port, role, spelling).returncode != 0, (role, spelling)
    finally:
        for role in users:
            cluster.psql("DROP ROLE IF EXISTS %s" % role)
