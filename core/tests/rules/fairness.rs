//! `Fairness::Bounded`: a returned connection goes idle and wakes the oldest waiter to claim it; a
//! running checkout may take it first, until the oldest waiter has waited the bound — then the
//! line is served strictly, until it drains or a waiter is served in under half the bound.
//! (Strict hand-off is in `waiting.rs`.)

use sanspool_core::testkit::{ms, Cmd, Conn, Sim};
use sanspool_core::{Checkout, Config, Error, Fairness, Returned, Storage, Time, Wait, WaiterId};
use std::time::Duration;

on_both_backends! {
    returned_connection_wakes_the_oldest_waiter_who_claims_it,
    a_running_checkout_may_take_a_returned_connection_first,
    past_the_bound_a_returned_connection_is_granted,
    an_unclaimed_connection_is_granted_at_the_bound,
    a_newcomer_queues_behind_a_waiter_past_the_bound,
    a_younger_claimer_yields_to_an_older_waiter_past_the_bound,
    a_waiter_that_leaves_takes_its_undrained_wake,
    a_woken_waiter_that_times_out_can_no_longer_claim,
    as_many_are_woken_as_connections_are_idle,
    a_waiter_served_at_the_bound_turns_the_line_strict,
    a_waiter_served_in_under_half_the_bound_ends_the_strict_phase,
    a_waiter_served_after_half_the_bound_keeps_the_line_strict,
    a_line_that_drains_is_no_longer_strict,
}

/// The bound of these tests: 0.7 ms, the default.
const BOUND: Duration = Duration::from_micros(700);

fn bounded(min: usize, max: usize) -> Config {
    let config = Config::new(min, max);
    assert_eq!(config.fairness, Fairness::Bounded(BOUND), "the default");
    config
}

/// A connection given back while a checkout waits goes idle and wakes it; its claim serves it.
fn returned_connection_wakes_the_oldest_waiter_who_claims_it<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(bounded(0, 1));
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Forever);
    let younger = sim.wait(None, Wait::Forever);
    sim.take_log();
    sim.put(conn, Returned::Clean);
    // The Sim claims for a woken waiter once the commands are drained.
    assert_eq!(sim.take_log(), [Cmd::Wake(w)]);
    assert_eq!(sim.grants[&w].1, conn);
    let s = sim.stats();
    // Two waits: the getconn's, for its open, and this one.
    assert_eq!((s.idle, s.in_use, s.waiting, s.waits), (0, 1, 1, 2));
    assert!(sim.waiting.contains(&younger));
}

/// Go's normal mode: a checkout that is running takes the idle connection ahead of the woken
/// waiter, whose claim then leaves it queued in its place, and woken again by the next return.
fn a_running_checkout_may_take_a_returned_connection_first<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(bounded(0, 1));
    sim.auto_claim = false;
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Forever);
    sim.take_log();
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Wake(w)]);
    assert_eq!((sim.stats().idle, sim.stats().waiting), (1, 1));
    assert_eq!(sim.pool().poll_timeout(), Some(ms(0).saturating_add(BOUND)));
    let barged = sim.checkout(None, Wait::Forever);
    assert!(matches!(barged, Ok(Checkout::Ready { conn: c, .. }) if c == conn));
    assert_eq!(sim.claim(w), Ok(Checkout::Waiting(w)));
    assert_eq!(sim.pool().poll_timeout(), None);
    assert_eq!(sim.take_log(), []);
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Wake(w)]);
    assert!(matches!(sim.claim(w), Ok(Checkout::Ready { conn: c, .. }) if c == conn));
    assert_eq!(sim.stats().waiting, 0);
}

/// Once the oldest waiter has waited the bound, a returned connection is granted to it.
fn past_the_bound_a_returned_connection_is_granted<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(bounded(0, 1));
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Forever);
    sim.advance(BOUND);
    sim.take_log();
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(w, conn)]);
}

