//! The threaded pool beside r2d2_postgres on a real PostgreSQL (the harness's throwaway server, or
//! `SANSPOOL_TEST_DSN`), in one process: `SELECT 1` per checkout, the waits for a connection
//! measured, at thread counts that oversubscribe the pool differently.
//!
//! Equal work: the peer is r2d2 with `test_on_check_out(false)`, so that both pools send one
//! query per checkout; r2d2's defaults (`test_on_check_out(true)`: `is_valid`, a second round trip
//! before every checkout) are a second row, labelled, never the peer of a ratio. sanspool runs
//! with its defaults — `PgConnector` probes, so the pool vets each idle connection before a
//! checkout gets it (a look at its socket, no round trip: work r2d2 does not do) — and, for equal
//! work, over the same connector with the probe turned off, with its default fairness
//! (`BOUND_US` measures another bound) and with `Fairness::Strict`. At one thread, a dedicated
//! connection (no pool: the ceiling).
//!
//! Each round builds every pool afresh (new connections, new server processes), warms it, and
//! runs it once; which pool goes first changes from round to round. Figures: checkouts per second
//! and its ratio to r2d2's in the same round (median and range over the rounds), the wait for a
//! connection (p50, p99, max: medians over the rounds) and the p99's ratio to r2d2's in the same
//! round, and what this process spent per checkout: CPU time and context switches (getrusage:
//! the server's processes are not counted; where the server shares the cores, that CPU is the
//! server's loss). Then every round of every pool, so that a regime that comes and goes (a p50 wait at the
//! fairness bound in some rounds, not others) shows; for sanspool with the share of checkouts
//! that queued. `HIST=1` prints each round's waits as a histogram too.
//!
//! `cargo bench -p sanspool-tests --bench vs_r2d2_pg` (`RUNS`: rounds, at least 5; `OPS`:
//! checkouts per run, shared by the threads; `SETS`: the pool sizes and thread counts, as
//! `4:1,2,4,8,16,64;16:32`, the default). Run with the default sets it also writes
//! `docs/bench-pg.svg`, the README's chart: throughput and p99 wait against threads at max 4.

use r2d2_postgres::PostgresConnectionManager;
use sanspool::{Connector, Returned, Stats};
use sanspool_postgres::postgres::{Client, Config, NoTls};
use sanspool_postgres::{Fairness, PgConnector, Pool};
use sanspool_tests::bench::{env, histogram, median_by, ms, paired, usage, Waits, BUCKETS_US};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The pools and thread counts measured by default: 1 to 64 threads on 4 connections, and 32
/// threads on 16.
const SETS: &str = "4:1,2,4,8,16,64;16:32";

/// The pools of a round, in the order of the rows.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Kind {
    /// The peer: `test_on_check_out(false)`, one query per checkout like sanspool.
    R2d2,
    /// `PgConnector` as it is: every idle connection probed before a checkout gets it.
    Sanspool,
    /// `PgConnector` without its probe: equal work.
    NoProbe,
    /// The same, with `Fairness::Strict`.
    Strict,
    /// r2d2's defaults: a validation query before every checkout.
    R2d2Defaults,
    /// No pool: one client, at one thread.
    Dedicated,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::R2d2 => "r2d2_postgres",
            Kind::Sanspool => "sanspool, defaults (+1 socket probe per checkout)",
            Kind::NoProbe => "sanspool, no probe (equal work)",
            Kind::Strict => "sanspool, no probe, Fairness::Strict",
            Kind::R2d2Defaults => "r2d2_postgres, defaults (+1 query per checkout)",
            Kind::Dedicated => "dedicated connection",
        }
    }
}

/// One checkout: how long it waited for a connection (then `SELECT 1`, then give it back).
type One = Arc<dyn Fn() -> Duration + Send + Sync>;

/// A sanspool pool's stats.
type StatsOf = Box<dyn Fn() -> Stats>;

