//! Returned connections are clean before anyone else gets them, and being clean costs nothing.
//!
//! Every way of leaving a session inside a transaction (or mid-request) is followed by a second
//! checkout of the *same* backend (a pool of one connection; the backend pid is compared), which
//! must find itself outside any transaction, able to query, and blind to the uncommitted rows.

mod common;

use std::io::Write;
use std::mem;
use std::time::Duration;

use common::{backend_pid, connector, eventually, monitor, outside_transaction, simple_row, table};
use sanspool_postgres::postgres::fallible_iterator::FallibleIterator;
use sanspool_postgres::postgres::types::ToSql;
use sanspool_postgres::psycopg2::ThreadedConnectionPool;
use sanspool_postgres::{Builder, Connector, Error, PgConn, PgConnector, Pool, Returned, TxStatus};

/// A pool of exactly one connection, so the next checkout gets the same backend.
fn one_connection_pool(name: &str) -> Pool<PgConnector> {
    Builder::new(connector(name))
        .min(1)
        .max(1)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build the pool")
}

/// Leaves a connection the way `leave` does, gives it back, and checks the next borrower.
fn next_borrower_is_clean(name: &str, leave: impl FnOnce(&mut PgConn, &str)) {
    let table = table(name);
    let mut mon = monitor(name);
    mon.execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (x int)"
    ));
    let pool = one_connection_pool(name);

    let (pid, dirty) = {
        let mut conn = pool.get().unwrap();
        let pid = backend_pid(&mut conn);
        leave(&mut conn, &table);
        (pid, conn.status() != TxStatus::Idle)
    };
    let stats = pool.stats();
    assert_eq!(
        stats.resets,
        u64::from(dirty),
        "reset exactly when the tracker saw the session not idle: {stats:?}"
    );
    assert_eq!(stats.broken_returns, 0, "and not discarded: {stats:?}");

    let mut conn = pool.get().unwrap();
    assert_eq!(conn.status(), TxStatus::Idle);
    assert_eq!(backend_pid(&mut conn), pid, "the same backend, reused");
    assert!(
        outside_transaction(&mut conn),
        "the next borrower is not inside the previous borrower's transaction"
    );
    let rows = simple_row(&mut conn, &format!("SELECT count(*) FROM {table}"));
    assert_eq!(rows, [Some("0".into())], "the uncommitted rows are gone");
    assert_eq!(
        mon.number(&format!("SELECT count(*) FROM {table}")),
        0,
        "nobody else sees them either"
    );
    // The session works normally: a write commits at once.
    conn.execute(&format!("INSERT INTO {table} VALUES (42)"), &[])
        .expect("no 'current transaction is aborted'");
    assert_eq!(mon.number(&format!("SELECT count(*) FROM {table}")), 1);
    assert_eq!(conn.status(), TxStatus::Idle);
    drop(conn);
    assert_eq!(
        pool.stats().resets,
        u64::from(dirty),
        "a clean return is not reset"
    );
    mon.execute(&format!("DROP TABLE {table}"));
}

fn assert_not_idle(conn: &PgConn) {
    let status = conn.status();
    assert_ne!(
        status,
        TxStatus::Idle,
        "the tracker sees the session is not idle"
    );
    assert_ne!(status, TxStatus::Closed);
}

#[test]
fn begin_by_simple_query_then_insert() {
    next_borrower_is_clean("begin-simple", |conn, table| {
        conn.simple_query("BEGIN").unwrap();
        conn.simple_query(&format!("INSERT INTO {table} VALUES (1)"))
            .unwrap();
        assert_eq!(conn.status(), TxStatus::InTransaction);
    });
}

#[test]
fn begin_then_error_in_one_batch() {
    next_borrower_is_clean("begin-error", |conn, table| {
        let err = conn
            .batch_execute(&format!(
                "BEGIN; INSERT INTO {table} VALUES (1); SELECT 1/0;"
            ))
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&sanspool_postgres::postgres::error::SqlState::DIVISION_BY_ZERO)
        );
        assert_not_idle(conn);
    });
}

