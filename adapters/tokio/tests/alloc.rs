//! Once a pool has served its first checkouts, a checkout and a return allocate nothing: served at
//! once, or queued and handed a connection (the queued checkout's slot comes back to the pool
//! with its guard and is reused; the table of waiting checkouts keeps its room).
//!
//! The harness's counting allocator counts only on a thread that is armed. Everything measured
//! runs in one task on a current-thread runtime, two checkouts joined in it (no task is spawned),
//! so nothing else is counted. The test also shows the counter is not blind: it moves for a
//! deliberate `Vec`.

mod numbers;

use numbers::Numbers;
use sanspool_tests::alloc::{self, Counting};
use sanspool_tokio::{Builder, Fairness};
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations this thread makes while `f` runs to completion on `runtime`. Counting
/// starts after a first yield: `block_on` makes its own waker the first time its future waits.
fn counted<F: std::future::Future>(runtime: &tokio::runtime::Runtime, f: F) -> usize {
    runtime.block_on(async {
        tokio::task::yield_now().await;
        alloc::start();
        f.await;
        alloc::stop()
    })
}

/// One checkout served at once, then one that queues behind it and is handed the connection
/// when the first is dropped. Asserts that the second did wait.
async fn round(pool: &sanspool_tokio::Pool<Numbers>) {
    let first = async {
        let held = pool.get().await.expect("an idle connection");
        // Lets the second checkout queue behind this one.
        tokio::task::yield_now().await;
        drop(held);
    };
    let second = async {
        let got = pool.get().await.expect("handed over");
        drop(black_box(got));
    };
    let waits = pool.stats().waits;
    tokio::join!(first, second);
    assert_eq!(pool.stats().waits, waits + 1, "the second checkout queued");
}

/// One test in this binary, so that no other test runs (and allocates) meanwhile.
#[test]
fn checkouts_and_returns_allocate_nothing_once_warm() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert_eq!(
        counted(&runtime, async {
            drop(black_box(Vec::<u8>::with_capacity(8)))
        }),
        1,
        "the counter counts"
    );
    // Handed to the waiter by a grant (strict); and, with a bound nobody reaches, by a wake and
    // the waiter's claim.
    for fairness in [
        Fairness::Strict,
        Fairness::Bounded(Duration::from_secs(3600)),
    ] {
        let pool = runtime.block_on(async {
            Builder::new(Numbers)
                .min(1)
                .max(1)
                .fairness(fairness)
                .build()
                .await
                .expect("pool")
        });
        // The first rounds size the pool's tables and make its first slot.
        for _ in 0..2 {
            runtime.block_on(round(&pool));
        }
        let allocs = counted(&runtime, async {
            for _ in 0..100 {
                round(&pool).await;
            }
        });
        assert_eq!(allocs, 0, "{fairness:?}: allocations in 100 warm rounds");
        runtime.block_on(async { pool.close().await.expect("close") });
    }
}
