"""Every file the proxy and its commands read is read with a bound: one over
it, or one that never ends (/dev/zero), is refused at once by its name.
Before, `--pgbouncer-ini /dev/zero` read until memory ran out (1.66 GB
resident after 16 s, no error), and so did --config, `pgtandem passwd
--file` and the TLS files OpenSSL reads by name."""
import pytest

from support import run_pgtandem, write_users_file

UPSTREAM = "postgresql://127.0.0.1:1/?sslmode=disable"


def proxy_cmd(*args):
    return ["proxy", "--listen", "127.0.0.1:1", "--admin", "off"] + list(args)


def big_file(tmp_path, name, size):
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(size)  # sparse: no disk written
    return str(p)


def refused(args, *words, input=None):
    r = run_pgtandem(args, timeout=15, input=input)  # reading forever ends here, failing the test
    assert r.returncode != 0, r.stdout + r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    return r.stderr


@pytest.mark.parametrize("what,args", [
    ("pgbouncer.ini", lambda f, tmp: proxy_cmd("--pgbouncer-ini", f)),
    ("config file", lambda f, tmp: proxy_cmd("--config", f)),
    ("users file", lambda f, tmp: proxy_cmd("--upstream", UPSTREAM, "--auth", "scram", "--users-file", f)),
    ("TLS certificate", lambda f, tmp: proxy_cmd("--upstream", UPSTREAM, "--tls-cert", f, "--tls-key", f)),
    ("upstream CA", lambda f, tmp: proxy_cmd("--upstream", "postgresql://127.0.0.1:1/?sslmode=verify-full&sslrootcert="
                                         + f)),
])
def test_dev_zero_is_refused_by_name(what, args, tmp_path):
    refused(args("/dev/zero", tmp_path), what, '"/dev/zero"')


def test_passwd_refuses_dev_zero_by_name():
    refused(["passwd", "someone", "--file", "/dev/zero"], 'users file "/dev/zero"', input="secret\nsecret\n")


@pytest.mark.parametrize("what,args,size", [
    ("pgbouncer.ini", lambda f: proxy_cmd("--pgbouncer-ini", f), 2 << 20),
    ("config file", lambda f: proxy_cmd("--config", f), 2 << 20),
    ("TLS certificate", lambda f: proxy_cmd("--upstream", UPSTREAM, "--tls-cert", f, "--tls-key", f), 17 << 20),
])
def test_a_file_over_its_bound_is_refused_by_name(what, args, size, tmp_path):
    f = big_file(tmp_path, "big", size)
    refused(args(f), what, '"%s" is %d bytes, more than' % (f, size))


def test_a_directory_is_refused_by_name(tmp_path):
    refused(proxy_cmd("--config", str(tmp_path)), 'config file "%s" is a directory' % tmp_path)


def test_a_config_from_a_pipe_still_reads(tmp_path):
    """Not a regular file, but it ends: read as before (process substitution)."""
    r = run_pgtandem(proxy_cmd("--config", "/dev/stdin"), timeout=15, input='{"buffer_bytes": 1}')
    assert r.returncode == 2 and 'setting "buffer_bytes"' in r.stderr, r.stderr


def test_a_users_file_from_a_pipe_is_refused(tmp_path):
    users = write_users_file(str(tmp_path / "users.json"), {"u": {"password": "p"}})
    with open(users) as f:
        text = f.read()
    r = run_pgtandem(proxy_cmd("--upstream", UPSTREAM, "--auth", "scram", "--users-file", "/dev/stdin"), timeout=15,
                     input=text)
    assert r.returncode != 0 and 'users file "/dev/stdin" is not a regular file' in r.stderr, r.stderr
