//! One test per rule of the core, each run on both storage backends through the simulated driver
//! of `common`, which checks `assert_invariants()` and connection conservation after every step.

mod common;

use common::{ms, secs, Cmd, Conn, Sim};
use sanspool_core::storage::Storage;
use sanspool_core::{
    Checkout, Config, Error, Fixed, IdleOrder, KeepIdle, Lease, Pool, Rejected, Returned, Stats,
    Ticket, Time, Wait, WaiterId,
};
use std::collections::BTreeSet;
use std::time::Duration;

/// Instantiates every generic rule test on both backends: `alloc::name` and `fixed::name`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "alloc")]
        mod alloc {
            $( #[test] fn $name() { super::$name::<sanspool_core::Alloc>(); } )*
        }
        mod fixed {
            $( #[test] fn $name() { super::$name::<sanspool_core::Fixed<16, 32>>(); } )*
        }
    };
}

on_both_backends! {
    getconn_on_closed_pool_is_closed,
    getconn_without_key_gives_distinct_connections,
    getconn_same_key_gives_same_lease,
    getconn_lifo_hands_out_most_recently_returned,
    getconn_fifo_hands_out_least_recently_returned,
    getconn_opens_new_connection_below_max,
    getconn_at_max_without_waiting_is_exhausted,
    key_zero_is_a_key,
    putconn_forged_lease_is_unkeyed,
    putconn_foreign_lease_is_foreign,
    putconn_twice_is_already_returned,
    putconn_wrong_key_is_wrong_key,
    putconn_broken_is_closed,
    putconn_dirty_is_reset_then_idle,
    putconn_dirty_failed_reset_is_closed,
    putconn_close_flag_closes,
    putconn_psycopg2_keeps_only_up_to_min_idle,
    putconn_releases_the_key,
    close_fails_every_waiter,
    close_closes_idle_at_once,
    close_cancels_undrained_opens,
    close_closes_in_use_on_checkin,
    open_completing_after_close_is_closed,
    second_close_is_closed,
    closed_pool_is_empty_once_closes_are_reported,
    constructor_opens_min_connections,
    ready_is_emitted_once_when_min_are_open,
    waiters_are_granted_in_fifo_order,
    waiter_deadline_times_out,
    max_waiting_bounds_the_queue,
    cancel_removes_a_waiter,
    key_already_waiting_is_key_busy,
    returned_connection_goes_to_oldest_waiter,
    min_is_refilled_after_closes_and_broken_returns,
    open_failures_back_off_exponentially,
    backoff_resets_after_a_successful_open,
    non_waiting_checkout_fails_when_its_open_fails,
    non_waiting_checkout_skips_the_backoff,
    waiting_checkout_survives_open_failures_until_its_deadline,
    lifetimes_are_jittered_within_bounds,
    expired_idle_connections_are_replaced_down_to_min,
    expired_idle_connection_is_not_handed_out,
    in_use_connection_is_closed_only_on_return,
    dirty_return_past_lifetime_is_closed_without_reset,
    max_idle_closes_oldest_idle_above_min,
    resize_grow_opens_for_new_min,
    resize_shrink_closes_idle_least_recently_used_first,
    resize_shrink_closes_in_use_on_return,
    resize_shrink_with_slow_closes_keeps_max,
    resize_shrink_cancels_undrained_opens,
    invalid_sizes_are_refused,
    drain_retires_every_connection_and_refills,
    check_idle_checks_every_idle_connection,
    failed_check_closes_and_refills,
    detach_frees_the_slot_and_refills_min,
    open_ticket_stale_forged_or_undrained_is_unknown,
    reset_and_close_tickets_stale_or_undrained_are_unknown,
    stats_follow_every_event,
    time_going_backwards_is_clamped,
    check_idle_orders_opens_due_after_backoff,
    refused_inputs_do_not_move_the_clock,
    long_simulated_run,
    random_drivers_across_configs,
    non_waiting_checkout_is_exhausted_when_its_open_serves_an_older_waiter,
    non_waiting_checkout_is_not_bounded_by_max_waiting,
    check_keeps_idle_time_and_order,
    detach_after_close_hands_the_connection_over,
    invalid_timing_is_refused,
    close_drops_an_undrained_ready_but_stays_ready,
}

fn checkin_err(out: Result<(), Rejected<Conn>>) -> (Error, Option<Conn>) {
    let Rejected { error, conn } = out.expect_err("checkin refused");
    (error, conn)
}

// ---------------------------------------------------------------------- psycopg2's getconn

/// `getconn` on a closed pool: "connection pool is closed", whatever the key or wait.
fn getconn_on_closed_pool_is_closed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 2));
    sim.close().unwrap();
    let err = sim.checkout(None, Wait::No).unwrap_err();
    assert_eq!(err, Error::Closed);
    assert_eq!(err.to_string(), "connection pool is closed");
    assert_eq!(sim.checkout(Some(1), Wait::No), Err(Error::Closed));
    assert_eq!(sim.checkout(None, Wait::Forever), Err(Error::Closed));
}

/// `getconn()` without a key: every call gets a connection of its own.
fn getconn_without_key_gives_distinct_connections<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(2, 3));
    let got: Vec<(Lease, Conn)> = (0..3).map(|_| sim.get(None)).collect();
    let conns: BTreeSet<Conn> = got.iter().map(|g| g.1).collect();
    let leases: BTreeSet<usize> = got.iter().map(|g| g.0.slot()).collect();
    assert_eq!(conns.len(), 3);
    assert_eq!(leases.len(), 3);
    assert_eq!(sim.stats().in_use, 3);
}

