//! The threaded pool's concurrency: fairness, timeouts, no lock held across I/O, closeall,
//! maintenance. Timing assertions are only generous "did not deadlock" bounds.

mod common;

use common::{eventually, Counters, Fake, LONG};
use sanspool::psycopg2::PutError;
use sanspool::psycopg2::{Conn, LockError, PersistentConnectionPool, ThreadedConnectionPool};
use sanspool::{BuildError, Builder, CoreError, Fairness, GetError, Pool, PooledConn};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn pool(min: usize, max: usize) -> (ThreadedConnectionPool<Fake>, Arc<Counters>) {
    let (builder, counters) = common::builder(min, max);
    (builder.timeout(LONG).build_threaded().unwrap(), counters)
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Pool<Fake>>();
    send_sync::<ThreadedConnectionPool<Fake>>();
    send_sync::<PersistentConnectionPool<Fake>>();
    send_sync::<Conn<Fake>>();
    send::<PooledConn<Fake>>();
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let (pool, _) = pool(1, 1);
    let held = pool.get().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..6 {
        let p = pool.clone();
        let order = Arc::clone(&order);
        threads.push(thread::spawn(move || {
            let conn = p.get().unwrap();
            order.lock().unwrap().push(i);
            drop(conn);
        }));
        // The next waiter starts only once this one is queued.
        eventually("waiter queued", || pool.stats().waiting == i + 1);
    }
    drop(held);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..6).collect::<Vec<_>>());
    assert_eq!(pool.stats().waits, 6);
}

#[test]
fn a_waiter_times_out_with_a_typed_error() {
    let fake = Fake::default();
    let pool = Builder::new(fake)
        .min(1)
        .max(1)
        .timeout(Duration::from_millis(30))
        .build_threaded()
        .unwrap();
    let held = pool.get().unwrap();
    let started = Instant::now();
    let err = thread::scope(|s| s.spawn(|| pool.get().unwrap_err()).join().unwrap());
    assert!(matches!(err, GetError::Timeout(None)), "{err:?}");
    assert_eq!(err.to_string(), "timed out waiting for a connection");
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert!(started.elapsed() < LONG);
    assert_eq!(pool.stats().timeouts, 1);
    assert_eq!(pool.stats().waiting, 0);
    drop(held);
    assert!(pool.get().is_ok(), "the pool still works");
}

#[test]
fn a_timeout_carries_the_last_connect_error() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: ThreadedConnectionPool<Fake> = Builder::new(fake)
        .min(0)
        .max(1)
        .timeout(Duration::from_millis(50))
        .backoff(Duration::from_millis(5), Duration::from_millis(5))
        .build_threaded()
        .unwrap();
    c.fail_connect.store(true, SeqCst);
    let err = pool.get().unwrap_err();
    match &err {
        GetError::Timeout(Some(e)) => assert_eq!(e.0, "server down"),
        other => panic!("{other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
    // Its text says why, as r2d2's does.
    assert_eq!(
        err.to_string(),
        "timed out waiting for a connection: server down"
    );
    assert!(c.get(&c.attempts) >= 2, "retried with backoff");
    c.fail_connect.store(false, SeqCst);
    assert!(pool.get().is_ok());
}

#[test]
fn psycopg2_mode_fails_at_once() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: ThreadedConnectionPool<Fake> = Builder::new(fake)
        .min(1)
        .max(2)
        .psycopg2()
        .build_threaded()
        .unwrap();
    let _a = pool.getconn(None).unwrap();
    let _b = pool.getconn(None).unwrap();
    let started = Instant::now();
    assert!(matches!(pool.getconn(None), Err(GetError::Exhausted)));
    assert!(started.elapsed() < LONG);
    c.fail_connect.store(true, SeqCst);
    pool.resize(1, 3).unwrap();
    // Room to open: the checkout waits for its own open, and hears its error.
    let err = pool.getconn(None).unwrap_err();
    assert!(
        matches!(&err, GetError::Connect(e) if e.0 == "server down"),
        "{err:?}"
    );
}

#[test]
fn no_lock_is_held_during_connect() {
    let (pool, c) = pool(1, 3);
    c.close_gate();
    // Two opens start and block in connect.
    pool.resize(3, 3).unwrap();
    eventually("two connects blocked", || c.get(&c.connecting) == 2);
    // Meanwhile the idle connection is served, from this thread and from another.
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    thread::spawn(move || {
        let conn = p.get().unwrap();
        let stats = p.stats();
        drop(conn);
        tx.send(stats).unwrap();
    });
    let stats = rx
        .recv_timeout(LONG)
        .expect("a checkout stalled behind a connect");
    assert_eq!(stats.opening, 2);
    assert!(pool.get().is_ok());
    c.open_gate();
    assert!(pool.wait_ready(LONG).is_ok());
    assert_eq!(pool.stats().idle, 3);
}

