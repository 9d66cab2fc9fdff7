//! The fixed backend does no heap allocation: neither to construct a pool nor in any of its
//! operations afterwards.
//!
//! A counting global allocator wraps the system one. It counts only while the *current thread* is
//! armed (a thread-local flag), so allocations made meanwhile by the test harness or by other tests'
//! threads are not counted, and counted regions are serialized by a lock, so two tests never share
//! the counters. The pool is driven by the test kit's checking driver ([`Sim`]), whose probe arms
//! the counter around every call into the pool and disarms it around the driver's own bookkeeping:
//! what is counted is exactly what the pool does. The tests also show the counter is not blind: it
//! moves for a deliberate `Vec`, and for the very same workload on the [`Alloc`] backend.

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sanspool_core::testkit::{
    self, seeds, vocab, Back, Case, Cmd, Conn, KeyArg, Op, Outcome, Pick, Sim, WPick, WaitArg,
};
use sanspool_core::{Alloc, Checkout, Config, Error, Fixed, FixedPool, Stats, Storage, Wait};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

// ------------------------------------------------------------------------------ the allocator

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static REALLOCS: AtomicUsize = AtomicUsize::new(0);
static DEALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and without a destructor: reading it never allocates, so the allocator may use it.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn armed() -> bool {
    ARMED.try_with(Cell::get).unwrap_or(false)
}

