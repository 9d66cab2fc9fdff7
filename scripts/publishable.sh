#!/usr/bin/env bash
# Checks that the library crates can be depended on from outside and published:
#   - `cargo package --no-verify` for every crate that may be published;
#   - their docs as docs.rs builds them (all features, `--cfg docsrs`, nightly), warnings denied;
#   - `cargo check` with the workspace's `rust-version` toolchain (installed if missing);
#   - the crate graph: the async crate compiles neither the blocking client nor the blocking pool,
#     the blocking connector no tokio pool; no [patch] anywhere;
#   - no module of a library crate imports one that imports it back.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf -- '--- %s\n' "$1"; }

crates=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p.get("publish") != []:
        print(p["name"])')

step "no [patch]"
if grep -rn --include=Cargo.toml '^\[patch' . --exclude-dir=target; then
  echo "a [patch] section: other crates would not see it" >&2
  exit 1
fi

step "cargo package"
args=()
for crate in $crates; do args+=(-p "$crate"); done
# Together: each crate's sibling dependencies are packaged first, as they would be published.
cargo package --no-verify --allow-dirty -q "${args[@]}"
echo "packaged: $(echo $crates)"

step "docs as docs.rs builds them"
docs_toolchain=+nightly
rustup toolchain list | grep -q '^nightly' || docs_toolchain=
for crate in $crates; do
  if [ -n "$docs_toolchain" ]; then
    RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo $docs_toolchain doc -q --no-deps --all-features -p "$crate"
  else # no nightly: everything but the feature badges
    RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps --all-features -p "$crate"
  fi
done

step "rust-version"
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
rustup toolchain list | grep -q "^$msrv" || rustup toolchain install "$msrv" --profile minimal
cargo "+$msrv" check -q --lib "${args[@]}"
echo "the library crates build with Rust $msrv"

step "crate graph"
normal_deps() { cargo tree -p "$1" -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u; }
if normal_deps sanspool-tokio | grep -qx -e postgres -e sanspool -e sanspool-postgres; then
  echo "sanspool-tokio compiles the blocking stack:" >&2
  normal_deps sanspool-tokio | grep -x -e postgres -e sanspool -e sanspool-postgres >&2
  exit 1
fi
if normal_deps sanspool-postgres | grep -qx sanspool-tokio; then
  echo "sanspool-postgres compiles the tokio pool" >&2
  exit 1
fi
echo "sanspool-tokio: no postgres, no sanspool; sanspool-postgres: no sanspool-tokio"

step "module circles"
python3 scripts/module-cycles.py core adapters/kit adapters/blocking adapters/tokio adapters/pgconn adapters/postgres
