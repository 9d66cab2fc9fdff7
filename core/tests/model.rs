//! Model-based tests: random input sequences run against the real pool and a deliberately simple
//! reference model (`model/reference.rs`), compared after every step (`model/harness.rs`): every
//! answer, every drained command with its connection, every handle (mapped one to one), the stats,
//! the next deadline. Both backends.
//!
//! `PROPTEST_CASES=N` runs more cases (default 512 per backend); `MODEL_TALLY=1` prints how often
//! each answer, command and state was reached. A failure is shrunk by proptest, then further by
//! [`minimize`], to a minimal op sequence; paste it into a plain `#[test]` below (the `Debug`
//! output is valid Rust here), as the regression tests at the end of this file are.

#![cfg(feature = "alloc")]

mod model {
    pub mod harness;
    pub mod reference;
}

use model::harness::{
    replay, run, Backend, KeyArg::*, Op, Op::*, Pick::*, Setup, WPick::*, WaitOp,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError};
use sanspool_core::{Alloc, Fixed, IdleOrder::*, KeepIdle::*, Returned::*};

// ------------------------------------------------------------------------------ strategies

fn setup(slots: usize) -> impl Strategy<Value = Setup> {
    let most = slots.min(5);
    (1..=most)
        .prop_flat_map(|max| (0..=max.min(3), Just(max)))
        .prop_flat_map(|(min, max)| {
            (
                Just(min),
                Just(max),
                prop_oneof![3 => Just(1024usize), 1 => 1..=3usize],
                prop_oneof![Just(UpToMax), Just(UpToMin)],
                prop_oneof![Just(Lifo), Just(Fifo)],
                prop_oneof![2 => Just(None), 1 => Just(Some(500u64)), 1 => Just(Some(2_000))],
                prop_oneof![2 => Just(None), 1 => Just(Some(300u64)), 1 => Just(Some(1_000))],
                prop_oneof![Just(1u64), Just(100)],
                prop_oneof![Just(50u64), Just(1_000)],
            )
        })
        .prop_map(
            |(min, max, max_waiting, keep_idle, idle_order, life, idle, b0, b1)| Setup {
                min,
                max,
                max_waiting,
                keep_idle,
                idle_order,
                max_lifetime: life,
                max_idle: idle,
                backoff_initial: b0,
                backoff_max: b1,
            },
        )
}

fn handle_pick() -> impl Strategy<Value = model::harness::Pick> {
    prop_oneof![
        12 => any::<u8>().prop_map(Live),
        2 => any::<u8>().prop_map(Old),
        1 => any::<u8>().prop_map(Foreign),
        1 => Just(NoSlot),
        1 => any::<u8>().prop_map(FutureGen),
    ]
}

fn millis() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(1u64),
        Just(60),
        Just(150),
        Just(400),
        Just(1_100),
        Just(2_500),
        Just(20_000)
    ]
}