/// `PgConnector` with its liveness probe turned off: the pool then vets nothing before a
/// checkout, as r2d2 with `test_on_check_out(false)`.
struct NoProbe(PgConnector);

impl Connector for NoProbe {
    type Conn = <PgConnector as Connector>::Conn;
    type Error = <PgConnector as Connector>::Error;

    fn connect(&self) -> Result<Self::Conn, Self::Error> {
        self.0.connect()
    }

    fn state(&self, conn: &mut Self::Conn) -> Returned {
        self.0.state(conn)
    }

    fn reset(&self, conn: &mut Self::Conn) -> Result<(), Self::Error> {
        self.0.reset(conn)
    }

    fn check(&self, conn: &mut Self::Conn) -> Result<(), Self::Error> {
        self.0.check(conn)
    }

    fn is_permanent(&self, error: &Self::Error) -> bool {
        self.0.is_permanent(error)
    }

    fn is_abandoned(&self, error: &Self::Error) -> bool {
        self.0.is_abandoned(error)
    }

    fn close(&self, conn: Self::Conn) -> Result<(), Self::Error> {
        self.0.close(conn)
    }
}

/// A sanspool pool over `connector` as a checkout function, and its stats.
fn sanspool<M: Connector<Conn = <PgConnector as Connector>::Conn>>(
    connector: M,
    max: usize,
    fairness: Fairness,
) -> (One, Option<StatsOf>) {
    let pool = Pool::<M>::builder(connector)
        .min(max)
        .max(max)
        .timeout(Duration::from_secs(60))
        .fairness(fairness)
        .build()
        .expect("sanspool pool");
    let kept = pool.clone();
    let one: One = Arc::new(move || {
        let t0 = Instant::now();
        let mut conn = pool.get().expect("sanspool get");
        let waited = t0.elapsed();
        conn.simple_query("SELECT 1").expect("SELECT 1");
        waited
    });
    (one, Some(Box::new(move || kept.stats())))
}

/// A pool of `kind` with `max` connections, open and warm, as a checkout function; and for
/// sanspool's pools, their stats.
fn build(kind: Kind, config: &Config, max: usize, bound: Fairness) -> (One, Option<StatsOf>) {
    let r2d2 = |test: bool| {
        let pool = r2d2::Pool::builder()
            .max_size(max as u32)
            .test_on_check_out(test)
            .connection_timeout(Duration::from_secs(60))
            .build(PostgresConnectionManager::new(config.clone(), NoTls))
            .expect("r2d2 pool");
        let one: One = Arc::new(move || {
            let t0 = Instant::now();
            let mut conn = pool.get().expect("r2d2 get");
            let waited = t0.elapsed();
            conn.simple_query("SELECT 1").expect("SELECT 1");
            waited
        });
        (one, None)
    };
    let built = match kind {
        Kind::R2d2 => r2d2(false),
        Kind::R2d2Defaults => r2d2(true),
        Kind::Sanspool => sanspool(PgConnector::from_config(config.clone()), max, bound),
        Kind::NoProbe => sanspool(
            NoProbe(PgConnector::from_config(config.clone())),
            max,
            bound,
        ),
        Kind::Strict => sanspool(
            NoProbe(PgConnector::from_config(config.clone())),
            max,
            Fairness::Strict,
        ),
        Kind::Dedicated => {
            let client: Client = config.connect(NoTls).expect("a dedicated connection");
            let client = Mutex::new(client);
            let one: One = Arc::new(move || {
                let mut c = client.lock().expect("one thread");
                c.simple_query("SELECT 1").expect("SELECT 1");
                Duration::ZERO
            });
            (one, None)
        }
    };
    // Every connection opened and every server process warm (a fresh one answers its first
    // queries slower) before anything is measured.
    let warm = if kind == Kind::Dedicated { 1 } else { 4 * max };
    run(warm, 50 * warm, &built.0);
    built
}

