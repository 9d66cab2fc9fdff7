//! Vetting ([`Config::vet`]): an idle connection goes out for an `Io::Vet` before a checkout
//! gets it, and is granted to the oldest waiter once it passes; one that fails is closed and the
//! next one vetted. The checkouts wait meanwhile, each up to its own deadline.

use crate::{strict, vetting};
use sanspool_core::testkit::{Cmd, Conn, Sim};
use sanspool_core::{Checkout, Config, Error, Fairness, Returned, Storage, Wait};
use std::time::Duration;

on_both_backends! {
    an_idle_connection_is_vetted_then_granted,
    a_failed_vet_closes_it_and_vets_the_next,
    the_last_failed_vet_opens_a_replacement,
    a_deadline_holds_during_a_vet_and_the_connection_keeps_its_place,
    connections_just_used_or_opened_are_not_vetted,
    a_vet_is_for_the_checkout_it_was_sent_for,
    a_running_checkout_may_take_an_idle_one_first_through_its_vet,
    a_failed_vet_under_a_fairness_bound_wakes_its_checkout_to_claim_the_next,
    getconn_waits_for_the_vet_or_is_exhausted,
    a_checkout_served_by_a_vet_is_not_bounded_by_max_waiting,
    a_vet_that_comes_back_after_close_is_closed,
}

/// The checkout queues; the idle connection goes out for a vet; once it passes it is the
/// checkout's, by grant. Counted: one vet, one wait.
fn an_idle_connection_is_vetted_then_granted<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(vetting(1, 2));
    sim.auto_reset = false;
    sim.take_log();
    let w = sim.wait(None, Wait::Forever);
    assert_eq!(sim.take_log(), [Cmd::Vet(1)]);
    assert_eq!((sim.stats().idle, sim.stats().resetting), (0, 1));
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Grant(w, 1)]);
    let s = sim.stats();
    assert_eq!((s.vets, s.stale, s.checkouts, s.waits), (1, 0, 1, 1));
}

/// A vet that fails closes the connection (counted stale) and vets the next idle one, in the
/// idle order (LIFO: the most recently returned first) — strictly ordered: at once.
fn a_failed_vet_closes_it_and_vets_the_next<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        vet: true,
        ..strict(2, 2)
    });
    (sim.auto_reset, sim.auto_open) = (false, false);
    sim.take_log();
    let w = sim.wait(None, Wait::Forever);
    assert_eq!(sim.take_log(), [Cmd::Vet(2)]);
    sim.fail_resets = 1;
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Close(2), Cmd::Vet(1), Cmd::Open]);
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Grant(w, 1)]);
    sim.open_next();
    let s = sim.stats();
    assert_eq!((s.vets, s.stale, s.idle, s.in_use), (2, 1, 1, 1));
}

/// When the last idle connection fails its vet, the waiter's replacement is opened for it.
fn the_last_failed_vet_opens_a_replacement<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        refill: false,
        ..vetting(1, 1)
    });
    sim.auto_reset = false;
    sim.take_log();
    let w = sim.wait(None, Wait::Forever);
    sim.fail_resets = 1;
    sim.check_next();
    assert_eq!(
        sim.take_log(),
        [Cmd::Vet(1), Cmd::Close(1), Cmd::Open, Cmd::Grant(w, 2)]
    );
}

/// The waiter's deadline fires while its connection is out for a vet: it fails at its deadline,
/// not when the vet ends. The vetted connection then goes back to its old place among the idle
/// (a vet is not a use).
fn a_deadline_holds_during_a_vet_and_the_connection_keeps_its_place<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        idle_order: sanspool_core::IdleOrder::Fifo,
        ..vetting(2, 2)
    });
    sim.auto_reset = false;
    sim.take_log();
    let deadline = sim.pool().now().saturating_add(Duration::from_millis(10));
    let w = sim.wait(None, Wait::Until(deadline));
    assert_eq!(sim.take_log(), [Cmd::Vet(1)]);
    assert_eq!(sim.pool().poll_timeout(), Some(deadline));
    sim.advance_to(deadline);
    assert_eq!(sim.take_log(), [Cmd::Fail(w, Error::Timeout)]);
    sim.check_next();
    assert_eq!(sim.take_log(), []);
    assert_eq!(sim.stats().idle, 2);
    // Still the least recently returned: FIFO vets it first again.
    sim.wait(None, Wait::Forever);
    assert_eq!(sim.take_log(), [Cmd::Vet(1)]);
}

/// A connection handed over by a checkin straight to the oldest waiter (strict fairness, or a
/// waiter past the bound) is not vetted: it was in use a moment ago; one opened for a waiter
/// neither.
fn connections_just_used_or_opened_are_not_vetted<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        vet: true,
        ..strict(0, 1)
    });
    sim.take_log();
    let first = sim.wait(None, Wait::Forever);
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Grant(first, 1)]);
    let second = sim.wait(None, Wait::Forever);
    sim.take_log();
    sim.put(1, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(second, 1)]);
    assert_eq!(sim.stats().vets, 0);
}