/// `getconn(key)` twice: the second call gets the same lease (and connection), nothing else moves.
fn getconn_same_key_gives_same_lease<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 2));
    let (lease, _) = sim.get(Some(7));
    sim.take_log();
    let stats = sim.stats();
    assert_eq!(sim.checkout(Some(7), Wait::No), Ok(Checkout::Held(lease)));
    assert_eq!(
        sim.checkout(Some(7), Wait::Forever),
        Ok(Checkout::Held(lease))
    );
    assert_eq!(sim.stats(), stats);
    assert_eq!(sim.take_log(), []);
}

/// LIFO (the default, psycopg2): the most recently returned idle connection goes out first.
fn getconn_lifo_hands_out_most_recently_returned<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(3, 3));
    let conns: Vec<Conn> = (0..3).map(|_| sim.get(None).1).collect();
    for c in [conns[0], conns[2], conns[1]] {
        sim.put(c, Returned::Clean);
        sim.advance(Duration::from_secs(1));
    }
    assert_eq!(sim.get(None).1, conns[1]);
    assert_eq!(sim.get(None).1, conns[2]);
    assert_eq!(sim.get(None).1, conns[0]);
}

/// `IdleOrder::Fifo`: the least recently returned idle connection goes out first.
fn getconn_fifo_hands_out_least_recently_returned<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        idle_order: IdleOrder::Fifo,
        ..Config::new(3, 3)
    });
    let conns: Vec<Conn> = (0..3).map(|_| sim.get(None).1).collect();
    for c in [conns[0], conns[2], conns[1]] {
        sim.put(c, Returned::Clean);
        sim.advance(Duration::from_secs(1));
    }
    assert_eq!(sim.get(None).1, conns[0]);
    assert_eq!(sim.get(None).1, conns[2]);
    assert_eq!(sim.get(None).1, conns[1]);
}

/// Nothing idle and fewer than `max` in use: `getconn` opens a new connection for the caller.
fn getconn_opens_new_connection_below_max<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 2));
    assert_eq!(sim.get(None).1, 1);
    sim.take_log();
    let Ok(Checkout::Waiting(w)) = sim.checkout(None, Wait::No) else {
        panic!("a new connection is opened for the checkout")
    };
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Grant(w, 2)]);
    assert_eq!(sim.stats().opens, 2);
    assert_eq!(sim.stats().in_use, 2);
}

/// `max` in use and `Wait::No`: "connection pool exhausted", and nothing changes.
fn getconn_at_max_without_waiting_is_exhausted<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 2));
    sim.get(None);
    sim.get(None);
    let err = sim.unchanged(|s| s.checkout(None, Wait::No)).unwrap_err();
    assert_eq!(err, Error::Exhausted);
    assert_eq!(err.to_string(), "connection pool exhausted");
    let err = sim.unchanged(|s| s.checkout(Some(3), Wait::No));
    assert_eq!(err, Err(Error::Exhausted));
}

/// A key equal to 0 is a key like any other (psycopg2 treats it as "no key").
fn key_zero_is_a_key<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 2));
    let (lease, conn) = sim.get(Some(0));
    assert_eq!(sim.checkout(Some(0), Wait::No), Ok(Checkout::Held(lease)));
    let (_, other) = sim.get(None);
    assert_ne!(other, conn);
    assert_eq!(
        sim.checkin(lease, Some(&1), conn, Returned::Clean)
            .map_err(|r| r.error),
        Err(Error::WrongKey)
    );
    sim.checkin(lease, Some(&0), conn, Returned::Clean).unwrap();
    let (again, _) = sim.get(Some(0));
    assert_ne!(again, lease);
}

// ---------------------------------------------------------------------- psycopg2's putconn

/// A lease the pool never issued: "trying to put unkeyed connection", connection handed back.
fn putconn_forged_lease_is_unkeyed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 2));
    let (lease, conn) = sim.get(None);
    let idle_slot = 1 - u16::try_from(lease.slot()).unwrap();
    let forged = [
        Lease::from_parts(0, 9, 0),
        Lease::from_parts(0, idle_slot, 2),
        Lease::from_parts(0, idle_slot, 0x7fff_ffff),
        Lease::from_parts(0, lease.slot() as u16, lease.generation() + 1),
    ];
    for f in forged {
        let out = sim.unchanged(|s| s.checkin(f, None, conn, Returned::Clean));
        let (error, back) = checkin_err(out);
        assert_eq!(error, Error::Unkeyed, "{f:?}");
        assert_eq!(error.to_string(), "trying to put unkeyed connection");
        assert_eq!(back, Some(conn));
    }
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.stats().idle, 2);
}

/// A lease from another pool (another `Config::tag`) is `Foreign`, connection handed back.
fn putconn_foreign_lease_is_foreign<S: Storage<Conn, u64>>() {
    let mut a = Sim::<S>::new(Config {
        tag: 1,
        ..Config::new(1, 1)
    });
    let mut b = Sim::<S>::new(Config {
        tag: 2,
        ..Config::new(1, 1)
    });
    let (_, ca) = a.get(None);
    let (lb, cb) = b.get(None);
    assert_eq!(lb.pool_tag(), 2);
    let out = a.unchanged(|s| s.checkin(lb, None, ca, Returned::Clean));
    assert_eq!(checkin_err(out), (Error::Foreign, Some(ca)));
    a.put(ca, Returned::Clean);
    b.put(cb, Returned::Clean);
}

