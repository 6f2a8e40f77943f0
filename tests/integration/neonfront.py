"""A Neon-like proxy in front of the test cluster, behaving as Neon's proxy
does where pgtandem can tell the difference:

- TLS is required (SSLRequest, then a handshake with the front's own
  certificate); a plain startup is refused. The endpoint id is the first DNS
  label of the SNI server name or `endpoint=<id>` in the startup `options`
  (taken out before the packet goes on); without either the front answers
  as Neon does, "Endpoint ID is not specified. ...", with SQLSTATE XX000
  (Neon's proxy sends its errors with the internal-error code) and closes.
- Authentication is relayed untouched, SCRAM end to end, except that
  SCRAM-SHA-256-PLUS is taken out of AuthenticationSASL: the client's TLS
  session ends at the front, so channel binding to the backend's certificate
  could never verify. Neon's proxy reaches the compute over plain TCP (the
  default here), where Postgres offers no PLUS and nothing changes. With
  backend_tls=True Postgres does support channel binding, and a client that
  could bind but is not offered PLUS says so ("y,,") and is refused by
  Postgres' downgrade check; such clients need channel_binding=disable
  (Neon avoids this by running SCRAM with the client itself, which a relay
  that does not know the verifier cannot do).
- BackendKeyData is rewritten with a random 32-bit pid and secret key (about
  half of the pids >= 2^31; high_pids=True makes every pid >= 2^31,
  low_pids=True every pid < 2^31). A
  CancelRequest naming a key the front handed out is sent to Postgres with
  the real backend's pid and key; the client's connection is closed once
  Postgres has closed its own, as Postgres does (cancel_delay_ms later:
  a slow cancel path). Unknown keys are ignored.
- suspend(): every relayed backend is ended with pg_terminate_backend (so
  Postgres itself sends FATAL 57P01 "terminating connection due to
  administrator command", as when a compute shuts down); a connection still
  left gets the same FATAL from the front at a message boundary. Until the
  compute wakes up (refuse_ms later, or wake()) new connections are refused
  with "Couldn't connect to compute node" (mode "refuse") or held until the
  wake-up (mode "delay", a cold start).
- max_connections=N: connection N+1 gets FATAL 53300 "too many connections".
- When a connection ends, the front sends close_notify and closes TCP at
  once, as Neon's proxy and Postgres do; linger_close=True waits for the
  peer's close_notify instead (asyncio's default, and some middleboxes').

It runs one asyncio loop in one thread: no thread per connection, no polling,
hundreds of connections. Backend messages are framed by their 1+4 byte
header as they stream through (a message may span any number of reads); only
the small messages of the login phase are ever held whole."""
import asyncio
import secrets
import socket
import ssl
import struct
import threading
import time

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_CODE = 80877102
PROTOCOL_3 = 196608
MAX_STARTUP = 10000          # as Postgres: a bigger startup packet is refused
MAX_LOGIN_MESSAGE = 1 << 20  # login-phase messages are small by nature
READ_CHUNK = 65536

NO_ENDPOINT_MSG = ("Endpoint ID is not specified. Either please upgrade the postgres client library (libpq) for "
                   "SNI support or pass the endpoint ID (first part of the domain name) as a parameter: "
                   "'?options=endpoint%3D<endpoint-id>'. See more at https://neon.tech/sni")
INSECURE_MSG = "connection is insecure (try using `sslmode=require`)"
COMPUTE_DOWN_MSG = "Couldn't connect to compute node"
TOO_MANY_MSG = "too many connections"
TERMINATED_MSG = "terminating connection due to administrator command"


def error_response(severity, sqlstate, message):
    body = b""
    for code, value in (("S", severity), ("V", severity), ("C", sqlstate), ("M", message)):
        body += code.encode() + value.encode() + b"\0"
    body += b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def parse_startup_params(body):
    """Startup body after the protocol code -> ordered list of (key, value)."""
    parts = body.split(b"\0")
    out = []
    for i in range(0, len(parts) - 1, 2):
        if not parts[i]:
            break
        out.append((parts[i].decode(errors="replace"), parts[i + 1].decode(errors="replace")))
    return out


def build_startup(params):
    body = struct.pack("!I", PROTOCOL_3)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def take_endpoint_option(options):
    """Splits `options` (space separated, as libpq sends it) into the
    endpoint id(s) and the rest. Neon also accepts `project=`."""
    eps, rest = [], []
    for o in options.split():
        for prefix in ("endpoint=", "project="):
            if o.startswith(prefix):
                eps.append(o[len(prefix):])
                break
        else:
            rest.append(o)
    return eps, " ".join(rest)


