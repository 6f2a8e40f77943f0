"""The container image of docker/Dockerfile, built with podman
(tests/image/podman.sh: no Docker daemon, no registry) and run on the host's
network against the suite's Postgres (TLS + SCRAM upstream):

- the image itself: a non-root user, the exposed ports, a healthcheck,
  `IMAGE --help` and `IMAGE version`, a clear error with no upstream;
- psql through the proxy in the container, the admin API and the image's
  healthcheck script (live, and `ready` failing while the upstream is
  away), and a clean exit on `podman stop` (SIGTERM);
- an online migration (rename a column) started and completed through the
  container's admin API by `IMAGE migrate ... --proxy URL`, the image's own
  CLI, with old and new clients reading through the proxy in between;
- docker/compose.yml brought up with podman-compose (its own network, the
  ports published) against the same cluster.

Marked `image`: tests/run.sh runs them once, after the two integration
suites (the image builds its own release binary, whichever variant runs)."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

from support import free_port, Proxy, psql, TOP, wait_for
from tcp_forwarder import Forwarder

pytestmark = pytest.mark.image

PODMAN = os.path.join(TOP, "tests", "image", "podman.sh")
TAG = "localhost/pgtandem:test"
COMPOSE = os.path.join(TOP, "docker", "compose.yml")


def podman(*args, timeout=120, env=None, check=False, input=None):
    penv = dict(os.environ)
    penv.update(env or {})
    r = subprocess.run(["bash", PODMAN] + list(args), capture_output=True, text=True, timeout=timeout, env=penv,
                       input=input)
    if check:
        assert r.returncode == 0, "podman %s: %s%s" % (" ".join(args), r.stdout, r.stderr)
    return r


@pytest.fixture(scope="module")
def image():
    """Builds the image once for the module: the base from the Debian mirror
    the first time on a machine, then podman's layer cache."""
    r = podman("base", timeout=900)
    assert r.returncode == 0, "cannot make the debian:12-slim base: " + r.stdout + r.stderr
    r = podman("check")
    if r.returncode != 0:
        pytest.skip("podman cannot run containers on this machine: " + (r.stdout + r.stderr).strip())
    started = time.monotonic()
    r = podman("build", TAG, timeout=1800)
    assert r.returncode == 0, "podman build: " + r.stdout[-3000:] + r.stderr[-6000:]
    print("image build: %.0f s" % (time.monotonic() - started))
    return TAG


class Container:
    """`podman run -d` of the image on the host's network, with the proxy's
    ports from this process's range; reached as a Proxy is (no token)."""

    token = None
    admin = Proxy.admin
    uri = Proxy.uri

    def __init__(self, image, cluster, env=None, args=(), volumes=()):
        self.port = free_port()
        self.admin_port = free_port()
        self.name = "pgtandem-test-" + uuid.uuid4().hex[:10]
        penv = {"PGTANDEM_UPSTREAM": "postgresql://%s:%d/?sslmode=require" % (cluster.host, cluster.port),
                "PGTANDEM_LISTEN": "127.0.0.1:%d" % self.port,
                "PGTANDEM_ADMIN": "127.0.0.1:%d" % self.admin_port}
        penv.update(env or {})
        flags = []
        for k, v in penv.items():
            flags += ["-e", "%s=%s" % (k, v)]
        for v in volumes:
            flags += ["-v", v]
        # (podman runs the healthcheck from a systemd timer where there is
        # systemd; `podman healthcheck run` runs it here)
        podman("run", "-d", "--name", self.name, *flags, image, *args, check=True)
        wait_for(lambda: self.answers() or self.exited(), timeout=30, what="the container's admin API")
        assert not self.exited(), "container exited:\n" + self.logs()

    def exited(self):
        r = podman("inspect", "-f", "{{.State.Running}}", self.name)
        return r.stdout.strip() == "false"

    def answers(self):
        try:
            return self.admin("GET", "/status")[0] == 200
        except OSError:
            return False

    def logs(self):
        r = podman("logs", self.name)
        return r.stdout + r.stderr

    def stop(self):
        """SIGTERM, as `docker stop` sends it; returns the proxy's exit code."""
        podman("stop", "-t", "30", self.name, timeout=60)
        r = podman("inspect", "-f", "{{.State.ExitCode}}", self.name)
        return int(r.stdout.strip() or -1)

    def remove(self):
        podman("rm", "-f", "-t", "0", self.name)


