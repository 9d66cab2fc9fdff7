//! Opens: `min` refills, failures and their backoff, and checkouts that do not wait.

use crate::backoff_config;
use sanspool_core::testkit::{ms, secs, Cmd, Conn, Sim};
use sanspool_core::{Checkout, Config, Error, Returned, Storage, Time, Wait};
use std::time::Duration;

on_both_backends! {
    min_is_refilled_after_closes_and_broken_returns,
    open_failures_back_off_exponentially,
    backoff_resets_after_a_successful_open,
    non_waiting_checkout_fails_when_its_open_fails,
    non_waiting_checkout_skips_the_backoff,
    opens_failing_together_are_one_round_of_backoff,
    min_idle_keeps_spare_connections_beyond_the_borrowed,
    max_idle_closes_down_to_min_idle,
    min_idle_above_max_is_refused,
    backoff_jitter_shortens_each_delay_by_up_to_a_fifth,
    waiting_checkout_survives_open_failures_until_its_deadline,
    check_idle_orders_opens_due_after_backoff,
    a_permanent_open_failure_fails_every_waiter_at_once,
}

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

/// A failed open is retried after a backoff that doubles per consecutive failure, up to
/// `backoff_max`; `poll_timeout` reports the retry time, and no open is ordered before it. The
/// pool is not warm until the open succeeds.
fn open_failures_back_off_exponentially<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::manual(backoff_config(1, 1));
    sim.auto_open = true;
    sim.fail_opens = 6;
    sim.open_next();
    let mut t = ms(0);
    for delay in [100, 200, 400, 800, 1000] {
        t = t.saturating_add(Duration::from_millis(delay));
        assert_eq!(sim.pool().poll_timeout(), Some(t));
        assert!(!sim.pool().is_warm());
        sim.take_log();
        sim.advance_to(Time::from_nanos(t.as_nanos() - 1));
        assert_eq!(sim.take_log(), []);
        sim.advance_to(t);
        assert_eq!(sim.take_log(), [Cmd::Open]);
    }
    t = t.saturating_add(Duration::from_millis(1000));
    assert_eq!(sim.pool().poll_timeout(), Some(t));
    assert!(!sim.pool().is_warm());
    sim.advance_to(t);
    assert_eq!(sim.take_log(), [Cmd::Open]);
    assert!(sim.pool().is_warm());
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

/// A permanent open failure (bad credentials, no such database) fails every queued checkout at
/// once, oldest first, instead of letting them wait out their deadlines behind retries that
/// cannot succeed; the pool goes on refilling `min` with backoff and recovers once opens work.
fn a_permanent_open_failure_fails_every_waiter_at_once<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::manual(backoff_config(1, 2));
    sim.take_log();
    let a = sim.wait(None, Wait::Until(secs(30)));
    let b = sim.wait(Some(7), Wait::Forever);
    let c = sim.wait(None, Wait::Until(secs(60)));
    assert_eq!(sim.stats().waiting, 3);
    // A transient failure leaves them waiting.
    sim.fail_opens = 1;
    sim.open_next();
    assert_eq!(sim.stats().waiting, 3);
    assert!(sim.fails.is_empty());
    sim.fail_opens = 1;
    sim.permanent_failures = true;
    sim.open_next();
    assert_eq!(
        sim.fails,
        [
            (a, Error::OpenFailed),
            (b, Error::OpenFailed),
            (c, Error::OpenFailed)
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(sim.stats().waiting, 0);
    // The key is free again, and `min` is still refilled once opens work.
    sim.permanent_failures = false;
    sim.run_until(secs(120));
    while !sim.opens.is_empty() {
        sim.open_next();
    }
    assert!(sim.pool().is_warm());
    let (_, conn) = sim.get(Some(7));
    sim.put(conn, Returned::Clean);
}

/// Four waiters' opens fail together against a server that is down or full: the backoff grows
/// by one step per round, not per open — after 4 rounds of 4 failures the delay is 800 ms, not
/// the cap — and the next round is ordered all together.
fn opens_failing_together_are_one_round_of_backoff<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::manual(Config {
        backoff_max: Duration::from_secs(10),
        ..backoff_config(0, 4)
    });
    sim.fail_opens = 16;
    for _ in 0..4 {
        sim.wait(None, Wait::Forever);
    }
    let mut t = ms(0);
    for delay in [100, 200, 400, 800] {
        assert_eq!(sim.opens.len(), 4, "a round of opens");
        for _ in 0..4 {
            sim.open_next();
        }
        t = t.saturating_add(Duration::from_millis(delay));
        assert_eq!(sim.pool().poll_timeout(), Some(t), "one step per round");
        sim.advance_to(t);
    }
    assert_eq!(sim.stats().open_failures, 16);
    for _ in 0..4 {
        sim.open_next();
    }
    assert_eq!((sim.stats().opens, sim.stats().waiting), (4, 0));
}

