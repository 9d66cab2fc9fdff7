//! The fixed backend does no heap allocation: neither to construct a pool nor in any of its
//! operations afterwards.
//!
//! A counting global allocator wraps the system one. It counts only while the *current thread* is
//! armed (a thread-local flag), so allocations made meanwhile by the test harness or by other tests'
//! threads are not counted, and armed regions are serialized by a lock, so two tests never share the
//! counters. The tests also show the counter is not blind: it moves for a deliberate `Vec`, and for
//! the very same workload on the [`Alloc`] backend.

use sanspool_core::storage::Storage;
#[cfg(feature = "alloc")]
use sanspool_core::Alloc;
use sanspool_core::{
    Checkout, Command, Config, Error, Fixed, IdleOrder, KeepIdle, Lease, Pool, Returned, Ticket,
    Time, Wait, WaiterId,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
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

/// Heap calls made by the current thread inside one [`measure`].
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

/// One armed region at a time, across all the tests of this binary.
static SERIAL: Mutex<()> = Mutex::new(());

/// Disarms on drop, so a panic inside `f` does not leave the thread armed.
struct Armed;

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.with(|a| a.set(false));
    }
}

/// Runs `f` with this thread armed; returns its result and the heap calls it made.
fn measure<R>(f: impl FnOnce() -> R) -> (R, Heap) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    ALLOCS.store(0, Relaxed);
    REALLOCS.store(0, Relaxed);
    DEALLOCS.store(0, Relaxed);
    let armed = Armed;
    ARMED.with(|a| a.set(true));
    let out = f();
    drop(armed);
    let heap = Heap {
        allocs: ALLOCS.load(Relaxed),
        reallocs: REALLOCS.load(Relaxed),
        deallocs: DEALLOCS.load(Relaxed),
    };
    (out, heap)
}

// ------------------------------------------------------------------------------ the driver

type FixedPool = sanspool_core::FixedPool<u32, u32, 8, 8>;
#[cfg(feature = "alloc")]
type AllocPool = sanspool_core::AllocPool<u32, u32>;

const MS: u64 = 1_000_000;
/// Room in the driver's own (fixed) tables: twice what an 8-slot, 8-waiter pool can hand out.
const CAP: usize = 16;

#[derive(Copy, Clone, Debug)]
struct Borrowed {
    lease: Lease,
    key: Option<u32>,
    conn: u32,
}

/// An operation the driver received and has not reported yet.
#[derive(Copy, Clone, Debug)]
enum Op {
    Open(Ticket),
    Reset(Ticket, u32),
    Close(Ticket),
}

/// How often each outcome was seen: the workload asserts it reached every one of them.
#[derive(Copy, Clone, Debug, Default)]
struct Tally {
    // checkouts
    served: u64,
    served_keyed: u64,
    held: u64,
    queued: u64,
    queued_until: u64,
    queued_forever: u64,
    queued_no_wait: u64,
    exhausted: u64,
    too_many_waiters: u64,
    key_busy: u64,
    refused_closed: u64,
    // checkins
    clean: u64,
    dirty: u64,
    broken: u64,
    close: u64,
    keyed_checkin: u64,
    wrong_key: u64,
    checkin_after_close: u64,
    detached: u64,
    cancelled: u64,
    bad_inputs: u64,
    // commands
    opens: u64,
    open_failures: u64,
    resets: u64,
    reset_failures: u64,
    checks: u64,
    closes: u64,
    grants: u64,
    failed_timeout: u64,
    failed_open: u64,
    failed_closed: u64,
    failed_exhausted: u64,
    ready: u64,
    // user operations
    timeouts_handled: u64,
    resizes: u64,
    resize_refused: u64,
    drains: u64,
    pool_closes: u64,
    // the pools' own counters, summed
    stats_expired: u64,
    stats_waits: u64,
    stats_timeouts: u64,
    stats_resets: u64,
}

/// A driver that keeps everything in fixed arrays, so that it allocates nothing either.
struct Driver {
    now: u64,
    rng: u64,
    next_conn: u32,
    borrowed: [Option<Borrowed>; CAP],
    waiting: [Option<(WaiterId, Option<u32>)>; CAP],
    deferred: [Option<Op>; CAP],
    /// Keep the driver's operations in flight instead of reporting them at once.
    defer: bool,
    /// Fail this many of the next opens.
    fail_opens: u32,
    /// A lease already checked in, to try again.
    stale: Option<Lease>,
    tally: Tally,
}

