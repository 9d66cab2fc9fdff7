//! Benchmarks of the sans-IO core alone — no driver, no I/O, no clock: only the bookkeeping an
//! adapter pays for on every checkout and checkin — with r2d2 beside it in the same process.
//! Pools are warmed up through the test kit's checking driver, then the bare pool is timed.
//!
//! - `cycle/{alloc,fixed}`: the core's cycle with 4 idle connections: an unkeyed checkout, a clean
//!   checkin, and draining commands until there are none. `cycle/r2d2`: r2d2 0.8's `get()` and
//!   drop, max 4, with a manager that does no I/O.
//! - `keyed_1000/...`: 1 000 open connections. `cycle`: each iteration checks out and back in
//!   under the next of 1 000 keys. `999_held`: 999 keys hold a connection each and the last one
//!   cycles under fresh keys (a miss: the fixed backend's worst case). `held_again`: a checkout
//!   under a held key, answered `Held`.
//! - `waiter_handoff/...`: a checkin handed straight to a queued checkout, and its `Grant` drained.
//! - `poll_timeout/...`: the next deadline, kept by the timer table (`table`) or found by search
//!   as before (`search`), with 1 000 idle connections with lifetimes (`1000_idle`) and with 1 000
//!   checkouts queued with deadlines behind 1 000 busy connections (`1000_waiters`; a checkout
//!   never waits while a connection is idle, so the two cannot be had at once).
//!
//! After the criterion groups, `ratios` times the core's cycle against r2d2 and the table against
//! the search in interleaved rounds of one run, and prints the medians and their ratios.

use criterion::Criterion;
use sanspool_core::testkit::{deadline_by_search, Sim};
use sanspool_core::{
    Alloc, Checkout, Config, Fairness, Fixed, Handoff, Lease, Pool, Returned, Storage,
};
use sanspool_core::{Time, Wait};
use std::hint::black_box;
use std::time::{Duration, Instant};

const NOW: Time = Time::ZERO;
const KEYS: u32 = 1000;

type Small = Fixed<8, 8>;
/// 1 024 slots and waiters inline: boxed, see `warmed`.
type Big = Fixed<1024, 1024>;

/// A pool with `min` connections opened and idle, warmed up through the checking driver.
fn warmed<S: Storage<u32, u32>>(config: Config) -> Box<Pool<u32, u32, S>> {
    let min = config.min;
    let pool = Box::new(Sim::<S, u32>::new(config).into_pool());
    assert_eq!(pool.stats().idle, min);
    pool
}

fn checkout<S: Storage<u32, u32>>(pool: &mut Pool<u32, u32, S>, key: Option<u32>) -> (Lease, u32) {
    match pool.checkout(NOW, black_box(key), Wait::No) {
        Ok(Checkout::Ready { lease, conn }) => (lease, conn),
        other => panic!("checkout: {other:?}"),
    }
}

fn checkin<S: Storage<u32, u32>>(
    pool: &mut Pool<u32, u32, S>,
    lease: Lease,
    key: Option<&u32>,
    conn: u32,
) {
    let done = pool.checkin(NOW, black_box(lease), key, black_box(conn), Returned::Clean);
    if let Err(r) = done {
        panic!("checkin: {}", r.error);
    }
}

/// One turn of the core's cycle: checkout, clean checkin, drain until no output is left.
fn cycle_once<S: Storage<u32, u32>>(pool: &mut Pool<u32, u32, S>) {
    let (lease, conn) = checkout(pool, None);
    checkin(pool, lease, None, conn);
    while let Some(io) = pool.poll_io() {
        black_box(io);
    }
    while let Some(handoff) = pool.poll_handoff() {
        black_box(handoff);
    }
    while let Some(report) = pool.poll_report() {
        black_box(report);
    }
}

/// The pool is as it was before the benchmark: nothing to do, nothing lost.
fn settled<S: Storage<u32, u32>>(pool: &mut Pool<u32, u32, S>, idle: usize) {
    assert!(!pool.has_output());
    assert_eq!(pool.stats().idle, idle);
    sanspool_core::testkit::assert_invariants(pool);
}

/// r2d2's side: a manager with no I/O at all.
struct NoIo;

impl r2d2::ManageConnection for NoIo {
    type Connection = u32;
    type Error = std::io::Error;
    fn connect(&self) -> Result<u32, Self::Error> {
        Ok(0)
    }
    fn is_valid(&self, _: &mut u32) -> Result<(), Self::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u32) -> bool {
        false
    }
}

fn r2d2_pool() -> r2d2::Pool<NoIo> {
    r2d2::Pool::builder()
        .max_size(4)
        .build(NoIo)
        .expect("r2d2 pool")
}