fn count(counter: &AtomicUsize) {
    if armed() {
        counter.fetch_add(1, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only atomics and a
// `const` thread-local `Cell`, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCS);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(&ALLOCS);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(&REALLOCS);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(&DEALLOCS);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap calls made by the current thread while armed, inside one counted region.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Heap {
    allocs: usize,
    reallocs: usize,
    deallocs: usize,
}

impl Heap {
    const NONE: Heap = Heap {
        allocs: 0,
        reallocs: 0,
        deallocs: 0,
    };
}

/// One counted region at a time, across all the tests of this binary.
static SERIAL: Mutex<()> = Mutex::new(());

/// Disarms on drop, so a panic inside a counted region does not leave the thread armed.
struct Disarm;

impl Drop for Disarm {
    fn drop(&mut self) {
        ARMED.with(|a| a.set(false));
    }
}

/// Arms (`true`) or disarms this thread: the [`Sim`] probe.
fn probe(on: bool) {
    ARMED.with(|a| a.set(on));
}

/// Runs `f` as a counted region, armed from the start if `armed` (else only where `f` arms it,
/// through [`probe`]); returns its result and the heap calls made while armed.
fn counted<R>(armed: bool, f: impl FnOnce() -> R) -> (R, Heap) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    ALLOCS.store(0, Relaxed);
    REALLOCS.store(0, Relaxed);
    DEALLOCS.store(0, Relaxed);
    let disarm = Disarm;
    probe(armed);
    let out = f();
    drop(disarm);
    let heap = Heap {
        allocs: ALLOCS.load(Relaxed),
        reallocs: REALLOCS.load(Relaxed),
        deallocs: DEALLOCS.load(Relaxed),
    };
    (out, heap)
}

/// Runs `f` with this thread armed throughout.
fn measure<R>(f: impl FnOnce() -> R) -> (R, Heap) {
    counted(true, f)
}

/// Runs `f` armed only where the probe arms it: around the pool's own calls.
fn probed<R>(f: impl FnOnce() -> R) -> (R, Heap) {
    counted(false, f)
}

// ------------------------------------------------------------------------------ the workload

/// What a workload reached: every op kind, argument kind, command kind and waiter failure seen,
/// how many times, and the pools' counters summed. The workload asserts it reached them all.
#[derive(Debug, Default)]
struct Reach {
    kinds: BTreeMap<&'static str, u64>,
    cases: u64,
    pools: u64,
    steps: u64,
    stats: Stats,
}

/// Every kind [`Reach::note_op`] and [`Reach::note_cmd`] can name. The matches there are
/// exhaustive, so a new variant must be named, and the test checks the names seen are these.
const KINDS: &[&str] = &[
    // Op
    "op:Checkout",
    "op:Checkin",
    "op:Detach",
    "op:Cancel",
    "op:Claim",
    "op:Poll",
    "op:Serve",
    "op:Opened",
    "op:OpenFailed",
    "op:ResetDone",
    "op:CheckDone",
    "op:CloseDone",
    "op:Tick",
    "op:Timeout",
    "op:ToDeadline",
    "op:Backwards",
    "op:FarFuture",
    "op:Resize",
    "op:Drain",
    "op:CheckIdle",
    "op:Close",
    // their arguments
    "wait:No",
    "wait:Until",
    "wait:Forever",
    "wait:Past",
    "wait:End",
    "key:None",
    "key:Some",
    "back:Clean",
    "back:Dirty",
    "back:Broken",
    "back:Close",
    "outcome:Ok",
    "outcome:Failed",
    "outcome:Abandoned",
    "checkin-key:NoKey",
    "checkin-key:Own",
    "checkin-key:Key",
    "pick:Live",
    "pick:Old",
    "pick:Foreign",
    "pick:NoSlot",
    "pick:FutureGen",
    "pick:Raw",
    "waiter:Waiting",
    "waiter:Any",
    "waiter:Raw",
    // Outputs (I/O, hand-offs, reports), as the driver drained them
    "cmd:Open",
    "cmd:Close",
    "cmd:Reset",
    "cmd:Check",
    "cmd:Vet",
    "cmd:Grant",
    "cmd:Wake",
    "cmd:Leak",
    "cmd:Fail",
    // why queued checkouts failed
    "fail:Timeout",
    "fail:Closed",
    "fail:OpenFailed",
    "fail:Exhausted",
];

impl Reach {
    fn note(&mut self, kind: &'static str) {
        *self.kinds.entry(kind).or_default() += 1;
    }

    fn note_outcome(&mut self, outcome: Outcome) {
        self.note(match outcome {
            Outcome::Ok => "outcome:Ok",
            Outcome::Failed => "outcome:Failed",
            Outcome::Abandoned => "outcome:Abandoned",
        });
    }

    fn note_pick(&mut self, pick: Pick) {
        self.note(match pick {
            Pick::Live(_) => "pick:Live",
            Pick::Old(_) => "pick:Old",
            Pick::Foreign(_) => "pick:Foreign",
            Pick::NoSlot => "pick:NoSlot",
            Pick::FutureGen(_) => "pick:FutureGen",
            Pick::Raw(..) => "pick:Raw",
        });
    }

    fn note_op(&mut self, op: &Op) {
        let kind = match *op {
            Op::Checkout { key, wait } => {
                self.note(if key.is_some() {
                    "key:Some"
                } else {
                    "key:None"
                });
                self.note(match wait {
                    WaitArg::No => "wait:No",
                    WaitArg::Until(_) => "wait:Until",
                    WaitArg::Forever => "wait:Forever",
                    WaitArg::Past => "wait:Past",
                    WaitArg::End => "wait:End",
                });
                "op:Checkout"
            }
            Op::Checkin { lease, key, back } => {
                self.note_pick(lease);
                self.note(match key {
                    KeyArg::NoKey => "checkin-key:NoKey",
                    KeyArg::Own => "checkin-key:Own",
                    KeyArg::Key(_) => "checkin-key:Key",
                });
                self.note(match back {
                    Back::Clean => "back:Clean",
                    Back::Dirty => "back:Dirty",
                    Back::Broken => "back:Broken",
                    Back::Close => "back:Close",
                });
                "op:Checkin"
            }
            Op::Detach { lease } => {
                self.note_pick(lease);
                "op:Detach"
            }
            Op::Claim { waiter } | Op::Cancel { waiter } => {
                self.note(match waiter {
                    WPick::Waiting(_) => "waiter:Waiting",
                    WPick::Any(_) => "waiter:Any",
                    WPick::Raw(_) => "waiter:Raw",
                });
                if matches!(op, Op::Claim { .. }) {
                    "op:Claim"
                } else {
                    "op:Cancel"
                }
            }
            Op::Poll { .. } => "op:Poll",
            Op::Serve => "op:Serve",
            Op::Opened { ticket } => {
                self.note_pick(ticket);
                "op:Opened"
            }
            Op::OpenFailed { ticket, .. } => {
                self.note_pick(ticket);
                "op:OpenFailed"
            }
            Op::ResetDone { ticket, outcome } => {
                self.note_pick(ticket);
                self.note_outcome(outcome);
                "op:ResetDone"
            }
            Op::CheckDone { ticket, outcome } => {
                self.note_pick(ticket);
                self.note_outcome(outcome);
                "op:CheckDone"
            }
            Op::CloseDone { ticket, outcome } => {
                self.note_pick(ticket);
                self.note_outcome(outcome);
                "op:CloseDone"
            }
            Op::Tick { .. } => "op:Tick",
            Op::Timeout { .. } => "op:Timeout",
            Op::ToDeadline => "op:ToDeadline",
            Op::Backwards { .. } => "op:Backwards",
            Op::FarFuture => "op:FarFuture",
            Op::Resize { .. } => "op:Resize",
            Op::Drain => "op:Drain",
            Op::CheckIdle => "op:CheckIdle",
            Op::Close => "op:Close",
        };
        self.note(kind);
    }

    fn note_cmd(&mut self, cmd: &Cmd) {
        let kind = match cmd {
            Cmd::Open => "cmd:Open",
            Cmd::Close(_) => "cmd:Close",
            Cmd::Reset(_) => "cmd:Reset",
            Cmd::Check(_) => "cmd:Check",
            Cmd::Vet(_) => "cmd:Vet",
            Cmd::Grant(..) => "cmd:Grant",
            Cmd::Wake(_) => "cmd:Wake",
            Cmd::Leak(_) => "cmd:Leak",
            Cmd::Fail(_, error) => {
                self.note(match error {
                    Error::Timeout => "fail:Timeout",
                    Error::Closed => "fail:Closed",
                    Error::OpenFailed => "fail:OpenFailed",
                    Error::Exhausted => "fail:Exhausted",
                    other => panic!("a waiter failed with {other:?}"),
                });
                "cmd:Fail"
            }
        };
        self.note(kind);
    }

    fn add_stats(&mut self, s: Stats) {
        let t = &mut self.stats;
        t.checkouts += s.checkouts;
        t.waits += s.waits;
        t.timeouts += s.timeouts;
        t.opens += s.opens;
        t.open_failures += s.open_failures;
        t.closes += s.closes;
        t.broken_returns += s.broken_returns;
        t.resets += s.resets;
        t.abandoned_resets += s.abandoned_resets;
        t.abandoned_checks += s.abandoned_checks;
        t.vets += s.vets;
        t.stale += s.stale;
        t.abandoned_closes += s.abandoned_closes;
        t.expired += s.expired;
        t.detached += s.detached;
    }

    /// Panics unless every kind (but those `out_of_reach` of this storage) and every counter was
    /// reached.
    fn assert_complete(&self, what: &str, out_of_reach: &[&str]) {
        let seen: BTreeSet<&str> = self.kinds.keys().copied().collect();
        let all: BTreeSet<&str> = KINDS.iter().copied().collect();
        let missed: Vec<&str> = all
            .difference(&seen)
            .copied()
            .filter(|kind| !out_of_reach.contains(kind))
            .collect();
        let unknown: Vec<&str> = seen.difference(&all).copied().collect();
        assert!(
            missed.is_empty() && unknown.is_empty(),
            "{what}: never reached {missed:?}; not in KINDS: {unknown:?}\n{self:#?}"
        );
        let s = &self.stats;
        let counters = [
            ("checkouts", s.checkouts),
            ("waits", s.waits),
            ("timeouts", s.timeouts),
            ("opens", s.opens),
            ("open failures", s.open_failures),
            ("closes", s.closes),
            ("broken returns", s.broken_returns),
            ("resets", s.resets),
            ("abandoned resets", s.abandoned_resets),
            ("abandoned checks", s.abandoned_checks),
            ("vets", s.vets),
            ("stale", s.stale),
            ("abandoned closes", s.abandoned_closes),
            ("expired", s.expired),
            ("detached", s.detached),
        ];
        for (counter, n) in counters {
            assert!(n > 0, "{what}: never reached {counter}\n{self:#?}");
        }
        assert!(
            s.checkouts >= 500 && self.steps >= 10_000,
            "{what}: too little work to prove anything\n{self:#?}"
        );
    }
}

/// `case` fitted to a storage of `slots` connections, so that its pool is built on every
/// capacity (`max` at most `slots`, `min` and `min_idle` at most `max`).
fn fit(case: &Case, slots: u8) -> Case {
    let mut case = case.clone();
    let max = (case.setup.max % 7).clamp(1, slots);
    case.setup.max = max;
    case.setup.min = (case.setup.min % 6).min(max);
    case.setup.min_idle = (case.setup.min_idle % 4).min(max);
    case
}

/// The cases every workload plays: the test kit's seeds, then `n` generated ones (proptest's
/// strategy over the vocabulary, from a fixed seed, so every run plays the same cases).
fn cases(n: usize) -> Vec<Case> {
    let mut all: Vec<Case> = seeds::all().into_iter().map(|(_, case)| case).collect();
    let strategy = vocab::cases(120);
    let mut runner = TestRunner::deterministic();
    for _ in 0..n {
        let tree = strategy.new_tree(&mut runner).expect("a generated case");
        all.push(tree.current());
    }
    all
}

/// Plays every case on storage `S` (fitted to `slots`) with the probe set, so that only the
/// pool's own calls are counted, every check of the test kit after every step, and
/// [`Sim::finish`] (close, serve, every connection closed or detached) at the end of each.
fn workload<S: Storage<Conn, u8>>(slots: u8, cases: &[Case]) -> (Reach, Heap) {
    probed(|| {
        let mut reach = Reach::default();
        for case in cases {
            let case = fit(case, slots);
            reach.cases += 1;
            let Ok(mut sim) = Sim::<S, u8>::from_setup(&case.setup) else {
                continue;
            };
            reach.pools += 1;
            sim.set_probe(probe);
            for op in &case.ops {
                reach.note_op(op);
                sim.step(op);
                for cmd in sim.take_log() {
                    reach.note_cmd(&cmd);
                }
            }
            reach.add_stats(sim.stats());
            sim.finish();
            for cmd in sim.take_log() {
                reach.note_cmd(&cmd);
            }
            reach.steps += sim.steps();
        }
        reach
    })
}

/// The generated cases of each workload.
const GENERATED: usize = 500;

// ------------------------------------------------------------------------------ the tests

#[test]
fn the_counter_counts() {
    let (v, heap) = measure(|| black_box(Vec::<u64>::with_capacity(black_box(16))));
    assert!(heap.allocs >= 1, "a Vec was allocated unseen: {heap:?}");
    drop(v);
    let ((), heap) = measure(|| {
        let mut v = black_box(Vec::<u64>::with_capacity(1));
        v.extend(black_box(0..100));
        drop(black_box(v));
    });
    assert!(
        heap.allocs >= 1 && heap.reallocs >= 1 && heap.deallocs >= 1,
        "{heap:?}"
    );
    let ((), heap) = measure(|| ());
    assert_eq!(heap, Heap::NONE);

    // In a probed region, only what happens between probe(true) and probe(false) counts.
    let ((), heap) = probed(|| drop(black_box(vec![1u8; 64])));
    assert_eq!(
        heap,
        Heap::NONE,
        "allocations outside the probe were counted"
    );
    let ((), heap) = probed(|| {
        let outside = black_box(vec![1u8; 64]);
        probe(true);
        let inside = black_box(vec![2u8; 64]);
        drop(inside);
        probe(false);
        drop(outside);
    });
    assert_eq!(
        heap,
        Heap {
            allocs: 1,
            reallocs: 0,
            deallocs: 1
        },
        "the probe's window is not what was counted"
    );
}

/// Needs a second thread: WebAssembly without the `atomics` feature (wasm32-wasip1, where
/// scripts/wasm.sh runs this file) has none — `thread::spawn` panics there, and a panic aborts the
/// whole test binary.
#[test]
#[cfg_attr(
    all(target_family = "wasm", not(target_feature = "atomics")),
    ignore = "no threads on this WebAssembly target"
)]
fn other_threads_are_not_counted() {
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (stop, busy) = (Arc::clone(&stop), Arc::clone(&busy));
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                drop(black_box(vec![0u8; 64]));
                busy.fetch_add(1, Relaxed);
            }
        })
    };
    while busy.load(Relaxed) == 0 {
        std::thread::yield_now();
    }
    let before = busy.load(Relaxed);
    let ((), heap) = measure(|| std::thread::sleep(Duration::from_millis(20)));
    let during = busy.load(Relaxed) - before;
    stop.store(true, Relaxed);
    worker.join().unwrap();
    assert!(during > 0, "the other thread did not allocate meanwhile");
    assert_eq!(
        heap,
        Heap::NONE,
        "another thread's allocations were counted"
    );
}

