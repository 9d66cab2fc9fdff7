//! A backend that stops answering (`SIGSTOP`) must not stall the pool: its close, reset or
//! failed check runs on an I/O thread of its own, so a checkout takes another connection within
//! its timeout, and refills go on. (The only timed assertions here are "within the pool's timeout
//! plus a margin".)

mod common;

use std::time::{Duration, Instant};

use common::{backend_pid, config_for, eventually};
use sanspool_postgres::{Builder, PgConnector, Pool};
use sanspool_tests::{Frozen, PgServer};

const TIMEOUT: Duration = Duration::from_secs(2);
/// Room for a slow, busy machine; far below the "forever" these tests guard against.
const MARGIN: Duration = Duration::from_secs(4);

fn pool(
    server: &PgServer,
    name: &str,
    connector: impl FnOnce(PgConnector) -> PgConnector,
) -> Pool<PgConnector> {
    let connector = connector(PgConnector::from_config(config_for(&server.dsn(), name)));
    Builder::new(connector)
        .min(2)
        .max(2)
        .timeout(TIMEOUT)
        .build()
        .expect("the pool builds")
}

/// A close that hangs (its backend stopped; the connector's close bound is long) does not hold
/// up the refill or the next checkout.
#[test]
fn a_hung_close_does_not_stall_refills_or_checkouts() {
    let server = PgServer::start().expect("a server of our own");
    let pool = pool(&server, "hung-close", |c| {
        c.close_timeout(Duration::from_secs(60))
    });
    let (mut a, b) = (pool.get().unwrap(), pool.get().unwrap());
    let stuck = backend_pid(&mut a);
    drop((a, b));
    let frozen = Frozen::process(stuck).expect("stop the backend");
    // Retire both idle connections: one close hangs, the other completes and a refill opens.
    // Neither the drain nor the checkout after it waits on the hung close.
    let started = Instant::now();
    pool.drain().unwrap();
    let mut c = pool.get().expect("a checkout within its timeout");
    assert!(
        started.elapsed() < TIMEOUT + MARGIN,
        "the drain or the checkout waited on the hung close"
    );
    assert_ne!(backend_pid(&mut c), stuck);
    drop(c);
    assert!(
        pool.stats().closing >= 1,
        "the hung close is still counted against max"
    );
    drop(frozen);
    eventually("the hung close ends once the backend runs", || {
        pool.stats().closing == 0
    });
    // It finished within its (long) bound once the backend ran again: not abandoned.
    assert_eq!(pool.stats().abandoned_closes, 0, "{:?}", pool.stats());
}

/// The same hung close under a short bound: cut off there, counted in `abandoned_closes`, and its
/// place freed although the backend is still stopped.
#[test]
fn a_close_cut_off_at_its_bound_is_counted_and_frees_its_place() {
    let server = PgServer::start().expect("a server of our own");
    let bound = Duration::from_millis(500);
    let pool = pool(&server, "abandoned-close", |c| c.close_timeout(bound));
    let (mut a, b) = (pool.get().unwrap(), pool.get().unwrap());
    let stuck = backend_pid(&mut a);
    drop((a, b));
    let frozen = Frozen::process(stuck).expect("stop the backend");
    pool.drain().unwrap();
    eventually("the hung close is cut off at its bound", || {
        pool.stats().abandoned_closes == 1
    });
    let s = pool.stats();
    assert_eq!(s.closing, 0, "its place is free: {s:?}");
    assert_eq!((s.abandoned_resets, s.abandoned_checks), (0, 0), "{s:?}");
    eventually("refilled to min", || pool.stats().idle == 2);
    let (mut c, mut d) = (pool.get().unwrap(), pool.get().unwrap());
    assert!(![backend_pid(&mut c), backend_pid(&mut d)].contains(&stuck));
    drop(frozen);
}

/// With `check_on_checkout`, a stopped idle backend fails its check within the check bound and
/// is closed off the checkout's thread: the checkout goes on to another connection.
#[test]
fn a_check_on_a_stopped_backend_does_not_block_the_checkout() {
    let server = PgServer::start().expect("a server of our own");
    let connector = PgConnector::from_config(config_for(&server.dsn(), "hung-check"))
        .check_timeout(Duration::from_millis(500))
        .close_timeout(Duration::from_secs(60));
    let pool = Builder::new(connector)
        .min(2)
        .max(2)
        .timeout(TIMEOUT)
        .check_on_checkout(true)
        .build()
        .expect("the pool builds");
    let (mut a, mut b) = (pool.get().unwrap(), pool.get().unwrap());
    let (pa, pb) = (backend_pid(&mut a), backend_pid(&mut b));
    drop((a, b));
    // LIFO: the most recently returned (b) is checked out first; stop that one.
    let frozen = Frozen::process(pb).expect("stop the backend");
    let started = Instant::now();
    let mut c = pool.get().expect("a checkout within its timeout");
    assert!(
        started.elapsed() < TIMEOUT + MARGIN,
        "the checkout waited on the failed check's close"
    );
    let got = backend_pid(&mut c);
    assert_ne!(got, pb);
    assert!(
        got == pa || pool.stats().opens >= 3,
        "the other one, or a fresh one"
    );
    drop(c);
    drop(frozen);
}
