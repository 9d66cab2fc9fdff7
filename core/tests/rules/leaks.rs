//! `leak_after` (HikariCP's leak detection): a borrower that holds a connection too long is
//! reported once per checkout, and keeps its connection.

use sanspool_core::testkit::{secs, Cmd, Conn, Sim};
use sanspool_core::{Config, Fairness, Returned, Storage, Wait};
use std::time::Duration;

on_both_backends! {
    a_borrower_past_leak_after_is_reported_once,
    a_connection_given_back_in_time_is_not_reported,
    a_grant_at_the_fairness_bound_is_reported_in_the_same_timeout,
}

fn watched() -> Config {
    Config {
        leak_after: Some(Duration::from_secs(5)),
        ..Config::new(0, 2)
    }
}

/// At `leak_after` the borrower is reported (`Command::Leak`, `Stats::leaks`), once; it keeps
/// its connection, and its next checkout is watched anew.
fn a_borrower_past_leak_after_is_reported_once<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(watched());
    let (_, conn) = sim.get(None);
    sim.advance_to(secs(1));
    let (_, other) = sim.get(None);
    assert_eq!(sim.pool().poll_timeout(), Some(secs(5)));
    sim.take_log();
    sim.run_until(secs(5));
    assert_eq!(sim.take_log(), [Cmd::Leak(conn)]);
    assert_eq!(sim.pool().poll_timeout(), Some(secs(6)));
    sim.run_until(secs(60));
    assert_eq!(sim.take_log(), [Cmd::Leak(other)]);
    assert_eq!(sim.stats().leaks, 2);
    assert_eq!(sim.stats().in_use, 2, "reported, not taken");
    sim.put(conn, Returned::Clean);
    let (_, again) = sim.get(None);
    assert_eq!(again, conn);
    assert_eq!(sim.pool().poll_timeout(), Some(secs(65)));
}

/// A connection back before `leak_after` is not reported, and leaves no deadline behind.
fn a_connection_given_back_in_time_is_not_reported<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(watched());
    let (_, conn) = sim.get(None);
    sim.advance_to(secs(4));
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.pool().poll_timeout(), None);
    sim.run_until(secs(60));
    assert_eq!(sim.stats().leaks, 0);
}

/// With `leak_after` zero, a connection granted by `handle_timeout` itself (an idle one nobody
/// claimed, at the fairness bound) is due at once: reported by that same `handle_timeout`, so no
/// deadline is left behind it (found by the fuzzer, at the end of time).
fn a_grant_at_the_fairness_bound_is_reported_in_the_same_timeout<S: Storage<Conn, u64>>() {
    let bound = Duration::from_millis(5);
    let mut sim = Sim::<S>::new(Config {
        leak_after: Some(Duration::ZERO),
        fairness: Fairness::Bounded(bound),
        ..Config::new(0, 1)
    });
    sim.auto_claim = false;
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Forever);
    sim.put(conn, Returned::Clean);
    sim.take_log();
    sim.advance(bound);
    assert_eq!(sim.take_log(), [Cmd::Grant(w, conn), Cmd::Leak(conn)]);
}