/// A second checkin with the same lease is `AlreadyReturned`, also once the connection is reused.
fn putconn_twice_is_already_returned<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (lease, conn) = sim.get(None);
    sim.put(conn, Returned::Clean);
    let out = sim.unchanged(|s| s.checkin(lease, None, conn, Returned::Clean));
    let (error, back) = checkin_err(out);
    assert_eq!(error, Error::AlreadyReturned);
    assert_eq!(error.to_string(), "connection already returned to the pool");
    assert_eq!(back, Some(conn));

    let (lease2, conn2) = sim.get(None);
    assert_eq!(conn2, conn);
    let out = sim.unchanged(|s| s.checkin(lease, None, conn, Returned::Broken));
    assert_eq!(checkin_err(out), (Error::AlreadyReturned, Some(conn)));
    assert_eq!(sim.lease(conn), lease2);
    sim.put(conn, Returned::Clean);
}

/// A checkin naming a key the connection is not held under is `WrongKey`.
fn putconn_wrong_key_is_wrong_key<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 2));
    let (keyed, kc) = sim.get(Some(1));
    let (plain, pc) = sim.get(None);
    let out = sim.unchanged(|s| s.checkin(keyed, Some(&2), kc, Returned::Clean));
    let (error, back) = checkin_err(out);
    assert_eq!((error, back), (Error::WrongKey, Some(kc)));
    assert_eq!(error.to_string(), "connection is not held under this key");
    let out = sim.unchanged(|s| s.checkin(plain, Some(&1), pc, Returned::Clean));
    assert_eq!(checkin_err(out), (Error::WrongKey, Some(pc)));
    sim.checkin(keyed, Some(&1), kc, Returned::Clean).unwrap();
    sim.checkin(plain, None, pc, Returned::Clean).unwrap();
}

/// `Returned::Broken`: the connection is closed and counted; `min` is refilled.
fn putconn_broken_is_closed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 2));
    let (_, conn) = sim.get(None);
    sim.take_log();
    sim.put(conn, Returned::Broken);
    assert_eq!(sim.take_log(), [Cmd::Close(conn), Cmd::Open]);
    let s = sim.stats();
    assert_eq!((s.broken_returns, s.closes, s.idle), (1, 1, 1));
}

/// `Returned::Dirty`: a `Reset` command; a successful reset makes the connection idle.
fn putconn_dirty_is_reset_then_idle<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 2));
    sim.auto_reset = false;
    let (_, conn) = sim.get(None);
    sim.take_log();
    sim.put(conn, Returned::Dirty);
    assert_eq!(sim.take_log(), [Cmd::Reset(conn)]);
    let s = sim.stats();
    assert_eq!((s.resets, s.resetting, s.in_use, s.idle), (1, 1, 0, 0));
    sim.reset_next();
    assert_eq!(sim.take_log(), []);
    assert_eq!((sim.stats().resetting, sim.stats().idle), (0, 1));
    assert_eq!(sim.get(None).1, conn);
}

/// `Returned::Dirty` whose reset fails: the connection is closed.
fn putconn_dirty_failed_reset_is_closed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 2));
    sim.auto_reset = false;
    let (_, conn) = sim.get(None);
    sim.put(conn, Returned::Dirty);
    sim.take_log();
    sim.fail_resets = 1;
    sim.reset_next();
    assert_eq!(sim.take_log(), [Cmd::Close(conn)]);
    assert_eq!(sim.stats().size, 0);
}

/// `Returned::Close` (psycopg2's `putconn(close=True)`): closed, not counted as broken.
fn putconn_close_flag_closes<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 2));
    let (_, conn) = sim.get(None);
    sim.take_log();
    sim.put(conn, Returned::Close);
    assert_eq!(sim.take_log(), [Cmd::Close(conn)]);
    let s = sim.stats();
    assert_eq!((s.closes, s.broken_returns, s.size), (1, 0, 0));
}

/// `KeepIdle::UpToMin` (`Config::psycopg2`): a returned connection is kept only while fewer than
/// `min` are idle, else closed (a dirty one too, without a reset).
fn putconn_psycopg2_keeps_only_up_to_min_idle<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 3));
    let (_, a) = sim.get(None);
    let (_, b) = sim.get(None);
    let (_, c) = sim.get(None);
    sim.take_log();
    sim.put(a, Returned::Clean);
    assert_eq!(sim.take_log(), []);
    sim.put(b, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Close(b)]);
    sim.put(c, Returned::Dirty);
    assert_eq!(sim.take_log(), [Cmd::Close(c)]);
    let s = sim.stats();
    assert_eq!((s.idle, s.size, s.resets), (1, 1, 0));
}

/// Checkin releases the key: the next checkout with it gets a new lease.
fn putconn_releases_the_key<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (first, conn) = sim.get(Some(5));
    sim.put(conn, Returned::Clean);
    let (second, again) = sim.get(Some(5));
    assert_eq!(again, conn);
    assert_ne!(second, first);
    assert_eq!(sim.checkout(Some(5), Wait::No), Ok(Checkout::Held(second)));
}

// ---------------------------------------------------------------------- psycopg2's closeall

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
    let (error, back) = checkin_err(sim.checkin(lease, Some(&4), conn, Returned::Clean));
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

// ---------------------------------------------------------------------- the constructor

/// The constructor orders `min` opens at once.
fn constructor_opens_min_connections<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::undrained(Config::new(3, 5));
    assert_eq!(sim.stats().opening, 3);
    assert!(!sim.pool().is_ready());
    sim.poll();
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Open, Cmd::Open]);
    for _ in 0..3 {
        sim.open_next();
    }
    sim.poll();
    assert_eq!(sim.take_log(), [Cmd::Ready]);
    assert_eq!(sim.stats().idle, 3);
}

