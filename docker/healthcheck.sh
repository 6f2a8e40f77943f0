#!/bin/bash
# The image's health check, on the admin API (PGTANDEM_ADMIN, default
# 127.0.0.1:6433; a wildcard address is asked on loopback). bash's
# /dev/tcp: the image has no HTTP client.
#
#   pgtandem-healthcheck         live: GET /healthz, the proxy's event loop
#                                answers (the image's HEALTHCHECK)
#   pgtandem-healthcheck ready   ready: GET /readyz, it would take a client
#                                now (not shutting down, not fenced by the
#                                fleet, the upstream answering)
#
# The HEALTHCHECK is liveness only. The proxy leaves an unready state by
# itself, and what acts on "unhealthy" (swarm, podman's
# --health-on-failure) restarts or replaces the container: that would drop
# every client it holds and cannot bring a database back. Readiness is
# for what gates traffic or a dependent service: compose's
# `depends_on: {pgtandem: {condition: service_healthy}}` with
# `healthcheck: {test: [CMD, pgtandem-healthcheck, ready]}`, a load
# balancer's check; Kubernetes' probes ask both paths themselves.
#
# A binary without /healthz (404) is asked GET /status, with
# PGTANDEM_ADMIN_TOKEN when set.
set -u
case ${1:-live} in
  live) path=/healthz ;;
  ready) path=/readyz ;;
  *) echo "usage: pgtandem-healthcheck [live|ready]" >&2; exit 2 ;;
esac
addr=${PGTANDEM_ADMIN:-127.0.0.1:6433}
host=${addr%:*}; port=${addr##*:}
host=${host#[}; host=${host%]}
case $host in 0.0.0.0|""|"*") host=127.0.0.1 ;; ::) host=::1 ;; esac

# status_of PATH: the HTTP status code and the body's last line (the
# reason of a 503), empty when unreachable
status_of() {
  { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || return 1
  auth=""
  [ -n "${PGTANDEM_ADMIN_TOKEN:-}" ] && auth="Authorization: Bearer $PGTANDEM_ADMIN_TOKEN"$'\r\n'
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n' "$1" "$auth" >&3
  read -r -t 3 _ code _ <&3
  last=""
  while IFS= read -r -t 3 line <&3 || [ -n "$line" ]; do
    line=${line%$'\r'}
    [ -n "$line" ] && last=$line
  done
  exec 3<&-
  echo "${code:-} $last"
}

answer=$(status_of "$path")
[ "$path" = /healthz ] && [ "${answer%% *}" = 404 ] && answer=$(status_of /status)
[ "${answer%% *}" = 200 ] && exit 0
echo "pgtandem admin API at $host:$port: GET $path answered '${answer:-nothing}'" >&2
exit 1