fn put<T: Copy>(table: &mut [Option<T>; CAP], value: T) {
    let free = table.iter_mut().find(|e| e.is_none());
    *free.expect("driver table full") = Some(value);
}

impl Driver {
    fn new(seed: u64) -> Driver {
        Driver {
            now: 0,
            rng: seed | 1,
            next_conn: 0,
            borrowed: [None; CAP],
            waiting: [None; CAP],
            deferred: [None; CAP],
            defer: false,
            fail_opens: 0,
            stale: None,
            tally: Tally::default(),
        }
    }

    fn time(&self) -> Time {
        Time::from_nanos(self.now)
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    /// A random occupied entry of `table`.
    fn pick<T: Copy>(&mut self, table: [Option<T>; CAP]) -> Option<usize> {
        let n = table.iter().filter(|e| e.is_some()).count();
        if n == 0 {
            return None;
        }
        let nth = self.rand(n as u64) as usize;
        table
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .nth(nth)
            .map(|(i, _)| i)
    }

    /// Do what the pool asks until it asks nothing more.
    fn drive<S: Storage<u32, u32>>(&mut self, pool: &mut Pool<u32, u32, S>) {
        while let Some(cmd) = pool.poll_command() {
            let room = self.deferred.iter().any(Option::is_none);
            match cmd {
                Command::Open(ticket) if self.defer && room => {
                    put(&mut self.deferred, Op::Open(ticket))
                }
                Command::Open(ticket) => self.complete(pool, Op::Open(ticket)),
                Command::Close { ticket, conn: _ } => {
                    self.tally.closes += 1;
                    if self.defer && room {
                        put(&mut self.deferred, Op::Close(ticket));
                    } else {
                        self.complete(pool, Op::Close(ticket));
                    }
                }
                Command::Reset { ticket, conn } | Command::Check { ticket, conn } => {
                    if self.defer && room {
                        put(&mut self.deferred, Op::Reset(ticket, conn));
                    } else {
                        self.complete(pool, Op::Reset(ticket, conn));
                    }
                }
                Command::Grant {
                    waiter,
                    lease,
                    conn,
                } => {
                    let key = self.waiter_done(waiter);
                    self.tally.grants += 1;
                    put(&mut self.borrowed, Borrowed { lease, key, conn });
                }
                Command::Fail { waiter, error } => {
                    self.waiter_done(waiter);
                    match error {
                        Error::Timeout => self.tally.failed_timeout += 1,
                        Error::OpenFailed => self.tally.failed_open += 1,
                        Error::Closed => self.tally.failed_closed += 1,
                        Error::Exhausted => self.tally.failed_exhausted += 1,
                        other => panic!("waiter failed with {other:?}"),
                    }
                }
                Command::Ready => self.tally.ready += 1,
            }
        }
    }

    fn waiter_done(&mut self, waiter: WaiterId) -> Option<u32> {
        let entry = self
            .waiting
            .iter_mut()
            .find(|e| matches!(e, Some((w, _)) if *w == waiter))
            .expect("outcome for a waiter the driver does not know");
        entry.take().and_then(|(_, key)| key)
    }

    /// Report the outcome of one operation.
    fn complete<S: Storage<u32, u32>>(&mut self, pool: &mut Pool<u32, u32, S>, op: Op) {
        let now = self.time();
        match op {
            Op::Open(ticket) if self.fail_opens > 0 => {
                self.fail_opens -= 1;
                self.tally.open_failures += 1;
                pool.handle_open_failed(now, ticket).unwrap();
            }
            Op::Open(ticket) => {
                self.tally.opens += 1;
                self.next_conn += 1;
                pool.handle_opened(now, ticket, self.next_conn).unwrap();
            }
            Op::Reset(ticket, conn) => {
                let ok = self.rand(5) != 0;
                if ok {
                    self.tally.resets += 1;
                } else {
                    self.tally.reset_failures += 1;
                }
                pool.handle_reset(now, ticket, conn, ok).unwrap();
            }
            Op::Close(ticket) => pool.handle_closed(now, ticket).unwrap(),
        }
    }

    fn complete_deferred<S: Storage<u32, u32>>(&mut self, pool: &mut Pool<u32, u32, S>) {
        for i in 0..CAP {
            if let Some(op) = self.deferred[i].take() {
                self.complete(pool, op);
            }
        }
    }

    fn checkout<S: Storage<u32, u32>>(&mut self, pool: &mut Pool<u32, u32, S>) {
        let key = match self.rand(2) {
            0 => Some(self.rand(6) as u32),
            _ => None,
        };
        let wait = match self.rand(4) {
            0 | 1 => Wait::No,
            2 => Wait::Until(Time::from_nanos(self.now + self.rand(100) * MS)),
            _ => Wait::Forever,
        };
        match pool.handle_checkout(self.time(), key, wait) {
            Ok(Checkout::Ready { lease, conn }) => {
                self.tally.served += 1;
                self.tally.served_keyed += u64::from(key.is_some());
                put(&mut self.borrowed, Borrowed { lease, key, conn });
            }
            Ok(Checkout::Held(lease)) => {
                self.tally.held += 1;
                let mine = self.borrowed.iter().flatten().find(|b| b.lease == lease);
                assert_eq!(mine.expect("held lease unknown").key, key);
            }
            Ok(Checkout::Waiting(w)) => {
                self.tally.queued += 1;
                match wait {
                    Wait::No => self.tally.queued_no_wait += 1,
                    Wait::Until(_) => self.tally.queued_until += 1,
                    Wait::Forever => self.tally.queued_forever += 1,
                }
                put(&mut self.waiting, (w, key));
            }
            Err(Error::Exhausted) => self.tally.exhausted += 1,
            Err(Error::TooManyWaiters) => self.tally.too_many_waiters += 1,
            Err(Error::KeyBusy) => self.tally.key_busy += 1,
            Err(Error::Closed) => {
                assert!(pool.is_closed());
                self.tally.refused_closed += 1;
            }
            Err(other) => panic!("checkout refused: {other:?}"),
        }
    }

    fn checkin<S: Storage<u32, u32>>(&mut self, pool: &mut Pool<u32, u32, S>) {
        let Some(i) = self.pick(self.borrowed) else {
            return;
        };
        let b = self.borrowed[i].expect("picked");
        let returned = match self.rand(9) {
            0..=4 => Returned::Clean,
            5 | 6 => Returned::Dirty,
            7 => Returned::Broken,
            _ => Returned::Close,
        };
        let wrong = 1000;
        let key = match (b.key, self.rand(4)) {
            (Some(_), 0) => Some(wrong), // refused, nothing changes
            (Some(k), 1 | 2) => Some(k),
            (None, 0) => Some(wrong),
            _ => None,
        };
        match pool.handle_checkin(self.time(), b.lease, key.as_ref(), b.conn, returned) {
            Ok(()) => {
                self.borrowed[i] = None;
                self.stale = Some(b.lease);
                self.tally.keyed_checkin += u64::from(key.is_some());
                match returned {
                    Returned::Clean => self.tally.clean += 1,
                    Returned::Dirty => self.tally.dirty += 1,
                    Returned::Broken => self.tally.broken += 1,
                    Returned::Close => self.tally.close += 1,
                }
            }
            Err(rejected) if rejected.error == Error::WrongKey => {
                assert_eq!(key, Some(wrong));
                assert_eq!(
                    rejected.conn,
                    Some(b.conn),
                    "refused checkin kept the connection"
                );
                self.tally.wrong_key += 1;
            }
            Err(rejected) if rejected.error == Error::Closed => {
                assert!(pool.is_closed() && rejected.conn.is_none());
                self.borrowed[i] = None;
                self.tally.checkin_after_close += 1;
            }
            Err(rejected) => panic!("checkin refused: {:?}", rejected.error),
        }
    }

    /// Inputs the pool must refuse, changing nothing.
    fn bad_inputs<S: Storage<u32, u32>>(&mut self, pool: &mut Pool<u32, u32, S>, tag: u32) {
        let now = self.time();
        if let Some(stale) = self.stale {
            let r = pool
                .handle_checkin(now, stale, None, 7, Returned::Clean)
                .unwrap_err();
            assert_eq!(r.conn, Some(7));
            assert!(matches!(r.error, Error::AlreadyReturned | Error::Unkeyed));
            assert_eq!(pool.handle_detach(now, stale), Err(r.error));
        }
        let foreign = Lease::from_parts(tag + 1, 0, 1);
        let r = pool
            .handle_checkin(now, foreign, None, 8, Returned::Clean)
            .unwrap_err();
        assert_eq!((r.error, r.conn), (Error::Foreign, Some(8)));
        let forged = Ticket::from_parts(tag, 3, u32::MAX);
        let r = pool.handle_opened(now, forged, 9).unwrap_err();
        assert_eq!((r.error, r.conn), (Error::UnknownTicket, Some(9)));
        assert_eq!(
            pool.handle_open_failed(now, forged),
            Err(Error::UnknownTicket)
        );
        assert_eq!(pool.handle_closed(now, forged), Err(Error::UnknownTicket));
        let r = pool.handle_reset(now, forged, 10, true).unwrap_err();
        assert_eq!((r.error, r.conn), (Error::UnknownTicket, Some(10)));
        assert_eq!(
            pool.handle_cancel(now, WaiterId::from_raw(u64::MAX)),
            Err(Error::UnknownWaiter)
        );
        assert_eq!(pool.resize(now, 3, 2), Err(Error::MinAboveMax));
        assert_eq!(pool.resize(now, 0, 0), Err(Error::MaxZero));
        self.tally.bad_inputs += 1;
    }

    /// One random input, then drive the pool until it is quiet.
    fn step<S: Storage<u32, u32>>(&mut self, pool: &mut Pool<u32, u32, S>, tag: u32) {
        match self.rand(100) {
            0..=29 => self.checkout(pool),
            30..=54 => self.checkin(pool),
            55..=64 => {
                self.now += self.rand(60) * MS;
                if let Some(t) = pool.poll_timeout() {
                    if self.rand(2) == 0 {
                        self.now = self.now.max(t.as_nanos());
                    }
                }
                pool.handle_timeout(self.time());
                self.tally.timeouts_handled += 1;
            }
            65..=67 => {
                self.complete_deferred(pool);
                self.defer = self.rand(2) == 0;
            }
            68..=69 => self.fail_opens = self.rand(4) as u32,
            70..=72 => {
                let (min, max) = (self.rand(4) as usize, 1 + self.rand(8) as usize);
                match pool.resize(self.time(), min, max) {
                    Ok(()) => self.tally.resizes += 1,
                    Err(Error::MinAboveMax) if min > max => self.tally.resize_refused += 1,
                    Err(Error::Closed) if pool.is_closed() => self.tally.resize_refused += 1,
                    Err(other) => panic!("resize({min}, {max}) refused: {other:?}"),
                }
            }
            73 => match pool.drain(self.time()) {
                Ok(()) => self.tally.drains += 1,
                Err(e) => assert!(e == Error::Closed && pool.is_closed()),
            },
            74..=75 => match pool.check_idle(self.time()) {
                Ok(n) => self.tally.checks += n as u64,
                Err(e) => assert!(e == Error::Closed && pool.is_closed()),
            },
            76..=78 => {
                if let Some(i) = self.pick(self.waiting) {
                    let (w, _) = self.waiting[i].take().expect("picked");
                    pool.handle_cancel(self.time(), w).unwrap();
                    self.tally.cancelled += 1;
                }
            }
            79..=80 => {
                if let Some(i) = self.pick(self.borrowed) {
                    let b = self.borrowed[i].take().expect("picked");
                    pool.handle_detach(self.time(), b.lease).unwrap();
                    self.tally.detached += 1;
                }
            }
            81..=83 => self.bad_inputs(pool, tag),
            84 if self.rand(10) == 0 => match pool.close(self.time()) {
                Ok(()) => self.tally.pool_closes += 1,
                Err(e) => assert!(e == Error::Closed && pool.is_closed()),
            },
            84 => {}
            85..=92 => self.checkout(pool),
            _ => self.checkin(pool),
        }
        self.drive(pool);
    }

    /// Close the pool, give every connection back, finish every operation: the pool ends empty.
    fn finish<S: Storage<u32, u32>>(&mut self, pool: &mut Pool<u32, u32, S>) {
        if !pool.is_closed() {
            pool.close(self.time()).unwrap();
            self.tally.pool_closes += 1;
        }
        assert_eq!(pool.close(self.time()), Err(Error::Closed));
        self.defer = false;
        self.drive(pool);
        assert!(
            self.waiting.iter().all(Option::is_none),
            "close left waiters"
        );
        for i in 0..CAP {
            if let Some(b) = self.borrowed[i].take() {
                let r = pool
                    .handle_checkin(self.time(), b.lease, None, b.conn, Returned::Clean)
                    .unwrap_err();
                assert!(r.error == Error::Closed && r.conn.is_none());
                self.tally.checkin_after_close += 1;
            }
            self.drive(pool);
        }
        while self.deferred.iter().any(Option::is_some) {
            self.complete_deferred(pool);
            self.drive(pool);
        }
        pool.assert_invariants();
        assert!(pool.is_empty(), "closed pool still holds something");
        let stats = pool.stats();
        self.tally.stats_expired += stats.expired;
        self.tally.stats_waits += stats.waits;
        self.tally.stats_timeouts += stats.timeouts;
        self.tally.stats_resets += stats.resets;
    }
}

const ROUNDS: u64 = 200;
const STEPS: u32 = 250;

fn config(round: u64) -> Config {
    let mut config = Config::new((round % 3) as usize, 2 + (round % 7) as usize);
    config.tag = round as u32;
    config.max_waiting = if round % 2 == 0 { 3 } else { 8 };
    config.keep_idle = if round % 4 < 2 {
        KeepIdle::UpToMax
    } else {
        KeepIdle::UpToMin
    };
    config.idle_order = if round % 5 == 0 {
        IdleOrder::Fifo
    } else {
        IdleOrder::Lifo
    };
    config.max_lifetime = Some(Duration::from_millis(1500));
    config.lifetime_jitter = Duration::from_millis(400);
    config.max_idle = Some(Duration::from_millis(700));
    config.backoff_initial = Duration::from_millis(5);
    config.backoff_max = Duration::from_millis(80);
    config.seed = round;
    config
}

/// `ROUNDS` pools, each made, driven for `STEPS` random inputs (checking the invariants after every
/// one), closed and emptied.
fn workload<S: Storage<u32, u32>>() -> Tally {
    let mut tally = Tally::default();
    for round in 0..ROUNDS {
        let mut pool: Pool<u32, u32, S> = Pool::new(config(round)).unwrap();
        let mut driver = Driver::new(0x9e37_79b9_7f4a_7c15 ^ round);
        driver.tally = tally;
        driver.drive(&mut pool);
        pool.assert_invariants();
        for _ in 0..STEPS {
            driver.step(&mut pool, round as u32);
            pool.assert_invariants();
        }
        driver.finish(&mut pool);
        tally = driver.tally;
    }
    tally
}

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
}

