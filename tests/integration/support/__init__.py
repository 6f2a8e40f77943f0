"""The integration suite's helper library, one module per subject:

- ports: the repository, the binary under test, ports of this process's own;
- wait: waiting for a condition (wait_for(cond, timeout, what)), a log line,
  a port, a running statement; the peak of a value;
- procs: child processes, command lines, the open-files limit;
- pg: clusters, psql, one-shot SQL, a database's shape and a table's rows;
- wire: the wire protocol by hand (startup, messages, login, queries, TLS);
- tls: test certificates, users files and the TLS front;
- front: the skeleton of a thread-per-connection front (TlsFront, KeyFront);
- proxy: a running proxy, its upstream and its admin API, /metrics;
- migrations: the CLI, migration files and the legacy data they apply to;
- line: a line of migrations of one table in flight, for the property tests;
- checks: the seeds' migration under both releases' writers, compared row
  by row with what they wrote;
- fleet: several proxies following one migration;
- items: the engine tests' database of one table and its one migration;

The fronts and the forwarder a test puts between the proxy and Postgres
(neonfront.py, keyfront.py, tcp_forwarder.py) stay beside the tests: each
is a component a test drives, not a helper. conftest.py keeps
the pytest fixtures. A test file imports what it uses from
here (`from support import wait_for, Proxy`) and defines no function named
like one of these (tests/check_test_helpers.py fails on a local copy).
"""
from . import checks, fleet, front, items, migrations, pg, ports, procs, proxy, tls, wait, wire
from .checks import *  # noqa: F401,F403
from .fleet import *  # noqa: F401,F403
from .front import *  # noqa: F401,F403
from .items import *  # noqa: F401,F403
from .migrations import *  # noqa: F401,F403
from .pg import *  # noqa: F401,F403
from .ports import *  # noqa: F401,F403
from .procs import *  # noqa: F401,F403
from .proxy import *  # noqa: F401,F403
from .tls import *  # noqa: F401,F403
from .wait import *  # noqa: F401,F403
from .wire import *  # noqa: F401,F403

MODULES = (checks, fleet, front, items, migrations, pg, ports, procs, proxy, tls, wait, wire)
__all__ = [name for m in MODULES for name in m.__all__]
