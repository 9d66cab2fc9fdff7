//! Every network operation of the connector is bounded: opening against a postmaster that
//! accepts and never answers, and a `ROLLBACK`, a check and a close against a backend that
//! stopped (`SIGSTOP`). Each returns within its bound plus a margin, with a typed error, and the
//! connection is dropped, never waited on. (The only timed assertions here are these bounds.)
//! Through a pool, each operation cut off at its bound is counted in the pool's stats
//! (`abandoned_resets`, `abandoned_checks`, `abandoned_closes`), and its place is refilled.

mod common;

use std::time::{Duration, Instant};

use common::{backend_pid, config_for};
use sanspool_postgres::{Builder, Connector, Error, Op, PgConnector, Pool, Returned};
use sanspool_tests::{Frozen, PgServer};

const BOUND: Duration = Duration::from_secs(1);
/// Room for a slow, busy machine; far below the "forever" these bounds prevent.
const MARGIN: Duration = Duration::from_secs(4);

fn assert_within(started: Instant, bound: Duration, what: &str) {
    let took = started.elapsed();
    assert!(
        took >= bound.saturating_sub(Duration::from_millis(50)),
        "{what}: too early, {took:?}"
    );
    assert!(
        took < bound + MARGIN,
        "{what}: took {took:?}, bound {bound:?}"
    );
}

fn assert_timed_out(result: Result<(), Error>, op: Op) {
    match result {
        Err(Error::TimedOut(got)) => assert_eq!(got, op),
        other => panic!("expected a {op:?} timeout, got {other:?}"),
    }
}

#[test]
fn a_connect_to_a_frozen_postmaster_returns_within_the_bound() {
    let server = PgServer::start().expect("start a server of our own");
    let connector = PgConnector::from_config(config_for(&server.dsn(), "frozen-connect"))
        .connect_timeout(BOUND);
    drop(connector.connect().expect("connects while the server runs"));

    let frozen = server.freeze().unwrap();
    let started = Instant::now();
    let err = connector.connect().map(drop).unwrap_err();
    assert_within(started, BOUND, "connect");
    assert!(matches!(err, Error::TimedOut(Op::Connect)), "{err:?}");

    // The configuration's connect_timeout wins over the connector's, as in libpq.
    let dsn = format!("{} connect_timeout=2", server.dsn());
    let connector = PgConnector::from_config(config_for(&dsn, "frozen-connect"))
        .connect_timeout(Duration::from_secs(600));
    let started = Instant::now();
    let err = connector.connect().map(drop).unwrap_err();
    assert_within(started, Duration::from_secs(2), "connect_timeout=2");
    assert!(matches!(err, Error::TimedOut(Op::Connect)), "{err:?}");

    drop(frozen);
    drop(
        connector
            .connect()
            .expect("connects once the server runs again"),
    );
}

/// A pool's opens against a frozen postmaster give their slots back at the bound: once the server
/// answers again, the pool serves at once, with every slot usable.
#[test]
fn a_pool_does_not_keep_slots_opening_forever() {
    let server = PgServer::start().expect("start a server of our own");
    let connector =
        PgConnector::from_config(config_for(&server.dsn(), "frozen-pool")).connect_timeout(BOUND);
    let frozen = server.freeze().unwrap();
    let pool: Pool<PgConnector> = Builder::new(connector)
        .min(0)
        .max(2)
        .timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(pool.get().is_err(), "nothing can be opened");
    common::eventually("the opens to give up", || pool.stats().opening == 0);
    let failures = pool.stats().open_failures;
    assert!(failures >= 1, "{:?}", pool.stats());
    drop(frozen);
    let a = pool.get().expect("served once the server answers");
    let b = pool.get().expect("and the second slot too");
    drop((a, b));
}

/// One connection with its backend frozen, from a server of its own.
fn frozen_backend(name: &str, connector: impl FnOnce(PgConnector) -> PgConnector) -> Case {
    let server = PgServer::start().expect("start a server of our own");
    let connector = connector(PgConnector::from_config(config_for(&server.dsn(), name)));
    let mut conn = connector.connect().unwrap();
    let pid = backend_pid(&mut conn);
    Case {
        connector,
        conn: Some(conn),
        pid,
        _server: server,
    }
}

struct Case {
    connector: PgConnector,
    conn: Option<sanspool_postgres::PgConn>,
    pid: i32,
    _server: PgServer,
}

#[test]
fn a_hung_rollback_is_bounded_and_the_connection_dropped() {
    let mut case = frozen_backend("hung-rollback", |c| c.reset_timeout(BOUND));
    let mut conn = case.conn.take().unwrap();
    conn.batch_execute("BEGIN").unwrap();
    assert_eq!(case.connector.state(&mut conn), Returned::Dirty);
    let _frozen = Frozen::process(case.pid).unwrap();
    let started = Instant::now();
    assert_timed_out(case.connector.reset(&mut conn), Op::Reset);
    assert_within(started, BOUND, "ROLLBACK");
    assert_eq!(case.connector.state(&mut conn), Returned::Broken);
    assert!(conn.is_closed(), "the socket is closed");
}