#[test]
fn a_returned_connection_goes_to_the_waiter_not_a_new_open() {
    let (pool, c) = pool(1, 1);
    let held = pool.get().unwrap();
    let id = held.id;
    let p = pool.clone();
    let waiter = thread::spawn(move || p.get().unwrap().id);
    eventually("queued", || pool.stats().waiting == 1);
    drop(held);
    assert_eq!(waiter.join().unwrap(), id);
    assert_eq!(c.get(&c.opens), 1);
}

#[test]
fn closeall_fails_waiters_and_closes_returns() {
    let (pool, c) = pool(2, 2);
    let keyed = pool.getconn(Some(1)).unwrap();
    let guard = pool.get().unwrap();
    let p = pool.clone();
    let waiter = thread::spawn(move || p.get().map(|_| ()));
    eventually("queued", || pool.stats().waiting == 1);
    pool.closeall().unwrap();
    assert!(matches!(waiter.join().unwrap(), Err(GetError::Closed)));
    assert!(matches!(pool.closeall(), Err(CoreError::Closed)));
    assert!(matches!(pool.getconn(None), Err(GetError::Closed)));
    assert!(pool.is_closed());
    let err = pool.putconn(keyed, Some(&1), false).unwrap_err();
    assert!(matches!(err, PutError::Closed));
    eventually("taken and closed", || c.get(&c.closes) == 1);
    drop(guard);
    eventually("every connection closed", || c.live() == 0);
}

#[test]
fn putconn_errors() {
    let (pool, _) = pool(1, 2);
    let (other, _) = self::pool(1, 1);
    let a = pool.getconn(Some(1)).unwrap();
    assert!(a.ptr_eq(&pool.getconn(Some(1)).unwrap()));
    assert!(matches!(
        pool.putconn(a.clone(), Some(&2), false),
        Err(PutError::WrongKey)
    ));
    assert!(a.lock().is_ok(), "kept its connection");
    assert!(matches!(
        other.putconn(a.clone(), None, false),
        Err(PutError::Foreign)
    ));
    pool.putconn(a.clone(), None, false).unwrap();
    assert!(matches!(
        pool.putconn(a.clone(), None, false),
        Err(PutError::AlreadyReturned)
    ));
    assert!(matches!(a.lock(), Err(LockError::Returned)));
    // The key is free.
    let b = pool.getconn(Some(1)).unwrap();
    assert!(!a.ptr_eq(&b));
}

#[test]
fn keys_across_threads() {
    let (pool, _) = pool(1, 3);
    let a = pool.getconn(Some(7)).unwrap();
    let p = pool.clone();
    let b = thread::spawn(move || p.getconn(Some(7)).unwrap())
        .join()
        .unwrap();
    assert!(
        a.ptr_eq(&b),
        "psycopg2: the same key gives the same connection"
    );
    let g = pool.get_keyed(8).unwrap();
    let p = pool.clone();
    let busy = thread::spawn(move || p.get_keyed(8).map(|_| ()))
        .join()
        .unwrap();
    assert!(matches!(busy, Err(GetError::KeyBusy)));
    drop(g);
    pool.putconn(a, Some(&7), false).unwrap();
}

#[test]
fn dirty_broken_take_discard() {
    let (pool, c) = pool(1, 2);
    // Resets and closes run on I/O threads: the borrower giving it back does not wait for them.
    pool.get().unwrap().dirty = true;
    eventually("reset", || c.get(&c.resets) == 1);
    assert!(!pool.get().unwrap().dirty);
    pool.get().unwrap().broken = true;
    eventually("closed", || c.get(&c.closes) == 1);
    eventually("refilled", || pool.stats().idle == 1);
    let conn = sanspool::PooledConn::detach(pool.get().unwrap());
    assert_eq!(pool.stats().detached, 1);
    eventually("refilled after take", || pool.stats().idle == 1);
    drop(conn);
    let closes = c.get(&c.closes);
    sanspool::PooledConn::close(pool.get().unwrap());
    eventually("discarded", || c.get(&c.closes) == closes + 1);
}

