//! The tokio pool beside deadpool-postgres and bb8-postgres on a real PostgreSQL (the harness's
//! throwaway server, or `SANSPOOL_TEST_DSN`), in one process on a multi-thread runtime:
//! `SELECT 1` per checkout, max 4 connections, 1, 16 and 256 concurrent tasks. Runs of the
//! pools alternate; figures are medians over the runs: throughput (checkouts per second), the
//! wait for a connection (p99, max), and what this process spent per checkout: CPU time and
//! context switches (getrusage, so the server's processes are not counted; on a machine where
//! the server shares the cores, that CPU is the server's loss). The ratio is to the better of
//! deadpool and bb8. sanspool-tokio runs twice: with its defaults (`Fairness::Strict`: every
//! return handed to the oldest waiter; `IdleOrder::Fifo`) and with the core's default
//! `Fairness::Bounded` (a running task may take a returned connection ahead of waiters until the
//! oldest has waited the bound, 0.7 ms; the blocking pool's default).
//!
//! Like for like: every pool keeps 4 connections and vets a returned one without a round trip
//! (deadpool's `RecyclingMethod::Fast`, bb8 with `test_on_check_out(false)`; bb8's default
//! would add a query per checkout).
//!
//! `cargo bench -p sanspool-tokio --bench vs_deadpool_bb8` (`RUNS`; `OPS`: checkouts per run;
//! `TASKS`: the concurrencies, `1,16,256` by default; `POOLS`: which pools run, by name, all by
//! default, e.g. `deadpool-postgres` — for profiling one alone).

use bb8_postgres::PostgresConnectionManager;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use sanspool_tests::bench::{env, median_by, ms, Waits};
use sanspool_tokio::postgres::{tokio_postgres, PgConnector, PgPool};
use sanspool_tokio::{Builder, Fairness};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

const MAX: usize = 4;

#[derive(Clone)]
enum Pool {
    Sanspool(PgPool),
    SanspoolBounded(PgPool),
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<PostgresConnectionManager<NoTls>>),
}

impl Pool {
    fn name(&self) -> &'static str {
        match self {
            Pool::Sanspool(_) => "sanspool-tokio",
            Pool::SanspoolBounded(_) => "sanspool-tokio-bounded",
            Pool::Deadpool(_) => "deadpool-postgres",
            Pool::Bb8(_) => "bb8-postgres",
        }
    }

    /// One checkout: how long it waited for the connection; then `SELECT 1`, then give it back.
    async fn one(&self) -> Duration {
        let t0 = Instant::now();
        match self {
            Pool::Sanspool(p) | Pool::SanspoolBounded(p) => {
                let conn = p.get().await.expect("sanspool get");
                let waited = t0.elapsed();
                conn.simple_query("SELECT 1").await.expect("SELECT 1");
                waited
            }
            Pool::Deadpool(p) => {
                let conn = p.get().await.expect("deadpool get");
                let waited = t0.elapsed();
                conn.simple_query("SELECT 1").await.expect("SELECT 1");
                waited
            }
            Pool::Bb8(p) => {
                let conn = p.get().await.expect("bb8 get");
                let waited = t0.elapsed();
                conn.simple_query("SELECT 1").await.expect("SELECT 1");
                waited
            }
        }
    }
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
struct Run {
    waits: Waits,
    /// This process's CPU time per checkout, in microseconds.
    cpu_us: f64,
    /// This process's context switches per checkout.
    switches: f64,
}

/// This process's CPU time (user and system) and context switches so far.
fn usage() -> (Duration, u64) {
    // SAFETY: getrusage writes only the struct it is given.
    let ru = unsafe {
        let mut ru = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let switches = (ru.ru_nvcsw + ru.ru_nivcsw) as u64;
    (tv(ru.ru_utime) + tv(ru.ru_stime), switches)
}

/// `tasks` tasks sharing `ops` checkouts, started together.
async fn run(pool: &Pool, tasks: usize, ops: usize) -> Run {
    let per_task = (ops / tasks).max(1);
    let start = Arc::new(tokio::sync::Barrier::new(tasks + 1));
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (pool, start) = (pool.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                let mut waits = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    waits.push(pool.one().await);
                }
                waits
            })
        })
        .collect();
    start.wait().await;
    let t0 = Instant::now();
    let (cpu0, sw0) = usage();
    let mut waits = Vec::new();
    for w in workers {
        waits.extend(w.await.expect("worker"));
    }
    let elapsed = t0.elapsed();
    let (cpu1, sw1) = usage();
    let n = waits.len() as f64;
    Run {
        waits: Waits::of(waits, elapsed),
        cpu_us: (cpu1 - cpu0).as_secs_f64() * 1e6 / n,
        switches: (sw1 - sw0) as f64 / n,
    }
}

