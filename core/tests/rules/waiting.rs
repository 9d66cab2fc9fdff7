//! Queued checkouts: order, deadlines, bounds, cancels, keys, and what a grant says.

use crate::{backoff_config, strict};
use sanspool_core::testkit::{forge, secs, Cmd, Conn, Sim};
use sanspool_core::{Checkout, Config, Error, Fixed, Returned, Storage, Time, Wait, WaiterId};

on_both_backends! {
    waiters_are_granted_in_fifo_order,
    waiter_deadline_times_out,
    max_waiting_bounds_the_queue,
    cancel_removes_a_waiter,
    key_already_waiting_is_key_busy,
    returned_connection_goes_to_oldest_waiter,
    non_waiting_checkout_is_exhausted_when_its_open_serves_an_older_waiter,
    non_waiting_checkout_is_not_bounded_by_max_waiting,
}

/// Strict: waiters are granted in arrival order.
fn waiters_are_granted_in_fifo_order<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(strict(0, 1));
    let (_, conn) = sim.get(None);
    let w: Vec<WaiterId> = (0..3).map(|_| sim.wait(None, Wait::Forever)).collect();
    sim.take_log();
    for &waiter in &w {
        sim.put(conn, Returned::Clean);
        assert_eq!(sim.take_log(), [Cmd::Grant(waiter, conn)]);
    }
    assert_eq!(sim.stats().waits, 1 + 3);
}

/// A waiter's deadline: `poll_timeout` reports it; `handle_timeout` then fails it with `Timeout`.
fn waiter_deadline_times_out<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 1));
    sim.get(None);
    let late = sim.wait(None, Wait::Until(secs(9)));
    let w = sim.wait(None, Wait::Until(secs(5)));
    assert_eq!(sim.pool().poll_timeout(), Some(secs(5)));
    sim.take_log();
    sim.advance_to(Time::from_nanos(secs(5).as_nanos() - 1));
    assert_eq!(sim.take_log(), []);
    sim.advance_to(secs(5));
    assert_eq!(sim.take_log(), [Cmd::Fail(w, Error::Timeout)]);
    assert_eq!(
        Error::Timeout.to_string(),
        "timed out waiting for a connection"
    );
    assert_eq!((sim.stats().timeouts, sim.stats().waiting), (1, 1));
    assert_eq!(sim.pool().poll_timeout(), Some(secs(9)));
    sim.run_until(secs(100));
    assert_eq!(sim.take_log(), [Cmd::Fail(late, Error::Timeout)]);
    assert_eq!(sim.pool().poll_timeout(), None);
}

/// More than `max_waiting` queued checkouts: `TooManyWaiters`, and nothing changes.
fn max_waiting_bounds_the_queue<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_waiting: 2,
        ..Config::new(0, 1)
    });
    sim.get(None);
    let w = sim.wait(None, Wait::Forever);
    sim.wait(None, Wait::Until(secs(1)));
    let err = sim.unchanged(|s| s.checkout(None, Wait::Forever));
    assert_eq!(err, Err(Error::TooManyWaiters));
    assert_eq!(
        err.unwrap_err().to_string(),
        "too many waiters for a connection"
    );
    let err = sim.unchanged(|s| s.checkout(Some(1), Wait::Until(secs(5))));
    assert_eq!(err, Err(Error::TooManyWaiters));
    sim.cancel(w).unwrap();
    sim.wait(None, Wait::Forever);
}

/// A driver's timeout as a `Wait`: none does not wait, a deadline past the end of time is none.
#[test]
fn a_timeout_becomes_a_wait() {
    let t = Time::from_nanos(5);
    assert_eq!(Wait::within(t, None), Wait::No);
    assert_eq!(
        Wait::within(t, Some(std::time::Duration::from_nanos(7))),
        Wait::Until(Time::from_nanos(12))
    );
    let late = Time::from_nanos(u64::MAX - 1);
    assert_eq!(
        Wait::within(late, Some(std::time::Duration::from_nanos(1))),
        Wait::Until(Time::from_nanos(u64::MAX))
    );
    assert_eq!(
        Wait::within(late, Some(std::time::Duration::from_nanos(2))),
        Wait::Forever
    );
    assert_eq!(
        Wait::within(t, Some(std::time::Duration::MAX)),
        Wait::Forever
    );
}

