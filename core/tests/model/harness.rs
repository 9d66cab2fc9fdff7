//! Runs one op sequence against the real pool and the reference model side by side, comparing every
//! answer, every drained command, every handle and the stats after every step.
//!
//! The driver's own state (the leases it holds, the operations it was asked to perform, the
//! checkouts it is waiting on) is kept once, with each real handle paired with the model's abstract
//! one. Handles are mapped one to one: a handle the real pool emits for the first time must be new
//! on both sides, and a handle seen before must map to the same model handle.

use super::reference::{Cmd, Conn, Handle, Key, MCheckout, MWait, Model, ModelConfig, H, W};
use sanspool_core::storage::Storage;
use sanspool_core::{
    Checkout, Command, Config, Error, Fixed, IdleOrder, KeepIdle, Lease, Pool, Rejected, Returned,
    Ticket, Time, Wait, WaiterId,
};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::Duration;

/// The pool's tag: forged "foreign" handles use another.
const TAG: u32 = 7;
/// Connections the driver makes up for inputs that should be refused (never really opened).
const BOGUS: Conn = 1 << 40;
const MS: u64 = 1_000_000;

/// A storage backend with its capacities.
pub trait Backend: Storage<Conn, Key> {
    const SLOTS: usize;
    const WAITERS: usize;
}

impl Backend for sanspool_core::Alloc {
    const SLOTS: usize = usize::MAX;
    const WAITERS: usize = usize::MAX;
}

impl<const N: usize, const M: usize> Backend for Fixed<N, M> {
    const SLOTS: usize = N;
    const WAITERS: usize = M;
}

/// The pool's configuration (times in milliseconds; no lifetime jitter).
#[derive(Clone, Debug)]
pub struct Setup {
    pub min: usize,
    pub max: usize,
    pub max_waiting: usize,
    pub keep_idle: KeepIdle,
    pub idle_order: IdleOrder,
    pub max_lifetime: Option<u64>,
    pub max_idle: Option<u64>,
    pub backoff_initial: u64,
    pub backoff_max: u64,
}

impl Setup {
    /// `Config::new(min, max)`'s defaults.
    pub fn new(min: usize, max: usize) -> Setup {
        Setup {
            min,
            max,
            max_waiting: 1024,
            keep_idle: KeepIdle::UpToMax,
            idle_order: IdleOrder::Lifo,
            max_lifetime: None,
            max_idle: None,
            backoff_initial: 100,
            backoff_max: 10_000,
        }
    }
}

/// Which handle an input gives back.
#[derive(Copy, Clone, Debug)]
pub enum Pick {
    /// One the driver holds for this input (a lease in hand, an operation in progress), by index.
    Live(u8),
    /// Any handle ever seen (stale, in hand, or of another kind), by index.
    Old(u8),
    /// An old handle's parts with another pool's tag.
    Foreign(u8),
    /// A slot no pool of this size has.
    NoSlot,
    /// An old handle's slot with a generation never issued.
    FutureGen(u8),
}

/// The key given at checkin.
#[derive(Copy, Clone, Debug)]
pub enum KeyArg {
    NoKey,
    /// The key the connection was checked out with.
    Own,
    Key(Key),
}

/// Which waiter a cancel names.
#[derive(Copy, Clone, Debug)]
pub enum WPick {
    /// One still waiting (as far as the driver knows), by index.
    Waiting(u8),
    /// Any waiter ever seen.
    AnyWaiter(u8),
    /// An id never issued.
    Forged,
}

/// How long a checkout waits (times in ms from now).
#[derive(Copy, Clone, Debug)]
pub enum WaitOp {
    No,
    Until(u64),
    Forever,
}

