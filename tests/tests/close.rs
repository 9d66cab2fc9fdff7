//! A connector's close sends Terminate and waits for the server to close its end: when it
//! returns, the session is gone from the server (`pg_stat_activity`), in both connectors, over
//! TCP, a Unix socket and TLS; against a backend that does not answer (stopped with `SIGSTOP`)
//! or over a link that stopped passing packets (the harness's proxy, frozen), it gives up at the
//! close timeout with `TimedOut(Op::Close)`.
//!
//! Why the session is gone at once, with nothing polled: a backend leaves `pg_stat_activity`
//! (its `before_shmem_exit` hook) before it closes its socket (an `on_proc_exit` hook), so the
//! end of stream the close waits for comes after.

mod common;

use std::time::{Duration, Instant};

use common::{monitor_for, named, runtime};
use sanspool_postgres::{Connector, Error, Op, PgConnector};
use sanspool_tests::harness::Proxy;
use sanspool_tests::{shared_dsn, Frozen, PgServer, Setup};
use sanspool_tokio::postgres as tpg;
use sanspool_tokio::Connector as _;

/// Closes in a row, to give a close that returned early a chance to show.
const ROUNDS: usize = 10;
/// Room for a slow, busy machine beyond a bound.
const MARGIN: Duration = Duration::from_secs(4);

/// Both connectors' closes, and the blocking connection's drop, against the server at `dsn`
/// (watched in plaintext through `plain`): the session is gone when each returns.
fn closes_leave_nothing(plain: &str, dsn: &str, name: &str) {
    let mut mon = monitor_for(plain, name);
    let dsn = named(dsn, name);
    let connector = PgConnector::new(&dsn).expect("a valid DSN");
    for round in 0..ROUNDS {
        let mut conn = connector.connect().expect("connect");
        conn.simple_query("SELECT 1").expect("a query");
        assert_eq!(mon.count(), 1);
        if round % 2 == 0 {
            connector.close(conn).expect("close");
        } else {
            drop(conn);
        }
        assert_eq!(
            mon.count(),
            0,
            "blocking, round {round}: the session outlived its close"
        );
    }
    let rt = runtime(1);
    let connector = tpg::PgConnector::new(&dsn).expect("a valid DSN");
    for round in 0..ROUNDS {
        let conn = rt.block_on(connector.connect()).expect("connect");
        rt.block_on(conn.simple_query("SELECT 1")).expect("a query");
        assert_eq!(mon.count(), 1);
        rt.block_on(connector.close(conn)).expect("close");
        assert_eq!(
            mon.count(),
            0,
            "tokio, round {round}: the session outlived its close"
        );
    }
}

#[test]
fn a_closed_session_is_gone_when_close_returns() {
    let dsn = shared_dsn();
    closes_leave_nothing(&dsn, &dsn, "close-tcp");
}

#[test]
fn a_closed_session_is_gone_when_close_returns_over_a_unix_socket() {
    let server = PgServer::start().expect("a server of our own");
    let unix = format!("{} host={}", server.dsn(), server.data_dir().display());
    closes_leave_nothing(&server.dsn(), &unix, "close-unix");
}

#[test]
fn a_closed_session_is_gone_when_close_returns_over_tls() {
    let server = PgServer::start_with(Setup {
        tls: true,
        ..Setup::default()
    })
    .expect("a TLS server of our own");
    let tls = format!("{} sslmode=require", server.dsn());
    closes_leave_nothing(&server.dsn(), &tls, "close-tls");
}