#[test]
fn check_on_checkout_replaces_a_dead_connection() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: ThreadedConnectionPool<Fake> = Builder::new(fake)
        .min(1)
        .max(1)
        .timeout(LONG)
        .check_on_checkout(true)
        .build_threaded()
        .unwrap();
    c.fail_check.store(true, SeqCst);
    c.close_gate();
    // The idle one fails its check and is closed; the checkout waits for the connection opened in
    // its place, which is handed over fresh, without a check.
    thread::scope(|s| {
        let checkout = s.spawn(|| pool.get().unwrap().id);
        eventually("waiting for the replacement", || {
            pool.stats().waiting == 1 && c.get(&c.connecting) == 1
        });
        c.open_gate();
        assert_eq!(checkout.join().unwrap(), 1);
    });
    assert_eq!(c.get(&c.checks), 1);
    assert_eq!(c.get(&c.closes), 1);
    assert_eq!(pool.check().unwrap(), 1);
}

#[test]
fn many_threads_never_exceed_max() {
    let (pool, c) = pool(1, 4);
    thread::scope(|s| {
        for t in 0..16 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..200 {
                    let mut conn = pool.get().unwrap();
                    if (t + i) % 17 == 0 {
                        conn.dirty = true;
                    }
                    if (t + i) % 31 == 0 {
                        conn.broken = true;
                    }
                }
            });
        }
    });
    assert!(c.get(&c.peak) <= 4, "peak {}", c.get(&c.peak));
    let stats = pool.stats();
    assert_eq!(stats.checkouts, 16 * 200);
    assert_eq!(stats.in_use, 0);
    assert_eq!(stats.waiting, 0);
    drop(pool);
    eventually("all closed", || c.live() == 0);
}

#[test]
fn maintenance_expires_idle_and_refills() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: ThreadedConnectionPool<Fake> = Builder::new(fake)
        .min(1)
        .max(3)
        .timeout(LONG)
        .max_idle(Duration::from_millis(10))
        .backoff(Duration::from_millis(5), Duration::from_millis(5))
        .build_threaded()
        .unwrap();
    let (a, b) = (pool.get().unwrap(), pool.get().unwrap());
    drop((a, b));
    assert_eq!(pool.stats().idle, 2);
    // No input: the maintenance thread closes the extra idle one.
    eventually("idle expiry", || pool.stats().idle == 1);
    eventually("closed", || c.get(&c.closes) == 1);

    // A failed refill is retried after its backoff, with no input.
    c.fail_connect.store(true, SeqCst);
    pool.drain().unwrap();
    eventually("a failed attempt", || pool.stats().open_failures > 0);
    c.fail_connect.store(false, SeqCst);
    pool.wait_ready(LONG).unwrap();
}

#[test]
fn lifetime_closes_old_connections() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: ThreadedConnectionPool<Fake> = Builder::new(fake)
        .min(1)
        .max(1)
        .max_lifetime(Duration::from_millis(10))
        .build_threaded()
        .unwrap();
    eventually("replaced by age", || {
        pool.stats().expired >= 1 && pool.stats().idle == 1
    });
    assert!(c.get(&c.opens) >= 2);
}

#[test]
fn owned_guards_keep_the_pool_alive_and_drop_closes_everything() {
    let (pool, c) = pool(2, 2);
    let guard: sanspool::OwnedConn<Fake> = sanspool::PooledConn::into_owned(pool.get().unwrap());
    let handle = pool.getconn(None).unwrap();
    drop(pool);
    assert_eq!(c.live(), 2, "the owned guard keeps the pool alive");
    assert_eq!(sanspool::PooledConn::key(&guard), None);
    // `'static`: it goes back from a thread of its own.
    std::thread::spawn(move || drop(guard)).join().unwrap();
    // Its connection is closed (on an I/O thread); the unkeyed handle outlived the pool: its
    // connection is dropped with it.
    eventually("the guard's connection closed", || c.live() == 1);
    drop(handle);
    eventually("every connection closed", || c.live() == 0);
}

#[test]
fn unkeyed_handle_goes_back_when_dropped() {
    let (pool, _) = pool(1, 1);
    let h = pool.getconn(None).unwrap();
    let h2 = h.clone();
    drop(h);
    assert_eq!(pool.stats().in_use, 1);
    thread::spawn(move || drop(h2)).join().unwrap();
    assert_eq!(pool.stats().in_use, 0);
    assert!(pool.getconn(None).is_ok());
}

