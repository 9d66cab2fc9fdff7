//! The constructor's opens and `is_warm`: at least `min` connections open now (idle, in use or
//! being reset), false once closed. It replaced the old one-shot `Command::Ready`.

use crate::backoff_config;
use sanspool_core::testkit::{ms, Cmd, Conn, Sim};
use sanspool_core::{Config, Returned, Storage};

on_both_backends! {
    constructor_opens_min_connections,
    warm_once_min_are_open,
    is_warm_follows_opens_failures_and_closes,
}

/// The constructor orders `min` opens at once; the pool is warm when the last one completes, and
/// nothing else is emitted.
fn constructor_opens_min_connections<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::undrained(Config::new(3, 5));
    assert_eq!(sim.stats().opening, 3);
    assert!(!sim.pool().is_warm());
    sim.poll();
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Open, Cmd::Open]);
    for _ in 0..3 {
        assert!(!sim.pool().is_warm());
        sim.open_next();
    }
    sim.poll();
    assert_eq!(sim.take_log(), []);
    assert!(sim.pool().is_warm());
    assert_eq!(sim.stats().idle, 3);
}

/// Warm once `min` connections are open, without any command for it; with `min = 0`, at once.
fn warm_once_min_are_open<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::manual(Config::new(2, 4));
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Open]);
    assert!(!sim.pool().is_warm());
    sim.open_next();
    assert!(!sim.pool().is_warm());
    assert_eq!(sim.take_log(), []);
    sim.open_next();
    assert!(sim.pool().is_warm());
    assert_eq!(sim.take_log(), []);
    (sim.auto_open, sim.auto_close) = (true, true);
    let (_, conn) = sim.get(None);
    assert!(sim.pool().is_warm(), "a connection in use counts as open");
    sim.put(conn, Returned::Broken);
    assert_eq!(sim.take_log(), [Cmd::Close(conn), Cmd::Open]);
    assert!(sim.pool().is_warm());

    let mut empty = Sim::<S>::new(Config::new(0, 1));
    assert!(empty.pool().is_warm());
    assert_eq!(empty.take_log(), []);
}

/// `is_warm` counts the connections open *now*: failed opens, closes, detaches, drains and a
/// higher `min` take it back to false until the refills complete; resets do not; close ends it.
fn is_warm_follows_opens_failures_and_closes<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::manual(backoff_config(2, 3));
    assert_eq!(sim.opens.len(), 2);
    sim.fail_opens = 2;
    sim.open_next();
    sim.open_next();
    assert!(!sim.pool().is_warm());
    assert_eq!(sim.stats().open_failures, 2);
    // Two opens under way together failed: one round, the retry comes after 100 ms.
    assert_eq!(sim.pool().poll_timeout(), Some(ms(100)));
    sim.advance_to(ms(100));
    assert_eq!(sim.opens.len(), 2);
    sim.open_next();
    assert!(!sim.pool().is_warm());
    sim.open_next();
    assert!(sim.pool().is_warm());

    // In use and being reset still count as open.
    sim.auto_reset = false;
    let (_, a) = sim.get(None);
    assert!(sim.pool().is_warm());
    sim.put(a, Returned::Dirty);
    assert_eq!(sim.stats().resetting, 1);
    assert!(sim.pool().is_warm());
    sim.reset_next();
    assert!(sim.pool().is_warm());

    // A close below `min`: cold until the refill is open, whenever the close is reported.
    let (_, a) = sim.get(None);
    sim.put(a, Returned::Broken);
    assert_eq!((sim.closes.len(), sim.opens.len()), (1, 1));
    assert!(!sim.pool().is_warm());
    sim.close_next();
    assert!(!sim.pool().is_warm());
    sim.open_next();
    assert!(sim.pool().is_warm());

    // A detached connection has left.
    let (_, b) = sim.get(None);
    sim.detach(b).unwrap();
    assert!(!sim.pool().is_warm());
    sim.open_next();
    assert!(sim.pool().is_warm());

    // A drain retires every idle connection.
    sim.auto_close = true;
    sim.drain().unwrap();
    assert_eq!(sim.opens.len(), 2);
    assert!(!sim.pool().is_warm());
    sim.open_next();
    assert!(!sim.pool().is_warm());
    sim.open_next();
    assert!(sim.pool().is_warm());

    // A higher `min` is a new target.
    sim.resize(3, 3).unwrap();
    assert!(!sim.pool().is_warm());
    sim.open_next();
    assert!(sim.pool().is_warm());

    sim.close().unwrap();
    assert!(!sim.pool().is_warm());
}
