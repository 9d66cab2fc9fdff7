#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, pg_ctl) exist; installs Debian's package when they
# don't and we may. The tests and the demo start their own throwaway cluster from these binaries,
# unless SANSPOOL_TEST_DSN (tests) or a DSN argument (demo) points at an existing server.
set -euo pipefail
[ -n "${SANSPOOL_TEST_DSN:-}" ] && exit 0
if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries missing: installing Debian's postgresql package" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
else
  echo "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL or set SANSPOOL_TEST_DSN" >&2
  exit 1
fi