/// One input. Times in milliseconds.
#[derive(Copy, Clone, Debug)]
pub enum Op {
    Checkout {
        key: Option<Key>,
        wait: WaitOp,
    },
    Checkin {
        lease: Pick,
        key: KeyArg,
        returned: Returned,
    },
    Detach {
        lease: Pick,
    },
    Cancel {
        waiter: WPick,
    },
    /// Drain up to `n` commands (0: all).
    Poll {
        n: u8,
    },
    /// A well-behaved driver catches up: drain everything, report every open, reset and close as
    /// done, drain again.
    Serve,
    Opened {
        ticket: Pick,
    },
    OpenFailed {
        ticket: Pick,
    },
    ResetDone {
        ticket: Pick,
        ok: bool,
    },
    CloseDone {
        ticket: Pick,
    },
    /// The clock moves on, no input.
    Tick {
        ms: u64,
    },
    /// The clock moves on and `handle_timeout` is called.
    Timeout {
        ms: u64,
    },
    /// `handle_timeout` at `poll_timeout()`, if any.
    ToDeadline,
    /// `handle_timeout` with a time in the past.
    Backwards {
        ms: u64,
    },
    Resize {
        min: usize,
        max: usize,
    },
    Drain,
    CheckIdle,
    CloseAll,
}

type Parts = (u32, u16, u32);

fn lease_parts(l: Lease) -> Parts {
    (l.pool_tag(), l.slot() as u16, l.generation())
}
fn ticket_parts(t: Ticket) -> Parts {
    (t.pool_tag(), t.slot() as u16, t.generation())
}

#[derive(Clone, Debug)]
struct Held {
    h: H,
    lease: Lease,
    conn: Conn,
    key: Option<Key>,
}

struct Harness<S: Backend> {
    real: Pool<Conn, Key, S>,
    model: Model,
    clock: u64,
    next_conn: Conn,
    next_bogus: Conn,
    m2r: HashMap<H, Parts>,
    r2m: HashMap<Parts, H>,
    wm2r: HashMap<W, u64>,
    wr2m: HashMap<u64, W>,
    /// Every handle seen, in order.
    history: Vec<(H, Parts)>,
    /// Every waiter seen.
    waiter_history: Vec<(W, WaiterId)>,
    held: Vec<Held>,
    opens: Vec<(H, Ticket)>,
    resets: Vec<(H, Ticket, Conn)>,
    closes: Vec<(H, Ticket, Conn)>,
    waiting: Vec<(W, WaiterId, Option<Key>)>,
}

type Res = Result<(), String>;

macro_rules! same {
    ($what:expr, $model:expr, $real:expr) => {{
        let (m, r) = (&$model, &$real);
        if m != r {
            return Err(format!("{}: model {:?} != real {:?}", $what, m, r));
        }
    }};
}

fn real_config(setup: &Setup) -> Config {
    Config {
        max_waiting: setup.max_waiting,
        keep_idle: setup.keep_idle,
        idle_order: setup.idle_order,
        max_lifetime: setup.max_lifetime.map(Duration::from_millis),
        lifetime_jitter: Duration::ZERO,
        max_idle: setup.max_idle.map(Duration::from_millis),
        backoff_initial: Duration::from_millis(setup.backoff_initial),
        backoff_max: Duration::from_millis(setup.backoff_max),
        tag: TAG,
        ..Config::new(setup.min, setup.max)
    }
}

