//! What the pools do with idle connections the server or the network killed, and with a check
//! that hangs — both drivers, on a real server: every idle connection is vetted (the connector's
//! probe, no round trip) before a checkout gets it, so a fast restart or a network reset while
//! connections sit idle costs no borrower a failed query; and `get()` keeps its timeout while a
//! checkout's check hangs on a frozen network (the vet runs while the checkout waits, bounded by
//! the checkout's own deadline, not the check's).

mod common;

use std::time::{Duration, Instant};

use common::{named, runtime, server_addr};
use sanspool_postgres::{GetError, PgConnector, Pool};
use sanspool_tests::harness::Proxy;
use sanspool_tests::{shared_dsn, PgServer};
use sanspool_tokio::postgres as tpg;

/// Connections in each pool: all idle when the fault strikes.
const SIZE: usize = 4;

/// How far past its timeout a `get()` may return.
const SLACK: Duration = Duration::from_millis(100);

/// A blocking pool of `SIZE` connections, each having answered a query, all idle.
fn blocking_pool(dsn: &str) -> Pool<PgConnector> {
    let pool = Pool::builder(PgConnector::new(dsn).expect("a valid DSN"))
        .min(SIZE)
        .max(SIZE)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("the pool");
    let mut held: Vec<_> = (0..SIZE).map(|_| pool.get().expect("a checkout")).collect();
    for conn in &mut held {
        conn.simple_query("SELECT 1").expect("a query");
    }
    drop(held);
    assert_eq!(pool.stats().idle, SIZE);
    pool
}

/// Takes every connection at once (so each idle one is taken) and runs a query on each: how
/// many queries failed.
fn blocking_failures(pool: &Pool<PgConnector>) -> usize {
    let mut held: Vec<_> = (0..SIZE).map(|_| pool.get().expect("a checkout")).collect();
    held.iter_mut()
        .map(|conn| conn.simple_query("SELECT 1"))
        .filter(Result::is_err)
        .count()
}

async fn tokio_pool(dsn: &str) -> sanspool_tokio::Pool<tpg::PgConnector> {
    let pool = sanspool_tokio::Pool::builder(tpg::PgConnector::new(dsn).expect("a valid DSN"))
        .min(SIZE)
        .max(SIZE)
        .timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("the pool");
    let mut held = Vec::new();
    for _ in 0..SIZE {
        let conn = pool.get().await.expect("a checkout");
        conn.simple_query("SELECT 1").await.expect("a query");
        held.push(conn);
    }
    drop(held);
    assert_eq!(pool.stats().idle, SIZE);
    pool
}

async fn tokio_failures(pool: &sanspool_tokio::Pool<tpg::PgConnector>) -> usize {
    let mut held = Vec::new();
    for _ in 0..SIZE {
        held.push(pool.get().await.expect("a checkout"));
    }
    let mut failed = 0;
    for conn in &held {
        failed += usize::from(conn.simple_query("SELECT 1").await.is_err());
    }
    failed
}

/// Three fast restarts (the server sends each idle session a FATAL 57P01 and closes it) while
/// every connection sits idle: no query fails; each dead connection was closed by its vet
/// (counted stale) and replaced.
#[test]
fn restarts_while_idle_fail_no_query() {
    let mut server = PgServer::start().expect("a server of our own");
    let dsn = named(&server.dsn(), "dead-restart");
    let pool = blocking_pool(&dsn);
    let rt = runtime(2);
    let async_pool = rt.block_on(tokio_pool(&dsn));
    let (mut failed, mut async_failed) = (0, 0);
    for _ in 0..3 {
        server.restart_fast().expect("pg_ctl restart -m fast");
        failed += blocking_failures(&pool);
        async_failed += rt.block_on(tokio_failures(&async_pool));
    }
    let (stats, async_stats) = (pool.stats(), async_pool.stats());
    eprintln!(
        "blocking: {failed} failed, {stats:?}\nasync: {async_failed} failed, {async_stats:?}"
    );
    assert_eq!(
        (failed, async_failed),
        (0, 0),
        "queries failed on dead idle connections"
    );
    assert_eq!(
        stats.stale,
        3 * SIZE as u64,
        "every dead connection found by its vet"
    );
    assert_eq!(async_stats.stale, 3 * SIZE as u64);
    assert_eq!(stats.broken_returns + async_stats.broken_returns, 0);
}