/// `threads` threads sharing `ops` checkouts, released together: the waits, and the time from
/// the first thread's start to the last one's end, as the threads read the clock (the main
/// thread may be descheduled between the barrier and a clock read of its own).
fn run(threads: usize, ops: usize, one: &One) -> (Vec<Duration>, Duration) {
    let per_thread = (ops / threads).max(1);
    let start = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (start, one) = (Arc::clone(&start), Arc::clone(one));
            thread::spawn(move || {
                start.wait();
                let t0 = Instant::now();
                let waits = (0..per_thread).map(|_| one()).collect::<Vec<_>>();
                (t0, Instant::now(), waits)
            })
        })
        .collect();
    let (mut first, mut last, mut waits) = (None::<Instant>, None::<Instant>, Vec::new());
    for w in workers {
        let (t0, t1, w) = w.join().expect("worker");
        first = Some(first.map_or(t0, |f| f.min(t0)));
        last = Some(last.map_or(t1, |l| l.max(t1)));
        waits.extend(w);
    }
    let elapsed = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f),
        _ => Duration::ZERO,
    };
    (waits, elapsed)
}

/// One pool's run in a round.
#[derive(Clone, Copy)]
struct Round {
    waits: Waits,
    /// sanspool: the share of checkouts that queued (`Stats::waits` over `Stats::checkouts`).
    queued: Option<f64>,
    /// This process's CPU time per checkout (not the server's), in µs.
    cpu_us: f64,
    /// This process's context switches per checkout.
    switches: f64,
}