/// A vet serves the checkout it was sent for, not the oldest: the oldest waiter's vet is under
/// way when a returned connection goes idle (under the fairness bound), so the next waiter is
/// woken, claims it, and it goes out for a vet for that one. A vetting waiter is never woken.
fn a_vet_is_for_the_checkout_it_was_sent_for<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        fairness: Fairness::Bounded(Duration::from_millis(100)),
        ..vetting(2, 2)
    });
    let (_, held) = sim.get(None);
    assert_eq!(held, 2);
    sim.auto_reset = false;
    sim.take_log();
    let old = sim.wait(None, Wait::Forever);
    let young = sim.wait(None, Wait::Forever);
    assert_eq!(sim.take_log(), [Cmd::Vet(1)]);
    sim.put(held, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Wake(young), Cmd::Vet(2)]);
    // The younger one's vet passes first: it is the younger one's.
    let (ticket, conn) = sim.checks.remove(1);
    assert_eq!(conn, 2);
    sim.checks.insert(0, (ticket, conn));
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Grant(young, 2)]);
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Grant(old, 1)]);
    assert_eq!(sim.stats().vets, 3);
}

/// Barging, as without vetting: a connection comes back idle while a checkout waits under the
/// bound; a running checkout gets there first, and the vet it starts is its own.
fn a_running_checkout_may_take_an_idle_one_first_through_its_vet<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        fairness: Fairness::Bounded(Duration::from_millis(100)),
        ..vetting(1, 1)
    });
    let (_, held) = sim.get(None);
    (sim.auto_reset, sim.auto_claim) = (false, false);
    let waiting = sim.wait(None, Wait::Forever);
    sim.take_log();
    sim.put(held, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Wake(waiting)]);
    let runner = sim.wait(None, Wait::Forever);
    assert_eq!(sim.take_log(), [Cmd::Vet(held)]);
    assert_eq!(
        sim.claim(waiting),
        Ok(Checkout::Waiting(waiting)),
        "nothing left to claim"
    );
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Grant(runner, held)]);
}

/// Under the bound, a checkout whose vet failed is woken to claim the next idle connection
/// (sent for a vet on its behalf in turn), as any waiter would be.
fn a_failed_vet_under_a_fairness_bound_wakes_its_checkout_to_claim_the_next<
    S: Storage<Conn, u64>,
>() {
    let mut sim = Sim::<S>::new(Config {
        fairness: Fairness::Bounded(Duration::from_millis(100)),
        refill: false,
        ..vetting(2, 2)
    });
    sim.auto_reset = false;
    sim.take_log();
    let w = sim.wait(None, Wait::Forever);
    assert_eq!(sim.take_log(), [Cmd::Vet(2)]);
    sim.fail_resets = 1;
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Close(2), Cmd::Wake(w), Cmd::Vet(1)]);
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Grant(w, 1)]);
}

/// psycopg2's `getconn` (no wait) with vetting: an idle connection serves it through its vet;
/// with none left and no room, it is exhausted as psycopg2 would say.
fn getconn_waits_for_the_vet_or_is_exhausted<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        refill: false,
        ..vetting(1, 1)
    });
    sim.take_log();
    let (_, conn) = sim.get(None);
    assert_eq!(conn, 1);
    assert_eq!(sim.take_log()[0], Cmd::Vet(1));
    let out = sim.unchanged(|s| s.checkout(None, Wait::No));
    assert_eq!(out, Err(Error::Exhausted));
    sim.put(conn, Returned::Clean);
    // The vet fails and the failed connection still counts until its close is reported.
    sim.auto_close = false;
    sim.fail_resets = 1;
    sim.take_log();
    let Ok(Checkout::Waiting(w)) = sim.checkout(None, Wait::No) else {
        panic!("not queued for the vet")
    };
    assert_eq!(
        sim.take_log(),
        [Cmd::Vet(1), Cmd::Close(1), Cmd::Fail(w, Error::Exhausted)]
    );
}

/// `max_waiting` bounds checkouts waiting for a connection to come back or open, not those an
/// idle connection serves through its vet.
fn a_checkout_served_by_a_vet_is_not_bounded_by_max_waiting<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_waiting: 0,
        ..vetting(1, 1)
    });
    sim.auto_reset = false;
    sim.take_log();
    let w = sim.wait(None, Wait::Forever);
    let out = sim.unchanged(|s| s.checkout(None, Wait::Forever));
    assert_eq!(out, Err(Error::TooManyWaiters));
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Vet(1), Cmd::Grant(w, 1)]);
}

/// A vet in flight when the pool closes: its waiter fails at once, and the connection is closed
/// when the vet comes back.
fn a_vet_that_comes_back_after_close_is_closed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(vetting(1, 1));
    sim.auto_reset = false;
    sim.take_log();
    let w = sim.wait(None, Wait::Forever);
    sim.close().unwrap();
    assert_eq!(sim.take_log(), [Cmd::Vet(1), Cmd::Fail(w, Error::Closed)]);
    sim.check_next();
    assert_eq!(sim.take_log(), [Cmd::Close(1)]);
}
