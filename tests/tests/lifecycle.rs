//! A pool's life: the persistent pool's threads come and go, `drain`, `resize`, lifetimes.
//! Timing is only ever bounded generously ("eventually"), never asserted.

mod common;

use std::thread;
use std::time::Duration;

use common::{backend_pid, connector, eventually, monitor, PATIENCE};
use sanspool_postgres::psycopg2::PersistentConnectionPool;
use sanspool_postgres::{Builder, GetError, PgConnector, Pool};

fn persistent(name: &str, min: usize, max: usize) -> PersistentConnectionPool<PgConnector> {
    Builder::new(connector(name))
        .min(min)
        .max(max)
        .timeout(Duration::from_secs(10))
        .build_persistent()
        .unwrap()
}

/// The same thread gets the same backend every time, with `getconn` and with the guard alike.
#[test]
fn persistent_pool_same_thread_same_backend() {
    let pool = persistent("pers-same", 1, 4);
    let conn = pool.getconn().unwrap();
    let pid = backend_pid(&mut conn.lock().unwrap());
    for _ in 0..5 {
        let again = pool.getconn().unwrap();
        assert!(again.ptr_eq(&conn));
        assert_eq!(backend_pid(&mut again.lock().unwrap()), pid);
    }
    pool.putconn(None, false).unwrap();
    for _ in 0..5 {
        assert_eq!(backend_pid(&mut pool.get().unwrap()), pid);
    }
    // Another thread, while this one holds its connection, gets another backend.
    let _mine = pool.getconn().unwrap();
    let pool2 = pool.clone();
    let theirs = thread::spawn(move || backend_pid(&mut pool2.getconn().unwrap().lock().unwrap()))
        .join()
        .unwrap();
    assert_ne!(theirs, pid);
}

/// A thread that ends without `putconn` gives its connection back (psycopg2 leaks it): the
/// pool's idle count goes back up, the next thread reuses the backend, the server sees no more.
#[test]
fn persistent_pool_thread_exit_returns_the_connection() {
    let name = "pers-exit";
    let mut mon = monitor(name);
    let pool = persistent(name, 1, 3);
    assert_eq!(pool.stats().idle, 1);
    let mut pids = Vec::new();
    for _ in 0..10 {
        let pool2 = pool.clone();
        let pid = thread::spawn(move || {
            let conn = pool2.getconn().unwrap();
            let pid = backend_pid(&mut conn.lock().unwrap());
            assert_eq!(pool2.stats().in_use, 1);
            pid // no putconn: the thread just ends
        })
        .join()
        .unwrap();
        pids.push(pid);
        let stats = pool.stats();
        assert_eq!(
            (stats.idle, stats.in_use),
            (1, 0),
            "given back at thread exit: {stats:?}"
        );
    }
    pids.dedup();
    assert_eq!(
        pids.len(),
        1,
        "every thread reused the one backend: {pids:?}"
    );
    assert_eq!(mon.pids(), pids, "no leak on the server");
    assert_eq!(pool.stats().opens, 1);
}

/// `drain()` retires every connection: idle ones at once, the borrowed one when it comes back;
/// the pool refills with new backends.
#[test]
fn drain_replaces_every_backend() {
    let name = "drain";
    let mut mon = monitor(name);
    let max = 3;
    let pool: Pool<PgConnector> = Builder::new(connector(name))
        .min(2)
        .max(max)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut held = pool.get().unwrap();
    let held_pid = backend_pid(&mut held);
    let _extra = pool.get().unwrap();
    let old = mon.pids();
    assert_eq!(old.len(), 2);

    pool.drain().unwrap();
    pool.wait_ready(PATIENCE).unwrap();
    // The borrowed ones are not closed under their borrowers.
    assert!(mon.alive(held_pid));
    assert_eq!(backend_pid(&mut held), held_pid);
    drop(held);
    drop(_extra);
    eventually("every old backend replaced", || {
        let now = mon.pids();
        now.len() >= 2 && now.len() <= max && now.iter().all(|p| !old.contains(p))
    });
    let mut conn = pool.get().unwrap();
    assert!(!old.contains(&backend_pid(&mut conn)));
}

/// `resize()` grows at once and shrinks idle connections at once.
#[test]
fn resize_grows_and_shrinks() {
    let name = "resize";
    let mut mon = monitor(name);
    let pool: Pool<PgConnector> = Builder::new(connector(name))
        .min(1)
        .max(2)
        .timeout(None)
        .build()
        .unwrap();
    assert_eq!(mon.count(), 1);
    pool.resize(4, 6).unwrap();
    pool.wait_ready(PATIENCE).unwrap();
    eventually("four backends", || mon.count() == 4);
    let conns: Vec<_> = (0..6).map(|_| pool.get().unwrap()).collect();
    assert!(
        matches!(pool.get(), Err(GetError::Exhausted)),
        "max is 6 now"
    );
    drop(conns);

    pool.resize(1, 1).unwrap();
    eventually("one backend", || mon.count() == 1);
    let _one = pool.get().unwrap();
    assert!(
        matches!(pool.get(), Err(GetError::Exhausted)),
        "max is 1 now"
    );
}

/// Connections past `max_lifetime` are replaced, idle or not (borrowed ones when they return).
#[test]
fn max_lifetime_replaces_connections() {
    let name = "lifetime";
    let mut mon = monitor(name);
    let pool: Pool<PgConnector> = Builder::new(connector(name))
        .min(2)
        .max(3)
        .max_lifetime(Duration::from_millis(300))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut held = pool.get().unwrap();
    let held_pid = backend_pid(&mut held);
    let first = mon.pids();
    assert_eq!(first.len(), 2);

    // The idle one expires by itself (the maintenance thread); the pool refills to min.
    eventually("the idle connection to expire and be replaced", || {
        let now = mon.pids();
        now.len() == 2
            && now.contains(&held_pid)
            && now.iter().all(|p| *p == held_pid || !first.contains(p))
    });
    // The borrowed one is past its lifetime: closed when it comes back.
    thread::sleep(Duration::from_millis(300));
    drop(held);
    eventually("the returned old connection to close", || {
        !mon.alive(held_pid)
    });
    eventually("min connections again, all new", || {
        let now = mon.pids();
        now.len() >= 2 && now.iter().all(|p| !first.contains(p))
    });
    assert!(pool.stats().expired >= 2, "{:?}", pool.stats());
}
