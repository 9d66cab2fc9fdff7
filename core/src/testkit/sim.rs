//! [`Sim`]: the one simulated driver. It wraps a [`Pool`] with a fake clock, numbers the
//! connections it "opens" (1, 2, 3, ... in open order), drains and records every command and
//! performs it (opens succeed or fail on request; closes, resets and checks are reported back),
//! collects grants and failures per waiter, and after every step checks what must always hold:
//!
//! - the pool's own `assert_invariants()`;
//! - a clock that never goes back, and never more than `max` occupied (a shrinking `resize` may
//!   leave more, never add);
//! - conservation: every connection the pool accepted is exactly one of idle inside the pool,
//!   held by the test, inside an undrained command, out with the driver (a close, reset or check
//!   not reported yet), closed, or detached; one that leaves the pool was inside it, once;
//! - every handle the pool issues is new (never an alias of an older one); a grant is `fresh`
//!   exactly when its connection never left the pool before; no `Open` drains after close;
//! - grants go to the oldest waiter, each waiter is served once; a claim serves only a waiter
//!   still in line; a refused input hands back the very connection it was given;
//! - after `handle_timeout(t)`, no deadline at or before `t` is left (no busy loop).
//!
//! Rule tests call its methods one input at a time; fuzzers, property tests and benchmarks play
//! [`Op`]s through [`Sim::step`]; [`Sim::finish`] closes, serves and checks that every connection
//! ended closed or detached.

use super::vocab::{Case, KeyArg, Op, Pick, Setup, WPick, WaitArg, TAG};
use crate::handle::SlotRef;
use crate::{
    Checkout, Completion, Config, Error, Finished, Handoff, Io, Lease, Pool, Rejected, Report,
    Returned, Stats, Storage, Ticket, Time, Wait, WaiterId,
};
use core::fmt::Debug;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::vec::Vec;

/// A simulated connection: its number in open order, from 1.
pub type Conn = u32;

/// Connections made up for inputs the pool must refuse (never really opened).
const BOGUS: Conn = 1 << 30;
const MS: u64 = 1_000_000;

/// A drained output, with the connection ids it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// [`Io::Open`].
    Open,
    /// [`Io::Close`].
    Close(Conn),
    /// [`Io::Reset`].
    Reset(Conn),
    /// [`Io::Check`].
    Check(Conn),
    /// [`Io::Vet`].
    Vet(Conn),
    /// [`Handoff::Grant`].
    Grant(WaiterId, Conn),
    /// [`Handoff::Fail`].
    Fail(WaiterId, Error),
    /// [`Handoff::Wake`].
    Wake(WaiterId),
    /// [`Report::Leak`]: the connection whose borrower held it too long.
    Leak(Conn),
}

/// One output of any of the pool's three queues.
enum Out {
    Io(Io<Conn>),
    Handoff(Handoff<Conn>),
    Report(Report),
}

/// What one op of the vocabulary got ([`Sim::step`]): the pool's reply, with connections and
/// waiters by id, and every command drained while the op was played. A model compares these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The pool's reply to the op's input.
    pub reply: Reply,
    /// The commands drained during the op, in order.
    pub drained: Vec<Cmd>,
}

/// The pool's reply to one op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The op's pick named nothing (an empty list): the pool was not called.
    Skipped,
    /// The op gives no input with a reply: a tick, a drain of commands, a timeout, a serve.
    Quiet,
    /// A checkout's answer.
    Checkout(Result<Got, Error>),
    /// A checkin, detach, cancel, completion, resize, drain or close: accepted or refused with.
    Done(Result<(), Error>),
    /// `check_idle`: how many checks were sent.
    Sent(Result<usize, Error>),
}

/// An accepted checkout, by connection and waiter id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Got {
    /// [`Checkout::Ready`] with this connection.
    Ready(Conn),
    /// [`Checkout::Held`]: the key's connection.
    Held(Conn),
    /// [`Checkout::Waiting`].
    Waiting(WaiterId),
}

/// `t` seconds after the origin.
pub fn secs(t: u64) -> Time {
    Time::from_nanos(t * 1_000_000_000)
}

/// `t` milliseconds after the origin.
pub fn ms(t: u64) -> Time {
    Time::from_nanos(t * MS)
}

/// The simulated driver; see the [test kit](crate::testkit).
pub struct Sim<S: Storage<Conn, K>, K = u64> {
    pool: Pool<Conn, K, S>,
    /// The fake clock: passed with every input.
    pub now: Time,
    next_conn: Conn,
    next_bogus: Conn,
    /// Drain commands after every input (off: they stay queued until [`Sim::poll`]).
    pub auto_poll: bool,
    /// Perform drained `Open`s at once (off: they wait in `opens`).
    pub auto_open: bool,
    /// Report drained `Close`s at once (off: they wait in `closes`).
    pub auto_close: bool,
    /// Report drained `Reset`s and `Check`s at once (off: they wait in `resets` and `checks`).
    pub auto_reset: bool,
    /// A woken waiter claims once the commands are drained (off: they wait in `woken`).
    pub auto_claim: bool,
    /// Waiters whose wake was drained and who have not claimed since.
    pub woken: BTreeSet<WaiterId>,
    /// The next this many opens fail.
    pub fail_opens: usize,
    /// Failed opens are reported permanent (bad credentials).
    pub permanent_failures: bool,
    /// The next this many resets or checks fail.
    pub fail_resets: usize,
    /// The next this many closes fail (the connection is gone all the same).
    pub fail_closes: usize,
    /// Failed resets, checks and closes are reported [`Finished::Abandoned`] (cut off at the
    /// driver's bound) rather than [`Finished::Failed`].
    pub abandon: bool,
    /// Resets, checks and closes reported abandoned and accepted: the pool's `abandoned_*`
    /// counters must match.
    abandoned: [u64; 3],
    log: Vec<Cmd>,
    /// Drained opens not performed yet.
    pub opens: Vec<Ticket>,
    /// Drained closes not reported yet.
    pub closes: Vec<(Ticket, Conn)>,
    /// Drained resets not reported yet.
    pub resets: Vec<(Ticket, Conn)>,
    /// Drained checks not reported yet.
    pub checks: Vec<(Ticket, Conn)>,
    /// Connections the test holds, with their leases.
    pub held: BTreeMap<Conn, Lease>,
    /// Every grant, per waiter.
    pub grants: BTreeMap<WaiterId, (Lease, Conn)>,
    /// Every failure, per waiter.
    pub fails: BTreeMap<WaiterId, Error>,
    /// Queued checkouts, as the test saw them queue (their outcome not drained yet).
    pub waiting: BTreeSet<WaiterId>,
    /// Connections whose close was reported, and when.
    pub closed: BTreeMap<Conn, Time>,
    waiter_keys: Vec<(WaiterId, K)>,
    held_keys: Vec<(Conn, K)>,
    opened: BTreeSet<Conn>,
    /// Connections out for a vet, and those whose vet passed and are not handed out since: a
    /// grant of one may go to the checkout it was vetted for, not only the oldest.
    vetting: BTreeSet<Conn>,
    vetted: BTreeSet<Conn>,
    detached: BTreeSet<Conn>,
    /// Every slot handle issued, in order, and as a set: a new one must be new.
    history: Vec<SlotRef>,
    seen: HashSet<SlotRef>,
    waiter_history: Vec<WaiterId>,
    capacity: usize,
    ceiling: usize,
    last_now: Time,
    steps: u64,
    probe: Option<fn(bool)>,
}