/// `Ready` is emitted once, when `min` connections are first open; with `min = 0`, at once.
fn ready_is_emitted_once_when_min_are_open<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::manual(Config::new(2, 4));
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Open]);
    sim.open_next();
    assert!(!sim.pool().is_ready());
    assert_eq!(sim.take_log(), []);
    sim.open_next();
    assert!(sim.pool().is_ready());
    assert_eq!(sim.take_log(), [Cmd::Ready]);
    (sim.auto_open, sim.auto_close) = (true, true);
    let (_, conn) = sim.get(None);
    sim.put(conn, Returned::Broken);
    assert_eq!(sim.take_log(), [Cmd::Close(conn), Cmd::Open]);
    assert_eq!(sim.readies, 1);

    let mut empty = Sim::<S>::new(Config::new(0, 1));
    assert!(empty.pool().is_ready());
    assert_eq!(empty.take_log(), [Cmd::Ready]);
}

// ---------------------------------------------------------------------- waiting

/// Waiters are granted in arrival order.
fn waiters_are_granted_in_fifo_order<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 1));
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

/// `handle_cancel` removes a waiter (and its key); an unknown or served waiter is `UnknownWaiter`.
fn cancel_removes_a_waiter<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 1));
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
    let never = WaiterId::from_raw(99);
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

/// A connection returned while checkouts wait goes to the oldest one directly, never idle.
fn returned_connection_goes_to_oldest_waiter<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Forever);
    sim.wait(None, Wait::Forever);
    sim.take_log();
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Grant(w, conn)]);
    let s = sim.stats();
    assert_eq!((s.idle, s.in_use, s.waiting), (0, 1, 1));
}

// ---------------------------------------------------------------------- min, opens, backoff

/// Closes and broken returns below `min` are refilled at once.
fn min_is_refilled_after_closes_and_broken_returns<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 3));
    let (_, a) = sim.get(None);
    let (_, b) = sim.get(None);
    sim.take_log();
    sim.put(a, Returned::Close);
    assert_eq!(sim.take_log(), [Cmd::Close(a), Cmd::Open]);
    sim.put(b, Returned::Broken);
    assert_eq!(sim.take_log(), [Cmd::Close(b), Cmd::Open]);
    let s = sim.stats();
    assert_eq!((s.idle, s.opens, s.closes), (2, 4, 2));
}

fn backoff_config(min: usize, max: usize) -> Config {
    Config {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..Config::new(min, max)
    }
}

/// A failed open is retried after a backoff that doubles per consecutive failure, up to
/// `backoff_max`; `poll_timeout` reports the retry time, and no open is ordered before it.
fn open_failures_back_off_exponentially<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::manual(backoff_config(1, 1));
    sim.auto_open = true;
    sim.fail_opens = 6;
    sim.open_next();
    let mut t = ms(0);
    for delay in [100, 200, 400, 800, 1000] {
        t = t.saturating_add(Duration::from_millis(delay));
        assert_eq!(sim.pool().poll_timeout(), Some(t));
        sim.take_log();
        sim.advance_to(Time::from_nanos(t.as_nanos() - 1));
        assert_eq!(sim.take_log(), []);
        sim.advance_to(t);
        assert_eq!(sim.take_log(), [Cmd::Open]);
    }
    t = t.saturating_add(Duration::from_millis(1000));
    assert_eq!(sim.pool().poll_timeout(), Some(t));
    sim.advance_to(t);
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Ready]);
    let s = sim.stats();
    assert_eq!((s.open_failures, s.opens, s.idle), (6, 1, 1));
    assert_eq!(sim.pool().poll_timeout(), None);
}

/// A successful open resets the backoff to `backoff_initial`.
fn backoff_resets_after_a_successful_open<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(backoff_config(1, 1));
    sim.fail_opens = 3;
    let (_, conn) = sim.get(None);
    sim.put(conn, Returned::Broken);
    sim.run_until(secs(1));
    assert_eq!(sim.stats().open_failures, 3);
    assert_eq!(sim.stats().idle, 1);
    let (_, conn) = sim.get(None);
    sim.fail_opens = 1;
    sim.put(conn, Returned::Broken);
    assert_eq!(
        sim.pool().poll_timeout(),
        Some(secs(1).saturating_add(Duration::from_millis(100)))
    );
}

/// A `Wait::No` checkout that triggered an open fails with `OpenFailed` when that open fails.
fn non_waiting_checkout_fails_when_its_open_fails<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(backoff_config(0, 1));
    sim.take_log();
    sim.fail_opens = 1;
    let Ok(Checkout::Waiting(w)) = sim.checkout(None, Wait::No) else {
        panic!("queued for its open")
    };
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Fail(w, Error::OpenFailed)]);
    assert_eq!(Error::OpenFailed.to_string(), "opening a connection failed");
    assert_eq!(sim.stats().waiting, 0);
}

/// A `Wait::No` checkout orders its own open at once, even while the pool backs off.
fn non_waiting_checkout_skips_the_backoff<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(backoff_config(1, 2));
    let (_, conn) = sim.get(None);
    sim.fail_opens = 1;
    sim.put(conn, Returned::Broken);
    assert!(sim.pool().poll_timeout().is_some());
    sim.take_log();
    let (_, fresh) = sim.get(None);
    assert_eq!(sim.take_log()[..1], [Cmd::Open]);
    assert_eq!(fresh, 2);
}