fn cycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("cycle");
    group.bench_function("alloc", |b| {
        let mut pool = warmed::<Alloc>(Config::new(4, 4));
        b.iter(|| cycle_once(&mut pool));
        settled(&mut pool, 4);
    });
    group.bench_function("fixed", |b| {
        let mut pool = warmed::<Small>(Config::new(4, 4));
        b.iter(|| cycle_once(&mut pool));
        settled(&mut pool, 4);
    });
    group.bench_function("r2d2", |b| {
        let pool = r2d2_pool();
        b.iter(|| drop(black_box(pool.get().expect("r2d2 get"))));
    });
    group.finish();
}

fn keyed_1000<S: Storage<u32, u32>>(c: &mut Criterion, name: &str) {
    let config = || Config::new(KEYS as usize, KEYS as usize);
    let mut group = c.benchmark_group("keyed_1000");

    group.bench_function(format!("{name}/cycle"), |b| {
        let mut pool = warmed::<S>(config());
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % KEYS;
            let (lease, conn) = checkout(&mut pool, Some(k));
            checkin(&mut pool, lease, Some(&k), conn);
        });
        settled(&mut pool, KEYS as usize);
    });

    // Keys 0..999 each hold a connection; the last idle connection cycles under keys 1000..2000.
    let hold_999 = || {
        let mut pool = warmed::<S>(config());
        for k in 0..KEYS - 1 {
            checkout(&mut pool, Some(k));
        }
        assert_eq!(pool.stats().in_use, KEYS as usize - 1);
        pool
    };

    group.bench_function(format!("{name}/999_held"), |b| {
        let mut pool = hold_999();
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % KEYS;
            let key = KEYS + k;
            let (lease, conn) = checkout(&mut pool, Some(key));
            checkin(&mut pool, lease, Some(&key), conn);
        });
        settled(&mut pool, 1);
    });

    group.bench_function(format!("{name}/held_again"), |b| {
        let mut pool = hold_999();
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % (KEYS - 1);
            match pool.checkout(NOW, black_box(Some(k)), Wait::No) {
                Ok(Checkout::Held(lease)) => lease,
                other => panic!("checkout: {other:?}"),
            }
        });
        settled(&mut pool, 1);
    });
    group.finish();
}

fn waiter_handoff<S: Storage<u32, u32>>(c: &mut Criterion, name: &str) {
    let mut group = c.benchmark_group("waiter_handoff");
    group.bench_function(name, |b| {
        // The grant path: strict hand-off (bounded fairness would wake the waiter instead).
        let strict = Config {
            fairness: Fairness::Strict,
            ..Config::new(1, 1)
        };
        let mut pool = warmed::<S>(strict);
        let (mut lease, mut conn) = checkout(&mut pool, None);
        b.iter(|| {
            let Ok(Checkout::Waiting(w)) = pool.checkout(NOW, None, Wait::Forever) else {
                panic!("the checkout did not queue")
            };
            checkin(&mut pool, lease, None, conn);
            match pool.poll_handoff() {
                Some(Handoff::Grant {
                    waiter,
                    lease: l,
                    conn: c,
                }) if waiter == w => (lease, conn) = (l, c),
                other => panic!("expected a grant, got {other:?}"),
            }
        });
        checkin(&mut pool, lease, None, conn);
        settled(&mut pool, 1);
        assert_eq!(pool.stats().waiting, 0);
    });
    group.finish();
}

/// A hand-off at `max` with 256 checkouts queued behind it, each with a deadline, as a busy
/// driver sees it: the returned connection goes to the oldest waiter and a new checkout joins
/// the end of the line. Nothing here may walk the line.
fn handoff_256_waiting<S: Storage<u32, u32>>(c: &mut Criterion, name: &str) {
    let mut group = c.benchmark_group("handoff_256_waiting");
    group.bench_function(name, |b| {
        let mut config = Config::new(4, 4);
        config.max_waiting = 512;
        config.fairness = Fairness::Strict;
        let mut pool = warmed::<S>(config);
        let mut held: std::collections::VecDeque<(Lease, u32)> =
            (0..4).map(|_| checkout(&mut pool, None)).collect();
        let mut t = 0u64;
        let queue = |pool: &mut Pool<u32, u32, S>, t: &mut u64| {
            *t += 1;
            let at = Time::from_nanos(1_000_000_000_000 + *t);
            let out = pool.checkout(Time::from_nanos(*t), None, Wait::Until(at));
            assert!(matches!(out, Ok(Checkout::Waiting(_))), "{out:?}");
        };
        for _ in 0..256 {
            queue(&mut pool, &mut t);
        }
        b.iter(|| {
            let (lease, conn) = held.pop_front().expect("held");
            checkin(&mut pool, lease, None, conn);
            match pool.poll_handoff() {
                Some(Handoff::Grant { lease, conn, .. }) => held.push_back((lease, conn)),
                other => panic!("expected a grant, got {other:?}"),
            }
            queue(&mut pool, &mut t);
        });
        assert_eq!(pool.stats().waiting, 256);
    });
    group.finish();
}