impl<S: Storage<Conn, K>, K: Eq + Clone + Debug> Sim<S, K> {
    /// A pool with this configuration and a driver that performs everything at once.
    pub fn new(config: Config) -> Self {
        Self::try_new(config).expect("valid config")
    }

    /// A driver that drains commands but performs nothing until told to.
    pub fn manual(config: Config) -> Self {
        Self::build(config, true, false).expect("valid config")
    }

    /// A driver that leaves commands queued until [`Sim::poll`].
    pub fn undrained(config: Config) -> Self {
        Self::build(config, false, false).expect("valid config")
    }

    /// [`Sim::new`], or the pool's refusal of the configuration.
    pub fn try_new(config: Config) -> Result<Self, Error> {
        Self::build(config, true, true)
    }

    fn build(config: Config, auto_poll: bool, perform: bool) -> Result<Self, Error> {
        let ceiling = config.max;
        let pool = Pool::new(config)?;
        let mut sim = Sim {
            pool,
            now: Time::ZERO,
            next_conn: 0,
            next_bogus: BOGUS,
            auto_poll,
            auto_open: perform,
            auto_close: perform,
            auto_reset: perform,
            auto_claim: auto_poll,
            woken: BTreeSet::new(),
            fail_opens: 0,
            permanent_failures: false,
            fail_resets: 0,
            fail_closes: 0,
            abandon: false,
            abandoned: [0; 3],
            log: Vec::new(),
            opens: Vec::new(),
            closes: Vec::new(),
            resets: Vec::new(),
            checks: Vec::new(),
            held: BTreeMap::new(),
            grants: BTreeMap::new(),
            fails: BTreeMap::new(),
            waiting: BTreeSet::new(),
            closed: BTreeMap::new(),
            waiter_keys: Vec::new(),
            held_keys: Vec::new(),
            opened: BTreeSet::new(),
            vetting: BTreeSet::new(),
            vetted: BTreeSet::new(),
            detached: BTreeSet::new(),
            history: Vec::new(),
            seen: HashSet::new(),
            waiter_history: Vec::new(),
            capacity: 0,
            ceiling,
            last_now: Time::ZERO,
            steps: 0,
            probe: None,
        };
        sim.capacity = sim.pool.storage_capacity();
        sim.run();
        Ok(sim)
    }

    // ------------------------------------------------------------------ reading

    /// The pool.
    pub fn pool(&self) -> &Pool<Conn, K, S> {
        &self.pool
    }

    /// The pool itself, leaving the driver (benchmarks warm a pool up through the checking driver,
    /// then time the bare pool).
    pub fn into_pool(self) -> Pool<Conn, K, S> {
        self.pool
    }

    /// The pool's stats.
    pub fn stats(&self) -> Stats {
        self.pool.stats()
    }

    /// The commands drained since the last call.
    pub fn take_log(&mut self) -> Vec<Cmd> {
        core::mem::take(&mut self.log)
    }

    /// The lease of a held connection.
    pub fn lease(&self, conn: Conn) -> Lease {
        *self
            .held
            .get(&conn)
            .expect("the test holds this connection")
    }

    /// Steps checked so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Connections opened so far.
    pub fn opened(&self) -> usize {
        self.opened.len()
    }

    // ------------------------------------------------------------------ inputs

    /// A checkout at the current time.
    pub fn checkout(&mut self, key: Option<K>, wait: Wait) -> Result<Checkout<Conn>, Error> {
        let out = self.call(|p, now| p.checkout(now, key.clone(), wait));
        let key_holder = key.as_ref().and_then(|k| self.key_holder(k));
        let strict = self.auto_poll;
        match (&out, key) {
            (Ok(Checkout::Held(lease)), Some(_)) => {
                let conn = self.conn_of(*lease);
                let key_holder = key_holder.filter(|_| strict).or(Some(Ok(conn)));
                assert_eq!(key_holder, Some(Ok(conn)), "Held for a key held elsewhere");
            }
            (Ok(Checkout::Held(_)), None) => panic!("Held without a key"),
            (Err(Error::KeyBusy), key) => {
                assert!(key.is_some(), "KeyBusy without a key");
                assert!(
                    !strict || matches!(key_holder, Some(Err(_))),
                    "KeyBusy for a key without a waiter"
                );
            }
            (Ok(Checkout::Ready { lease, conn }), key) => {
                assert!(
                    !strict || key_holder.is_none(),
                    "a held key got a second connection"
                );
                assert!(
                    !self.pool.config().vet,
                    "an idle connection handed out unvetted"
                );
                self.take_out(*conn);
                self.issued(lease.0);
                self.held.insert(*conn, *lease);
                self.held_keys.extend(key.map(|k| (*conn, k)));
            }
            (Ok(Checkout::Waiting(w)), key) => {
                assert!(
                    !strict || key_holder.is_none(),
                    "a held key queued a second checkout"
                );
                assert!(self.waiting.insert(*w), "{w:?} issued twice");
                assert!(
                    self.waiter_history.last().is_none_or(|last| last < w),
                    "waiter ids out of arrival order"
                );
                self.waiter_history.push(*w);
                self.waiter_keys.extend(key.map(|k| (*w, k)));
            }
            (Err(e), _) => {
                assert_eq!(
                    *e == Error::Closed,
                    self.pool.is_closed(),
                    "checkout refused with {e:?}"
                );
                assert!(
                    matches!(
                        e,
                        Error::Closed | Error::Exhausted | Error::KeyBusy | Error::TooManyWaiters
                    ),
                    "checkout refused with {e:?}"
                );
            }
        }
        self.run();
        out
    }

