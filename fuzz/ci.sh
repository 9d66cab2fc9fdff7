#!/usr/bin/env bash
# Replays the committed seed corpora (`cargo test` in fuzz/), then runs every cargo-fuzz target for
# ${FUZZ_SECONDS:-60} seconds against a temporary copy of its seeds (fuzz/seeds/<target>/, never
# written to); exits non-zero on a failed replay or any crash (the input is kept under
# fuzz/artifacts/, which git ignores).
#
#   bash fuzz/ci.sh                   # from anywhere in the repository
#   FUZZ_SECONDS=600 bash fuzz/ci.sh
#
# Installs cargo-fuzz if missing. Uses the nightly toolchain when one is installed; otherwise the
# stable one with RUSTC_BOOTSTRAP=1 (the sanitizer flags cargo-fuzz passes are nightly-only, and a
# machine that cannot fetch a nightly toolchain still has its stable one).
set -euo pipefail

seconds="${FUZZ_SECONDS:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" # cargo-fuzz finds fuzz/ from the repository root

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

echo "fuzz: replaying the committed seeds"
(cd fuzz && cargo test --locked)

work="$(mktemp -d "${TMPDIR:-/tmp}/sanspool-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

mapfile -t targets < <("${fuzz[@]}" list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz: no targets found" >&2
    exit 1
fi

"${fuzz[@]}" build

failed=0
for target in "${targets[@]}"; do
    mkdir -p "$work/corpus/$target"
    cp -R "fuzz/seeds/$target/." "$work/corpus/$target/"
    log="$work/$target.log"
    echo "fuzz: $target for ${seconds}s"
    if "${fuzz[@]}" run "$target" "$work/corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        grep -E 'DONE|stat::number_of_executed_units' "$log" || true
    else
        tail -n 80 "$log"
        echo "fuzz: $target FAILED; reproduce with:" >&2
        ls "fuzz/artifacts/$target/" 2>/dev/null | sed "s|^|    ${fuzz[*]} run $target fuzz/artifacts/$target/|" >&2 || true
        failed=1
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "fuzz: a target crashed" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