#[test]
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

#[test]
fn constructing_a_fixed_pool_does_not_allocate() {
    let configs = [
        Config::new(0, 1),
        Config::new(2, 8),
        Config::new(8, 8),
        Config::psycopg2(1, 4),
        config(5),
    ];
    for config in configs {
        let (pool, heap) = measure(|| FixedPool::new(config).unwrap());
        assert_eq!(heap, Heap::NONE, "Pool::new allocated");
        pool.assert_invariants();
        // Dropping it frees nothing either.
        let ((), heap) = measure(|| drop(pool));
        assert_eq!(heap, Heap::NONE, "dropping the pool touched the heap");
    }
    let (errors, heap) = measure(|| {
        [
            FixedPool::new(Config::new(0, 9)).err(),
            FixedPool::new(Config::new(3, 2)).err(),
            FixedPool::new(Config::new(0, 0)).err(),
        ]
    });
    assert_eq!(heap, Heap::NONE, "a refused Pool::new allocated");
    assert_eq!(
        errors,
        [
            Some(Error::CapacityExceeded),
            Some(Error::MinAboveMax),
            Some(Error::MaxZero),
        ]
    );
}

#[test]
fn assert_invariants_does_not_allocate() {
    let mut pool = FixedPool::new(config(1)).unwrap();
    let mut driver = Driver::new(42);
    for _ in 0..500 {
        driver.step(&mut pool, 1);
        let ((), heap) = measure(|| pool.assert_invariants());
        assert_eq!(heap, Heap::NONE, "assert_invariants allocated");
    }
}