/// 1 000 idle connections, each with its own end of life.
fn idle_1000<S: Storage<u32, u32>>() -> Box<Pool<u32, u32, S>> {
    let mut config = Config::new(KEYS as usize, KEYS as usize);
    config.max_lifetime = Some(Duration::from_secs(3600));
    config.lifetime_jitter = Duration::from_secs(600);
    config.max_idle = Some(Duration::from_secs(60));
    warmed::<S>(config)
}

/// 1 000 busy connections and 1 000 checkouts queued behind them, each with its own deadline.
fn waiters_1000<S: Storage<u32, u32>>() -> Box<Pool<u32, u32, S>> {
    let mut config = Config::new(KEYS as usize, KEYS as usize);
    config.max_waiting = 2 * KEYS as usize;
    let mut pool = warmed::<S>(config);
    for _ in 0..KEYS {
        checkout(&mut pool, None);
    }
    for i in 0..u64::from(KEYS) {
        // Deadlines in no particular order: a multiplicative hash of the arrival number.
        let at = Time::from_nanos(1_000_000_000 + (i * 2_654_435_761) % 1_000_000_007);
        let out = pool.checkout(NOW, None, Wait::Until(at));
        assert!(matches!(out, Ok(Checkout::Waiting(_))), "{out:?}");
    }
    assert_eq!(pool.stats().waiting, KEYS as usize);
    pool
}

fn poll_timeout<S: Storage<u32, u32>>(c: &mut Criterion, name: &str) {
    let mut group = c.benchmark_group("poll_timeout");
    for (what, pool) in [
        ("1000_idle", idle_1000::<S>()),
        ("1000_waiters", waiters_1000::<S>()),
    ] {
        assert_eq!(pool.poll_timeout(), deadline_by_search(&*pool));
        assert!(pool.poll_timeout().is_some());
        group.bench_function(format!("{name}/{what}/table"), |b| {
            b.iter(|| black_box(&*pool).poll_timeout())
        });
        group.bench_function(format!("{name}/{what}/search"), |b| {
            b.iter(|| deadline_by_search(black_box(&*pool)))
        });
    }
    group.finish();
}

/// Median ns per call of `f` over `rounds` rounds of `n` calls, interleaved with `g`'s rounds so
/// that both see the same machine.
fn interleaved(rounds: usize, n: u32, mut f: impl FnMut(), mut g: impl FnMut()) -> (f64, f64) {
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_nanos() as f64 / f64::from(n)
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(time(&mut f));
        b.push(time(&mut g));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut a), median(&mut b))
}

fn ratios() {
    // `cargo test` runs benches too (without `--bench`): criterion then runs each once; the
    // ratios would take seconds and mean nothing in a debug build.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!("\nratios (medians of 15 interleaved rounds, one process):");
    let r2d2 = r2d2_pool();
    let mut alloc = warmed::<Alloc>(Config::new(4, 4));
    let mut fixed = warmed::<Small>(Config::new(4, 4));
    let (core, peer) = interleaved(
        15,
        200_000,
        || cycle_once(&mut alloc),
        || drop(black_box(r2d2.get().expect("r2d2 get"))),
    );
    println!(
        "  cycle, 4 idle: core (alloc) {core:.1} ns, r2d2 get+drop {peer:.1} ns: {:.3}x r2d2",
        core / peer
    );
    let (core, peer) = interleaved(
        15,
        200_000,
        || cycle_once(&mut fixed),
        || drop(black_box(r2d2.get().expect("r2d2 get"))),
    );
    println!(
        "  cycle, 4 idle: core (fixed) {core:.1} ns, r2d2 get+drop {peer:.1} ns: {:.3}x r2d2",
        core / peer
    );
    settled(&mut alloc, 4);
    settled(&mut fixed, 4);
    for (what, pool) in [
        ("1000 idle", idle_1000::<Alloc>()),
        ("1000 waiters", waiters_1000::<Alloc>()),
    ] {
        let (table, search) = interleaved(
            15,
            20_000,
            || {
                black_box(black_box(&*pool).poll_timeout());
            },
            || {
                black_box(deadline_by_search(black_box(&*pool)));
            },
        );
        println!(
            "  poll_timeout, {what}: table {table:.1} ns, search {search:.1} ns: {:.0}x faster",
            search / table
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    cycle(&mut c);
    keyed_1000::<Alloc>(&mut c, "alloc");
    keyed_1000::<Big>(&mut c, "fixed");
    waiter_handoff::<Alloc>(&mut c, "alloc");
    waiter_handoff::<Small>(&mut c, "fixed");
    handoff_256_waiting::<Alloc>(&mut c, "alloc");
    poll_timeout::<Alloc>(&mut c, "alloc");
    poll_timeout::<Big>(&mut c, "fixed");
    c.final_summary();
    ratios();
}