#[test]
fn transaction_leaked_with_mem_forget() {
    next_borrower_is_clean("forget-tx", |conn, table| {
        let mut tx = conn.transaction().unwrap();
        tx.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])
            .unwrap();
        mem::forget(tx); // no ROLLBACK, no COMMIT
        assert_eq!(conn.status(), TxStatus::InTransaction);
    });
}

#[test]
fn copy_in_dropped_half_done() {
    next_borrower_is_clean("copy-half", |conn, table| {
        let mut writer = conn.copy_in(&format!("COPY {table} FROM STDIN")).unwrap();
        writer.write_all(b"1\n2\n3\n").unwrap();
        writer.flush().unwrap();
        drop(writer); // neither finished nor failed by hand
        assert_not_idle(conn);
    });
}

#[test]
fn copy_in_dropped_half_done_inside_a_transaction() {
    next_borrower_is_clean("copy-half-tx", |conn, table| {
        conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
            .unwrap();
        let mut writer = conn.copy_in(&format!("COPY {table} FROM STDIN")).unwrap();
        writer.write_all(b"2\n3\n").unwrap();
        drop(writer);
        assert_not_idle(conn);
    });
}

#[test]
fn results_left_half_read() {
    next_borrower_is_clean("half-read", |conn, table| {
        conn.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
            .unwrap();
        let params: [&(dyn ToSql + Sync); 0] = [];
        let mut rows = conn
            .query_raw("SELECT generate_series(1, 100000)", params)
            .unwrap();
        assert!(rows.next().unwrap().is_some());
        drop(rows); // 99 999 rows never read
        assert_not_idle(conn);
    });
}

/// A failed statement outside a transaction: the session may be idle already (the server's
/// ReadyForQuery came with the error) or not yet known to be; either way the next borrower is fine.
#[test]
fn error_outside_a_transaction() {
    next_borrower_is_clean("plain-error", |conn, _table| {
        let err = conn.query("SELECT 1/0", &[]).unwrap_err();
        assert!(err.code().is_some(), "{err}");
    });
}

/// psycopg2's API takes the same care: a connection given back with `putconn` inside a
/// transaction is rolled back before the next `getconn`, on the simple and the threaded pool.
#[test]
fn putconn_inside_a_transaction_is_rolled_back() {
    let simple = Builder::new(connector("putconn-simple"))
        .min(1)
        .max(1)
        .psycopg2()
        .build_simple()
        .unwrap();
    let conn = simple.getconn(None).unwrap();
    let pid = backend_pid(&mut conn.borrow_mut().unwrap());
    conn.borrow_mut()
        .unwrap()
        .batch_execute("BEGIN; SELECT 1")
        .unwrap();
    simple.putconn(conn, None, false).unwrap();
    let conn = simple.getconn(None).unwrap();
    let mut client = conn.borrow_mut().unwrap();
    assert_eq!(backend_pid(&mut client), pid);
    assert!(outside_transaction(&mut client));
    drop(client);
    assert_eq!(simple.stats().resets, 1);

    let threaded =
        ThreadedConnectionPool::<PgConnector>::from(one_connection_pool("putconn-threaded"));
    let conn = threaded.getconn(Some(1)).unwrap();
    let pid = backend_pid(&mut conn.lock().unwrap());
    let _ = conn.lock().unwrap().batch_execute("BEGIN; SELECT 1/0");
    threaded.putconn(conn, Some(&1), false).unwrap();
    let conn = threaded.getconn(None).unwrap();
    let mut client = conn.lock().unwrap();
    assert_eq!(backend_pid(&mut client), pid);
    assert!(outside_transaction(&mut client));
    drop(client);
    assert_eq!(threaded.stats().resets, 1);
}

