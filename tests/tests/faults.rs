//! Faults: backends killed server-side, a server that stops and comes back, and sessions the
//! tracker cannot follow.

mod common;

use std::time::{Duration, Instant};

use common::{backend_pid, config_for, connector, eventually, monitor, monitor_for, PATIENCE};
use sanspool_postgres::{Builder, Error, GetError, PgConnector, Pool, TxStatus};
use sanspool_tests::PgServer;

/// With `check_on_checkout`, a connection killed while idle is found dead before anyone gets it:
/// the checkout gets a fresh, working one.
#[test]
fn killed_connection_is_replaced_at_checkout_when_checked() {
    let name = "kill-check";
    let mut mon = monitor(name);
    let pool: Pool<PgConnector> = Builder::new(connector(name))
        .min(1)
        .max(2)
        .check_on_checkout(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let pid = backend_pid(&mut pool.get().unwrap());
    mon.terminate(pid);

    let mut conn = pool.get().expect("a working connection");
    let fresh = backend_pid(&mut conn);
    assert_ne!(fresh, pid);
    drop(conn);
    let stats = pool.stats();
    assert_eq!(
        (stats.stale, stats.broken_returns),
        (1, 0),
        "the dead one was discarded by its vet: {stats:?}"
    );
    assert!(stats.closes >= 1, "{stats:?}");
    assert_eq!(mon.pids(), [fresh], "no leftover backend");
}

/// The borrower of a connection killed while it holds it sees its query fail; the guard then
/// gives it back broken, and it is closed and replaced. (Killed while idle, it would have been
/// found by its vet first: `tests/tests/idle_dead.rs`.)
#[test]
fn killed_connection_is_replaced_after_its_failed_query() {
    let name = "kill-nocheck";
    let mut mon = monitor(name);
    let pool: Pool<PgConnector> = Builder::new(connector(name))
        .min(1)
        .max(2)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut dead = pool.get().unwrap();
    let pid = backend_pid(&mut dead);
    mon.terminate(pid);

    assert!(
        dead.simple_query("SELECT 1").is_err(),
        "the killed backend cannot answer"
    );
    // The client returns on the server's FATAL error, before or after it reads the end of the
    // stream: the tracker then says closed (broken: closed at once) or not yet answered (dirty:
    // the reset fails, and it is closed).
    let status = dead.status();
    assert!(
        matches!(status, TxStatus::Closed | TxStatus::Unknown),
        "{status:?}"
    );
    drop(dead);
    let stats = pool.stats();
    assert_eq!(stats.broken_returns + stats.resets, 1, "{stats:?}");
    assert_eq!(stats.closes, 1, "the dead connection was closed: {stats:?}");

    let mut conn = pool.get().unwrap();
    let fresh = backend_pid(&mut conn);
    assert_ne!(fresh, pid);
    assert_eq!(
        conn.query_one("SELECT 41 + 1", &[])
            .unwrap()
            .get::<_, i32>(0),
        42
    );
    drop(conn);
    eventually("one backend, the new one", || mon.pids() == [fresh]);
}

/// `check()` finds the idle connections killed under the pool and replaces them.
#[test]
fn check_replaces_killed_idle_connections() {
    let name = "kill-idle";
    let mut mon = monitor(name);
    let pool: Pool<PgConnector> = Builder::new(connector(name)).min(2).max(3).build().unwrap();
    let old = mon.pids();
    assert_eq!(old.len(), 2);
    for &pid in &old {
        mon.terminate(pid);
    }
    assert_eq!(pool.check().unwrap(), 2, "both fail their check");
    pool.wait_ready(PATIENCE).unwrap();
    eventually("two new backends", || {
        let now = mon.pids();
        now.len() == 2 && now.iter().all(|p| !old.contains(p))
    });
}

/// The pool's checkout error while the server is down: a typed one, never a hang.
fn assert_down(err: &GetError<Error>) {
    match err {
        GetError::Connect(e) | GetError::Timeout(Some(e)) => {
            assert!(
                matches!(
                    **e,
                    Error::Connect(_) | Error::Postgres(_) | Error::TimedOut(_)
                ),
                "{e:?}"
            );
        }
        GetError::Timeout(None) => {}
        other => panic!("unexpected error while the server is down: {other:?}"),
    }
}

/// Stops the server under a pool, checks that checkouts fail with a typed error, starts it again
/// and waits for the pool to serve again, within `max`.
fn survives_a_restart(name: &str, check_on_checkout: bool) {
    let mut server = PgServer::start().expect("start a server of our own");
    let dsn = server.dsn();
    let max = 3;
    let pool: Pool<PgConnector> = Builder::new(PgConnector::from_config(config_for(&dsn, name)))
        .min(2)
        .max(max)
        .timeout(Duration::from_millis(500))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .check_on_checkout(check_on_checkout)
        .build()
        .unwrap();
    backend_pid(&mut pool.get().unwrap());

    server.stop().unwrap();
    // Idle connections are dead now: without a check, the first checkouts get them and their
    // queries fail (they go back broken); then checkouts fail, as the opens do.
    let deadline = Instant::now() + PATIENCE;
    let mut failures = 0;
    while failures < 3 {
        assert!(
            Instant::now() < deadline,
            "checkouts kept succeeding with the server down"
        );
        match pool.get() {
            Ok(mut conn) => assert!(conn.simple_query("SELECT 1").is_err()),
            Err(e) => {
                assert_down(&e);
                failures += 1;
            }
        }
    }
    let stats = pool.stats();
    assert!(stats.open_failures > 0, "{stats:?}");

    server.start_again().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let pid = loop {
        assert!(Instant::now() < deadline, "the pool did not recover");
        if let Ok(mut conn) = pool.get() {
            if let Ok(row) = conn.query_one("SELECT pg_backend_pid()", &[]) {
                break row.get::<_, i32>(0);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(pid > 0);
    pool.wait_ready(PATIENCE).expect("refilled to min");
    let mut mon = monitor_for(&dsn, name);
    let mut conns: Vec<_> = (0..max).map(|_| pool.get().expect("served")).collect();
    for conn in &mut conns {
        backend_pid(conn);
    }
    assert_eq!(mon.count(), max as i64, "exactly max after recovery");
    assert!(pool.stats().size <= max);
    drop(conns);
    drop(pool);
    eventually("the pool's connections to close", || mon.count() == 0);
}

#[test]
fn server_restart_with_check_on_checkout() {
    survives_a_restart("restart-check", true);
}

#[test]
fn server_restart_without_check() {
    survives_a_restart("restart-nocheck", false);
}

/// A Unix-domain socket session is tracked like a TCP one (libpq ignores `sslmode` there, and so
/// does the connector): a dirty return is rolled back and kept, a clean one costs no round trip.
#[test]
fn unix_socket_sessions_are_tracked() {
    let server = PgServer::start().expect("start a server of our own");
    let name = "unix";
    let dsn = format!(
        "host={} port={} user=postgres dbname=postgres sslmode=require",
        server.data_dir().display(),
        server.port()
    );
    let pool: Pool<PgConnector> = Builder::new(PgConnector::from_config(config_for(&dsn, name)))
        .min(1)
        .max(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let mut conn = pool.get().unwrap();
    assert!(conn.status_cell().is_tracked());
    assert_eq!(conn.status(), TxStatus::Idle);
    let pid = backend_pid(&mut conn);
    conn.batch_execute("BEGIN; CREATE TEMP TABLE scratch (x int)")
        .unwrap();
    drop(conn);
    assert_eq!(pool.stats().resets, 1);

    let mut conn = pool.get().unwrap();
    assert_eq!(
        backend_pid(&mut conn),
        pid,
        "rolled back and kept, not replaced"
    );
    assert!(common::outside_transaction(&mut conn));
    drop(conn);
    let stats = pool.stats();
    assert_eq!(
        stats.resets, 1,
        "used, idle: clean, no round trip: {stats:?}"
    );
    assert_eq!(stats.broken_returns, 0);
    assert_eq!(stats.opens, 1, "one connection all along: {stats:?}");
}
