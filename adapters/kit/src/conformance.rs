//! The conformance suite: the driver contract's rules as scenarios, run through every driver
//! (`sanspool`'s `tests/conformance.rs`, `sanspool-tokio`'s), so that a rule that holds for one
//! holds for the other — with [`Fake`], a scripted connector, and the core's named scenarios
//! (`sanspool_core::testkit::seeds`) replayed through the driver against the core's simulated
//! driver.
//!
//! A driver takes part by implementing [`Driver`]: how to build a pool over a [`Fake`] with
//! [`Options`], check out, give back, and read the stats. [`run`] plays every scenario and names
//! the one that fails.

use crate::{BuildError, Connector, Event, Events, GetError};
use sanspool_core::testkit::{seeds, Back, Got, KeyArg, Op, Pick, Reply, Sim, WaitArg};
use sanspool_core::{
    Error as CoreError, Fairness, Fixed, IdleOrder, KeepIdle, Liveness, Returned, Stats,
};
use std::fmt;
use std::ops::DerefMut;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A connection of the [`Fake`]: its number in open order (from 1), and the state it will be
/// judged in when given back.
#[derive(Debug)]
pub struct FakeConn {
    /// Its number.
    pub id: u32,
    /// What [`Connector::state`] says of it.
    pub state: Returned,
}

/// The [`Fake`]'s error: a word saying what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeError(pub &'static str);

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for FakeError {}

/// A scripted connector whose I/O completes at once; cloning shares it. Its counters say what
/// the pool asked of it; its switches make what follows fail.
#[derive(Clone, Default)]
pub struct Fake(Arc<Script>);

/// What a [`Fake`] counts and is told to do.
#[derive(Default)]
pub struct Script {
    /// Connections opened.
    pub opened: AtomicU32,
    /// Connections closed.
    pub closed: AtomicU32,
    /// Resets run.
    pub resets: AtomicU32,
    /// Checks run.
    pub checks: AtomicU32,
    /// Opens fail ("refused").
    pub fail_opens: AtomicBool,
    /// A failed open is permanent.
    pub permanent: AtomicBool,
    /// Resets fail.
    pub fail_resets: AtomicBool,
    /// Checks fail.
    pub fail_checks: AtomicBool,
    /// A failure is one cut off at its bound ([`Connector::is_abandoned`]).
    pub abandon: AtomicBool,
    /// Opens panic.
    pub panic_opens: AtomicBool,
    /// The fake probes idle connections ([`Connector::probes`]; read when a pool is built).
    pub probing: AtomicBool,
    /// Probes run.
    pub probes: AtomicU32,
    /// The ids of the connections its probe finds dead.
    pub dead_ids: Mutex<Vec<u32>>,
    /// The ids of the connections closed, in order.
    pub closed_ids: Mutex<Vec<u32>>,
}

impl std::ops::Deref for Fake {
    type Target = Script;

    fn deref(&self) -> &Script {
        &self.0
    }
}

fn count(n: &AtomicU32) -> u32 {
    n.load(Ordering::SeqCst)
}

impl Fake {
    /// Opens the next connection, or fails as told.
    pub fn open(&self) -> Result<FakeConn, FakeError> {
        if self.panic_opens.load(Ordering::SeqCst) {
            panic!("the fake's open panics, as told");
        }
        if self.fail_opens.load(Ordering::SeqCst) {
            return Err(FakeError("refused"));
        }
        let id = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(FakeConn {
            id,
            state: Returned::Clean,
        })
    }

    /// Resets a connection (clean again), or fails as told.
    pub fn reset_conn(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.resets.fetch_add(1, Ordering::SeqCst);
        if self.fail_resets.load(Ordering::SeqCst) {
            return Err(FakeError("reset failed"));
        }
        conn.state = Returned::Clean;
        Ok(())
    }