/// Runs `ops` on a pool with `setup` and on the model; `Err` describes the first disagreement.
pub fn run<S: Backend>(setup: &Setup, ops: &[Op]) -> Res {
    let config = real_config(setup);
    let mconfig = ModelConfig {
        min: setup.min,
        max: setup.max,
        max_waiting: setup.max_waiting,
        keep_idle: setup.keep_idle,
        idle_order: setup.idle_order,
        max_lifetime: setup.max_lifetime.map(|ms| ms * MS),
        max_idle: setup.max_idle.map(|ms| ms * MS),
        backoff_initial: setup.backoff_initial * MS,
        backoff_max: setup.backoff_max * MS,
        slot_capacity: S::SLOTS,
        waiter_capacity: S::WAITERS,
    };
    let (real, model) = match (Pool::<Conn, Key, S>::new(config), Model::new(mconfig)) {
        (Ok(r), Ok(m)) => (r, m),
        (Err(r), Err(m)) => {
            same!("construction", m, r);
            return Ok(());
        }
        (r, m) => {
            return Err(format!(
                "construction: model {:?} real {:?}",
                m.err(),
                r.err()
            ))
        }
    };
    let mut h = Harness {
        real,
        model,
        clock: 0,
        next_conn: 0,
        next_bogus: BOGUS,
        m2r: HashMap::new(),
        r2m: HashMap::new(),
        wm2r: HashMap::new(),
        wr2m: HashMap::new(),
        history: Vec::new(),
        waiter_history: Vec::new(),
        held: Vec::new(),
        opens: Vec::new(),
        resets: Vec::new(),
        closes: Vec::new(),
        waiting: Vec::new(),
    };
    h.compare_state()
        .map_err(|e| format!("after construction: {e}"))?;
    for (step, op) in ops.iter().enumerate() {
        quietly(|| h.step(op).and_then(|()| h.compare_state()))
            .map_err(|e| format!("step {step} ({op:?}): {e}"))?;
    }
    // Finally drain everything: the tail must agree too.
    quietly(|| h.step(&Op::Poll { n: 0 }).and_then(|()| h.compare_state()))
        .map_err(|e| format!("final drain: {e}"))
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static TALLY: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Counts an event this thread's cases reached (what an op answered, which command was drained,
/// which states were seen), to check that the generator reaches the interesting paths.
fn note(event: impl Into<String>) {
    TALLY.with(|t| *t.borrow_mut().entry(event.into()).or_default() += 1);
}

/// The events counted on this thread so far, and a fresh count.
pub fn take_tally() -> BTreeMap<String, u64> {
    TALLY.with(|t| std::mem::take(&mut *t.borrow_mut()))
}

/// The variant name of a `Debug` value: `Err(Closed)` for `Err(Rejected { error: Closed, .. })`.
fn kind<T: core::fmt::Debug>(what: &str, r: &T) -> String {
    let s = format!("{r:?}").replace("Rejected { error: ", "");
    let name: String = s
        .chars()
        .take_while(|c| c.is_alphabetic() || *c == '(')
        .collect();
    format!("{what}:{}", name.replace("((", "(").trim_end_matches('('))
}

/// Runs `f`, turning a panic (an `assert_invariants` failure, say) into an `Err` without printing
/// it: proptest shrinks a failing case through thousands of runs.
fn quietly(f: impl FnOnce() -> Res) -> Res {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    out.unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("panic: {msg}"))
    })
}

/// `run` for a literal regression case: the configuration must be accepted (a case that no
/// longer builds a pool would pass without testing anything).
#[allow(dead_code)]
pub fn replay<S: Backend>(setup: &Setup, ops: &[Op]) {
    if let Err(e) = Pool::<Conn, Key, S>::new(real_config(setup)) {
        panic!("the regression case no longer builds a pool: {e:?}");
    }
    if let Err(e) = run::<S>(setup, ops) {
        panic!("{e}");
    }
}

fn pick<T>(list: &[T], i: u8) -> Option<&T> {
    if list.is_empty() {
        None
    } else {
        list.get(usize::from(i) % list.len())
    }
}

impl<S: Backend> Harness<S> {
    fn now(&self) -> Time {
        Time::from_nanos(self.clock)
    }

    fn bogus(&mut self) -> Conn {
        self.next_bogus += 1;
        self.next_bogus
    }

    fn bind(&mut self, h: H, parts: Parts) -> Res {
        match (self.m2r.get(&h), self.r2m.get(&parts)) {
            (Some(&p), _) if p == parts => Ok(()),
            (None, None) => {
                self.m2r.insert(h, parts);
                self.r2m.insert(parts, h);
                self.history.push((h, parts));
                Ok(())
            }
            (m, r) => Err(format!(
                "handle identity: model handle {h} was {m:?}, real handle {parts:?} was model {r:?}"
            )),
        }
    }