def strip_scram_plus(payload):
    """AuthenticationSASL payload (after the 4-byte code) without
    SCRAM-SHA-256-PLUS."""
    mechs = [m for m in payload.split(b"\0") if m]
    kept = [m for m in mechs if not m.endswith(b"-PLUS")]
    return b"".join(m + b"\0" for m in kept) + b"\0"


class Conn:
    """What the front knows about one client connection."""

    def __init__(self, cid):
        self.id = cid
        self.sni = None
        self.tls = False
        self.endpoint = None
        self.startup = None          # client's startup params (dict), as received
        self.refused = None          # (sqlstate, message) when the front refused it
        self.cancel = None           # (pid, key) of a CancelRequest, and its outcome
        self.cancel_result = None
        self.fake_pid = self.fake_key = None
        self.real_pid = self.real_key = None
        self.sasl_offered = None     # mechanisms Postgres offered, before stripping
        self.sasl_sent = None        # mechanisms the client was offered
        self.ready = False           # the first ReadyForQuery went through
        self.closed = False
        self.ended_by = None         # "client", "backend", "suspend", "stop"
        self.client_writer = None
        self.back_writer = None
        self.at_boundary = True      # backend->client stream between messages
        self.kill = False            # inject FATAL 57P01 at the next boundary
        self.counted = False         # counts against max_connections

    def as_dict(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("client_writer", "back_writer")}


