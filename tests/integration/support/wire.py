"""The PostgreSQL wire protocol spoken by hand, for tests that must see or
send exact bytes: startup packets, reading messages and error fields, a
trust or SCRAM login, simple queries, an SSLRequest and a TLS socket."""
import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
import time

__all__ = ["SSL_REQUEST", "CANCEL_CODE", "pg_startup_packet", "recv_exact", "parse_startup", "pg_read_message",
           "pg_error_fields", "assert_terminated_on_the_wire", "pg_read_until", "scram_exchange", "pg_login",
           "pg_raw_session", "login_with_key", "start_query", "pg_simple_query", "query_outcome", "pg_tls_socket",
           "u32"]

SSL_REQUEST = struct.pack("!II", 8, 80877103)


CANCEL_CODE = 80877102


def pg_startup_packet(user, database="appdb", **params):
    body = struct.pack("!I", 196608)
    for k, v in [("user", user), ("database", database)] + sorted(params.items()):
        body += k.encode() + b"\0" + str(v).encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def recv_exact(sock, n):
    """Exactly n bytes from sock, or None at EOF."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def parse_startup(body):
    """Startup packet body (after the length) -> (code, {param: value})."""
    code = struct.unpack("!I", body[:4])[0]
    params = {}
    if code == 196608:
        parts = body[4:].split(b"\0")
        for i in range(0, len(parts) - 1, 2):
            if not parts[i]:
                break
            params[parts[i].decode()] = parts[i + 1].decode()
    return code, params


def pg_read_message(sock):
    """Reads one backend message: (type, payload), or (None, None) at EOF."""
    hdr = recv_exact(sock, 5)
    if hdr is None:
        return None, None
    length = struct.unpack("!I", hdr[1:5])[0]
    payload = recv_exact(sock, length - 4) if length > 4 else b""
    if payload is None:
        return None, None
    return hdr[0:1], payload


def pg_error_fields(payload):
    """ErrorResponse/NoticeResponse payload -> {'C': sqlstate, 'M': message, ...}."""
    out = {}
    for part in payload.split(b"\0"):
        if part:
            out[part[0:1].decode()] = part[1:].decode(errors="replace")
    return out


def assert_terminated_on_the_wire(sock, timeout=5.0):
    """The next message is Postgres's FATAL 57P01 (a terminated backend:
    pg_terminate_backend, a Neon compute suspended), then the end."""
    from neonfront import TERMINATED_MSG
    sock.settimeout(timeout)
    t, p = pg_read_message(sock)
    assert t == b"E", (t, p)
    f = pg_error_fields(p)
    assert (f["S"], f["C"], f["M"]) == ("FATAL", "57P01", TERMINATED_MSG), f
    assert pg_read_message(sock) == (None, None)


def pg_read_until(sock, types=(b"Z",), timeout=10.0):
    """Reads messages until one whose type is in `types`, an ErrorResponse, or
    EOF. Returns the list of (type, payload) read; EOF appears as (None, None)."""
    sock.settimeout(timeout)
    msgs = []
    while True:
        t, p = pg_read_message(sock)
        msgs.append((t, p))
        if t is None or t in types or t == b"E":
            return msgs


def scram_exchange(sock, password):
    """Answers AuthenticationSASL with SCRAM-SHA-256 (no channel binding)."""
    first_bare = "n=,r=" + base64.b64encode(secrets.token_bytes(18)).decode()
    data, mech = ("n,," + first_bare).encode(), b"SCRAM-SHA-256\0"
    sock.sendall(b"p" + struct.pack("!I", 8 + len(mech) + len(data)) + mech + struct.pack("!I", len(data)) + data)
    t, p = pg_read_message(sock)
    if t != b"R" or struct.unpack("!I", p[:4])[0] != 11:
        raise RuntimeError("no SASL continue: %r" % ((t, p),))
    server_first = p[4:].decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = "c=biws,r=" + attrs["r"]
    auth_message = ",".join([first_bare, server_first, without_proof]).encode()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    final = (without_proof + ",p=" + proof).encode()
    sock.sendall(b"p" + struct.pack("!I", 4 + len(final)) + final)


def pg_login(sock, user="trustuser", database="appdb", password=None, timeout=10.0, **params):
    """Sends the startup packet and logs in (trust, or SCRAM with password);
    returns the messages up to ReadyForQuery or the first ErrorResponse."""
    sock.sendall(pg_startup_packet(user, database, **params))
    sock.settimeout(timeout)
    msgs = []
    while True:
        t, p = pg_read_message(sock)
        msgs.append((t, p))
        if t is None or t in (b"Z", b"E"):
            return msgs
        if t == b"R" and struct.unpack("!I", p[:4])[0] == 10:
            if password is None:
                raise RuntimeError("the server asks for SCRAM and no password was given")
            scram_exchange(sock, password)


def pg_raw_session(port, user="trustuser", database="appdb", host="127.0.0.1", timeout=10.0, password=None,
                   **params):
    """A socket logged in (trust, or SCRAM with password; no TLS) and ready
    for query; raises on error."""
    s = socket.create_connection((host, port), timeout=timeout)
    msgs = pg_login(s, user, database, password, timeout, **params)
    t, p = msgs[-1]
    if t != b"Z":
        s.close()
        raise RuntimeError("login failed: %r" % (pg_error_fields(p) if t == b"E" else msgs[-3:]))
    return s


def login_with_key(port, user="trustuser", database="appdb"):
    """A raw session (trust auth, no TLS) ready for query, and its
    BackendKeyData: (socket, pid, key)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(pg_startup_packet(user, database))
    msgs = pg_read_until(s)
    assert msgs[-1][0] == b"Z", msgs[-3:]
    keys = [p for t, p in msgs if t == b"K"]
    assert len(keys) == 1, msgs
    pid, key = struct.unpack("!II", keys[0])
    return s, pid, key