/// The fixed backend bounds waiters by its `WAITERS` capacity too.
#[test]
fn fixed_waiter_capacity_bounds_the_queue() {
    let mut sim = Sim::<Fixed<4, 2>>::new(Config::new(0, 1));
    sim.get(None);
    sim.wait(None, Wait::Forever);
    sim.wait(None, Wait::Forever);
    let err = sim.unchanged(|s| s.checkout(None, Wait::Forever));
    assert_eq!(err, Err(Error::TooManyWaiters));
}

/// `cancel` removes a waiter (and its key); an unknown or served waiter is `UnknownWaiter`.
fn cancel_removes_a_waiter<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(strict(0, 1));
    let (_, conn) = sim.get(None);
    let w1 = sim.wait(Some(4), Wait::Forever);
    let w2 = sim.wait(None, Wait::Forever);
    sim.cancel(w1).unwrap();
    assert_eq!(sim.stats().waiting, 1);
    sim.take_log();
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(w2, conn)]);
    assert_eq!(sim.unchanged(|s| s.cancel(w1)), Err(Error::UnknownWaiter));
    assert_eq!(sim.unchanged(|s| s.cancel(w2)), Err(Error::UnknownWaiter));
    let never = forge::waiter(99);
    assert_eq!(
        sim.unchanged(|s| s.cancel(never)),
        Err(Error::UnknownWaiter)
    );
    sim.wait(Some(4), Wait::Forever);
}

/// A checkout with a key that already has a checkout waiting is `KeyBusy`.
fn key_already_waiting_is_key_busy<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 1));
    let (_, conn) = sim.get(None);
    let w = sim.wait(Some(3), Wait::Forever);
    let err = sim.unchanged(|s| s.checkout(Some(3), Wait::Forever));
    assert_eq!(err, Err(Error::KeyBusy));
    assert_eq!(
        sim.unchanged(|s| s.checkout(Some(3), Wait::No)),
        Err(Error::KeyBusy)
    );
    sim.put(conn, Returned::Clean);
    let (lease, _) = sim.grants[&w];
    assert_eq!(sim.checkout(Some(3), Wait::No), Ok(Checkout::Held(lease)));
}

/// Strict: a connection returned while checkouts wait goes to the oldest one directly, never idle.
fn returned_connection_goes_to_oldest_waiter<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(strict(1, 1));
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Forever);
    sim.wait(None, Wait::Forever);
    sim.take_log();
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(w, conn)]);
    let s = sim.stats();
    assert_eq!((s.idle, s.in_use, s.waiting), (0, 1, 1));
}

/// A checkout that will not wait orders its own open, but opens serve the oldest waiter: when that
/// is someone else and no room is left, it fails with `Exhausted` instead of waiting for ever.
fn non_waiting_checkout_is_exhausted_when_its_open_serves_an_older_waiter<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(backoff_config(0, 1));
    sim.fail_opens = 1;
    let older = sim.wait(None, Wait::Forever);
    assert_eq!(sim.stats().open_failures, 1);
    let eager = match sim.checkout(None, Wait::No) {
        Ok(Checkout::Waiting(w)) => w,
        other => panic!("expected a queued checkout, got {other:?}"),
    };
    assert_eq!(sim.fails.get(&eager), Some(&Error::Exhausted));
    assert!(sim.grants.contains_key(&older));
    assert_eq!(sim.stats().waiting, 0);
}

/// `max_waiting` bounds checkouts that wait; one that will not is only queued for the open it
/// triggers, so even `max_waiting = 0` lets psycopg2's getconn open on demand.
fn non_waiting_checkout_is_not_bounded_by_max_waiting<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_waiting: 0,
        ..Config::new(0, 2)
    });
    let (_, first) = sim.get(None);
    assert_eq!(first, 1);
    let out = sim.unchanged(|s| s.checkout(None, Wait::Forever));
    assert_eq!(out, Err(Error::TooManyWaiters));
    assert_eq!(sim.get(None).1, 2);
}
