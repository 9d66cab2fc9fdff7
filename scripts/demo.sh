#!/usr/bin/env bash
# The demo: a threaded workload through the pool against a real PostgreSQL, with a progress bar and
# the pool's stats. Pass a DSN to use an existing server; with none, a throwaway one is started.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || bash scripts/ensure-postgres.sh
cargo run --release -q -p sanspool-tests --example demo -- "$@"