    /// psycopg2's `getconn(key)`: a checkout that does not wait, served at once or by the open it
    /// triggers. Panics if it is refused.
    pub fn get(&mut self, key: Option<K>) -> (Lease, Conn) {
        match self.checkout(key, Wait::No).expect("getconn") {
            Checkout::Ready { lease, conn } => (lease, conn),
            Checkout::Held(lease) => (lease, self.conn_of(lease)),
            Checkout::Waiting(w) => *self.grants.get(&w).expect("granted by the open it ordered"),
        }
    }

    /// A checkout that must queue; returns its waiter.
    pub fn wait(&mut self, key: Option<K>, wait: Wait) -> WaiterId {
        match self.checkout(key, wait) {
            Ok(Checkout::Waiting(w)) => w,
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    /// psycopg2's `putconn(conn)`: check a held connection in with its lease.
    pub fn put(&mut self, conn: Conn, returned: Returned) {
        let lease = self.lease(conn);
        self.checkin(lease, None, conn, returned)
            .expect("checkin accepted");
    }

    /// A raw checkin. A held connection leaves `held` unless it is handed back.
    pub fn checkin(
        &mut self,
        lease: Lease,
        key: Option<&K>,
        conn: Conn,
        returned: Returned,
    ) -> Result<(), Rejected<Conn>> {
        let was_held = self.held.remove(&conn);
        let out = self.call(|p, now| p.checkin(now, lease, key, conn, returned));
        match &out {
            Err(Rejected { conn: Some(c), .. }) => {
                assert_eq!(*c, conn, "a refused checkin hands back the same connection");
                if let Some(l) = was_held {
                    self.held.insert(conn, l);
                }
            }
            Err(Rejected { error, conn: None }) => {
                assert_eq!(
                    *error,
                    Error::Closed,
                    "only a checkin after close keeps the connection"
                );
                assert_eq!(was_held, Some(lease), "took a connection it never lent");
                self.release(conn);
            }
            Ok(()) => {
                assert_eq!(was_held, Some(lease), "took a connection it never lent");
                self.release(conn);
            }
        }
        self.run();
        out
    }

    /// The borrower of `conn` keeps it.
    pub fn detach(&mut self, conn: Conn) -> Result<(), Error> {
        let lease = self.lease(conn);
        self.detach_lease(lease)
    }

    fn detach_lease(&mut self, lease: Lease) -> Result<(), Error> {
        let out = self.call(|p, now| p.detach(now, lease));
        let held = self
            .held
            .iter()
            .find(|(_, l)| **l == lease)
            .map(|(c, _)| *c);
        match (&out, held) {
            (Ok(()), Some(conn)) => {
                self.held.remove(&conn);
                self.release(conn);
                self.detached.insert(conn);
            }
            (Ok(()), None) => panic!("detach accepted a lease the driver does not hold"),
            (Err(e), _) => assert!(
                matches!(e, Error::Unkeyed | Error::Foreign | Error::AlreadyReturned),
                "detach refused with {e:?}"
            ),
        }
        self.run();
        out
    }

    /// A queued checkout claims an idle connection ([`Pool::claim`]).
    pub fn claim(&mut self, waiter: WaiterId) -> Result<Checkout<Conn>, Error> {
        self.woken.remove(&waiter);
        let out = self.call(|p, now| p.claim(now, waiter));
        match &out {
            Ok(Checkout::Ready { lease, conn }) => {
                assert!(
                    !self.pool.config().vet,
                    "an idle connection claimed unvetted"
                );
                self.take_out(*conn);
                self.issued(lease.0);
                let key = self.resolve(waiter);
                self.held_keys.extend(key.map(|k| (*conn, k)));
                self.held.insert(*conn, *lease);
                let before = self.grants.insert(waiter, (*lease, *conn));
                assert!(before.is_none(), "{waiter:?} served twice");
            }
            Ok(Checkout::Waiting(w)) => assert_eq!(*w, waiter, "a claim answered for another"),
            Ok(Checkout::Held(_)) => panic!("a claim answered Held"),
            Err(e) => assert_eq!(*e, Error::UnknownWaiter, "claim refused with {e:?}"),
        }
        self.run();
        out
    }

    /// A queued checkout gives up.
    pub fn cancel(&mut self, waiter: WaiterId) -> Result<(), Error> {
        let out = self.call(|p, now| p.cancel(now, waiter));
        match &out {
            Ok(()) => {
                self.resolve(waiter);
            }
            Err(e) => assert_eq!(*e, Error::UnknownWaiter),
        }
        self.run();
        out
    }

    /// New sizes.
    pub fn resize(&mut self, min: usize, max: usize) -> Result<(), Error> {
        let before = self.stats().size;
        let out = self.call(|p, now| p.resize(now, min, max));
        if out.is_ok() {
            self.ceiling = before.max(max);
        }
        self.run();
        out
    }

    /// Retire every connection.
    pub fn drain(&mut self) -> Result<(), Error> {
        let out = self.call(|p, now| p.drain(now));
        self.run();
        out
    }

    /// Check every idle connection.
    pub fn check_idle(&mut self) -> Result<usize, Error> {
        let idle = self.stats().idle;
        let out = self.call(|p, now| p.check_idle(now));
        if let Ok(n) = out {
            assert_eq!(n, idle, "check_idle sent another count than idle");
        }
        self.run();
        out
    }

    /// Close the pool.
    pub fn close(&mut self) -> Result<(), Error> {
        let out = self.call(|p, now| p.close(now));
        self.run();
        out
    }

    /// Any other input, straight on the pool, then the usual draining and checks. Whatever
    /// connection the closure gives the pool must come from `held` (and be removed from it) or be
    /// one the pool refuses.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Pool<Conn, K, S>, Time) -> R) -> R {
        let out = self.call(f);
        self.run();
        out
    }

    /// Calls `probe(true)` before and `probe(false)` after every call into the pool (the
    /// allocation test arms its counter there, so the driver's own bookkeeping is not counted).
    pub fn set_probe(&mut self, probe: fn(bool)) {
        self.probe = Some(probe);
    }

    /// Every call into the pool goes through here.
    fn call<R>(&mut self, f: impl FnOnce(&mut Pool<Conn, K, S>, Time) -> R) -> R {
        if let Some(probe) = self.probe {
            probe(true);
        }
        let out = f(&mut self.pool, self.now);
        if let Some(probe) = self.probe {
            probe(false);
        }
        out
    }

    /// Moves the clock by `d` and tells the pool.
    pub fn advance(&mut self, d: Duration) {
        let t = self.now.saturating_add(d);
        self.advance_to(t);
    }

    /// Moves the clock to `t` (if later) and tells the pool.
    pub fn advance_to(&mut self, t: Time) {
        self.now = self.now.max(t);
        self.timeout(self.now);
    }

    /// `handle_timeout(at)` (at may be in the past), then the check that nothing due is left.
    fn timeout(&mut self, at: Time) {
        self.call(|p, _| p.handle_timeout(at));
        let next = self.call(|p, _| p.poll_timeout());
        assert!(
            next.is_none_or(|next| next > self.pool.now()),
            "after handle_timeout, poll_timeout still reports {next:?}"
        );
        self.run();
    }

    /// Lives until `t`, waking at every deadline the pool reports on the way.
    pub fn run_until(&mut self, t: Time) {
        for _ in 0..1_000_000 {
            match self.call(|p, _| p.poll_timeout()) {
                Some(next) if next <= t => self.advance_to(next),
                _ => return self.advance_to(t),
            }
        }
        panic!("too many wake-ups before {t:?}");
    }

    // ------------------------------------------------------------------ the driver's side

    /// Drains every queued command (whatever `auto_poll` says), performing what is automatic.
    pub fn poll(&mut self) {
        while self.poll_one() {}
        self.check();
        // Woken waiters run once the driver is done with the commands (oldest first).
        while self.auto_claim {
            let Some(w) = self.woken.pop_first() else {
                break;
            };
            let _ = self.claim(w);
        }
    }

    /// Drains one output, if any: I/O first, then hand-offs, then reports.
    fn poll_one(&mut self) -> bool {
        let out = self.call(|p, _| {
            p.poll_io()
                .map(Out::Io)
                .or_else(|| p.poll_handoff().map(Out::Handoff))
                .or_else(|| p.poll_report().map(Out::Report))
        });
        match out {
            Some(Out::Io(io)) => self.perform(io),
            Some(Out::Handoff(handoff)) => self.deliver(handoff),
            Some(Out::Report(report)) => self.tell(report),
            None => return false,
        }
        true
    }

    fn run(&mut self) {
        self.check();
        if self.auto_poll {
            self.poll();
        }
    }

    fn perform(&mut self, io: Io<Conn>) {
        match io {
            Io::Open(ticket) => {
                assert!(!self.pool.is_closed(), "Open after close");
                let s = self.pool.stats();
                assert!(
                    s.size <= self.pool.config().max,
                    "Open drained with {} occupied, max {}",
                    s.size,
                    self.pool.config().max
                );
                self.issued(ticket.0);
                self.log.push(Cmd::Open);
                if self.auto_open {
                    self.do_open(ticket);
                } else {
                    self.opens.push(ticket);
                }
            }
            Io::Close { ticket, conn } => {
                self.take_out(conn);
                self.issued(ticket.0);
                self.log.push(Cmd::Close(conn));
                if self.auto_close {
                    self.do_close(ticket, conn);
                } else {
                    self.closes.push((ticket, conn));
                }
            }
            Io::Reset { ticket, conn } => self.out_for(ticket, conn, Cmd::Reset(conn)),
            Io::Check { ticket, conn } => self.out_for(ticket, conn, Cmd::Check(conn)),
            Io::Vet { ticket, conn } => {
                self.vetting.insert(conn);
                self.out_for(ticket, conn, Cmd::Vet(conn))
            }
        }
    }

    /// A connection out for a reset, a check or a vet (`cmd` says which).
    fn out_for(&mut self, ticket: Ticket, conn: Conn, cmd: Cmd) {
        let check = !matches!(cmd, Cmd::Reset(_));
        self.take_out(conn);
        self.issued(ticket.0);
        self.log.push(cmd);
        if self.auto_reset {
            self.do_reset(ticket, conn, check);
        } else if check {
            self.checks.push((ticket, conn));
        } else {
            self.resets.push((ticket, conn));
        }
    }

    fn deliver(&mut self, handoff: Handoff<Conn>) {
        match handoff {
            Handoff::Grant {
                waiter,
                lease,
                conn,
            } => {
                let vetted = self.vetted.contains(&conn);
                self.take_out(conn);
                self.issued(lease.0);
                self.log.push(Cmd::Grant(waiter, conn));
                let oldest = self.waiting.first().copied();
                if !vetted {
                    assert_eq!(oldest, Some(waiter), "a younger waiter was served first");
                }
                let key = self.resolve(waiter);
                self.held_keys.extend(key.map(|k| (conn, k)));
                self.held.insert(conn, lease);
                assert!(
                    !self.fails.contains_key(&waiter),
                    "{waiter:?} failed before"
                );
                let before = self.grants.insert(waiter, (lease, conn));
                assert!(before.is_none(), "{waiter:?} granted twice");
            }
            Handoff::Wake { waiter } => {
                self.log.push(Cmd::Wake(waiter));
                assert!(
                    self.waiting.contains(&waiter),
                    "{waiter:?} woken, not waiting"
                );
                assert!(self.woken.insert(waiter), "{waiter:?} woken twice");
            }
            Handoff::Fail { waiter, error } => {
                assert!(
                    matches!(
                        error,
                        Error::Timeout | Error::Closed | Error::OpenFailed | Error::Exhausted
                    ),
                    "a waiter failed with {error:?}"
                );
                self.log.push(Cmd::Fail(waiter, error));
                self.resolve(waiter);
                assert!(
                    !self.grants.contains_key(&waiter),
                    "{waiter:?} granted before"
                );
                let before = self.fails.insert(waiter, error);
                assert!(before.is_none(), "{waiter:?} failed twice");
            }
        }
    }

    fn tell(&mut self, report: Report) {
        let text = std::format!("{}", report.describe(self.pool.now()));
        match report {
            Report::Leak { lease, since } => {
                let conn = self.conn_of(lease);
                let limit = self.pool.config().leak_after.expect("leak_after set");
                assert!(
                    since.saturating_add(limit) <= self.pool.now(),
                    "reported before its time"
                );
                let held = self.pool.now().saturating_since(since);
                let expected = std::format!(
                    "a connection (slot {}) has been checked out for {held:?}, past leak_after: \
                     a guard forgotten or leaked?",
                    lease.slot()
                );
                assert_eq!(text, expected, "the leak report's text");
                self.log.push(Cmd::Leak(conn));
            }
        }
    }

    /// Performs the oldest drained open: it fails if `fail_opens` says so, else yields a new id.
    pub fn open_next(&mut self) {
        let ticket = self.opens.remove(0);
        self.do_open(ticket);
        self.run();
    }

    /// Reports the oldest drained close: it fails if `fail_closes` says so.
    pub fn close_next(&mut self) {
        let (ticket, conn) = self.closes.remove(0);
        self.do_close(ticket, conn);
        self.run();
    }

    /// Reports the oldest drained reset: it fails if `fail_resets` says so.
    pub fn reset_next(&mut self) {
        let (ticket, conn) = self.resets.remove(0);
        self.do_reset(ticket, conn, false);
        self.run();
    }

    /// Reports the oldest drained check: it fails if `fail_resets` says so.
    pub fn check_next(&mut self) {
        let (ticket, conn) = self.checks.remove(0);
        self.do_reset(ticket, conn, true);
        self.run();
    }

    fn do_open(&mut self, ticket: Ticket) {
        if self.fail_opens > 0 {
            self.fail_opens -= 1;
            let permanent = self.permanent_failures;
            self.report(Completion::OpenFailed { ticket, permanent });
        } else {
            self.next_conn += 1;
            let conn = self.next_conn;
            self.opened.insert(conn);
            self.report(Completion::Opened { ticket, conn });
        }
    }

    fn do_close(&mut self, ticket: Ticket, conn: Conn) {
        let outcome = if self.fail_closes > 0 {
            self.fail_closes -= 1;
            self.failure()
        } else {
            Finished::Ok
        };
        self.finish_close(ticket, conn, outcome);
    }

    /// Reports a close: whatever the outcome, the connection is gone.
    fn finish_close(&mut self, ticket: Ticket, conn: Conn, outcome: Finished) {
        self.closed.insert(conn, self.now);
        // Counted before the report, whose check compares the counts.
        self.abandoned[2] += u64::from(outcome == Finished::Abandoned);
        self.report(Completion::Closed { ticket, outcome });
    }

    fn do_reset(&mut self, ticket: Ticket, conn: Conn, check: bool) {
        let outcome = if self.fail_resets > 0 {
            self.fail_resets -= 1;
            self.failure()
        } else {
            Finished::Ok
        };
        self.finish_reset(ticket, conn, check, outcome);
    }

    /// How a failure is reported: abandoned at the bound, or failed.
    fn failure(&self) -> Finished {
        if self.abandon {
            Finished::Abandoned
        } else {
            Finished::Failed
        }
    }

    fn finish_reset(&mut self, ticket: Ticket, conn: Conn, check: bool, outcome: Finished) {
        self.abandoned[usize::from(check)] += u64::from(outcome == Finished::Abandoned);
        if self.vetting.remove(&conn) && outcome == Finished::Ok {
            self.vetted.insert(conn);
        }
        self.report(if check {
            Completion::Checked {
                ticket,
                conn,
                outcome,
            }
        } else {
            Completion::Reset {
                ticket,
                conn,
                outcome,
            }
        });
    }

    /// Reports a completion the driver owes: it must be accepted.
    fn report(&mut self, done: Completion<Conn>) {
        if let Err(r) = self.call(|p, now| p.handle(now, done)) {
            panic!("a pending completion was refused: {}", r.error);
        }
        self.check();
    }

    /// Runs `f` and asserts it changed nothing: stats, deadline, queued and drained commands.
    pub fn unchanged<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let stats = self.stats();
        let timeout = self.pool.poll_timeout();
        let held = self.held.clone();
        let log = self.log.len();
        let out = f(self);
        self.run();
        assert_eq!(self.stats(), stats, "a refused input changed the stats");
        assert_eq!(
            self.pool.poll_timeout(),
            timeout,
            "a refused input moved the deadline"
        );
        assert_eq!(self.held, held, "a refused input kept a connection");
        assert_eq!(self.log[log..], [], "a refused input emitted commands");
        out
    }

