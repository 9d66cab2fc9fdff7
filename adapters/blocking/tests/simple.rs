//! The simple pool: psycopg2's API and the guard, single-threaded and deterministic.

mod common;

use common::{Counters, Fake, FakeError};
use sanspool::psycopg2::PutError;
use sanspool::psycopg2::{LockError, SimpleConnectionPool};
use sanspool::{BuildError, Builder, CoreError, GetError, KeepIdle};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

fn pool(min: usize, max: usize) -> (SimpleConnectionPool<Fake>, Arc<Counters>) {
    let (builder, counters) = common::builder(min, max);
    (builder.build_simple().unwrap(), counters)
}

#[test]
fn build_opens_min_and_fails_like_psycopg2() {
    let (pool, c) = pool(2, 4);
    assert_eq!(c.get(&c.opens), 2);
    assert_eq!(pool.stats().idle, 2);

    let fake = Fake::default();
    fake.0.fail_connect.store(true, SeqCst);
    let err = Builder::new(fake.clone())
        .min(2)
        .build_simple()
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::Connect(e) if e.0 == "server down"),
        "{err:?}"
    );
    assert_eq!(
        fake.0.get(&fake.0.attempts),
        1,
        "stops at the first failure"
    );

    let err = Builder::new(Fake::default())
        .min(3)
        .max(2)
        .build_simple()
        .unwrap_err();
    assert!(matches!(err, BuildError::Config(CoreError::MinAboveMax)));
    let _: &SimpleConnectionPool<Fake> = &pool;
}

#[test]
fn same_key_same_connection_and_putconn_errors() {
    let (pool, c) = pool(1, 3);
    let a = pool.getconn(Some(1)).unwrap();
    let again = pool.getconn(Some(1)).unwrap();
    assert!(a.ptr_eq(&again));
    assert_eq!(pool.stats().in_use, 1);
    let b = pool.getconn(Some(2)).unwrap();
    assert!(!a.ptr_eq(&b));
    assert_ne!(a.borrow_mut().unwrap().id, b.borrow_mut().unwrap().id);

    // Wrong key: refused, and the handle keeps its connection.
    let err = pool.putconn(a.clone(), Some(&2), false).unwrap_err();
    assert!(matches!(err, PutError::WrongKey), "{err:?}");
    assert!(a.borrow_mut().is_ok());

    pool.putconn(a.clone(), Some(&1), false).unwrap();
    assert!(matches!(again.borrow_mut(), Err(LockError::Returned)));
    let err = pool.putconn(again, Some(&1), false).unwrap_err();
    assert!(matches!(err, PutError::AlreadyReturned), "{err:?}");

    // A connection of another pool.
    let (other, _) = self::pool(1, 1);
    let foreign = other.getconn(None).unwrap();
    assert!(matches!(
        pool.putconn(foreign.clone(), None, false),
        Err(PutError::Foreign)
    ));
    assert!(
        foreign.borrow_mut().is_ok(),
        "a foreign handle is left alone"
    );

    // putconn without the key finds it from the handle; the key is free again.
    pool.putconn(b, None, false).unwrap();
    let b2 = pool.getconn(Some(2)).unwrap();
    assert_eq!(b2.key(), Some(&2));
    assert_eq!(c.get(&c.closes), 0);
}

#[test]
fn exhausted_and_close_on_putconn() {
    let (pool, c) = pool(0, 2);
    let a = pool.getconn(None).unwrap();
    let _b = pool.getconn(None).unwrap();
    let err = pool.getconn(None).unwrap_err();
    assert!(matches!(err, GetError::Exhausted));
    assert_eq!(err.to_string(), "connection pool exhausted");
    pool.putconn(a, None, true).unwrap();
    assert_eq!(c.get(&c.closes), 1);
    assert!(pool.getconn(None).is_ok());
}

#[test]
fn closeall_semantics() {
    let (pool, c) = pool(3, 3);
    let held = pool.getconn(Some(5)).unwrap();
    let guard = pool.get().unwrap();
    pool.closeall().unwrap();
    // Idle closed at once; checked-out ones when they come back.
    assert_eq!(c.get(&c.closes), 1);
    assert!(matches!(pool.getconn(None), Err(GetError::Closed)));
    assert!(matches!(pool.get(), Err(GetError::Closed)));
    assert!(matches!(pool.closeall(), Err(CoreError::Closed)));
    let err = pool.putconn(held, Some(&5), false).unwrap_err();
    assert_eq!(err.to_string(), "connection pool is closed");
    drop(guard);
    assert_eq!(c.get(&c.closes), c.get(&c.opens));
    assert_eq!(c.live(), 0);
}