fn op(slots: usize) -> impl Strategy<Value = Op> {
    let key = prop_oneof![1 => Just(None), 1 => (0..3u8).prop_map(Some)];
    let wait = prop_oneof![
        Just(WaitOp::No),
        prop_oneof![Just(0u64), Just(50), Just(500), Just(3_000)].prop_map(WaitOp::Until),
        Just(WaitOp::Forever),
    ];
    let key_arg = prop_oneof![3 => Just(NoKey), 3 => Just(Own), 1 => (0..3u8).prop_map(Key)];
    let returned =
        prop_oneof![4 => Just(Clean), 2 => Just(Dirty), 1 => Just(Broken), 1 => Just(Close)];
    let waiter = prop_oneof![
        3 => any::<u8>().prop_map(Waiting),
        1 => any::<u8>().prop_map(AnyWaiter),
        1 => Just(Forged),
    ];
    prop_oneof![
        24 => (key, wait).prop_map(|(key, wait)| Checkout { key, wait }),
        18 => (handle_pick(), key_arg, returned)
            .prop_map(|(lease, key, returned)| Checkin { lease, key, returned }),
        2 => handle_pick().prop_map(|lease| Detach { lease }),
        3 => waiter.prop_map(|waiter| Cancel { waiter }),
        18 => prop_oneof![Just(0u8), 1..=2u8].prop_map(|n| Poll { n }),
        8 => Just(Serve),
        15 => handle_pick().prop_map(|ticket| Opened { ticket }),
        4 => handle_pick().prop_map(|ticket| OpenFailed { ticket }),
        8 => (handle_pick(), prop::bool::weighted(0.8)).prop_map(|(ticket, ok)| ResetDone { ticket, ok }),
        10 => handle_pick().prop_map(|ticket| CloseDone { ticket }),
        5 => millis().prop_map(|ms| Tick { ms }),
        5 => millis().prop_map(|ms| Timeout { ms }),
        3 => Just(ToDeadline),
        2 => millis().prop_map(|ms| Backwards { ms }),
        3 => (0..=3usize, 0..=slots.min(5) + 1).prop_map(|(min, max)| Resize { min, max }),
        2 => Just(Drain),
        3 => Just(CheckIdle),
        1 => Just(CloseAll),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
}

fn check<S: Backend>() {
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 100_000,
        ..ProptestConfig::default()
    };
    let slots = S::SLOTS.min(5);
    let strategy = (setup(slots), prop::collection::vec(op(slots), 0..60));
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&strategy, |(setup, ops)| {
        run::<S>(&setup, &ops).map_err(TestCaseError::fail)
    });
    if std::env::var_os("MODEL_TALLY").is_some() {
        let tally = model::harness::take_tally();
        let lines: Vec<String> = tally.iter().map(|(k, v)| format!("{v:>8} {k}")).collect();
        eprintln!(
            "{} reached:\n{}",
            std::any::type_name::<S>(),
            lines.join("\n")
        );
    }
    match result {
        Ok(()) => {}
        Err(proptest::test_runner::TestError::Fail(why, (setup, ops))) => {
            let (setup, ops) = minimize::<S>(setup, ops);
            let why = run::<S>(&setup, &ops).err().unwrap_or(why.to_string());
            panic!("{why}\nminimal case:\nsetup: {setup:?}\nops: {ops:?}")
        }
        Err(e) => panic!("{e}"),
    }
}

/// Shrinks a failing case further than proptest's element-wise shrinking can: ops pick their
/// handles by index, so removing one op often changes what later ops pick and the failure hides.
/// Greedy delta debugging: drop chunks of ops, then single ops, then simplify picks and the setup,
/// keeping every change after which the case still fails.
fn minimize<S: Backend>(mut setup: Setup, mut ops: Vec<Op>) -> (Setup, Vec<Op>) {
    let fails = |setup: &Setup, ops: &[Op]| run::<S>(setup, ops).is_err();
    loop {
        let before = (format!("{setup:?}"), ops.len(), format!("{ops:?}"));
        let mut chunk = ops.len().div_ceil(2).max(1);
        while chunk >= 1 {
            let mut start = 0;
            while start < ops.len() {
                let mut shorter = ops.clone();
                shorter.drain(start..(start + chunk).min(ops.len()));
                if fails(&setup, &shorter) {
                    ops = shorter;
                } else {
                    start += chunk;
                }
            }
            chunk /= 2;
        }
        for i in 0..ops.len() {
            for simpler in simpler_ops(ops[i]) {
                let mut other = ops.clone();
                other[i] = simpler;
                if fails(&setup, &other) {
                    ops = other;
                    break;
                }
            }
        }
        let defaults = Setup::new(setup.min, setup.max);
        for simpler in [
            Setup {
                max_waiting: defaults.max_waiting,
                ..setup.clone()
            },
            Setup {
                keep_idle: defaults.keep_idle,
                ..setup.clone()
            },
            Setup {
                idle_order: defaults.idle_order,
                ..setup.clone()
            },
            Setup {
                max_lifetime: None,
                ..setup.clone()
            },
            Setup {
                max_idle: None,
                ..setup.clone()
            },
            Setup {
                backoff_initial: defaults.backoff_initial,
                ..setup.clone()
            },
            Setup {
                backoff_max: defaults.backoff_max,
                ..setup.clone()
            },
        ] {
            if fails(&simpler, &ops) {
                setup = simpler;
            }
        }
        if before == (format!("{setup:?}"), ops.len(), format!("{ops:?}")) {
            return (setup, ops);
        }
    }
}