    // ------------------------------------------------------------------ bookkeeping

    /// Who holds `key`, as the test saw it: a connection, or a waiter.
    fn key_holder(&self, key: &K) -> Option<Result<Conn, WaiterId>> {
        let conn = self.held_keys.iter().find(|(_, k)| k == key);
        let waiter = self.waiter_keys.iter().find(|(_, k)| k == key);
        assert!(
            !self.auto_poll || conn.is_none() || waiter.is_none(),
            "{key:?} held twice"
        );
        match (conn, waiter) {
            (Some((c, _)), _) => Some(Ok(*c)),
            (None, Some((w, _))) => Some(Err(*w)),
            (None, None) => None,
        }
    }

    fn release(&mut self, conn: Conn) {
        self.held_keys.retain(|(c, _)| *c != conn);
    }

    fn resolve(&mut self, waiter: WaiterId) -> Option<K> {
        assert!(self.waiting.remove(&waiter), "{waiter:?} was not waiting");
        self.woken.remove(&waiter);
        let pos = self.waiter_keys.iter().position(|(w, _)| *w == waiter)?;
        Some(self.waiter_keys.remove(pos).1)
    }

    fn conn_of(&self, lease: Lease) -> Conn {
        let found = self.held.iter().find(|(_, l)| **l == lease);
        *found.expect("a held lease").0
    }

