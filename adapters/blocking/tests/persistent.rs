//! The persistent pool: one connection per thread, given back when the thread ends.

mod common;

use common::{eventually, Counters, Fake, LONG};
use sanspool::psycopg2::PutError;
use sanspool::psycopg2::{LockError, PersistentConnectionPool};
use sanspool::GetError;
use std::sync::Arc;
use std::thread;

fn pool(min: usize, max: usize) -> (PersistentConnectionPool<Fake>, Arc<Counters>) {
    let (builder, counters) = common::builder(min, max);
    (builder.timeout(LONG).build_persistent().unwrap(), counters)
}

#[test]
fn a_thread_gets_its_own_connection_back() {
    let (pool, _) = pool(1, 3);
    let a = pool.getconn().unwrap();
    let again = pool.getconn().unwrap();
    assert!(a.ptr_eq(&again));
    assert_eq!(pool.stats().in_use, 1);
    let mine = a.lock().unwrap().id;
    let p = pool.clone();
    let theirs = thread::spawn(move || {
        let c = p.getconn().unwrap();
        let id = c.lock().unwrap().id;
        p.putconn(None, false).unwrap();
        id
    })
    .join()
    .unwrap();
    assert_ne!(mine, theirs);
    pool.putconn(None, false).unwrap();
    assert!(matches!(a.lock(), Err(LockError::Returned)));
    assert!(matches!(pool.putconn(None, false), Err(PutError::Unkeyed)));
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn a_thread_that_ends_gives_its_connection_back() {
    let (pool, c) = pool(1, 2);
    let p = pool.clone();
    thread::spawn(move || {
        let conn = p.getconn().unwrap();
        conn.lock().unwrap().dirty = true;
        // No putconn: psycopg2 would leak it.
    })
    .join()
    .unwrap();
    // Taken back at once; reset on the maintenance thread (an ending thread does no I/O).
    assert_eq!(pool.stats().in_use, 0);
    eventually("the dirty one is reset and idle again", || {
        pool.stats().idle == 1
    });
    assert_eq!(
        c.get(&c.resets),
        1,
        "the dirty one was reset on its way back"
    );
    assert_eq!(c.get(&c.opens), 1);
}

#[test]
fn a_broken_connection_left_by_an_ending_thread_is_replaced() {
    let (pool, c) = pool(1, 2);
    let p = pool.clone();
    thread::spawn(move || {
        p.getconn().unwrap().lock().unwrap().broken = true;
    })
    .join()
    .unwrap();
    // The close and the refill run on the maintenance thread, not on the ending one.
    eventually("closed", || c.get(&c.closes) == 1);
    eventually("refilled", || pool.stats().idle == 1);
    assert_eq!(c.get(&c.opens), 2);
}

#[test]
fn another_threads_connection_is_the_wrong_key() {
    let (pool, _) = pool(1, 2);
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    let p = pool.clone();
    let t = thread::spawn(move || {
        handle_tx.send(p.getconn().unwrap()).unwrap();
        end_rx.recv().unwrap();
    });
    let theirs = handle_rx.recv().unwrap();
    assert!(matches!(
        pool.putconn(Some(theirs.clone()), false),
        Err(PutError::WrongKey)
    ));
    assert!(theirs.lock().is_ok());
    end_tx.send(()).unwrap();
    t.join().unwrap();
    // Its thread ended: it went back to the pool.
    assert!(matches!(theirs.lock(), Err(LockError::Returned)));
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn the_guard_borrows_the_threads_key() {
    let (pool, c) = pool(1, 2);
    let guard = pool.get().unwrap();
    assert_eq!(
        sanspool::PooledConn::key(&guard),
        Some(&thread::current().id())
    );
    assert!(matches!(pool.getconn(), Err(GetError::KeyBusy)));
    assert!(matches!(pool.get(), Err(GetError::KeyBusy)));
    drop(guard);
    assert_eq!(pool.stats().in_use, 0);
    let h = pool.getconn().unwrap();
    pool.putconn(Some(h), true).unwrap();
    // Closed on an I/O thread, not on the one giving it back.
    eventually("closed", || c.get(&c.closes) == 1);
    pool.closeall().unwrap();
    assert!(matches!(pool.getconn(), Err(GetError::Closed)));
}

#[test]
fn threads_ending_after_the_pool_is_dropped() {
    let (pool, c) = pool(1, 2);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let p = pool.clone();
    let t = thread::spawn(move || {
        let _conn = p.getconn().unwrap();
        drop(p);
        rx.recv().unwrap();
    });
    eventually("checked out", || pool.stats().in_use == 1);
    drop(pool);
    tx.send(()).unwrap();
    t.join().unwrap();
    assert_eq!(c.live(), 0);
}
