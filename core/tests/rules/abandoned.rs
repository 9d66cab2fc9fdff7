//! Resets, checks and closes the driver gave up on at its bound (`Finished::Abandoned`): handled
//! as failures, and counted in `Stats::abandoned_resets`, `abandoned_checks`, `abandoned_closes`.

use sanspool_core::testkit::{Cmd, Conn, Sim};
use sanspool_core::{Config, Returned, Stats, Storage, Wait};

on_both_backends! {
    abandoned_reset_closes_refills_and_is_counted,
    abandoned_check_closes_refills_and_is_counted,
    abandoned_close_frees_its_place_and_is_counted,
    failed_close_frees_its_place_and_is_not_counted,
    waiter_behind_an_abandoned_reset_gets_a_fresh_connection,
}

/// The three counters, in order: resets, checks, closes.
fn abandoned(s: Stats) -> [u64; 3] {
    [s.abandoned_resets, s.abandoned_checks, s.abandoned_closes]
}

/// A dirty return whose reset ends with `abandon` (or a plain failure): the log after the report
/// and the stats.
fn reset_outcome<S: Storage<Conn, u64>>(abandon: bool) -> (Vec<Cmd>, Stats) {
    let mut sim = Sim::<S>::new(Config::new(1, 2));
    sim.auto_reset = false;
    let (_, conn) = sim.get(None);
    sim.put(conn, Returned::Dirty);
    sim.take_log();
    (sim.fail_resets, sim.abandon) = (1, abandon);
    sim.reset_next();
    (sim.take_log(), sim.stats())
}

/// An abandoned reset closes the connection and the pool refills `min`, exactly as after a failed
/// reset; only `abandoned_resets` tells them apart.
fn abandoned_reset_closes_refills_and_is_counted<S: Storage<Conn, u64>>() {
    let (log, s) = reset_outcome::<S>(true);
    assert_eq!(log, [Cmd::Close(1), Cmd::Open]);
    assert_eq!(
        (s.resets, s.closes, s.opens, s.idle, s.size),
        (1, 1, 2, 1, 1)
    );
    assert_eq!(abandoned(s), [1, 0, 0]);
    let (failed_log, failed) = reset_outcome::<S>(false);
    assert_eq!(failed_log, log);
    assert_eq!(abandoned(failed), [0, 0, 0]);
    assert_eq!(
        Stats {
            abandoned_resets: 0,
            ..s
        },
        failed
    );
}

/// An abandoned check closes the connection and the pool refills, as after a failed check; only
/// `abandoned_checks` tells them apart.
fn abandoned_check_closes_refills_and_is_counted<S: Storage<Conn, u64>>() {
    let run = |abandon: bool| {
        let mut sim = Sim::<S>::new(Config::new(2, 2));
        sim.auto_reset = false;
        assert_eq!(sim.check_idle(), Ok(2));
        sim.take_log();
        (sim.fail_resets, sim.abandon) = (1, abandon);
        sim.check_next();
        sim.check_next();
        (sim.take_log(), sim.stats())
    };
    let (log, s) = run(true);
    assert_eq!(log, [Cmd::Close(1), Cmd::Open]);
    assert_eq!((s.closes, s.opens, s.idle, s.resetting), (1, 3, 2, 0));
    assert_eq!(abandoned(s), [0, 1, 0]);
    let (failed_log, failed) = run(false);
    assert_eq!(failed_log, log);
    assert_eq!(
        Stats {
            abandoned_checks: 0,
            ..s
        },
        failed
    );
}

/// A drained idle connection whose close ends with `abandon` (or a plain failure): the log after
/// the report and the stats.
fn close_outcome<S: Storage<Conn, u64>>(abandon: bool) -> (Vec<Cmd>, Stats) {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    sim.auto_close = false;
    sim.take_log();
    sim.drain().unwrap();
    assert_eq!(sim.take_log(), [Cmd::Close(1)]);
    let s = sim.stats();
    // The close holds the only place: no open until it is reported.
    assert_eq!((s.closing, s.size, s.opening), (1, 1, 0));
    (sim.fail_closes, sim.abandon) = (1, abandon);
    sim.close_next();
    let out = (sim.take_log(), sim.stats());
    assert_eq!(sim.get(None).1, 2);
    out
}

/// A close cut off at the driver's bound still tore the connection down: its place is freed (the
/// open it held back follows) and it is counted in `abandoned_closes`.
fn abandoned_close_frees_its_place_and_is_counted<S: Storage<Conn, u64>>() {
    let (log, s) = close_outcome::<S>(true);
    assert_eq!(log, [Cmd::Open]);
    assert_eq!((s.closing, s.size, s.idle, s.closes), (0, 1, 1, 1));
    assert_eq!(abandoned(s), [0, 0, 1]);
}

/// A failed close (an error on the way out) frees its place too, and is no abandonment.
fn failed_close_frees_its_place_and_is_not_counted<S: Storage<Conn, u64>>() {
    let (log, s) = close_outcome::<S>(false);
    let (abandoned_log, abandoned_stats) = close_outcome::<S>(true);
    assert_eq!(log, abandoned_log);
    assert_eq!(abandoned(s), [0, 0, 0]);
    assert_eq!(
        Stats {
            abandoned_closes: 0,
            ..abandoned_stats
        },
        s
    );
}

/// A checkout queued behind a reset that hangs is served by the refill once the reset is
/// abandoned, with a fresh connection.
fn waiter_behind_an_abandoned_reset_gets_a_fresh_connection<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    sim.auto_reset = false;
    let (_, conn) = sim.get(None);
    sim.put(conn, Returned::Dirty);
    let w = sim.wait(None, Wait::Forever);
    assert!(sim.grants.is_empty());
    sim.take_log();
    (sim.fail_resets, sim.abandon) = (1, true);
    sim.reset_next();
    assert_eq!(
        sim.take_log(),
        [Cmd::Close(conn), Cmd::Open, Cmd::Grant(w, 2)]
    );
    assert_eq!(abandoned(sim.stats()), [1, 0, 0]);
}