/// Each figure's median over `runs`.
fn median(runs: Vec<Run>) -> Run {
    let waits: Vec<Waits> = runs.iter().map(|r| r.waits).collect();
    Run {
        waits: Waits::median(&waits),
        cpu_us: median_by(&runs, |r| r.cpu_us).cpu_us,
        switches: median_by(&runs, |r| r.switches).switches,
    }
}

fn main() {
    // `cargo test` runs benches too (without `--bench`): then a quick pass proves they work.
    let measuring = std::env::args().any(|a| a == "--bench");
    let runs = if measuring { env("RUNS", 5) } else { 1 };
    let ops = if measuring { env("OPS", 8192) } else { 256 };
    let dsn = sanspool_tests::shared_dsn();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(&dsn, runs, ops));
}

async fn bench(dsn: &str, runs: usize, ops: usize) {
    let config: tokio_postgres::Config = dsn.parse().expect("the harness gives a valid DSN");
    let sanspool = |fairness: Option<Fairness>| async move {
        let builder = Builder::new(PgConnector::new(dsn).expect("connector"))
            .min(MAX)
            .max(MAX)
            .timeout(Duration::from_secs(60));
        match fairness {
            Some(fairness) => builder.fairness(fairness),
            None => builder,
        }
        .build()
        .await
        .expect("sanspool pool")
    };
    let ours = sanspool(None).await;
    let bounded = sanspool(Some(Fairness::default())).await;
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let deadpool = deadpool_postgres::Pool::builder(manager)
        .max_size(MAX)
        .build()
        .expect("deadpool");
    let bb8 = bb8::Pool::builder()
        .max_size(MAX as u32)
        .min_idle(Some(MAX as u32))
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(60))
        .build(PostgresConnectionManager::new(config, NoTls))
        .await
        .expect("bb8");
    let only = std::env::var("POOLS").ok();
    let pools: Vec<Pool> = [
        Pool::Sanspool(ours),
        Pool::SanspoolBounded(bounded),
        Pool::Deadpool(deadpool),
        Pool::Bb8(bb8),
    ]
    .into_iter()
    .filter(|p| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|n| p.name() == n.trim()))
    })
    .collect();
    // Every pool opens its 4 connections before anything is measured.
    for pool in &pools {
        run(pool, 16, 256).await;
    }

    println!(
        "SELECT 1 per checkout, max {MAX}, multi-thread runtime ({} workers); medians of {runs} \
         runs of {ops} checkouts",
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    println!(
        "| tasks | pool | checkouts/s | ratio to best other | p99 wait ms | max wait ms | \
         CPU µs/checkout | switches/checkout |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let counts: Vec<usize> = std::env::var("TASKS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 256]);
    for tasks in counts {
        let mut results: Vec<Vec<Run>> = vec![Vec::new(); pools.len()];
        for r in 0..runs {
            // Alternate which pool goes first.
            for k in 0..pools.len() {
                let i = (k + r) % pools.len();
                results[i].push(run(&pools[i], tasks, ops).await);
            }
        }
        let medians: Vec<Run> = results.into_iter().map(median).collect();
        let best_other = pools
            .iter()
            .zip(&medians)
            .filter(|(p, _)| !matches!(p, Pool::Sanspool(_) | Pool::SanspoolBounded(_)))
            .map(|(_, m)| m.waits.per_sec)
            .fold(f64::NAN, f64::max);
        for (pool, m) in pools.iter().zip(&medians) {
            println!(
                "| {tasks} | {} | {:.0} | {:.2} | {:.3} | {:.3} | {:.2} | {:.3} |",
                pool.name(),
                m.waits.per_sec,
                m.waits.per_sec / best_other,
                ms(m.waits.p99),
                ms(m.waits.max),
                m.cpu_us,
                m.switches
            );
        }
    }
    for pool in &pools {
        if let Pool::Sanspool(p) | Pool::SanspoolBounded(p) = pool {
            let s = p.stats();
            // Clean returns are judged from the tracked status: no reset, no round trip.
            println!(
                "{}: {} checkouts ({} waited), {} resets, {} opens",
                pool.name(),
                s.checkouts,
                s.waits,
                s.resets,
                s.opens
            );
        }
    }
}
