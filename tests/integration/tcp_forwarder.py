"""A tiny TCP forwarder put between a proxy and Postgres, to make a network
path misbehave without closing anything:

- freeze_flows() (SIGUSR1): the connections open now stop forwarding bytes
  for good, while new ones work (a NAT that dropped the flows, a compute
  replaced behind the endpoint); thaw_flows() (SIGUSR2) lets them go on;
- freeze() (SIGSTOP): nothing moves, new connections neither (a frozen
  path); thaw() (SIGCONT);
- reset_flows() (SIGHUP): every connection open now is reset (RST to both
  ends, as a load balancer that dropped its state answers), new ones work;
- delay_ms: every chunk is forwarded that long after it arrived, both ways
  (a slow path that loses nothing).

    python3 tcp_forwarder.py LISTEN_PORT TARGET_HOST TARGET_PORT [LISTEN_HOST [DELAY_MS]]

Run as a subprocess (Forwarder below) so that freezing it freezes every
connection through it at once.
"""
import collections
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time


def serve(listen_port, host, port, listen_host="127.0.0.1", delay_ms=0):
    delay = int(delay_ms) / 1000.0
    due = collections.deque()  # (when, to socket, bytes or None: close), in arrival order
    flags = {"freeze": False, "thaw": False, "reset": False}
    signal.signal(signal.SIGHUP, lambda *_: flags.update(reset=True))
    signal.signal(signal.SIGUSR1, lambda *_: flags.update(freeze=True))
    signal.signal(signal.SIGUSR2, lambda *_: flags.update(thaw=True))
    frozen = []
    sel = selectors.DefaultSelector()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((listen_host, listen_port))
    lsock.listen(128)
    sel.register(lsock, selectors.EVENT_READ, None)
    peers = {}

    def close_pair(s, other):
        for x in (s, other):
            if x is None:
                continue
            try:
                sel.unregister(x)
            except (KeyError, ValueError):
                pass
            peers.pop(x, None)
            x.close()

    while True:
        while due and due[0][0] <= time.time():
            _, to, data = due.popleft()
            if to not in peers:
                continue
            try:
                if data is not None:
                    to.sendall(data)
                    continue
            except OSError:
                pass
            close_pair(to, peers.get(to))
        if flags["reset"]:
            flags["reset"] = False
            for s in list(peers):
                try:   # linger 0: close sends RST, not FIN
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            for s in list(peers):
                if s in peers:
                    close_pair(s, peers.get(s))
            frozen = []
        if flags["freeze"]:
            flags["freeze"] = False
            for s in list(peers):
                sel.unregister(s)
                frozen.append(s)
        if flags["thaw"]:
            flags["thaw"] = False
            for s in frozen:
                if s in peers:
                    sel.register(s, selectors.EVENT_READ, "t")
            frozen = []
        wait = 0.1 if not due else max(0.0, min(0.1, due[0][0] - time.time()))
        for key, _ in sel.select(timeout=wait):
            if key.data is None:
                client, _ = lsock.accept()
                try:
                    back = socket.create_connection((host, port))
                except OSError:
                    client.close()
                    continue
                peers[client] = back
                peers[back] = client
                sel.register(client, selectors.EVENT_READ, "c")
                sel.register(back, selectors.EVENT_READ, "b")
                continue
            s = key.fileobj
            other = peers.get(s)
            if other is None:
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if delay:
                if data:
                    due.append((time.time() + delay, other, data))
                else:  # closed: the other side hears of it after what is on its way
                    sel.unregister(s)
                    due.append((time.time() + delay, other, None))
                continue
            if data:
                try:
                    other.sendall(data)
                    continue
                except OSError:
                    pass
            for x in (s, other):
                try:
                    sel.unregister(x)
                except (KeyError, ValueError):
                    pass
                peers.pop(x, None)
                x.close()


class Forwarder:
    """The forwarder as a subprocess listening on self.port (of listen_host:
    another address of this host, e.g. a container network's gateway)."""

    def __init__(self, host, port, listen_host="127.0.0.1", listen_port=0, delay_ms=0):
        self.port = listen_port
        if not self.port:
            with socket.socket() as s:
                s.bind((listen_host, 0))
                self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(self.port), host, str(port),
                                      listen_host, str(delay_ms)])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection((listen_host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("forwarder did not start")

    def freeze_flows(self):
        self.proc.send_signal(signal.SIGUSR1)

    def thaw_flows(self):
        self.proc.send_signal(signal.SIGUSR2)

    def reset_flows(self):
        self.proc.send_signal(signal.SIGHUP)

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), *sys.argv[4:6])
