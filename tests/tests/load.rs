//! The threaded pool under load, waiting, and queueing, against a real server.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{backend_pid, connector, eventually, monitor};
use sanspool_postgres::{Builder, GetError, PgConnector, Pool};

const THREADS: usize = 32;
const CHECKOUTS: usize = 200;
const MAX: usize = 4;

/// 32 threads × 200 checkouts, each with a real query, through a pool of at most 4 connections;
/// a monitor samples the server-side count of the pool's backends all along.
#[test]
fn thirty_two_threads_share_four_connections() {
    let name = "load";
    let pool: Pool<PgConnector> = Builder::new(connector(name))
        .min(1)
        .max(MAX)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let monitor_thread = {
        let stop = Arc::clone(&stop);
        let mut mon = monitor(name);
        thread::spawn(move || {
            let (mut samples, mut most) = (0u64, 0i64);
            while !stop.load(Ordering::Relaxed) {
                most = most.max(mon.count());
                samples += 1;
            }
            (samples, most)
        })
    };

    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, done) = (pool.clone(), Arc::clone(&done));
            thread::spawn(move || {
                for i in 0..CHECKOUTS {
                    let mut conn = pool.get().expect("a checkout within the timeout");
                    let n = (t * CHECKOUTS + i) as i32;
                    let row = conn.query_one("SELECT $1::int4 + 1", &[&n]).unwrap();
                    assert_eq!(row.get::<_, i32>(0), n + 1);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker failed");
    }
    stop.store(true, Ordering::Relaxed);
    let (samples, most) = monitor_thread.join().unwrap();

    assert_eq!(done.load(Ordering::Relaxed), (THREADS * CHECKOUTS) as u64);
    assert!(samples > 0);
    assert!(
        (1..=MAX as i64).contains(&most),
        "the server saw {most} connections of a max = {MAX} pool ({samples} samples)"
    );
    let stats = pool.stats();
    assert_eq!(stats.checkouts, (THREADS * CHECKOUTS) as u64, "{stats:?}");
    assert!(stats.size <= MAX, "{stats:?}");
    assert_eq!(stats.timeouts, 0, "{stats:?}");
    assert!(
        stats.waits > 0,
        "with 32 threads on 4 connections, some waited"
    );
}

/// With its one connection held, a checkout waits its timeout and gets the typed error.
#[test]
fn a_waiter_times_out_with_a_typed_error() {
    let timeout = Duration::from_millis(200);
    let pool: Pool<PgConnector> = Builder::new(connector("timeout"))
        .min(1)
        .max(1)
        .timeout(timeout)
        .build()
        .unwrap();
    let _held = pool.get().unwrap();
    let started = Instant::now();
    let err = pool.get().unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, GetError::Timeout(None)), "{err:?}");
    assert_eq!(err.to_string(), "timed out waiting for a connection");
    assert!(waited >= timeout, "gave up early, after {waited:?}");
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    let stats = pool.stats();
    assert_eq!((stats.timeouts, stats.waiting), (1, 0), "{stats:?}");
}

/// Waiters queued one after another are served in their order of arrival.
#[test]
fn waiters_are_served_in_arrival_order() {
    const WAITERS: usize = 6;
    let pool: Pool<PgConnector> = Builder::new(connector("fair"))
        .min(1)
        .max(1)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut held = pool.get().unwrap();
    let pid = backend_pid(&mut held);
    let served = Arc::new(Mutex::new(Vec::new()));
    let waiters: Vec<_> = (0..WAITERS)
        .map(|i| {
            let (pool2, served) = (pool.clone(), Arc::clone(&served));
            let waiter = thread::spawn(move || {
                let mut conn = pool2.get().expect("served");
                // Recorded while holding the one connection: the order of grants.
                served.lock().unwrap().push(i);
                assert_eq!(backend_pid(&mut conn), pid);
            });
            // The next one starts only once this one is queued.
            eventually("the waiter to queue", || pool.stats().waiting == i + 1);
            waiter
        })
        .collect();
    drop(held);
    for waiter in waiters {
        waiter.join().expect("a waiter failed");
    }
    assert_eq!(*served.lock().unwrap(), (0..WAITERS).collect::<Vec<_>>());
    // And the first checkout, which waited for its idle connection's vet.
    assert_eq!(pool.stats().waits, WAITERS as u64 + 1);
}
