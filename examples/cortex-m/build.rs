//! Links with cortex-m-rt's `link.x`, and puts `memory.x` (which `link.x` includes) where the
//! linker finds it. Passed here rather than as `rustflags` in `.cargo/config.toml`, which a
//! RUSTFLAGS in the environment would replace.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("write memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}
