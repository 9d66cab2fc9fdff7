//! Writes the committed seed corpus: `cargo run --example seeds` (from `fuzz/`).
//!
//! `corpus/ops/<name>` holds a seed's bytes; `corpus/fixed_tiny/<name>-<n>` the same bytes after
//! the capacity byte (`Fixed<1, 1>`, `Fixed<2, 1>`, `Fixed<3, 2>` for n = 0, 1, 2).

use sanspool_fuzz::{encode::to_bytes, seeds};
use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in ["ops", "fixed_tiny"] {
        fs::create_dir_all(root.join(target))?;
    }
    for (i, (name, input)) in seeds::all().into_iter().enumerate() {
        let bytes = to_bytes(&input);
        fs::write(root.join("ops").join(name), &bytes)?;
        let shape = (i % 3) as u8;
        let mut tiny = vec![shape];
        tiny.extend_from_slice(&bytes);
        fs::write(
            root.join("fixed_tiny").join(format!("{name}-{shape}")),
            tiny,
        )?;
    }
    Ok(())
}
