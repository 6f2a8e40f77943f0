"""libpq through the relay (tests/clients/libpq_client.c): pipeline mode,
NOTIFY, NoticeResponse, rows of 100 MB both ways."""
import subprocess

import pytest

from support import LIBPQ_CLIENT

pytestmark = pytest.mark.usefixtures("built")


def run_client(*args, timeout=300):
    r = subprocess.run([LIBPQ_CLIENT, *args], capture_output=True, text=True, timeout=timeout)
    print(r.stdout)
    return r


@pytest.mark.parametrize("cmd,oks", [("pipeline", 3), ("notify", 2), ("notice", 1)])
def test_libpq(relay, cmd, oks):
    r = run_client(cmd, relay.uri())
    assert r.returncode == 0, r.stdout + r.stderr + relay.log()[-2000:]
    assert r.stdout.count("ok ") == oks and "FAIL" not in r.stdout, r.stdout


def test_libpq_pipeline_over_client_tls(proxy, cluster):
    r = run_client("pipeline", proxy.uri(sslmode="verify-full",
                                         extra="channel_binding=disable&sslrootcert=" + cluster.ca))
    assert r.returncode == 0, r.stdout + r.stderr + proxy.log()[-2000:]


def test_libpq_large_rows_100mb(relay):
    r = run_client("largerow", relay.uri(), "100", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr + relay.log()[-2000:]
    assert "received a 104857600-byte row intact" in r.stdout
    assert "sent a 104857600-byte parameter intact" in r.stdout
