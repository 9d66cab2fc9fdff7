//! Cancellation of a pooled connection's query from another thread: the query ends with
//! SQLSTATE 57014 and the connection goes back to the pool, reset when it has to be, and serves
//! the next borrower.

mod common;

use std::thread;
use std::time::Duration;

use common::{backend_pid, config_for, monitor_for, outside_transaction, Monitor};
use sanspool_postgres::postgres::error::SqlState;
use sanspool_postgres::postgres::NoTls;
use sanspool_postgres::{Builder, PgConnector, Pool, TxStatus};
use sanspool_tests::{shared_dsn, PgServer};

fn pool_of_one(dsn: &str, name: &str) -> Pool<PgConnector> {
    Builder::new(PgConnector::from_config(config_for(dsn, name)))
        .min(1)
        .max(1)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build the pool")
}

/// Waits until backend `pid` runs `pg_sleep`, then cancels it with `cancel`.
fn cancel_when_sleeping(
    mut mon: Monitor,
    pid: i32,
    cancel: impl FnOnce() + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        common::eventually("the backend to sleep", || {
            let activity = mon.activity(pid);
            activity.state == "active" && activity.query.contains("pg_sleep")
        });
        cancel();
    })
}

fn cancels_and_reuses(dsn: &str, name: &str, in_transaction: bool) {
    let pool = pool_of_one(dsn, name);
    let mut conn = pool.get().unwrap();
    let pid = backend_pid(&mut conn);
    let token = conn.cancel_token();
    let canceller = cancel_when_sleeping(monitor_for(dsn, name), pid, move || {
        token
            .cancel_query()
            .expect("the cancel request is delivered");
    });
    if in_transaction {
        conn.batch_execute("BEGIN").unwrap();
    }
    let err = conn
        .simple_query("SELECT pg_sleep(600)")
        .expect_err("cancelled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    canceller.join().unwrap();
    drop(conn);
    assert_eq!(pool.stats().broken_returns, 0, "kept, not replaced");

    let mut conn = pool.get().unwrap();
    assert_eq!(backend_pid(&mut conn), pid, "the same backend");
    assert_eq!(conn.status(), TxStatus::Idle);
    assert!(outside_transaction(&mut conn));
    let rows = conn.query_one("SELECT 1 + 1", &[]).unwrap();
    assert_eq!(rows.get::<_, i32>(0), 2);
}

#[test]
fn a_running_query_is_cancelled_over_tcp() {
    cancels_and_reuses(&shared_dsn(), "cancel-tcp", false);
}

#[test]
fn a_query_in_a_transaction_is_cancelled_and_rolled_back() {
    cancels_and_reuses(&shared_dsn(), "cancel-tx", true);
    // (The failed block was rolled back: `outside_transaction` held for the next borrower.)
}

#[test]
fn a_running_query_is_cancelled_over_a_unix_socket() {
    let server = PgServer::start().expect("start a server of our own");
    let dsn = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.data_dir().display(),
        server.port()
    );
    // The monitor connects over TCP; the pool over the socket.
    let name = "cancel-unix";
    let pool = pool_of_one(&dsn, name);
    let mut conn = pool.get().unwrap();
    let pid = backend_pid(&mut conn);
    let token = conn.cancel_token();
    let canceller = cancel_when_sleeping(monitor_for(&server.dsn(), name), pid, move || {
        token
            .cancel_query()
            .expect("the cancel request is delivered");
    });
    let err = conn.simple_query("SELECT pg_sleep(600)").unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    canceller.join().unwrap();
}

/// Pins what `PgConn::cancel_token` exists for. The client was pointed at a loopback stand-in
/// (the connector's hook opens the real socket, TCP or Unix), closed since, so its own token
/// cannot reach anything; it was also handed `sslmode=require` with direct TLS (the hook does
/// the user's own `sslmode`). It fails, the query runs on, and the pool's token cancels it.
/// Should an upgrade change that, this fails and the docs change.
#[test]
fn the_clients_own_token_cannot_cancel() {
    let server = PgServer::start().expect("start a server of our own");
    let unix = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.data_dir().display(),
        server.port()
    );
    // (the pool's DSN, the monitor's, what the failure says)
    for (dsn, over_tcp, says) in [
        (shared_dsn(), shared_dsn(), "Connection refused"),
        (unix, server.dsn(), "Connection refused"),
    ] {
        let name = "cancel-client-token";
        let pool = pool_of_one(&dsn, name);
        let mut conn = pool.get().unwrap();
        let client: &sanspool_postgres::postgres::Client = &conn;
        let err = client.cancel_token().cancel_query(NoTls).unwrap_err();
        assert!(format!("{err:?}").contains(says), "{dsn}: {err:?}");
        // Still usable, and cancellable by its own token.
        let token = conn.cancel_token();
        let pid = backend_pid(&mut conn);
        let canceller = cancel_when_sleeping(monitor_for(&over_tcp, name), pid, move || {
            token.cancel_query().expect("the pool's token cancels");
        });
        let err = conn.simple_query("SELECT pg_sleep(600)").unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
        canceller.join().unwrap();
    }
}