/// The server's own record of a backend's last statement: `pg_stat_activity.query` (its text),
/// `query_start` and `state_change`. The backend updates them when it receives a statement — any
/// statement, `ROLLBACK` and the empty query included — and the monitor reads them from shared
/// memory, not from the delayed cumulative statistics, so they are exact at once. If a clean
/// return sent anything, `query` and `query_start` would move; they do not.
#[test]
fn a_clean_return_sends_nothing() {
    let name = "clean-return";
    let mut mon = monitor(name);
    let pool = one_connection_pool(name);

    let mut conn = pool.get().unwrap();
    let pid = backend_pid(&mut conn);
    conn.simple_query("SELECT 'marker-clean-1'").unwrap();
    let written = conn.status_cell().bytes_written();
    drop(conn);
    let before = mon.activity(pid);
    assert_eq!(before.query, "SELECT 'marker-clean-1'");
    assert_eq!(before.state, "idle");

    // Checkouts and clean returns, with and without use.
    for _ in 0..20 {
        let conn = pool.get().unwrap();
        assert_eq!(conn.status_cell().bytes_written(), written);
        drop(conn);
    }
    assert_eq!(
        mon.activity(pid),
        before,
        "twenty clean checkout/return cycles sent the server nothing"
    );

    let mut conn = pool.get().unwrap();
    conn.simple_query("SELECT 'marker-clean-2'").unwrap();
    let written = conn.status_cell().bytes_written();
    drop(conn);
    let after = mon.activity(pid);
    assert_eq!(
        after.query, "SELECT 'marker-clean-2'",
        "the last statement is the borrower's own, not a ROLLBACK"
    );
    let conn = pool.get().unwrap();
    assert_eq!(
        conn.status_cell().bytes_written(),
        written,
        "not a byte written"
    );
    drop(conn);
    assert_eq!(mon.activity(pid), after);
    assert_eq!(pool.stats().resets, 0);
}

/// The converse: a dirty return is rolled back, as the same record shows.
#[test]
fn a_dirty_return_sends_rollback() {
    let name = "dirty-return";
    let mut mon = monitor(name);
    let pool = one_connection_pool(name);

    let mut conn = pool.get().unwrap();
    let pid = backend_pid(&mut conn);
    conn.batch_execute("BEGIN; SELECT 'marker-dirty'").unwrap();
    let inside = mon.activity(pid);
    assert_eq!(inside.state, "idle in transaction");
    drop(conn);
    // The rollback runs on one of the pool's I/O threads, not in the borrower's drop.
    eventually("rolled back", || mon.activity(pid).query == "ROLLBACK");
    let after = mon.activity(pid);
    assert_eq!(after.state, "idle");
    assert!(after.query_start >= inside.query_start);
    eventually("counted", || pool.stats().resets == 1);
}

/// The connector's own contract against the server: state without I/O, reset, check.
#[test]
fn connector_state_reset_and_check() {
    let name = "connector";
    let mut mon = monitor(name);
    let connector = connector(name);
    let mut conn = connector.connect().unwrap();
    assert!(conn.status_cell().is_tracked());
    assert_eq!(conn.status(), TxStatus::Idle);
    assert_eq!(connector.state(&mut conn), Returned::Clean);

    conn.batch_execute("BEGIN").unwrap();
    assert_eq!(conn.status(), TxStatus::InTransaction);
    assert_eq!(connector.state(&mut conn), Returned::Dirty);
    connector.reset(&mut conn).unwrap();
    assert_eq!(connector.state(&mut conn), Returned::Clean);

    conn.batch_execute("BEGIN; SELECT 1/0").unwrap_err();
    assert_eq!(connector.state(&mut conn), Returned::Dirty);
    connector.reset(&mut conn).unwrap();
    assert_eq!(conn.status(), TxStatus::Idle);
    assert!(outside_transaction(&mut conn));

    connector.check(&mut conn).unwrap();
    assert_eq!(connector.state(&mut conn), Returned::Clean);

    // Killed server-side: judging it costs no I/O, so it still looks idle until it is used...
    let pid = backend_pid(&mut conn);
    mon.terminate(pid);
    assert_eq!(connector.state(&mut conn), Returned::Clean);
    // ...a check finds out, and from then on it is broken.
    let err = connector.check(&mut conn).unwrap_err();
    assert!(matches!(err, Error::Postgres(_)), "{err:?}");
    assert_eq!(connector.state(&mut conn), Returned::Broken);
    // The socket is already closed: nothing to wait for, so nothing is cut off at the bound.
    if let Err(e) = connector.close(conn) {
        assert!(!connector.is_abandoned(&e), "{e:?}");
    }
}
