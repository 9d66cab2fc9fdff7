//! The demo: a threaded workload through a sanspool pool on a real PostgreSQL.
//!
//! ```sh
//! cargo run --release -p sanspool-tests --example demo [-- DSN]
//! ```
//!
//! Without a DSN it starts a throwaway server of its own (removed at exit). Sixteen threads share a
//! pool of at most eight connections; their transactions mix reads, committed writes, and writes
//! deliberately left behind — a transaction left open, one aborted by an error, one leaked with
//! `mem::forget`, a `COPY` dropped half done — which the pool rolls back before anyone else gets
//! the connection. Halfway through, one of the pool's idle backends is killed server-side; the
//! report says what became of it, from what was counted: whose call failed on it, how the pool
//! closed it, what replaced it. At the end: the pool's stats, the most connections the server
//! saw, and proof that no abandoned row ever became visible.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sanspool_postgres::postgres::error::SqlState;
use sanspool_postgres::postgres::{Client, Config, NoTls};
use sanspool_postgres::{Builder, PgConnector, Pool, PooledConn, Stats};
use sanspool_tests::PgServer;

const THREADS: u64 = 16;
const TRANSACTIONS: u64 = 500;
const MIN: usize = 2;
const MAX: usize = 8;
const APP: &str = "sanspool-demo";
const TABLE: &str = "sanspool_demo_ledger";

/// What the workers did, counted as they go.
#[derive(Default)]
struct Tally {
    reads: AtomicU64,
    commits: AtomicU64,
    left_open: AtomicU64,
    aborted: AtomicU64,
    forgotten: AtomicU64,
    copies_dropped: AtomicU64,
    /// Calls that failed because their connection's backend was gone (the one killed).
    lost: AtomicU64,
    /// Calls that failed otherwise, and checkouts that failed.
    errors: AtomicU64,
}