    fn bind_waiter(&mut self, w: W, id: WaiterId) -> Res {
        match (self.wm2r.get(&w), self.wr2m.get(&id.get())) {
            (Some(&r), _) if r == id.get() => Ok(()),
            (None, None) => {
                self.wm2r.insert(w, id.get());
                self.wr2m.insert(id.get(), w);
                self.waiter_history.push((w, id));
                Ok(())
            }
            (m, r) => Err(format!(
                "waiter identity: model {w} was {m:?}, real {id:?} was model {r:?}"
            )),
        }
    }

    /// The model's and the real pool's view of a handle to give back. `live` is the driver's list
    /// for this input; `None`: nothing to pick, the op is skipped.
    fn resolve(&self, p: Pick, live: &[(H, Parts)]) -> Option<(Handle, Parts)> {
        let old = |i: u8| pick(&self.history, i).copied();
        Some(match p {
            Pick::Live(i) => {
                let &(h, parts) = pick(live, i)?;
                (Handle::Issued(h), parts)
            }
            Pick::Old(i) => {
                let (h, parts) = old(i)?;
                (Handle::Issued(h), parts)
            }
            Pick::Foreign(i) => {
                let (_, (tag, slot, gen)) = old(i).unwrap_or((0, (TAG, 0, 1)));
                (Handle::Foreign, (tag.wrapping_add(1), slot, gen))
            }
            Pick::NoSlot => (Handle::Unknown, (TAG, u16::MAX, 1)),
            Pick::FutureGen(i) => {
                let (_, (_, slot, _)) = old(i).unwrap_or((0, (TAG, 0, 1)));
                (Handle::Unknown, (TAG, slot, u32::MAX))
            }
        })
    }

