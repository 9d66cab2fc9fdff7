//! The fixed-capacity backend at tiny capacities (the first byte picks `Fixed<1, 1>`,
//! `Fixed<2, 1>` or `Fixed<3, 2>`): no panic, capacity limits answered with typed errors, and every
//! check of `sanspool_fuzz` after every step.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sanspool_core::Fixed;
use sanspool_fuzz::{run, Input};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(rest)) else {
        return;
    };
    match shape % 3 {
        0 => run::<Fixed<1, 1>>(&input, 1),
        1 => run::<Fixed<2, 1>>(&input, 2),
        _ => run::<Fixed<3, 2>>(&input, 3),
    }
});
