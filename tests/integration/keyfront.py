"""A minimal edge in front of Postgres that hands out backend keys of its
own, as Neon's proxy does: every connection's BackendKeyData gets a made-up
PID (by default at or above 2^31, as about half of Neon's are) and secret.
A CancelRequest with a made-up pair is translated and sent on to Postgres.

Plain TCP towards the client (answers an SSLRequest with 'N'), plain TCP to
Postgres (the test cluster accepts host connections without TLS)."""
import random
import select
import socket
import struct

from support import ThreadFront, recv_exact

SSL_REQUEST_CODE = 80877103
CANCEL_CODE = 80877102


class KeyFront(ThreadFront):
    name = "keyfront"
    backlog = 128

    def __init__(self, backend_port, backend_host="127.0.0.1", pid_low=2 ** 31, pid_high=2 ** 32 - 1):
        self.backend = (backend_host, backend_port)
        self.pid_low, self.pid_high = pid_low, pid_high
        self.keys = {}        # (fake pid, fake key) -> (real pid, real key)
        self.given = []       # fake pids handed out, in order
        super().__init__()

    def upstream_uri(self):
        return "postgresql://127.0.0.1:%d/?sslmode=disable" % self.port

    def _fake_key(self, real_pid, real_key):
        with self.lock:
            while True:
                pid = random.randint(self.pid_low, self.pid_high)
                key = random.randint(1, 2 ** 32 - 1)
                if (pid, key) not in self.keys:
                    self.keys[(pid, key)] = (real_pid, real_key)
                    self.given.append(pid)
                    return pid, key

    def _serve(self, conn, opened):
        while True:
            hdr = recv_exact(conn, 8)
            if hdr is None:
                return
            n, code = struct.unpack("!II", hdr)
            if code != SSL_REQUEST_CODE:
                break
            conn.sendall(b"N")
        body = recv_exact(conn, n - 8)
        if code == CANCEL_CODE:
            pid, key = struct.unpack("!II", body)
            with self.lock:
                real = self.keys.get((pid, key))
            if real:
                c = socket.create_connection(self.backend, timeout=10)
                c.sendall(struct.pack("!IIII", 16, CANCEL_CODE, real[0], real[1]))
                c.close()
            return
        back = self._track(socket.create_connection(self.backend, timeout=30), opened)
        back.sendall(hdr + body)
        self._relay(conn, back)

    def _relay(self, client, back):
        sbuf = b""
        rewriting = True  # until BackendKeyData went by
        while not self._stop.is_set():
            ready, _, _ = select.select([client, back], [], [], 0.2)
            for s in ready:
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if s is client:
                    back.sendall(data)
                    continue
                if not rewriting:
                    client.sendall(data)
                    continue
                sbuf += data
                out = b""
                while rewriting and len(sbuf) >= 5:
                    ln = struct.unpack("!I", sbuf[1:5])[0]
                    if len(sbuf) < 1 + ln:
                        break
                    msg, sbuf = sbuf[:1 + ln], sbuf[1 + ln:]
                    if msg[0:1] == b"K" and ln == 12:
                        real_pid, real_key = struct.unpack("!II", msg[5:13])
                        pid, key = self._fake_key(real_pid, real_key)
                        msg = b"K" + struct.pack("!III", 12, pid, key)
                        rewriting = False
                    out += msg
                if not rewriting:
                    out += sbuf
                    sbuf = b""
                if out:
                    client.sendall(out)

