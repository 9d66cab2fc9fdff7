//! The threaded pool beside r2d2_postgres and a dedicated connection, on a real PostgreSQL (the
//! harness's throwaway server, or `SANSPOOL_TEST_DSN`), in one process: `SELECT 1` per checkout,
//! max 4 connections, 1 to 16 threads; the pool with its default fairness and with
//! `Fairness::Strict` (`BOUND_US` sets the bound measured). Runs of the pools alternate; figures
//! are medians over the runs: throughput (checkouts per second) and the wait for a connection
//! (p99, max).
//!
//! `cargo bench -p sanspool-tests --bench vs_r2d2_pg` (`RUNS`, `OPS` per thread, `THREADS`: the
//! thread counts, e.g. `1,16`). Run with every thread count, it also writes `docs/bench-pg.svg`:
//! throughput and p99 wait against threads, the chart the README shows.

use r2d2_postgres::PostgresConnectionManager;
use sanspool_postgres::postgres::{Client, Config, NoTls};
use sanspool_postgres::{Fairness, PgConnector, Pool};
use sanspool_tests::bench::{env, ms, Waits};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const MAX: usize = 4;

/// `threads` threads each doing `ops` times: wait for a connection, `SELECT 1`, give it back.
fn run(threads: usize, ops: usize, one: Arc<dyn Fn() -> Duration + Send + Sync>) -> Waits {
    let start = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (start, one) = (Arc::clone(&start), Arc::clone(&one));
            thread::spawn(move || {
                start.wait();
                (0..ops).map(|_| one()).collect::<Vec<_>>()
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let waits: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    Waits::of(waits, t0.elapsed())
}

fn main() {
    // `cargo test` runs benches too (without `--bench`): then a quick pass proves they work,
    // and the chart is left alone.
    let measuring = std::env::args().any(|a| a == "--bench");
    let runs = if measuring { env("RUNS", 3) } else { 1 };
    let ops = if measuring { env("OPS", 400) } else { 10 };
    let dsn = sanspool_tests::shared_dsn();
    let config: Config = dsn.parse().expect("the harness gives a valid DSN");

    // `BOUND_US`: the fairness bound to measure (default: the pool's default, 0.7 ms).
    let fairness = match std::env::var("BOUND_US").ok().and_then(|v| v.parse().ok()) {
        Some(us) => Fairness::Bounded(Duration::from_micros(us)),
        None => Fairness::default(),
    };
    let pool = |fairness| {
        Pool::<PgConnector>::builder(PgConnector::from_config(config.clone()))
            .min(MAX)
            .max(MAX)
            .timeout(Duration::from_secs(60))
            .fairness(fairness)
            .build()
            .expect("sanspool pool")
    };
    let (ours, strict) = (pool(fairness), pool(Fairness::Strict));
    let theirs = r2d2::Pool::builder()
        .max_size(MAX as u32)
        .connection_timeout(Duration::from_secs(60))
        .build(PostgresConnectionManager::new(config.clone(), NoTls))
        .expect("r2d2 pool");
    let select = |pool: Pool<PgConnector>| -> Arc<dyn Fn() -> Duration + Send + Sync> {
        Arc::new(move || {
            let t0 = Instant::now();
            let mut conn = pool.get().expect("sanspool get");
            let waited = t0.elapsed();
            conn.simple_query("SELECT 1").expect("SELECT 1");
            waited
        })
    };
    let (ours, strict) = (select(ours), select(strict));
    let theirs: Arc<dyn Fn() -> Duration + Send + Sync> = Arc::new(move || {
        let t0 = Instant::now();
        let mut conn = theirs.get().expect("r2d2 get");
        let waited = t0.elapsed();
        conn.simple_query("SELECT 1").expect("SELECT 1");
        waited
    });

    // One client of its own, open for the whole bench like the pools' connections: a fresh
    // server process answers its first queries slower (cold caches), which is not what is measured.
    let client: Client = config.connect(NoTls).expect("a dedicated connection");
    let client = std::sync::Mutex::new(client);
    let dedicated: Arc<dyn Fn() -> Duration + Send + Sync> = Arc::new(move || {
        let mut c = client.lock().expect("one thread");
        c.simple_query("SELECT 1").expect("SELECT 1");
        Duration::ZERO
    });
    // Every pool opens its connections, and every server process warms up, before anything is
    // measured.
    for f in [&theirs, &ours, &strict] {
        run(16, ops.min(100), Arc::clone(f));
    }
    run(1, ops.min(500), Arc::clone(&dedicated));

    println!(
        "SELECT 1 per checkout, max {MAX}; medians of {runs} runs of {ops} checkouts per thread"
    );
    println!("| threads | pool | checkouts/s | ratio to r2d2 | p99 wait ms | max wait ms |");
    println!("|---|---|---|---|---|---|");
    let mut chart = Vec::new();
    // `THREADS`: the thread counts to run (`1,16`), all by default.
    let counts: Vec<usize> = std::env::var("THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8, 16]);
    for threads in counts {
        let (mut a, mut b, mut d, mut s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            b.push(run(threads, ops, Arc::clone(&theirs)));
            a.push(run(threads, ops, Arc::clone(&ours)));
            s.push(run(threads, ops, Arc::clone(&strict)));
            if threads == 1 {
                d.push(run(1, ops, Arc::clone(&dedicated)));
            }
        }
        let (a, b, s) = (Waits::median(&a), Waits::median(&b), Waits::median(&s));
        chart.push((threads, a, b));
        let rows = [
            ("r2d2_postgres", b),
            ("sanspool", a),
            ("sanspool, Fairness::Strict", s),
        ];
        for (name, r) in rows {
            println!(
                "| {threads} | {name} | {:.0} | {:.2} | {:.2} | {:.2} |",
                r.per_sec,
                r.per_sec / b.per_sec,
                ms(r.p99),
                ms(r.max)
            );
        }
        if !d.is_empty() {
            let d = Waits::median(&d);
            println!(
                "| 1 | dedicated connection | {:.0} | {:.2} | - | - |",
                d.per_sec,
                d.per_sec / b.per_sec
            );
        }
    }
    // A chart of some thread counts only would replace the whole one.
    if !measuring || std::env::var_os("THREADS").is_some() {
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/bench-pg.svg");
    match std::fs::write(path, svg(&chart)) {
        Ok(()) => println!("chart: docs/bench-pg.svg"),
        Err(e) => println!("chart not written: {e}"),
    }
}

/// A chart panel: its title and the figure it plots.
type Panel = (&'static str, fn(&Waits) -> f64);

/// Two panels, checkouts per second and p99 wait against threads (log scale), sanspool against
/// r2d2_postgres; an SVG written by hand.
fn svg(points: &[(usize, Waits, Waits)]) -> String {
    const W: f64 = 360.0;
    const H: f64 = 220.0;
    let x = |threads: usize| 50.0 + (threads as f64).log2() / 4.0 * (W - 70.0);
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' font-size='11'>\n",
        2.0 * W,
        H + 30.0
    );
    let panels: [Panel; 2] = [
        ("checkouts per second", |r| r.per_sec),
        ("p99 wait for a connection (ms)", |r| ms(r.p99)),
    ];
    for (i, (title, value)) in panels.iter().enumerate() {
        let dx = i as f64 * W;
        let top = points
            .iter()
            .flat_map(|(_, a, b)| [value(a), value(b)])
            .fold(f64::MIN_POSITIVE, f64::max)
            * 1.1;
        let y = |v: f64| H - 20.0 - v / top * (H - 50.0);
        out += &format!("<g transform='translate({dx},0)'>\n<text x='50' y='16'>{title}</text>\n");
        out += &format!(
            "<line x1='50' y1='{0}' x2='{1}' y2='{0}' stroke='black'/><line x1='50' y1='30' x2='50' y2='{0}' stroke='black'/>\n",
            H - 20.0,
            W - 20.0
        );
        out += &format!(
            "<text x='4' y='34'>{top:.0}</text><text x='36' y='{}'>0</text>\n",
            H - 20.0
        );
        for &(threads, _, _) in points {
            out += &format!(
                "<text x='{}' y='{}' text-anchor='middle'>{threads}</text>\n",
                x(threads),
                H - 6.0
            );
        }
        for (k, (name, colour)) in [("sanspool", "#1f77b4"), ("r2d2_postgres", "#d62728")]
            .iter()
            .enumerate()
        {
            let line: Vec<String> = points
                .iter()
                .map(|(t, a, b)| {
                    format!("{:.1},{:.1}", x(*t), y(value(if k == 0 { a } else { b })))
                })
                .collect();
            out += &format!(
                "<polyline fill='none' stroke='{colour}' stroke-width='2' points='{}'/>\n<text x='{}' y='{}' fill='{colour}'>{name}</text>\n",
                line.join(" "),
                W - 130.0,
                40.0 + 14.0 * k as f64
            );
        }
        out += "</g>\n";
    }
    out += &format!("<text x='{}' y='{}' text-anchor='middle'>threads (max 4 connections, SELECT 1 per checkout)</text>\n</svg>\n", W, H + 22.0);
    out
}
