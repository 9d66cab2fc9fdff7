//! Arbitrary input sequences against the growable (`Alloc`) backend; see `sanspool_fuzz` for what
//! is checked after every step.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanspool_core::Alloc;

fuzz_target!(|input: sanspool_fuzz::Input| {
    sanspool_fuzz::run::<Alloc>(&input, usize::MAX);
});
