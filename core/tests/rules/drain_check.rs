//! `drain` (retire every connection) and `check_idle` (vet every idle one).

use sanspool_core::testkit::{secs, Cmd, Conn, Sim};
use sanspool_core::{Config, Returned, Storage};
use std::time::Duration;

on_both_backends! {
    drain_retires_every_connection_and_refills,
    check_idle_checks_every_idle_connection,
    failed_check_closes_and_refills,
    check_keeps_idle_time_and_order,
}

/// `drain()`: idle connections are closed at once, in-use ones on return, fresh ones opened to
/// refill `min`; the pool stays open.
fn drain_retires_every_connection_and_refills<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 3));
    let (_, held) = sim.get(None);
    assert_eq!(held, 2);
    sim.take_log();
    sim.drain().unwrap();
    assert_eq!(sim.take_log(), [Cmd::Close(1), Cmd::Open]);
    sim.put(held, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Close(held), Cmd::Open]);
    assert!(!sim.pool().is_closed());
    let s = sim.stats();
    assert_eq!((s.idle, s.size, s.closes), (2, 2, 2));
    assert_eq!(sim.get(None).1, 4);
}

/// `check_idle()`: a `Check` for every idle connection; checked ones are idle again.
fn check_idle_checks_every_idle_connection<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(3, 3));
    sim.take_log();
    assert_eq!(sim.check_idle(), Ok(3));
    assert_eq!(
        sim.take_log(),
        [Cmd::Check(1), Cmd::Check(2), Cmd::Check(3)]
    );
    assert_eq!(sim.stats().idle, 3);
    assert_eq!(sim.stats().resets, 0);
}

/// A failed check closes the connection; `min` is refilled.
fn failed_check_closes_and_refills<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(3, 3));
    sim.take_log();
    sim.fail_resets = 1;
    assert_eq!(sim.check_idle(), Ok(3));
    assert_eq!(
        sim.take_log(),
        [
            Cmd::Check(1),
            Cmd::Check(2),
            Cmd::Check(3),
            Cmd::Close(1),
            Cmd::Open
        ]
    );
    assert_eq!(sim.stats().idle, 3);
}

/// A check is not a use: checked connections keep their idle time (so `max_idle` still expires
/// them) and their place in the idle order, whatever order the checks finish in.
fn check_keeps_idle_time_and_order<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_idle: Some(Duration::from_secs(10)),
        ..Config::new(0, 3)
    });
    let conns: Vec<Conn> = (0..3).map(|_| sim.get(None).1).collect();
    for &c in &conns {
        sim.put(c, Returned::Clean);
        sim.advance(Duration::from_secs(1));
    }
    sim.auto_reset = false;
    assert_eq!(sim.check_idle(), Ok(3));
    assert!(sim.resets.is_empty());
    sim.checks.reverse(); // the checks finish newest first
    while !sim.checks.is_empty() {
        sim.check_next();
    }
    assert_eq!(sim.pool().poll_timeout(), Some(secs(10)));
    sim.take_log();
    sim.advance_to(secs(10));
    assert_eq!(sim.take_log(), [Cmd::Close(conns[0])]);
    assert_eq!(
        sim.get(None).1,
        conns[2],
        "LIFO order kept through the checks"
    );
}