    /// Checks a connection, or fails as told.
    pub fn check_conn(&self, _conn: &mut FakeConn) -> Result<(), FakeError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        if self.fail_checks.load(Ordering::SeqCst) {
            return Err(FakeError("check failed"));
        }
        Ok(())
    }

    /// Closes a connection.
    pub fn close_conn(&self, conn: FakeConn) {
        self.closed.fetch_add(1, Ordering::SeqCst);
        self.closed_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn.id);
    }

    /// Whether the fake probes idle connections.
    pub fn probing(&self) -> bool {
        self.probing.load(Ordering::SeqCst)
    }

    /// Probes a connection: dead if its id was marked so.
    pub fn probe_conn(&self, conn: &FakeConn) -> Liveness {
        self.probes.fetch_add(1, Ordering::SeqCst);
        let dead = self.dead_ids.lock().unwrap_or_else(|p| p.into_inner());
        if dead.contains(&conn.id) {
            Liveness::Dead
        } else {
            Liveness::Alive
        }
    }

    /// Whether a failure was cut off at its bound.
    pub fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
    }

    /// Whether failed opens are permanent.
    pub fn permanent_failures(&self) -> bool {
        self.permanent.load(Ordering::SeqCst)
    }
}

impl Connector for Fake {
    type Conn = FakeConn;
    type Error = FakeError;

    async fn connect(&self) -> Result<FakeConn, FakeError> {
        self.open()
    }

    fn state(&self, conn: &mut FakeConn) -> Returned {
        conn.state
    }

    async fn reset(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.reset_conn(conn)
    }

    async fn check(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.check_conn(conn)
    }

    fn probes(&self) -> bool {
        self.probing()
    }

    fn probe(&self, conn: &mut FakeConn) -> Liveness {
        self.probe_conn(conn)
    }

    fn is_permanent(&self, _: &FakeError) -> bool {
        self.permanent_failures()
    }

    fn is_abandoned(&self, _: &FakeError) -> bool {
        self.abandoned()
    }

    async fn close(&self, conn: FakeConn) -> Result<(), FakeError> {
        self.close_conn(conn);
        Ok(())
    }
}

/// What a scenario asks of a pool's settings (the rest are the driver's defaults).
#[derive(Clone, Debug)]
pub struct Options {
    /// `min`.
    pub min: usize,
    /// `max`.
    pub max: usize,
    /// How long a checkout waits; `None`: not at all.
    pub timeout: Option<Duration>,
    /// `leak_after`.
    pub leak_after: Option<Duration>,
    /// Connections from the idle set are checked first.
    pub check_on_checkout: bool,
    /// `min` is refilled after closes (`false`: psycopg2's pool, `Builder::psycopg2`).
    pub refill: bool,
    /// Set only when `Some`: else the driver's default.
    pub keep_idle: Option<KeepIdle>,
    /// Set only when `Some`.
    pub idle_order: Option<IdleOrder>,
    /// Set only when `Some`.
    pub fairness: Option<Fairness>,
    /// Set only when `Some`.
    pub max_waiting: Option<usize>,
    /// The event hook, set only when `Some`.
    pub events: Option<Recorder>,
}

/// An event hook that keeps every event, in order; cloning shares it.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Events for Recorder {
    fn event(&self, event: &Event) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(*event);
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recorder").field(&self.events()).finish()
    }
}

impl Options {
    /// `min` and `max`, checkouts waiting up to 5 s.
    pub fn new(min: usize, max: usize) -> Self {
        Options {
            min,
            max,
            timeout: Some(Duration::from_secs(5)),
            leak_after: None,
            check_on_checkout: false,
            refill: true,
            keep_idle: None,
            idle_order: None,
            fairness: None,
            max_waiting: None,
            events: None,
        }
    }
}

/// How a driver takes part in the suite: its pool over a [`Fake`], and the few things the
/// scenarios do with it. Every method may block (an async driver runs its runtime).
pub trait Driver {
    /// The pool.
    type Pool: Send + Sync;
    /// A checked-out connection, given back when dropped.
    type Guard: DerefMut<Target = FakeConn> + Send + 'static;

    /// A pool of `fake`'s connections with `options`, `min` of them open.
    fn build(&self, fake: &Fake, options: &Options) -> Result<Self::Pool, BuildError<FakeError>>;
    /// A checkout, waiting as the pool's settings say.
    fn get(&self, pool: &Self::Pool) -> Result<Self::Guard, GetError<FakeError>>;
    /// A checkout on another thread or task: joining it gives the connection's id, once it was
    /// given back.
    fn get_elsewhere(
        &self,
        pool: &Self::Pool,
    ) -> Box<dyn FnOnce() -> Result<u32, GetError<FakeError>> + Send>;
    /// Gives the connection back to be closed.
    fn close_conn(&self, guard: Self::Guard);
    /// Takes the connection out of the pool.
    fn detach(&self, guard: Self::Guard) -> FakeConn;
    /// The pool's stats.
    fn stats(&self, pool: &Self::Pool) -> Stats;
    /// Closes the pool.
    fn close(&self, pool: &Self::Pool) -> Result<(), CoreError>;
    /// Checks every idle connection; how many failed.
    fn check(&self, pool: &Self::Pool) -> Result<usize, CoreError>;
    /// Retires every connection.
    fn drain(&self, pool: &Self::Pool) -> Result<(), CoreError>;
    /// New `min` and `max`.
    fn resize(&self, pool: &Self::Pool, min: usize, max: usize) -> Result<(), CoreError>;
}