    fn step(&mut self, op: &Op) -> Res {
        let now = self.now();
        let clock = self.clock;
        match *op {
            Op::Checkout { key, wait } => {
                let (mw, rw) = match wait {
                    WaitOp::No => (MWait::No, Wait::No),
                    WaitOp::Until(ms) => (
                        MWait::Until(clock + ms * MS),
                        Wait::Until(Time::from_nanos(clock + ms * MS)),
                    ),
                    WaitOp::Forever => (MWait::Forever, Wait::Forever),
                };
                let m = self.model.checkout(clock, key, mw);
                let r = self.real.handle_checkout(now, key, rw);
                note(kind("checkout", &m));
                match (m, r) {
                    (Ok(MCheckout::Ready(h, c)), Ok(Checkout::Ready { lease, conn }))
                        if c == conn =>
                    {
                        self.bind(h, lease_parts(lease))?;
                        self.held.push(Held {
                            h,
                            lease,
                            conn,
                            key,
                        });
                    }
                    (Ok(MCheckout::Held(h)), Ok(Checkout::Held(lease))) => {
                        self.bind(h, lease_parts(lease))?;
                        if !self.held.iter().any(|x| x.h == h && x.key == key) {
                            return Err(format!(
                                "Held({lease:?}) is not a lease held under {key:?}"
                            ));
                        }
                    }
                    (Ok(MCheckout::Waiting(w)), Ok(Checkout::Waiting(id))) => {
                        self.bind_waiter(w, id)?;
                        self.waiting.push((w, id, key));
                    }
                    (Err(m), Err(r)) => same!("checkout error", m, r),
                    (m, r) => return Err(format!("checkout: model {m:?} real {r:?}")),
                }
            }
            Op::Checkin {
                lease,
                key,
                returned,
            } => {
                let live: Vec<_> = self
                    .held
                    .iter()
                    .map(|x| (x.h, lease_parts(x.lease)))
                    .collect();
                let Some((mh, parts)) = self.resolve(lease, &live) else {
                    return Ok(());
                };
                let held = match mh {
                    Handle::Issued(h) => self.held.iter().position(|x| x.h == h),
                    _ => None,
                };
                let conn = match held {
                    Some(i) => self.held[i].conn,
                    None => self.bogus(),
                };
                let key = match key {
                    KeyArg::NoKey => None,
                    KeyArg::Own => held.and_then(|i| self.held[i].key),
                    KeyArg::Key(k) => Some(k),
                };
                let m = self.model.checkin(clock, mh, key, conn, returned);
                let (t, s, g) = parts;
                let r = self.real.handle_checkin(
                    now,
                    Lease::from_parts(t, s, g),
                    key.as_ref(),
                    conn,
                    returned,
                );
                note(format!("{}/{returned:?}", kind("checkin", &m)));
                let taken = match (m, r) {
                    (Ok(()), Ok(())) => true,
                    (Err((me, mback)), Err(Rejected { error, conn: back })) => {
                        same!("checkin error", me, error);
                        same!("checkin gives the connection back", mback, back.is_some());
                        if let Some(b) = back {
                            same!("checkin gives the same connection back", conn, b);
                        }
                        !mback
                    }
                    (m, r) => return Err(format!("checkin: model {m:?} real {r:?}")),
                };
                if taken {
                    let Some(i) = held else {
                        return Err("checkin took a connection the driver did not hold".into());
                    };
                    self.held.remove(i);
                }
            }
            Op::Detach { lease } => {
                let live: Vec<_> = self
                    .held
                    .iter()
                    .map(|x| (x.h, lease_parts(x.lease)))
                    .collect();
                let Some((mh, (t, s, g))) = self.resolve(lease, &live) else {
                    return Ok(());
                };
                let m = self.model.detach(clock, mh);
                let r = self.real.handle_detach(now, Lease::from_parts(t, s, g));
                note(kind("detach", &m));
                same!("detach", m, r);
                if m.is_ok() {
                    let i = self
                        .held
                        .iter()
                        .position(|x| Handle::Issued(x.h) == mh)
                        .ok_or("detach of a lease the driver did not hold")?;
                    self.held.remove(i);
                }
            }
            Op::Cancel { waiter } => {
                let (mw, rw) = match waiter {
                    WPick::Waiting(i) => match pick(&self.waiting, i) {
                        Some(&(w, id, _)) => (Some(w), id),
                        None => return Ok(()),
                    },
                    WPick::AnyWaiter(i) => match pick(&self.waiter_history, i) {
                        Some(&(w, id)) => (Some(w), id),
                        None => return Ok(()),
                    },
                    WPick::Forged => (None, WaiterId::from_raw(u64::MAX)),
                };
                let m = self.model.cancel(clock, mw);
                let r = self.real.handle_cancel(now, rw);
                note(kind("cancel", &m));
                same!("cancel", m, r);
                if m.is_ok() {
                    let i = self
                        .waiting
                        .iter()
                        .position(|x| Some(x.0) == mw)
                        .ok_or("cancelled a waiter the driver did not know")?;
                    self.waiting.remove(i);
                }
            }
            Op::Poll { n } => {
                let mut drained = 0;
                while n == 0 || drained < n {
                    drained = drained.saturating_add(1);
                    if !self.poll_one()? {
                        break;
                    }
                }
            }
            Op::Serve => {
                self.step(&Op::Poll { n: 0 })?;
                while !self.opens.is_empty() {
                    self.step(&Op::Opened {
                        ticket: Pick::Live(0),
                    })?;
                }
                while !self.resets.is_empty() {
                    self.step(&Op::ResetDone {
                        ticket: Pick::Live(0),
                        ok: true,
                    })?;
                }
                while !self.closes.is_empty() {
                    self.step(&Op::CloseDone {
                        ticket: Pick::Live(0),
                    })?;
                }
                self.step(&Op::Poll { n: 0 })?;
            }
            Op::Opened { ticket } | Op::OpenFailed { ticket } => {
                let live: Vec<_> = self
                    .opens
                    .iter()
                    .map(|&(h, t)| (h, ticket_parts(t)))
                    .collect();
                let Some((mh, (t, s, g))) = self.resolve(ticket, &live) else {
                    return Ok(());
                };
                let rt = Ticket::from_parts(t, s, g);
                let ok = if let Op::Opened { .. } = op {
                    self.next_conn += 1;
                    let conn = self.next_conn;
                    let m = self.model.opened(clock, mh, conn);
                    let r = self.real.handle_opened(now, rt, conn);
                    note(kind("opened", &m));
                    compare_refused("opened", conn, m, r)?
                } else {
                    let m = self.model.open_failed(clock, mh);
                    let r = self.real.handle_open_failed(now, rt);
                    note(kind("open_failed", &m));
                    same!("open failed", m, r);
                    m.is_ok()
                };
                if ok {
                    let i = self
                        .opens
                        .iter()
                        .position(|x| Handle::Issued(x.0) == mh)
                        .ok_or("an open the driver was not asked for was accepted")?;
                    self.opens.remove(i);
                }
            }
            Op::ResetDone { ticket, ok } => {
                let live: Vec<_> = self
                    .resets
                    .iter()
                    .map(|&(h, t, _)| (h, ticket_parts(t)))
                    .collect();
                let Some((mh, (t, s, g))) = self.resolve(ticket, &live) else {
                    return Ok(());
                };
                let pending = self.resets.iter().position(|x| Handle::Issued(x.0) == mh);
                let conn = match pending {
                    Some(i) => self.resets[i].2,
                    None => self.bogus(),
                };
                let m = self.model.reset_done(clock, mh, conn, ok);
                let r = self
                    .real
                    .handle_reset(now, Ticket::from_parts(t, s, g), conn, ok);
                note(kind("reset", &m));
                if compare_refused("reset", conn, m, r)? {
                    let i = pending.ok_or("a reset the driver was not asked for was accepted")?;
                    self.resets.remove(i);
                }
            }
            Op::CloseDone { ticket } => {
                let live: Vec<_> = self
                    .closes
                    .iter()
                    .map(|&(h, t, _)| (h, ticket_parts(t)))
                    .collect();
                let Some((mh, (t, s, g))) = self.resolve(ticket, &live) else {
                    return Ok(());
                };
                let m = self.model.closed(clock, mh);
                let r = self.real.handle_closed(now, Ticket::from_parts(t, s, g));
                note(kind("closed", &m));
                same!("closed", m, r);
                if m.is_ok() {
                    let i = self
                        .closes
                        .iter()
                        .position(|x| Handle::Issued(x.0) == mh)
                        .ok_or("a close the driver was not asked for was accepted")?;
                    self.closes.remove(i);
                }
            }
            Op::Tick { ms } => self.clock += ms * MS,
            Op::Timeout { ms } => {
                self.clock += ms * MS;
                self.timeout(self.clock)?;
            }
            Op::ToDeadline => {
                if let Some(t) = self.model.poll_timeout() {
                    self.clock = self.clock.max(t);
                    self.timeout(self.clock)?;
                }
            }
            Op::Backwards { ms } => self.timeout(clock.saturating_sub(ms * MS))?,
            Op::Resize { min, max } => {
                let m = self.model.resize(clock, min, max);
                let r = self.real.resize(now, min, max);
                note(kind("resize", &m));
                same!("resize", m, r);
            }
            Op::Drain => {
                let m = self.model.drain(clock);
                let r = self.real.drain(now);
                same!("drain", m, r);
            }
            Op::CheckIdle => {
                let m = self.model.check_idle(clock);
                let r = self.real.check_idle(now);
                same!("check_idle", m, r);
            }
            Op::CloseAll => {
                let m = self.model.close(clock);
                let r = self.real.close(now);
                same!("close", m, r);
            }
        }
        Ok(())
    }