/// With jitter (the default), each delay is between four fifths of the step and the step, and
/// pools seeded apart retry apart.
fn backoff_jitter_shortens_each_delay_by_up_to_a_fifth<S: Storage<Conn, u64>>() {
    let retry = |seed: u64| {
        let mut sim = Sim::<S>::manual(Config {
            backoff_jitter: true,
            seed,
            ..backoff_config(1, 1)
        });
        sim.fail_opens = 1;
        sim.open_next();
        sim.pool().poll_timeout().expect("a retry")
    };
    let retries: Vec<Time> = (1..=8).map(retry).collect();
    for &t in &retries {
        assert!(ms(80) <= t && t <= ms(100), "{t:?}");
    }
    assert!(retries.iter().any(|&t| t != retries[0]), "{retries:?}");
}

/// `min_idle` (r2d2's and bb8's): spare connections are kept idle beyond those borrowed, as far
/// as `max` allows; the pool is warm once they are.
fn min_idle_keeps_spare_connections_beyond_the_borrowed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        min_idle: 2,
        ..backoff_config(0, 3)
    });
    assert_eq!((sim.stats().idle, sim.stats().size), (2, 2));
    assert!(sim.pool().is_warm());
    let (_, a) = sim.get(None);
    assert_eq!(
        (sim.stats().idle, sim.stats().size),
        (2, 3),
        "a spare one opened"
    );
    let (_, b) = sim.get(None);
    assert_eq!(
        (sim.stats().idle, sim.stats().size),
        (1, 3),
        "no room for another"
    );
    assert!(sim.pool().is_warm(), "warm as far as max allows");
    sim.put(a, Returned::Clean);
    sim.put(b, Returned::Clean);
    assert_eq!((sim.stats().idle, sim.stats().opens), (3, 3));
}

/// Idle connections past `max_idle` are closed, down to `min_idle` spare ones.
fn max_idle_closes_down_to_min_idle<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        min_idle: 1,
        max_idle: Some(Duration::from_millis(100)),
        ..backoff_config(0, 3)
    });
    let held: Vec<_> = (0..3).map(|_| sim.get(None).1).collect();
    for conn in held {
        sim.put(conn, Returned::Clean);
    }
    assert_eq!(sim.stats().idle, 3);
    sim.run_until(ms(1000));
    let s = sim.stats();
    assert_eq!((s.idle, s.expired), (1, 2));
    assert_eq!(sim.pool().poll_timeout(), None, "nothing more to close");
}

/// `min_idle` above `max` is refused, as `min` above `max` is.
fn min_idle_above_max_is_refused<S: Storage<Conn, u64>>() {
    let config = Config {
        min_idle: 3,
        ..Config::new(0, 2)
    };
    assert_eq!(
        sanspool_core::Pool::<Conn, u64, S>::new(config).err(),
        Some(Error::MinAboveMax)
    );
}
