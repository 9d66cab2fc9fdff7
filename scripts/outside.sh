#!/usr/bin/env bash
# Builds the crate outside the workspace (examples/outside: path dependencies only, no [patch],
# the newest compatible versions of everything, warnings denied) and runs its two programs — the
# README's quick start — against a real server: $1 if given, else a throwaway cluster started
# here. Also checks that the README's quick-start blocks are those programs, word for word.
set -euo pipefail
cd "$(dirname "$0")/.."

# The README shows the programs as they are.
for bin in blocking async; do
  file="examples/outside/src/bin/$bin.rs"
  shown=$(awk -v tag="<!-- quick start: $file -->" '
    $0 == tag { on = 1; next }
    on && /^```rust$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }' README.md)
  if [ "$shown" != "$(cat "$file")" ]; then
    echo "README.md's quick start differs from $file:" >&2
    diff <(echo "$shown") "$file" >&2 || true
    exit 1
  fi
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/outside"
manifest=examples/outside/Cargo.toml
rm -f examples/outside/Cargo.lock # resolve afresh, as a new user's crate would
RUSTFLAGS="-D warnings" cargo build --manifest-path "$manifest" --bins

dsn="${1:-}"
if [ -z "$dsn" ]; then
  bash scripts/ensure-postgres.sh
  bin=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
  dir=$(mktemp -d /tmp/sanspool-outside-XXXXXX)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; as_pg=(runuser -u postgres --); fi
  "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
  stop() { "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
  trap stop EXIT
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-k $dir -p $port -c listen_addresses=127.0.0.1" start >/dev/null
  dsn="host=127.0.0.1 port=$port user=postgres dbname=postgres"
fi
for bin in blocking async; do
  cargo run -q --manifest-path "$manifest" --bin "$bin" -- "$dsn"
done
