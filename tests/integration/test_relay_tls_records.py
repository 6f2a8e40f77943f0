"""What arrives together leaves together on TLS (issue 10, item 13).

libpq decrypts one TLS record per read. Postgres writes the output of one
go (here the two notifications one transaction's commit delivers) with one
SSL_write, so a client that waits for readability, reads once and then
drains PQnotifies sees both. The proxy must not split that output into one
record per buffer segment. Checked with libpq (tests/clients/libpq_client.c)
on TLS and, as a control, in plain text; directly (PGT_RELAY_DIRECT=1) the
same assertions hold against Postgres.
"""
import subprocess

import pytest

from support import LIBPQ_CLIENT

pytestmark = pytest.mark.usefixtures("built")


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_notifications_of_one_commit_in_one_read(relay, tls):
    uri = relay.uri(sslmode="require", extra="channel_binding=disable") if tls else relay.uri()
    for attempt in range(3):
        r = subprocess.run([LIBPQ_CLIENT, "notify_one_read", uri], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, "attempt %d: %s" % (attempt, r.stdout + r.stderr + relay.log()[-2000:])
        assert ("ssl on" if tls else "ssl off") in r.stdout, r.stdout