    fn issued(&mut self, r: SlotRef) {
        assert!(self.seen.insert(r), "handle {r:?} issued twice");
        self.history.push(r);
    }

    /// A connection leaves the pool (in a checkout or a command): it must have been inside.
    fn take_out(&mut self, conn: Conn) {
        self.vetted.remove(&conn);
        assert!(self.opened.contains(&conn), "{conn} was never opened");
        assert!(!self.held.contains_key(&conn), "{conn} is already held");
        let with_driver = self.closes.iter().chain(&self.resets).chain(&self.checks);
        assert!(
            !with_driver.clone().any(|c| c.1 == conn),
            "{conn} is with the driver"
        );
        assert!(!self.closed.contains_key(&conn), "{conn} was closed");
        assert!(!self.detached.contains(&conn), "{conn} was detached");
    }

    /// The pool's invariants, a monotonic clock, `max`, and conservation of connections.
    pub fn check(&mut self) {
        self.steps += 1;
        self.pool.assert_invariants();
        let now = self.pool.now();
        assert!(now >= self.last_now, "the pool's clock went back");
        self.last_now = now;

        let s = self.pool.stats();
        assert_eq!(
            [s.abandoned_resets, s.abandoned_checks, s.abandoned_closes],
            self.abandoned,
            "abandoned resets, checks and closes counted"
        );
        let max = self.pool.config().max;
        assert!(
            s.size <= self.ceiling.max(max),
            "{} occupied, max {max}",
            s.size
        );
        self.ceiling = max.max(self.ceiling.min(s.size));
        if self.pool.is_closed() {
            assert_eq!(
                (s.idle, s.waiting),
                (0, 0),
                "a closed pool keeps idle or waiters"
            );
        }

        assert!(self.held.len() <= s.in_use, "held {:?}, {s:?}", self.held);
        assert!(self.opens.len() <= s.opening, "{s:?}");
        assert!(self.closes.len() <= s.closing, "{s:?}");
        assert!(
            self.resets.len() + self.checks.len() <= s.resetting,
            "{s:?}"
        );
        let mut outside = BTreeSet::new();
        let with_driver = self.closes.iter().chain(&self.resets).chain(&self.checks);
        let all = self.held.keys().copied().chain(with_driver.map(|c| c.1));
        let all = all.chain(self.closed.keys().copied());
        for conn in all.chain(self.detached.iter().copied()) {
            assert!(self.opened.contains(&conn), "{conn} was never opened");
            assert!(outside.insert(conn), "{conn} is in two places");
        }
        let inside_pool = s.idle
            + (s.in_use - self.held.len())
            + (s.resetting - self.resets.len() - self.checks.len())
            + (s.closing - self.closes.len());
        assert_eq!(
            self.opened.len(),
            outside.len() + inside_pool,
            "connections not conserved: {s:?}"
        );
    }