/// `Pool::new` on fixed storage, measured directly: accepted or refused, on every capacity, for
/// hand-picked configurations and for every case's; dropping the pool frees nothing either.
#[test]
fn constructing_a_fixed_pool_does_not_allocate() {
    fn construct<const SLOTS: usize, const WAITERS: usize>(configs: &[Config]) -> usize {
        let mut built = 0;
        for config in configs {
            let config = config.clone();
            let (pool, heap) = measure(|| FixedPool::<Conn, u8, SLOTS, WAITERS>::new(config));
            assert_eq!(heap, Heap::NONE, "Pool::new allocated ({SLOTS} slots)");
            if let Ok(pool) = pool {
                built += 1;
                testkit::assert_invariants(&pool);
                let ((), heap) = measure(|| drop(pool));
                assert_eq!(heap, Heap::NONE, "dropping the pool touched the heap");
            }
        }
        built
    }

    let mut configs = vec![
        Config::new(0, 1),
        Config::new(1, 1),
        Config::new(2, 3),
        Config::new(8, 8),
        Config::psycopg2(1, 4),
    ];
    configs.extend(cases(GENERATED).iter().map(|case| case.setup.config()));
    assert!(construct::<1, 1>(&configs) >= 2);
    assert!(construct::<2, 1>(&configs) >= 3);
    assert!(construct::<3, 2>(&configs) >= 4);
    let built = construct::<8, 8>(&configs);
    assert!(
        built > configs.len() / 2,
        "only {built} of {} pools built",
        configs.len()
    );

    let (errors, heap) = measure(|| {
        [
            FixedPool::<Conn, u8, 8, 8>::new(Config::new(0, 9)).err(),
            FixedPool::<Conn, u8, 8, 8>::new(Config::new(3, 2)).err(),
            FixedPool::<Conn, u8, 8, 8>::new(Config::new(0, 0)).err(),
            FixedPool::<Conn, u8, 8, 8>::new(Config {
                backoff_initial: Duration::ZERO,
                ..Config::new(0, 1)
            })
            .err(),
        ]
    });
    assert_eq!(heap, Heap::NONE, "a refused Pool::new allocated");
    assert_eq!(
        errors,
        [
            Some(Error::CapacityExceeded),
            Some(Error::MinAboveMax),
            Some(Error::MaxZero),
            Some(Error::InvalidTiming),
        ]
    );
}

