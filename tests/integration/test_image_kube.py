"""docker/kubernetes/pgtandem.yaml, the Kubernetes manifests, checked
offline with kubectl and run with `podman kube play` against the suite's
Postgres:

- offline, with no cluster: `kubectl kustomize` reads the folder as
  `kubectl apply -k` would; the Deployment and the Service go through
  kubectl's typed decoding (`kubectl set ... --local`: a wrong type fails)
  and must come back with every field they had (a misspelt field is
  dropped); the ConfigMap and the PodDisruptionBudget must be what `kubectl
  create ... --dry-run=client` writes for the same values; the Secret is
  made by the command the manifest's comment gives. Then what podman does
  not look at: the Service's and the budget's selectors pick the pods, the
  probes and the Service name ports the container has, the grace period
  covers the preStop hook and shutdown_timeout_s;
- for real: three pods of the Deployment's template, each played by
  `podman kube play` on the host's network. What a kubelet would fill in
  and podman 4.3 does not is rendered first (below: render_pod); the rest
  is the manifest as shipped. The three register as one fleet, each with
  its own peer address; clients connect through each; a migration
  (a rename with a change of type, throttled so that its backfill lasts)
  is started through the first pod and followed by the others; the first
  pod is deleted (`podman kube down`: SIGTERM, as a kubelet stops a pod)
  mid-backfill, another proxy takes the backfill over, and the migration is
  completed through the second pod, with no error for the clients of the
  two that remain and every row they wrote in the new shape.

Marked `image` (tests/run.sh runs it in the image phase)."""
import copy
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest
import yaml

from support import free_port, TOP, wait_for
from test_image import PODMAN, image, podman  # noqa: F401 (image: the fixture that builds it, cached by now)

pytestmark = pytest.mark.image

KUBE_DIR = os.path.join(TOP, "docker", "kubernetes")
MANIFEST = os.path.join(KUBE_DIR, "pgtandem.yaml")
ROWS = 20000
MIGRATION = "0001_items_val_int"


def manifest_docs():
    """The manifest's documents by kind (one of each)."""
    with open(MANIFEST) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), [d["kind"] for d in docs]
    return by_kind


# ---- offline: kubectl without a cluster --------------------------------------------------

def kubectl(*args):
    """kubectl with no cluster to talk to: none of the commands below may
    need one (KUBECONFIG names an empty file)."""
    env = dict(os.environ, KUBECONFIG=os.devnull)
    r = subprocess.run(["kubectl"] + list(args), capture_output=True, text=True, errors="replace", timeout=60, env=env)
    assert r.returncode == 0, "kubectl %s: %s%s" % (" ".join(args), r.stdout, r.stderr)
    return r.stdout


def kubectl_version():
    out = json.loads(kubectl("version", "--client", "-o", "json"))["clientVersion"]
    return int(out["major"]), int(re.match(r"\d+", out["minor"]).group(0))


def dropped(shipped, typed, path=""):
    """The fields of `shipped` that kubectl's typed round trip left out (or
    changed): a field its API types do not have."""
    if isinstance(shipped, dict):
        if not isinstance(typed, dict):
            return [path or "/"]
        out = []
        for k, v in shipped.items():
            out += dropped(v, typed[k], path + "." + k) if k in typed else [path + "." + k]
        return out
    if isinstance(shipped, list):
        if not isinstance(typed, list) or len(typed) != len(shipped):
            return [path]
        return [p for i, v in enumerate(shipped) for p in dropped(v, typed[i], "%s[%d]" % (path, i))]
    return [] if shipped == typed else ["%s (%r became %r)" % (path, shipped, typed)]