    // ------------------------------------------------------------------ the end

    /// Closes the pool (if not yet), gives back every held connection and serves until nothing is
    /// left: every connection ever opened must end closed or detached, every waiter told.
    pub fn finish(&mut self) {
        if !self.pool.is_closed() {
            self.close().expect("close");
        }
        for _ in 0..64 {
            self.serve();
            let held: Vec<(Conn, Lease)> = self.held.iter().map(|(c, l)| (*c, *l)).collect();
            for (conn, lease) in held {
                let r = self.checkin(lease, None, conn, Returned::Clean);
                assert!(
                    matches!(
                        r,
                        Err(Rejected {
                            error: Error::Closed,
                            conn: None
                        })
                    ),
                    "checkin after close answered {r:?}"
                );
            }
            self.serve();
            if self.held.is_empty() && self.pool.is_empty() {
                break;
            }
        }
        assert!(self.pool.is_empty(), "closed and served, yet not empty");
        assert!(self.waiting.is_empty(), "waiters never told");
        let s = self.stats();
        assert_eq!(
            s.opens,
            s.closes + s.detached,
            "every connection opened must end closed or detached"
        );
        assert_eq!(
            self.opened.len(),
            self.closed.len() + self.detached.len(),
            "every connection opened must end closed or detached"
        );
    }

    /// A well-behaved driver catches up: every command drained and every operation reported done.
    pub fn serve(&mut self) {
        self.poll();
        // Bounded: a pool that keeps ordering work while time stands still is a livelock.
        for round in 0.. {
            assert!(
                round < 100_000,
                "the pool keeps ordering work while time stands still"
            );
            if let Some(t) = self.opens.pop() {
                self.do_open(t);
            } else if let Some((t, c)) = self.resets.pop() {
                self.do_reset(t, c, false);
            } else if let Some((t, c)) = self.checks.pop() {
                self.do_reset(t, c, true);
            } else if let Some((t, c)) = self.closes.pop() {
                self.do_close(t, c);
            } else {
                break;
            }
            self.poll();
        }
    }
}

impl<S: Storage<Conn, K>, K: Eq + Clone + Debug + From<u8>> Sim<S, K> {
    /// A driver for a vocabulary run: it drains and performs only what the ops say. `Err` with the
    /// refusal when the pool refuses the configuration, after checking it was refused for the
    /// right reason.
    pub fn from_setup(setup: &Setup) -> Result<Self, Error> {
        let config = setup.config();
        let out = Self::build(config.clone(), false, false);
        let capacity = match &out {
            Ok(sim) => sim.capacity,
            Err(_) => Pool::<Conn, K, S>::capacity_for(),
        };
        let expected = expected_config_error(&config, capacity);
        assert_eq!(
            out.as_ref().err(),
            expected.as_ref(),
            "configuration {config:?}"
        );
        out
    }

    /// Plays one op of the vocabulary, checking every answer against what the driver knows, and
    /// returns what the pool answered and which commands were drained (for a model to compare).
    pub fn step(&mut self, op: &Op) -> Answer {
        let before = self.stats().size;
        let mark = self.log.len();
        let reply = self.play(op);
        let s = self.stats();
        assert!(
            s.size <= self.pool.config().max.max(before),
            "{} occupied with max {} (was {before})",
            s.size,
            self.pool.config().max
        );
        Answer {
            reply,
            drained: self.log[mark..].to_vec(),
        }
    }

