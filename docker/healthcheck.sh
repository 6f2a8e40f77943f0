#!/bin/bash
# The image's HEALTHCHECK: GET /healthz on the admin API (PGTANDEM_ADMIN,
# default 127.0.0.1:6433; a wildcard address is asked on loopback). bash's
# /dev/tcp: the image has no HTTP client. A binary without /healthz (404)
# is asked GET /status, with PGTANDEM_ADMIN_TOKEN when set.
set -u
addr=${PGTANDEM_ADMIN:-127.0.0.1:6433}
host=${addr%:*}; port=${addr##*:}
host=${host#[}; host=${host%]}
case $host in 0.0.0.0|""|"*") host=127.0.0.1 ;; ::) host=::1 ;; esac

status_of() {  # status_of PATH: the HTTP status code, empty when unreachable
  { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || return 1
  auth=""
  [ -n "${PGTANDEM_ADMIN_TOKEN:-}" ] && auth="Authorization: Bearer $PGTANDEM_ADMIN_TOKEN"$'\r\n'
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n' "$1" "$auth" >&3
  read -r -t 3 _ code _ <&3
  exec 3<&-
  echo "${code:-}"
}

code=$(status_of /healthz)
[ "$code" = 404 ] && code=$(status_of /status)
[ "$code" = 200 ] && exit 0
echo "pgtandem admin API at $host:$port answered '${code:-nothing}'" >&2
exit 1
