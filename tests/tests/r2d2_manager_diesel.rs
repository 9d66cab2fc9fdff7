//! diesel's `r2d2::ConnectionManager<PgConnection>`, unchanged, under sanspool's blocking pool
//! (`sanspool::r2d2::Manager`), against the real PostgreSQL of the harness: diesel queries and
//! transactions, contention, a terminated backend, a timeout, what a returned connection keeps.
//!
//! Each test's connections carry an `application_name` of their own (what the server's
//! `pg_stat_activity` is filtered by) and a `search_path` naming a schema of their own, where the
//! `items` table below lives.

mod common;

use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::{app_name, monitor, table, Monitor};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::r2d2::ConnectionManager;
use diesel::sql_types::{BigInt, Integer};
use sanspool::r2d2::Manager;
use sanspool::{GetError, Pool};
use sanspool_tests::shared_dsn;

diesel::table! {
    items (id) {
        id -> Int4,
        name -> Text,
    }
}

/// A test's schema, made afresh with its `items` table, and the DSN that uses it.
struct Setup {
    mon: Monitor,
    schema: String,
    dsn: String,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let mut mon = monitor(name);
        let schema = table(&format!("diesel_{name}"));
        mon.execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; \
             CREATE TABLE {schema}.items (id serial PRIMARY KEY, name text NOT NULL)"
        ));
        let dsn = format!(
            "{} application_name={} options='-c search_path={schema}'",
            shared_dsn(),
            app_name(name)
        );
        Setup { mon, schema, dsn }
    }

    /// diesel's manager, exactly as an r2d2 program makes it.
    fn manager(&self) -> ConnectionManager<PgConnection> {
        ConnectionManager::new(&self.dsn)
    }

    /// Rows in `items`, as a connection outside the pool sees them (committed ones only).
    fn committed(&mut self) -> i64 {
        let sql = format!("SELECT count(*) FROM {}.items", self.schema);
        self.mon.number(&sql)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let drop_schema = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        let _ = self.mon.client.batch_execute(&drop_schema);
    }
}

fn backend_pid(conn: &mut PgConnection) -> i32 {
    diesel::select(sql::<Integer>("pg_backend_pid()"))
        .get_result(conn)
        .expect("pg_backend_pid()")
}

/// The backends of this connection's pool, as the server counts them.
fn backends(conn: &mut PgConnection) -> i64 {
    diesel::select(sql::<BigInt>(
        "(SELECT count(*) FROM pg_stat_activity \
          WHERE application_name = current_setting('application_name'))",
    ))
    .get_result(conn)
    .expect("count the pool's backends")
}

fn insert(conn: &mut PgConnection, name: &str) -> QueryResult<usize> {
    diesel::insert_into(items::table)
        .values(items::name.eq(name))
        .execute(conn)
}

fn count(conn: &mut PgConnection) -> i64 {
    items::table.count().get_result(conn).expect("count items")
}

#[test]
fn diesel_queries_from_many_threads_never_open_more_than_max() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 15;
    const MAX: usize = 3;
    let mut setup = Setup::new("r2d2-load");
    let pool = Pool::builder(Manager::new(setup.manager()))
        .min(1)
        .max(MAX)
        .build()
        .expect("the pool builds");

    let start = Barrier::new(THREADS);
    let most = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, start) = (&pool, &start);
                s.spawn(move || {
                    start.wait();
                    let mut most = 0;
                    for round in 0..ROUNDS {
                        let mut conn = pool.get().expect("a checkout within the timeout");
                        insert(&mut conn, &format!("{t}-{round}")).expect("insert");
                        most = most.max(backends(&mut conn));
                    }
                    most
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).max()
    });

    let most = most.expect("some threads ran");
    assert!(
        (1..=MAX as i64).contains(&most),
        "the server saw {most} backends of the pool, max {MAX}"
    );
    assert!(setup.mon.count() <= MAX as i64);
    assert_eq!(setup.committed(), (THREADS * ROUNDS) as i64);
    let stats = pool.stats();
    assert_eq!(stats.checkouts, (THREADS * ROUNDS) as u64);
    assert!(
        stats.waits > 0,
        "eight threads on three connections never waited: {stats:?}"
    );
    assert!(stats.size <= MAX && stats.opens <= MAX as u64, "{stats:?}");
    assert_eq!((stats.timeouts, stats.broken_returns), (0, 0), "{stats:?}");
}

#[test]
fn diesel_transactions_commit_and_roll_back_through_the_pool() {
    let mut setup = Setup::new("r2d2-tx");
    let pool = Pool::builder(Manager::new(setup.manager()))
        .max(2)
        .build()
        .unwrap();

    let mut conn = pool.get().unwrap();
    conn.transaction(|conn| {
        insert(conn, "a")?;
        insert(conn, "b")
    })
    .expect("a committed transaction");
    let rolled_back = conn.transaction(|conn| {
        insert(conn, "c")?;
        assert_eq!(count(conn), 3, "the transaction sees its own row");
        Err::<(), _>(diesel::result::Error::RollbackTransaction)
    });
    assert!(
        matches!(rolled_back, Err(diesel::result::Error::RollbackTransaction)),
        "{rolled_back:?}"
    );
    // Another connection of the pool, and the server, see the committed rows only.
    let mut other = pool.get().unwrap();
    assert_ne!(backend_pid(&mut other), backend_pid(&mut conn));
    assert_eq!(count(&mut other), 2);
    assert_eq!(setup.committed(), 2);
    drop((conn, other));
    assert_eq!(pool.stats().broken_returns, 0);
}

