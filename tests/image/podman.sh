#!/bin/bash
# Podman as the image tests run it: on any Debian 12 machine, with no Docker
# daemon and no container registry. Every podman call of the tests goes
# through here, so the settings this machine needs are in one place.
#
#   tests/image/podman.sh check           can podman run a container here? (exit 0, or why not)
#   tests/image/podman.sh base            makes debian:12-slim from the Debian mirror if absent
#   tests/image/podman.sh build TAG       base, then the image of docker/Dockerfile as TAG
#                                         (and its build stage as TAG-build)
#   tests/image/podman.sh compose ARGS    podman-compose with the same settings
#   tests/image/podman.sh ARGS            podman ARGS (run, rm, logs, images ...)
#
# The settings (a containers.conf of its own, CONTAINERS_CONF):
# - runc, and cgroupfs for the cgroups: crun fails on hybrid cgroups (v1 and
#   the unified tree at once);
# - the open-file limits of this shell and at most 32768 processes: podman's
#   defaults are above the hard limits of a sandbox, and runc cannot raise
#   them;
# - the host's network: the containers reach the test cluster on 127.0.0.1,
#   and no bridge (netavark, iptables) is needed.
#
# The base image: docker/Dockerfile starts FROM debian:12-slim, a registry
# image; here it is made with debootstrap (minbase, with what debian:12-slim
# leaves out removed) from the mirror apt already uses, imported as
# localhost/debian:12-slim and kept in podman's storage, so that only the
# first run on a machine pays for it (about two minutes).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
base=localhost/debian:12-slim
state=${PGT_IMAGE_STATE:-/var/cache/pgtandem-image}

conf() {
  mkdir -p "$state"
  nofile="$(ulimit -Sn):$(ulimit -Hn)"
  # 32768 (podman build's default): runc is refused a higher nproc here even
  # within this shell's hard limit
  nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
  nproc="$nproc:$nproc"
  cat >"$state/containers.conf.tmp" <<EOF
[containers]
default_ulimits = ["nofile=$nofile", "nproc=$nproc"]
netns = "host"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv "$state/containers.conf.tmp" "$state/containers.conf"
  CONTAINERS_CONF="$state/containers.conf"
  export CONTAINERS_CONF
}

# The mirror apt uses: the first deb.debian.org-like URI of the sources.
mirror() {
  m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n 1)
  [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
                     awk '{print $2}' | grep -v security | head -n 1)
  echo "${m:-http://deb.debian.org/debian}"
}

make_base() {
  podman image exists "$base" && return 0
  root="$state/rootfs.$$"
  rm -rf "$root"
  echo "image: debootstrap bookworm from $(mirror) (once per machine)" >&2
  debootstrap --variant=minbase bookworm "$root" "$(mirror)" >"$state/debootstrap.log" 2>&1 ||
    { tail -n 20 "$state/debootstrap.log" >&2; rm -rf "$root"; return 1; }
  # what debian:12-slim does not carry either, and its apt and dpkg
  # settings, so that an image's apt-get leaves no packages behind
  cat >"$root"/etc/apt/apt.conf.d/docker-clean <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
  echo 'Acquire::Languages "none";' >"$root"/etc/apt/apt.conf.d/docker-no-languages
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    >"$root"/etc/dpkg/dpkg.cfg.d/docker
  rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/*
  find "$root"/usr/share/doc -type f ! -name copyright -delete
  tar -C "$root" -c . | podman import --quiet - "$base" >/dev/null
  rm -rf "$root"
}

check() {
  command -v podman >/dev/null || { echo "podman is not installed"; return 1; }
  out=$(podman run --rm --quiet --pull=never "$base" true 2>&1) || { echo "podman cannot run a container: $out"; return 1; }
}

conf
case "${1:-}" in
  check)
    make_base && check ;;
  base)
    make_base ;;
  build)
    tag=${2:?build TAG}
    make_base
    # --pull=never: debian:12-slim is the local base (no registry here);
    # the short name resolves to localhost/ before any registry.
    # (podman build takes neither the limits nor the network from
    # containers.conf; --format docker keeps the HEALTHCHECK)
    set -- --quiet --format docker --pull=never --network host \
      --ulimit "nofile=$nofile" --ulimit "nproc=$nproc" -f "$top/docker/Dockerfile"
    # The build stage tagged too: its layers (apt's above all) are the next
    # build's cache, and what earlier builds left untagged can go (not
    # what a build running beside this one has just made).
    podman build "$@" --target build -t "$tag-build" "$top" >/dev/null
    podman build "$@" -t "$tag" "$top"
    podman image prune -f --filter until=1h >/dev/null ;;
  compose)
    shift
    exec podman-compose "$@" ;;
  *)
    exec podman "$@" ;;
esac