/// The getters and the invariant check a driver or test calls between inputs allocate nothing
/// either, in every state a generated case walks through.
#[test]
fn getters_and_assert_invariants_do_not_allocate() {
    let mut checked = 0;
    for case in cases(40) {
        let case = fit(&case, 3);
        let Ok(mut sim) = Sim::<Fixed<3, 2>, u8>::from_setup(&case.setup) else {
            continue;
        };
        for op in &case.ops {
            sim.step(op);
            let pool = sim.pool();
            let (out, heap) = measure(|| {
                testkit::assert_invariants(pool);
                (
                    pool.stats(),
                    pool.poll_timeout(),
                    pool.is_warm(),
                    pool.is_closed(),
                    pool.is_empty(),
                    pool.now(),
                    pool.config().max,
                )
            });
            black_box(out);
            assert_eq!(heap, Heap::NONE, "a getter or assert_invariants allocated");
            checked += 1;
        }
    }
    assert!(checked >= 1_000, "only {checked} states checked");
}

/// Everything the pool does after construction, over the test kit's seeds and generated cases,
/// on several fixed capacities: zero heap calls inside the pool, over every kind of input.
#[test]
fn the_fixed_backend_does_not_allocate() {
    let cases = cases(GENERATED);
    // A checkout that will not wait fails with `Exhausted` only when an older waiter took its
    // open's connection (two waiters: `Fixed<1, 1>` holds one) or a shrink withdrew its open
    // (`max` 1 cannot shrink): out of reach of a one-slot, one-waiter pool.
    let one_slot: &[&str] = &["fail:Exhausted"];
    let runs = [
        ("Fixed<1, 1>", one_slot, workload::<Fixed<1, 1>>(1, &cases)),
        ("Fixed<2, 1>", &[][..], workload::<Fixed<2, 1>>(2, &cases)),
        ("Fixed<3, 2>", &[][..], workload::<Fixed<3, 2>>(3, &cases)),
        ("Fixed<8, 8>", &[][..], workload::<Fixed<8, 8>>(8, &cases)),
    ];
    for (storage, out_of_reach, (reach, heap)) in &runs {
        assert_eq!(
            *heap,
            Heap::NONE,
            "{storage} touched the heap; the workload reached {reach:#?}"
        );
        assert_eq!(reach.cases, cases.len() as u64);
        assert!(
            reach.pools * 10 >= reach.cases * 9,
            "{storage}: too few configurations accepted\n{reach:#?}"
        );
        // Not vacuous: every op, argument, command and failure kind, on every capacity.
        reach.assert_complete(storage, out_of_reach);
    }
    // Over all capacities, every kind at all.
    let mut all = Reach::default();
    for (_, _, (reach, _)) in &runs {
        for (kind, n) in &reach.kinds {
            *all.kinds.entry(kind).or_default() += n;
        }
        all.add_stats(reach.stats);
        all.steps += reach.steps;
    }
    all.assert_complete("every capacity", &[]);
}

