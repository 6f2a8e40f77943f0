"""Where things are and which ports a test may bind: the repository's top,
the binary under test (PGTANDEM_BIN), and a range of ports of this process's
own so that parallel runs never race for one."""
import os
import socket

__all__ = ["TOP", "BIN", "SANITIZER_MARKS", "free_port", "port_open", "cluster_env"]

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.environ.get("PGTANDEM_BIN", os.path.join(TOP, "bin", "pgtandem"))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

PORTS_PER_WORKER = 200
_ports_handed_out = [0]


def _port_range():
    """This process's own range of ports: one per (variant, xdist worker),
    below the kernel's ephemeral range (32768-60999), so a port chosen here
    cannot be taken by another worker, or by an outgoing connection, between
    choosing it and the proxy or Postgres binding it."""
    variant = {"rel": 0, "asan": 1}.get(os.environ.get("PGT_VARIANT", ""), 2)
    # PGT_RUN_SLOT=1: a second `make test` of another checkout at the same
    # time (the suite run beside itself as a CPU hog) takes ranges of its own
    variant += 3 * (os.environ.get("PGT_RUN_SLOT", "0") == "1")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    # a run without xdist (one file by hand) takes one of the upper slots by
    # its pid, so that several such runs at once rarely pick the same ports
    n = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 8 + os.getpid() % 8
    return 10000 + (variant * 16 + n % 16) * PORTS_PER_WORKER


def free_port():
    """A port for a server that binds later (a proxy, a cluster)."""
    base = _port_range()
    for _ in range(PORTS_PER_WORKER):
        port = base + _ports_handed_out[0] % PORTS_PER_WORKER
        _ports_handed_out[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in %d-%d" % (base, base + PORTS_PER_WORKER - 1))


def cluster_env():
    """The environment for tests/pgcluster.sh: its port from this process's range."""
    return dict(os.environ, PGT_PGPORT=str(free_port()))


def port_open(port, host="127.0.0.1"):
    """Whether something accepts connections on host:port right now."""
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False
