//! psycopg2's `closeall`: waiters fail, idle connections close at once, the others as they come
//! back, and nothing is owed afterwards.

use crate::refused;
use sanspool_core::testkit::{secs, Cmd, Conn, Sim};
use sanspool_core::{Config, Error, Returned, Storage, Wait};

on_both_backends! {
    close_fails_every_waiter,
    close_closes_idle_at_once,
    close_cancels_undrained_opens,
    close_closes_in_use_on_checkin,
    open_completing_after_close_is_closed,
    second_close_is_closed,
    closed_pool_is_empty_once_closes_are_reported,
    close_emits_nothing_owed_and_ends_warmth,
}

/// `close()` fails every waiter with `Closed`, oldest first.
fn close_fails_every_waiter<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 1));
    sim.get(None);
    let w1 = sim.wait(None, Wait::Forever);
    let w2 = sim.wait(Some(3), Wait::Until(secs(10)));
    sim.take_log();
    sim.close().unwrap();
    assert_eq!(
        sim.take_log(),
        [Cmd::Fail(w1, Error::Closed), Cmd::Fail(w2, Error::Closed)]
    );
    assert_eq!(sim.stats().waiting, 0);
    assert_eq!(sim.pool().poll_timeout(), None);
}

/// `close()` closes idle connections at once.
fn close_closes_idle_at_once<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 2));
    sim.take_log();
    sim.close().unwrap();
    assert_eq!(sim.take_log(), [Cmd::Close(1), Cmd::Close(2)]);
    assert!(sim.pool().is_empty());
}

/// `close()` cancels opens not drained yet: no `Open` is ever drained after close.
fn close_cancels_undrained_opens<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::undrained(Config::new(3, 3));
    assert_eq!(sim.stats().opening, 3);
    sim.close().unwrap();
    let s = sim.stats();
    assert_eq!((s.opening, s.size), (0, 0));
    sim.poll();
    assert_eq!(sim.take_log(), []);
    assert!(sim.pool().is_empty());
}

/// A checkin after `close()` is refused with `Closed`, but the pool takes the connection and
/// closes it.
fn close_closes_in_use_on_checkin<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (lease, conn) = sim.get(Some(4));
    sim.take_log();
    sim.close().unwrap();
    assert_eq!(sim.take_log(), []);
    let (error, back) = refused(sim.checkin(lease, Some(&4), conn, Returned::Clean));
    assert_eq!((error, back), (Error::Closed, None));
    assert_eq!(error.to_string(), "connection pool is closed");
    assert_eq!(sim.take_log(), [Cmd::Close(conn)]);
    assert!(sim.pool().is_empty());
}

/// An open drained before `close()` and completing after it is closed at once.
fn open_completing_after_close_is_closed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::manual(Config::new(2, 2));
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Open]);
    sim.close().unwrap();
    sim.auto_close = true;
    sim.open_next();
    assert_eq!(sim.take_log(), [Cmd::Close(1)]);
    sim.fail_opens = 1;
    sim.open_next();
    assert_eq!(sim.take_log(), []);
    assert!(sim.pool().is_empty());
}

/// A second `close()` is `Closed`; so are drain, resize and check_idle.
fn second_close_is_closed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 2));
    sim.close().unwrap();
    assert_eq!(sim.unchanged(|s| s.close()), Err(Error::Closed));
    assert_eq!(sim.unchanged(|s| s.drain()), Err(Error::Closed));
    assert_eq!(sim.unchanged(|s| s.resize(1, 3)), Err(Error::Closed));
    assert_eq!(sim.unchanged(|s| s.check_idle()), Err(Error::Closed));
    assert!(sim.pool().is_closed());
}

/// After `close()`, `is_empty()` turns true once every connection came back and its close was
/// reported: in-use, resetting and opening ones included.
fn closed_pool_is_empty_once_closes_are_reported<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 4));
    let (_, a) = sim.get(None);
    let (_, b) = sim.get(None);
    let (_, c) = sim.get(None);
    sim.auto_reset = false;
    sim.auto_open = false;
    sim.auto_close = false;
    sim.put(c, Returned::Dirty);
    sim.wait(None, Wait::Forever);
    sim.take_log();
    sim.close().unwrap();
    assert!(!sim.pool().is_empty());
    sim.checkin(sim.lease(a), None, a, Returned::Clean)
        .unwrap_err();
    sim.checkin(sim.lease(b), None, b, Returned::Broken)
        .unwrap_err();
    sim.reset_next();
    sim.open_next();
    assert_eq!(
        sim.take_log()[1..],
        [Cmd::Close(a), Cmd::Close(b), Cmd::Close(c), Cmd::Close(4)]
    );
    assert_eq!(sim.stats().broken_returns, 0);
    while !sim.closes.is_empty() {
        assert!(!sim.pool().is_empty());
        sim.close_next();
    }
    assert!(sim.pool().is_empty());
    assert_eq!(sim.stats().size, 0);
}

/// Nothing is owed after close: a pool warm from the start (`min = 0`) has no command left to
/// drain once closed, and is no longer warm.
fn close_emits_nothing_owed_and_ends_warmth<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::undrained(Config::new(0, 1));
    assert!(sim.pool().is_warm());
    sim.close().unwrap();
    sim.poll();
    assert_eq!(sim.take_log(), []);
    assert!(!sim.pool().is_warm());
    assert!(sim.pool().is_closed());
    assert!(sim.pool().is_empty());
}