/// A connection nobody claims is granted to the oldest waiter when it reaches the bound:
/// `poll_timeout` names that moment.
fn an_unclaimed_connection_is_granted_at_the_bound<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(bounded(0, 1));
    sim.auto_claim = false;
    let (_, conn) = sim.get(None);
    sim.advance(Duration::from_micros(300));
    let w = sim.wait(None, Wait::Forever);
    let since = sim.now;
    sim.take_log();
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Wake(w)]);
    assert_eq!(sim.pool().poll_timeout(), Some(since.saturating_add(BOUND)));
    sim.advance_to(Time::from_nanos(
        (since.saturating_add(BOUND)).as_nanos() - 1,
    ));
    assert_eq!(sim.take_log(), []);
    sim.advance_to(since.saturating_add(BOUND));
    assert_eq!(sim.take_log(), [Cmd::Grant(w, conn)]);
    assert_eq!(sim.claim(w), Err(Error::UnknownWaiter));
}

/// Past the bound, a newcomer does not take the idle connection: the oldest waiter gets it, even
/// before `handle_timeout` was called.
fn a_newcomer_queues_behind_a_waiter_past_the_bound<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(bounded(0, 1));
    sim.auto_claim = false;
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Forever);
    sim.put(conn, Returned::Clean);
    sim.take_log();
    sim.now = sim.now.saturating_add(BOUND);
    let newcomer = sim.wait(None, Wait::Forever);
    assert_eq!(sim.take_log(), [Cmd::Grant(w, conn)]);
    assert!(sim.waiting.contains(&newcomer));
}

/// A younger waiter's claim does not serve it while an older one is past the bound: the older
/// one is granted first; served at the bound, it leaves the line strict, so the younger gets
/// what is left by a grant too, and its claim finds it served.
fn a_younger_claimer_yields_to_an_older_waiter_past_the_bound<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(bounded(0, 2));
    sim.auto_claim = false;
    let (_, c1) = sim.get(None);
    let (_, c2) = sim.get(None);
    let older = sim.wait(None, Wait::Forever);
    sim.advance(Duration::from_micros(500));
    let younger = sim.wait(None, Wait::Forever);
    sim.take_log();
    sim.put(c1, Returned::Clean);
    sim.put(c2, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Wake(older), Cmd::Wake(younger)]);
    sim.now = sim.now.saturating_add(Duration::from_micros(500));
    assert_eq!(sim.claim(younger), Ok(Checkout::Waiting(younger)));
    assert_eq!(
        sim.take_log(),
        [Cmd::Grant(older, c2), Cmd::Grant(younger, c1)],
        "LIFO: the most recently returned goes first"
    );
    assert_eq!(sim.claim(younger), Err(Error::UnknownWaiter));
}

/// A waiter that leaves the line (cancelled, here) before its wake is drained takes the wake.
fn a_waiter_that_leaves_takes_its_undrained_wake<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(bounded(0, 1));
    sim.auto_claim = false;
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Forever);
    sim.take_log();
    sim.auto_poll = false;
    sim.put(conn, Returned::Clean);
    sim.cancel(w).unwrap();
    sim.poll();
    assert_eq!(sim.take_log(), []);
    assert_eq!((sim.stats().idle, sim.stats().waiting), (1, 0));
}

/// A woken waiter whose deadline passes before it claims fails with `Timeout`; its claim is then
/// `UnknownWaiter`, and the connection stays idle for the next checkout.
fn a_woken_waiter_that_times_out_can_no_longer_claim<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        fairness: Fairness::Bounded(Duration::from_secs(10)),
        ..Config::new(0, 1)
    });
    sim.auto_claim = false;
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Until(ms(5)));
    sim.take_log();
    sim.put(conn, Returned::Clean);
    sim.advance_to(ms(5));
    assert_eq!(sim.take_log(), [Cmd::Wake(w), Cmd::Fail(w, Error::Timeout)]);
    assert_eq!(sim.unchanged(|s| s.claim(w)), Err(Error::UnknownWaiter));
    assert!(
        matches!(sim.checkout(None, Wait::No), Ok(Checkout::Ready { conn: c, .. }) if c == conn)
    );
}

