//! What each async pool itself costs: sanspool-tokio, deadpool and bb8 over connections that are
//! plain numbers (no I/O, nothing to vet), in one process. What a pool adds to a real checkout
//! is measured here without a server's noise; on PostgreSQL (`vs_deadpool_bb8`) that cost is a
//! few percent of the client's CPU and within the noise of a shared machine.
//!
//! - 1 task, `get()` and drop in a loop, on a current-thread runtime: nanoseconds per checkout.
//! - 16 and 256 tasks sharing 4 connections on a multi-thread runtime: each checkout holds its
//!   connection across one `yield_now` (a stand-in for a query), so checkouts queue: checkouts
//!   per second.
//!
//! Every round builds each pool afresh and runs them one after the other, the first changing
//! from round to round; the ratio is to the better of deadpool and bb8 in the same round
//! (median and range over the rounds). Every pool is FIFO: sanspool-tokio with its defaults
//! (`Fairness::Strict`, `IdleOrder::Fifo`), deadpool's default queue, bb8's FIFO.
//!
//! `cargo bench -p sanspool-tokio --bench no_io` (`RUNS`: rounds; `OPS`: checkouts per run;
//! `TASKS`: the concurrencies, `1,16,256` by default; `POOLS`: which run, by name, all by
//! default;
//! `ONE_THREAD`: every row on a current-thread runtime — the pools' work without two threads
//! contending for it).

#[path = "../tests/numbers/mod.rs"]
mod numbers;
mod rounds;

use numbers::Numbers;
use sanspool_tests::bench::env;
use sanspool_tokio::Builder;
use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

const MAX: usize = 4;

impl deadpool::managed::Manager for Numbers {
    type Type = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(7)
    }

    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

impl bb8::ManageConnection for Numbers {
    type Connection = u64;
    type Error = Infallible;

    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(7)
    }

    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

#[derive(Clone)]
enum Pool {
    Sanspool(sanspool_tokio::Pool<Numbers>),
    Deadpool(deadpool::managed::Pool<Numbers>),
    Bb8(bb8::Pool<Numbers>),
}

const KINDS: [&str; 3] = ["sanspool-tokio", "deadpool", "bb8"];

impl Pool {
    async fn build(kind: &str) -> Pool {
        let pool = match kind {
            "sanspool-tokio" => Pool::Sanspool(
                Builder::new(Numbers)
                    .min(MAX)
                    .max(MAX)
                    .build()
                    .await
                    .expect("sanspool"),
            ),
            "deadpool" => Pool::Deadpool(
                deadpool::managed::Pool::builder(Numbers)
                    .max_size(MAX)
                    .build()
                    .expect("deadpool"),
            ),
            _ => Pool::Bb8(
                bb8::Pool::builder()
                    .max_size(MAX as u32)
                    .min_idle(Some(MAX as u32))
                    .test_on_check_out(false)
                    .queue_strategy(bb8::QueueStrategy::Fifo)
                    .build(Numbers)
                    .await
                    .expect("bb8"),
            ),
        };
        // Every pool holds its connections before anything is measured.
        {
            let held = futures_util::future::join_all((0..MAX).map(|_| pool.hold())).await;
            drop(held);
        }
        pool
    }

    /// A checkout, given back when the returned value is dropped.
    async fn hold(&self) -> Box<dyn Send + '_> {
        match self {
            Pool::Sanspool(p) => Box::new(p.get().await.expect("get")),
            Pool::Deadpool(p) => Box::new(p.get().await.expect("get")),
            Pool::Bb8(p) => Box::new(p.get().await.expect("get")),
        }
    }

    /// One checkout given back at once.
    async fn once(&self) {
        match self {
            Pool::Sanspool(p) => drop(black_box(p.get().await.expect("get"))),
            Pool::Deadpool(p) => drop(black_box(p.get().await.expect("get"))),
            Pool::Bb8(p) => drop(black_box(p.get().await.expect("get"))),
        }
    }

    /// One checkout held across a yield.
    async fn across_yield(&self) {
        match self {
            Pool::Sanspool(p) => {
                let c = p.get().await.expect("get");
                tokio::task::yield_now().await;
                drop(black_box(c));
            }
            Pool::Deadpool(p) => {
                let c = p.get().await.expect("get");
                tokio::task::yield_now().await;
                drop(black_box(c));
            }
            Pool::Bb8(p) => {
                let c = p.get().await.expect("get");
                tokio::task::yield_now().await;
                drop(black_box(c));
            }
        }
    }
}

/// Checkouts per second of `tasks` tasks sharing `ops` checkouts.
async fn run(pool: &Pool, tasks: usize, ops: usize) -> f64 {
    let per_task = (ops / tasks).max(1);
    if tasks == 1 {
        let t0 = Instant::now();
        for _ in 0..per_task {
            pool.once().await;
        }
        return per_task as f64 / t0.elapsed().as_secs_f64();
    }
    let (_, elapsed) = rounds::together(tasks, |_| {
        let pool = pool.clone();
        async move {
            for _ in 0..per_task {
                pool.across_yield().await;
            }
        }
    })
    .await;
    (per_task * tasks) as f64 / elapsed.as_secs_f64()
}

fn main() {
    // `cargo test` runs benches too (without `--bench`): then a quick pass proves they work.
    let measuring = std::env::args().any(|a| a == "--bench");
    let runs = if measuring { env("RUNS", 9) } else { 1 };
    let ops = if measuring { env("OPS", 200_000) } else { 512 };
    println!(
        "No I/O, max {MAX}; medians of {runs} rounds of {ops} checkouts, fresh pools each round"
    );
    println!("| tasks | pool | checkouts/s | ns per checkout | ratio to the better peer (range) |");
    println!("|---|---|---|---|---|");
    let kinds = rounds::chosen(&KINDS);
    for tasks in rounds::concurrencies() {
        let runtime = if tasks == 1 || std::env::var_os("ONE_THREAD").is_some() {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        }
        .enable_all()
        .build()
        .expect("runtime");
        let results: Vec<Vec<f64>> = runtime.block_on(async {
            let mut results = vec![Vec::new(); kinds.len()];
            for r in 0..runs {
                for i in rounds::order(r, kinds.len()) {
                    let pool = Pool::build(kinds[i]).await;
                    results[i].push(run(&pool, tasks, ops).await);
                }
            }
            results
        });
        let ratios = rounds::paired(&kinds, &results);
        for ((kind, per_sec), (ratio, low, high)) in kinds.iter().zip(&results).zip(ratios) {
            let mut sorted = per_sec.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            println!(
                "| {tasks} | {kind} | {median:.0} | {:.0} | {ratio:.2} ({low:.2}-{high:.2}) |",
                Duration::from_secs_f64(1.0 / median).as_nanos(),
            );
        }
    }
}
