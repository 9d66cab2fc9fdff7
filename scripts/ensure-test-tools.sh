#!/usr/bin/env bash
# Makes sure the programs the PostgreSQL connector's tests start besides the server exist:
# `openssl` (the harness makes a throwaway CA and server certificate for the TLS tests) and
# `pgbouncer` (the tests behind a bouncer). Installs Debian's packages when they are missing and
# we may (root, apt-get); otherwise says what is missing: those tests then fail with that message.
set -euo pipefail
[ -n "${SANSPOOL_TEST_DSN:-}" ] && exit 0
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "missing ${missing[*]}: installing Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package starts a pgbouncer service of its own; the tests start their own instead.
  if command -v service >/dev/null 2>&1; then service pgbouncer stop >/dev/null 2>&1 || true; fi
else
  echo "missing ${missing[*]} (needed by the TLS and PgBouncer tests): install them" >&2
  exit 1
fi