    fn play(&mut self, op: &Op) -> Reply {
        match *op {
            Op::Checkout { key, wait } => {
                let key = key.map(|k| K::from(k % 4));
                let at = |ms: u64| self.now.saturating_add(Duration::from_millis(ms));
                let wait = match wait {
                    WaitArg::No => Wait::No,
                    WaitArg::Until(ms) => Wait::Until(at(u64::from(ms))),
                    WaitArg::Forever => Wait::Forever,
                    WaitArg::Past => Wait::Until(Time::ZERO),
                    WaitArg::End => Wait::Until(Time::from_nanos(u64::MAX)),
                };
                let out = self.checkout(key, wait);
                self.reply(out)
            }
            Op::Checkin { lease, key, back } => {
                let live: Vec<SlotRef> = self.held.values().map(|l| l.0).collect();
                let Some(r) = self.pick(lease, &live) else {
                    return Reply::Skipped;
                };
                let held = self.held.iter().find(|(_, l)| l.0 == r).map(|(c, _)| *c);
                let own = held.and_then(|c| self.held_keys.iter().find(|(h, _)| *h == c));
                let own = own.map(|(_, k)| k.clone());
                let (key, right_key) = match key {
                    KeyArg::NoKey => (None, true),
                    KeyArg::Own => (own, true),
                    KeyArg::Key(k) => {
                        let k = K::from(k % 4);
                        let right = own.as_ref() == Some(&k);
                        (Some(k), right)
                    }
                };
                let conn = held.unwrap_or_else(|| self.bogus());
                let out = self.checkin(Lease(r), key.as_ref(), conn, back.into());
                let reply = Reply::Done(out.as_ref().map(|_| ()).map_err(|r| r.error));
                match out {
                    Ok(()) => assert!(!self.pool.is_closed(), "checkin accepted after close"),
                    Err(Rejected { conn: None, .. }) => {}
                    Err(Rejected { error, .. }) => {
                        assert!(
                            matches!(
                                error,
                                Error::Unkeyed
                                    | Error::Foreign
                                    | Error::AlreadyReturned
                                    | Error::WrongKey
                            ),
                            "checkin refused with {error:?}"
                        );
                        assert_eq!(error == Error::Foreign, r.tag != TAG, "{error:?}");
                        assert!(
                            held.is_none() || !right_key,
                            "a held lease with its key was refused: {error:?}"
                        );
                    }
                }
                reply
            }
            Op::Detach { lease } => {
                let live: Vec<SlotRef> = self.held.values().map(|l| l.0).collect();
                let Some(r) = self.pick(lease, &live) else {
                    return Reply::Skipped;
                };
                let held = live.contains(&r);
                let out = self.detach_lease(Lease(r));
                assert!(
                    !held || out.is_ok(),
                    "a held lease could not detach: {out:?}"
                );
                Reply::Done(out)
            }
            Op::Claim { waiter } => {
                let Some(id) = self.waiter_pick(waiter) else {
                    return Reply::Skipped;
                };
                let out = self.claim(id);
                self.reply(out)
            }
            Op::Cancel { waiter } => {
                let Some(id) = self.waiter_pick(waiter) else {
                    return Reply::Skipped;
                };
                let waiting = self.waiting.contains(&id);
                // A waiter whose outcome is queued but not drained is no longer waiting.
                let out = self.cancel(id);
                assert!(
                    out.is_err() || waiting,
                    "cancelled {id:?}, which was not waiting"
                );
                Reply::Done(out)
            }
            Op::Poll { n } => {
                let mut left = if n == 0 { usize::MAX } else { usize::from(n) };
                while left > 0 && self.poll_one() {
                    left -= 1;
                }
                self.check();
                Reply::Quiet
            }
            Op::Serve => {
                self.serve();
                Reply::Quiet
            }
            Op::Opened { ticket } | Op::OpenFailed { ticket, .. } => {
                let live: Vec<SlotRef> = self.opens.iter().map(|t| t.0).collect();
                let Some(r) = self.pick(ticket, &live) else {
                    return Reply::Skipped;
                };
                let pending = live.iter().position(|&p| p == r);
                if let Some(i) = pending {
                    let t = self.opens.remove(i);
                    let saved = (self.fail_opens, self.permanent_failures);
                    self.fail_opens = usize::from(matches!(op, Op::OpenFailed { .. }));
                    self.permanent_failures = matches!(
                        op,
                        Op::OpenFailed {
                            permanent: true,
                            ..
                        }
                    );
                    self.do_open(t);
                    (self.fail_opens, self.permanent_failures) = saved;
                    Reply::Done(Ok(()))
                } else {
                    let done = match op {
                        Op::Opened { .. } => Completion::Opened {
                            ticket: Ticket(r),
                            conn: self.bogus(),
                        },
                        _ => Completion::OpenFailed {
                            ticket: Ticket(r),
                            permanent: matches!(
                                op,
                                Op::OpenFailed {
                                    permanent: true,
                                    ..
                                }
                            ),
                        },
                    };
                    Reply::Done(Err(self.refused(done)))
                }
            }
            Op::ResetDone { ticket, outcome } | Op::CheckDone { ticket, outcome } => {
                let outcome = Finished::from(outcome);
                let check = matches!(op, Op::CheckDone { .. });
                let list = if check { &self.checks } else { &self.resets };
                let live: Vec<SlotRef> = list.iter().map(|t| t.0 .0).collect();
                let Some(r) = self.pick(ticket, &live) else {
                    return Reply::Skipped;
                };
                if let Some(i) = live.iter().position(|&p| p == r) {
                    let list = if check {
                        &mut self.checks
                    } else {
                        &mut self.resets
                    };
                    let (t, conn) = list.remove(i);
                    self.finish_reset(t, conn, check, outcome);
                    Reply::Done(Ok(()))
                } else {
                    let (ticket, conn) = (Ticket(r), self.bogus());
                    Reply::Done(Err(self.refused(if check {
                        Completion::Checked {
                            ticket,
                            conn,
                            outcome,
                        }
                    } else {
                        Completion::Reset {
                            ticket,
                            conn,
                            outcome,
                        }
                    })))
                }
            }
            Op::CloseDone { ticket, outcome } => {
                let outcome = Finished::from(outcome);
                let live: Vec<SlotRef> = self.closes.iter().map(|t| t.0 .0).collect();
                let Some(r) = self.pick(ticket, &live) else {
                    return Reply::Skipped;
                };
                if let Some(i) = live.iter().position(|&p| p == r) {
                    let (t, conn) = self.closes.remove(i);
                    self.finish_close(t, conn, outcome);
                    Reply::Done(Ok(()))
                } else {
                    Reply::Done(Err(self.refused(Completion::Closed {
                        ticket: Ticket(r),
                        outcome,
                    })))
                }
            }
            Op::Tick { ms } => {
                self.now = self.now.saturating_add(Duration::from_millis(ms.into()));
                Reply::Quiet
            }
            Op::Timeout { ms } => {
                self.advance(Duration::from_millis(ms.into()));
                Reply::Quiet
            }
            Op::ToDeadline => {
                if let Some(t) = self.call(|p, _| p.poll_timeout()) {
                    self.advance_to(t);
                }
                Reply::Quiet
            }
            Op::Backwards { ms } => {
                let then = self.now.as_nanos().saturating_sub(u64::from(ms) * MS);
                self.timeout(Time::from_nanos(then));
                Reply::Quiet
            }
            Op::FarFuture => {
                self.now = self.now.max(Time::from_nanos(u64::MAX - 10 * MS));
                Reply::Quiet
            }
            Op::Resize { min, max } => {
                let (min, max) = (usize::from(min % 6), usize::from(max % 8));
                let mut config = self.pool.config().clone();
                // A resize may take `max` below `min_idle`: fewer spare ones, as `max` allows.
                (config.min, config.max, config.min_idle) = (min, max, 0);
                let expected = match expected_config_error(&config, self.capacity) {
                    Some(e) => Some(e),
                    None => self.pool.is_closed().then_some(Error::Closed),
                };
                let out = self.resize(min, max);
                assert_eq!(out.err(), expected, "resize({min}, {max})");
                Reply::Done(out)
            }
            Op::Drain => {
                let expected = self.pool.is_closed().then_some(Error::Closed);
                let out = self.drain();
                assert_eq!(out.err(), expected, "drain");
                Reply::Done(out)
            }
            Op::CheckIdle => {
                let closed = self.pool.is_closed();
                let out = self.check_idle();
                assert_eq!(out.is_err(), closed, "check_idle");
                Reply::Sent(out)
            }
            Op::Close => {
                let closed = self.pool.is_closed();
                let out = self.close();
                assert_eq!(out.is_err(), closed, "close");
                Reply::Done(out)
            }
        }
    }

