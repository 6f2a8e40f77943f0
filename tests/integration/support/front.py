"""The skeleton of a thread-per-connection test front between a client and
Postgres (TlsFront, KeyFront): a listener on a port of its own, a thread per
accepted connection, the errors its handlers met (kept for the test to look
at, not raised in a thread nobody joins), and a stop that closes every socket
and joins the threads, so a test never leaves a relay behind."""
import socket
import threading
import time

__all__ = ["ThreadFront"]


class ThreadFront:
    """A subclass sets `name` and writes `_serve(conn, opened, *args)`;
    `_accepted(conn)` may return extra arguments for it. Every socket a
    handler opens goes through `_track(s, opened)`: it is closed when that
    connection's handler returns, and by `stop` at the latest."""
    name = "front"
    backlog = 64

    def __init__(self):
        self.lock = threading.Lock()
        self.errors = []
        self._stop = threading.Event()
        self._socks = set()
        self._threads = []
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(self.backlog)
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self._start(self._accept_loop, (), self.name + "-accept")

    def _start(self, target, args, name):
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        with self.lock:
            self._threads.append(t)

    def _accepted(self, conn):
        return ()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._track(conn)
            self._start(self._handle, (conn,) + tuple(self._accepted(conn)), self.name + "-conn")

    def _track(self, s, opened=None):
        with self.lock:
            self._socks.add(s)
        if opened is not None:
            opened.append(s)
        return s

    def _handle(self, conn, *args):
        opened = [conn]
        try:
            self._serve(conn, opened, *args)
        except Exception as e:  # recorded for the test to look at
            if not self._stop.is_set():
                with self.lock:
                    self.errors.append(repr(e))
        finally:
            for s in opened:
                try:
                    s.close()
                except OSError:
                    pass

    def _serve(self, conn, opened, *args):
        raise NotImplementedError

    def settle(self, timeout=10.0):
        """Waits (bounded) for connection handlers whose peers have gone."""
        with self.lock:
            threads = [t for t in self._threads if t.name == self.name + "-conn"]
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def stop(self):
        """Stops accepting, closes every socket, waits for the threads;
        returns those still alive."""
        self._stop.set()
        try:
            self.srv.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        for t in threads:
            t.join(10)
        return [t for t in threads if t.is_alive()]
