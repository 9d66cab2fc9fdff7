#!/usr/bin/env bash
# The core on WebAssembly, under Node (20 or later):
#   1. the core's whole test suite (unit, rules, model, no_alloc, seeds, random_runs; not the doc
#      tests, not the bench) built for wasm32-wasip1 and run by Node's WASI (scripts/wasm-runner.mjs);
#   2. the embedding example (examples/wasm): the core built for wasm32-unknown-unknown, no WASI,
#      driven by a JavaScript host loop over a scripted day (examples/wasm/host.mjs).
# Installs the two Rust targets when missing. Extra arguments go to the test binaries (libtest
# filters and flags), e.g. `bash scripts/wasm.sh model`. PROPTEST_CASES is passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
step() { printf '\n=== wasm: %s (%ss)\n' "$1" "$SECONDS"; }

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "scripts/wasm.sh needs Node 20 or later (node:wasi); found: $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi
installed=$(rustup target list --installed)
for target in wasm32-wasip1 wasm32-unknown-unknown; do
  grep -qx "$target" <<<"$installed" || rustup target add "$target"
done

step "core tests on wasm32-wasip1 (Node WASI)"
# Panics abort on wasm32-wasip1 (no unwinding): the first failing test ends its binary, and the
# output libtest captured for it would be lost. Not capturing keeps the panic message in the log.
export RUST_TEST_NOCAPTURE=1
CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $root/scripts/wasm-runner.mjs" \
  cargo test -p sanspool-core --target wasm32-wasip1 --tests --no-fail-fast -- "$@"

step "embedding example on wasm32-unknown-unknown (no WASI)"
# Not a workspace member, so the workspace's fmt and clippy steps do not see it.
target_dir=${CARGO_TARGET_DIR:-$root/target}
cargo fmt --manifest-path examples/wasm/Cargo.toml -- --check
cargo clippy -q --release --target wasm32-unknown-unknown \
  --manifest-path examples/wasm/Cargo.toml --target-dir "$target_dir" -- -D warnings
cargo build --release --target wasm32-unknown-unknown \
  --manifest-path examples/wasm/Cargo.toml --target-dir "$target_dir"
wasm=$target_dir/wasm32-unknown-unknown/release/sanspool_wasm_example.wasm
echo "$wasm: $(wc -c <"$wasm") bytes"
node examples/wasm/host.mjs "$wasm"

step "done"