/// Simpler forms of an op: the first handle of its list, drain everything.
fn simpler_ops(op: Op) -> Vec<Op> {
    use model::harness::Pick;
    let picks = |p: Pick| -> Vec<Pick> {
        match p {
            Live(0) | NoSlot => vec![],
            Live(_) => vec![Live(0)],
            Old(i) => vec![Live(0), Old(0), Old(i / 2)],
            Foreign(_) => vec![NoSlot, Foreign(0)],
            FutureGen(_) => vec![NoSlot, FutureGen(0)],
        }
    };
    match op {
        Checkin {
            lease,
            key,
            returned,
        } => picks(lease)
            .into_iter()
            .map(|lease| Checkin {
                lease,
                key,
                returned,
            })
            .chain((!matches!(returned, Clean)).then_some(Checkin {
                lease,
                key,
                returned: Clean,
            }))
            .collect(),
        Detach { lease } => picks(lease)
            .into_iter()
            .map(|lease| Detach { lease })
            .collect(),
        Opened { ticket } => picks(ticket)
            .into_iter()
            .map(|ticket| Opened { ticket })
            .collect(),
        OpenFailed { ticket } => picks(ticket)
            .into_iter()
            .map(|ticket| OpenFailed { ticket })
            .collect(),
        ResetDone { ticket, ok } => picks(ticket)
            .into_iter()
            .map(|ticket| ResetDone { ticket, ok })
            .collect(),
        CloseDone { ticket } => picks(ticket)
            .into_iter()
            .map(|ticket| CloseDone { ticket })
            .collect(),
        Cancel { waiter: Waiting(i) } if i > 0 => vec![Cancel { waiter: Waiting(0) }],
        Cancel {
            waiter: AnyWaiter(_),
        } => vec![
            Cancel { waiter: Waiting(0) },
            Cancel {
                waiter: AnyWaiter(0),
            },
        ],
        Poll { n } if n > 0 => vec![Poll { n: 0 }],
        Serve => vec![Poll { n: 0 }],
        _ => vec![],
    }
}

// ------------------------------------------------------------------------------ the properties

#[test]
fn model_alloc() {
    check::<Alloc>();
}

#[test]
fn model_fixed_3_2() {
    check::<Fixed<3, 2>>();
}

#[test]
fn model_fixed_2_1() {
    check::<Fixed<2, 1>>();
}

// ------------------------------------------------------------------------------ plain cases

/// The harness itself: a bad configuration is refused the same way by both.
#[test]
fn construction_errors_agree() {
    for (min, max) in [(0, 0), (2, 1), (0, 4), (3, 3)] {
        run::<Fixed<3, 1>>(&Setup::new(min, max), &[]).unwrap();
        run::<Alloc>(&Setup::new(min, max), &[]).unwrap();
    }
    run::<Alloc>(&Setup::new(0, 65_536), &[]).unwrap();
    for setup in [
        Setup {
            backoff_initial: 0,
            ..Setup::new(1, 2)
        },
        Setup {
            max_lifetime: Some(0),
            ..Setup::new(1, 2)
        },
    ] {
        run::<Alloc>(&setup, &[]).unwrap();
        run::<Fixed<3, 1>>(&setup, &[]).unwrap();
    }
}