    /// Drains one command from both; `false` when both are empty.
    fn poll_one(&mut self) -> Result<bool, String> {
        let m = self.model.poll();
        let r = self.real.poll_command();
        if let Some(c) = &m {
            note(match c {
                Cmd::Fail(_, e) => format!("cmd:Fail/{e:?}"),
                c => kind("cmd", c),
            });
        }
        match (m, r) {
            (None, None) => return Ok(false),
            (Some(Cmd::Open(h)), Some(Command::Open(t))) => {
                self.bind(h, ticket_parts(t))?;
                self.opens.push((h, t));
            }
            (Some(Cmd::Close(h, c)), Some(Command::Close { ticket, conn })) if c == conn => {
                self.bind(h, ticket_parts(ticket))?;
                self.closes.push((h, ticket, conn));
            }
            (Some(Cmd::Reset(h, c)), Some(Command::Reset { ticket, conn }))
            | (Some(Cmd::Check(h, c)), Some(Command::Check { ticket, conn }))
                if c == conn =>
            {
                self.bind(h, ticket_parts(ticket))?;
                self.resets.push((h, ticket, conn));
            }
            (
                Some(Cmd::Grant(w, h, c)),
                Some(Command::Grant {
                    waiter,
                    lease,
                    conn,
                }),
            ) if c == conn => {
                self.bind_waiter(w, waiter)?;
                self.bind(h, lease_parts(lease))?;
                let i = self
                    .waiting
                    .iter()
                    .position(|x| x.0 == w)
                    .ok_or("grant to a waiter the driver does not wait on")?;
                let (_, _, key) = self.waiting.remove(i);
                self.held.push(Held {
                    h,
                    lease,
                    conn,
                    key,
                });
            }
            (Some(Cmd::Fail(w, e)), Some(Command::Fail { waiter, error })) if e == error => {
                self.bind_waiter(w, waiter)?;
                let i = self
                    .waiting
                    .iter()
                    .position(|x| x.0 == w)
                    .ok_or("failure of a waiter the driver does not wait on")?;
                self.waiting.remove(i);
            }
            (Some(Cmd::Ready), Some(Command::Ready)) => {}
            (m, r) => return Err(format!("command: model {m:?} real {r:?}")),
        }
        Ok(true)
    }