#[test]
fn too_many_waiters() {
    let fake = Fake::default();
    let pool: ThreadedConnectionPool<Fake> = Builder::new(fake)
        .min(1)
        .max(1)
        .max_waiting(1)
        .timeout(LONG)
        .build_threaded()
        .unwrap();
    let held = pool.get().unwrap();
    let p = pool.clone();
    let waiter = thread::spawn(move || p.get().map(|_| ()));
    eventually("queued", || pool.stats().waiting == 1);
    assert!(matches!(pool.get(), Err(GetError::TooManyWaiters)));
    drop(held);
    waiter.join().unwrap().unwrap();
}

#[test]
fn a_grant_racing_the_deadline_is_never_lost() {
    let fake = Fake::default();
    let c = Arc::clone(&fake.0);
    let pool: ThreadedConnectionPool<Fake> = Builder::new(fake)
        .min(1)
        .max(1)
        .timeout(Duration::from_millis(2))
        .build_threaded()
        .unwrap();
    let (mut served, mut timed_out) = (0, 0);
    for i in 0..200u64 {
        let held = pool.get().unwrap();
        thread::scope(|s| {
            let waiter = s.spawn(|| pool.get().map(|conn| conn.id));
            // Give the connection back around the waiter's deadline.
            thread::sleep(Duration::from_micros(1500 + (i % 10) * 100));
            drop(held);
            match waiter.join().unwrap() {
                Ok(_) => served += 1,
                Err(GetError::Timeout(None)) => timed_out += 1,
                Err(e) => panic!("{e:?}"),
            }
        });
        let stats = pool.stats();
        assert_eq!(
            (stats.in_use, stats.idle, stats.waiting),
            (0, 1, 0),
            "round {i}"
        );
    }
    assert_eq!(served + timed_out, 200);
    assert_eq!(c.get(&c.opens), 1, "never lost, never replaced");
}

/// A handle whose holder panicked mid-use is poisoned: its clones get a typed error rather than
/// carrying on inside that session, and the connection is reset, never reused as it was.
#[test]
fn a_handle_poisoned_by_a_panic_is_an_error_and_is_reset_on_return() {
    let (pool, c) = pool(1, 1);
    let conn = pool.getconn(None).unwrap();
    let theirs = conn.clone();
    let panicked = std::thread::spawn(move || {
        let mut guard = theirs.lock().unwrap();
        guard.dirty = false; // "clean" by its own account: the panic is what makes it suspect
        panic!("the borrower fails mid-transaction");
    })
    .join();
    assert!(panicked.is_err());
    assert!(matches!(conn.lock(), Err(LockError::Poisoned)));
    let resets = c.get(&c.resets);
    pool.putconn(conn, None, false).unwrap();
    eventually("the poisoned connection is reset", || {
        c.get(&c.resets) > resets
    });
    // The pool goes on with it, reset.
    let again = pool.get().unwrap();
    assert!(!again.dirty);
}

/// The build waits for `min` connections within a bound: a connect that hangs (an unreachable
/// host) ends the build in a timeout instead of hanging it, and the late connection is closed.
#[test]
fn the_build_does_not_hang_on_a_connect_that_hangs() {
    let (builder, c) = common::builder(1, 2);
    c.close_gate();
    let start = Instant::now();
    let err = builder
        .timeout(Duration::from_millis(200))
        .build_threaded()
        .unwrap_err();
    assert!(matches!(err, BuildError::Timeout(None)), "{err:?}");
    assert!(start.elapsed() < LONG, "the build hung");
    c.open_gate();
    eventually("the connection opened too late is closed", || {
        c.get(&c.opens) == 1 && c.live() == 0
    });
}

/// psycopg2's build: the first failed open is its error.
#[test]
fn the_build_fails_with_the_first_failed_open() {
    let (builder, c) = common::builder(2, 2);
    c.fail_connect.store(true, SeqCst);
    let err = builder.psycopg2().build_threaded().unwrap_err();
    match err {
        BuildError::Connect(e) => assert_eq!(e.0, "server down"),
        other => panic!("{other:?}"),
    }
}

