//! The tokio pool beside deadpool-postgres and bb8-postgres on a real PostgreSQL (the harness's
//! throwaway server, or `SANSPOOL_TEST_DSN`), in one process on a multi-thread runtime:
//! `SELECT 1` per checkout, max 4 connections, 1, 16 and 256 concurrent tasks.
//!
//! Each round builds every pool afresh (new connections: new server processes, new driver tasks)
//! and runs them one after the other, the first changing from round to round: on this project's
//! 2-core machine one long-lived pool measured 18 000 to 27 000 checkouts/s at 1 task from one
//! process to the next, whichever pool it was. Figures: throughput (checkouts per second); its
//! ratio to the better of deadpool and bb8 in the same round, median and range over the rounds;
//! the wait for a connection (p99, max); and what this process spent per checkout: CPU time and
//! context switches (getrusage, so the server's processes are not counted; where the server
//! shares the cores, that CPU is the server's loss). Medians over the rounds.
//!
//! sanspool-tokio runs twice: with its defaults (`Fairness::Strict`: every return handed to the
//! oldest waiter; `IdleOrder::Fifo`) and with the core's default `Fairness::Bounded` (a running
//! task may take a returned connection ahead of waiters until the oldest has waited the bound,
//! 0.7 ms, the blocking pool's default; `BOUND_US` measures another). At 1 task a row without a
//! pool, `dedicated` (`MAX` plain clients taken in turn), gives the ceiling: no pool can be
//! faster than no pool.
//!
//! Like for like: every pool keeps 4 connections and vets a returned one without a round trip
//! (deadpool's `RecyclingMethod::Fast`, bb8 with `test_on_check_out(false)`; bb8's default
//! would add a query per checkout).
//!
//! `cargo bench -p sanspool-tokio --bench vs_deadpool_bb8` (`RUNS`: rounds; `OPS`: checkouts
//! per run; `TASKS`: the concurrencies, `1,16,256` by default; `POOLS`: which run, by name, all
//! by default, e.g. `deadpool-postgres` for profiling one alone; `EACH`: print every run).

mod rounds;

use bb8_postgres::PostgresConnectionManager;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use sanspool_tests::bench::{env, median_by, ms, usage, Waits};
use sanspool_tokio::postgres::{tokio_postgres, PgConnector};
use sanspool_tokio::{Builder, Fairness};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

const MAX: usize = 4;

#[derive(Clone)]
enum Pool {
    Sanspool(sanspool_tokio::Pool<PgConnector>),
    SanspoolBounded(sanspool_tokio::Pool<PgConnector>),
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<PostgresConnectionManager<NoTls>>),
    /// No pool: `MAX` plain clients taken in turn by the one task (the ceiling at 1 task).
    Dedicated(Arc<Dedicated>),
}

struct Dedicated {
    clients: Vec<tokio_postgres::Client>,
    next: AtomicUsize,
}

impl Pool {
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
            Pool::Dedicated(d) => {
                let i = d.next.fetch_add(1, Ordering::Relaxed) % d.clients.len();
                let waited = t0.elapsed();
                let conn = &d.clients[i];
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

/// `tasks` tasks sharing `ops` checkouts, started together.
async fn run(pool: &Pool, tasks: usize, ops: usize) -> Run {
    let per_task = (ops / tasks).max(1);
    // (The spawns count in the CPU figure too: a few nanoseconds per checkout.)
    let (cpu0, sw0) = usage();
    let (waits, elapsed) = rounds::together(tasks, |_| {
        let pool = pool.clone();
        async move {
            let mut waits = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                waits.push(pool.one().await);
            }
            waits
        }
    })
    .await;
    let (cpu1, sw1) = usage();
    let waits: Vec<Duration> = waits.into_iter().flatten().collect();
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
    let runs = if measuring { env("RUNS", 7) } else { 1 };
    let ops = if measuring { env("OPS", 32768) } else { 256 };
    let dsn = sanspool_tests::shared_dsn();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench(&dsn, runs, ops));
}

/// The pools measured, by name (`POOLS`: only those named).
const KINDS: [&str; 5] = [
    "sanspool-tokio",
    "sanspool-tokio-bounded",
    "deadpool-postgres",
    "bb8-postgres",
    "dedicated",
];

