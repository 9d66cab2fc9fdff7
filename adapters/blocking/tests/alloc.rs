//! Once a pool has served its first checkouts, a checkout and a return allocate nothing: served at
//! once, or queued and handed a connection (the parking slot is the thread's, reused; the drain's
//! buffer is the pool's, kept).
//!
//! The harness's counting allocator counts only on a thread that is armed: the maintenance
//! thread, I/O threads and the test harness are not counted.
//! The test also shows the counter is not blind: it moves for a deliberate `Vec`.

mod common;

use common::{builder, eventually, LONG};
use sanspool::Fairness;
use sanspool_tests::alloc::{counted, Counting};
use std::hint::black_box;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// parking_lot (the pool's lock) gives a thread its parking data the first time it sleeps on any
/// of its locks, once: done here, so that which round first meets a contended lock does not
/// matter.
fn park_once() {
    let (m, cv) = (parking_lot::Mutex::new(()), parking_lot::Condvar::new());
    let _ = cv.wait_for(&mut m.lock(), Duration::from_millis(1));
}

/// One test in this binary, so that no other test's pool runs meanwhile.
#[test]
fn checkouts_and_returns_allocate_nothing_once_warm() {
    assert_eq!(
        counted(|| drop(black_box(Vec::<u8>::with_capacity(8)))),
        1,
        "the counter counts"
    );
    park_once();
    // A return handed to the waiter by a grant; and, with a bound nobody reaches, by a wake and
    // the waiter's claim.
    for fairness in [Fairness::Strict, Fairness::Bounded(LONG)] {
        let rounds = hand_over_rounds(fairness);
        // The first round may grow the pool's queues and give the waiter's thread its slot;
        // later ones reuse them.
        assert_eq!(
            rounds[1..],
            [(0, 0), (0, 0)],
            "{fairness:?}: allocations per round (returner, waiter): {rounds:?}"
        );
    }
}

/// Three rounds of: the main thread holds the only connection, a waiter queues for it and is
/// handed it when it comes back, then checks out again (served at once). What each side
/// allocated per round.
fn hand_over_rounds(fairness: Fairness) -> Vec<(usize, usize)> {
    let (b, _) = builder(1, 1);
    let pool = b.timeout(LONG).fairness(fairness).build().expect("pool");
    let (to_waiter, go) = mpsc::channel::<()>();
    let (to_main, done) = mpsc::channel::<usize>();
    let rounds = thread::scope(|s| {
        let pool = &pool;
        s.spawn(move || {
            park_once();
            for _ in 0..3 {
                go.recv().expect("round");
                let n = counted(|| {
                    drop(black_box(pool.get().expect("handed over")));
                    drop(black_box(pool.get().expect("served at once")));
                });
                to_main.send(n).expect("main");
            }
        });
        let mut rounds = Vec::new();
        for _ in 0..3 {
            let held = pool.get().expect("idle");
            to_waiter.send(()).expect("waiter");
            eventually("the waiter queued", || pool.stats().waiting == 1);
            let returner = counted(|| drop(held));
            let waiter = done.recv().expect("round done");
            rounds.push((returner, waiter));
        }
        rounds
    });
    assert_eq!(pool.stats().checkouts, 9);
    rounds
}