/// Two connections back, three waiting: the two oldest are woken, not the third.
fn as_many_are_woken_as_connections_are_idle<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(bounded(0, 2));
    sim.auto_claim = false;
    let (_, c1) = sim.get(None);
    let (_, c2) = sim.get(None);
    let w: Vec<_> = (0..3).map(|_| sim.wait(None, Wait::Forever)).collect();
    sim.take_log();
    sim.put(c1, Returned::Clean);
    sim.put(c2, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Wake(w[0]), Cmd::Wake(w[1])]);
    // The second claims first: woken waiters run in any order.
    assert!(matches!(sim.claim(w[1]), Ok(Checkout::Ready { .. })));
    assert!(matches!(sim.claim(w[0]), Ok(Checkout::Ready { .. })));
    assert_eq!(sim.take_log(), []);
    assert_eq!(sim.stats().waiting, 1);
}

/// One connection lent, and waiters queued at these offsets (µs) from now, one each; the clock
/// is then moved `then` µs further.
fn line_at<S: Storage<Conn, u64>>(offsets: &[u64], then: u64) -> (Sim<S>, Conn, Vec<WaiterId>) {
    let mut sim = Sim::<S>::new(bounded(0, 1));
    sim.auto_claim = false;
    let (_, conn) = sim.get(None);
    let start = sim.now;
    let waiters = offsets
        .iter()
        .map(|&us| {
            sim.advance_to(start.saturating_add(Duration::from_micros(us)));
            sim.wait(None, Wait::Forever)
        })
        .collect();
    sim.advance(Duration::from_micros(then));
    sim.take_log();
    (sim, conn, waiters)
}

/// Go's starvation mode: the oldest waiter served at the bound, the next connection given back
/// goes to the next waiter by a grant, though it has waited less than the bound — a running
/// checkout would have taken it, and pushed that waiter to the bound too.
fn a_waiter_served_at_the_bound_turns_the_line_strict<S: Storage<Conn, u64>>() {
    let (mut sim, conn, w) = line_at::<S>(&[0, 600], 100);
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(w[0], conn)]);
    // The younger waiter has waited 100 µs: without the strict phase it would be woken, and the
    // connection idle for whoever runs first.
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(w[1], conn)]);
}

/// A waiter served in under half the bound (350 µs of 700) ends the strict phase: the line moves
/// fast, a returned connection goes idle and wakes the next waiter again, and a running checkout
/// may take it first.
fn a_waiter_served_in_under_half_the_bound_ends_the_strict_phase<S: Storage<Conn, u64>>() {
    let (mut sim, conn, w) = line_at::<S>(&[0, 600, 700], 0);
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(w[0], conn)]);
    sim.advance(Duration::from_micros(249));
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(w[1], conn)], "strict: 349 µs");
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Wake(w[2])]);
    let barged = sim.checkout(None, Wait::Forever);
    assert!(matches!(barged, Ok(Checkout::Ready { conn: c, .. }) if c == conn));
    assert_eq!(sim.claim(w[2]), Ok(Checkout::Waiting(w[2])));
}

/// Served after half the bound or more, a waiter leaves the line strict.
fn a_waiter_served_after_half_the_bound_keeps_the_line_strict<S: Storage<Conn, u64>>() {
    let (mut sim, conn, w) = line_at::<S>(&[0, 600, 700], 0);
    sim.put(conn, Returned::Clean);
    sim.advance(Duration::from_micros(250));
    sim.put(conn, Returned::Clean);
    sim.put(conn, Returned::Clean);
    assert_eq!(
        sim.take_log(),
        [
            Cmd::Grant(w[0], conn),
            Cmd::Grant(w[1], conn),
            Cmd::Grant(w[2], conn)
        ],
        "the second served after 350 µs, half the bound"
    );
}

/// The strict phase ends with the line: the next waiter, queued after it drained, is woken to
/// claim a returned connection, and a running checkout may take it first.
fn a_line_that_drains_is_no_longer_strict<S: Storage<Conn, u64>>() {
    // The last waiter is served after 400 µs: only the line's end ends the strict phase.
    let (mut sim, conn, w) = line_at::<S>(&[0, 300], 400);
    sim.put(conn, Returned::Clean);
    sim.put(conn, Returned::Clean);
    assert_eq!(
        sim.take_log(),
        [Cmd::Grant(w[0], conn), Cmd::Grant(w[1], conn)]
    );
    assert_eq!(sim.stats().waiting, 0);
    let next = sim.wait(None, Wait::Forever);
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Wake(next)]);
}