/// Waiting checkouts keep waiting through failed opens and time out at their own deadline.
fn waiting_checkout_survives_open_failures_until_its_deadline<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(backoff_config(0, 1));
    sim.fail_opens = 1000;
    sim.take_log();
    let w = sim.wait(None, Wait::Until(secs(2)));
    sim.run_until(secs(5));
    let log = sim.take_log();
    assert_eq!(log.iter().filter(|c| **c == Cmd::Open).count(), 5);
    assert_eq!(log.last(), Some(&Cmd::Fail(w, Error::Timeout)));
    assert_eq!(sim.closed.len(), 0);
    let s = sim.stats();
    assert_eq!((s.open_failures, s.timeouts, s.waiting), (5, 1, 0));
    assert_eq!(sim.pool().poll_timeout(), None);
}

// ---------------------------------------------------------------------- lifetime and idleness

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

// ---------------------------------------------------------------------- resize

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
    let mut sim = Sim::<S>::new(Config::new(0, 3));
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

fn resize_shrink_cancels_undrained_opens<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::undrained(Config::new(3, 3));
    sim.resize(0, 1).unwrap();
    assert_eq!((sim.stats().opening, sim.stats().size), (1, 1));
    sim.poll();
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Ready]);
    sim.open_next();
    assert_eq!(sim.stats().idle, 1);
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
        let made = Pool::<Conn, u64, S>::new(Config::new(min, max));
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
    let made = Pool::<Conn, u64, Fixed<4, 2>>::new(Config::new(0, 5));
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

// ---------------------------------------------------------------------- drain, check, detach

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

/// `handle_detach`: the connection leaves the pool without a close, its slot is refilled for
/// `min`, `detached` counts it, and its lease is spent.
fn detach_frees_the_slot_and_refills_min<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (lease, conn) = sim.get(Some(2));
    sim.take_log();
    sim.detach(conn).unwrap();
    assert_eq!(sim.take_log(), [Cmd::Open]);
    let s = sim.stats();
    assert_eq!((s.detached, s.closes, s.idle), (1, 0, 1));
    let out = sim.unchanged(|s| s.with(|p, now| p.handle_detach(now, lease)));
    assert_eq!(out, Err(Error::AlreadyReturned));
    let out = sim.unchanged(|s| s.checkin(lease, None, conn, Returned::Clean));
    assert_eq!(checkin_err(out), (Error::AlreadyReturned, Some(conn)));
    assert_eq!(sim.get(Some(2)).1, 2);
}

// ---------------------------------------------------------------------- tickets

/// Open tickets: one not drained yet, forged (other pool, other slot, other generation) or stale
/// is `UnknownTicket`; nothing changes and the connection is handed back.
fn open_ticket_stale_forged_or_undrained_is_unknown<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::undrained(Config::new(1, 1));
    let real = Ticket::from_parts(0, 0, 1);
    let opened = |t: Ticket| {
        move |s: &mut Sim<S>| {
            s.with(|p, now| p.handle_opened(now, t, 100).map_err(|r| (r.error, r.conn)))
        }
    };
    assert_eq!(
        sim.unchanged(opened(real)),
        Err((Error::UnknownTicket, Some(100)))
    );
    assert_eq!(
        sim.unchanged(|s| s.with(|p, now| p.handle_open_failed(now, real))),
        Err(Error::UnknownTicket)
    );
    sim.poll();
    assert_eq!(sim.opens, [real]);
    for forged in [
        Ticket::from_parts(9, 0, 1),
        Ticket::from_parts(0, 1, 1),
        Ticket::from_parts(0, 0, 2),
    ] {
        assert_eq!(
            sim.unchanged(opened(forged)),
            Err((Error::UnknownTicket, Some(100)))
        );
    }
    let reset = sim.unchanged(|s| {
        s.with(|p, now| {
            p.handle_reset(now, real, 100, true)
                .map_err(|r| (r.error, r.conn))
        })
    });
    assert_eq!(reset, Err((Error::UnknownTicket, Some(100))));
    let closed = sim.unchanged(|s| s.with(|p, now| p.handle_closed(now, real)));
    assert_eq!(closed, Err(Error::UnknownTicket));
    assert_eq!(
        Error::UnknownTicket.to_string(),
        "no such operation in progress"
    );

    sim.open_next();
    assert_eq!(
        sim.unchanged(opened(real)),
        Err((Error::UnknownTicket, Some(100)))
    );
    assert_eq!(
        sim.unchanged(|s| s.with(|p, now| p.handle_open_failed(now, real))),
        Err(Error::UnknownTicket)
    );
    assert_eq!(sim.stats().idle, 1);
}

/// Reset and close tickets: undrained or stale ones are `UnknownTicket`, nothing changes.
fn reset_and_close_tickets_stale_or_undrained_are_unknown<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (lease, conn) = sim.get(None);
    sim.auto_poll = false;
    sim.checkin(lease, None, conn, Returned::Dirty).unwrap();
    let undrained = Ticket::from_parts(0, 0, lease.generation() + 1);
    let out = sim.unchanged(|s| {
        s.with(|p, now| {
            p.handle_reset(now, undrained, 100, true)
                .map_err(|r| (r.error, r.conn))
        })
    });
    assert_eq!(out, Err((Error::UnknownTicket, Some(100))));
    (sim.auto_poll, sim.auto_reset, sim.auto_close) = (true, false, false);
    sim.poll();
    let (ticket, _) = sim.resets[0];
    assert_eq!(ticket, undrained);
    sim.fail_resets = 1;
    sim.reset_next();
    let out = sim.unchanged(|s| {
        s.with(|p, now| {
            p.handle_reset(now, ticket, 100, true)
                .map_err(|r| (r.error, r.conn))
        })
    });
    assert_eq!(out, Err((Error::UnknownTicket, Some(100))));
    let (close_ticket, _) = sim.closes[0];
    sim.close_next();
    let out = sim.unchanged(|s| s.with(|p, now| p.handle_closed(now, close_ticket)));
    assert_eq!(out, Err(Error::UnknownTicket));
    assert_eq!(sim.stats().idle, 1);
}