/// Waits (up to 10 s) until `done` holds; panics naming `what` otherwise.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One scenario.
pub type Scenario<D> = fn(&D);

/// Every scenario, by name.
pub fn scenarios<D: Driver>() -> Vec<(&'static str, Scenario<D>)> {
    vec![
        ("the build opens min", build_opens_min::<D>),
        (
            "dirty returns are reset, broken ones replaced",
            dirty_and_broken::<D>,
        ),
        (
            "a connection closed on return is replaced",
            closed_on_return::<D>,
        ),
        ("a detached connection frees its place", detached::<D>),
        (
            "a waiter gets the connection given back",
            waiter_served::<D>,
        ),
        ("a checkout that waits its timeout fails", timed_out::<D>),
        (
            "without a timeout, none at max is exhausted",
            exhausted::<D>,
        ),
        (
            "the build retries failed opens until they succeed",
            build_retries::<D>,
        ),
        (
            "a permanent failure fails the build at once",
            build_fails_for_good::<D>,
        ),
        (
            "a build without refills is the first failed open's error",
            build_first_failure::<D>,
        ),
        (
            "a build out of time says the last failure",
            build_times_out::<D>,
        ),
        (
            "events: acquire, checkout, checkin, timeout, release",
            events_in_order::<D>,
        ),
        (
            "a permanent failure fails a waiter at once",
            permanent_failure::<D>,
        ),
        (
            "a timeout carries the last connect error",
            timeout_with_cause::<D>,
        ),
        (
            "a panicking connector fails the checkout",
            panicking_open::<D>,
        ),
        (
            "a closed pool refuses and closes what comes back",
            closed_pool::<D>,
        ),
        ("a leak is reported once", leak_reported::<D>),
        (
            "check closes the idle connections that fail",
            check_idle::<D>,
        ),
        (
            "check on checkout replaces a dead idle connection",
            check_on_checkout::<D>,
        ),
        (
            "a probe replaces dead idle connections without a round trip",
            dead_idle_probed::<D>,
        ),
        ("abandoned resets are counted apart", abandoned_reset::<D>),
        ("drain and resize", drain_and_resize::<D>),
        ("the core's named scenarios", core_seeds::<D>),
    ]
}

/// Plays every scenario on `driver`; a failure names its scenario.
pub fn run<D: Driver>(driver: &D) {
    for (name, scenario) in scenarios::<D>() {
        let played = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(driver)));
        if let Err(panic) = played {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("conformance scenario {name:?} failed: {why}");
        }
    }
}

fn pool<D: Driver>(d: &D, fake: &Fake, options: &Options) -> D::Pool {
    d.build(fake, options).expect("the pool builds")
}

fn build_opens_min<D: Driver>(d: &D) {
    let fake = Fake::default();
    let p = pool(d, &fake, &Options::new(2, 4));
    eventually("min open", || d.stats(&p).idle == 2);
    assert_eq!(count(&fake.opened), 2);
    assert_eq!(d.stats(&p).size, 2);
}

fn dirty_and_broken<D: Driver>(d: &D) {
    let fake = Fake::default();
    let p = pool(d, &fake, &Options::new(1, 1));
    let mut conn = d.get(&p).unwrap();
    conn.state = Returned::Dirty;
    let id = conn.id;
    drop(conn);
    let mut conn = d.get(&p).unwrap();
    assert_eq!(
        (conn.id, conn.state),
        (id, Returned::Clean),
        "the same, reset"
    );
    assert_eq!(count(&fake.resets), 1);
    conn.state = Returned::Broken;
    drop(conn);
    let conn = d.get(&p).unwrap();
    assert_ne!(conn.id, id, "replaced");
    assert_eq!(d.stats(&p).broken_returns, 1);
    eventually("the broken one closed", || count(&fake.closed) == 1);
}

