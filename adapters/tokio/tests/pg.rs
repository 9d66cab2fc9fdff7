//! The pool over tokio-postgres against a real PostgreSQL (the throwaway server of the
//! `sanspool-tests` harness, or `SANSPOOL_TEST_DSN`): waiting, timeouts, fairness, dirty and
//! broken returns, killed backends, server restart, close, cancellation.
//!
//! Each pool's connections carry an `application_name` of their own, so a monitor connection
//! counts them in `pg_stat_activity` as the server sees them.

use sanspool_tests::{shared_dsn, Frozen, PgServer};
use sanspool_tokio::postgres::TxStatus;
use sanspool_tokio::postgres::{tokio_postgres, PgConnector, SessionReset};
use sanspool_tokio::{Builder, GetError, Pool};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// How long "eventually" may take: the machine may be slow and busy.
const PATIENCE: Duration = Duration::from_secs(20);

fn app_name(name: &str) -> String {
    format!("sp-tokio-{name}-{}", std::process::id())
}

fn dsn_named(dsn: &str, name: &str) -> String {
    format!("{dsn} application_name={}", app_name(name))
}

fn connector_for(dsn: &str, name: &str) -> PgConnector {
    PgConnector::new(&dsn_named(dsn, name)).expect("the harness gives a valid DSN")
}

/// An unpooled connection watching one pool's connections (by application name).
struct Monitor {
    client: tokio_postgres::Client,
    app: String,
}

impl Monitor {
    async fn new(dsn: &str, name: &str) -> Monitor {
        let (client, connection) =
            tokio_postgres::connect(&dsn_named(dsn, &format!("{name}-mon")), NoTls)
                .await
                .expect("monitor connects");
        tokio::spawn(connection);
        Monitor {
            client,
            app: app_name(name),
        }
    }

    async fn pids(&self) -> Vec<i32> {
        let rows = self
            .client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid",
                &[&self.app],
            )
            .await
            .expect("monitor query");
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn count(&self) -> usize {
        self.pids().await.len()
    }

    async fn terminate(&self, pid: i32) {
        self.client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate");
    }

