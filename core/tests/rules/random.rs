//! Long simulated lives: deterministic pseudo-random drivers across configurations, with every
//! check of the simulated driver after every step.

use crate::refused;
use sanspool_core::testkit::{secs, Conn, Sim};
use sanspool_core::{
    Checkout, Config, Error, IdleOrder, KeepIdle, Returned, Storage, Time, Wait, WaiterId,
};
use std::time::Duration;

on_both_backends! {
    long_simulated_run,
    random_drivers_across_configs,
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len() as u64) as usize])
        }
    }
}

/// Hours of simulated pool life in a few thousand deterministic pseudo-random steps (checkouts of
/// every kind, checkins in every state, lifetimes, idle expiry, failed opens and resets, cancels,
/// detaches, checks, drains, resizes): invariants and conservation hold at every step, and occupied
/// connections never exceed `max` (nor grow while above it after a shrink).
fn long_simulated_run<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        max_lifetime: Some(Duration::from_secs(1800)),
        lifetime_jitter: Duration::from_secs(300),
        max_idle: Some(Duration::from_secs(600)),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_secs(5),
        max_waiting: 6,
        ..Config::new(2, 6)
    });
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut waiting = Vec::new();
    for _ in 0..5000 {
        let now = sim.now;
        match rng.below(100) {
            0..=29 => {
                let key = (rng.below(4) == 0).then(|| rng.below(5));
                let wait = match rng.below(4) {
                    0 => Wait::No,
                    1 => Wait::Forever,
                    _ => Wait::Until(now.saturating_add(Duration::from_millis(rng.below(30_000)))),
                };
                match sim.checkout(key, wait) {
                    Ok(Checkout::Waiting(w)) => waiting.push(w),
                    Ok(_) => {}
                    Err(Error::Exhausted | Error::KeyBusy | Error::TooManyWaiters) => {}
                    Err(e) => panic!("checkout refused: {e}"),
                }
            }
            30..=59 => {
                let held: Vec<Conn> = sim.held.keys().copied().collect();
                if let Some(conn) = rng.pick(&held) {
                    let returned = match rng.below(20) {
                        0..=13 => Returned::Clean,
                        14..=16 => Returned::Dirty,
                        17..=18 => Returned::Broken,
                        _ => Returned::Close,
                    };
                    sim.put(conn, returned);
                }
            }
            60..=79 => sim.advance(Duration::from_millis(rng.below(60_000))),
            80..=83 => sim.fail_opens += rng.below(4) as usize,
            84..=85 => sim.fail_resets += 1,
            86..=87 => {
                waiting.retain(|w| !sim.grants.contains_key(w) && !sim.fails.contains_key(w));
                if let Some(w) = rng.pick(&waiting) {
                    sim.cancel(w).unwrap();
                    waiting.retain(|x| *x != w);
                }
            }
            88 => {
                let held: Vec<Conn> = sim.held.keys().copied().collect();
                if let Some(conn) = rng.pick(&held) {
                    sim.detach(conn).unwrap();
                }
            }
            89..=90 => {
                sim.check_idle().unwrap();
            }
            91 => sim.drain().unwrap(),
            92..=93 => {
                let min = rng.below(4) as usize;
                let max = (min + rng.below(6) as usize).max(1);
                sim.resize(min, max).unwrap();
            }
            94 => sim.with(|p, now| {
                p.handle_timeout(Time::from_nanos(
                    now.as_nanos().saturating_sub(1_000_000_000),
                ))
            }),
            _ => sim.run_until(now.saturating_add(Duration::from_secs(rng.below(600)))),
        }
    }
    assert!(sim.now > secs(4 * 3600), "simulated {:?}", sim.now);
    let s = sim.stats();
    assert!(
        s.opens > 100 && s.expired > 10 && s.open_failures > 10,
        "{s:?}"
    );
    assert!(
        s.timeouts > 0 && s.waits > 0 && s.resets > 0 && s.broken_returns > 0,
        "{s:?}"
    );

    sim.close().unwrap();
    let held: Vec<Conn> = sim.held.keys().copied().collect();
    for conn in held {
        let lease = sim.lease(conn);
        let (error, _) = refused(sim.checkin(lease, None, conn, Returned::Clean));
        assert_eq!(error, Error::Closed);
    }
    assert!(sim.pool().is_empty());
    assert!(sim.steps() > 5_000);
}

/// Many short lives, each with its own random configuration and a driver that completes opens,
/// closes, resets and checks out of order, sometimes late, sometimes failing, and sometimes leaves
/// commands queued: invariants, conservation, FIFO service, key ownership and `max` hold at every
/// step, `poll_timeout` names every time the pool would act, and every life ends empty.
fn random_drivers_across_configs<S: Storage<Conn, u64>>() {
    for seed in 1..=60 {
        random_driver::<S>(seed);
    }
}

