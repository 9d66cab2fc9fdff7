//! Behind a real PgBouncer, in transaction and in session mode: the status is tracked from the
//! bouncer's ReadyForQuery messages, a clean return still costs nothing, a dirty one is rolled
//! back on the server connection that holds the transaction, cancellation goes through the
//! bouncer, and in transaction mode a pool larger than the bouncer's works.
//!
//! PgBouncer 1.18 (Debian's) does not carry protocol-level prepared statements across server
//! connections in transaction mode, so these tests use simple queries, as users of transaction
//! mode with tokio-postgres must (or `query_typed`, which uses the unnamed statement).

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::{config_for, monitor_for, outside_transaction, simple_row, table};
use sanspool_postgres::postgres::error::SqlState;
use sanspool_postgres::{Builder, PgConn, PgConnector, Pool, TxStatus};
use sanspool_tests::{PgBouncer, PgServer, PoolMode, BOUNCER_ROLE};

fn pool(bouncer: &PgBouncer, name: &str, max: usize) -> Pool<PgConnector> {
    Builder::new(PgConnector::from_config(config_for(&bouncer.dsn(), name)))
        .min(1)
        .max(max)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("build the pool")
}

fn count(conn: &mut PgConn, table: &str) -> String {
    simple_row(conn, &format!("SELECT count(*) FROM {table}"))[0]
        .clone()
        .unwrap_or_default()
}

/// The rules every mode keeps: tracked status, clean returns without a round trip, dirty ones
/// rolled back.
fn tracks_and_rolls_back(mode: PoolMode, name: &str) {
    let server = PgServer::start().expect("start a server of our own");
    let bouncer = PgBouncer::start(&server, mode, 2).expect("start pgbouncer");
    let table = table(name);
    let mut mon = monitor_for(&server.dsn(), name);
    mon.execute(&format!("CREATE TABLE {table} (x int)"));
    let pool = pool(&bouncer, name, 1);

    let mut conn = pool.get().unwrap();
    assert!(conn.status_cell().is_tracked());
    assert_eq!(conn.status(), TxStatus::Idle);
    conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .unwrap();
    assert_eq!(conn.status(), TxStatus::InTransaction);
    drop(conn);
    assert_eq!(pool.stats().resets, 1, "rolled back");
    assert_eq!(mon.number(&format!("SELECT count(*) FROM {table}")), 0);

    let mut conn = pool.get().unwrap();
    assert!(outside_transaction(&mut conn));
    assert_eq!(count(&mut conn, &table), "0");
    // A failed transaction too.
    conn.batch_execute("BEGIN; SELECT 1/0").unwrap_err();
    drop(conn);
    assert_eq!(pool.stats().resets, 2);
    let mut conn = pool.get().unwrap();
    conn.batch_execute(&format!("INSERT INTO {table} VALUES (2)"))
        .expect("no 'current transaction is aborted'");
    assert_eq!(conn.status(), TxStatus::Idle);
    let bytes = conn.status_cell().bytes_written();
    drop(conn);

    // Clean cycles: nothing written, no reset.
    for _ in 0..10 {
        let conn = pool.get().unwrap();
        assert_eq!(conn.status_cell().bytes_written(), bytes);
    }
    assert_eq!(pool.stats().resets, 2);
    assert_eq!(mon.number(&format!("SELECT count(*) FROM {table}")), 1);
    drop(pool);
    drop(bouncer);
}

#[test]
fn transaction_mode_tracks_and_rolls_back() {
    tracks_and_rolls_back(PoolMode::Transaction, "bouncer-tx");
}

#[test]
fn session_mode_tracks_and_rolls_back() {
    tracks_and_rolls_back(PoolMode::Session, "bouncer-session");
}

