#!/bin/sh
# The image's entrypoint.
#
#   IMAGE [FLAG VALUE]...        the proxy: /etc/pgtandem/pgtandem.json (unless
#   IMAGE proxy [FLAG VALUE]...  --config names another), then the PGTANDEM_*
#                                variables below, then the flags given
#   IMAGE --help                 every command's help
#   IMAGE migrate|passwd|version|help ...   that pgtandem command
#   IMAGE PROGRAM ...            another program (sh, ...)
#
# Variables, each the flag of the same name (a flag given wins):
#   PGTANDEM_UPSTREAM  --upstream  postgresql://HOST:PORT/?sslmode=require
#   PGTANDEM_LISTEN    --listen    default 0.0.0.0:6432
#   PGTANDEM_ADMIN     --admin     default 127.0.0.1:6433 (the healthcheck asks there)
# and, read by pgtandem itself: PGTANDEM_ADMIN_TOKEN (needed for an admin
# address beyond loopback), PGTANDEM_DB (the migration engine's database).
set -eu
config=/etc/pgtandem/pgtandem.json

has_flag() {  # has_flag FLAG ARGS...: is FLAG among ARGS?
  f=$1; shift
  for a in "$@"; do [ "$a" = "$f" ] && return 0; done
  return 1
}

case "${1:-}" in
  --help|-h) exec pgtandem help ;;
  proxy) shift ;;
  migrate|passwd|version|help|--version) exec pgtandem "$@" ;;
  -*|"") ;;
  *) exec "$@" ;;
esac

# Flags from the environment come before the given ones, and only when
# the flag is not given.
for pair in --upstream=PGTANDEM_UPSTREAM --listen=PGTANDEM_LISTEN --admin=PGTANDEM_ADMIN; do
  flag=${pair%%=*}; var=${pair#*=}
  eval "value=\${$var:-}"
  if [ -n "$value" ] && ! has_flag "$flag" "$@"; then
    set -- "$flag" "$value" "$@"
  fi
done
if ! has_flag --config "$@"; then
  # the image's own file names no upstream
  if ! has_flag --upstream "$@" && ! has_flag --help "$@" && ! has_flag -h "$@"; then
    echo "pgtandem: no upstream: set PGTANDEM_UPSTREAM=postgresql://HOST:PORT/?sslmode=require" \
         "or pass --upstream" >&2
    exit 2
  fi
  set -- --config "$config" "$@"
fi
exec pgtandem proxy "$@"
