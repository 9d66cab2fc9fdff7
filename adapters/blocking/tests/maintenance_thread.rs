//! The maintenance thread ends with its pool: on close, and on drop of the last handle. Alone in
//! its test binary, so that the count of live threads is this test's own.

#![cfg(target_os = "linux")]

mod common;

use common::{eventually, Fake};
use sanspool::psycopg2::ThreadedConnectionPool;
use sanspool::Builder;

/// Threads of this process with this name (the kernel keeps 15 bytes of it). A joined thread can
/// still be listed for a moment: the kernel wakes the joiner when the thread releases its memory,
/// before it removes the task — so "gone" is checked with `eventually`, not at the instant.
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

    // Dropped: the drop joins the thread.
    let pool: ThreadedConnectionPool<Fake> =
        Builder::new(Fake::default()).build_threaded().unwrap();
    let clone = pool.clone();
    eventually("started", || maintenance_threads() == 1);
    drop(pool);
    assert_eq!(maintenance_threads(), 1, "a clone keeps the pool");
    drop(clone);
    eventually("joined", || maintenance_threads() == 0);

    // Closed: closeall joins it.
    let pool: ThreadedConnectionPool<Fake> =
        Builder::new(Fake::default()).build_threaded().unwrap();
    eventually("started", || maintenance_threads() == 1);
    pool.closeall().unwrap();
    eventually("joined", || maintenance_threads() == 0);
    drop(pool);

    // An owned guard keeps the pool; the guard's drop ends it.
    let pool = Builder::new(Fake::default()).build_persistent().unwrap();
    let guard = sanspool::PooledConn::into_owned(pool.get().unwrap());
    drop(pool);
    eventually("started", || maintenance_threads() == 1);
    drop(guard);
    eventually("joined", || maintenance_threads() == 0);

    // I/O threads (opens here) end once their work is done.
    let pool: ThreadedConnectionPool<Fake> = Builder::new(Fake::default())
        .min(0)
        .max(3)
        .build_threaded()
        .unwrap();
    pool.resize(3, 3).unwrap();
    pool.wait_ready(common::LONG).unwrap();
    eventually("I/O threads ended", || threads_named("sanspool-io") == 0);
    drop(pool);
    eventually("joined", || maintenance_threads() == 0);
}