#[test]
fn dirty_is_reset_and_broken_is_replaced() {
    let (pool, c) = pool(1, 1);
    {
        let mut conn = pool.get().unwrap();
        conn.dirty = true;
    }
    assert_eq!(c.get(&c.resets), 1);
    let first = {
        let conn = pool.get().unwrap();
        assert!(!conn.dirty);
        conn.id
    };
    {
        let mut conn = pool.get().unwrap();
        conn.broken = true;
    }
    assert_eq!(c.get(&c.closes), 1);
    assert_eq!(pool.stats().broken_returns, 1);
    let conn = pool.get().unwrap();
    assert_ne!(conn.id, first, "replaced");
    drop(conn);

    // A reset that fails closes the connection.
    c.fail_reset.store(true, SeqCst);
    pool.get().unwrap().dirty = true;
    assert_eq!(c.get(&c.closes), 2);
}

#[test]
fn guard_take_discard_and_keys() {
    let (pool, c) = pool(1, 2);
    let guard = pool.get_keyed(9).unwrap();
    assert_eq!(sanspool::PooledConn::key(&guard), Some(&9));
    assert!(matches!(pool.get_keyed(9), Err(GetError::KeyBusy)));
    assert!(matches!(pool.getconn(Some(9)), Err(GetError::KeyBusy)));
    let conn = sanspool::PooledConn::detach(guard);
    assert_eq!(pool.stats().detached, 1);
    assert_eq!(pool.stats().in_use, 0);
    // The key is free, and min is refilled.
    assert!(pool.get_keyed(9).is_ok());
    assert_eq!(pool.stats().idle, 1);
    drop(conn);

    let closes = c.get(&c.closes);
    sanspool::psycopg2::LocalPooledConn::close(pool.get().unwrap());
    assert_eq!(c.get(&c.closes), closes + 1);
}

#[test]
fn handle_dropped_without_putconn_goes_back() {
    let (pool, c) = pool(1, 2);
    let h = pool.getconn(None).unwrap();
    let h2 = h.clone();
    drop(h);
    assert_eq!(pool.stats().in_use, 1);
    drop(h2);
    assert_eq!(pool.stats().in_use, 0);
    assert_eq!(pool.stats().idle, 1);
    // A keyed one is held by the pool until putconn (psycopg2).
    drop(pool.getconn(Some(3)).unwrap());
    assert_eq!(pool.stats().in_use, 1);
    let h = pool.getconn(Some(3)).unwrap();
    pool.putconn(h, None, false).unwrap();
    assert_eq!(pool.stats().in_use, 0);
    drop(pool);
    assert_eq!(c.live(), 0, "dropping the pool closes everything");
}

#[test]
fn psycopg2_keeps_only_min_idle() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: SimpleConnectionPool<Fake> = Builder::new(fake)
        .min(1)
        .max(3)
        .psycopg2()
        .build_simple()
        .unwrap();
    let a = pool.getconn(None).unwrap();
    let b = pool.getconn(None).unwrap();
    pool.putconn(a, None, false).unwrap();
    pool.putconn(b, None, false).unwrap();
    assert_eq!(pool.stats().idle, 1);
    assert_eq!(c.get(&c.closes), 1);
    let _ = KeepIdle::UpToMin;
}

#[test]
fn before_reuse_failure_tries_the_next() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: SimpleConnectionPool<Fake> = Builder::new(fake)
        .min(2)
        .max(2)
        .before_reuse(|conn| {
            if conn.id == 1 {
                Err(FakeError("stale"))
            } else {
                Ok(())
            }
        })
        .build_simple()
        .unwrap();
    // LIFO: connection 1 comes first, fails the hook, is closed (and replaced, min is 2).
    let conn = pool.get().unwrap();
    assert_ne!(conn.id, 1);
    assert_eq!(c.get(&c.closes), 1);
    assert_eq!(pool.stats().stale, 1, "closed by its vet");
    drop(conn);
}

#[test]
fn check_on_checkout_and_check() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: SimpleConnectionPool<Fake> = Builder::new(fake)
        .min(2)
        .max(2)
        .check_on_checkout(true)
        .build_simple()
        .unwrap();
    drop(pool.get().unwrap());
    assert_eq!(c.get(&c.checks), 1);
    c.fail_check.store(true, SeqCst);
    assert_eq!(pool.check().unwrap(), 2);
    assert_eq!(c.get(&c.closes), 2);
    // Replaced inline, up to min.
    assert_eq!(pool.stats().idle, 2);
    c.fail_check.store(false, SeqCst);
    assert_eq!(pool.check().unwrap(), 0);
}