@pytest.fixture
def container_factory(image, cluster):
    started = []

    def make(**kw):
        c = Container(image, cluster, **kw)
        started.append(c)
        return c

    yield make
    for c in started:
        c.remove()


def test_image_user_ports_healthcheck_and_help(image):
    r = podman("image", "inspect", image, check=True)
    info = json.loads(r.stdout)[0]
    cfg = info["Config"]
    assert cfg["User"] == "10001:10001", cfg
    assert set(cfg["ExposedPorts"]) == {"6432/tcp", "6433/tcp"}, cfg
    assert info["Healthcheck"]["Test"] == ["CMD", "pgtandem-healthcheck"], info["Healthcheck"]

    r = podman("run", "--rm", "--no-healthcheck", image, "--help")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pgtandem proxy" in r.stdout and "pgtandem migrate" in r.stdout, r.stdout
    r = podman("run", "--rm", "--no-healthcheck", image, "version")
    assert r.returncode == 0 and r.stdout.startswith("pgtandem "), r.stdout + r.stderr
    # the default command with nothing to proxy to: says what to set
    r = podman("run", "--rm", "--no-healthcheck", image)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "PGTANDEM_UPSTREAM" in r.stderr, r.stderr


@pytest.fixture
def shared_dir():
    """A directory to mount into a container: the image's user (10001) reads
    it, so not under pytest's private tmp_path."""
    d = tempfile.mkdtemp(prefix="pgtandem-image-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def readable_tls_dir(cluster, d):
    """The cluster's certificate and key, readable by the image's user."""
    for name in ("server.crt", "server.key"):
        with open(os.path.join(cluster.tlsdir, name), "rb") as src, open(os.path.join(d, name), "wb") as dst:
            dst.write(src.read())
        os.chmod(os.path.join(d, name), 0o644)
    return d


def test_psql_through_the_container(container_factory, cluster, shared_dir):
    # flags after the image name go to the proxy, beside the image's config
    tls = readable_tls_dir(cluster, shared_dir)
    c = container_factory(volumes=["%s:/tls:ro" % tls],
                          args=["--tls-cert", "/tls/server.crt", "--tls-key", "/tls/server.key",
                                "--client-tls", "require"])
    # TLS on both sides: psql to the proxy, the proxy to Postgres (SCRAM)
    # (SCRAM passes through to Postgres: no channel binding to the proxy's certificate)
    tls_uri = c.uri(sslmode="require") + "&channel_binding=disable"
    assert psql(tls_uri, "SELECT current_user || ':' || 6 * 7", check=True).stdout.strip() == "app:42"
    assert psql(tls_uri, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", check=True).stdout.strip() == "t"
    r = subprocess.run(["psql", c.uri(), "-c", "SELECT 1"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, "the proxy took a client without TLS despite --client-tls require"
    code, st = c.admin("GET", "/status")
    assert code == 200 and "sessions" in st, st
    r = podman("healthcheck", "run", c.name)
    assert r.returncode == 0 and "unhealthy" not in r.stdout, r.stdout + r.stderr
    r = podman("exec", c.name, "id", "-u")
    assert r.stdout.strip() == "10001", r.stdout + r.stderr
    # the proxy is PID 1 (exec'd by the entrypoint): SIGTERM reaches it
    assert c.stop() == 0, c.logs()


def test_healthcheck_is_liveness_and_ready_is_asked_for(container_factory):
    """The HEALTHCHECK stays healthy while the proxy runs; `ready` says
    whether it would take a client now. Nothing listens at this upstream."""
    c = container_factory(env={"PGTANDEM_UPSTREAM": "postgresql://127.0.0.1:%d/?sslmode=require" % free_port()})
    r = podman("healthcheck", "run", c.name)
    assert r.returncode == 0 and "unhealthy" not in r.stdout, r.stdout + r.stderr
    r = podman("exec", c.name, "pgtandem-healthcheck", "ready")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "GET /readyz answered '503 not ready: upstream_unreachable'" in r.stderr, r.stderr


@pytest.fixture
def items_db(cluster):
    name = "img_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % name)
    cluster.psql("CREATE TABLE items (id int PRIMARY KEY, title text NOT NULL);"
                 "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g", uri=cluster.uri(db=name))
    yield name
    cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, check=False)


def test_migration_through_the_container_admin_api(image, container_factory, cluster, items_db, shared_dir):
    c = container_factory(env={"PGTANDEM_DB": cluster.uri(db=items_db)})
    d = shared_dir
    path = os.path.join(d, "0001_items_name.json")
    with open(path, "w") as f:
        json.dump({"name": "0001_items_name", "parent": None,
                   "operations": [{"rename_column": {"table": "items", "from": "title", "to": "name"}}]}, f)
    os.chmod(path, 0o644)
    admin = "http://127.0.0.1:%d" % c.admin_port

    def image_migrate(*args):
        # the image's own CLI, in a container of its own beside the proxy's
        return podman("run", "--rm", "--no-healthcheck", "-v", "%s:/migrations:ro" % d, image,
                      "migrate", *args, "--proxy", admin, timeout=300)

    r = image_migrate("start", "/migrations/0001_items_name.json")
    assert r.returncode == 0, r.stdout + r.stderr + c.logs()[-3000:]
    code, cur = c.admin("GET", "/migrations/current")
    assert code == 200 and cur["phase"] == "active", cur

    uri = c.uri(db=items_db, user="postgres", password="postgres")
    # both shapes through the container's proxy while the migration is active
    assert psql(uri, "SELECT title FROM items WHERE id = 7", check=True).stdout.strip() == "item 7"
    assert psql(uri, "SELECT name FROM items WHERE id = 7", env={"PGOPTIONS": "-c pgtandem.version=0001_items_name"},
                check=True).stdout.strip() == "item 7"

    r = image_migrate("complete", "--json")
    assert r.returncode == 0, r.stdout + r.stderr + c.logs()[-3000:]
    assert json.loads(r.stdout)["status"] == "completed", r.stdout
    assert psql(uri, "SELECT name FROM items WHERE id = 7", check=True).stdout.strip() == "item 7"
    assert cluster.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'items'"
                        " AND column_name = 'title'", uri=cluster.uri(db=items_db)) == "0"
    r = image_migrate("status")
    assert r.returncode == 0, r.stdout + r.stderr


def compose_network_gateway(network):
    r = podman("network", "inspect", network, check=True)
    return json.loads(r.stdout)[0]["subnets"][0]["gateway"]


def test_compose_file_against_the_cluster(image, cluster):
    """docker/compose.yml as it is, brought up by podman-compose: the service
    on its own network with its ports published on this host, and the
    cluster (listening on loopback) reached through a forwarder on the
    network's gateway as host.containers.internal."""
    port, admin_port, upstream_port = free_port(), free_port(), free_port()
    project = "pgtandem-test-" + uuid.uuid4().hex[:8]
    env = {"PGTANDEM_IMAGE": image,
           "PGTANDEM_UPSTREAM": "postgresql://host.containers.internal:%d/?sslmode=require" % upstream_port,
           "PGTANDEM_ADMIN_TOKEN": "compose-s3cret",
           "PGTANDEM_PORT": str(port),
           "PGTANDEM_ADMIN_PORT": str(admin_port)}
    files = ["-p", project, "-f", COMPOSE]
    container = project + "_pgtandem_1"
    forwarder = None
    r = podman("compose", *files, "up", "-d", "--no-build", env=env, timeout=300)
    try:
        # podman-compose exits 0 even when podman run failed
        state = podman("inspect", "-f", "{{.State.Running}}", container)
        assert state.stdout.strip() == "true", r.stdout + r.stderr + state.stderr
        forwarder = Forwarder(cluster.host, cluster.port, listen_host=compose_network_gateway(project + "_default"),
                              listen_port=upstream_port)
        uri = "postgresql://app:apppass@127.0.0.1:%d/appdb?sslmode=disable" % port
        wait_for(lambda: subprocess.run(["psql", uri, "-qAtX", "-c", "SELECT 1"], capture_output=True, text=True,
                                        timeout=30).stdout.strip() == "1",
                 timeout=30, what="psql through the compose service")
        assert psql(uri, "SELECT current_user", check=True).stdout.strip() == "app"
        # the admin API, published on this host's loopback, with the token only
        url = "http://127.0.0.1:%d/status" % admin_port
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer compose-s3cret"}),
                                    timeout=10) as resp:
            assert resp.status == 200
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=10)
        assert e.value.code == 401
        r = podman("healthcheck", "run", container)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        if forwarder:
            forwarder.stop()
        down = podman("compose", *files, "down", "-t", "10", env=env, timeout=300)
        net = podman("network", "rm", "-f", project + "_default")
        assert down.returncode == 0, down.stdout + down.stderr
        assert net.returncode == 0, net.stdout + net.stderr
