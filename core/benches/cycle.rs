//! Benchmarks of the sans-IO core alone: no driver, no I/O, no clock — only the bookkeeping an
//! adapter pays for on every checkout and checkin.
//!
//! - `checkout_checkin/{alloc,fixed}`: one unkeyed checkout of an idle connection and its clean
//!   checkin, in a pool warmed to 8 open connections.
//! - `keyed_1000/...`: 1 000 open connections. `{alloc,fixed}/cycle`: each iteration checks out and
//!   back in under the next of 1 000 keys. `{alloc,fixed}/999_held`: 999 keys hold a connection each
//!   and the last one cycles under fresh keys, so every lookup runs against 999 live keys (a miss:
//!   the worst case of the fixed backend's scan). `{alloc,fixed}/held_again`: a checkout under one of
//!   the 999 held keys, answered `Held` (the lookup alone).
//! - `waiter_handoff/{alloc,fixed}`: a pool of one connection. Each iteration queues a checkout, checks
//!   the connection in (it goes straight to that waiter) and drains the `Grant`; the waiter's checkin
//!   is the next iteration's handoff.
//! - `poll_timeout_1000_idle/{alloc,fixed}`: the next-deadline query a driver makes after each input,
//!   with 1 000 idle connections that have a lifetime.

use criterion::{criterion_group, criterion_main, Criterion};
use sanspool_core::storage::Storage;
use sanspool_core::{Alloc, Checkout, Command, Config, Fixed, Lease, Pool, Returned, Time, Wait};
use std::hint::black_box;
use std::time::Duration;

const NOW: Time = Time::ZERO;
const KEYS: u32 = 1000;

type Small = Fixed<8, 8>;
/// 1 024 slots inline (a 92 KiB pool with `u32` connections and keys): boxed, see `warmed`.
type Big = Fixed<1024, 16>;

/// A pool with its opens done: every `min` connection idle.
fn warmed<S: Storage<u32, u32>>(config: Config) -> Box<Pool<u32, u32, S>> {
    let mut pool = Box::new(Pool::new(config).expect("config"));
    let mut next = 0;
    while let Some(cmd) = pool.poll_command() {
        match cmd {
            Command::Open(ticket) => {
                next += 1;
                pool.handle_opened(NOW, ticket, next).expect("opened");
            }
            Command::Ready => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pool.stats().idle, pool.config().min);
    pool
}

fn checkout<S: Storage<u32, u32>>(pool: &mut Pool<u32, u32, S>, key: Option<u32>) -> (Lease, u32) {
    match pool.handle_checkout(NOW, black_box(key), Wait::No) {
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
    let done = pool.handle_checkin(
        NOW,
        black_box(lease),
        black_box(key),
        black_box(conn),
        Returned::Clean,
    );
    if let Err(r) = done {
        panic!("checkin: {}", r.error);
    }
}

/// The pool is as it was before the benchmark: nothing to do, nothing lost.
fn settled<S: Storage<u32, u32>>(pool: &mut Pool<u32, u32, S>, idle: usize) {
    assert!(pool.poll_command().is_none());
    assert_eq!(pool.stats().idle, idle);
    pool.assert_invariants();
}

fn checkout_checkin<S: Storage<u32, u32>>(c: &mut Criterion, name: &str) {
    let mut group = c.benchmark_group("checkout_checkin");
    group.bench_function(name, |b| {
        let mut pool = warmed::<S>(Config::new(8, 8));
        b.iter(|| {
            let (lease, conn) = checkout(&mut pool, None);
            checkin(&mut pool, lease, None, conn);
        });
        settled(&mut pool, 8);
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
            match pool.handle_checkout(NOW, black_box(Some(k)), Wait::No) {
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
        let mut pool = warmed::<S>(Config::new(1, 1));
        let (mut lease, mut conn) = checkout(&mut pool, None);
        b.iter(|| {
            let Ok(Checkout::Waiting(w)) = pool.handle_checkout(NOW, None, Wait::Forever) else {
                panic!("the checkout did not queue")
            };
            checkin(&mut pool, lease, None, conn);
            match pool.poll_command() {
                Some(Command::Grant {
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

fn poll_timeout_1000_idle<S: Storage<u32, u32>>(c: &mut Criterion, name: &str) {
    let mut group = c.benchmark_group("poll_timeout_1000_idle");
    group.bench_function(name, |b| {
        let mut config = Config::new(KEYS as usize, KEYS as usize);
        config.max_lifetime = Some(Duration::from_secs(3600));
        let pool = warmed::<S>(config);
        b.iter(|| black_box(&pool).poll_timeout());
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    checkout_checkin::<Alloc>(c, "alloc");
    checkout_checkin::<Small>(c, "fixed");
    keyed_1000::<Alloc>(c, "alloc");
    keyed_1000::<Big>(c, "fixed");
    waiter_handoff::<Alloc>(c, "alloc");
    waiter_handoff::<Small>(c, "fixed");
    poll_timeout_1000_idle::<Alloc>(c, "alloc");
    poll_timeout_1000_idle::<Big>(c, "fixed");
}

criterion_group!(cycle, benches);
criterion_main!(cycle);
