//! `max_lifetime` (with jitter) and `max_idle`: which connections are closed for age, and when.

use sanspool_core::testkit::{secs, Cmd, Conn, Sim};
use sanspool_core::{Checkout, Config, Returned, Storage, Time, Wait};
use std::collections::BTreeSet;
use std::time::Duration;

on_both_backends! {
    lifetimes_are_jittered_within_bounds,
    expired_idle_connections_are_replaced_down_to_min,
    expired_idle_connection_is_not_handed_out,
    in_use_connection_is_closed_only_on_return,
    dirty_return_past_lifetime_is_closed_without_reset,
    max_idle_closes_oldest_idle_above_min,
    lifetime_past_the_end_of_time_never_ends,
}

/// `max_lifetime` with jitter: each connection gets a lifetime in
/// `[max_lifetime - lifetime_jitter, max_lifetime]`, and they differ.
fn lifetimes_are_jittered_within_bounds<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(60)),
        lifetime_jitter: Duration::from_secs(10),
        ..Config::new(5, 5)
    });
    sim.run_until(secs(61));
    let times: BTreeSet<Time> = (1..=5).map(|c| sim.closed[&c]).collect();
    assert_eq!(times.len(), 5, "{times:?}");
    assert!(times.iter().all(|t| (secs(50)..=secs(60)).contains(t)));
    let s = sim.stats();
    assert_eq!((s.expired, s.idle, s.opens), (5, 5, 10));
}

/// Idle connections past their lifetime are closed at expiry and replaced down to `min`.
fn expired_idle_connections_are_replaced_down_to_min<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(10)),
        ..Config::new(2, 4)
    });
    let conns: Vec<Conn> = (0..4).map(|_| sim.get(None).1).collect();
    for &c in &conns {
        sim.put(c, Returned::Clean);
    }
    assert_eq!(sim.pool().poll_timeout(), Some(secs(10)));
    sim.take_log();
    sim.advance_to(secs(10));
    let log = sim.take_log();
    let closes: BTreeSet<Conn> = conns.iter().copied().collect();
    assert_eq!(
        log.iter()
            .filter_map(|c| match c {
                Cmd::Close(c) => Some(*c),
                _ => None,
            })
            .collect::<BTreeSet<_>>(),
        closes
    );
    assert_eq!(log.iter().filter(|c| **c == Cmd::Open).count(), 2);
    let s = sim.stats();
    assert_eq!((s.expired, s.idle, s.size), (4, 2, 2));
}

/// A checkout never gets an idle connection past its lifetime: it is closed instead.
fn expired_idle_connection_is_not_handed_out<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(10)),
        ..Config::new(1, 2)
    });
    sim.take_log();
    sim.now = secs(10);
    let Ok(Checkout::Waiting(w)) = sim.checkout(None, Wait::No) else {
        panic!("the expired connection is not handed out")
    };
    assert_eq!(sim.take_log(), [Cmd::Close(1), Cmd::Open, Cmd::Grant(w, 2)]);
    assert_eq!(sim.stats().expired, 1);
}

/// A connection in use is never closed for age while in use, only when it comes back.
fn in_use_connection_is_closed_only_on_return<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(10)),
        ..Config::new(1, 1)
    });
    let (_, conn) = sim.get(None);
    sim.take_log();
    sim.run_until(secs(20));
    assert_eq!(sim.take_log(), []);
    assert_eq!(sim.pool().poll_timeout(), None);
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Close(conn), Cmd::Open]);
    assert_eq!(sim.stats().expired, 1);
}

/// A dirty connection returned past its lifetime is closed for age, not reset.
fn dirty_return_past_lifetime_is_closed_without_reset<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(10)),
        ..Config::new(0, 1)
    });
    let (_, conn) = sim.get(None);
    sim.advance_to(secs(10));
    sim.take_log();
    sim.put(conn, Returned::Dirty);
    assert_eq!(sim.take_log(), [Cmd::Close(conn)]);
    let s = sim.stats();
    assert_eq!((s.expired, s.resets), (1, 0));
}

/// `max_idle`: idle connections unused that long are closed, oldest first, only while more than
/// `min` are open.
fn max_idle_closes_oldest_idle_above_min<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_idle: Some(Duration::from_secs(10)),
        ..Config::new(1, 3)
    });
    let conns: Vec<Conn> = (0..3).map(|_| sim.get(None).1).collect();
    for &c in &conns {
        sim.put(c, Returned::Clean);
        sim.advance(Duration::from_secs(1));
    }
    sim.take_log();
    assert_eq!(sim.pool().poll_timeout(), Some(secs(10)));
    sim.advance_to(secs(10));
    assert_eq!(sim.take_log(), [Cmd::Close(conns[0])]);
    assert_eq!(sim.pool().poll_timeout(), Some(secs(11)));
    sim.advance_to(secs(11));
    assert_eq!(sim.take_log(), [Cmd::Close(conns[1])]);
    assert_eq!(sim.pool().poll_timeout(), None);
    sim.run_until(secs(1000));
    assert_eq!(sim.take_log(), []);
    let s = sim.stats();
    assert_eq!((s.expired, s.idle), (2, 1));
}

/// A lifetime that would end past the end of `Time` never ends: a connection opened near the end
/// of time is neither closed at once (as a saturated deadline would) nor ever after.
fn lifetime_past_the_end_of_time_never_ends<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(10)),
        ..Config::new(0, 1)
    });
    sim.now = Time::from_nanos(u64::MAX - secs(5).as_nanos());
    let (_, conn) = sim.get(None);
    sim.take_log();
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), []);
    assert_eq!(sim.pool().poll_timeout(), None);
    sim.advance_to(Time::from_nanos(u64::MAX));
    assert_eq!(sim.take_log(), []);
    assert_eq!(sim.get(None).1, conn);
    assert_eq!((sim.stats().expired, sim.stats().closes), (0, 0));
}
