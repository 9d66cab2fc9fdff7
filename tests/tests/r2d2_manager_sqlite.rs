//! r2d2_sqlite's `SqliteConnectionManager`, unchanged, under sanspool's blocking pool
//! (`sanspool::r2d2::Manager`), on a real SQLite file in a temp directory.
//!
//! SQLite has no server to ask how many connections are open, so an r2d2 `CustomizeConnection`
//! counts them: its `on_acquire` runs on every connection the manager opens and its `on_release`
//! on every one the pool closes, which also shows that the adapter maps both.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use r2d2_sqlite::rusqlite::{self, Connection};
use r2d2_sqlite::SqliteConnectionManager;
use sanspool::r2d2::Manager;
use sanspool::{BuildError, GetError, Pool};

/// The SQLite connections that exist: opened by the manager and not yet released by the pool.
#[derive(Default)]
struct Census {
    live: AtomicUsize,
    most: AtomicUsize,
    released: AtomicUsize,
}

/// The customizer that keeps the [`Census`].
#[derive(Clone)]
struct Counting(Arc<Census>);

impl fmt::Debug for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counting")
    }
}

impl r2d2::CustomizeConnection<Connection, rusqlite::Error> for Counting {
    fn on_acquire(&self, _: &mut Connection) -> Result<(), rusqlite::Error> {
        let live = self.0.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.most.fetch_max(live, Ordering::SeqCst);
        Ok(())
    }

    fn on_release(&self, conn: Connection) {
        drop(conn);
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.released.fetch_add(1, Ordering::SeqCst);
    }
}

/// A database file in a fresh temp directory (removed when the directory guard drops).
fn database() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temp directory");
    let path = dir.path().join("pool.sqlite3");
    (dir, path)
}

/// r2d2_sqlite's manager for `path`, counted.
fn manager(path: &Path) -> (Manager<SqliteConnectionManager>, Arc<Census>) {
    let census = Arc::new(Census::default());
    let manager = Manager::new(SqliteConnectionManager::file(path))
        .with_customizer(Box::new(Counting(Arc::clone(&census))));
    (manager, census)
}

fn rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM hits", [], |row| row.get(0))
        .expect("count the rows")
}

/// Polls `done` until it holds, or panics after a generous bound naming `what`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn threads_share_a_few_connections_to_a_real_file() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 25;
    const MAX: usize = 3;
    let (_dir, path) = database();
    let (manager, census) = manager(&path);
    let pool = Pool::builder(manager)
        .min(1)
        .max(MAX)
        .check_on_checkout(true) // r2d2's `test_on_check_out`: the manager's `is_valid`
        .build()
        .expect("the pool builds");
    pool.get()
        .unwrap()
        .execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE hits (thread INTEGER, round INTEGER)",
        )
        .unwrap();

    let start = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS as i64 {
            let (pool, start) = (&pool, &start);
            s.spawn(move || {
                start.wait();
                for round in 0..ROUNDS as i64 {
                    let conn = pool.get().expect("a checkout within the timeout");
                    conn.execute("INSERT INTO hits VALUES (?1, ?2)", (t, round))
                        .expect("insert");
                    // Held a little, so that the other threads queue for it.
                    thread::sleep(Duration::from_millis(1));
                }
            });
        }
    });

    assert_eq!(rows(&pool.get().unwrap()), (THREADS * ROUNDS) as i64);
    let stats = pool.stats();
    assert_eq!(stats.checkouts, (THREADS * ROUNDS + 2) as u64);
    assert!(
        stats.waits > 0,
        "eight threads on three connections never waited: {stats:?}"
    );
    assert!(stats.size <= MAX, "{stats:?}");
    assert_eq!(stats.timeouts, 0);
    // What SQLite was asked to open, as the customizer saw it.
    let most = census.most.load(Ordering::SeqCst);
    assert!(
        (1..=MAX).contains(&most),
        "{most} connections at once, max {MAX}"
    );
    assert_eq!(census.live.load(Ordering::SeqCst) as u64, stats.opens);

    // Every connection is released when the pool goes, and the rows are in the file.
    drop(pool);
    eventually("every connection released", || {
        census.live.load(Ordering::SeqCst) == 0
    });
    let file = Connection::open(&path).expect("open the file directly");
    assert_eq!(rows(&file), (THREADS * ROUNDS) as i64);
}