/// Eight pooled connections over two server connections: every committed transaction lands,
/// every abandoned one is rolled back, and the server never sees more than two backends.
#[test]
fn transaction_mode_serves_a_pool_larger_than_the_bouncer() {
    let name = "bouncer-wide";
    let server = PgServer::start().expect("start a server of our own");
    let bouncer = PgBouncer::start(&server, PoolMode::Transaction, 2).expect("start pgbouncer");
    let table = table(name);
    let mut mon = monitor_for(&server.dsn(), name);
    mon.execute(&format!("CREATE TABLE {table} (x int)"));
    const THREADS: usize = 8;
    const ROUNDS: usize = 20;
    let pool = Arc::new(pool(&bouncer, name, THREADS));
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, start, table) = (pool.clone(), start.clone(), table.clone());
            thread::spawn(move || {
                start.wait();
                for round in 0..ROUNDS {
                    let mut conn = pool.get().unwrap();
                    if round % 5 == 4 {
                        // Abandoned: the pool rolls it back.
                        conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (-1)"))
                            .unwrap();
                    } else {
                        conn.batch_execute(&format!(
                            "BEGIN; INSERT INTO {table} VALUES ({t}); COMMIT"
                        ))
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    let mut backends = || -> i64 {
        mon.client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&BOUNCER_ROLE],
            )
            .unwrap()
            .get(0)
    };
    let mut most = 0;
    while !workers.iter().all(|w| w.is_finished()) {
        most = most.max(backends());
        thread::sleep(Duration::from_millis(5));
    }
    for w in workers {
        w.join().unwrap();
    }
    // The bouncer keeps its server connections: at least one is still there.
    most = most.max(backends());
    assert!((1..=2).contains(&most), "{most} server connections");
    let committed = (THREADS * ROUNDS * 4 / 5) as i64;
    assert_eq!(
        mon.number(&format!("SELECT count(*) FROM {table}")),
        committed
    );
    assert_eq!(
        mon.number(&format!("SELECT count(*) FROM {table} WHERE x < 0")),
        0
    );
    let stats = pool.stats();
    assert_eq!(stats.resets, (THREADS * ROUNDS / 5) as u64, "{stats:?}");
    assert!(
        stats.size > 2,
        "the pool grew past the bouncer's size: {stats:?}"
    );
}

/// The cancel request goes to the bouncer, which forwards it to the server connection running
/// the query.
#[test]
fn a_query_is_cancelled_through_the_bouncer() {
    let name = "bouncer-cancel";
    let server = PgServer::start().expect("start a server of our own");
    let bouncer = PgBouncer::start(&server, PoolMode::Transaction, 2).expect("start pgbouncer");
    let pool = pool(&bouncer, name, 1);
    let mut conn = pool.get().unwrap();
    let token = conn.cancel_token();
    let mut mon = monitor_for(&server.dsn(), name);
    let canceller = thread::spawn(move || {
        common::eventually("the query to run", || {
            let n: i64 = mon
                .client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE usename = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
                    &[&BOUNCER_ROLE],
                )
                .unwrap()
                .get(0);
            n > 0
        });
        token.cancel_query().expect("delivered");
    });
    // Not forever, should the cancel request be lost: the test fails instead of hanging.
    let err = conn.simple_query("SELECT pg_sleep(60)").unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    canceller.join().unwrap();
    drop(conn);
    let mut conn = pool.get().unwrap();
    assert!(outside_transaction(&mut conn));
}

/// In session mode the server session follows the client connection, so `discard` resets it
/// through the bouncer as it does directly.
#[test]
fn session_mode_with_discard_resets_the_session() {
    use sanspool_postgres::SessionReset;
    let name = "bouncer-discard";
    let server = PgServer::start().expect("start a server of our own");
    let bouncer = PgBouncer::start(&server, PoolMode::Session, 2).expect("start pgbouncer");
    let connector = PgConnector::from_config(config_for(&bouncer.dsn(), name))
        .session_reset(SessionReset::discard());
    let pool: Pool<PgConnector> = Builder::new(connector).min(1).max(1).build().unwrap();
    {
        let mut conn = pool.get().unwrap();
        conn.batch_execute("SET search_path = sp_nowhere; CREATE TEMP TABLE sp_t (x int)")
            .unwrap();
    }
    let mut conn = pool.get().unwrap();
    assert_eq!(
        simple_row(&mut conn, "SHOW search_path")[0].as_deref(),
        Some("\"$user\", public")
    );
    assert_eq!(
        simple_row(&mut conn, "SELECT to_regclass('pg_temp.sp_t') IS NULL")[0].as_deref(),
        Some("t")
    );
    assert_eq!(pool.stats().resets, 1);
}