#[test]
fn a_close_against_a_stopped_backend_times_out_at_its_bound() {
    let server = PgServer::start().expect("a server of our own");
    let bound = Duration::from_millis(500);
    let name = "close-frozen";
    let mut mon = monitor_for(&server.dsn(), name);
    let dsn = named(&server.dsn(), name);

    let connector = PgConnector::new(&dsn)
        .expect("a valid DSN")
        .close_timeout(bound);
    let conn = connector.connect().expect("connect");
    let frozen = Frozen::process(mon.pids()[0]).expect("stop the backend");
    let started = Instant::now();
    let err = connector
        .close(conn)
        .expect_err("the backend cannot answer");
    let took = started.elapsed();
    assert!(matches!(err, Error::TimedOut(Op::Close)), "{err:?}");
    assert!(took >= bound, "gave up before its bound: {took:?}");
    assert!(took < bound + MARGIN, "took {took:?}");
    // Dropped, not closed: bounded the same way.
    let conn = connector.connect().expect("connect");
    let pids = mon.pids();
    let newest = *pids
        .iter()
        .find(|&&p| p != frozen.pid())
        .expect("the new backend");
    let frozen_too = Frozen::process(newest).expect("stop the backend");
    let started = Instant::now();
    drop(conn);
    assert!(
        started.elapsed() < bound + MARGIN,
        "the drop took {:?}",
        started.elapsed()
    );
    drop((frozen, frozen_too));

    let rt = runtime(1);
    let connector = tpg::PgConnector::new(&dsn)
        .expect("a valid DSN")
        .close_timeout(bound);
    let before = mon.pids();
    let conn = rt.block_on(connector.connect()).expect("connect");
    let pid = *mon
        .pids()
        .iter()
        .find(|p| !before.contains(p))
        .expect("the new backend");
    let frozen = Frozen::process(pid).expect("stop the backend");
    let started = Instant::now();
    let err = rt
        .block_on(connector.close(conn))
        .expect_err("the backend cannot answer");
    let took = started.elapsed();
    assert!(matches!(err, Error::TimedOut(Op::Close)), "{err:?}");
    assert!(took >= bound, "gave up before its bound: {took:?}");
    assert!(took < bound + MARGIN, "took {took:?}");
    drop(frozen);
}

/// The same through a link that stopped passing packets (the harness's proxy, frozen): the
/// Terminate is held, no end of stream comes, the close gives up at its bound.
#[test]
fn a_close_over_a_frozen_link_times_out_at_its_bound() {
    let dsn = shared_dsn();
    let config: sanspool_postgres::postgres::Config = dsn.parse().expect("a valid DSN");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let proxy = Proxy::start(upstream).expect("a proxy");
    let bound = Duration::from_millis(300);
    let dsn = named(&proxy.dsn(&dsn), "close-frozen-link");

    let connector = PgConnector::new(&dsn)
        .expect("a valid DSN")
        .close_timeout(bound);
    let rt = runtime(1);
    let tokio_connector = tpg::PgConnector::new(&dsn)
        .expect("a valid DSN")
        .close_timeout(bound);
    let conn = connector.connect().expect("connect");
    let tokio_conn = rt.block_on(tokio_connector.connect()).expect("connect");
    proxy.freeze();
    let started = Instant::now();
    let err = connector.close(conn).expect_err("nothing comes back");
    assert!(matches!(err, Error::TimedOut(Op::Close)), "{err:?}");
    let err = rt
        .block_on(tokio_connector.close(tokio_conn))
        .expect_err("nothing comes back");
    assert!(matches!(err, Error::TimedOut(Op::Close)), "{err:?}");
    let took = started.elapsed();
    assert!(took >= 2 * bound, "gave up before its bounds: {took:?}");
    assert!(took < 2 * bound + MARGIN, "took {took:?}");
    proxy.thaw();
}

/// Sessions each holding this many temporary tables: a backend drops them as it exits, which
/// takes long enough for a close that returned before the session ended to show.
const TEMP_TABLES: usize = 200;

const FILL_TEMP_TABLES: &str = "DO $$ BEGIN FOR i IN 1..200 LOOP \
     EXECUTE format('CREATE TEMP TABLE IF NOT EXISTS t%s (x int)', i); END LOOP; END $$";

/// Idle sessions holding temporary tables: `n` checkouts at once, each fills its session, all
/// given back clean (the default reset keeps the tables).
fn fill_blocking<P>(n: usize, get: impl Fn() -> P)
where
    P: std::ops::DerefMut<Target = sanspool_postgres::PgConn>,
{
    let mut held: Vec<P> = (0..n).map(|_| get()).collect();
    for conn in &mut held {
        conn.batch_execute(FILL_TEMP_TABLES)
            .expect("temporary tables");
    }
}

/// Closes the pool's `n` idle sessions with `close`, then counts its sessions the server still
/// lists: none. Returns how long `close` took.
fn gone_when_closed(mon: &mut common::Monitor, n: usize, close: impl FnOnce()) -> Duration {
    assert_eq!(mon.count(), n as i64, "the idle sessions before the close");
    let started = Instant::now();
    close();
    let took = started.elapsed();
    assert_eq!(mon.count(), 0, "sessions outlived the close ({took:?})");
    took
}