    /// A completion the driver does not owe: refused with `UnknownTicket`, the connection handed
    /// back, nothing changed.
    fn refused(&mut self, done: Completion<Conn>) -> Error {
        let conn = match &done {
            Completion::Opened { conn, .. }
            | Completion::Reset { conn, .. }
            | Completion::Checked { conn, .. } => Some(*conn),
            _ => None,
        };
        let out = self.unchanged(|sim| sim.call(|p, now| p.handle(now, done)));
        match out {
            Err(r) => {
                assert_eq!(r.error, Error::UnknownTicket);
                assert_eq!(
                    r.conn, conn,
                    "a refused completion hands back its connection"
                );
                r.error
            }
            Ok(()) => panic!("a completion the driver does not owe was accepted"),
        }
    }

    fn bogus(&mut self) -> Conn {
        self.next_bogus += 1;
        self.next_bogus
    }

    /// The handle a pick names, `None` if it names nothing.
    /// A checkout's or claim's answer, by connection and waiter id.
    fn reply(&self, out: Result<Checkout<Conn>, Error>) -> Reply {
        Reply::Checkout(out.map(|got| match got {
            Checkout::Ready { conn, .. } => Got::Ready(conn),
            Checkout::Held(lease) => Got::Held(self.conn_of(lease)),
            Checkout::Waiting(w) => Got::Waiting(w),
        }))
    }

    /// The waiter a pick names, if any.
    fn waiter_pick(&self, w: WPick) -> Option<WaiterId> {
        match w {
            WPick::Waiting(i) => pick(&self.waiting.iter().copied().collect::<Vec<_>>(), i),
            WPick::Any(i) => pick(&self.waiter_history, i),
            WPick::Raw(n) => Some(WaiterId(n)),
        }
    }

    fn pick(&self, p: Pick, live: &[SlotRef]) -> Option<SlotRef> {
        let old = |i: u8| {
            pick(&self.history, i).unwrap_or(SlotRef {
                tag: TAG,
                index: 0,
                gen: 1,
            })
        };
        Some(match p {
            Pick::Live(i) => pick(live, i)?,
            Pick::Old(i) => pick(&self.history, i)?,
            Pick::Foreign(i) => SlotRef {
                tag: old(i).tag ^ 1,
                ..old(i)
            },
            Pick::NoSlot => SlotRef {
                tag: TAG,
                index: u16::MAX,
                gen: 1,
            },
            Pick::FutureGen(i) => SlotRef {
                gen: u32::MAX,
                ..old(i)
            },
            Pick::Raw(tag, index, gen) => SlotRef { tag, index, gen },
        })
    }
}

fn pick<T: Copy>(list: &[T], i: u8) -> Option<T> {
    if list.is_empty() {
        None
    } else {
        list.get(usize::from(i) % list.len()).copied()
    }
}

/// What the pool must answer to a configuration, for a storage of `capacity` slots.
fn expected_config_error(config: &Config, capacity: usize) -> Option<Error> {
    let churns = config
        .max_lifetime
        .is_some_and(|d| d.is_zero() || config.lifetime_jitter >= d);
    if config.max == 0 {
        Some(Error::MaxZero)
    } else if config.min > config.max {
        Some(Error::MinAboveMax)
    } else if config.max > capacity.min(65_535) {
        Some(Error::CapacityExceeded)
    } else if config.min_idle > config.max {
        Some(Error::MinAboveMax)
    } else if churns || config.backoff_initial.is_zero() {
        Some(Error::InvalidTiming)
    } else {
        None
    }
}

/// Plays a whole case on storage `S`: the configuration (refused ones are checked for the right
/// refusal), every op, then [`Sim::finish`]. Panics on any violation: what a fuzz target calls.
pub fn run<S: Storage<Conn, u8>>(case: &Case) {
    let Ok(mut sim) = Sim::<S, u8>::from_setup(&case.setup) else {
        return;
    };
    for op in &case.ops {
        let _ = sim.step(op);
    }
    sim.finish();
}