fn main() {
    // `cargo test` runs benches too (without `--bench`): then a quick pass proves they work,
    // and the chart is left alone.
    let measuring = std::env::args().any(|a| a == "--bench");
    let runs = if measuring { env("RUNS", 5) } else { 1 };
    let ops = if measuring { env("OPS", 16_000) } else { 64 };
    let hist = std::env::var_os("HIST").is_some();
    let dsn = sanspool_tests::shared_dsn();
    let config: Config = dsn.parse().expect("the harness gives a valid DSN");
    // `BOUND_US`: the fairness bound to measure (default: the pool's default, 0.7 ms).
    let bound = match std::env::var("BOUND_US").ok().and_then(|v| v.parse().ok()) {
        Some(us) => Fairness::Bounded(Duration::from_micros(us)),
        None => Fairness::default(),
    };
    let sets_given = std::env::var("SETS").ok();
    let sets = parse_sets(sets_given.as_deref().unwrap_or(SETS));

    println!(
        "SELECT 1 per checkout; {runs} rounds of {ops} checkouts per run, fresh pools each round; \
         ratios to r2d2_postgres (test_on_check_out(false): equal work) in the same round, \
         median (range); waits: medians over the rounds"
    );
    println!(
        "| max | threads | pool | checkouts/s | ratio to r2d2 | p50 wait ms | p99 wait ms | \
         p99 ratio to r2d2 | max wait ms | CPU µs/checkout | switches/checkout |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut chart = Vec::new();
    let mut detail = String::new();
    for &(max, ref counts) in &sets {
        for &threads in counts {
            let mut kinds = vec![
                Kind::R2d2,
                Kind::Sanspool,
                Kind::NoProbe,
                Kind::Strict,
                Kind::R2d2Defaults,
            ];
            if threads == 1 {
                kinds.push(Kind::Dedicated);
            }
            let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); kinds.len()];
            for r in 0..runs {
                for i in (0..kinds.len()).map(|k| (k + r) % kinds.len()) {
                    let (one, pool) = build(kinds[i], &config, max, bound);
                    let before = pool.as_ref().map(|stats| stats());
                    let (cpu0, sw0) = usage();
                    let (waits, elapsed) = run(threads, ops, &one);
                    let (cpu1, sw1) = usage();
                    let n = waits.len() as f64;
                    let cpu_us = (cpu1 - cpu0).as_secs_f64() * 1e6 / n;
                    let switches = (sw1 - sw0) as f64 / n;
                    let queued = pool.as_ref().zip(before).map(|(stats, b)| {
                        let s = stats();
                        (s.waits - b.waits) as f64 / (s.checkouts - b.checkouts).max(1) as f64
                    });
                    if hist {
                        detail += &format!(
                            "max {max}, {threads} threads, round {r}, {}: {}\n",
                            kinds[i].name(),
                            histogram(&waits)
                                .iter()
                                .map(|p| format!("{p:.0}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        );
                    }
                    let waits = Waits::of(waits, elapsed);
                    rounds[i].push(Round {
                        waits,
                        queued,
                        cpu_us,
                        switches,
                    });
                }
            }
            let peer: Vec<Round> = rounds[0].clone();
            let figure = |rs: &[Round], f: fn(&Waits) -> f64| -> Vec<f64> {
                rs.iter().map(|r| f(&r.waits)).collect()
            };
            let per_sec = |w: &Waits| w.per_sec;
            let p99 = |w: &Waits| ms(w.p99);
            let mut medians = Vec::new();
            for (kind, rs) in kinds.iter().zip(&rounds) {
                let m = Waits::median(&rs.iter().map(|r| r.waits).collect::<Vec<_>>());
                let (ratio, lo, hi) = paired(&figure(rs, per_sec), &figure(&peer, per_sec));
                // Where r2d2's p99 is a few microseconds (nobody waits), a ratio says nothing.
                let quiet = peer.iter().any(|r| r.waits.p99 < Duration::from_micros(50));
                let p99_ratio = if *kind == Kind::Dedicated || quiet {
                    "-".to_string()
                } else {
                    let (r, lo, hi) = paired(&figure(rs, p99), &figure(&peer, p99));
                    format!("{r:.2} ({lo:.2}-{hi:.2})")
                };
                let cpu = median_by(rs, |r| r.cpu_us).cpu_us;
                let switches = median_by(rs, |r| r.switches).switches;
                println!(
                    "| {max} | {threads} | {} | {:.0} | {ratio:.2} ({lo:.2}-{hi:.2}) | {:.3} | {:.3} | {p99_ratio} | {:.2} | {cpu:.1} | {switches:.2} |",
                    kind.name(),
                    m.per_sec,
                    ms(m.p50),
                    ms(m.p99),
                    ms(m.max)
                );
                medians.push(m);
                detail += &format!("max {max}, {threads} threads, {}:", kind.name());
                for r in rs {
                    let w = r.waits;
                    detail += &format!(" {:.0}/s {:.2}/{:.2}", w.per_sec, ms(w.p50), ms(w.p99));
                    if let Some(q) = r.queued {
                        detail += &format!(" ({:.0}% queued)", 100.0 * q);
                    }
                    detail += ";";
                }
                detail += "\n";
            }
            if max == 4 {
                chart.push((threads, [medians[1], medians[2], medians[0], medians[4]]));
            }
        }
    }
    println!("\nEach round (checkouts/s, p50/p99 wait ms), in round order:\n{detail}");
    if hist {
        let edges: Vec<String> = BUCKETS_US.iter().map(|e| format!("<{e}")).collect();
        println!(
            "Histograms: % of waits per bucket, µs: {} >=2000",
            edges.join(" ")
        );
    }
    // A chart of some thread counts only would replace the whole one.
    if !measuring || sets_given.is_some() {
        return;
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/bench-pg.svg");
    match std::fs::write(path, svg(&chart, runs, ops)) {
        Ok(()) => println!("chart: docs/bench-pg.svg"),
        Err(e) => println!("chart not written: {e}"),
    }
}

/// `4:1,2,16;16:32` as `[(4, [1, 2, 16]), (16, [32])]`.
fn parse_sets(sets: &str) -> Vec<(usize, Vec<usize>)> {
    sets.split(';')
        .filter_map(|set| {
            let (max, counts) = set.split_once(':')?;
            let counts = counts.split(',').filter_map(|n| n.trim().parse().ok());
            Some((max.trim().parse().ok()?, counts.collect()))
        })
        .collect()
}

/// A chart panel: its title and the figure it plots.
type Panel = (&'static str, fn(&Waits) -> f64);

/// Two panels, checkouts per second and p99 wait against threads (log scale) at max 4: sanspool
/// with its defaults and without its probe (dashed), r2d2_postgres with equal work and with its
/// defaults (dashed); an SVG written by hand.
fn svg(points: &[(usize, [Waits; 4])], runs: usize, ops: usize) -> String {
    const W: f64 = 360.0;
    const H: f64 = 220.0;
    let most = points.iter().map(|p| p.0).max().unwrap_or(1).max(2) as f64;
    let x = |threads: usize| 50.0 + (threads as f64).log2() / most.log2() * (W - 70.0);
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' font-size='11'>\n",
        2.0 * W,
        H + 44.0
    );
    let panels: [Panel; 2] = [
        ("checkouts per second", |r| r.per_sec),
        ("p99 wait for a connection (ms)", |r| ms(r.p99)),
    ];
    // In the order of each point's figures.
    let lines: [(&str, &str, &str); 4] = [
        ("sanspool, defaults (probe)", "#1f77b4", ""),
        ("sanspool, no probe", "#1f77b4", " stroke-dasharray='4 3'"),
        ("r2d2_postgres, equal work", "#d62728", ""),
        (
            "r2d2_postgres, defaults",
            "#d62728",
            " stroke-dasharray='4 3'",
        ),
    ];
    for (i, (title, value)) in panels.iter().enumerate() {
        let dx = i as f64 * W;
        let top = points
            .iter()
            .flat_map(|(_, rows)| rows.map(|r| value(&r)))
            .fold(f64::MIN_POSITIVE, f64::max)
            * 1.1;
        let y = |v: f64| H - 20.0 - v / top * (H - 50.0);
        out += &format!("<g transform='translate({dx},0)'>\n<text x='50' y='16'>{title}</text>\n");
        out += &format!(
            "<line x1='50' y1='{0}' x2='{1}' y2='{0}' stroke='black'/><line x1='50' y1='30' x2='50' y2='{0}' stroke='black'/>\n",
            H - 20.0,
            W - 20.0
        );
        let top_label = if top >= 100.0 {
            format!("{top:.0}")
        } else {
            format!("{top:.1}")
        };
        out += &format!(
            "<text x='4' y='34'>{top_label}</text><text x='36' y='{}'>0</text>\n",
            H - 20.0
        );
        for &(threads, ..) in points {
            out += &format!(
                "<text x='{}' y='{}' text-anchor='middle'>{threads}</text>\n",
                x(threads),
                H - 6.0
            );
        }
        for (k, (name, colour, dash)) in lines.iter().enumerate() {
            let line: Vec<String> = points
                .iter()
                .map(|(t, rows)| format!("{:.1},{:.1}", x(*t), y(value(&rows[k]))))
                .collect();
            out += &format!(
                "<polyline fill='none' stroke='{colour}' stroke-width='2'{dash} points='{}'/>\n<text x='{}' y='{}' fill='{colour}'>{name}</text>\n",
                line.join(" "),
                W - 170.0,
                40.0 + 14.0 * k as f64
            );
        }
        out += "</g>\n";
    }
    out += &format!(
        "<text x='{}' y='{}' text-anchor='middle'>threads (max 4 connections, SELECT 1 per checkout; medians of {runs} rounds of {ops} checkouts)</text>\n",
        W,
        H + 22.0
    );
    out += &format!(
        "<text x='{}' y='{}' text-anchor='middle'>equal work: r2d2 with test_on_check_out(false), sanspool without its probe; r2d2's defaults add a query per checkout</text>\n</svg>\n",
        W,
        H + 38.0
    );
    out
}
