// Runs a wasm32-wasip1 binary under Node's WASI: cargo's runner for the core's tests on WebAssembly
// (see scripts/wasm.sh).
//
//   node --no-warnings scripts/wasm-runner.mjs <file.wasm> [args...]
//
// The arguments after the file go to the program (cargo passes libtest's filters and flags), the
// environment is passed through (PROPTEST_CASES, MODEL_TALLY, RUST_BACKTRACE...), the current
// directory is preopened as `.` (where cargo runs a test binary: its package's root), and the
// runner exits with the program's exit code. A trap — how a Rust panic ends on wasm32-wasip1, where
// panics abort — is reported and exits 134, as an abort would natively; the panic's message is in
// the output only if libtest does not capture it (RUST_TEST_NOCAPTURE=1, which scripts/wasm.sh sets).
import { readFile } from "node:fs/promises";
import process from "node:process";
import { WASI } from "node:wasi";

const [file, ...args] = process.argv.slice(2);
if (!file) {
  console.error("usage: node --no-warnings scripts/wasm-runner.mjs <file.wasm> [args...]");
  process.exit(2);
}

const wasi = new WASI({
  version: "preview1",
  args: [file, ...args],
  env: process.env,
  preopens: { ".": process.cwd() },
  returnOnExit: true,
});

let instance;
try {
  const module = await WebAssembly.compile(await readFile(file));
  instance = await WebAssembly.instantiate(module, wasi.getImportObject());
} catch (err) {
  console.error(`wasm-runner: cannot load ${file}: ${err?.message ?? err}`);
  process.exit(1);
}
try {
  process.exitCode = wasi.start(instance) ?? 0;
} catch (err) {
  if (err instanceof WebAssembly.RuntimeError) {
    // A panic's message, if it was one, is printed above (RUST_TEST_NOCAPTURE keeps it there).
    console.error(`wasm-runner: ${file} trapped (${err.message}): aborted`);
    process.exitCode = 134;
  } else {
    console.error(`wasm-runner: ${file} failed: ${err?.stack ?? err}`);
    process.exitCode = 1;
  }
}
