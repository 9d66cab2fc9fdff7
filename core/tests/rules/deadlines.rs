//! `poll_timeout` stays exact as the waiter or idle connection holding the earliest deadline
//! leaves (cancelled, granted, timed out, checked out, sent for a check): the next deadline is the
//! earliest of those left, never a stale one that would wake the driver for nothing.

use crate::backoff_config;
use sanspool_core::testkit::{ms, secs, Conn, Sim};
use sanspool_core::{Config, IdleOrder, Returned, Storage, Wait};
use std::time::Duration;

on_both_backends! {
    poll_timeout_follows_waiter_deadlines_as_waiters_leave,
    poll_timeout_follows_idle_lifetimes_as_connections_leave,
    poll_timeout_follows_max_idle_as_the_oldest_idle_leaves,
    poll_timeout_drops_a_backoff_nobody_needs,
}

/// Three waiters with deadlines 50/100/150 ms: whichever way the 50 ms one leaves (cancelled,
/// granted, timed out), the next deadline is 100 ms; a later one leaving changes nothing.
fn poll_timeout_follows_waiter_deadlines_as_waiters_leave<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 1));
    let (_, conn) = sim.get(None);
    let wait = |t| Wait::Until(ms(t));

    // Cancelled.
    let w50 = sim.wait(None, wait(50));
    let w100 = sim.wait(None, wait(100));
    let w150 = sim.wait(None, wait(150));
    assert_eq!(sim.pool().poll_timeout(), Some(ms(50)));
    sim.cancel(w50).unwrap();
    assert_eq!(sim.pool().poll_timeout(), Some(ms(100)));
    sim.cancel(w150).unwrap();
    assert_eq!(sim.pool().poll_timeout(), Some(ms(100)));
    sim.cancel(w100).unwrap();
    assert_eq!(sim.pool().poll_timeout(), None);

    // Granted, oldest first.
    let w50 = sim.wait(None, wait(50));
    sim.wait(None, wait(100));
    sim.wait(None, wait(150));
    assert_eq!(sim.pool().poll_timeout(), Some(ms(50)));
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.grants[&w50].1, conn);
    assert_eq!(sim.pool().poll_timeout(), Some(ms(100)));
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.pool().poll_timeout(), Some(ms(150)));
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.pool().poll_timeout(), None);

    // Deadlines out of arrival order: the grant goes to the oldest (150 ms), the earliest
    // deadline leaves by cancel, then by timing out.
    let w150 = sim.wait(None, wait(150));
    let w50 = sim.wait(None, wait(50));
    let w100 = sim.wait(None, wait(100));
    let w120 = sim.wait(None, wait(120));
    assert_eq!(sim.pool().poll_timeout(), Some(ms(50)));
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.grants[&w150].1, conn);
    assert_eq!(sim.pool().poll_timeout(), Some(ms(50)));
    sim.cancel(w50).unwrap();
    assert_eq!(sim.pool().poll_timeout(), Some(ms(100)));
    sim.advance_to(ms(100));
    assert!(sim.fails.contains_key(&w100));
    assert_eq!(sim.pool().poll_timeout(), Some(ms(120)));
    sim.cancel(w120).unwrap();
    assert_eq!(sim.pool().poll_timeout(), None);
}

/// Connections expiring at 1000/1010/1020 ms: checking out the earliest-expiring idle one moves
/// the deadline to the next; returning it brings its own back; sending idle ones for a check
/// takes theirs away until they are back.
fn poll_timeout_follows_idle_lifetimes_as_connections_leave<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(1)),
        ..Config::new(0, 3)
    });
    let (_, c1) = sim.get(None);
    sim.now = ms(10);
    let (_, c2) = sim.get(None);
    sim.now = ms(20);
    let (_, c3) = sim.get(None);
    // In use, none of them sets a deadline.
    assert_eq!(sim.pool().poll_timeout(), None);
    // Returned newest-expiring first, so LIFO hands out the earliest-expiring first.
    for c in [c3, c2, c1] {
        sim.put(c, Returned::Clean);
    }
    assert_eq!(sim.pool().poll_timeout(), Some(ms(1000)));
    assert_eq!(sim.get(None).1, c1);
    assert_eq!(sim.pool().poll_timeout(), Some(ms(1010)));
    assert_eq!(sim.get(None).1, c2);
    assert_eq!(sim.pool().poll_timeout(), Some(ms(1020)));
    sim.put(c1, Returned::Clean);
    assert_eq!(sim.pool().poll_timeout(), Some(ms(1000)));

    sim.auto_reset = false;
    assert_eq!(sim.check_idle(), Ok(2));
    assert_eq!(sim.pool().poll_timeout(), None);
    sim.check_next();
    sim.check_next();
    assert_eq!(sim.pool().poll_timeout(), Some(ms(1000)));
    sim.advance_to(ms(1000));
    assert_eq!(sim.closed.keys().copied().collect::<Vec<_>>(), [c1]);
    assert_eq!(sim.pool().poll_timeout(), Some(ms(1020)));
}

/// `max_idle` (FIFO, so the oldest idle goes out first): checking out the connection idle the
/// longest moves the deadline to the next one's.
fn poll_timeout_follows_max_idle_as_the_oldest_idle_leaves<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_idle: Some(Duration::from_secs(10)),
        idle_order: IdleOrder::Fifo,
        ..Config::new(0, 3)
    });
    let conns: Vec<Conn> = (0..3).map(|_| sim.get(None).1).collect();
    for &c in &conns {
        sim.put(c, Returned::Clean);
        sim.advance(Duration::from_secs(1));
    }
    assert_eq!(sim.pool().poll_timeout(), Some(secs(10)));
    assert_eq!(sim.get(None).1, conns[0]);
    assert_eq!(sim.pool().poll_timeout(), Some(secs(11)));
    assert_eq!(sim.get(None).1, conns[1]);
    assert_eq!(sim.pool().poll_timeout(), Some(secs(12)));
    sim.now = secs(5);
    sim.put(conns[0], Returned::Clean);
    assert_eq!(sim.pool().poll_timeout(), Some(secs(12)));
    assert_eq!(sim.get(None).1, conns[2]);
    assert_eq!(sim.pool().poll_timeout(), Some(secs(15)));
}

/// A backoff deadline matters only while an open is wanted: once the waiter that wanted it
/// leaves, `poll_timeout` no longer reports it.
fn poll_timeout_drops_a_backoff_nobody_needs<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(backoff_config(0, 1));
    sim.fail_opens = 1;
    let w = sim.wait(None, Wait::Until(ms(500)));
    assert_eq!(sim.stats().open_failures, 1);
    assert_eq!(sim.pool().poll_timeout(), Some(ms(100)));
    sim.cancel(w).unwrap();
    assert_eq!(sim.pool().poll_timeout(), None);
    sim.run_until(secs(10));
    assert_eq!(sim.stats().opens, 0);
}