/// `Pool::close` and psycopg2's `closeall` (threaded, persistent, simple) return once every idle
/// connection's session is gone from `pg_stat_activity`, each session holding 200 temporary
/// tables; so does dropping the pool's last handle.
#[test]
fn closeall_returns_with_every_idle_session_gone() {
    use sanspool_postgres::psycopg2::{
        PersistentConnectionPool, SimpleConnectionPool, ThreadedConnectionPool,
    };
    use sanspool_postgres::Pool;
    const N: usize = 4;
    let dsn = shared_dsn();
    let mut took = Vec::new();

    let name = "closeall-pool";
    let mut mon = monitor_for(&dsn, name);
    let pool = Pool::builder(PgConnector::new(&named(&dsn, name)).expect("a valid DSN"))
        .min(N)
        .max(N)
        .build()
        .expect("the pool");
    fill_blocking(N, || pool.get().expect("a connection"));
    took.push((
        "Pool::close",
        gone_when_closed(&mut mon, N, || pool.close().expect("close")),
    ));

    let name = "closeall-drop";
    let mut mon = monitor_for(&dsn, name);
    let pool = Pool::builder(PgConnector::new(&named(&dsn, name)).expect("a valid DSN"))
        .min(N)
        .max(N)
        .build()
        .expect("the pool");
    fill_blocking(N, || pool.get().expect("a connection"));
    took.push(("drop(Pool)", gone_when_closed(&mut mon, N, || drop(pool))));

    let name = "closeall-threaded";
    let mut mon = monitor_for(&dsn, name);
    let connector = PgConnector::new(&named(&dsn, name)).expect("a valid DSN");
    let pool = ThreadedConnectionPool::new(N, N, connector).expect("the pool");
    fill_blocking(N, || pool.get().expect("a connection"));
    // A connection held only under its key (its handle dropped): psycopg2 closes it too.
    let keyed = pool.getconn(Some(7)).expect("a keyed connection");
    keyed
        .lock()
        .expect("the connection")
        .batch_execute(FILL_TEMP_TABLES)
        .expect("temporary tables");
    drop(keyed);
    took.push((
        "ThreadedConnectionPool::closeall",
        gone_when_closed(&mut mon, N, || pool.closeall().expect("closeall")),
    ));

    let name = "closeall-persistent";
    let mut mon = monitor_for(&dsn, name);
    let connector = PgConnector::new(&named(&dsn, name)).expect("a valid DSN");
    let pool = PersistentConnectionPool::new(N, N, connector).expect("the pool");
    let conn = pool.getconn().expect("this thread's connection");
    conn.lock()
        .expect("the connection")
        .batch_execute(FILL_TEMP_TABLES)
        .expect("temporary tables");
    drop(conn);
    took.push((
        "PersistentConnectionPool::closeall",
        gone_when_closed(&mut mon, N, || pool.closeall().expect("closeall")),
    ));

    let name = "closeall-simple";
    let mut mon = monitor_for(&dsn, name);
    let connector = PgConnector::new(&named(&dsn, name)).expect("a valid DSN");
    let pool = SimpleConnectionPool::new(N, N, connector).expect("the pool");
    {
        let mut held: Vec<_> = (0..N).map(|_| pool.get().expect("a connection")).collect();
        for conn in &mut held {
            conn.batch_execute(FILL_TEMP_TABLES)
                .expect("temporary tables");
        }
    }
    took.push((
        "SimpleConnectionPool::closeall",
        gone_when_closed(&mut mon, N, || pool.closeall().expect("closeall")),
    ));
    eprintln!("{N} idle sessions with {TEMP_TABLES} temporary tables each, closed in: {took:?}");
}

/// The async pool's `close().await` returns once every idle connection's session is gone.
#[test]
fn the_async_close_returns_with_every_idle_session_gone() {
    const N: usize = 4;
    let dsn = shared_dsn();
    let name = "closeall-async";
    let mut mon = monitor_for(&dsn, name);
    let rt = runtime(1);
    let connector = tpg::PgConnector::new(&named(&dsn, name)).expect("a valid DSN");
    let pool = rt
        .block_on(
            sanspool_tokio::Pool::builder(connector)
                .min(N)
                .max(N)
                .build(),
        )
        .expect("the pool");
    rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..N {
            held.push(pool.get().await.expect("a connection"));
        }
        for conn in &held {
            conn.batch_execute(FILL_TEMP_TABLES)
                .await
                .expect("temporary tables");
        }
    });
    let took = gone_when_closed(&mut mon, N, || {
        rt.block_on(pool.close()).expect("close");
    });
    eprintln!(
        "async: {N} idle sessions with {TEMP_TABLES} temporary tables each, closed in {took:?}"
    );
    // Closed once: the second close is refused, and waits for nothing.
    assert!(rt.block_on(pool.close()).is_err());
}
