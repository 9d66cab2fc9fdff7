#!/usr/bin/env bash
# The no_std, no-heap firmware example (examples/cortex-m): build it for thumbv7em-none-eabihf,
# run its scripted day under QEMU (mps2-an386, Cortex-M4) with semihosting, fail unless it exits
# with success, and print the ELF's footprint. Installs what it needs when missing (the thumb
# target; as root, Debian's qemu-system-arm and, if no size tool reads the ELF, an ARM binutils).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/examples/cortex-m"
target=thumbv7em-none-eabihf
export CARGO_TERM_COLOR=never
# The ELF's path must not depend on the caller's environment.
export CARGO_TARGET_DIR="$dir/target"
elf="$CARGO_TARGET_DIR/$target/release/sanspool-cortex-m"

as_root_install() { # PACKAGE...: install Debian packages, as root only
  if [ "$(id -u)" != 0 ]; then
    echo "cortex-m: missing $*; install it (Debian: apt-get install $*)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
command -v qemu-system-arm >/dev/null || as_root_install qemu-system-arm

cd "$dir"
# No heap: the core is built without its `alloc` feature (the build would fail to link anything
# that allocates, since the firmware has no global allocator).
if cargo tree --locked -e features -i sanspool-core | grep -q 'feature "alloc"'; then
  echo "cortex-m: sanspool-core was built with alloc" >&2
  exit 1
fi
# Not a workspace member: the workspace's format and lint steps do not see it.
cargo fmt --check
cargo clippy --release --locked -- -D warnings
cargo build --release --locked

echo "cortex-m: running the scripted day under qemu-system-arm (mps2-an386)"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
# The runner is .cargo/config.toml's qemu-system-arm command; the build above is already done.
timeout 60 cargo run --release --locked -q >"$out" 2>&1 || status=$?
cat "$out"
if [ "$status" != 0 ]; then
  [ "$status" = 124 ] && echo "cortex-m: QEMU timed out" >&2
  echo "cortex-m: the firmware failed (exit $status)" >&2
  exit 1
fi
grep -q '^ok: ' "$out" || { echo "cortex-m: no ok line" >&2; exit 1; }

# Footprint: any size tool that reads a 32-bit ARM ELF (Debian's own binutils does).
size_tool=""
for t in arm-none-eabi-size size llvm-size; do
  if command -v "$t" >/dev/null && "$t" "$elf" >/dev/null 2>&1; then
    size_tool="$t"
    break
  fi
done
if [ -z "$size_tool" ]; then
  as_root_install binutils-arm-none-eabi
  size_tool=arm-none-eabi-size
fi
echo "cortex-m: footprint of $(basename "$elf") ($size_tool, Berkeley format)"
"$size_tool" "$elf"
"$size_tool" "$elf" | awk 'NR == 2 {
  printf "cortex-m: flash %d bytes (text %d + data %d), static RAM %d bytes (data %d + bss %d); heap none\n",
    $1 + $2, $1, $2, $2 + $3, $2, $3
}'
