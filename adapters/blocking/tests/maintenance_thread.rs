//! The maintenance thread ends with its pool: on close, and on drop of the last handle. Alone in
//! its test binary, so that the count of live threads is this test's own.

#![cfg(target_os = "linux")]

mod common;

use common::{eventually, Fake};
use sanspool::psycopg2::ThreadedConnectionPool;
use sanspool::Builder;

/// Live threads of this process with this name (the kernel keeps 15 bytes of it).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

fn maintenance_threads() -> usize {
    threads_named("sanspool-maint")
}

#[test]
fn the_maintenance_thread_stops_with_its_pool() {
    assert_eq!(maintenance_threads(), 0);

    // Dropped: the drop joins the thread, so it is gone when drop returns.
    let pool: ThreadedConnectionPool<Fake> =
        Builder::new(Fake::default()).build_threaded().unwrap();
    let clone = pool.clone();
    eventually("started", || maintenance_threads() == 1);
    drop(pool);
    assert_eq!(maintenance_threads(), 1, "a clone keeps the pool");
    drop(clone);
    assert_eq!(maintenance_threads(), 0);

    // Closed: closeall joins it.
    let pool: ThreadedConnectionPool<Fake> =
        Builder::new(Fake::default()).build_threaded().unwrap();
    eventually("started", || maintenance_threads() == 1);
    pool.closeall().unwrap();
    assert_eq!(maintenance_threads(), 0);
    drop(pool);

    // A guard keeps the pool; the guard's drop ends it.
    let pool = Builder::new(Fake::default()).build_persistent().unwrap();
    let guard = pool.get().unwrap();
    drop(pool);
    eventually("started", || maintenance_threads() == 1);
    drop(guard);
    assert_eq!(maintenance_threads(), 0);

    // Opener threads end once their open is done.
    let pool: ThreadedConnectionPool<Fake> = Builder::new(Fake::default())
        .min(0)
        .max(3)
        .build_threaded()
        .unwrap();
    pool.resize(3, 3).unwrap();
    pool.wait_ready(common::LONG).unwrap();
    eventually("openers ended", || threads_named("sanspool-open") == 0);
    drop(pool);
    assert_eq!(maintenance_threads(), 0);
}
