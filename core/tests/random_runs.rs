//! Generated input sequences through the checking simulated driver, on every backend: the same
//! vocabulary and checks as the fuzz targets, run by `cargo test`.

use proptest::prelude::*;
use sanspool_core::testkit::{run, vocab};
use sanspool_core::{Alloc, Fixed};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn alloc(case in vocab::cases(80)) {
        run::<Alloc>(&case);
    }

    #[test]
    fn fixed_3_2(case in vocab::cases(80)) {
        run::<Fixed<3, 2>>(&case);
    }

    #[test]
    fn fixed_1_1(case in vocab::cases(40)) {
        run::<Fixed<1, 1>>(&case);
    }
}
