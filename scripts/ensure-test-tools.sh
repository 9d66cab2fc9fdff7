#!/usr/bin/env bash
# Makes sure what the tests need besides the server and the Rust toolchain exists: `openssl` (the
# harness makes a throwaway CA and server certificate for the TLS tests), `pgbouncer` (the tests
# behind a bouncer) and `libpq-dev` (diesel's PostgreSQL backend, in the r2d2 manager tests and
# the diesel example, links libpq). Installs Debian's packages when they are missing and we may
# (root, apt-get); otherwise says what is missing: those tests then fail with that message.
set -euo pipefail
missing=()
# libpq is linked at build time, whatever server the tests run against.
dpkg-query -W -f='${Status}' libpq-dev 2>/dev/null | grep -q 'install ok installed' ||
  pkg-config --exists libpq 2>/dev/null || missing+=(libpq-dev)
if [ -z "${SANSPOOL_TEST_DSN:-}" ]; then
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "missing ${missing[*]}: installing Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package starts a pgbouncer service of its own; the tests start their own instead.
  if command -v service >/dev/null 2>&1; then service pgbouncer stop >/dev/null 2>&1 || true; fi
else
  echo "missing ${missing[*]} (needed by the TLS, PgBouncer and diesel tests): install them" >&2
  exit 1
fi
