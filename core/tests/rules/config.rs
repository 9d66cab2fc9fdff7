//! Configurations the pool refuses: sizes (at construction and on resize) and churning durations.

use sanspool_core::testkit::{Conn, Sim};
use sanspool_core::{Config, Error, Fixed, Storage};
use std::time::Duration;

on_both_backends! {
    invalid_sizes_are_refused,
    invalid_timing_is_refused,
}

/// Invalid sizes: `MinAboveMax`, `MaxZero`, `CapacityExceeded`, from `resize` (changing nothing)
/// and from the constructor.
fn invalid_sizes_are_refused<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 2));
    for (min, max, error) in [
        (3, 2, Error::MinAboveMax),
        (0, 0, Error::MaxZero),
        (0, 65_536, Error::CapacityExceeded),
    ] {
        assert_eq!(sim.unchanged(|s| s.resize(min, max)), Err(error));
        let made = Sim::<S>::try_new(Config::new(min, max));
        assert_eq!(made.err(), Some(error));
    }
    assert_eq!(
        Error::MinAboveMax.to_string(),
        "min connections is greater than max connections"
    );
    assert_eq!(
        Error::MaxZero.to_string(),
        "max connections must be at least 1"
    );
    assert_eq!(
        Error::CapacityExceeded.to_string(),
        "max connections exceeds the pool's storage capacity"
    );
    assert_eq!(sim.pool().config().max, 2);
}

/// The fixed backend refuses a `max` above its `SLOTS`, at construction and on resize.
#[test]
fn fixed_max_above_slots_is_capacity_exceeded() {
    let made = Sim::<Fixed<4, 2>>::try_new(Config::new(0, 5));
    assert_eq!(made.err(), Some(Error::CapacityExceeded));
    let mut sim = Sim::<Fixed<4, 2>>::new(Config::new(0, 4));
    assert_eq!(
        sim.unchanged(|s| s.resize(0, 5)),
        Err(Error::CapacityExceeded)
    );
    sim.resize(4, 4).unwrap();
    assert_eq!(sim.stats().idle, 4);
}

/// The alloc backend holds up to 65 535 connections (slot indices are `u16`).
#[cfg(feature = "alloc")]
#[test]
fn alloc_max_is_bounded_by_slot_index() {
    let mut sim = Sim::<sanspool_core::Alloc>::new(Config::new(0, 65_535));
    assert_eq!(
        sim.unchanged(|s| s.resize(0, 65_536)),
        Err(Error::CapacityExceeded)
    );
}

/// Durations that would make the pool churn or spin are refused at construction: a zero
/// lifetime, a jitter as long as the lifetime, a zero backoff.
fn invalid_timing_is_refused<S: Storage<Conn, u64>>() {
    let second = Duration::from_secs(1);
    let bad = [
        (Some(Duration::ZERO), Duration::ZERO, second),
        (Some(second), second, second),
        (Some(second), Duration::MAX, second),
        (None, Duration::ZERO, Duration::ZERO),
    ];
    for (max_lifetime, lifetime_jitter, backoff_initial) in bad {
        let config = Config {
            max_lifetime,
            lifetime_jitter,
            backoff_initial,
            ..Config::new(1, 2)
        };
        assert_eq!(Sim::<S>::try_new(config).err(), Some(Error::InvalidTiming));
    }
    let fine = Config {
        max_lifetime: Some(second),
        lifetime_jitter: second - Duration::from_nanos(1),
        ..Config::new(1, 2)
    };
    assert!(Sim::<S>::try_new(fine).is_ok());
    assert!(Error::InvalidTiming.to_string().contains("max_lifetime"));
}
