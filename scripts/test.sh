#!/usr/bin/env bash
# Runs every test of the workspace: the core's unit, model (proptest) and allocation tests, the
# adapters' tests, and the integration tests against a real PostgreSQL server the tests start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-postgres.sh
bash scripts/ensure-test-tools.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc "$@"
