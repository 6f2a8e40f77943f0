"""Pass-through authentication: SCRAM, md5, cleartext and trust through the
relay; wrong passwords fail exactly as they do directly; SCRAM-SHA-256-PLUS
is not offered to clients whose TLS ends at the proxy, and the client
settings that work in that case."""
import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct

import psycopg
import pytest

from support import pg_error_fields, pg_read_message, pg_startup_packet


def _send(sock, t, body):
    sock.sendall(t + struct.pack("!I", len(body) + 4) + body)


def raw_login(port, user, password, database="appdb", tls=False, ca=None):
    """Logs in speaking the protocol by hand. Returns a dict: auth (the first
    Authentication request code), mechanisms (for SASL), and either ok=True
    or error=<ErrorResponse fields>."""
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    out = {"auth": None, "mechanisms": None}
    try:
        if tls:
            s.sendall(struct.pack("!II", 8, 80877103))
            assert s.recv(1) == b"S"
            ctx = ssl.create_default_context(cafile=ca)
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(pg_startup_packet(user, database))
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = "n=,r=" + nonce
        salted = auth_msg = None
        while True:
            t, p = pg_read_message(s)
            if t is None:
                out["error"] = {"eof": True}
                return out
            if t == b"E":
                out["error"] = pg_error_fields(p)
                return out
            if t == b"Z":
                out["ok"] = True
                return out
            if t != b"R":
                continue
            code = struct.unpack("!I", p[:4])[0]
            if out["auth"] is None:
                out["auth"] = code
            if code == 0:
                continue
            if code == 3:  # cleartext
                _send(s, b"p", password.encode() + b"\0")
            elif code == 5:  # md5
                inner = hashlib.md5((password + user).encode()).hexdigest()
                _send(s, b"p", b"md5" + hashlib.md5(inner.encode() + p[4:8]).hexdigest().encode() + b"\0")
            elif code == 10:  # SASL: mechanism list
                mechs = [m.decode() for m in p[4:].split(b"\0") if m]
                out["mechanisms"] = mechs
                data = ("n,," + first_bare).encode()
                _send(s, b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(data)) + data)
            elif code == 11:  # SASL continue: server-first
                server_first = p[4:].decode()
                attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
                salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                             int(attrs["i"]))
                final_wo_proof = "c=biws,r=" + attrs["r"]
                auth_msg = ",".join([first_bare, server_first, final_wo_proof]).encode()
                client_key = hmac.new(salted, b"Client Key", "sha256").digest()
                stored = hashlib.sha256(client_key).digest()
                sig = hmac.new(stored, auth_msg, "sha256").digest()
                proof = bytes(a ^ b for a, b in zip(client_key, sig))
                _send(s, b"p", (final_wo_proof + ",p=" + base64.b64encode(proof).decode()).encode())
            elif code == 12:  # SASL final: verify the server signature
                server_key = hmac.new(salted, b"Server Key", "sha256").digest()
                want = base64.b64encode(hmac.new(server_key, auth_msg, "sha256").digest()).decode()
                assert p[4:].decode() == "v=" + want, "server signature mismatch"
            else:
                raise AssertionError("unexpected auth request %d" % code)
    finally:
        s.close()


USERS = [("app", "apppass", 10), ("md5user", "md5pass", 5), ("pwuser", "pwpass", 3), ("trustuser", "", 0)]


@pytest.mark.parametrize("user,password,auth", USERS, ids=[u[0] for u in USERS])
def test_auth_methods_pass_through(relay, cluster, user, password, auth):
    via = raw_login(relay.port, user, password)
    assert via.get("ok"), via
    assert via["auth"] == auth, via
    direct = raw_login(cluster.port, user, password)
    assert direct.get("ok") and direct["auth"] == auth, direct
    with psycopg.connect(relay.uri(user=user, password=password)) as c:
        assert c.execute("SELECT current_user").fetchone() == (user,)


@pytest.mark.parametrize("user", ["app", "md5user", "pwuser"])
def test_wrong_password_rejected_like_directly(relay, cluster, user):
    via = raw_login(relay.port, user, "wrong-password")
    direct = raw_login(cluster.port, user, "wrong-password")
    assert "error" in via and "error" in direct, (via, direct)
    assert direct["error"]["C"] == "28P01"
    for k in ("S", "C", "M"):
        assert via["error"].get(k) == direct["error"].get(k), (k, via, direct)
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(relay.uri(user=user, password="wrong-password"))
    assert 'password authentication failed for user "%s"' % user in str(e.value)


def test_unknown_user_and_database_like_directly(relay, cluster):
    for user, db in (("nosuchuser", "appdb"), ("app", "nosuchdb")):
        via = raw_login(relay.port, user, "apppass", database=db)
        direct = raw_login(cluster.port, user, "apppass", database=db)
        assert "error" in direct
        assert {k: via.get("error", {}).get(k) for k in "SCM"} == {k: direct["error"].get(k) for k in "SCM"}


def test_scram_plus_not_offered_over_client_tls(proxy, cluster):
    r = raw_login(proxy.port, "app", "apppass", tls=True, ca=cluster.ca)
    assert r.get("ok"), r
    assert r["mechanisms"] == ["SCRAM-SHA-256"], r
    plain = raw_login(proxy.port, "app", "apppass")
    assert plain.get("ok") and "SCRAM-SHA-256" in plain["mechanisms"], plain


def test_channel_binding_settings(proxy, cluster):
    # libpq's default channel_binding=prefer over TLS sends the 'y' flag, which
    # the TLS upstream refuses: the error names channel binding.
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(proxy.uri(sslmode="require"))
    assert "channel binding" in str(e.value).lower(), str(e.value)
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(proxy.uri(sslmode="require", extra="channel_binding=require"))
    assert "channel binding" in str(e.value).lower(), str(e.value)
    # the settings that work
    for sslmode, extra in (("require", "channel_binding=disable"), ("disable", ""),
                           ("verify-full", "channel_binding=disable&sslrootcert=" + cluster.ca)):
        with psycopg.connect(proxy.uri(sslmode=sslmode, extra=extra)) as c:
            assert c.execute("SELECT current_user").fetchone() == ("app",)
            assert c.pgconn.ssl_in_use == (sslmode != "disable")
    # md5 and cleartext are unaffected by channel binding
    for user, pw in (("md5user", "md5pass"), ("pwuser", "pwpass")):
        with psycopg.connect(proxy.uri(user=user, password=pw, sslmode="require")) as c:
            assert c.execute("SELECT current_user").fetchone() == (user,)