/// A fresh pool of kind `name` with its `MAX` connections open.
async fn build(name: &str, dsn: &str, bound: Fairness) -> Pool {
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
    let pool = match name {
        "sanspool-tokio" => Pool::Sanspool(sanspool(None).await),
        "sanspool-tokio-bounded" => Pool::SanspoolBounded(sanspool(Some(bound)).await),
        "deadpool-postgres" => {
            let manager = Manager::from_config(
                config,
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::Deadpool(
                deadpool_postgres::Pool::builder(manager)
                    .max_size(MAX)
                    .build()
                    .expect("deadpool"),
            )
        }
        "dedicated" => {
            let mut clients = Vec::new();
            for _ in 0..MAX {
                let (client, connection) = config.connect(NoTls).await.expect("connect");
                tokio::spawn(connection);
                clients.push(client);
            }
            let next = AtomicUsize::new(0);
            Pool::Dedicated(Arc::new(Dedicated { clients, next }))
        }
        _ => Pool::Bb8(
            bb8::Pool::builder()
                .max_size(MAX as u32)
                .min_idle(Some(MAX as u32))
                .test_on_check_out(false)
                .connection_timeout(Duration::from_secs(60))
                .build(PostgresConnectionManager::new(config, NoTls))
                .await
                .expect("bb8"),
        ),
    };
    // Every pool has its 4 connections open, and used, before anything is measured.
    run(&pool, if name == "dedicated" { 1 } else { 16 }, 256).await;
    pool
}

async fn bench(dsn: &str, runs: usize, ops: usize) {
    // `BOUND_US`: the bound measured (default: the core's default).
    let bound = match std::env::var("BOUND_US").ok().and_then(|v| v.parse().ok()) {
        Some(us) => Fairness::Bounded(Duration::from_micros(us)),
        None => Fairness::default(),
    };
    let kinds = rounds::chosen(&KINDS);
    println!(
        "SELECT 1 per checkout, max {MAX}, multi-thread runtime ({} workers); medians of {runs} \
         runs of {ops} checkouts, each run on fresh pools",
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    println!(
        "| tasks | pool | checkouts/s | ratio to the better peer (range) | p99 wait ms | \
         max wait ms | CPU µs/checkout | switches/checkout |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut stats = Vec::new();
    // `EACH`: print every run's figures too.
    let each = std::env::var_os("EACH").is_some();
    for tasks in rounds::concurrencies() {
        // Plain clients shared by many tasks would pipeline: no pool's semantics.
        let kinds: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|k| tasks == 1 || *k != "dedicated")
            .collect();
        let mut results: Vec<Vec<Run>> = vec![Vec::new(); kinds.len()];
        for r in 0..runs {
            // Fresh pools each round (see the top); which goes first changes.
            for i in rounds::order(r, kinds.len()) {
                let pool = build(kinds[i], dsn, bound).await;
                let one = run(&pool, tasks, ops).await;
                if each {
                    let w = one.waits;
                    let (p99, max) = (ms(w.p99), ms(w.max));
                    println!(
                        "  run {r}: {tasks} {}: {:.0}/s p99 {p99:.3} max {max:.3}",
                        kinds[i], w.per_sec
                    );
                }
                results[i].push(one);
                if let Pool::Sanspool(p) | Pool::SanspoolBounded(p) = &pool {
                    stats.push((kinds[i], p.stats()));
                }
            }
        }
        let per_sec: Vec<Vec<f64>> = results
            .iter()
            .map(|runs| runs.iter().map(|r| r.waits.per_sec).collect())
            .collect();
        let ratios = rounds::paired(&kinds, &per_sec);
        for ((kind, runs), (ratio, low, high)) in kinds.iter().zip(results).zip(ratios) {
            let m = median(runs);
            println!(
                "| {tasks} | {kind} | {:.0} | {:.2} ({:.2}-{:.2}) | {:.3} | {:.3} | {:.2} | {:.3} |",
                m.waits.per_sec,
                ratio,
                low,
                high,
                ms(m.waits.p99),
                ms(m.waits.max),
                m.cpu_us,
                m.switches
            );
        }
    }
    // Clean returns are judged from the tracked status: no reset, no round trip.
    for kind in ["sanspool-tokio", "sanspool-tokio-bounded"] {
        let mine = stats.iter().filter(|(k, _)| *k == kind);
        let (mut checkouts, mut waits, mut resets) = (0, 0, 0);
        for (_, s) in mine {
            (checkouts, waits, resets) =
                (checkouts + s.checkouts, waits + s.waits, resets + s.resets);
        }
        if checkouts > 0 {
            println!("{kind}: {checkouts} checkouts ({waits} waited), {resets} resets");
        }
    }
}