    /// `handle_timeout(t)` on both; after it no deadline may be left at or before the pool's
    /// clock (the driver would spin).
    fn timeout(&mut self, at: u64) -> Res {
        self.model.timeout(at);
        self.real.handle_timeout(Time::from_nanos(at));
        match self.real.poll_timeout() {
            Some(t) if t <= self.real.now() => Err(format!(
                "after handle_timeout the next deadline {t:?} is not after now {:?}",
                self.real.now()
            )),
            _ => Ok(()),
        }
    }

    fn compare_state(&self) -> Res {
        self.real.assert_invariants();
        let st = self.real.stats();
        for (flag, on) in [
            ("idle>=2", st.idle >= 2),
            ("waiting>=2", st.waiting >= 2),
            ("size>max", st.size > self.real.config().max),
            ("closed, in use", self.real.is_closed() && st.in_use > 0),
            ("closed, opening", self.real.is_closed() && st.opening > 0),
            ("expired", st.expired > 0),
            (
                "at max with waiters",
                st.size >= self.real.config().max && st.waiting > 0,
            ),
            ("keyed in use", self.held.iter().any(|x| x.key.is_some())),
        ] {
            if on {
                note(format!("state:{flag}"));
            }
        }
        same!("stats", self.model.stats(), self.real.stats());
        same!(
            "poll_timeout",
            self.model.poll_timeout(),
            self.real.poll_timeout().map(Time::as_nanos)
        );
        same!("is_empty", self.model.is_empty(), self.real.is_empty());
        same!("is_ready", self.model.is_ready(), self.real.is_ready());
        same!("is_closed", self.model.is_closed(), self.real.is_closed());
        Ok(())
    }
}

/// Compares the answers to an input that carries a connection; `Ok(true)` when it was accepted.
fn compare_refused(
    what: &str,
    conn: Conn,
    m: Result<(), (Error, bool)>,
    r: Result<(), Rejected<Conn>>,
) -> Result<bool, String> {
    match (m, r) {
        (Ok(()), Ok(())) => Ok(true),
        (Err((me, mback)), Err(Rejected { error, conn: back })) => {
            same!(what, me, error);
            same!(
                format!("{what} gives the connection back"),
                mback,
                back.is_some()
            );
            if let Some(b) = back {
                same!(format!("{what} gives the same connection back"), conn, b);
            }
            Ok(false)
        }
        (m, r) => Err(format!("{what}: model {m:?} real {r:?}")),
    }
}
