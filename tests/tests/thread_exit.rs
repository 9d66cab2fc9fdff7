//! A persistent pool's thread that ends while holding a connection must not take the process
//! down: the reset or close its connection needs runs on the pool's own thread, never in the
//! exiting thread's destructors (where the blocking `postgres` client's runtime is already gone,
//! and a panic in a destructor aborts the process).
//!
//! Each case runs in a child process (this binary, re-run with `--ignored --exact child`), so an
//! abort fails the one case instead of killing the test binary; the parent owns the server.

mod common;

use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{app_name, eventually, monitor_for};
use sanspool_postgres::postgres::Config;
use sanspool_postgres::{Builder, PgConnector};
use sanspool_tests::PgServer;

const SCENARIO: &str = "SANSPOOL_EXIT_SCENARIO";
const DSN: &str = "SANSPOOL_EXIT_DSN";

/// Runs `scenario` in a child process against `dsn`; panics unless it exits cleanly having
/// checked everything.
fn in_child(scenario: &str, dsn: &str) {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, scenario)
        .env(DSN, dsn)
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(&format!("survived {scenario}")),
        "{scenario}: the child ended with {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

/// A server of this test's own, and the DSN of its Unix socket.
fn server() -> (PgServer, String) {
    let server = PgServer::start().expect("a throwaway server");
    let unix = format!(
        "host={} port={} user=postgres dbname=postgres",
        server.data_dir().display(),
        server.port()
    );
    (server, unix)
}

#[test]
fn a_thread_ending_inside_a_transaction_leaves_the_process_and_pool_working() {
    let (server, _) = server();
    in_child("transaction", &server.dsn());
}

#[test]
fn a_thread_ending_with_a_used_unix_socket_session_leaves_the_process_working() {
    let (_server, unix) = server();
    in_child("unix", &unix);
}

#[test]
fn a_thread_ending_beyond_min_in_psycopg2_mode_leaves_the_process_working() {
    let (server, _) = server();
    in_child("beyond-min", &server.dsn());
}

#[test]
fn a_thread_ending_with_a_broken_connection_leaves_the_process_working() {
    let (server, _) = server();
    in_child("broken", &server.dsn());
}

/// The child's side: one scenario, then proof that the process and the pool go on.
#[test]
#[ignore = "run by the tests above in a child process"]
fn child() {
    let (Ok(scenario), Ok(dsn)) = (std::env::var(SCENARIO), std::env::var(DSN)) else {
        return;
    };
    let name = format!("exit-{scenario}");
    let mut config: Config = dsn.parse().expect("a valid DSN");
    config.application_name(&app_name(&name));
    let builder = Builder::new(PgConnector::from_config(config))
        .max(2)
        .timeout(Duration::from_secs(10));
    let builder = match scenario.as_str() {
        "beyond-min" => builder.psycopg2().min(0),
        _ => builder.min(1),
    };
    let pool = builder.build_persistent().expect("the pool builds");
    let mut monitor = monitor_for(&dsn, &name);

    let p = pool.clone();
    let s = scenario.clone();
    thread::spawn(move || {
        let conn = p.getconn().expect("getconn");
        let mut client = conn.lock().expect("not poisoned");
        match s.as_str() {
            // Over a Unix socket too: the session is tracked there as well, and its
            // rollback must not run on the exiting thread either.
            "transaction" | "unix" => {
                client.batch_execute("BEGIN; SELECT 1").expect("begin");
            }
            "beyond-min" => {
                client.batch_execute("SELECT 1").expect("select");
            }
            "broken" => {
                let _ = client.batch_execute("SELECT pg_terminate_backend(pg_backend_pid())");
            }
            other => panic!("no scenario {other}"),
        }
        // The thread ends holding the connection: its thread-local entry gives it back.
    })
    .join()
    .expect("the thread ended without panicking");

    let before = pool.stats();
    eventually("the connection is handled off the exiting thread", || {
        let s = pool.stats();
        s.in_use == 0 && s.resetting == 0 && s.closing == 0
    });
    let s = pool.stats();
    match scenario.as_str() {
        "transaction" | "unix" => assert!(s.resets >= 1, "{s:?} (before: {before:?})"),
        "beyond-min" | "broken" => assert!(s.closes >= 1, "{s:?}"),
        _ => {}
    }
    // Nothing is left inside a transaction on the server, and the pool still serves.
    eventually("no backend idle in transaction", || {
        monitor.number(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}' \
             AND state LIKE 'idle in transaction%'",
            app_name(&name)
        )) == 0
    });
    let mut again = pool.get().expect("the pool still serves");
    let rows = again.simple_query("SELECT 1").expect("a query");
    assert!(!rows.is_empty());
    drop(again);
    pool.closeall().expect("closeall");
    println!("survived {scenario}");
}
