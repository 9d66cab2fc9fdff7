//! The threaded pool beside r2d2 in one process: `get()` and drop, max 4 connections, a
//! connector that does no I/O, at 1, 2, 4, 8 and 16 threads; r2d2 with `test_on_check_out(false)`,
//! so that neither pool vets a checkout. Runs of both pools alternate; each
//! figure is the median of the runs' wall time per operation (total ops over all threads); the
//! last column is the share of sanspool's checkouts that queued over the runs.
//!
//! `cargo bench -p sanspool --bench vs_r2d2` (`RUNS`, `OPS` to change the sizes,
//! `THREADS` to run one thread count, `ONLY=sanspool` or `ONLY=r2d2` to run one pool: for
//! `valgrind --tool=callgrind`, whose instruction counts, unlike times, repeat on a busy machine).

use sanspool::{Connector, Pool, Returned};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// No I/O: a connection is a number.
struct NoIo;

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

impl Connector for NoIo {
    type Conn = u32;
    type Error = Never;
    fn connect(&self) -> Result<u32, Never> {
        Ok(0)
    }
    fn state(&self, _: &mut u32) -> Returned {
        Returned::Clean
    }
    fn reset(&self, _: &mut u32) -> Result<(), Never> {
        Ok(())
    }
    fn check(&self, _: &mut u32) -> Result<(), Never> {
        Ok(())
    }
}

impl r2d2::ManageConnection for NoIo {
    type Connection = u32;
    type Error = Never;
    fn connect(&self) -> Result<u32, Never> {
        Ok(0)
    }
    fn is_valid(&self, _: &mut u32) -> Result<(), Never> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u32) -> bool {
        false
    }
}

const MAX: usize = 4;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Wall time per operation of `threads` threads doing `ops` get+drop each: from the first
/// thread's start to the last one's end, as the threads read the clock (the main thread may be
/// descheduled between the barrier and a clock read of its own, and then time nothing).
fn run(threads: usize, ops: usize, get: Arc<dyn Fn() + Send + Sync>) -> f64 {
    let start = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (start, get) = (Arc::clone(&start), Arc::clone(&get));
            thread::spawn(move || {
                start.wait();
                let t0 = Instant::now();
                for _ in 0..ops {
                    get();
                }
                (t0, Instant::now())
            })
        })
        .collect();
    let spans: Vec<_> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    let first = spans.iter().map(|s| s.0).min().expect("a thread");
    let last = spans.iter().map(|s| s.1).max().expect("a thread");
    last.duration_since(first).as_nanos() as f64 / (threads * ops) as f64
}

/// The median; NaN for a pool that did not run (`ONLY`).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    // `cargo test` runs benches too (without `--bench`): then a quick pass proves they work.
    let measuring = std::env::args().any(|a| a == "--bench");
    let runs = if measuring { env("RUNS", 5) } else { 1 };
    let ops = if measuring {
        env("OPS", 100_000)
    } else {
        1_000
    };
    let ours = Pool::builder(NoIo)
        .min(MAX)
        .max(MAX)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("sanspool pool");
    // Equal work: sanspool vets nothing on checkout by default, so neither does r2d2 (its
    // default `test_on_check_out(true)` calls `is_valid` on every checkout).
    let theirs = r2d2::Pool::builder()
        .max_size(MAX as u32)
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(30))
        .build(NoIo)
        .expect("r2d2 pool");
    let stats = ours.clone();
    let ours: Arc<dyn Fn() + Send + Sync> =
        Arc::new(move || drop(black_box(ours.get().expect("sanspool get"))));
    let theirs: Arc<dyn Fn() + Send + Sync> =
        Arc::new(move || drop(black_box(theirs.get().expect("r2d2 get"))));
    println!("get() + drop, max {MAX}, no I/O; median of {runs} runs of {ops} ops per thread");
    println!("| threads | r2d2 ns/op | sanspool ns/op | ratio | sanspool checkouts queued |");
    println!("|---|---|---|---|---|");
    let only: Option<usize> = std::env::var("THREADS").ok().and_then(|v| v.parse().ok());
    let pool_only = std::env::var("ONLY").ok();
    for threads in [1, 2, 4, 8, 16] {
        if only.is_some_and(|t| t != threads) {
            continue;
        }
        let ops = (ops / threads).max(if measuring { 1000 } else { 10 });
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let before = stats.stats();
        for _ in 0..runs {
            if pool_only.as_deref() != Some("sanspool") {
                b.push(run(threads, ops, Arc::clone(&theirs)));
            }
            if pool_only.as_deref() != Some("r2d2") {
                a.push(run(threads, ops, Arc::clone(&ours)));
            }
        }
        let (a, b) = (median(a), median(b));
        // The share of sanspool's checkouts that queued: a run where some do is slower (while
        // one waits, every checkout and checkin reads the clock and runs the fairness rules).
        let after = stats.stats();
        let queued = (after.waits - before.waits) as f64
            / (after.checkouts - before.checkouts).max(1) as f64;
        println!(
            "| {threads} | {b:.0} | {a:.0} | {:.2} | {:.2}% |",
            a / b,
            queued * 100.0
        );
    }
}