// ---------------------------------------------------------------------- stats

/// Every counter and gauge of `Stats` moves as documented.
fn stats_follow_every_event<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(1000)),
        ..Config::new(1, 2)
    });
    let mut want = Stats {
        size: 1,
        idle: 1,
        opens: 1,
        ..Stats::default()
    };
    assert_eq!(sim.stats(), want);

    let (_, a) = sim.get(None);
    (want.idle, want.in_use, want.checkouts) = (0, 1, 1);
    assert_eq!(sim.stats(), want);

    sim.auto_open = false;
    sim.wait(None, Wait::Until(secs(10)));
    (want.size, want.opening, want.waiting) = (2, 1, 1);
    assert_eq!(sim.stats(), want);

    sim.advance(Duration::from_secs(2));
    sim.open_next();
    (want.opening, want.waiting, want.in_use) = (0, 0, 2);
    (want.opens, want.checkouts, want.waits) = (2, 2, 1);
    want.wait_time = Duration::from_secs(2);
    assert_eq!(sim.stats(), want);

    sim.wait(None, Wait::Until(secs(3)));
    want.waiting = 1;
    assert_eq!(sim.stats(), want);
    sim.advance_to(secs(3));
    (want.waiting, want.timeouts) = (0, 1);
    assert_eq!(sim.stats(), want);

    sim.auto_reset = false;
    sim.put(a, Returned::Dirty);
    (want.in_use, want.resetting, want.resets) = (1, 1, 1);
    assert_eq!(sim.stats(), want);
    sim.reset_next();
    (want.resetting, want.idle) = (0, 1);
    assert_eq!(sim.stats(), want);

    sim.auto_close = false;
    sim.put(2, Returned::Broken);
    (want.in_use, want.closing, want.broken_returns, want.closes) = (0, 1, 1, 1);
    assert_eq!(sim.stats(), want);
    sim.close_next();
    (want.size, want.closing) = (1, 0);
    assert_eq!(sim.stats(), want);

    (sim.auto_open, sim.auto_close) = (true, true);
    sim.get(None);
    (want.idle, want.in_use, want.checkouts) = (0, 1, 3);
    sim.fail_opens = 1;
    sim.checkout(None, Wait::No).unwrap();
    want.open_failures = 1;
    assert_eq!(sim.stats(), want);

    sim.put(a, Returned::Clean);
    (want.idle, want.in_use) = (1, 0);
    sim.advance_to(secs(1000));
    (want.expired, want.closes, want.opens) = (1, 2, 3);
    assert_eq!(sim.stats(), want);

    let (_, c) = sim.get(None);
    sim.detach(c).unwrap();
    (want.detached, want.opens, want.checkouts) = (1, 4, 4);
    assert_eq!(sim.stats(), want);
}

// ---------------------------------------------------------------------- time

/// Time going backwards is clamped: no panic, the pool's clock never decreases, deadlines hold.
fn time_going_backwards_is_clamped<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 1));
    sim.advance_to(secs(10));
    sim.with(|p, _| p.handle_timeout(secs(5)));
    assert_eq!(sim.pool().now(), secs(10));
    sim.now = secs(3);
    let (_, conn) = sim.get(None);
    let w = sim.wait(None, Wait::Until(secs(12)));
    assert_eq!(sim.pool().now(), secs(10));
    sim.with(|p, _| p.handle_timeout(Time::ZERO));
    assert_eq!(sim.stats().waiting, 1);
    sim.now = secs(11);
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.grants[&w].1, conn);
    assert_eq!(sim.stats().wait_time, Duration::from_secs(1));
    sim.advance_to(Time::from_nanos(u64::MAX));
    sim.with(|p, _| p.handle_timeout(secs(1)));
    assert_eq!(sim.pool().now(), Time::from_nanos(u64::MAX));
}

/// `check_idle` settles like every input: opens delayed by a backoff that has ended are ordered.
fn check_idle_orders_opens_due_after_backoff<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(backoff_config(2, 2));
    let (_, conn) = sim.get(None);
    sim.fail_opens = 1;
    sim.put(conn, Returned::Broken);
    sim.take_log();
    sim.now = secs(1);
    assert_eq!(sim.check_idle(), Ok(1));
    assert_eq!(sim.take_log(), [Cmd::Check(1), Cmd::Open]);
    assert_eq!(sim.stats().idle, 2);
}

/// A refused input changes nothing, not even the pool's clock.
fn refused_inputs_do_not_move_the_clock<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(backoff_config(1, 2));
    let (lease, conn) = sim.get(Some(1));
    sim.fail_opens = 1;
    sim.wait(None, Wait::Until(secs(5)));
    sim.now = secs(10);
    let stale = Ticket::from_parts(0, 1, 0);
    sim.unchanged(|s| {
        assert_eq!(s.cancel(WaiterId::from_raw(7)), Err(Error::UnknownWaiter));
        assert_eq!(s.resize(3, 2), Err(Error::MinAboveMax));
        let out = s.checkin(lease, Some(&2), conn, Returned::Clean);
        assert_eq!(checkin_err(out), (Error::WrongKey, Some(conn)));
        let out = s.with(|p, now| p.handle_closed(now, stale));
        assert_eq!(out, Err(Error::UnknownTicket));
    });
    assert_eq!(sim.pool().now(), Time::ZERO);
    sim.advance_to(secs(10));
    assert_eq!(sim.stats().timeouts, 1);
}