class NeonFront:
    """See the module comment. backend_port: Postgres; backend_tls: reach
    it over TLS; super_uri: a superuser URI for pg_terminate_backend in
    suspend() (without it the front closes the backend sockets itself)."""

    def __init__(self, certfile, keyfile, backend_port, backend_host="127.0.0.1", backend_tls=False,
                 high_pids=False, low_pids=False, max_connections=None, super_uri=None, host="127.0.0.1",
                 linger_close=False, cancel_delay_ms=0):
        self.backend_host = backend_host
        self.backend_port = backend_port
        self.backend_tls = backend_tls
        self.high_pids = high_pids
        self.low_pids = low_pids  # every pid < 2^31 (to test one thing at a time)
        self.max_connections = max_connections
        self.super_uri = super_uri
        self.linger_close = linger_close
        self.cancel_delay_ms = cancel_delay_ms
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.ctx.sni_callback = self._sni
        self.bctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.bctx.check_hostname = False
        self.bctx.verify_mode = ssl.CERT_NONE
        self.lock = threading.Lock()
        self.conns = []              # every Conn, in accept order
        self.keys = {}               # (fake pid, fake key) -> Conn
        self.errors = []
        self.cancels = []            # (pid, key, forwarded: bool)
        self._next_id = 0
        self._active = 0             # connections counted against max_connections
        self._wake_at = None         # monotonic time the compute is up again
        self._suspend_mode = "refuse"
        self._tasks = set()
        self.loop = asyncio.new_event_loop()
        self._server = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, started), name="neonfront", daemon=True)
        self._thread.start()
        if not started.wait(10) or self._server is None:
            raise RuntimeError("neon front did not start: %r" % self.errors)
        self.port = self._server.sockets[0].getsockname()[1]

    # ---- loop thread ------------------------------------------------------

    def _run(self, host, started):
        asyncio.set_event_loop(self.loop)
        try:
            self._server = self.loop.run_until_complete(
                asyncio.start_server(self._accepted, host, 0, backlog=1024, limit=READ_CHUNK))
        except Exception as e:
            self.errors.append(repr(e))
            started.set()
            return
        started.set()
        self.loop.run_forever()
        self.loop.close()

    @staticmethod
    def _sni(sslobj, name, _ctx):
        # called during the handshake with the connection's SSLObject
        sslobj.pgt_sni = name

    def _new_conn(self):
        with self.lock:
            self._next_id += 1
            c = Conn(self._next_id)
            self.conns.append(c)
        return c

    async def _accepted(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        c = self._new_conn()
        c.client_writer = writer
        try:
            await self._serve(c, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            c.ended_by = c.ended_by or "stop"
        except Exception as e:  # a bug in the front: recorded for the test to see
            with self.lock:
                self.errors.append("conn %d: %r" % (c.id, e))
        finally:
            await self._close(c)
            with self.lock:
                if c.counted:
                    self._active -= 1
                if c.fake_pid is not None:
                    self.keys.pop((c.fake_pid, c.fake_key), None)
                c.closed = True
            self._tasks.discard(task)

    async def _close(self, c):
        # TLS: close_notify, then the TCP connection goes too, without
        # waiting for the peer's close_notify (as Neon's proxy and Postgres
        # do); with linger_close, it waits for it as asyncio does by default
        for w in (c.back_writer, c.client_writer):
            if w is None:
                continue
            w.close()
            if await self._closed_within(w, 30 if self.linger_close else 0.05):
                continue
            try:  # FIN after the close_notify: the peer sees the end now
                w.get_extra_info("socket").shutdown(socket.SHUT_WR)
            except (OSError, AttributeError):
                pass
            if not await self._closed_within(w, 2):
                w.transport.abort()

    @staticmethod
    async def _closed_within(w, seconds):
        try:
            await asyncio.wait_for(w.wait_closed(), seconds)
            return True
        except (asyncio.TimeoutError, ConnectionError, OSError, ssl.SSLError):
            return False

    async def _refuse(self, c, writer, severity, sqlstate, message):
        c.refused = (sqlstate, message)
        writer.write(error_response(severity, sqlstate, message))
        await writer.drain()

    async def _read_packet(self, reader):
        hdr = await reader.readexactly(4)
        n = struct.unpack("!I", hdr)[0]
        if n < 8 or n > MAX_STARTUP:
            raise ConnectionError("bad startup packet length %d" % n)
        return await reader.readexactly(n - 4)

    async def _serve(self, c, reader, writer):
        body = await asyncio.wait_for(self._read_packet(reader), 30)
        code = struct.unpack("!I", body[:4])[0]
        if code == GSSENC_REQUEST_CODE:
            writer.write(b"N")
            await writer.drain()
            body = await asyncio.wait_for(self._read_packet(reader), 30)
            code = struct.unpack("!I", body[:4])[0]
        if code == SSL_REQUEST_CODE:
            writer.write(b"S")
            await writer.drain()
            await asyncio.wait_for(writer.start_tls(self.ctx), 30)
            sslobj = writer.get_extra_info("ssl_object")
            c.sni = getattr(sslobj, "pgt_sni", None)  # none: the client sent no SNI
            c.tls = True
            body = await asyncio.wait_for(self._read_packet(reader), 30)
            code = struct.unpack("!I", body[:4])[0]
        if code == CANCEL_CODE:
            await self._cancel(c, body)
            return
        if code != PROTOCOL_3:
            await self._refuse(c, writer, "FATAL", "08P01", "unsupported startup code %d" % code)
            return
        params = parse_startup_params(body[4:])
        c.startup = dict(params)
        if not c.tls:
            await self._refuse(c, writer, "ERROR", "XX000", INSECURE_MSG)
            return
        eps, rest = take_endpoint_option(c.startup.get("options", ""))
        sni_ep = c.sni.split(".")[0] if c.sni else None
        if eps and sni_ep and eps[0] != sni_ep:
            await self._refuse(c, writer, "ERROR", "XX000",
                               "Inconsistent project name inferred from SNI ('%s') and project option ('%s')"
                               % (sni_ep, eps[0]))
            return
        c.endpoint = eps[0] if eps else sni_ep
        if not c.endpoint:
            await self._refuse(c, writer, "ERROR", "XX000", NO_ENDPOINT_MSG)
            return
        params = [(k, rest if k == "options" else v) for k, v in params if k != "options" or rest]
        with self.lock:
            over = self.max_connections is not None and self._active >= self.max_connections
            if not over:
                self._active += 1
                c.counted = True
        if over:
            await self._refuse(c, writer, "FATAL", "53300", TOO_MANY_MSG)
            return
        await self._relay(c, reader, writer, build_startup(params))

    async def _wait_compute(self, c, writer):
        """While suspended: refuse, or hold the connection until the wake-up."""
        while True:
            with self.lock:
                wake_at, mode = self._wake_at, self._suspend_mode
            if wake_at is None or time.monotonic() >= wake_at:
                return True
            if mode == "refuse":
                await self._refuse(c, writer, "ERROR", "XX000", COMPUTE_DOWN_MSG)
                return False
            await asyncio.sleep(min(0.05, max(0.0, wake_at - time.monotonic())))

    async def _open_backend(self):
        r, w = await asyncio.wait_for(asyncio.open_connection(self.backend_host, self.backend_port,
                                                              limit=READ_CHUNK), 10)
        if self.backend_tls:
            w.write(struct.pack("!II", 8, SSL_REQUEST_CODE))
            await w.drain()
            if await r.readexactly(1) != b"S":
                w.close()
                raise ConnectionError("backend refused TLS")
            await asyncio.wait_for(w.start_tls(self.bctx, server_hostname="localhost"), 10)
        return r, w

    async def _cancel(self, c, body):
        if len(body) != 12:
            return
        pid, key = struct.unpack("!II", body[4:12])
        c.cancel = (pid, key)
        with self.lock:
            target = self.keys.get((pid, key))
            real = (target.real_pid, target.real_key) if target else None
            self.cancels.append((pid, key, real is not None))
        if real is None:
            c.cancel_result = "unknown key"
            return
        # Postgres takes a CancelRequest on a plain connection whatever its
        # TLS settings; it closes the connection once the signal is sent.
        r, w = await asyncio.wait_for(asyncio.open_connection(self.backend_host, self.backend_port), 10)
        try:
            w.write(struct.pack("!IIII", 16, CANCEL_CODE, real[0], real[1]))
            await w.drain()
            await asyncio.wait_for(r.read(), 10)
            c.cancel_result = "forwarded"
        finally:
            w.close()
        if self.cancel_delay_ms:  # a slow cancel path: the client's connection stays open
            await asyncio.sleep(self.cancel_delay_ms / 1000.0)

    def _new_key(self):
        while True:
            pid = secrets.randbits(32)
            if self.high_pids:
                pid |= 0x80000000
            elif self.low_pids:
                pid &= 0x7FFFFFFF
            key = secrets.randbits(32)
            if pid and (pid, key) not in self.keys:
                return pid, key

    def _login_message(self, c, t, payload):
        """A backend message of the login phase, rewritten as Neon does."""
        if t == b"R" and len(payload) >= 4 and struct.unpack("!I", payload[:4])[0] == 10:
            c.sasl_offered = [m.decode() for m in payload[4:].split(b"\0") if m]
            payload = payload[:4] + strip_scram_plus(payload[4:])
            c.sasl_sent = [m.decode() for m in payload[4:].split(b"\0") if m]
        elif t == b"K" and len(payload) == 8:
            c.real_pid, c.real_key = struct.unpack("!II", payload)
            with self.lock:
                c.fake_pid, c.fake_key = self._new_key()
                self.keys[(c.fake_pid, c.fake_key)] = c
            payload = struct.pack("!II", c.fake_pid, c.fake_key)
        elif t == b"Z":
            c.ready = True
        return t + struct.pack("!I", len(payload) + 4) + payload

    async def _relay(self, c, creader, cwriter, startup):
        while True:
            if not await self._wait_compute(c, cwriter):
                return
            try:
                breader, bwriter = await self._open_backend()
            except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                await self._refuse(c, cwriter, "ERROR", "XX000", COMPUTE_DOWN_MSG)
                return
            # under the lock that suspend() takes to list its victims: a
            # backend is either one of them or opened after the wake-up
            with self.lock:
                asleep = self._wake_at is not None and time.monotonic() < self._wake_at
                if not asleep:
                    c.back_writer = bwriter
            if not asleep:
                break
            bwriter.close()
        bwriter.write(startup)
        await bwriter.drain()
        up = asyncio.ensure_future(self._client_to_backend(creader, bwriter))
        down = asyncio.ensure_future(self._backend_to_client(c, breader, cwriter))
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if c.ended_by is None:
                c.ended_by = "client" if up in done else "backend"
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)

    async def _client_to_backend(self, reader, writer):
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                return
            writer.write(data)
            await writer.drain()

    async def _backend_to_client(self, c, reader, writer):
        # login phase: whole messages, rewritten; then a streaming framer
        # that only tracks where messages begin and end
        while not c.ready:
            hdr = await reader.readexactly(5)
            n = struct.unpack("!I", hdr[1:5])[0]
            if n < 4 or n > MAX_LOGIN_MESSAGE:
                raise ConnectionError("bad backend message length %d" % n)
            payload = await reader.readexactly(n - 4)
            writer.write(self._login_message(c, hdr[0:1], payload))
            await writer.drain()
            if hdr[0:1] == b"E":
                return
        hdr, skip = b"", 0
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                return
            i, n = 0, len(data)
            while i < n:
                if skip:
                    take = min(skip, n - i)
                    skip -= take
                    i += take
                    continue
                need = 5 - len(hdr)
                hdr += data[i:i + need]
                i += min(need, n - i)
                if len(hdr) == 5:
                    skip = struct.unpack("!I", hdr[1:5])[0] - 4
                    hdr = b""
            c.at_boundary = not skip and not hdr
            writer.write(data)
            await writer.drain()
            if c.kill and c.at_boundary:
                self._send_terminated(c)
                return

    # ---- test thread ------------------------------------------------------

    def _call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def snapshot(self):
        """Every connection as a dict (a copy)."""
        with self.lock:
            return [c.as_dict() for c in self.conns]

    def relayed(self):
        """Connections logged in and still open."""
        with self.lock:
            return [c for c in self.conns if c.ready and not c.closed]

    def by_real_pid(self, pid):
        with self.lock:
            for c in self.conns:
                if c.real_pid == pid:
                    return c
        return None

    def by_fake_pid(self, pid):
        with self.lock:
            for c in self.conns:
                if c.fake_pid == pid:
                    return c
        return None

    def wait(self, what, fn, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError("neon front: timed out waiting for " + what)
            time.sleep(0.05)

    def suspend(self, refuse_ms=1000, mode="refuse", timeout=10.0):
        """The compute goes to sleep: every relayed connection ends with
        FATAL 57P01; new ones are refused (mode "refuse") or held (mode
        "delay") for refuse_ms. Returns the connections it ended."""
        assert mode in ("refuse", "delay")
        with self.lock:
            self._suspend_mode = mode
            self._wake_at = time.monotonic() + 3600  # until every backend is gone
            victims = [c for c in self.conns if not c.closed and (c.back_writer is not None)]
        pids = [c.real_pid for c in victims if c.real_pid]
        if pids and self.super_uri:
            import psycopg
            with psycopg.connect(self.super_uri, autocommit=True, connect_timeout=10) as su:
                su.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline and any(not c.closed for c in victims):
            time.sleep(0.02)
        left = [c for c in victims if not c.closed]
        for c in left:
            c.kill = True
            self.loop.call_soon_threadsafe(self._close_backend, c)
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline and any(not c.closed for c in left):
            time.sleep(0.02)
        for c in victims:
            c.ended_by = c.ended_by if c.ended_by in ("client", "suspend") else "suspend"
        with self.lock:
            self._wake_at = time.monotonic() + refuse_ms / 1000.0
        return victims

    def _close_backend(self, c):
        # Without pg_terminate_backend (or if a backend outlived it) the
        # front sends the FATAL itself, at a message boundary, and drops the
        # backend; mid-message, the framer does it at the end of the message.
        c.kill = True
        if c.at_boundary and not c.closed:
            self._send_terminated(c)

    def _send_terminated(self, c):
        c.ended_by = "suspend"
        for w, data in ((c.client_writer, error_response("FATAL", "57P01", TERMINATED_MSG)), (c.back_writer, None)):
            try:
                if data:
                    w.write(data)
                w.close()
            except Exception:
                pass

    def wake(self):
        with self.lock:
            self._wake_at = None

    @property
    def suspended(self):
        with self.lock:
            return self._wake_at is not None and time.monotonic() < self._wake_at

    def stop(self, timeout=10.0):
        """Closes the listener and every connection; returns True when the
        loop thread is gone."""
        if not self._thread.is_alive():
            return True

        async def shutdown():
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self._server.wait_closed()

        try:
            self._call(shutdown(), timeout)
        except Exception as e:
            self.errors.append("stop: %r" % e)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        return not self._thread.is_alive()


def neon_uri(port, user="postgres", password="postgres", db="appdb", host="localhost", sslmode="require",
             endpoint=None, extra=""):
    """A client URI for the front: with host=localhost libpq sends SNI
    "localhost" (endpoint "localhost"); with host=127.0.0.1 it sends none,
    and endpoint= puts the id in options instead."""
    u = "postgresql://%s:%s@%s:%d/%s?sslmode=%s" % (user, password, host, port, db, sslmode)
    if endpoint:
        u += "&options=endpoint%%3D%s" % endpoint
    return u + ("&" + extra if extra else "")