/// The same workload on the growable backend (hashbrown keys, `Vec` slots, `VecDeque` queues) does
/// allocate: the probed counter sees the pool's allocations when there are some.
#[test]
fn the_alloc_backend_does_allocate() {
    let cases = cases(GENERATED / 4);
    let (reach, heap) = workload::<Alloc>(8, &cases);
    assert!(
        heap.allocs > 0,
        "the counter saw nothing on the alloc backend: {heap:?}"
    );
    assert!(reach.kinds["cmd:Grant"] > 0 && reach.kinds["key:Some"] > 0);

    // And a single keyed, queued checkout into a fresh alloc pool is enough.
    let mut sim = Sim::<Alloc, u8>::undrained(Config::new(0, 2));
    sim.set_probe(probe);
    let (waiting, heap) = probed(|| sim.checkout(Some(1), Wait::Forever));
    assert!(matches!(waiting, Ok(Checkout::Waiting(_))), "{waiting:?}");
    assert!(heap.allocs > 0, "{heap:?}");

    // While the same checkout on fixed storage allocates nothing.
    let mut sim = Sim::<Fixed<2, 1>, u8>::undrained(Config::new(0, 2));
    sim.set_probe(probe);
    let (waiting, heap) = probed(|| sim.checkout(Some(1), Wait::Forever));
    assert!(matches!(waiting, Ok(Checkout::Waiting(_))), "{waiting:?}");
    assert_eq!(heap, Heap::NONE);
}