// ---------------------------------------------------------------------- a long life

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len() as u64) as usize])
        }
    }
}

/// Hours of simulated pool life in a few thousand deterministic pseudo-random steps (checkouts of
/// every kind, checkins in every state, lifetimes, idle expiry, failed opens and resets, cancels,
/// detaches, checks, drains, resizes): invariants and conservation hold at every step, and occupied
/// connections never exceed `max` (nor grow while above it after a shrink).
fn long_simulated_run<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(1800)),
        lifetime_jitter: Duration::from_secs(300),
        max_idle: Some(Duration::from_secs(600)),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_secs(5),
        max_waiting: 6,
        ..Config::new(2, 6)
    });
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut waiting = Vec::new();
    for _ in 0..5000 {
        let now = sim.now;
        match rng.below(100) {
            0..=29 => {
                let key = (rng.below(4) == 0).then(|| rng.below(5));
                let wait = match rng.below(4) {
                    0 => Wait::No,
                    1 => Wait::Forever,
                    _ => Wait::Until(now.saturating_add(Duration::from_millis(rng.below(30_000)))),
                };
                match sim.checkout(key, wait) {
                    Ok(Checkout::Waiting(w)) => waiting.push(w),
                    Ok(_) => {}
                    Err(Error::Exhausted | Error::KeyBusy | Error::TooManyWaiters) => {}
                    Err(e) => panic!("checkout refused: {e}"),
                }
            }
            30..=59 => {
                let held: Vec<Conn> = sim.held.keys().copied().collect();
                if let Some(conn) = rng.pick(&held) {
                    let returned = match rng.below(20) {
                        0..=13 => Returned::Clean,
                        14..=16 => Returned::Dirty,
                        17..=18 => Returned::Broken,
                        _ => Returned::Close,
                    };
                    sim.put(conn, returned);
                }
            }
            60..=79 => sim.advance(Duration::from_millis(rng.below(60_000))),
            80..=83 => sim.fail_opens += rng.below(4) as usize,
            84..=85 => sim.fail_resets += 1,
            86..=87 => {
                waiting.retain(|w| !sim.grants.contains_key(w) && !sim.fails.contains_key(w));
                if let Some(w) = rng.pick(&waiting) {
                    sim.cancel(w).unwrap();
                    waiting.retain(|x| *x != w);
                }
            }
            88 => {
                let held: Vec<Conn> = sim.held.keys().copied().collect();
                if let Some(conn) = rng.pick(&held) {
                    sim.detach(conn).unwrap();
                }
            }
            89..=90 => {
                sim.check_idle().unwrap();
            }
            91 => sim.drain().unwrap(),
            92..=93 => {
                let min = rng.below(4) as usize;
                let max = (min + rng.below(6) as usize).max(1);
                sim.resize(min, max).unwrap();
            }
            94 => sim.with(|p, now| {
                p.handle_timeout(Time::from_nanos(
                    now.as_nanos().saturating_sub(1_000_000_000),
                ))
            }),
            _ => sim.run_until(now.saturating_add(Duration::from_secs(rng.below(600)))),
        }
    }
    assert!(sim.now > secs(4 * 3600), "simulated {:?}", sim.now);
    let s = sim.stats();
    assert!(
        s.opens > 100 && s.expired > 10 && s.open_failures > 10,
        "{s:?}"
    );
    assert!(
        s.timeouts > 0 && s.waits > 0 && s.resets > 0 && s.broken_returns > 0,
        "{s:?}"
    );

    sim.close().unwrap();
    let held: Vec<Conn> = sim.held.keys().copied().collect();
    for conn in held {
        let lease = sim.lease(conn);
        let (error, _) = checkin_err(sim.checkin(lease, None, conn, Returned::Clean));
        assert_eq!(error, Error::Closed);
    }
    assert!(sim.pool().is_empty());
    assert!(sim.steps() > 5_000);
}

/// Many short lives, each with its own random configuration and a driver that completes opens,
/// closes, resets and checks out of order, sometimes late, sometimes failing, and sometimes leaves
/// commands queued: invariants, conservation, FIFO service, key ownership and `max` hold at every
/// step, `poll_timeout` names every time the pool would act, and every life ends empty.
fn random_drivers_across_configs<S: Storage<Conn, u64>>() {
    for seed in 1..=60 {
        random_driver::<S>(seed);
    }
}

