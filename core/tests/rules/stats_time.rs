//! `Stats` and the pool's clock.

use crate::{backoff_config, refused};
use sanspool_core::testkit::{forge, secs, Conn, Sim};
use sanspool_core::{Completion, Config, Error, Finished, Returned, Stats, Storage, Time, Wait};
use std::time::Duration;

on_both_backends! {
    stats_follow_every_event,
    time_going_backwards_is_clamped,
    refused_inputs_do_not_move_the_clock,
    an_undated_pool_needs_no_time_for_what_it_serves_at_once,
}

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

/// A refused input changes nothing, not even the pool's clock.
fn refused_inputs_do_not_move_the_clock<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(backoff_config(1, 2));
    let (lease, conn) = sim.get(Some(1));
    sim.fail_opens = 1;
    sim.wait(None, Wait::Until(secs(5)));
    sim.now = secs(10);
    let stale = forge::ticket(0, 1, 0);
    sim.unchanged(|s| {
        assert_eq!(s.cancel(forge::waiter(7)), Err(Error::UnknownWaiter));
        assert_eq!(s.resize(3, 2), Err(Error::MinAboveMax));
        let out = s.checkin(lease, Some(&2), conn, Returned::Clean);
        assert_eq!(refused(out), (Error::WrongKey, Some(conn)));
        let closed = Completion::Closed {
            ticket: stale,
            outcome: Finished::Abandoned,
        };
        let out = s.with(|p, now| p.handle(now, closed));
        assert_eq!(refused(out), (Error::UnknownTicket, None));
    });
    assert_eq!(sim.pool().now(), Time::ZERO);
    sim.advance_to(secs(10));
    assert_eq!(sim.stats().timeouts, 1);
}

/// A pool that dates nothing (no `max_lifetime`, `max_idle` or `leak_after`) needs no time for a
/// checkout an idle connection serves at once or a checkin nobody waits for: given its own time
/// (what a driver that reads no clock gives it) or the real one, it ends in the same state. One
/// that dates something says so.
fn an_undated_pool_needs_no_time_for_what_it_serves_at_once<S: Storage<Conn, u64>>() {
    let configs = [
        Config::new(2, 4),
        Config {
            min_idle: 1,
            ..Config::new(2, 4)
        },
        Config::psycopg2(2, 4),
    ];
    for config in configs {
        let (mut timed, mut own) = (Sim::<S>::new(config.clone()), Sim::<S>::new(config.clone()));
        assert!(!own.pool().dates_connections());
        for step in 1..=6 {
            timed.now = secs(step);
            own.now = own.pool().now();
            for sim in [&mut timed, &mut own] {
                let (_, a) = sim.get(None);
                let (_, b) = sim.get(Some(step));
                sim.put(b, Returned::Clean);
                sim.put(a, Returned::Clean);
            }
            assert_eq!(timed.stats(), own.stats(), "{config:?}");
            assert_eq!(timed.pool().poll_timeout(), own.pool().poll_timeout());
        }
    }
    let d = Some(Duration::from_secs(60));
    for config in [
        Config {
            max_lifetime: d,
            ..Config::new(1, 2)
        },
        Config {
            max_idle: d,
            ..Config::new(1, 2)
        },
        Config {
            leak_after: d,
            ..Config::new(1, 2)
        },
    ] {
        assert!(Sim::<S>::new(config).pool().dates_connections());
    }
}