/// Opens failing for good (bad credentials): a waiting checkout fails at once with the cause, not
/// after its whole timeout and a retry every backoff.
#[test]
fn a_permanent_connect_failure_fails_waiting_checkouts_at_once() {
    let (builder, c) = common::builder(0, 2);
    let pool: ThreadedConnectionPool<Fake> = builder
        .timeout(LONG)
        .backoff(Duration::from_millis(5), Duration::from_millis(5))
        .build_threaded()
        .unwrap();
    c.fail_connect.store(true, SeqCst);
    c.permanent.store(true, SeqCst);
    let start = Instant::now();
    match pool.get() {
        Err(GetError::Connect(e)) => assert_eq!(e.0, "server down"),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < LONG, "it waited its timeout");
    assert_eq!(
        c.get(&c.attempts),
        1,
        "no retry before failing the checkout"
    );
    // Fixed: the pool serves again.
    c.fail_connect.store(false, SeqCst);
    c.permanent.store(false, SeqCst);
    assert!(pool.get().is_ok());
}

/// psycopg2 mode opens `min` at build and never refills it on its own (psycopg2 opens only in its
/// constructor and on getconn): a broken return leaves one fewer open until a checkout needs it.
#[test]
fn psycopg2_mode_does_not_refill_min() {
    let (builder, c) = common::builder(2, 3);
    let pool: ThreadedConnectionPool<Fake> = builder.psycopg2().build_threaded().unwrap();
    assert_eq!(c.get(&c.opens), 2);
    pool.get().unwrap().broken = true;
    eventually("closed", || c.get(&c.closes) == 1);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(c.get(&c.opens), 2, "no refill");
    assert_eq!(pool.stats().idle, 1);
    let (a, b) = (pool.get().unwrap(), pool.get().unwrap());
    assert_eq!(c.get(&c.opens), 3, "opened for the checkout");
    drop((a, b));
}

/// `Fairness::Strict`: a connection given back while a checkout waits is handed to that waiter;
/// the thread that gave it back cannot take it again (it queues behind).
#[test]
fn strict_hands_a_returned_connection_to_the_waiter() {
    let (builder, _) = common::builder(1, 1);
    let pool = builder
        .timeout(LONG)
        .fairness(Fairness::Strict)
        .build()
        .unwrap();
    let held = pool.get().unwrap();
    let (tx, rx) = mpsc::channel();
    let p = pool.clone();
    let waiter = thread::spawn(move || {
        let conn = p.get().unwrap();
        rx.recv().unwrap();
        drop(conn);
    });
    eventually("waiter queued", || pool.stats().waiting == 1);
    drop(held);
    let err = pool.get_timeout(Duration::from_millis(5)).unwrap_err();
    assert!(matches!(err, GetError::Timeout(_)), "{err:?}");
    tx.send(()).unwrap();
    waiter.join().unwrap();
    assert!(pool.get().is_ok());
}

/// `Fairness::Bounded` (the default policy): the thread that gives a connection back takes it
/// again at once, ahead of the sleeping waiter it woke (no hand-off, no context switch), and the
/// waiter is served when the connection comes back.
#[test]
fn bounded_lets_a_running_thread_take_a_returned_connection_first() {
    let (builder, _) = common::builder(1, 1);
    let pool = builder
        .timeout(LONG)
        .fairness(Fairness::Bounded(LONG))
        .build()
        .unwrap();
    let held = pool.get().unwrap();
    let p = pool.clone();
    let waiter = thread::spawn(move || drop(p.get().unwrap()));
    eventually("waiter queued", || pool.stats().waiting == 1);
    // Asleep on its condvar: waking it takes a futex round trip, taking it back does not.
    thread::sleep(Duration::from_millis(20));
    drop(held);
    let again = pool.get().unwrap();
    assert_eq!(pool.stats().waiting, 1, "the waiter still waits");
    assert_eq!(pool.stats().waits, 0, "taken back without waiting");
    drop(again);
    waiter.join().unwrap();
    assert_eq!(pool.stats().waits, 1, "the waiter was served");
}

/// Leak detection: a guard forgotten with `mem::forget` keeps its connection for ever; past
/// `leak_after` it is reported once (`Stats::leaks`, and a `log` warning) by the maintenance
/// thread, with no call on the pool. A connection given back in time is not.
#[test]
fn a_forgotten_guard_is_reported_past_leak_after() {
    let (builder, _) = common::builder(0, 2);
    let pool = builder
        .timeout(LONG)
        .leak_after(Duration::from_millis(30))
        .build()
        .unwrap();
    let returned = pool.get().unwrap();
    std::mem::forget(pool.get().unwrap());
    drop(returned);
    eventually("the forgotten guard reported", || pool.stats().leaks == 1);
    thread::sleep(Duration::from_millis(100));
    let s = pool.stats();
    assert_eq!(
        (s.leaks, s.in_use),
        (1, 1),
        "reported once, and only that one"
    );
}
