//! bb8-postgres's `PostgresConnectionManager`, unchanged, under sanspool's async pool
//! (`sanspool_tokio::bb8::Manager`), against the real PostgreSQL of the harness: contention,
//! killed backends, a timeout, what a returned connection keeps.
//!
//! Each test's connections carry an `application_name` of their own, so that the server's
//! `pg_stat_activity` counts that pool's connections.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bb8_postgres::tokio_postgres::{self, Client, NoTls, SimpleQueryMessage};
use bb8_postgres::PostgresConnectionManager;
use sanspool_tests::shared_dsn;
use sanspool_tokio::bb8::Manager;
use sanspool_tokio::{Builder, GetError, Pool};

/// How long "eventually" may take: the machine may be slow and busy.
const PATIENCE: Duration = Duration::from_secs(20);

type PgManager = Manager<PostgresConnectionManager<NoTls>>;
/// What bb8's customizer and the adapter's reset return.
type PgFuture<'a> = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>>;

fn app_name(name: &str) -> String {
    format!("sp-bb8-{name}-{}", std::process::id())
}

fn dsn_named(name: &str) -> String {
    format!("{} application_name={}", shared_dsn(), app_name(name))
}

/// bb8-postgres's manager, exactly as a bb8 program makes it.
fn manager(name: &str) -> PostgresConnectionManager<NoTls> {
    PostgresConnectionManager::new_from_stringlike(dsn_named(name), NoTls)
        .expect("the harness gives a valid DSN")
}

/// An unpooled connection watching one pool's backends (by application name).
struct Monitor {
    client: Client,
    app: String,
}

impl Monitor {
    async fn new(name: &str) -> Monitor {
        let dsn = format!("{} application_name={}-mon", shared_dsn(), app_name(name));
        let (client, connection) = tokio_postgres::connect(&dsn, NoTls)
            .await
            .expect("the monitor connects");
        tokio::spawn(connection);
        Monitor {
            client,
            app: app_name(name),
        }
    }

    async fn pids(&self) -> Vec<i32> {
        let sql = "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid";
        let rows = self.client.query(sql, &[&self.app]).await.expect("list");
        rows.iter().map(|row| row.get(0)).collect()
    }

    /// Terminates backend `pid` and waits until the server no longer lists it.
    async fn terminate(&self, pid: i32) {
        let sql = "SELECT pg_terminate_backend($1)";
        let row = self
            .client
            .query_one(sql, &[&pid])
            .await
            .expect("terminate");
        assert!(row.get::<_, bool>(0), "backend {pid} was not found");
        eventually("the terminated backend gone", || async {
            !self.pids().await.contains(&pid)
        })
        .await;
    }
}

/// Polls `done` until it holds, or panics after [`PATIENCE`] naming `what`.
async fn eventually<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first value of the first row of a simple query, as text.
async fn value(client: &Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.expect(sql);
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no value"))
}

async fn backend_pid(client: &Client) -> i32 {
    let pid = value(client, "SELECT pg_backend_pid()").await;
    pid.parse().expect("a pid")
}

/// Whether the session is outside any transaction block (a statement outside one starts a
/// transaction of its own: its start is the transaction's).
async fn outside_transaction(client: &Client) -> bool {
    value(client, "SELECT now() = statement_timestamp()").await == "t"
}

/// bb8's `CustomizeConnection`: every new connection gets a statement timeout.
#[derive(Debug)]
struct StatementTimeout;

