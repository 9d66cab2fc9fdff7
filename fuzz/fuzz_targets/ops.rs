//! Arbitrary cases against the growable (`Alloc`) backend: the test kit's checking driver plays
//! every op and panics on any violation (see `sanspool_core::testkit`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sanspool_core::testkit::{run, Case};
use sanspool_core::Alloc;

fuzz_target!(|case: Case| run::<Alloc>(&case));
