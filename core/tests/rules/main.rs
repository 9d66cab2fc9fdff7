//! One test per rule of the core, each run on both storage backends through the test kit's
//! simulated driver ([`Sim`](sanspool_core::testkit::Sim)), which checks `assert_invariants()` and
//! connection conservation after every step. One file per topic, in the manner of str0m's tests.

use sanspool_core::testkit::Conn;
use sanspool_core::{Config, Error, Fairness, Rejected};
use std::time::Duration;

/// Instantiates every generic rule test of the module it is called in on both backends:
/// `<topic>::alloc::name` and `<topic>::fixed::name`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "alloc")]
        mod alloc {
            $( #[test] fn $name() { super::$name::<sanspool_core::Alloc>(); } )*
        }
        mod fixed {
            $( #[test] fn $name() { super::$name::<sanspool_core::Fixed<16, 32>>(); } )*
        }
    };
}

mod abandoned;
mod close;
mod config;
mod deadlines;
mod drain_check;
mod fairness;
mod getconn;
mod handles;
mod leaks;
mod lifetimes;
mod opens;
mod putconn;
mod random;
mod resize;
mod stats_time;
mod vet;
mod waiting;
mod warm;

/// The refusal of a checkin or completion, as (error, connection handed back).
fn refused(out: Result<(), Rejected<Conn>>) -> (Error, Option<Conn>) {
    let Rejected { error, conn } = out.expect_err("refused");
    (error, conn)
}

/// A backoff short enough to watch: 100 ms doubling up to 1 s, without jitter (the delays are
/// exact).
fn backoff_config(min: usize, max: usize) -> Config {
    Config {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        backoff_jitter: false,
        ..Config::new(min, max)
    }
}

/// Idle connections vetted before use ([`Config::vet`]).
fn vetting(min: usize, max: usize) -> Config {
    Config {
        vet: true,
        ..Config::new(min, max)
    }
}

/// Strict FIFO hand-off: every connection that comes back goes to the oldest waiter.
fn strict(min: usize, max: usize) -> Config {
    Config {
        fairness: Fairness::Strict,
        ..Config::new(min, max)
    }
}