/// Every connection reset on the network (an RST, as from a middlebox) while idle: no query
/// fails.
#[test]
fn a_network_reset_while_idle_fails_no_query() {
    let dsn = shared_dsn();
    let proxy = Proxy::start(server_addr(&dsn)).expect("a proxy");
    let dsn = named(&proxy.dsn(&dsn), "dead-reset");
    let pool = blocking_pool(&dsn);
    let rt = runtime(2);
    let async_pool = rt.block_on(tokio_pool(&dsn));
    let (mut failed, mut async_failed) = (0, 0);
    for _ in 0..3 {
        assert_eq!(proxy.reset().expect("a reset"), 2 * SIZE);
        failed += blocking_failures(&pool);
        async_failed += rt.block_on(tokio_failures(&async_pool));
    }
    eprintln!(
        "resets: blocking {failed} failed, {} stale; async {async_failed} failed, {} stale",
        pool.stats().stale,
        async_pool.stats().stale
    );
    assert_eq!(
        (failed, async_failed),
        (0, 0),
        "queries failed on reset idle connections"
    );
    assert_eq!(pool.stats().stale, 3 * SIZE as u64);
    assert_eq!(async_pool.stats().stale, 3 * SIZE as u64);
}

/// `check_on_checkout` on a frozen network: every check hangs until its own bound (5 s by
/// default, or `check_timeout`), but each `get()` returns at its timeout; and once the network
/// is back the pool serves again.
#[test]
fn get_keeps_its_timeout_while_checks_hang() {
    let dsn = shared_dsn();
    let proxy = Proxy::start(server_addr(&dsn)).expect("a proxy");
    let dsn = named(&proxy.dsn(&dsn), "dead-frozen");
    let timeout = Duration::from_secs(2);
    for connector in [
        PgConnector::new(&dsn).expect("a valid DSN"),
        PgConnector::new(&dsn)
            .expect("a valid DSN")
            .check_timeout(Duration::from_millis(500)),
    ] {
        let pool = Pool::builder(connector)
            .min(SIZE)
            .max(SIZE)
            .timeout(timeout)
            .check_on_checkout(true)
            .build()
            .expect("the pool");
        proxy.freeze();
        for _ in 0..2 {
            let t0 = Instant::now();
            let got = pool.get();
            let took = t0.elapsed();
            assert!(
                matches!(got, Err(GetError::Timeout(_))),
                "a get over a frozen network: {:?}",
                got.map(drop)
            );
            eprintln!("blocking: get() over a frozen network returned after {took:?}");
            assert!(took <= timeout + SLACK, "get() took {took:?}");
        }
        proxy.thaw();
        let mut conn = pool.get().expect("served once the network is back");
        conn.simple_query("SELECT 1").expect("a query");
    }

    let rt = runtime(2);
    rt.block_on(async {
        let pool = sanspool_tokio::Pool::builder(tpg::PgConnector::new(&dsn).expect("a DSN"))
            .min(SIZE)
            .max(SIZE)
            .timeout(timeout)
            .check_on_checkout(true)
            .build()
            .await
            .expect("the pool");
        proxy.freeze();
        for _ in 0..2 {
            let t0 = Instant::now();
            let got = pool.get().await;
            let took = t0.elapsed();
            assert!(
                matches!(got, Err(GetError::Timeout(_))),
                "an async get over a frozen network: {:?}",
                got.map(drop)
            );
            eprintln!("async: get() over a frozen network returned after {took:?}");
            assert!(took <= timeout + SLACK, "get() took {took:?}");
        }
        proxy.thaw();
        let conn = pool.get().await.expect("served once the network is back");
        conn.simple_query("SELECT 1").await.expect("a query");
    });
}
