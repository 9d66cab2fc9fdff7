//! The test kit's named scenarios, replayed on every backend with every check of the simulated
//! driver after every step.

use sanspool_core::testkit::{run, seeds, Sim};
use sanspool_core::{Alloc, Fixed};

#[test]
fn seeds_pass_on_every_backend() {
    for (name, case) in seeds::all() {
        assert!(
            Sim::<Alloc, u8>::from_setup(&case.setup).is_ok(),
            "seed {name} builds no pool"
        );
        run::<Alloc>(&case);
        run::<Fixed<3, 2>>(&case);
        run::<Fixed<2, 1>>(&case);
        run::<Fixed<1, 1>>(&case);
    }
}