/// A walk through the main paths, so a broken harness shows up even when proptest finds nothing.
#[test]
fn a_plain_life() {
    let setup = Setup::new(1, 2);
    let ops = [
        Poll { n: 0 },
        Opened { ticket: Live(0) },
        Poll { n: 0 },
        Checkout {
            key: Some(0),
            wait: WaitOp::No,
        },
        Checkout {
            key: Some(0),
            wait: WaitOp::No,
        },
        Checkout {
            key: None,
            wait: WaitOp::Until(100),
        },
        Poll { n: 0 },
        Opened { ticket: Live(0) },
        Poll { n: 0 },
        Checkin {
            lease: Live(0),
            key: Own,
            returned: Dirty,
        },
        Checkin {
            lease: Old(2),
            key: NoKey,
            returned: Clean,
        },
        Poll { n: 0 },
        ResetDone {
            ticket: Live(0),
            ok: true,
        },
        CloseAll,
        Poll { n: 0 },
        CloseDone { ticket: Live(0) },
        CloseDone { ticket: Live(0) },
        Checkin {
            lease: Live(0),
            key: NoKey,
            returned: Clean,
        },
        Poll { n: 0 },
        CloseDone { ticket: Live(0) },
    ];
    replay::<Alloc>(&setup, &ops);
    replay::<Fixed<2, 1>>(&setup, &ops);
}

/// A shrink closes only the excess idle connections, least recently used first (the core once
/// closed every idle connection: connections being closed still counted against the new max).
#[test]
fn shrink_closes_only_the_excess() {
    let ops = [
        Checkout {
            key: None,
            wait: WaitOp::Forever,
        },
        Checkout {
            key: None,
            wait: WaitOp::Forever,
        },
        Checkout {
            key: None,
            wait: WaitOp::Forever,
        },
        Poll { n: 0 },
        Opened { ticket: Live(0) },
        Opened { ticket: Live(0) },
        Opened { ticket: Live(0) },
        Poll { n: 0 },
        Checkin {
            lease: Live(0),
            key: NoKey,
            returned: Clean,
        },
        Checkin {
            lease: Live(0),
            key: NoKey,
            returned: Clean,
        },
        Checkin {
            lease: Live(0),
            key: NoKey,
            returned: Clean,
        },
        Resize { min: 0, max: 1 },
        Poll { n: 0 },
    ];
    replay::<Alloc>(&Setup::new(0, 3), &ops);
    replay::<Fixed<3, 2>>(&Setup::new(0, 3), &ops);
}

/// A refused input does not move the clock: a stale report arriving after the open backoff ended
/// used to advance `now` past it without ordering the open `min` asks for ("below min with room
/// to open").
#[test]
fn refused_input_leaves_the_clock() {
    let setup = Setup {
        backoff_initial: 100,
        backoff_max: 50,
        ..Setup::new(1, 1)
    };
    let ops = [
        Poll { n: 0 },
        OpenFailed { ticket: Live(0) },
        Tick { ms: 60 },
        OpenFailed { ticket: Old(0) },
    ];
    replay::<Alloc>(&setup, &ops);
    replay::<Fixed<2, 1>>(&setup, &ops);
}

/// The same through the other early exits: a checkout answered `Held` and a `check_idle` (which
/// did not settle) after the backoff ended.
#[test]
fn held_and_check_idle_leave_no_open_unordered() {
    let setup = Setup {
        backoff_initial: 100,
        ..Setup::new(2, 2)
    };
    let ops = [
        Poll { n: 0 },
        Opened { ticket: Live(0) },
        OpenFailed { ticket: Live(0) },
        Poll { n: 0 },
        Checkout {
            key: Some(1),
            wait: WaitOp::No,
        },
        Tick { ms: 150 },
        Checkout {
            key: Some(1),
            wait: WaitOp::No,
        },
        Tick { ms: 150 },
        CheckIdle,
    ];
    replay::<Alloc>(&setup, &ops);
    let ops = [
        Poll { n: 0 },
        Opened { ticket: Live(0) },
        OpenFailed { ticket: Live(0) },
        Tick { ms: 150 },
        CheckIdle,
    ];
    replay::<Alloc>(&setup, &ops);
}

