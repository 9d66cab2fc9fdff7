//! What the integration tests share: connectors named per test, a monitor connection that reads
//! `pg_stat_activity`, and patient polling.
//!
//! Every test gives its pool its own `application_name` (with this process's id, in case
//! `SANSPOOL_TEST_DSN` points several runs at one server), so counting the rows of
//! `pg_stat_activity` with that name counts that pool's connections as the server sees them, even
//! while other tests run on the same server.

#![allow(dead_code)] // each test binary uses a part

use std::time::{Duration, Instant};

use sanspool_postgres::postgres::{Client, Config, NoTls, SimpleQueryMessage};
use sanspool_postgres::PgConnector;
use sanspool_tests::shared_dsn;

/// How long "eventually" may take: generous, the machine may be slow and busy.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The shared server's configuration, named `name` (made unique to this process).
pub fn config(name: &str) -> Config {
    config_for(&shared_dsn(), name)
}

/// The configuration of the server at `dsn`, with the application name `name` (made unique to this
/// process).
pub fn config_for(dsn: &str, name: &str) -> Config {
    let mut config: Config = dsn.parse().expect("the harness gives a valid DSN");
    config.application_name(&app_name(name));
    config
}

/// The `application_name` a test's connections carry.
pub fn app_name(name: &str) -> String {
    format!("sp-{name}-{}", std::process::id())
}

/// The DSN `dsn` with the application name `name` (made unique to this process).
pub fn named(dsn: &str, name: &str) -> String {
    format!("{dsn} application_name={}", app_name(name))
}

/// A multi-thread tokio runtime of `workers` workers, for tests that drive both pools.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A connector to the shared server whose connections carry the application name of `name`.
pub fn connector(name: &str) -> PgConnector {
    PgConnector::from_config(config(name))
}

/// A plain, unpooled connection to the server at `dsn`, for watching the pool's connections.
pub fn monitor_for(dsn: &str, name: &str) -> Monitor {
    let client = config_for(dsn, &format!("{name}-mon"))
        .connect(NoTls)
        .expect("monitor connects");
    Monitor {
        client,
        app: app_name(name),
    }
}

/// A monitor of the pool named `name` on the shared server.
pub fn monitor(name: &str) -> Monitor {
    monitor_for(&shared_dsn(), name)
}

/// An unpooled connection that watches the server-side view of one pool's connections (those
/// with the pool's application name). Every query runs in its own transaction, so each sees a
/// fresh `pg_stat_activity`.
pub struct Monitor {
    pub client: Client,
    pub app: String,
}

/// What `pg_stat_activity` says about one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    /// The text of the last statement the backend received.
    pub query: String,
    /// When that statement started, in microseconds since the epoch.
    pub query_start: i64,
    /// When `state` last changed, in microseconds since the epoch.
    pub state_change: i64,
    /// `idle`, `active`, `idle in transaction`, ...
    pub state: String,
}

impl Monitor {
    /// How many connections the pool has, as the server sees them.
    pub fn count(&mut self) -> i64 {
        self.client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&self.app],
            )
            .expect("count the pool's backends")
            .get(0)
    }

    /// The backend pids of the pool's connections, sorted.
    pub fn pids(&mut self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                &[&self.app],
            )
            .expect("list the pool's backends")
            .iter()
            .map(|row| row.get(0))
            .collect();
        pids.sort_unstable();
        pids
    }

    /// Whether backend `pid` still exists.
    pub fn alive(&mut self, pid: i32) -> bool {
        self.client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .expect("look up a backend")
            .get::<_, i64>(0)
            > 0
    }

    /// The activity of backend `pid`.
    pub fn activity(&mut self, pid: i32) -> Activity {
        let row = self
            .client
            .query_one(
                "SELECT query, \
                 (extract(epoch FROM query_start) * 1000000)::int8, \
                 (extract(epoch FROM state_change) * 1000000)::int8, \
                 state \
                 FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .expect("read a backend's activity");
        Activity {
            query: row.get(0),
            query_start: row.get(1),
            state_change: row.get(2),
            state: row.get(3),
        }
    }

    /// Terminates backend `pid` (`pg_terminate_backend`) and waits until it is gone.
    pub fn terminate(&mut self, pid: i32) {
        let done: bool = self
            .client
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .expect("terminate a backend")
            .get(0);
        assert!(done, "backend {pid} was not found to terminate");
        eventually("the terminated backend to go", || !self.alive(pid));
    }

    /// Runs statements (table setup and cleanup).
    pub fn execute(&mut self, sql: &str) {
        self.client.batch_execute(sql).expect(sql);
    }

    /// A number from a query.
    pub fn number(&mut self, sql: &str) -> i64 {
        self.client.query_one(sql, &[]).expect(sql).get(0)
    }
}

/// Polls `done` until it holds, or panics after [`PATIENCE`] naming `what`.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The backend pid of a connection (one round trip).
pub fn backend_pid(client: &mut Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("SELECT pg_backend_pid()")
        .get(0)
}

/// The values of the first row of a simple query, as text.
pub fn simple_row(client: &mut Client, sql: &str) -> Vec<Option<String>> {
    let messages = client.simple_query(sql).expect(sql);
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"));
    (0..row.len())
        .map(|i| row.get(i).map(str::to_owned))
        .collect()
}

/// Whether the session is outside any transaction block, asked the server's way: a statement
/// outside a block runs in a transaction of its own, whose start is its own start, and that has
/// no transaction id; inside a block that wrote, the block's start is earlier and an id exists.
pub fn outside_transaction(client: &mut Client) -> bool {
    let row = simple_row(
        client,
        "SELECT now() = statement_timestamp(), txid_current_if_assigned() IS NULL",
    );
    row == [Some("t".into()), Some("t".into())]
}

/// A table name unique to this process.
pub fn table(name: &str) -> String {
    format!("sp_{}_{}", name.replace('-', "_"), std::process::id())
}

/// The TCP address of the server at `dsn` (for a proxy in front of it).
pub fn server_addr(dsn: &str) -> std::net::SocketAddr {
    let config: Config = dsn.parse().expect("a valid DSN");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = match config.get_hostaddrs().first() {
        Some(ip) => ip.to_string(),
        None => match config.get_hosts().first() {
            Some(sanspool_postgres::postgres::config::Host::Tcp(name)) => name.clone(),
            other => panic!("the proxy needs a TCP server, not {other:?}"),
        },
    };
    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .expect("resolve the server")
        .next()
        .expect("an address")
}