fn closed_on_return<D: Driver>(d: &D) {
    let fake = Fake::default();
    let p = pool(d, &fake, &Options::new(1, 1));
    let conn = d.get(&p).unwrap();
    let id = conn.id;
    d.close_conn(conn);
    eventually("closed", || count(&fake.closed) == 1);
    assert_eq!(*fake.closed_ids.lock().unwrap(), [id]);
    assert_ne!(d.get(&p).unwrap().id, id);
}

fn detached<D: Driver>(d: &D) {
    let fake = Fake::default();
    let p = pool(d, &fake, &Options::new(1, 1));
    let conn = d.detach(d.get(&p).unwrap());
    assert_eq!(d.stats(&p).detached, 1);
    // Its place is free: the pool refills `min`.
    eventually("refilled", || d.stats(&p).idle == 1);
    assert_ne!(d.get(&p).unwrap().id, conn.id);
    assert_eq!(
        count(&fake.closed),
        0,
        "a detached connection is the borrower's"
    );
}

fn waiter_served<D: Driver>(d: &D) {
    let fake = Fake::default();
    let p = pool(d, &fake, &Options::new(1, 1));
    let held = d.get(&p).unwrap();
    let waiter = d.get_elsewhere(&p);
    eventually("the waiter queued", || d.stats(&p).waiting == 1);
    let id = held.id;
    drop(held);
    assert_eq!(waiter().ok(), Some(id), "the one given back");
    let s = d.stats(&p);
    assert_eq!((s.waits, s.size), (1, 1));
}

fn timed_out<D: Driver>(d: &D) {
    let fake = Fake::default();
    let options = Options {
        timeout: Some(Duration::from_millis(50)),
        ..Options::new(1, 1)
    };
    let p = pool(d, &fake, &options);
    let _held = d.get(&p).unwrap();
    let err = d.get(&p).map(|g| g.id).unwrap_err();
    assert!(matches!(err, GetError::Timeout(None)), "{err:?}");
    assert_eq!(d.stats(&p).timeouts, 1);
}

fn exhausted<D: Driver>(d: &D) {
    let fake = Fake::default();
    let options = Options {
        timeout: None,
        ..Options::new(1, 1)
    };
    let p = pool(d, &fake, &options);
    let _held = d.get(&p).unwrap();
    let err = d.get(&p).map(|g| g.id).unwrap_err();
    assert!(matches!(err, GetError::Exhausted), "{err:?}");
    assert_eq!(err.to_string(), "connection pool exhausted");
}

/// r2d2's build: opens failing for a while (a server starting) are retried with backoff, and
/// the build returns once `min` are open.
fn build_retries<D: Driver>(d: &D) {
    let fake = Fake::default();
    fake.fail_opens.store(true, Ordering::SeqCst);
    let later = fake.clone();
    let heal = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        later.fail_opens.store(false, Ordering::SeqCst);
    });
    let p = d.build(&fake, &Options::new(1, 2));
    heal.join().expect("the healing thread");
    let p = p.unwrap_or_else(|e| panic!("the build gave up: {e}"));
    let s = d.stats(&p);
    assert!(s.open_failures >= 1, "no open failed: {s:?}");
    assert_eq!((s.opens, s.idle), (1, 1), "{s:?}");
}

fn build_fails_for_good<D: Driver>(d: &D) {
    let fake = Fake::default();
    fake.fail_opens.store(true, Ordering::SeqCst);
    fake.permanent.store(true, Ordering::SeqCst);
    let options = Options {
        timeout: Some(Duration::from_secs(30)),
        ..Options::new(1, 2)
    };
    let start = Instant::now();
    let err = d.build(&fake, &options).map(drop).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "waited out its bound"
    );
    match &err {
        BuildError::Connect(e) => assert_eq!(**e, FakeError("refused")),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.to_string(), "could not open a connection: refused");
    assert_eq!(count(&fake.closed), 0);
}

/// psycopg2's build (no refills: nothing would retry): the first failed open is the error.
fn build_first_failure<D: Driver>(d: &D) {
    let fake = Fake::default();
    fake.fail_opens.store(true, Ordering::SeqCst);
    let options = Options {
        refill: false,
        timeout: None,
        ..Options::new(1, 2)
    };
    let err = d.build(&fake, &options).map(drop).unwrap_err();
    match &err {
        BuildError::Connect(e) => assert_eq!(**e, FakeError("refused")),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.to_string(), "could not open a connection: refused");
}