/// Everything the pool does after construction, thousands of times, on fixed storage: zero heap.
#[test]
fn the_fixed_backend_does_not_allocate() {
    let (tally, heap) = measure(workload::<Fixed<8, 8>>);
    assert_eq!(
        heap,
        Heap::NONE,
        "the fixed backend touched the heap; workload reached {tally:#?}"
    );

    // The workload is not vacuous: it reached every outcome, many times.
    let t = tally;
    let reached = [
        ("served at once", t.served),
        ("served at once, keyed", t.served_keyed),
        ("same key, same lease", t.held),
        ("queued, Wait::No", t.queued_no_wait),
        ("queued, Wait::Until", t.queued_until),
        ("queued, Wait::Forever", t.queued_forever),
        ("exhausted", t.exhausted),
        ("too many waiters", t.too_many_waiters),
        ("key busy", t.key_busy),
        ("checkout after close", t.refused_closed),
        ("clean checkins", t.clean),
        ("dirty checkins", t.dirty),
        ("broken checkins", t.broken),
        ("close checkins", t.close),
        ("keyed checkins", t.keyed_checkin),
        ("wrong-key checkins", t.wrong_key),
        ("checkins after close", t.checkin_after_close),
        ("detaches", t.detached),
        ("cancels", t.cancelled),
        ("bad inputs", t.bad_inputs),
        ("opens", t.opens),
        ("open failures", t.open_failures),
        ("resets and checks", t.resets),
        ("failed resets", t.reset_failures),
        ("check_idle", t.checks),
        ("closes", t.closes),
        ("grants", t.grants),
        ("waiter timeouts", t.failed_timeout),
        ("waiters failed by an open", t.failed_open),
        ("waiters failed by close", t.failed_closed),
        (
            "non-waiting checkouts exhausted after queueing",
            t.failed_exhausted,
        ),
        ("ready signals", t.ready),
        ("handle_timeout", t.timeouts_handled),
        ("resizes", t.resizes),
        ("refused resizes", t.resize_refused),
        ("drains", t.drains),
        ("pool closes", t.pool_closes),
        ("expired connections", t.stats_expired),
        ("waits (stats)", t.stats_waits),
        ("timeouts (stats)", t.stats_timeouts),
        ("resets (stats)", t.stats_resets),
    ];
    for (what, n) in reached {
        assert!(n > 0, "the workload never reached: {what}\n{tally:#?}");
    }
    assert!(t.served + t.grants >= 5_000, "{tally:#?}");
}

/// The same workload on the growable backend (hashbrown keys, `Vec` slots, `VecDeque` queues) does
/// allocate: the counter sees the core's allocations when there are some.
#[cfg(feature = "alloc")]
#[test]
fn the_alloc_backend_does_allocate() {
    let (tally, heap) = measure(workload::<Alloc>);
    assert!(
        heap.allocs > 0,
        "the counter saw nothing on the alloc backend: {heap:?}"
    );
    assert!(tally.served_keyed > 0 && tally.grants > 0);

    // And a single keyed checkout into a fresh alloc pool is enough.
    let mut pool = AllocPool::new(Config::new(0, 2)).unwrap();
    let mut driver = Driver::new(7);
    let (waiting, heap) = measure(|| {
        let waiting = pool.handle_checkout(Time::ZERO, Some(1), Wait::Forever);
        if let Ok(Checkout::Waiting(w)) = waiting {
            put(&mut driver.waiting, (w, Some(1)));
        }
        driver.drive(&mut pool);
        waiting
    });
    assert!(matches!(waiting, Ok(Checkout::Waiting(_))), "{waiting:?}");
    assert_eq!(driver.tally.grants, 1);
    assert!(heap.allocs > 0, "{heap:?}");
}