def typed_round_trip(doc, *set_args):
    """`kubectl set ... --local -o json` on the document alone: kubectl
    decodes it into its API type, makes the change set_args give and prints
    it back (it prints nothing when nothing changed)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(doc, f)
        f.flush()
        return json.loads(kubectl("set", *set_args, "--local", "-f", f.name, "-o", "json"))


def labels_csv(labels):
    return ",".join("%s=%s" % kv for kv in sorted(labels.items()))


def test_kube_manifests_valid_offline():
    docs = manifest_docs()
    assert set(docs) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}, set(docs)

    # the folder as `kubectl apply -k` reads it: the same objects
    built = [d for d in yaml.safe_load_all(kubectl("kustomize", KUBE_DIR)) if d]
    assert sorted(built, key=lambda d: d["kind"]) == sorted(docs.values(), key=lambda d: d["kind"])

    dep = docs["Deployment"]
    pod = dep["spec"]["template"]
    ctr, = pod["spec"]["containers"]
    typed = typed_round_trip(dep, "image", "%s=%s-changed" % (ctr["name"], ctr["image"]))
    assert typed["spec"]["template"]["spec"]["containers"][0]["image"] == ctr["image"] + "-changed"
    typed["spec"]["template"]["spec"]["containers"][0]["image"] = ctr["image"]
    assert dropped(dep, typed) == [], "fields kubectl's apps/v1 Deployment does not have"
    svc = docs["Service"]
    typed = typed_round_trip(svc, "selector", labels_csv(dict(svc["spec"]["selector"], changed="1")))
    assert typed["spec"]["selector"].pop("changed") == "1"
    assert dropped(svc, typed) == [], "fields kubectl's v1 Service does not have"

    cm = docs["ConfigMap"]
    with tempfile.TemporaryDirectory() as d:
        for key, text in cm["data"].items():
            with open(os.path.join(d, key), "w") as f:
                f.write(text)
        made = json.loads(kubectl("create", "configmap", cm["metadata"]["name"], "--from-file", d,
                                  "--dry-run=client", "-o", "json"))
    assert {k: cm[k] for k in ("apiVersion", "kind", "data")} == {k: made[k] for k in ("apiVersion", "kind", "data")}
    json.loads(cm["data"]["pgtandem.json"])

    pdb = docs["PodDisruptionBudget"]
    # policy/v1beta1 is gone since Kubernetes 1.25 (and kubectl before 1.21
    # writes nothing else)
    assert pdb["apiVersion"] == "policy/v1", pdb
    made = json.loads(kubectl("create", "poddisruptionbudget", pdb["metadata"]["name"],
                              "--selector", labels_csv(pdb["spec"]["selector"]["matchLabels"]),
                              "--max-unavailable", str(pdb["spec"]["maxUnavailable"]), "--dry-run=client", "-o", "json"))
    assert made["spec"] == pdb["spec"], (made, pdb)
    if kubectl_version() >= (1, 21):
        assert made["apiVersion"] == pdb["apiVersion"], made

    # the Secret the pods read, made as the manifest's comment says
    secret = json.loads(kubectl("create", "secret", "generic", "pgtandem", "--from-literal=admin-token=t",
                                "--from-literal=engine-db=postgresql://u:p@db/app", "--dry-run=client", "-o", "json"))
    refs = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in ctr["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {(secret["metadata"]["name"], k) for k in secret["data"]}, refs

    # what podman does not check: the selectors pick the pods, the names
    # given are there, the numbers agree
    pod_labels = pod["metadata"]["labels"]
    for sel in (dep["spec"]["selector"]["matchLabels"], svc["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"]):
        assert sel.items() <= pod_labels.items(), (sel, pod_labels)
    port_names = {p["name"] for p in ctr["ports"]}
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz" and ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for named in (ctr["readinessProbe"]["httpGet"]["port"], ctr["livenessProbe"]["httpGet"]["port"],
                  svc["spec"]["ports"][0]["targetPort"]):
        assert named in port_names, (named, port_names)
    assert pod["spec"]["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    config = json.loads(cm["data"]["pgtandem.json"])
    pre_stop = int(ctr["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] >= pre_stop + config["shutdown_timeout_s"] + 5, \
        "the grace period must outlast the preStop hook and the proxy's shutdown timeout"
    env = {e["name"]: e for e in ctr["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["PGTANDEM_ADMIN"]["value"].startswith("$(POD_IP):")
    assert ctr["args"][ctr["args"].index("--peer-listen") + 1].startswith("$(POD_IP):")


# ---- for real: podman kube play ----------------------------------------------------------

def expand(text, env):
    """Kubernetes' $(VAR) in an env value or an argument: a variable defined
    before it, else left as written; $$ is a $."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


class KubePod:
    """One pod of the Deployment, as its own Deployment of one replica."""

    def __init__(self, i, tag, workdir):
        self.i = i
        self.name = "pgtandem-%s-%d" % (tag, i)
        self.port, self.admin_port, self.peer_port = free_port(), free_port(), free_port()
        self.file = os.path.join(workdir, self.name + ".yaml")
        self.pod = self.container = None

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.admin_port, path)

    def uri(self, db, user="postgres", password="postgres"):
        return "postgresql://%s:%s@127.0.0.1:%d/%s?sslmode=disable" % (user, password, self.port, db)


