//! The fixed-capacity backend at tiny capacities: the first byte picks `Fixed<1, 1>`,
//! `Fixed<2, 1>` or `Fixed<3, 2>`, the rest is a `Case` played with every check of the test kit.
//! Capacity limits must come back as typed errors, never as a panic.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::{fuzz_target, Corpus};
use sanspool_core::testkit::{run, Case};
use sanspool_core::Fixed;

fuzz_target!(|data: &[u8]| -> Corpus {
    let Some((&shape, rest)) = data.split_first() else {
        return Corpus::Reject;
    };
    let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(rest)) else {
        return Corpus::Reject; // undecodable: never kept in a corpus
    };
    match shape % 3 {
        0 => run::<Fixed<1, 1>>(&case),
        1 => run::<Fixed<2, 1>>(&case),
        _ => run::<Fixed<3, 2>>(&case),
    }
    Corpus::Keep
});