fn random_driver<S: Storage<Conn, u64>>(seed: u64) {
    let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let max = 1 + rng.below(6) as usize;
    let min = rng.below(max as u64 + 1) as usize;
    let lifetimes = [None, Some(5), Some(60)].map(|s| s.map(Duration::from_secs));
    let mut sim = Sim::<S>::manual(Config {
        max_lifetime: lifetimes[rng.below(3) as usize],
        lifetime_jitter: Duration::from_secs(rng.below(3)),
        max_idle: lifetimes[rng.below(3) as usize],
        backoff_initial: Duration::from_millis(rng.below(200)),
        backoff_max: Duration::from_millis(1 + rng.below(3000)),
        max_waiting: [0, 1, 3, 1024][rng.below(4) as usize],
        keep_idle: [KeepIdle::UpToMax, KeepIdle::UpToMin][rng.below(2) as usize],
        idle_order: [IdleOrder::Lifo, IdleOrder::Fifo][rng.below(2) as usize],
        ..Config::new(min, max)
    });
    for _ in 0..1500 {
        let now = sim.now;
        match rng.below(100) {
            0..=24 => {
                let key = (rng.below(3) == 0).then(|| rng.below(4));
                let wait = match rng.below(4) {
                    0 => Wait::No,
                    1 => Wait::Forever,
                    _ => Wait::Until(now.saturating_add(Duration::from_millis(rng.below(10_000)))),
                };
                match sim.checkout(key, wait) {
                    Ok(_) => {}
                    Err(Error::Exhausted | Error::KeyBusy | Error::TooManyWaiters) => {}
                    Err(Error::Closed) if sim.pool().is_closed() => {}
                    Err(e) => panic!("checkout refused: {e}"),
                }
            }
            25..=44 => {
                let held: Vec<Conn> = sim.held.keys().copied().collect();
                if let Some(conn) = rng.pick(&held) {
                    let returned = [
                        Returned::Clean,
                        Returned::Clean,
                        Returned::Dirty,
                        Returned::Broken,
                        Returned::Close,
                    ];
                    let returned = returned[rng.below(5) as usize];
                    let out = sim.checkin(sim.lease(conn), None, conn, returned);
                    assert!(out.is_ok() || sim.pool().is_closed());
                }
            }
            45..=54 if !sim.opens.is_empty() => {
                let i = rng.below(sim.opens.len() as u64) as usize;
                let ticket = sim.opens.remove(i);
                sim.opens.insert(0, ticket);
                sim.fail_opens += usize::from(rng.below(4) == 0);
                sim.open_next();
            }
            55..=62 if !sim.closes.is_empty() => {
                let i = rng.below(sim.closes.len() as u64) as usize;
                let close = sim.closes.remove(i);
                sim.closes.insert(0, close);
                sim.close_next();
            }
            63..=70 if !sim.resets.is_empty() => {
                let i = rng.below(sim.resets.len() as u64) as usize;
                let reset = sim.resets.remove(i);
                sim.resets.insert(0, reset);
                sim.fail_resets += usize::from(rng.below(4) == 0);
                sim.reset_next();
            }
            71..=82 => {
                let t = now.saturating_add(Duration::from_millis(rng.below(5000)));
                match sim.pool().poll_timeout() {
                    Some(next) if next <= t => sim.advance_to(t),
                    _ => sim.unchanged(|s| s.advance_to(t)),
                }
            }
            83..=84 => {
                let waiting: Vec<WaiterId> = sim.waiting.iter().copied().collect();
                if let Some(w) = rng.pick(&waiting) {
                    let _ = sim.cancel(w);
                }
            }
            85 => {
                let held: Vec<Conn> = sim.held.keys().copied().collect();
                if let Some(conn) = rng.pick(&held) {
                    let _ = sim.detach(conn);
                }
            }
            86..=87 => {
                let _ = sim.check_idle();
            }
            88 => {
                let _ = sim.drain();
            }
            89..=91 => {
                let max = 1 + rng.below(6) as usize;
                let _ = sim.resize(rng.below(max as u64 + 1) as usize, max);
            }
            92 if rng.below(30) == 0 => {
                let _ = sim.close();
            }
            93 => {
                sim.auto_poll = !sim.auto_poll;
                sim.poll();
            }
            94..=99 => {
                let t = now.saturating_add(Duration::from_millis(rng.below(20_000)));
                sim.run_until(t);
            }
            _ => {}
        }
    }
    let _ = sim.close();
    (sim.auto_poll, sim.auto_open, sim.auto_close, sim.auto_reset) = (true, true, true, true);
    sim.fail_opens = 0;
    sim.poll();
    while !sim.opens.is_empty() {
        sim.open_next();
    }
    while !sim.resets.is_empty() {
        sim.reset_next();
    }
    while !sim.closes.is_empty() {
        sim.close_next();
    }
    let held: Vec<Conn> = sim.held.keys().copied().collect();
    for conn in held {
        let out = sim.checkin(sim.lease(conn), None, conn, Returned::Clean);
        assert_eq!(checkin_err(out), (Error::Closed, None));
    }
    assert!(sim.pool().is_empty(), "seed {seed}: {:?}", sim.stats());
    assert!(sim.waiting.is_empty());
}

// ---------------------------------------------------------------------- later rules

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
    sim.resets.reverse(); // the checks finish newest first
    while !sim.resets.is_empty() {
        sim.reset_next();
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

/// After close a detach is still accepted: the connection becomes the borrower's, so it is no
/// longer the pool's to close, and the closed pool ends empty.
fn detach_after_close_hands_the_connection_over<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (_, conn) = sim.get(None);
    sim.close().unwrap();
    sim.take_log();
    assert_eq!(sim.detach(conn), Ok(()));
    assert_eq!(sim.take_log(), []);
    assert_eq!(sim.stats().detached, 1);
    assert!(sim.pool().is_empty());
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
        assert_eq!(
            Pool::<Conn, u64, S>::new(config).err(),
            Some(Error::InvalidTiming)
        );
    }
    let fine = Config {
        max_lifetime: Some(second),
        lifetime_jitter: second - Duration::from_nanos(1),
        ..Config::new(1, 2)
    };
    assert!(Pool::<Conn, u64, S>::new(fine).is_ok());
    assert!(Error::InvalidTiming.to_string().contains("max_lifetime"));
}

/// A `Ready` still queued at close is not emitted (nothing is owed after close), but `min` was
/// reached, so `is_ready` stays true.
fn close_drops_an_undrained_ready_but_stays_ready<S: Storage<Conn, u64>>() {
    let mut pool = Pool::<Conn, u64, S>::new(Config::new(0, 1)).unwrap();
    assert!(pool.is_ready());
    pool.close(Time::ZERO).unwrap();
    assert_eq!(pool.poll_command(), None);
    assert!(pool.is_ready());
    pool.assert_invariants();
}