fn random_driver<S: Storage<Conn, u64>>(seed: u64) {
    let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let max = 1 + rng.below(6) as usize;
    let min = rng.below(max as u64 + 1) as usize;
    let lifetimes = [None, Some(5), Some(60)].map(|s| s.map(Duration::from_secs));
    let mut sim = Sim::<S>::manual(Config {
        max_lifetime: lifetimes[rng.below(3) as usize],
        lifetime_jitter: Duration::from_secs(rng.below(3)),
        max_idle: lifetimes[rng.below(3) as usize],
        backoff_initial: Duration::from_millis(rng.below(200)),
        backoff_max: Duration::from_millis(1 + rng.below(3000)),
        max_waiting: [0, 1, 3, 1024][rng.below(4) as usize],
        keep_idle: [KeepIdle::UpToMax, KeepIdle::UpToMin][rng.below(2) as usize],
        idle_order: [IdleOrder::Lifo, IdleOrder::Fifo][rng.below(2) as usize],
        ..Config::new(min, max)
    });
    for _ in 0..1500 {
        let now = sim.now;
        match rng.below(100) {
            0..=24 => {
                let key = (rng.below(3) == 0).then(|| rng.below(4));
                let wait = match rng.below(4) {
                    0 => Wait::No,
                    1 => Wait::Forever,
                    _ => Wait::Until(now.saturating_add(Duration::from_millis(rng.below(10_000)))),
                };
                match sim.checkout(key, wait) {
                    Ok(_) => {}
                    Err(Error::Exhausted | Error::KeyBusy | Error::TooManyWaiters) => {}
                    Err(Error::Closed) if sim.pool().is_closed() => {}
                    Err(e) => panic!("checkout refused: {e}"),
                }
            }
            25..=44 => {
                let held: Vec<Conn> = sim.held.keys().copied().collect();
                if let Some(conn) = rng.pick(&held) {
                    let returned = [
                        Returned::Clean,
                        Returned::Clean,
                        Returned::Dirty,
                        Returned::Broken,
                        Returned::Close,
                    ];
                    let returned = returned[rng.below(5) as usize];
                    let out = sim.checkin(sim.lease(conn), None, conn, returned);
                    assert!(out.is_ok() || sim.pool().is_closed());
                }
            }
            45..=54 if !sim.opens.is_empty() => {
                let i = rng.below(sim.opens.len() as u64) as usize;
                let ticket = sim.opens.remove(i);
                sim.opens.insert(0, ticket);
                sim.fail_opens += usize::from(rng.below(4) == 0);
                sim.open_next();
            }
            55..=62 if !sim.closes.is_empty() => {
                let i = rng.below(sim.closes.len() as u64) as usize;
                let close = sim.closes.remove(i);
                sim.closes.insert(0, close);
                sim.close_next();
            }
            // Resets and checks wait in separate lists now; one pick over both keeps the old
            // driver's choices.
            63..=70 if !sim.resets.is_empty() || !sim.checks.is_empty() => {
                let resets = sim.resets.len();
                let i = rng.below((resets + sim.checks.len()) as u64) as usize;
                sim.fail_resets += usize::from(rng.below(4) == 0);
                if i < resets {
                    let reset = sim.resets.remove(i);
                    sim.resets.insert(0, reset);
                    sim.reset_next();
                } else {
                    let check = sim.checks.remove(i - resets);
                    sim.checks.insert(0, check);
                    sim.check_next();
                }
            }
            71..=82 => {
                let t = now.saturating_add(Duration::from_millis(rng.below(5000)));
                match sim.pool().poll_timeout() {
                    Some(next) if next <= t => sim.advance_to(t),
                    _ => sim.unchanged(|s| s.advance_to(t)),
                }
            }
            83..=84 => {
                let waiting: Vec<WaiterId> = sim.waiting.iter().copied().collect();
                if let Some(w) = rng.pick(&waiting) {
                    let _ = sim.cancel(w);
                }
            }
            85 => {
                let held: Vec<Conn> = sim.held.keys().copied().collect();
                if let Some(conn) = rng.pick(&held) {
                    let _ = sim.detach(conn);
                }
            }
            86..=87 => {
                let _ = sim.check_idle();
            }
            88 => {
                let _ = sim.drain();
            }
            89..=91 => {
                let max = 1 + rng.below(6) as usize;
                let _ = sim.resize(rng.below(max as u64 + 1) as usize, max);
            }
            92 if rng.below(30) == 0 => {
                let _ = sim.close();
            }
            93 => {
                sim.auto_poll = !sim.auto_poll;
                sim.poll();
            }
            94..=99 => {
                let t = now.saturating_add(Duration::from_millis(rng.below(20_000)));
                sim.run_until(t);
            }
            _ => {}
        }
    }
    let _ = sim.close();
    (sim.auto_poll, sim.auto_open, sim.auto_close, sim.auto_reset) = (true, true, true, true);
    sim.fail_opens = 0;
    sim.poll();
    while !sim.opens.is_empty() {
        sim.open_next();
    }
    while !sim.resets.is_empty() {
        sim.reset_next();
    }
    while !sim.checks.is_empty() {
        sim.check_next();
    }
    while !sim.closes.is_empty() {
        sim.close_next();
    }
    let held: Vec<Conn> = sim.held.keys().copied().collect();
    for conn in held {
        let out = sim.checkin(sim.lease(conn), None, conn, Returned::Clean);
        assert_eq!(refused(out), (Error::Closed, None));
    }
    assert!(sim.pool().is_empty(), "seed {seed}: {:?}", sim.stats());
    assert!(sim.waiting.is_empty());
}