def start_query(sock, sql):
    """Sends a simple Query and reads nothing (to cancel it, or to read later)."""
    body = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)


def u32(pid):
    """libpq's PQbackendPID is a C int: a pid >= 2^31 comes back negative."""
    return pid & 0xFFFFFFFF


def pg_simple_query(sock, sql, timeout=10.0):
    """Sends a simple Query; returns (rows as lists of str/None, error fields or None)."""
    body = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
    rows, err = [], None
    sock.settimeout(timeout)
    while True:
        t, p = pg_read_message(sock)
        if t is None:
            raise RuntimeError("connection closed during query")
        if t == b"D":
            n = struct.unpack("!H", p[:2])[0]
            off, row = 2, []
            for _ in range(n):
                ln = struct.unpack("!i", p[off:off + 4])[0]
                off += 4
                if ln < 0:
                    row.append(None)
                else:
                    row.append(p[off:off + ln].decode())
                    off += ln
            rows.append(row)
        elif t == b"E":
            err = pg_error_fields(p)
        elif t == b"Z":
            return rows, err


def query_outcome(sock, sql, timeout):
    """Sends a simple Query; returns ("ok", None) at ReadyForQuery,
    ("error", fields) for an ErrorResponse or ("closed", None) when the
    server closed the session, and the seconds it took."""
    t0 = time.time()
    body = sql.encode() + b"\0"
    sock.sendall(b"Q" + struct.pack("!I", len(body) + 4) + body)
    sock.settimeout(timeout)
    while True:
        t, payload = pg_read_message(sock)
        if t is None:
            return "closed", None, time.time() - t0
        if t == b"E":
            return "error", pg_error_fields(payload), time.time() - t0
        if t == b"Z":
            return "ok", None, time.time() - t0


def pg_tls_socket(port, host="127.0.0.1", server_hostname=None, timeout=10.0):
    """SSLRequest + TLS handshake without verification; returns the SSL socket."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(SSL_REQUEST)
    ans = s.recv(1)
    if ans != b"S":
        s.close()
        raise RuntimeError("server answered %r to SSLRequest" % ans)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(s, server_hostname=server_hostname)

