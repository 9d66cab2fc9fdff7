//! `resize`: growing orders opens, shrinking closes idle connections and in-use ones on return.

use sanspool_core::testkit::{Cmd, Conn, Sim};
use sanspool_core::{Config, Error, Returned, Storage, Wait};
use std::time::Duration;

on_both_backends! {
    resize_grow_opens_for_new_min,
    resize_shrink_closes_idle_least_recently_used_first,
    resize_shrink_closes_in_use_on_return,
    resize_shrink_with_slow_closes_keeps_max,
    resize_shrink_cancels_undrained_opens,
}

/// Growing: opens are ordered at once for the new `min`.
fn resize_grow_opens_for_new_min<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 2));
    sim.take_log();
    sim.resize(3, 4).unwrap();
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Open]);
    assert_eq!(sim.stats().idle, 3);
    assert_eq!((sim.pool().config().min, sim.pool().config().max), (3, 4));
}

/// Shrinking: idle connections are closed least recently used first, down to the new `max`.
fn resize_shrink_closes_idle_least_recently_used_first<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 4));
    let conns: Vec<Conn> = (0..4).map(|_| sim.get(None).1).collect();
    for &c in &[conns[2], conns[0], conns[3], conns[1]] {
        sim.put(c, Returned::Clean);
        sim.advance(Duration::from_secs(1));
    }
    sim.take_log();
    sim.resize(0, 2).unwrap();
    assert_eq!(sim.take_log(), [Cmd::Close(conns[2]), Cmd::Close(conns[0])]);
    assert_eq!((sim.stats().idle, sim.stats().size), (2, 2));
}

/// Shrinking below the connections in use: they are closed as they come back until `max` remain;
/// no open is ordered while over `max`, even for a waiter.
fn resize_shrink_closes_in_use_on_return<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(crate::strict(0, 3));
    let conns: Vec<Conn> = (0..3).map(|_| sim.get(None).1).collect();
    sim.take_log();
    sim.resize(0, 1).unwrap();
    assert_eq!(sim.take_log(), []);
    assert_eq!(sim.stats().size, 3);
    let w = sim.wait(None, Wait::Forever);
    assert_eq!(
        sim.unchanged(|s| s.checkout(None, Wait::No)),
        Err(Error::Exhausted)
    );
    assert_eq!(sim.take_log(), []);
    sim.put(conns[0], Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Close(conns[0])]);
    sim.put(conns[1], Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Close(conns[1])]);
    sim.put(conns[2], Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(w, conns[2])]);
    assert_eq!(sim.stats().size, 1);
}

/// Shrinking while closes are slow to be reported: connections being closed do not count as kept,
/// so exactly `max` of those returned stay.
fn resize_shrink_with_slow_closes_keeps_max<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 3));
    let conns: Vec<Conn> = (0..3).map(|_| sim.get(None).1).collect();
    sim.resize(0, 1).unwrap();
    sim.auto_close = false;
    sim.take_log();
    for &c in &conns {
        sim.put(c, Returned::Clean);
    }
    assert_eq!(sim.take_log(), [Cmd::Close(conns[0]), Cmd::Close(conns[1])]);
    assert_eq!((sim.stats().idle, sim.stats().closing), (1, 2));
    sim.close_next();
    sim.close_next();
    assert_eq!(sim.stats().size, 1);
}

/// Shrinking takes back opens not drained yet (the driver never saw them); a `min` of 0 makes
/// the pool warm at once.
fn resize_shrink_cancels_undrained_opens<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::undrained(Config::new(3, 3));
    assert!(!sim.pool().is_warm());
    sim.resize(0, 1).unwrap();
    assert_eq!((sim.stats().opening, sim.stats().size), (1, 1));
    assert!(sim.pool().is_warm());
    sim.poll();
    assert_eq!(sim.take_log(), [Cmd::Open]);
    sim.open_next();
    assert_eq!(sim.stats().idle, 1);
    assert!(sim.pool().is_warm());
}