impl bb8::CustomizeConnection<Client, tokio_postgres::Error> for StatementTimeout {
    fn on_acquire<'a>(&'a self, conn: &'a mut Client) -> PgFuture<'a> {
        Box::pin(conn.batch_execute("SET statement_timeout = '7s'"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_share_a_few_connections_never_more_than_max() {
    const TASKS: usize = 24;
    const ROUNDS: usize = 10;
    const MAX: usize = 3;
    let name = "load";
    let manager = Manager::new(manager(name)).with_customizer(Box::new(StatementTimeout));
    let pool = Builder::new(manager)
        .min(1)
        .max(MAX)
        .build()
        .await
        .expect("the pool builds");

    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (pool, start) = (pool.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                let mut most = 0;
                for _ in 0..ROUNDS {
                    let conn = pool.get().await.expect("a checkout within the timeout");
                    let row = conn
                        .query_one(
                            "SELECT count(*), current_setting('statement_timeout') \
                             FROM pg_stat_activity \
                             WHERE application_name = current_setting('application_name')",
                            &[],
                        )
                        .await
                        .expect("count the pool's backends");
                    assert_eq!(row.get::<_, String>(1), "7s", "on_acquire ran");
                    most = most.max(row.get::<_, i64>(0));
                }
                most
            })
        })
        .collect();
    let mut most = 0;
    for task in tasks {
        most = most.max(task.await.expect("the task ran"));
    }

    assert!(
        (1..=MAX as i64).contains(&most),
        "the server saw {most} backends of the pool, max {MAX}"
    );
    let mon = Monitor::new(name).await;
    assert!(mon.pids().await.len() <= MAX);
    let stats = pool.stats();
    assert_eq!(stats.checkouts, (TASKS * ROUNDS) as u64);
    assert!(
        stats.waits > 0,
        "24 tasks on three connections never waited: {stats:?}"
    );
    assert!(stats.size <= MAX && stats.opens <= MAX as u64, "{stats:?}");
    assert_eq!((stats.timeouts, stats.broken_returns), (0, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_whose_backend_died_are_replaced() {
    let name = "killed";
    let mon = Monitor::new(name).await;
    let pool: Pool<PgManager> = Builder::new(Manager::new(manager(name)))
        .min(1)
        .max(2)
        .check_on_checkout(true) // bb8's `test_on_check_out`: the manager's `is_valid`
        .build()
        .await
        .unwrap();

    // Killed while borrowed: bb8-postgres's `has_broken` (the client is closed) sends it to be
    // closed when it comes back.
    let conn = pool.get().await.unwrap();
    let first = backend_pid(&conn).await;
    mon.terminate(first).await;
    eventually("the client to see its connection closed", || async {
        conn.is_closed()
    })
    .await;
    drop(conn);
    assert_eq!(pool.stats().broken_returns, 1);
    let conn = pool.get().await.expect("a working connection");
    let second = backend_pid(&conn).await;
    assert_ne!(second, first);
    drop(conn);

    // Killed while idle: the check on checkout (`is_valid`) finds it dead, and the checkout
    // gets a new one.
    mon.terminate(second).await;
    let conn = pool.get().await.expect("a working connection");
    let third = backend_pid(&conn).await;
    assert!(third != first && third != second);
    assert!(outside_transaction(&conn).await);
    drop(conn);
    let stats = pool.stats();
    assert_eq!((stats.broken_returns, stats.stale), (1, 1), "{stats:?}");
    eventually("the server to list only the live backend", || async {
        mon.pids().await == [third]
    })
    .await;
    assert_eq!(pool.stats().opens, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_times_out_while_every_connection_is_held() {
    let timeout = Duration::from_millis(300);
    let pool = Builder::new(Manager::new(manager("timeout")))
        .max(2)
        .timeout(timeout)
        .build()
        .await
        .unwrap();
    let held = (pool.get().await.unwrap(), pool.get().await.unwrap());

    let asked = Instant::now();
    let error = pool.get().await.map(drop).unwrap_err();
    assert!(matches!(error, GetError::Timeout(None)), "{error:?}");
    assert!(asked.elapsed() >= timeout);
    let stats = pool.stats();
    assert_eq!((stats.timeouts, stats.checkouts, stats.size), (1, 2, 2));

    drop(held);
    let conn = pool
        .get()
        .await
        .expect("a returned connection serves the next checkout");
    assert_eq!(value(&conn, "SELECT 1").await, "1");
}

/// Leaves `BEGIN; INSERT ...` open on a connection of `pool`, then gives it back.
async fn leave_open(pool: &Pool<PgManager>, table: &str) {
    let conn = pool.get().await.unwrap();
    conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
}

async fn rows(client: &Client, table: &str) -> String {
    value(client, &format!("SELECT count(*) FROM {table}")).await
}

fn rollback(conn: &mut Client) -> PgFuture<'_> {
    Box::pin(conn.batch_execute("ROLLBACK"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_reaches_the_next_borrower_unless_the_adapter_resets() {
    let name = "reset";
    let mon = Monitor::new(name).await;
    let table = format!("sp_bb8_reset_{}", std::process::id());
    mon.client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (x int)"
        ))
        .await
        .unwrap();

    // bb8's behaviour: no reset, so the next borrower of the same connection finds itself
    // inside the first one's transaction, and sees its uncommitted row.
    let pool = Builder::new(Manager::new(manager(name)))
        .max(1)
        .build()
        .await
        .unwrap();
    leave_open(&pool, &table).await;
    let conn = pool.get().await.unwrap();
    assert!(!outside_transaction(&conn).await);
    assert_eq!(rows(&conn, &table).await, "1");
    conn.batch_execute("ROLLBACK").await.unwrap();
    drop(conn);
    assert_eq!(pool.stats().resets, 0);
    drop(pool);

    // With a reset on the adapter, the next borrower starts clean, on the same connection.
    let pool = Builder::new(Manager::new(manager(name)).with_reset(rollback))
        .max(1)
        .build()
        .await
        .unwrap();
    leave_open(&pool, &table).await;
    let conn = pool.get().await.unwrap();
    assert!(outside_transaction(&conn).await);
    assert_eq!(rows(&conn, &table).await, "0");
    drop(conn);
    let stats = pool.stats();
    assert_eq!((stats.opens, stats.resets), (1, 2), "{stats:?}");
    mon.client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}