#[test]
fn connect_failure_on_demand_and_maintain_retries() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: SimpleConnectionPool<Fake> = Builder::new(fake)
        .min(0)
        .max(2)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .build_simple()
        .unwrap();
    c.fail_connect.store(true, SeqCst);
    let err = pool.get().unwrap_err();
    assert!(matches!(&err, GetError::Connect(e) if e.0 == "server down"));
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "server down"
    );
    c.fail_connect.store(false, SeqCst);
    assert!(pool.get().is_ok());

    // min after a failed refill: maintain() retries after the backoff.
    c.fail_connect.store(true, SeqCst);
    pool.drain().unwrap();
    assert!(pool.resize(1, 2).is_ok());
    assert_eq!(pool.stats().idle, 0);
    c.fail_connect.store(false, SeqCst);
    common::eventually("refill", || {
        pool.maintain();
        pool.stats().idle == 1
    });
}

#[test]
fn maintain_expires_idle() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: SimpleConnectionPool<Fake> = Builder::new(fake)
        .min(1)
        .max(3)
        .max_idle(Duration::from_millis(5))
        .build_simple()
        .unwrap();
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    drop((a, b));
    assert_eq!(pool.stats().idle, 2);
    assert!(pool.maintain().is_some());
    common::eventually("idle expiry", || {
        pool.maintain();
        pool.stats().idle == 1
    });
    assert_eq!(c.get(&c.closes), 1);
    assert_eq!(pool.maintain(), None);
}

#[test]
fn drain_and_resize() {
    let (pool, c) = pool(2, 2);
    let g = pool.get().unwrap();
    pool.drain().unwrap();
    // The idle one was replaced; the borrowed one retires on return.
    assert_eq!(c.get(&c.closes), 1);
    drop(g);
    assert_eq!(c.get(&c.closes), 2);
    assert_eq!(pool.stats().idle, 2);
    pool.resize(1, 1).unwrap();
    assert_eq!(pool.stats().size, 1);
    assert!(matches!(pool.resize(2, 1), Err(CoreError::MinAboveMax)));
}

#[test]
fn string_keys() {
    let pool = Builder::new(Fake::default())
        .keys::<String>()
        .build_simple()
        .unwrap();
    let a = pool.getconn(Some("a".to_string())).unwrap();
    assert!(a.ptr_eq(&pool.getconn(Some("a".into())).unwrap()));
    pool.putconn(a, Some(&"a".into()), false).unwrap();
}

/// Resets, checks and closes cut off at their bound (`Connector::is_abandoned`) are handled as
/// failures — the connection closed and replaced — and counted apart in the stats; plain failures
/// are not counted there.
#[test]
fn abandoned_resets_checks_and_closes_are_counted() {
    let (pool, c) = pool(1, 1);
    let abandoned = |pool: &SimpleConnectionPool<Fake>| {
        let s = pool.stats();
        [s.abandoned_resets, s.abandoned_checks, s.abandoned_closes]
    };
    // Plain failures: closed, not counted as abandoned.
    c.fail_reset.store(true, SeqCst);
    c.fail_check.store(true, SeqCst);
    pool.get().unwrap().dirty = true;
    assert_eq!(pool.check().unwrap(), 1);
    assert_eq!(abandoned(&pool), [0, 0, 0]);
    assert_eq!(c.get(&c.closes), 2);

    // Cut off at their bound.
    c.abandon.store(true, SeqCst);
    let first = {
        let mut conn = pool.get().unwrap();
        conn.dirty = true;
        conn.id
    };
    assert_eq!(abandoned(&pool), [1, 0, 0]);
    assert_eq!(c.get(&c.closes), 3);
    assert_eq!(pool.stats().idle, 1, "refilled to min");
    assert_eq!(pool.check().unwrap(), 1);
    assert_eq!(abandoned(&pool), [1, 1, 0]);
    assert_eq!(c.get(&c.closes), 4);
    c.fail_check.store(false, SeqCst);
    let conn = pool.get().unwrap();
    assert_ne!(conn.id, first, "replaced");
    drop(conn);

    // A close cut off at its bound (here: a broken return's close) still frees the place.
    c.fail_close.store(true, SeqCst);
    pool.get().unwrap().broken = true;
    assert_eq!(abandoned(&pool), [1, 1, 1]);
    let s = pool.stats();
    assert_eq!((s.size, s.idle, s.closing), (1, 1, 0), "{s:?}");
    c.abandon.store(false, SeqCst);
    pool.get().unwrap().broken = true;
    assert_eq!(
        abandoned(&pool),
        [1, 1, 1],
        "a failed close is no abandonment"
    );
    assert_eq!(pool.stats().size, 1);
}