#[test]
fn a_transaction_diesel_left_open_closes_the_connection() {
    let mut setup = Setup::new("r2d2-open-tx");
    let pool = Pool::builder(Manager::new(setup.manager()))
        .min(1)
        .max(1)
        .build()
        .unwrap();

    let mut conn = pool.get().unwrap();
    let pid = backend_pid(&mut conn);
    AnsiTransactionManager::begin_transaction(&mut *conn).unwrap();
    insert(&mut conn, "uncommitted").unwrap();
    // diesel's `has_broken` sees its transaction manager still inside a transaction: the pool
    // closes the connection (the server rolls the transaction back) and opens another.
    drop(conn);
    assert_eq!(pool.stats().broken_returns, 1);
    let mut conn = pool.get().unwrap();
    assert_ne!(backend_pid(&mut conn), pid);
    assert_eq!(count(&mut conn), 0);
    assert_eq!(pool.stats().opens, 2);
    common::eventually("the broken connection's backend gone", || {
        !setup.mon.alive(pid)
    });
}

#[test]
fn plain_sql_begin_reaches_the_next_borrower_unless_the_adapter_resets() {
    let mut setup = Setup::new("r2d2-reset");
    let leave_open = |conn: &mut PgConnection| {
        conn.batch_execute("BEGIN; INSERT INTO items (name) VALUES ('left open')")
            .unwrap();
    };

    // r2d2's behaviour: diesel does not see a `BEGIN` sent as SQL, so the next borrower of the
    // same connection finds itself inside that transaction, and sees its uncommitted row.
    let pool = Pool::builder(Manager::new(setup.manager()))
        .max(1)
        .build()
        .unwrap();
    leave_open(&mut pool.get().unwrap());
    let mut conn = pool.get().unwrap();
    assert_eq!(count(&mut conn), 1);
    assert_eq!(setup.committed(), 0);
    conn.batch_execute("ROLLBACK").unwrap();
    drop(conn);
    assert_eq!(pool.stats().resets, 0);
    drop(pool);

    // With a reset on the adapter, the next borrower starts clean.
    let manager = Manager::new(setup.manager()).with_reset(|conn: &mut PgConnection| {
        conn.batch_execute("ROLLBACK")
            .map_err(diesel::r2d2::Error::QueryError)
    });
    let pool = Pool::builder(manager).max(1).build().unwrap();
    leave_open(&mut pool.get().unwrap());
    let mut conn = pool.get().unwrap();
    assert_eq!(count(&mut conn), 0);
    // Still inside no transaction: this insert commits on its own.
    insert(&mut conn, "committed").unwrap();
    assert_eq!(setup.committed(), 1);
    drop(conn);
    let stats = pool.stats();
    assert_eq!((stats.opens, stats.resets), (1, 2), "{stats:?}");
}

#[test]
fn a_terminated_backend_is_replaced_by_the_next_checkout() {
    let mut setup = Setup::new("r2d2-killed");
    let pool = Pool::builder(Manager::new(setup.manager()))
        .min(2)
        .max(2)
        .check_on_checkout(true) // r2d2's `test_on_check_out`: diesel's `is_valid` pings
        .build()
        .unwrap();
    let victim = {
        let mut conn = pool.get().unwrap();
        backend_pid(&mut conn)
    };
    setup.mon.terminate(victim);

    // The idle connection whose backend is gone fails diesel's ping and is replaced; the
    // checkout gets a working one, several times over.
    for _ in 0..4 {
        let mut conn = pool.get().expect("a working connection");
        assert_ne!(backend_pid(&mut conn), victim);
        insert(&mut conn, "after").unwrap();
    }
    let stats = pool.stats();
    assert_eq!((stats.broken_returns, stats.stale), (0, 1), "{stats:?}");
    common::eventually("the pool back at two backends", || {
        pool.stats().opens == 3 && setup.mon.count() == 2
    });
    assert!(!setup.mon.pids().contains(&victim));
}

#[test]
fn a_checkout_times_out_while_every_connection_is_held() {
    let setup = Setup::new("r2d2-timeout");
    let timeout = Duration::from_millis(300);
    let pool = Pool::builder(Manager::new(setup.manager()))
        .max(2)
        .timeout(timeout)
        .build()
        .unwrap();
    let held = (pool.get().unwrap(), pool.get().unwrap());

    let asked = Instant::now();
    let error = pool.get().map(drop).unwrap_err();
    assert!(matches!(error, GetError::Timeout(None)), "{error:?}");
    assert!(asked.elapsed() >= timeout);
    let stats = pool.stats();
    assert_eq!((stats.timeouts, stats.checkouts, stats.size), (1, 2, 2));

    drop(held);
    let mut conn = pool
        .get()
        .expect("a returned connection serves the next checkout");
    assert_eq!(count(&mut conn), 0);
}