/// Transient failures until the build's bound (the checkout timeout, at least 1 s): a timeout
/// naming the last failure.
fn build_times_out<D: Driver>(d: &D) {
    let fake = Fake::default();
    fake.fail_opens.store(true, Ordering::SeqCst);
    let options = Options {
        timeout: Some(Duration::from_millis(100)),
        ..Options::new(1, 2)
    };
    let start = Instant::now();
    let err = d.build(&fake, &options).map(drop).unwrap_err();
    let took = start.elapsed();
    match &err {
        BuildError::Timeout(Some(e)) => assert_eq!(**e, FakeError("refused")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "timed out waiting for a connection: refused"
    );
    assert!(took >= Duration::from_secs(1), "gave up early: {took:?}");
    assert!(took < Duration::from_millis(1_500), "took {took:?}");
}

/// The event hook sees each connection's life and each checkout, in the pool's order, with the
/// connections numbered as they opened (as the fake numbers them).
fn events_in_order<D: Driver>(d: &D) {
    let fake = Fake::default();
    let rec = Recorder::default();
    let options = Options {
        timeout: Some(Duration::from_millis(300)),
        events: Some(rec.clone()),
        ..Options::new(1, 1)
    };
    let p = pool(d, &fake, &options);
    eventually("the acquire", || rec.events().len() == 1);
    drop(d.get(&p).unwrap());
    let conn = d.get(&p).unwrap();
    d.close_conn(conn);
    eventually("the replacement", || d.stats(&p).idle == 1);
    let held = d.get(&p).unwrap();
    assert_eq!(held.id, 2);
    let err = d.get(&p).map(|g| g.id).unwrap_err();
    assert!(matches!(err, GetError::Timeout(None)), "{err:?}");
    let waiter = d.get_elsewhere(&p);
    eventually("the waiter queued", || d.stats(&p).waiting == 1);
    drop(held);
    assert_eq!(waiter().ok(), Some(2));
    eventually("the waiter's checkin", || rec.events().len() == 12);
    d.close(&p).unwrap();
    let events = rec.events();
    let seen: Vec<(&str, u64)> = events
        .iter()
        .map(|e| match *e {
            Event::Acquire { conn, .. } => ("acquire", conn),
            Event::Release { conn, .. } => ("release", conn),
            Event::Checkout { conn, .. } => ("checkout", conn),
            Event::Checkin { conn, .. } => ("checkin", conn),
            Event::Timeout { .. } => ("timeout", 0),
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("acquire", 1),
            ("checkout", 1),
            ("checkin", 1),
            ("checkout", 1),
            ("checkin", 1),
            ("release", 1),
            ("acquire", 2),
            ("checkout", 2),
            ("timeout", 0),
            ("checkin", 2),
            ("checkout", 2),
            ("checkin", 2),
            ("release", 2),
        ],
        "{events:?}"
    );
    // An idle connection is handed out without waiting; the queued checkout waited; the
    // timeout waited its whole timeout.
    assert!(matches!(events[1], Event::Checkout { waited, .. } if waited.is_zero()));
    assert!(matches!(events[10], Event::Checkout { waited, .. } if !waited.is_zero()));
    assert!(
        matches!(events[8], Event::Timeout { waited } if waited >= Duration::from_millis(300)),
        "{:?}",
        events[8]
    );
}

fn permanent_failure<D: Driver>(d: &D) {
    let fake = Fake::default();
    let options = Options {
        timeout: Some(Duration::from_secs(30)),
        ..Options::new(0, 1)
    };
    let p = pool(d, &fake, &options);
    fake.fail_opens.store(true, Ordering::SeqCst);
    fake.permanent.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let err = d.get(&p).map(|g| g.id).unwrap_err();
    assert!(matches!(err, GetError::Connect(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "waited out its timeout"
    );
}

fn timeout_with_cause<D: Driver>(d: &D) {
    let fake = Fake::default();
    let options = Options {
        timeout: Some(Duration::from_millis(200)),
        ..Options::new(0, 1)
    };
    let p = pool(d, &fake, &options);
    fake.fail_opens.store(true, Ordering::SeqCst);
    let err = d.get(&p).map(|g| g.id).unwrap_err();
    match &err {
        GetError::Timeout(Some(e)) => assert_eq!(**e, FakeError("refused")),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().ends_with(": refused"), "{err}");
}

fn panicking_open<D: Driver>(d: &D) {
    let fake = Fake::default();
    let options = Options {
        timeout: None,
        ..Options::new(0, 1)
    };
    let p = pool(d, &fake, &options);
    fake.panic_opens.store(true, Ordering::SeqCst);
    let err = d.get(&p).map(|g| g.id).unwrap_err();
    assert!(matches!(err, GetError::Panicked(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("opening a connection panicked: "),
        "{err}"
    );
    fake.panic_opens.store(false, Ordering::SeqCst);
    assert_eq!(d.get(&p).unwrap().id, 1, "the pool goes on");
}

fn closed_pool<D: Driver>(d: &D) {
    let fake = Fake::default();
    let p = pool(d, &fake, &Options::new(2, 2));
    eventually("min open", || d.stats(&p).idle == 2);
    let held = d.get(&p).unwrap();
    d.close(&p).unwrap();
    // The close returns once the idle connection is closed.
    assert_eq!(count(&fake.closed), 1);
    assert!(matches!(d.get(&p).map(|g| g.id), Err(GetError::Closed)));
    assert_eq!(d.close(&p), Err(CoreError::Closed));
    drop(held);
    eventually("the returned one closed", || count(&fake.closed) == 2);
}

fn leak_reported<D: Driver>(d: &D) {
    let fake = Fake::default();
    let options = Options {
        leak_after: Some(Duration::from_millis(20)),
        ..Options::new(1, 1)
    };
    let p = pool(d, &fake, &options);
    let held = d.get(&p).unwrap();
    eventually("the leak reported", || d.stats(&p).leaks == 1);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(d.stats(&p).leaks, 1, "once per checkout");
    drop(held);
}

fn check_idle<D: Driver>(d: &D) {
    let fake = Fake::default();
    let p = pool(d, &fake, &Options::new(2, 2));
    eventually("min open", || d.stats(&p).idle == 2);
    assert_eq!(d.check(&p), Ok(0));
    fake.fail_checks.store(true, Ordering::SeqCst);
    assert_eq!(d.check(&p), Ok(2));
    eventually("both closed", || count(&fake.closed) == 2);
    fake.fail_checks.store(false, Ordering::SeqCst);
    eventually("refilled", || d.stats(&p).idle == 2);
    assert_eq!(count(&fake.opened), 4);
}

fn check_on_checkout<D: Driver>(d: &D) {
    let fake = Fake::default();
    let options = Options {
        check_on_checkout: true,
        ..Options::new(1, 2)
    };
    let p = pool(d, &fake, &options);
    eventually("min open", || d.stats(&p).idle == 1);
    // Vetted and handed out: one check.
    drop(d.get(&p).unwrap());
    assert_eq!(count(&fake.checks), 1);
    // The idle one fails its check: closed, and a new one served within the same checkout.
    fake.fail_checks.store(true, Ordering::SeqCst);
    let conn = d.get(&p).unwrap();
    fake.fail_checks.store(false, Ordering::SeqCst);
    assert_eq!(conn.id, 2, "a fresh connection, unchecked");
    let s = d.stats(&p);
    assert_eq!((s.vets, s.stale, s.broken_returns), (2, 1, 0));
    eventually("the dead one closed", || count(&fake.closed) == 1);
}

fn dead_idle_probed<D: Driver>(d: &D) {
    let fake = Fake::default();
    fake.probing.store(true, Ordering::SeqCst);
    let p = pool(d, &fake, &Options::new(2, 2));
    eventually("min open", || d.stats(&p).idle == 2);
    // Alive: handed out after a look, no round trip.
    drop(d.get(&p).unwrap());
    assert_eq!((count(&fake.probes), count(&fake.checks)), (1, 0));
    // Both die while idle: each is found by its probe, closed, and a new one opened for the
    // checkout; nobody gets a dead one.
    fake.dead_ids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend([1, 2]);
    let conn = d.get(&p).unwrap();
    assert_eq!(conn.id, 3, "a new connection, not a dead one");
    let s = d.stats(&p);
    assert_eq!((s.vets, s.stale, s.broken_returns), (3, 2, 0));
    assert_eq!(count(&fake.checks), 0);
    eventually("the dead ones closed", || count(&fake.closed) == 2);
}

fn abandoned_reset<D: Driver>(d: &D) {
    let fake = Fake::default();
    let p = pool(d, &fake, &Options::new(1, 1));
    fake.fail_resets.store(true, Ordering::SeqCst);
    fake.abandon.store(true, Ordering::SeqCst);
    d.get(&p).unwrap().state = Returned::Dirty;
    eventually("closed", || count(&fake.closed) == 1);
    assert_eq!(d.stats(&p).abandoned_resets, 1);
    fake.abandon.store(false, Ordering::SeqCst);
    eventually("refilled", || d.stats(&p).idle == 1);
    d.get(&p).unwrap().state = Returned::Dirty;
    eventually("closed again", || count(&fake.closed) == 2);
    assert_eq!(
        d.stats(&p).abandoned_resets,
        1,
        "a plain failure is not counted there"
    );
}

fn drain_and_resize<D: Driver>(d: &D) {
    let fake = Fake::default();
    let p = pool(d, &fake, &Options::new(2, 4));
    eventually("min open", || d.stats(&p).idle == 2);
    d.drain(&p).unwrap();
    eventually("retired and refilled", || {
        count(&fake.closed) == 2 && d.stats(&p).idle == 2
    });
    d.resize(&p, 3, 4).unwrap();
    eventually("grown", || d.stats(&p).idle == 3);
    assert_eq!(d.resize(&p, 5, 4), Err(CoreError::MinAboveMax));
    d.resize(&p, 1, 1).unwrap();
    eventually("shrunk", || d.stats(&p).size == 1);
}

/// The core's named scenarios, as far as a driver can play them — checkouts without a key,
/// played as psycopg2's `getconn` (no waiting), check-ins, detaches, close, drain, resize, check
/// — each replayed through the driver (its I/O completing at once) and through the core's
/// simulated driver (performing every I/O as it is drained). After each op both answer alike,
/// hand out the same connection (`Same`: opens may finish out of order) and show the same stats.
fn core_seeds<D: Driver>(d: &D) {
    let mut played = Vec::new();
    for (name, case) in seeds::all() {
        let ops: Vec<Op> = case.ops.iter().filter_map(playable).collect();
        let setup = case.setup;
        let config = setup.config();
        if config.max_lifetime.is_some() || config.max_idle.is_some() || config.leak_after.is_some()
        {
            continue; // time-driven: the simulated clock and the driver's differ
        }
        let fake = Fake::default();
        let options = Options {
            timeout: None,
            refill: config.refill,
            keep_idle: Some(config.keep_idle),
            idle_order: Some(config.idle_order),
            fairness: Some(config.fairness),
            max_waiting: Some(config.max_waiting),
            // The core vets through a check: the fake has no probe unless told.
            check_on_checkout: config.vet,
            ..Options::new(config.min, config.max)
        };
        let Ok(p) = d.build(&fake, &options) else {
            continue; // refused settings: the core's own tests cover them
        };
        let mut sim = match Sim::<Fixed<8, 8>, u8>::from_setup(&setup) {
            Ok(sim) => sim,
            Err(_) => continue,
        };
        sim.auto_open = true;
        sim.auto_reset = true;
        sim.auto_close = true;
        sim.serve();
        eventually("the build's opens", || d.stats(&p).opening == 0);
        let mut held: Vec<D::Guard> = Vec::new();
        // Which of the driver's connections is which of the simulation's. Both number them in
        // open order, but a driver's opens run in parallel and may finish out of order: each
        // connection's identity is fixed the first time both hand it out, and held to after.
        let mut same = Same::default();
        for (i, op) in ops.iter().enumerate() {
            let at = format!("{name}, op {i} ({op:?})");
            let before: Vec<u32> = sim.held.keys().copied().collect();
            let want = sim.step(op).reply;
            sim.serve();
            let gone = before.iter().find(|c| !sim.held.contains_key(c)).copied();
            let take = |held: &mut Vec<D::Guard>| {
                let id = gone.unwrap_or_else(|| panic!("{at}: which connection?"));
                let id = same
                    .driver(id)
                    .unwrap_or_else(|| panic!("{at}: {id} never seen"));
                let at = held.iter().position(|g| g.id == id);
                held.remove(at.unwrap_or_else(|| panic!("{id} not held by the driver")))
            };
            match (op, want) {
                (Op::Checkout { .. }, Reply::Checkout(Ok(got))) => {
                    let conn = d.get(&p).unwrap_or_else(|e| panic!("{at}: {e}"));
                    // Served at once, or once the connection it needed was opened.
                    let id = match got {
                        Got::Ready(id) => Some(id),
                        _ => sim.held.keys().copied().find(|c| !before.contains(c)),
                    };
                    if let Some(id) = id {
                        assert!(same.pair(id, conn.id), "{at}: another connection");
                    }
                    held.push(conn);
                }
                (Op::Checkout { .. }, Reply::Checkout(Err(e))) => {
                    let got = d.get(&p).map(|g| g.id).unwrap_err();
                    assert_eq!(got.to_string(), e.to_string(), "{at}");
                }
                (Op::Checkin { back, .. }, Reply::Done(Ok(()))) => {
                    let mut conn = take(&mut held);
                    conn.state = Returned::from(*back);
                    match back {
                        Back::Close => d.close_conn(conn),
                        _ => drop(conn),
                    }
                }
                (Op::Checkin { .. }, Reply::Done(Err(_))) if gone.is_some() => {
                    // After close: taken and closed all the same.
                    drop(take(&mut held));
                }
                (Op::Detach { .. }, Reply::Done(Ok(()))) => drop(d.detach(take(&mut held))),
                (Op::Close, Reply::Done(want)) => assert_eq!(d.close(&p), want, "{at}"),
                (Op::Drain, Reply::Done(want)) => assert_eq!(d.drain(&p), want, "{at}"),
                (Op::Resize { .. }, Reply::Done(want)) => {
                    let c = sim.pool().config();
                    let (min, max) = match want {
                        Ok(()) => (c.min, c.max),
                        Err(_) => continue, // refused: the driver's pool is as before
                    };
                    assert_eq!(d.resize(&p, min, max), Ok(()), "{at}");
                }
                (Op::CheckIdle, Reply::Sent(want)) => {
                    assert_eq!(d.check(&p).is_ok(), want.is_ok(), "{at}")
                }
                _ => {}
            }
            eventually(&at, || {
                let (got, want) = (d.stats(&p), sim.pool().stats());
                (
                    got.size,
                    got.idle,
                    got.in_use,
                    got.checkouts,
                    got.resets,
                    got.broken_returns,
                    (got.vets, got.stale),
                ) == (
                    want.size,
                    want.idle,
                    want.in_use,
                    want.checkouts,
                    want.resets,
                    want.broken_returns,
                    (want.vets, want.stale),
                ) && got.opening + got.resetting + got.closing == 0
            });
        }
        drop(held);
        played.push((name, ops.len()));
    }
    // Not vacuous: most scenarios are playable, each with several ops.
    let ops: usize = played.iter().map(|(_, n)| n).sum();
    assert!(played.len() >= 8 && ops >= 60, "played only {played:?}");
}

/// A one-to-one map of the simulation's connection ids to the driver's.
#[derive(Default)]
struct Same(Vec<(u32, u32)>);

impl Same {
    /// Whether `sim` and `driver` are the same connection: they are if neither was seen before
    /// (and from now on), or if they were paired already.
    fn pair(&mut self, sim: u32, driver: u32) -> bool {
        match (self.driver(sim), self.0.iter().find(|p| p.1 == driver)) {
            (None, None) => {
                self.0.push((sim, driver));
                true
            }
            (Some(d), _) => d == driver,
            (None, Some(_)) => false,
        }
    }

    fn driver(&self, sim: u32) -> Option<u32> {
        self.0.iter().find(|p| p.0 == sim).map(|p| p.1)
    }
}

/// `op` as a driver can play it: a checkout without a key, as psycopg2's `getconn` (no
/// waiting); a check-in or detach of a held connection; close, drain, resize, check; a serve or
/// poll (the simulated driver's own catching up, nothing for a driver whose I/O completes at
/// once). `None` for the rest (keys, waiters, the clock, reports of I/O by hand, forged handles).
fn playable(op: &Op) -> Option<Op> {
    match *op {
        Op::Checkout { key: None, .. } => Some(Op::Checkout {
            key: None,
            wait: WaitArg::No,
        }),
        Op::Checkin {
            lease: Pick::Live(_),
            key: KeyArg::NoKey | KeyArg::Own,
            ..
        }
        | Op::Detach {
            lease: Pick::Live(_),
        }
        | Op::Close
        | Op::Drain
        | Op::Resize { .. }
        | Op::CheckIdle
        | Op::Serve
        | Op::Poll { .. } => Some(*op),
        _ => None,
    }
}
