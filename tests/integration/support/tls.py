"""TLS for tests: a private CA and certificates, users files for auth
`scram`, and TlsFront, a Neon-like TLS edge in front of Postgres that records
what it sees (SNI, startup parameters, SASL) and relays to Postgres; with
stop_thread_front, which stops it and the other thread-per-connection fronts."""
import json
import os
import select
import socket
import ssl
import struct
import subprocess

from .front import ThreadFront
from .wire import SSL_REQUEST, parse_startup, recv_exact

__all__ = ["make_test_ca", "make_cert", "write_users_file", "TlsFront"]


def make_test_ca(d, cn="pgtandem test front CA"):
    """A private CA in directory d; returns (ca.crt, ca.key)."""
    crt, key = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=" + cn, "-keyout", key, "-out", crt], check=True, capture_output=True)
    return crt, key


def make_cert(d, name, ca, sans):
    """A certificate for `sans` (e.g. ["DNS:*.pgtandem.test"]) signed by ca =
    (crt, key); returns (name.crt, name.key)."""
    crt, key, csr = (os.path.join(d, name + ext) for ext in (".crt", ".key", ".csr"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n" % ",".join(sans))
    cn = sans[0].split(":", 1)[1]
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn,
                    "-keyout", key, "-out", csr], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                    "-days", "2", "-extfile", ext, "-out", crt], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return crt, key


def write_users_file(path, users, mode=0o600):
    """Writes a users file ({name: verifier or {"password": ...}}) with `mode`."""
    if os.path.exists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(users, f)
    os.chmod(path, mode)
    return path


class TlsFront(ThreadFront):
    """A Neon-like edge in front of Postgres: answers SSLRequest with 'S',
    completes TLS with its own certificate, records the SNI server name of
    every connection (connections without TLS are refused and recorded), the
    startup parameters, the endpoint id taken out of `options` (as Neon's
    proxy does), and the client's SASLInitialResponse (mechanism and gs2
    header). Then relays bytes to Postgres at backend_port, over plain TCP or,
    with backend_tls, over TLS (a re-encrypting middlebox)."""

    name = "tlsfront"

    def __init__(self, certfile, keyfile, backend_port, backend_tls=False):
        self.backend_port = backend_port
        self.backend_tls = backend_tls
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.ctx.sni_callback = self._sni
        self.conns = []       # one dict per accepted connection
        self._tls_sni = {}
        super().__init__()

    def _sni(self, sslobj, name, _ctx):
        self._tls_sni[id(sslobj)] = name

    def snis(self):
        """SNI of every connection that got as far as a TLS handshake."""
        self.settle()
        with self.lock:
            return [c.get("sni") for c in self.conns if c.get("tls") or "handshake_error" in c]

    def _accepted(self, conn):
        rec = {"tls": False}
        with self.lock:
            self.conns.append(rec)
        return (rec,)

    def _serve(self, conn, opened, rec):
        conn.settimeout(30)
        first = recv_exact(conn, 8)
        if first != SSL_REQUEST:
            rec["refused"] = "no SSLRequest: %r" % (first,)
            return
        conn.sendall(b"S")
        tconn = self._track(self.ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), opened)
        try:
            tconn.do_handshake()
        except (ssl.SSLError, OSError) as e:
            rec["handshake_error"] = repr(e)
            return
        finally:
            # the callback is called with the SSLSocket; no entry: no SNI sent
            rec["sni"] = self._tls_sni.pop(id(tconn), None)
        rec["tls"] = True
        hdr = recv_exact(tconn, 4)
        if hdr is None:
            return
        n = struct.unpack("!I", hdr)[0]
        body = recv_exact(tconn, n - 4)
        code, params = parse_startup(body)
        rec["code"] = code
        if code == 196608:
            opts = params.get("options", "").split()
            eps = [o[len("endpoint="):] for o in opts if o.startswith("endpoint=")]
            rec["startup"] = dict(params)
            rec["endpoints"] = eps
            rest = [o for o in opts if not o.startswith("endpoint=")]
            if rest:
                params["options"] = " ".join(rest)
            else:
                params.pop("options", None)
            nb = struct.pack("!I", 196608)
            for k, v in params.items():
                nb += k.encode() + b"\0" + v.encode() + b"\0"
            nb += b"\0"
            startup = struct.pack("!I", len(nb) + 4) + nb
        else:
            startup = hdr + body
        back = socket.create_connection(("127.0.0.1", self.backend_port), timeout=30)
        self._track(back, opened)
        if self.backend_tls:
            back.sendall(SSL_REQUEST)
            if back.recv(1) != b"S":
                rec["backend_error"] = "backend refused TLS"
                return
            bctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            bctx.check_hostname = False
            bctx.verify_mode = ssl.CERT_NONE
            back = self._track(bctx.wrap_socket(back, server_hostname="localhost"), opened)
        back.sendall(startup)
        self._relay(tconn, back, rec)

    def _relay(self, client, back, rec):
        cbuf = b""
        for s in (client, back):
            s.settimeout(30)
        while not self._stop.is_set():
            ready = [s for s in (client, back) if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select([client, back], [], [], 0.2)
            for s in ready:
                try:
                    data = s.recv(65536)
                except (ssl.SSLError, OSError):
                    return
                if not data:
                    return
                if s is client:
                    if "sasl_mechanism" not in rec:
                        cbuf += data
                        while len(cbuf) >= 5:
                            ln = struct.unpack("!I", cbuf[1:5])[0]
                            if len(cbuf) < 1 + ln:
                                break
                            t, payload, cbuf = cbuf[0:1], cbuf[5:1 + ln], cbuf[1 + ln:]
                            if t == b"p" and "sasl_mechanism" not in rec:
                                mech, _, rest = payload.partition(b"\0")
                                data_len = struct.unpack("!i", rest[:4])[0]
                                first = rest[4:4 + data_len] if data_len > 0 else b""
                                rec["sasl_mechanism"] = mech.decode(errors="replace")
                                rec["gs2_header"] = b",".join(first.split(b",")[:2]).decode(errors="replace") + ","
                                cbuf = b""
                                break
                    back.sendall(data)
                else:
                    client.sendall(data)