#[test]
fn a_transaction_left_open_reaches_the_next_borrower_without_a_reset() {
    let (_dir, path) = database();
    let (manager, _) = manager(&path);
    let pool = Pool::builder(manager).max(1).build().unwrap();
    pool.get()
        .unwrap()
        .execute_batch("CREATE TABLE hits (thread INTEGER, round INTEGER)")
        .unwrap();

    pool.get()
        .unwrap()
        .execute_batch("BEGIN; INSERT INTO hits VALUES (1, 1)")
        .unwrap();
    // r2d2's behaviour: the manager has no reset, so the same connection comes back as it was
    // left, inside the first borrower's transaction, its uncommitted row visible.
    let conn = pool.get().unwrap();
    assert!(!conn.is_autocommit());
    assert_eq!(rows(&conn), 1);
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(rows(&conn), 0);
    drop(conn);
    let stats = pool.stats();
    assert_eq!((stats.opens, stats.resets), (1, 0), "{stats:?}");
}

#[test]
fn a_reset_when_dirty_rolls_back_before_reuse() {
    let (_dir, path) = database();
    let (manager, _) = manager(&path);
    let manager = manager.with_reset_when(
        |conn: &mut Connection| !conn.is_autocommit(),
        |conn: &mut Connection| conn.execute_batch("ROLLBACK"),
    );
    let pool = Pool::builder(manager).max(1).build().unwrap();
    pool.get()
        .unwrap()
        .execute_batch("CREATE TABLE hits (thread INTEGER, round INTEGER)")
        .unwrap();
    assert_eq!(pool.stats().resets, 0, "a clean return is not reset");

    pool.get()
        .unwrap()
        .execute_batch("BEGIN; INSERT INTO hits VALUES (1, 1)")
        .unwrap();
    let conn = pool.get().unwrap();
    assert!(conn.is_autocommit());
    assert_eq!(rows(&conn), 0);
    drop(conn);
    let stats = pool.stats();
    // The same connection, rolled back: one reset, no second open.
    assert_eq!((stats.opens, stats.resets), (1, 1), "{stats:?}");
}

#[test]
fn a_checkout_times_out_while_every_connection_is_held() {
    let (_dir, path) = database();
    let (manager, _) = manager(&path);
    let timeout = Duration::from_millis(200);
    let pool = Pool::builder(manager)
        .max(2)
        .timeout(timeout)
        .build()
        .unwrap();
    let held = (pool.get().unwrap(), pool.get().unwrap());

    let asked = Instant::now();
    let error = pool.get().map(drop).unwrap_err();
    assert!(matches!(error, GetError::Timeout(None)), "{error:?}");
    assert!(asked.elapsed() >= timeout);
    assert_eq!(pool.stats().timeouts, 1);

    drop(held.0);
    let conn = pool
        .get()
        .expect("a returned connection serves the next checkout");
    assert_eq!(
        conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
            .unwrap(),
        1
    );
}

#[test]
fn a_discarded_connection_is_released_and_replaced() {
    let (_dir, path) = database();
    let (manager, census) = manager(&path);
    let pool = Pool::builder(manager).min(1).max(1).build().unwrap();
    sanspool::PooledConn::close(pool.get().unwrap());
    // Closed through the customizer's `on_release`, and `min` opened again.
    eventually("the discarded connection released", || {
        census.released.load(Ordering::SeqCst) == 1
    });
    eventually("a replacement opened", || pool.stats().opens == 2);
    assert!(pool.get().unwrap().is_autocommit());
    assert_eq!(census.live.load(Ordering::SeqCst), 1);
}

#[test]
fn a_file_that_cannot_be_opened_is_the_managers_own_typed_error() {
    let (dir, _) = database();
    let unreachable = dir.path().join("no such directory").join("pool.sqlite3");
    let (refused, _) = manager(&unreachable);
    // r2d2's build: the failing open is retried until the build's bound, then named.
    let error = Pool::builder(refused)
        .min(1)
        .timeout(Duration::from_millis(10))
        .build()
        .unwrap_err();
    let BuildError::Timeout(Some(cause)) = error else {
        panic!("expected a timeout with the connect error, got {error:?}");
    };
    assert_eq!(
        cause.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen),
        "{cause}"
    );

    // A pool that opens on demand: the checkout waits its timeout behind the failing opens, and
    // says why.
    let (on_demand, census) = manager(&unreachable);
    let pool = Pool::builder(on_demand)
        .min(0)
        .max(1)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = pool.get().map(drop).unwrap_err();
    let GetError::Timeout(Some(cause)) = error else {
        panic!("expected a timeout with its cause, got {error:?}");
    };
    assert_eq!(
        cause.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen)
    );
    assert!(pool.stats().open_failures >= 1);
    assert_eq!(census.most.load(Ordering::SeqCst), 0, "nothing was opened");
}