/// A dirty connection returned past its lifetime is closed, not reset, and counted as expired,
/// like a clean one (the core counted only the clean ones).
#[test]
fn dirty_past_lifetime_counts_as_expired() {
    let setup = Setup {
        max_lifetime: Some(500),
        backoff_initial: 1,
        backoff_max: 50,
        ..Setup::new(0, 1)
    };
    let ops = [
        Checkout {
            key: None,
            wait: WaitOp::No,
        },
        Poll { n: 0 },
        Opened { ticket: Live(0) },
        Poll { n: 0 },
        Tick { ms: 1100 },
        Checkin {
            lease: Live(0),
            key: NoKey,
            returned: Dirty,
        },
    ];
    replay::<Alloc>(&setup, &ops);
    replay::<Fixed<2, 1>>(&setup, &ops);
}

// ------------------------------------------------------------------------------ found by fuzzing

/// A lifetime jitter of `Duration::MAX` overflowed `span + 1` as a connection opened (debug: an
/// overflow panic; release: a division by zero). Found by the fuzz seed "end-of-time". A jitter
/// not below the lifetime is now refused; the largest accepted one must not overflow either.
#[test]
fn huge_lifetime_jitter_does_not_overflow() {
    use sanspool_core::{Command, Config, Error, Pool, Time};
    use std::time::Duration;
    for lifetime in [Duration::from_millis(1), Duration::MAX] {
        let config = Config {
            max_lifetime: Some(lifetime),
            lifetime_jitter: Duration::MAX,
            ..Config::new(1, 1)
        };
        let refused = Pool::<u64, u8, Alloc>::new(config).err();
        assert_eq!(refused, Some(Error::InvalidTiming));
    }
    for jitter in [
        Duration::MAX - Duration::from_nanos(1),
        Duration::from_nanos(u64::MAX),
    ] {
        let config = Config {
            max_lifetime: Some(Duration::MAX),
            lifetime_jitter: jitter,
            ..Config::new(1, 1)
        };
        let mut pool: Pool<u64, u8, Alloc> = Pool::new(config).unwrap();
        let Some(Command::Open(ticket)) = pool.poll_command() else {
            panic!("no open for min")
        };
        pool.handle_opened(Time::ZERO, ticket, 1).unwrap();
        pool.assert_invariants();
    }
}

/// At the end of time, `poll_timeout` reported an idle deadline that had saturated to
/// `u64::MAX` while `handle_timeout` (comparing "idle for" with `max_idle`) did not act on it: a
/// driver waking at that deadline would spin. Found by the `ops` fuzz target.
#[test]
fn saturated_idle_deadline_is_acted_on() {
    use sanspool_core::{Checkout, Command, Config, Pool, Returned, Time, Wait};
    use std::time::Duration;
    let config = Config {
        max_idle: Some(Duration::MAX),
        ..Config::new(0, 1)
    };
    let mut pool: Pool<u64, u8, Alloc> = Pool::new(config).unwrap();
    assert_eq!(pool.poll_command(), Some(Command::Ready)); // min = 0
    let t1 = Time::from_nanos(1);
    let Ok(Checkout::Waiting(_)) = pool.handle_checkout(t1, None, Wait::No) else {
        panic!("no room to open")
    };
    let Some(Command::Open(ticket)) = pool.poll_command() else {
        panic!("no open")
    };
    pool.handle_opened(t1, ticket, 1).unwrap();
    let Some(Command::Grant { lease, conn, .. }) = pool.poll_command() else {
        panic!("no grant")
    };
    pool.handle_checkin(t1, lease, None, conn, Returned::Clean)
        .unwrap();
    let end = Time::from_nanos(u64::MAX);
    pool.handle_timeout(end);
    pool.assert_invariants();
    if let Some(t) = pool.poll_timeout() {
        assert!(
            t > pool.now(),
            "deadline {t:?} at or before now {:?}",
            pool.now()
        );
    }
}