/// Whether a worker's failure is its connection's backend gone: the server's FATAL
/// `admin_shutdown` (57P01, what `pg_terminate_backend` sends), the connection closed, or reset
/// (a request written after the server closed is answered with an RST, which the client may
/// see before the FATAL error waiting for it).
fn backend_gone(e: &(dyn std::error::Error + 'static)) -> bool {
    let Some(e) = e.downcast_ref::<sanspool_postgres::postgres::Error>() else {
        return false;
    };
    let reset = std::error::Error::source(e)
        .and_then(|cause| cause.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            use std::io::ErrorKind::*;
            matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            )
        });
    reset || e.is_closed() || e.code() == Some(&SqlState::ADMIN_SHUTDOWN)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    // A DSN from the command line, or a server of our own.
    let (dsn, _server) = match std::env::args().nth(1) {
        Some(dsn) => {
            println!("using the server at {dsn}");
            (dsn, None)
        }
        None => {
            let server = PgServer::start()?;
            println!(
                "started a throwaway PostgreSQL on 127.0.0.1:{} (data directory {}; removed at exit)",
                server.port(),
                server.data_dir().display()
            );
            (server.dsn(), Some(server))
        }
    };
    let mut config: Config = dsn.parse()?;

    let mut admin = config
        .clone()
        .application_name(&format!("{APP}-monitor"))
        .connect(NoTls)?;
    admin.batch_execute(&format!(
        "DROP TABLE IF EXISTS {TABLE}; \
         CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, worker int NOT NULL, amount int NOT NULL)"
    ))?;

    config.application_name(APP);
    let pool: Pool<PgConnector> = Builder::new(PgConnector::from_config(config))
        .min(MIN)
        .max(MAX)
        .timeout(Duration::from_secs(5))
        .check_on_checkout(false)
        .build()?;
    println!(
        "pool: min {MIN}, max {MAX}, checkout timeout 5 s; workload: {THREADS} threads x {TRANSACTIONS} transactions\n"
    );

    let total = THREADS * TRANSACTIONS;
    let bar = progress_bar(total);
    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicU64::new(0));

    // The server's view: the pool's backends, sampled all along; halfway, one is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        thread::spawn(move || watch(admin, &stop, &done, total))
    };

    let workers: Vec<_> = (0..THREADS)
        .map(|worker| {
            let (pool, tally, done, bar) = (
                pool.clone(),
                Arc::clone(&tally),
                Arc::clone(&done),
                bar.clone(),
            );
            thread::spawn(move || {
                let mut seed = worker.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for i in 0..TRANSACTIONS {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    match pool.get() {
                        Ok(mut conn) => match transaction(&mut conn, worker, seed % 100, &tally) {
                            Ok(()) => {}
                            Err(e) if backend_gone(&*e) => {
                                tally.lost.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                tally.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                        Err(_) => {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    bar.inc(1);
                    let quarter = bar.is_hidden() && finished % (total / 4) == 0;
                    if i % 16 == 0 || quarter {
                        let s = pool.stats();
                        let status = format!(
                            "{} open, {} in use, {} waiting",
                            s.size, s.in_use, s.waiting
                        );
                        if quarter {
                            println!(
                                "{:>3}% {finished}/{total} tx  {status}",
                                finished * 100 / total
                            );
                        }
                        bar.set_message(status);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a worker panicked")?;
    }
    bar.finish_with_message("done");
    stop.store(true, Ordering::Relaxed);
    let (mut admin, seen, killed) = watcher.join().map_err(|_| "the watcher panicked")??;
    let elapsed = started.elapsed();

    let visible: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])?
        .get(0);
    let stats = pool.stats();
    pool.close()?;
    admin.batch_execute(&format!("DROP TABLE {TABLE}"))?;

    report(&stats, &tally, seen, killed, visible, elapsed);
    let commits = tally.commits.load(Ordering::Relaxed) as i64;
    if seen > MAX as i64 || visible != commits {
        return Err("a check failed (see above)".into());
    }
    Ok(())
}

/// The progress bar: drawn on a terminal; elsewhere (hidden) the workers print a line per quarter.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner:.green} [{elapsed_precise}] [{bar:30.cyan/blue}] {pos}/{len} tx {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// One transaction of one of six kinds, on a checked-out connection.
fn transaction(
    conn: &mut PooledConn<'_, PgConnector>,
    worker: u64,
    dice: u64,
    tally: &Tally,
) -> Result<(), Box<dyn std::error::Error>> {
    let worker = worker as i32;
    let amount = dice as i32 + 1;
    let insert = format!("INSERT INTO {TABLE} (worker, amount) VALUES ({worker}, {amount})");
    match dice {
        // A read, a little slow: the pool is busy enough for checkouts to wait.
        0..=44 => {
            conn.query_one(
                &format!("SELECT count(*), coalesce(sum(amount), 0)::int8, pg_sleep(0.002)::text FROM {TABLE}"),
                &[],
            )?;
            tally.reads.fetch_add(1, Ordering::Relaxed);
        }
        // A write, committed.
        45..=79 => {
            let mut tx = conn.transaction()?;
            tx.execute(&insert, &[])?;
            tx.execute(&insert, &[])?;
            tx.commit()?;
            tally.commits.fetch_add(2, Ordering::Relaxed);
        }
        // Left open: BEGIN and a write, then the connection goes back as it is.
        80..=87 => {
            conn.batch_execute(&format!("BEGIN; {insert}"))?;
            tally.left_open.fetch_add(1, Ordering::Relaxed);
        }
        // Aborted by an error inside the transaction, and left so.
        88..=93 => match conn.batch_execute(&format!("BEGIN; {insert}; SELECT 1/0")) {
            Err(e) if e.code() == Some(&SqlState::DIVISION_BY_ZERO) => {
                tally.aborted.fetch_add(1, Ordering::Relaxed);
            }
            // Not the abort asked for (the connection's backend gone, say).
            Err(e) => return Err(e.into()),
            Ok(()) => return Err("1/0 succeeded".into()),
        },
        // A Transaction leaked with mem::forget: no COMMIT, no ROLLBACK.
        94..=97 => {
            let mut tx = conn.transaction()?;
            tx.execute(&insert, &[])?;
            std::mem::forget(tx);
            tally.forgotten.fetch_add(1, Ordering::Relaxed);
        }
        // A COPY dropped half done.
        _ => {
            let mut writer = conn.copy_in(&format!("COPY {TABLE} (worker, amount) FROM STDIN"))?;
            writer.write_all(format!("{worker}\t{amount}\n").as_bytes())?;
            drop(writer);
            tally.copies_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

type Watched = Result<(Client, i64, Option<i32>), String>;

/// Samples the pool's server-side connection count until `stop`; halfway through the workload,
/// terminates one of the pool's idle backends. Returns the most seen and the pid killed.
fn watch(mut admin: Client, stop: &AtomicBool, done: &AtomicU64, total: u64) -> Watched {
    let count = admin
        .prepare("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .map_err(|e| e.to_string())?;
    let (mut seen, mut killed) = (0i64, None);
    while !stop.load(Ordering::Relaxed) {
        let n: i64 = admin
            .query_one(&count, &[&APP])
            .map_err(|e| e.to_string())?
            .get(0);
        seen = seen.max(n);
        if killed.is_none() && done.load(Ordering::Relaxed) >= total / 2 {
            killed = admin
                .query_opt(
                    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND state = 'idle' LIMIT 1",
                    &[&APP],
                )
                .map_err(|e| e.to_string())?
                .map(|row| row.get(0));
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok((admin, seen, killed))
}

/// What became of the killed backend's connection, from the counts: the calls that failed on it
/// (the only backend gone, so every such failure is its), and how the pool closed it — given
/// back broken (its client had seen the server's end: closed without a round trip), or given
/// back dirty (the failed call left the status unknown) and closed when its `ROLLBACK` failed.
/// Nothing else closes connections in this run (no lifetimes, no checks).
fn killed_fate(stats: &Stats, lost: u64) -> String {
    let failed = match lost {
        0 => "no call failed on it".to_owned(),
        1 => "its next borrower's call failed".to_owned(),
        n => format!("{n} calls failed on it"),
    };
    let failed_resets = stats.closes.saturating_sub(stats.broken_returns);
    let closed = match (stats.broken_returns, failed_resets) {
        (0, 0) => "never given back: still open".to_owned(),
        (0, _) => "given back dirty, its ROLLBACK failed, closed".to_owned(),
        (_, 0) => "given back broken, closed without a round trip".to_owned(),
        (broken, failed) => {
            format!("{broken} given back broken, {failed} dirty with a failed ROLLBACK; closed")
        }
    };
    let replaced = if stats.closes > 0 && stats.size == MAX {
        format!("; replaced ({} opened in all)", stats.opens)
    } else {
        String::new()
    };
    format!("{failed}; {closed}{replaced}")
}

fn report(
    stats: &Stats,
    tally: &Tally,
    seen: i64,
    killed: Option<i32>,
    visible: i64,
    elapsed: Duration,
) {
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let abandoned =
        n(&tally.left_open) + n(&tally.aborted) + n(&tally.forgotten) + n(&tally.copies_dropped);
    let mean_wait = if stats.waits > 0 {
        stats.wait_time / stats.waits as u32
    } else {
        Duration::ZERO
    };
    let ok = |good: bool| if good { "ok" } else { "FAILED" };
    println!();
    println!("workload ({:.1} s)", elapsed.as_secs_f64());
    println!("  reads                          {:>7}", n(&tally.reads));
    println!("  rows committed                 {:>7}", n(&tally.commits));
    println!(
        "  transactions left open         {:>7}",
        n(&tally.left_open)
    );
    println!("  transactions aborted by error  {:>7}", n(&tally.aborted));
    println!(
        "  Transactions mem::forget-ed    {:>7}",
        n(&tally.forgotten)
    );
    println!(
        "  COPYs dropped half done        {:>7}",
        n(&tally.copies_dropped)
    );
    println!("  failed: backend gone           {:>7}", n(&tally.lost));
    println!("  failed: other errors           {:>7}", n(&tally.errors));
    println!("pool stats");
    println!("  checkouts                      {:>7}", stats.checkouts);
    println!(
        "  of which waited                {:>7}  (mean wait {mean_wait:.2?})",
        stats.waits
    );
    println!("  timeouts                       {:>7}", stats.timeouts);
    println!(
        "  clean returns (no round trip)  {:>7}",
        stats
            .checkouts
            .saturating_sub(stats.resets + stats.broken_returns)
    );
    println!("  dirty returns sent to ROLLBACK {:>7}", stats.resets);
    println!(
        "  broken returns (closed)        {:>7}",
        stats.broken_returns
    );
    println!(
        "  connections opened / closed    {:>3} / {}",
        stats.opens, stats.closes
    );
    println!(
        "  open now (idle / in use)       {:>3} ({} / {})",
        stats.size, stats.idle, stats.in_use
    );
    println!("server");
    println!(
        "  most connections seen          {seen:>7}  (max {MAX}): {}",
        ok(seen <= MAX as i64)
    );
    match killed {
        Some(pid) => println!(
            "  backend killed halfway         {pid:>7}  ({})",
            killed_fate(stats, n(&tally.lost))
        ),
        None => {
            println!("  backend killed halfway            none  (no idle backend at that moment)")
        }
    }
    println!(
        "  rows visible                   {visible:>7}  (= rows committed; none of the {abandoned} abandoned transactions leaked): {}",
        ok(visible == n(&tally.commits) as i64)
    );
}