    /// Waits until the pool's backends number `n`.
    async fn until_count(&self, n: usize) {
        let until = Instant::now() + PATIENCE;
        loop {
            let c = self.count().await;
            if c == n {
                return;
            }
            assert!(Instant::now() < until, "{c} backends, never {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < until, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The backend's pid, by a simple query: it returns once the ReadyForQuery is read, so the
/// session is idle again when it does (an unnamed `query_one` leaves the Close of its statement
/// owed for a moment, and the status says `Unknown` until that is answered).
async fn backend_pid(conn: &tokio_postgres::Client) -> i32 {
    let messages = conn
        .simple_query("SELECT pg_backend_pid()")
        .await
        .expect("query");
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
            _ => None,
        })
        .expect("a pid")
}

async fn pool(name: &str, min: usize, max: usize, timeout: Duration) -> Pool<PgConnector> {
    Builder::new(connector_for(&shared_dsn(), name))
        .min(min)
        .max(max)
        .timeout(timeout)
        .build()
        .await
        .expect("pool builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_return_costs_no_round_trip() {
    let pool = pool("clean", 1, 2, Duration::from_secs(10)).await;
    let conn = pool.get().await.unwrap();
    let pid = backend_pid(&conn).await;
    assert_eq!(conn.status(), TxStatus::Idle);
    assert!(conn.status_cell().is_tracked());
    let written = conn.status_cell().bytes_written();
    let cell = conn.status_cell().clone();
    drop(conn);
    let again = pool.get().await.unwrap();
    // Same backend; nothing was written between the return and the next checkout.
    assert_eq!(cell.bytes_written(), written);
    assert_eq!(backend_pid(&again).await, pid);
    assert_eq!(pool.stats().resets, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_is_rolled_back_before_reuse() {
    let pool = pool("dirty", 1, 1, Duration::from_secs(10)).await;
    let table = format!("tokio_dirty_{}", std::process::id());
    {
        let conn = pool.get().await.unwrap();
        conn.batch_execute(&format!("BEGIN; CREATE TABLE {table} (x int)"))
            .await
            .unwrap();
        assert_eq!(conn.status(), TxStatus::InTransaction);
    }
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.status(), TxStatus::Idle);
    let found: Option<String> = conn
        .query_one("SELECT to_regclass($1)::text", &[&table])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        found, None,
        "the next borrower saw the previous transaction"
    );
    // A failed transaction too.
    let err = conn.batch_execute("BEGIN; SELECT 1/0").await;
    assert!(err.is_err());
    // InError once the ReadyForQuery after the error is read; never idle.
    assert_ne!(conn.status(), TxStatus::Idle);
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.status(), TxStatus::Idle);
    conn.execute("SELECT 1", &[]).await.unwrap();
    assert_eq!(pool.stats().resets, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_discard_policy_resets_session_state() {
    let connector = connector_for(&shared_dsn(), "discard").session_reset(SessionReset::discard());
    let pool = Builder::new(connector).min(1).max(1).build().await.unwrap();
    {
        let conn = pool.get().await.unwrap();
        conn.batch_execute("SET application_name = 'leaked'")
            .await
            .unwrap();
    }
    let conn = pool.get().await.unwrap();
    let name: String = conn
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, app_name("discard"));
    assert_eq!(pool.stats().resets, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_is_replaced() {
    let pool = pool("killed", 1, 1, Duration::from_secs(10)).await;
    let mon = Monitor::new(&shared_dsn(), "killed").await;
    let conn = pool.get().await.unwrap();
    let pid = backend_pid(&conn).await;
    mon.terminate(pid).await;
    assert!(conn.execute("SELECT 1", &[]).await.is_err());
    eventually("the client saw the close", || conn.is_closed()).await;
    drop(conn);
    let conn = pool.get().await.unwrap();
    assert_ne!(backend_pid(&conn).await, pid);
    assert_eq!(pool.stats().broken_returns, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_idle_backend_is_caught_by_the_checkout_check() {
    let pool = Builder::new(connector_for(&shared_dsn(), "killed-idle"))
        .min(1)
        .max(1)
        .check_on_checkout(true)
        .build()
        .await
        .unwrap();
    let mon = Monitor::new(&shared_dsn(), "killed-idle").await;
    let pid = backend_pid(&pool.get().await.unwrap()).await;
    mon.terminate(pid).await;
    let conn = pool.get().await.unwrap();
    assert_ne!(backend_pid(&conn).await, pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_times_out_within_its_bound() {
    let timeout = Duration::from_millis(300);
    let pool = pool("timeout", 1, 1, timeout).await;
    let _held = pool.get().await.unwrap();
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, GetError::Timeout(None)), "{err:?}");
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_order_and_max_holds() {
    let pool = pool("fair", 1, 1, Duration::from_secs(20)).await;
    let mon = Monitor::new(&shared_dsn(), "fair").await;
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (p, order) = (pool.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let conn = p.get().await.unwrap();
            conn.execute("SELECT 1", &[]).await.unwrap();
            order.lock().unwrap().push(i);
        }));
        eventually("queued", || pool.stats().waiting == i + 1).await;
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..6).collect::<Vec<_>>());
    assert_eq!(mon.count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_max_connections() {
    let pool = pool("load", 1, 4, Duration::from_secs(30)).await;
    let mon = Monitor::new(&shared_dsn(), "load").await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let conn = p.get().await.unwrap();
                conn.execute("SELECT 1", &[]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(mon.count().await <= 4);
    let s = pool.stats();
    assert_eq!(s.checkouts, 32 * 20);
    assert!(s.opens <= 4, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_running_when_its_task_is_dropped_does_not_reach_the_next_borrower() {
    let connector =
        connector_for(&shared_dsn(), "dropped-query").reset_timeout(Duration::from_secs(2));
    let pool = Builder::new(connector).min(1).max(1).build().await.unwrap();
    let table = format!("tokio_dropped_{}", std::process::id());
    {
        let conn = pool.get().await.unwrap();
        let sql = format!("BEGIN; CREATE TABLE {table} (x int); SELECT pg_sleep(0.3)");
        let slow = conn.batch_execute(&sql);
        assert!(tokio::time::timeout(Duration::from_millis(50), slow)
            .await
            .is_err());
        // Mid-request: judged dirty, never clean.
        assert_ne!(conn.status(), TxStatus::Idle);
    }
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.status(), TxStatus::Idle);
    let found: Option<String> = conn
        .query_one("SELECT to_regclass($1)::text", &[&table])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        found, None,
        "the next borrower saw the previous transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_query_is_cancelled_from_another_task() {
    let pool = pool("cancel", 1, 1, Duration::from_secs(10)).await;
    let conn = pool.get().await.unwrap();
    let token = conn.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel_query_async().await
    });
    let start = Instant::now();
    let err = conn.batch_execute("SELECT pg_sleep(30)").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    canceller.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_closes_every_connection_on_the_server() {
    let pool = pool("close", 3, 3, Duration::from_secs(10)).await;
    let mon = Monitor::new(&shared_dsn(), "close").await;
    mon.until_count(3).await;
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let (p, _a, _b) = (
            pool.clone(),
            pool.get().await.unwrap(),
            pool.get().await.unwrap(),
        );
        async move {
            let got = p.get().await.map(drop);
            drop((_a, _b));
            got
        }
    });
    eventually("queued", || pool.stats().waiting == 1).await;
    pool.close().await.unwrap();
    assert!(matches!(waiter.await.unwrap(), Err(GetError::Closed)));
    mon.until_count(1).await;
    drop(held);
    mon.until_count(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_from_a_server_restart() {
    let mut server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .unwrap()
        .expect("a server of its own");
    let dsn = server.dsn();
    let pool = Builder::new(connector_for(&dsn, "restart"))
        .min(2)
        .max(2)
        .check_on_checkout(true)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let before = backend_pid(&pool.get().await.unwrap()).await;
    let server = tokio::task::spawn_blocking(move || {
        server.restart().expect("restarts");
        server
    })
    .await
    .unwrap();
    // Every idle connection is dead; the checkout check replaces them.
    let conn = pool.get().await.unwrap();
    assert_ne!(backend_pid(&conn).await, before);
    drop(conn);
    let mon = Monitor::new(&dsn, "restart").await;
    pool.wait_ready(PATIENCE).await.unwrap();
    mon.until_count(2).await;
    drop(pool);
    mon.until_count(0).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_against_an_unreachable_server_times_out_with_the_connect_error() {
    let mut server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .unwrap()
        .expect("a server of its own");
    let dsn = server.dsn();
    let server = tokio::task::spawn_blocking(move || {
        server.stop().expect("stops");
        server
    })
    .await
    .unwrap();
    let timeout = Duration::from_millis(500);
    let pool = Builder::new(connector_for(&dsn, "unreachable"))
        .min(0)
        .max(1)
        .timeout(timeout)
        .build()
        .await
        .unwrap();
    let start = Instant::now();
    let err = pool.get().await.unwrap_err();
    let took = start.elapsed();
    match &err {
        GetError::Timeout(Some(e)) => {
            assert!(
                matches!(**e, sanspool_tokio::postgres::Error::Connect(_)),
                "{e:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("timed out"), "{err}");
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "{took:?}"
    );
    assert!(pool.stats().open_failures >= 1);
    drop(server);
}

/// `query_one` with SQL text prepares a statement for the call and closes it when the call ends;
/// a guard dropped before the server answers that Close is still judged clean (a request of
/// nothing but Close cannot change the transaction status): no ROLLBACK, ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_closed_after_its_call_costs_no_rollback() {
    let pool = pool("closed-statement", 1, 1, Duration::from_secs(10)).await;
    for _ in 0..200 {
        let conn = pool.get().await.unwrap();
        let row = conn.query_one("SELECT 1", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
    }
    assert_eq!(pool.stats().resets, 0, "{:?}", pool.stats());
    assert_eq!(pool.stats().checkouts, 200);
}

/// A reset, a check and a close against a stopped backend (`SIGSTOP`) are cut off at their
/// bounds and counted in `abandoned_resets`, `abandoned_checks` and `abandoned_closes`; each time
/// the connection is replaced while the backend is still stopped. A reset or check cut off tears
/// its connection down, so the close that follows has nothing to wait for (and is not counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_checks_and_closes_cut_off_at_their_bounds_are_counted() {
    let server = tokio::task::spawn_blocking(PgServer::start)
        .await
        .unwrap()
        .expect("a server of its own");
    let bound = Duration::from_millis(500);
    let connector = connector_for(&server.dsn(), "abandoned")
        .reset_timeout(bound)
        .check_timeout(bound)
        .close_timeout(bound);
    let pool = Builder::new(connector)
        .min(1)
        .max(1)
        .timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let abandoned = |pool: &Pool<PgConnector>| {
        let s = pool.stats();
        [s.abandoned_resets, s.abandoned_checks, s.abandoned_closes]
    };

    // A dirty return whose ROLLBACK hangs.
    let conn = pool.get().await.unwrap();
    let pid = backend_pid(&conn).await;
    conn.batch_execute("BEGIN").await.unwrap();
    let frozen = Frozen::process(pid).expect("stop the backend");
    let started = Instant::now();
    drop(conn);
    let conn = pool.get().await.expect("a new connection");
    assert!(started.elapsed() >= bound, "{:?}", started.elapsed());
    assert_ne!(backend_pid(&conn).await, pid, "not the hung one");
    assert_eq!(abandoned(&pool), [1, 0, 0], "{:?}", pool.stats());
    assert_eq!(pool.stats().resets, 1);
    drop((conn, frozen));

    // An idle check that hangs.
    let pid = backend_pid(&pool.get().await.unwrap()).await;
    let frozen = Frozen::process(pid).expect("stop the backend");
    let started = Instant::now();
    assert_eq!(pool.check().await.unwrap(), 1, "the check failed");
    assert!(started.elapsed() >= bound, "{:?}", started.elapsed());
    assert_eq!(abandoned(&pool)[..2], [1, 1], "{:?}", pool.stats());
    let conn = pool.get().await.expect("a new connection");
    assert_ne!(backend_pid(&conn).await, pid, "not the hung one");
    assert_eq!(abandoned(&pool), [1, 1, 0], "{:?}", pool.stats());
    drop((conn, frozen));

    // A close that hangs. (Closing an idle connection does not wait on the server: the driver
    // writes Terminate and shuts the socket down. It waits while a request is unanswered.)
    let conn = pool.get().await.unwrap();
    let pid = backend_pid(&conn).await;
    let frozen = Frozen::process(pid).expect("stop the backend");
    let query = tokio::time::timeout(Duration::from_millis(100), conn.simple_query("SELECT 1"));
    assert!(query.await.is_err(), "the stopped backend answered");
    let started = Instant::now();
    sanspool_tokio::PooledConn::close(conn);
    let conn = pool.get().await.expect("a new connection");
    assert!(started.elapsed() >= bound, "{:?}", started.elapsed());
    assert_ne!(backend_pid(&conn).await, pid, "not the hung one");
    let s = pool.stats();
    assert_eq!(abandoned(&pool), [1, 1, 1], "{s:?}");
    assert_eq!(s.resets, 1, "closed, not reset: {s:?}");
    drop((conn, frozen));
    drop(pool);
    drop(server);
}
