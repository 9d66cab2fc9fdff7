//! Replays the committed seed corpus, `fuzz/seeds/<target>/`, with plain `cargo test` (stable, no
//! sanitizer): every file is decoded exactly as its fuzz target decodes it and played with every
//! check of the test kit. The corpus holds only inputs the targets accept (they reject what does
//! not decode), so a file that no longer decodes — the vocabulary changed — fails here too: refresh
//! the seeds (see `fuzz/README.md`).

use arbitrary::{Arbitrary, Unstructured};
use sanspool_core::testkit::{run, Case};
use sanspool_core::{Alloc, Fixed};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Every file of `fuzz/seeds/<target>/`, sorted, with its bytes.
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "{}: only {} seeds",
        dir.display(),
        files.len()
    );
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// As `fuzz_target!(|case: Case| ...)` decodes (`ops`): inputs shorter than the size hint are
/// skipped, the rest is taken whole.
fn decode_ops(bytes: &[u8]) -> Option<Case> {
    if bytes.len() < Case::size_hint(0).0 {
        return None;
    }
    Case::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

/// As `fixed_tiny` decodes: the first byte picks the storage (`% 3`), the rest is the case.
fn decode_fixed_tiny(bytes: &[u8]) -> Option<(u8, Case)> {
    let (&shape, rest) = bytes.split_first()?;
    let case = Case::arbitrary_take_rest(Unstructured::new(rest)).ok()?;
    Some((shape % 3, case))
}

/// Plays every seed of `target` through `play`, which decodes it (`None`: the target would skip
/// it) and runs it. Panics listing every seed that does not decode or fails a check.
fn replay(target: &str, mut play: impl FnMut(&[u8]) -> Option<usize>) {
    let mut failed = Vec::new();
    let (mut ops, mut with_ops) = (0, 0);
    let seeds = seeds(target);
    for (path, bytes) in &seeds {
        match catch_unwind(AssertUnwindSafe(|| play(bytes))) {
            Ok(Some(n)) => {
                ops += n;
                with_ops += usize::from(n > 0);
            }
            Ok(None) => failed.push(format!("{}: does not decode", path.display())),
            Err(_) => failed.push(format!("{}: failed a check (see above)", path.display())),
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} seeds failed:\n{}",
        failed.len(),
        seeds.len(),
        failed.join("\n")
    );
    // Not vacuous: most seeds play sequences, not just configurations.
    assert!(
        with_ops * 4 >= seeds.len() * 3 && ops >= 5 * seeds.len(),
        "{target}: {with_ops} of {} seeds play ops, {ops} ops in all",
        seeds.len()
    );
    eprintln!(
        "{target}: {} seeds, {with_ops} with ops, {ops} ops",
        seeds.len()
    );
}

#[test]
fn ops_seeds() {
    replay("ops", |bytes| {
        let case = decode_ops(bytes)?;
        run::<Alloc>(&case);
        Some(case.ops.len())
    });
}

#[test]
fn fixed_tiny_seeds() {
    let mut shapes = [0; 3];
    replay("fixed_tiny", |bytes| {
        let (shape, case) = decode_fixed_tiny(bytes)?;
        shapes[usize::from(shape)] += 1;
        match shape {
            0 => run::<Fixed<1, 1>>(&case),
            1 => run::<Fixed<2, 1>>(&case),
            _ => run::<Fixed<3, 2>>(&case),
        }
        Some(case.ops.len())
    });
    assert!(
        shapes.iter().all(|&n| n > 0),
        "seeds per storage: {shapes:?}"
    );
}