#[test]
fn a_hung_check_is_bounded() {
    let mut case = frozen_backend("hung-check", |c| c.check_timeout(BOUND));
    let mut conn = case.conn.take().unwrap();
    let _frozen = Frozen::process(case.pid).unwrap();
    let started = Instant::now();
    assert_timed_out(case.connector.check(&mut conn), Op::Check);
    assert_within(started, BOUND, "check");
    assert_eq!(case.connector.state(&mut conn), Returned::Broken);
}

#[test]
fn a_hung_close_is_bounded() {
    let mut case = frozen_backend("hung-close", |c| c.close_timeout(BOUND));
    let conn = case.conn.take().unwrap();
    let _frozen = Frozen::process(case.pid).unwrap();
    let started = Instant::now();
    let closed = case.connector.close(conn);
    assert_within(started, BOUND, "close");
    assert!(
        closed
            .as_ref()
            .is_err_and(|e| case.connector.is_abandoned(e)),
        "{closed:?}"
    );
    assert_timed_out(closed, Op::Close);
}

/// The pool's `abandoned_*` counters: `[resets, checks, closes]`.
fn abandoned(pool: &Pool<PgConnector>) -> [u64; 3] {
    let s = pool.stats();
    [s.abandoned_resets, s.abandoned_checks, s.abandoned_closes]
}

/// A pool of one connection over `connector`, opened at build; checkouts wait up to 10 s.
fn pool_of_one(connector: PgConnector) -> Pool<PgConnector> {
    Builder::new(connector)
        .min(1)
        .max(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Through a pool: a dirty return whose backend hangs costs the returning thread the reset bound,
/// and the pool replaces the connection.
#[test]
fn a_pool_drops_a_connection_whose_rollback_hangs() {
    let server = PgServer::start().expect("start a server of our own");
    let connector = PgConnector::from_config(config_for(&server.dsn(), "pool-hung-rollback"))
        .reset_timeout(BOUND)
        .close_timeout(BOUND);
    let pool = pool_of_one(connector);
    let mut conn = pool.get().unwrap();
    let pid = backend_pid(&mut conn);
    conn.batch_execute("BEGIN").unwrap();
    let frozen = Frozen::process(pid).unwrap();
    let started = Instant::now();
    drop(conn);
    let mut conn = pool.get().expect("a new connection");
    assert!(
        started.elapsed() < BOUND * 2 + MARGIN,
        "{:?}",
        started.elapsed()
    );
    assert_ne!(backend_pid(&mut conn), pid, "not the hung one");
    // The reset was cut off at its bound, and counted. Its socket was already gone, so the close
    // that followed had nothing to wait for: not cut off.
    assert_eq!(abandoned(&pool), [1, 0, 0], "{:?}", pool.stats());
    assert_eq!(pool.stats().resets, 1);
    drop(frozen);
}

/// Through a pool: an idle check whose backend hangs is cut off at the check bound, counted in
/// `abandoned_checks`, and the connection replaced.
#[test]
fn a_pool_counts_a_check_abandoned_at_its_bound() {
    let server = PgServer::start().expect("start a server of our own");
    let connector = PgConnector::from_config(config_for(&server.dsn(), "pool-hung-check"))
        .check_timeout(BOUND)
        .close_timeout(BOUND);
    let pool = pool_of_one(connector);
    let pid = backend_pid(&mut pool.get().unwrap());
    assert_eq!(abandoned(&pool), [0, 0, 0]);
    let frozen = Frozen::process(pid).unwrap();
    let started = Instant::now();
    assert_eq!(pool.check().unwrap(), 1, "the check failed");
    assert_within(started, BOUND, "the pool's check");
    assert_eq!(abandoned(&pool), [0, 1, 0], "{:?}", pool.stats());
    let mut conn = pool.get().expect("a new connection");
    assert_ne!(backend_pid(&mut conn), pid, "not the hung one");
    drop(frozen);
}

/// Through a pool: a close whose backend hangs is cut off at the close bound and counted in
/// `abandoned_closes`; its place is freed while the backend is still stopped, so the pool refills.
#[test]
fn a_pool_counts_a_close_abandoned_at_its_bound() {
    let server = PgServer::start().expect("start a server of our own");
    let connector =
        PgConnector::from_config(config_for(&server.dsn(), "pool-hung-close")).close_timeout(BOUND);
    let pool = pool_of_one(connector);
    let pid = backend_pid(&mut pool.get().unwrap());
    let frozen = Frozen::process(pid).unwrap();
    let started = Instant::now();
    pool.drain().unwrap();
    // With max 1 the refill waits for the close: served only once the close was given up.
    let mut conn = pool
        .get()
        .expect("a new connection once the close is abandoned");
    assert_within(started, BOUND, "the close, then the refill");
    assert_ne!(backend_pid(&mut conn), pid, "not the hung one");
    assert_eq!(abandoned(&pool), [0, 0, 1], "{:?}", pool.stats());
    drop(frozen);
}

/// Dropping a connection outside the pool (the client's own close) is bounded too.
#[test]
fn dropping_a_connection_with_a_hung_backend_is_bounded() {
    let mut case = frozen_backend("hung-drop", |c| c.close_timeout(BOUND));
    let conn = case.conn.take().unwrap();
    let _frozen = Frozen::process(case.pid).unwrap();
    let started = Instant::now();
    drop(conn);
    assert_within(started, BOUND, "drop");
}