def render_pod(docs, kp, image_tag, upstream, secret_name):
    """The ConfigMap and the Deployment for pod kp, with what a kubelet
    would fill in and podman 4.3 does not, and what one machine needs:

    - the downward API's status.podIP (podman knows only metadata.* fields):
      127.0.0.1, the pod IP on the host's network here;
    - $(VAR) in env values and args, expanded as the kubelet expands them
      (podman 4.3 passes them through as written);
    - the host's network and ports of this test's range instead of
      6432/6433/6434 (three pods on one network namespace), and one
      replica (podman 4.3 would start all three on the same ports); no
      containerPorts (podman refuses to publish ports on the host's
      network, where a port bound is the host's) and so the probes' named
      port resolved to its number, as the kubelet resolves it;
    - the image built here, the suite's Postgres as upstream, names of this
      test's own.
    The rest goes to podman as shipped. Of it, podman 4.3 applies the
    memory limit, the user, the read-only root filesystem, the dropped
    capabilities, the ConfigMap volume and the secrets. It ignores the
    readiness probe, the preStop hook and the grace period (it stops a pod
    with SIGTERM and 10 s), and makes the liveness probe a `curl`
    healthcheck that nothing runs here (no systemd) and the image could not
    (no curl): the test asks both paths itself, as a kubelet does."""
    cm = copy.deepcopy(docs["ConfigMap"])
    dep = copy.deepcopy(docs["Deployment"])
    config = json.loads(cm["data"]["pgtandem.json"])
    config["listen"] = "127.0.0.1:%d" % kp.port
    config["upstream"] = upstream
    cm["metadata"]["name"] = kp.name
    cm["data"]["pgtandem.json"] = json.dumps(config, indent=2)
    dep["metadata"]["name"] = kp.name
    dep["spec"]["replicas"] = 1
    spec = dep["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    spec["volumes"][0]["configMap"]["name"] = kp.name
    ctr, = spec["containers"]
    ctr["image"] = image_tag
    ports = {"6432": kp.port, "6433": kp.admin_port, "6434": kp.peer_port}
    named = {p["name"]: ports[str(p["containerPort"])] for p in ctr.pop("ports")}
    for probe_kind in ("readinessProbe", "livenessProbe"):
        get = ctr[probe_kind]["httpGet"]
        get["port"] = named.get(get["port"], get["port"])
    env = {}
    for e in ctr["env"]:
        src = e.get("valueFrom", {})
        if src.get("fieldRef", {}).get("fieldPath") == "status.podIP":
            del e["valueFrom"]
            e["value"] = "127.0.0.1"
        if "secretKeyRef" in src:
            src["secretKeyRef"]["name"] = secret_name
        if "value" in e:
            e["value"] = re.sub(r":(643[234])$", lambda m: ":%d" % ports[m.group(1)], expand(e["value"], env))
            env[e["name"]] = e["value"]
    ctr["args"] = [re.sub(r":(643[234])$", lambda m: ":%d" % ports[m.group(1)], expand(a, env)) for a in ctr["args"]]
    with open(kp.file, "w") as f:
        yaml.safe_dump_all([cm, dep], f)


def admin(kp, method, path, token, body=None, timeout=15):
    req = urllib.request.Request(kp.url(path), method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def probe(kp, path):
    """GET as the kubelet sends it: no token."""
    try:
        with urllib.request.urlopen(kp.url(path), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


class Writer(threading.Thread):
    """One client through one pod: INSERTs in autocommit, each value
    unique, in the old shape (val text) or, with `version`, the new one
    (val_int integer). Keeps what succeeded and every error."""

    def __init__(self, kp, db, first, version=None):
        super().__init__(daemon=True)
        self.kp, self.db, self.next, self.version = kp, db, first, version
        self.ok, self.errors = [], []
        self.stop = threading.Event()

    def run(self):
        opts = "-c pgtandem.version=%s" % self.version if self.version else None
        try:
            with psycopg.connect(self.kp.uri(self.db), autocommit=True, connect_timeout=10, options=opts) as c:
                while not self.stop.is_set():
                    if self.version:
                        c.execute("INSERT INTO items (val_int) VALUES (%s)", (self.next,))
                    else:
                        c.execute("INSERT INTO items (val) VALUES (%s)", (str(self.next),))
                    self.ok.append(self.next)
                    self.next += 1
                    time.sleep(0.02)  # paces the client: about 50 inserts a second
        except psycopg.Error as e:
            self.errors.append("%s: %s" % (type(e).__name__, e))

    def finish(self):
        self.stop.set()
        self.join(timeout=30)
        assert not self.is_alive(), "a writer through %s did not stop" % self.kp.name
        return self


def container_of(pod):
    r = podman("ps", "-a", "--filter", "pod=" + pod, "--format", "{{.Names}} {{.IsInfra}}", check=True)
    names = [ln.split()[0] for ln in r.stdout.splitlines() if ln.split()[1:] == ["false"]]
    assert len(names) == 1, r.stdout
    return names[0]


def rss_kib(container):
    r = podman("exec", container, "cat", "/proc/1/status", check=True)
    return int(re.search(r"^VmRSS:\s+(\d+) kB", r.stdout, re.M).group(1))


@pytest.fixture
def items_db(cluster):
    name = "kube_" + uuid.uuid4().hex[:10]
    cluster.psql("CREATE DATABASE %s" % name)
    cluster.psql("CREATE TABLE items (id bigserial PRIMARY KEY, val text NOT NULL);"
                 "INSERT INTO items (val) SELECT g::text FROM generate_series(1, %d) g; ANALYZE items" % ROWS,
                 uri=cluster.uri(db=name))
    yield name
    cluster.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, check=False)


@pytest.fixture
def kube_pods(image, cluster, items_db, tmp_path):  # noqa: F811 (image: the fixture)
    """Three pods played from the manifest, ready; all removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    workdir = str(tmp_path)
    docs = manifest_docs()
    token = uuid.uuid4().hex
    secret_name = "pgtandem-" + tag
    # the Secret as the manifest's comment makes it; podman 4.3 reads a
    # secret's keys from a podman secret holding the Secret's data
    secret = json.loads(kubectl("create", "secret", "generic", secret_name, "--from-literal=admin-token=" + token,
                                "--from-literal=engine-db=" + cluster.uri(db=items_db), "--dry-run=client", "-o", "json"))
    podman("secret", "create", secret_name, "-", check=True, input=json.dumps(secret["data"]))
    pods = [KubePod(i, tag, workdir) for i in range(3)]
    upstream = "postgresql://%s:%d/?sslmode=require" % (cluster.host, cluster.port)
    try:
        for kp in pods:
            render_pod(docs, kp, image, upstream, secret_name)
            r = podman("kube", "play", kp.file, timeout=120)
            assert r.returncode == 0, "podman kube play %s: %s%s\n%s" % (kp.name, r.stdout, r.stderr,
                                                                        open(kp.file).read())
            kp.pod = kp.name + "-pod-0"
            kp.container = container_of(kp.pod)
        for kp in pods:
            wait_for(lambda kp=kp: probe(kp, "/readyz") == 200, timeout=30,
                     what="GET /readyz of %s" % kp.name, detail=lambda kp=kp: podman("logs", kp.container).stderr[-3000:])
        yield pods, token
    finally:
        for kp in pods:
            if os.path.exists(kp.file):
                podman("kube", "down", kp.file, timeout=120)
            podman("pod", "rm", "-f", "-t", "0", kp.name + "-pod-0")
            podman("volume", "rm", "-f", kp.name)
        podman("secret", "rm", secret_name)


def pod_live_members(kp, token):
    code, st = admin(kp, "GET", "/status", token)
    assert code == 200, st
    return sorted((m["id"], m["peer"], m["admin"]) for m in st["fleet"]["members"] if m.get("live"))


def pod_old_release_left(kp, token):
    """Old-release sessions as a complete through kp would count them: its
    own and the other live proxies' as of their last heartbeat."""
    code, st = admin(kp, "GET", "/status", token)
    assert code == 200, st
    fleet = st["fleet"]
    n = st.get("versions", {}).get("old", 0)
    for m in fleet["members"]:
        if m.get("live") and m["id"] != fleet["id"]:
            n += sum(v for k, v in (m.get("sessions") or {}).items() if k != MIGRATION)
    return n


def backfilled(cluster, db):
    """Rows the backfill has done, as the database has them."""
    return int(cluster.psql("SELECT coalesce(sum(rows_done), 0) FROM pgtandem.backfill_progress",
                            uri=cluster.uri(db=db)))


def following(kp, token):
    """pgtandem_migration_following of kp's /metrics: 1 while another proxy
    of the fleet runs the migration's work, 0 when kp does."""
    req = urllib.request.Request(kp.url("/metrics"), headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=10) as r:
        m = re.search(r'^pgtandem_migration_following\{migration="%s"\} (\d+)' % MIGRATION, r.read().decode(), re.M)
    return int(m.group(1)) if m else None


def pod_migration(kp, token):
    code, cur = admin(kp, "GET", "/migrations/current", token)
    return cur if code == 200 else {}


def test_kube_fleet_carries_on_when_a_pod_is_deleted(image, cluster, items_db, kube_pods):  # noqa: F811
    pods, token = kube_pods
    first, second, third = pods

    # one fleet of three, each registered with its own id, admin address
    # and peer listener (from the pod IP the downward API gives)
    wait_for(lambda: all(len(pod_live_members(kp, token)) == 3 for kp in pods), timeout=30, what="a fleet of three")
    members = pod_live_members(second, token)
    assert sorted((m[1], m[2]) for m in members) == sorted(
        ("127.0.0.1:%d" % kp.peer_port, "127.0.0.1:%d" % kp.admin_port) for kp in pods), members
    # the default fleet id: the host name, which is the pod's name, then
    # the pid (1 in a container) and a random suffix
    assert sorted(m[0].rsplit("-", 2)[0] for m in members) == sorted(kp.pod for kp in pods), members
    for kp in pods:
        # the image's healthcheck, both ways, on the admin address the pod has
        for mode in ([], ["ready"]):
            r = podman("exec", kp.container, "pgtandem-healthcheck", *mode)
            assert r.returncode == 0, (mode, r.stdout + r.stderr)
        assert probe(kp, "/healthz") == 200

    # clients through every pod, in the old shape
    writers = [Writer(kp, items_db, first=10_000_000 * (kp.i + 1)) for kp in pods]
    for w in writers:
        w.start()
    wait_for(lambda: all(len(w.ok) >= 5 or w.errors for w in writers), timeout=30, what="writes through every pod")
    assert not any(w.errors for w in writers), [w.errors for w in writers]

    # the migration, started with the image's CLI in the first pod as
    # doc/operators-guide.md gives it (kubectl exec -i), throttled so that
    # the backfill lasts long enough to lose its proxy midway; the command
    # waits for the backfill, and ends with the pod
    migration = {"name": MIGRATION, "parent": None,
                 "operations": [{"rename_column": {"table": "items", "from": "val", "to": "val_int", "type": "integer",
                                                   "up": "val::integer", "down": "val_int::text"}}],
                 "backfill": {"max_rows_per_sec": 1000}}
    start = subprocess.Popen(["bash", PODMAN, "exec", "-i", first.container, "sh", "-c",
                              'pgtandem migrate start /dev/stdin --quiet --proxy "http://$PGTANDEM_ADMIN"'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start.stdin.write(json.dumps(migration))
    start.stdin.close()
    wait_for(lambda: pod_migration(first, token).get("phase") == "backfilling"
             and pod_migration(first, token)["backfill"]["rows_done"] >= 1000, timeout=60,
             what="the backfill under way on the first pod", detail=lambda: pod_migration(first, token))
    for kp in (second, third):  # the others follow it
        wait_for(lambda kp=kp: pod_migration(kp, token).get("phase") == "backfilling", timeout=10,
                 what="%s following the migration" % kp.name, detail=lambda kp=kp: pod_migration(kp, token))
        assert pod_migration(kp, token)["name"] == MIGRATION
    marks = {"backfilling": time.monotonic()}

    # the first pod deleted mid-backfill, as a kubelet stops one: SIGTERM
    started = time.monotonic()
    r = podman("kube", "down", first.file, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    down_s = time.monotonic() - started
    rows_then = backfilled(cluster, items_db)
    assert podman("pod", "exists", first.pod).returncode != 0
    writers[0].finish()
    start.wait(timeout=60)
    out = start.stdout.read()
    assert start.returncode != 0, "migrate start ended well with its pod gone:\n" + out
    wait_for(lambda: len(pod_live_members(second, token)) == 2, timeout=10, what="the fleet without the deleted pod")

    # another proxy takes the backfill over (timed: until the rows done
    # move again)
    assert 0 < rows_then < ROWS, rows_then
    wait_for(lambda: backfilled(cluster, items_db) > rows_then, timeout=60, what="the backfill going on elsewhere",
             detail=lambda: pod_migration(second, token))
    takeover_s = time.monotonic() - started
    # unthrottled through the proxy that runs the backfill now: asked of
    # another one, POST /migrations/current/throttle answers 200 and
    # changes that one's settings only
    runner, = wait_for(lambda: [kp for kp in (second, third) if following(kp, token) == 0], timeout=10,
                       what="the proxy running the backfill")
    code, ans = admin(runner, "POST", "/migrations/current/throttle", token, {"max_rows_per_sec": 0})
    assert code == 200, ans
    wait_for(lambda: pod_migration(second, token).get("phase") == "active", timeout=120,
             what="the backfill taken over and done", detail=lambda: pod_migration(second, token))
    # the other follower hears it a moment later (it may still be finishing)
    wait_for(lambda: pod_migration(third, token).get("phase") == "active", timeout=30,
             what="the third pod following to active", detail=lambda: pod_migration(third, token))
    marks["active"] = time.monotonic()

    # the old release leaves, the new one comes; complete through the second
    # pod with the image's own CLI, new-release clients on both pods
    for w in writers[1:]:
        w.finish()
    wait_for(lambda: pod_old_release_left(second, token) == 0, timeout=15, what="the old release gone from the fleet")
    new = [Writer(kp, items_db, first=20_000_000 * (kp.i + 1), version=MIGRATION) for kp in (second, third)]
    for w in new:
        w.start()
    wait_for(lambda: all(len(w.ok) >= 5 or w.errors for w in new), timeout=30, what="new-release writes")
    r = podman("exec", third.container, "sh", "-c", 'pgtandem migrate status --proxy "http://$PGTANDEM_ADMIN"')
    assert r.returncode == 0 and MIGRATION in r.stdout, r.stdout + r.stderr
    marks["complete"] = time.monotonic()
    r = podman("exec", second.container, "sh", "-c",
               'pgtandem migrate complete --json --proxy "http://$PGTANDEM_ADMIN"', timeout=300)
    marks["completed"] = time.monotonic()
    assert r.returncode == 0, r.stdout + r.stderr + podman("logs", second.container).stderr[-3000:]
    assert json.loads(r.stdout)["status"] == "completed", r.stdout
    ok_after = [len(w.ok) for w in new]
    wait_for(lambda: all(len(w.ok) > n + 5 or w.errors for w, n in zip(new, ok_after)), timeout=30,
             what="new-release writes after the cutover")
    for w in new:
        w.finish()

    # no error for any client of the pods that stayed
    survivors = writers[1:] + new
    assert [w.errors for w in survivors] == [[]] * len(survivors)
    # every row those clients wrote is there, in the new shape
    with psycopg.connect(cluster.uri(db=items_db), autocommit=True) as c:
        cols = [r[0] for r in c.execute("SELECT column_name FROM information_schema.columns"
                                        " WHERE table_schema = 'public' AND table_name = 'items'")]
        assert sorted(cols) == ["id", "val_int"], cols
        have = {r[0] for r in c.execute("SELECT val_int FROM items")}
        assert c.execute("SELECT count(*) FROM items WHERE val_int IS NULL").fetchone()[0] == 0
    wrote = {v for w in survivors + writers[:1] for v in w.ok}
    assert wrote <= have, sorted(wrote - have)[:10]
    assert set(range(1, ROWS + 1)) <= have

    # memory against the Deployment's request
    request = manifest_docs()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert request["memory"].endswith("Mi")
    for kp in (second, third):
        kib = rss_kib(kp.container)
        assert kib * 1024 < int(request["memory"][:-2]) * 1024 * 1024, (kp.name, kib)
        print("%s: RSS %d KiB after the migration" % (kp.name, kib))
    print("kube down of the first pod: %.1f s, with %d of %d rows backfilled; the backfill moved again %.1f s after"
          " the kube down began; the first pod's writer saw %s" % (down_s, rows_then, ROWS, takeover_s, writers[0].errors or "no error"))
    print("backfilling to active %.1f s; active to complete asked %.1f s; complete %.1f s"
          % (marks["active"] - marks["backfilling"], marks["complete"] - marks["active"],
             marks["completed"] - marks["complete"]))
