//! A simulated driver for the core's tests.
//!
//! [`Sim`] wraps a [`Pool`] with a fake clock, hands out connection ids from a counter, drains and
//! records every command and performs it (opens succeed or fail on request, closes, resets and
//! checks are reported back), collects grants and failures per waiter, and after every step checks
//! the pool's own invariants and connection conservation: every connection the pool accepted is
//! exactly one of idle inside the pool, held by the test, inside an undrained command, out with the
//! driver (a close, reset or check not reported yet), closed, or detached.
#![allow(dead_code)]

use sanspool_core::storage::Storage;
use sanspool_core::{
    Checkout, Command, Config, Error, Lease, Pool, Rejected, Returned, Stats, Ticket, Time, Wait,
    WaiterId,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

/// A simulated connection.
pub type Conn = u32;

/// A drained command, with the connection ids it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Open,
    Close(Conn),
    Reset(Conn),
    Check(Conn),
    Grant(WaiterId, Conn),
    Fail(WaiterId, Error),
    Ready,
}

/// `t` seconds after the origin.
pub fn secs(t: u64) -> Time {
    Time::from_nanos(t * 1_000_000_000)
}

/// `t` milliseconds after the origin.
pub fn ms(t: u64) -> Time {
    Time::from_nanos(t * 1_000_000)
}

/// The simulated driver.
pub struct Sim<S: Storage<Conn, K>, K = u64> {
    pool: Pool<Conn, K, S>,
    /// The fake clock: passed with every input.
    pub now: Time,
    next_conn: Conn,
    /// Drain commands after every input (off: they stay queued until [`Sim::poll`]).
    pub auto_poll: bool,
    /// Perform drained `Open`s at once (off: they wait in `opens`).
    pub auto_open: bool,
    /// Report drained `Close`s at once (off: they wait in `closes`).
    pub auto_close: bool,
    /// Report drained `Reset`s and `Check`s at once (off: they wait in `resets`).
    pub auto_reset: bool,
    /// The next this many opens fail.
    pub fail_opens: usize,
    /// The next this many resets or checks fail.
    pub fail_resets: usize,
    log: Vec<Cmd>,
    /// Drained opens not performed yet.
    pub opens: Vec<Ticket>,
    /// Drained closes not reported yet.
    pub closes: Vec<(Ticket, Conn)>,
    /// Drained resets and checks not reported yet.
    pub resets: Vec<(Ticket, Conn)>,
    /// Connections the test holds, with their leases.
    pub held: BTreeMap<Conn, Lease>,
    /// Every grant, per waiter.
    pub grants: BTreeMap<WaiterId, (Lease, Conn)>,
    /// Every failure, per waiter.
    pub fails: BTreeMap<WaiterId, Error>,
    /// Queued checkouts, as the test saw them queue (their outcome not drained yet).
    pub waiting: BTreeSet<WaiterId>,
    waiter_keys: Vec<(WaiterId, K)>,
    held_keys: Vec<(Conn, K)>,
    /// `Ready` commands drained.
    pub readies: usize,
    opened: BTreeSet<Conn>,
    /// Connections whose close was reported, and when.
    pub closed: BTreeMap<Conn, Time>,
    detached: BTreeSet<Conn>,
    ceiling: usize,
    last_now: Time,
    steps: u64,
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
            auto_poll,
            auto_open: perform,
            auto_close: perform,
            auto_reset: perform,
            fail_opens: 0,
            fail_resets: 0,
            log: Vec::new(),
            opens: Vec::new(),
            closes: Vec::new(),
            resets: Vec::new(),
            held: BTreeMap::new(),
            grants: BTreeMap::new(),
            fails: BTreeMap::new(),
            waiting: BTreeSet::new(),
            waiter_keys: Vec::new(),
            held_keys: Vec::new(),
            readies: 0,
            opened: BTreeSet::new(),
            closed: BTreeMap::new(),
            detached: BTreeSet::new(),
            ceiling,
            last_now: Time::ZERO,
            steps: 0,
        };
        sim.run();
        Ok(sim)
    }

    // ------------------------------------------------------------------ reading

    pub fn pool(&self) -> &Pool<Conn, K, S> {
        &self.pool
    }

    pub fn stats(&self) -> Stats {
        self.pool.stats()
    }

    /// The commands drained since the last call.
    pub fn take_log(&mut self) -> Vec<Cmd> {
        std::mem::take(&mut self.log)
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

    // ------------------------------------------------------------------ inputs

    /// A checkout at the current time.
    pub fn checkout(&mut self, key: Option<K>, wait: Wait) -> Result<Checkout<Conn>, Error> {
        let out = self.pool.handle_checkout(self.now, key.clone(), wait);
        let key_holder = key.as_ref().and_then(|k| self.key_holder(k));
        let strict = self.auto_poll;
        match (&out, key) {
            (Ok(Checkout::Held(lease)), Some(_)) => {
                let conn = self.conn_of(*lease);
                let key_holder = key_holder.filter(|_| strict).or(Some(Ok(conn)));
                assert_eq!(key_holder, Some(Ok(conn)), "Held for a key held elsewhere");
            }
            (Ok(Checkout::Held(_)), None) => panic!("Held without a key"),
            (Err(Error::KeyBusy), _) => {
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
                self.take_out(*conn);
                self.held.insert(*conn, *lease);
                self.held_keys.extend(key.map(|k| (*conn, k)));
            }
            (Ok(Checkout::Waiting(w)), key) => {
                assert!(
                    !strict || key_holder.is_none(),
                    "a held key queued a second checkout"
                );
                assert!(self.waiting.insert(*w), "{w:?} issued twice");
                self.waiter_keys.extend(key.map(|k| (*w, k)));
            }
            (Err(_), _) => {}
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
        let pos = self.waiter_keys.iter().position(|(w, _)| *w == waiter)?;
        Some(self.waiter_keys.remove(pos).1)
    }

    fn conn_of(&self, lease: Lease) -> Conn {
        let found = self.held.iter().find(|(_, l)| **l == lease);
        *found.expect("a held lease").0
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
        let out = self
            .pool
            .handle_checkin(self.now, lease, key, conn, returned);
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
                self.release(conn);
            }
            Ok(()) => self.release(conn),
        }
        self.run();
        out
    }

    pub fn detach(&mut self, conn: Conn) -> Result<(), Error> {
        let lease = self.lease(conn);
        let out = self.pool.handle_detach(self.now, lease);
        if out.is_ok() {
            self.held.remove(&conn);
            self.release(conn);
            self.detached.insert(conn);
        }
        self.run();
        out
    }

    pub fn cancel(&mut self, waiter: WaiterId) -> Result<(), Error> {
        let out = self.pool.handle_cancel(self.now, waiter);
        if out.is_ok() {
            self.resolve(waiter);
        }
        self.run();
        out
    }

    pub fn resize(&mut self, min: usize, max: usize) -> Result<(), Error> {
        let before = self.stats().size;
        let out = self.pool.resize(self.now, min, max);
        if out.is_ok() {
            self.ceiling = before.max(max);
        }
        self.run();
        out
    }

    pub fn drain(&mut self) -> Result<(), Error> {
        let out = self.pool.drain(self.now);
        self.run();
        out
    }

    pub fn check_idle(&mut self) -> Result<usize, Error> {
        let out = self.pool.check_idle(self.now);
        self.run();
        out
    }

    pub fn close(&mut self) -> Result<(), Error> {
        let out = self.pool.close(self.now);
        self.run();
        out
    }

    /// Any other input, straight on the pool, then the usual draining and checks. Whatever
    /// connection the closure gives the pool must come from `held` (and be removed from it) or be
    /// one the pool refuses.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Pool<Conn, K, S>, Time) -> R) -> R {
        let out = f(&mut self.pool, self.now);
        self.run();
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
        self.pool.handle_timeout(self.now);
        let next = self.pool.poll_timeout();
        assert!(
            next.is_none_or(|next| next > self.pool.now()),
            "after handle_timeout, poll_timeout still reports {next:?}"
        );
        self.run();
    }

    /// Lives until `t`, waking at every deadline the pool reports on the way.
    pub fn run_until(&mut self, t: Time) {
        for _ in 0..1_000_000 {
            match self.pool.poll_timeout() {
                Some(next) if next <= t => self.advance_to(next),
                _ => return self.advance_to(t),
            }
        }
        panic!("too many wake-ups before {t:?}");
    }

    // ------------------------------------------------------------------ the driver's side

    /// Drains every queued command (whatever `auto_poll` says), performing what is automatic.
    pub fn poll(&mut self) {
        while let Some(cmd) = self.pool.poll_command() {
            self.perform(cmd);
        }
        self.check();
    }

    fn run(&mut self) {
        self.check();
        if self.auto_poll {
            self.poll();
        }
    }

    fn perform(&mut self, cmd: Command<Conn>) {
        match cmd {
            Command::Open(ticket) => {
                assert!(!self.pool.is_closed(), "Open after close");
                let s = self.pool.stats();
                assert!(
                    s.size <= self.pool.config().max,
                    "Open drained with {} occupied, max {}",
                    s.size,
                    self.pool.config().max
                );
                self.log.push(Cmd::Open);
                if self.auto_open {
                    self.do_open(ticket);
                } else {
                    self.opens.push(ticket);
                }
            }
            Command::Close { ticket, conn } => {
                self.take_out(conn);
                self.log.push(Cmd::Close(conn));
                if self.auto_close {
                    self.do_close(ticket, conn);
                } else {
                    self.closes.push((ticket, conn));
                }
            }
            Command::Reset { ticket, conn } | Command::Check { ticket, conn } => {
                let check = matches!(cmd, Command::Check { .. });
                self.take_out(conn);
                self.log.push(if check {
                    Cmd::Check(conn)
                } else {
                    Cmd::Reset(conn)
                });
                if self.auto_reset {
                    self.do_reset(ticket, conn);
                } else {
                    self.resets.push((ticket, conn));
                }
            }
            Command::Grant {
                waiter,
                lease,
                conn,
            } => {
                self.take_out(conn);
                self.log.push(Cmd::Grant(waiter, conn));
                let oldest = self.waiting.first().copied();
                assert_eq!(oldest, Some(waiter), "a younger waiter was served first");
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
            Command::Fail { waiter, error } => {
                self.log.push(Cmd::Fail(waiter, error));
                self.resolve(waiter);
                assert!(
                    !self.grants.contains_key(&waiter),
                    "{waiter:?} granted before"
                );
                let before = self.fails.insert(waiter, error);
                assert!(before.is_none(), "{waiter:?} failed twice");
            }
            Command::Ready => {
                self.log.push(Cmd::Ready);
                self.readies += 1;
                assert_eq!(self.readies, 1, "Ready emitted twice");
            }
        }
    }

    /// Performs the oldest drained open: it fails if `fail_opens` says so, else yields a new id.
    pub fn open_next(&mut self) {
        let ticket = self.opens.remove(0);
        self.do_open(ticket);
        self.run();
    }

    /// Reports the oldest drained close.
    pub fn close_next(&mut self) {
        let (ticket, conn) = self.closes.remove(0);
        self.do_close(ticket, conn);
        self.run();
    }

    /// Reports the oldest drained reset or check: it fails if `fail_resets` says so.
    pub fn reset_next(&mut self) {
        let (ticket, conn) = self.resets.remove(0);
        self.do_reset(ticket, conn);
        self.run();
    }

    fn do_open(&mut self, ticket: Ticket) {
        if self.fail_opens > 0 {
            self.fail_opens -= 1;
            self.pool
                .handle_open_failed(self.now, ticket)
                .expect("open failure accepted");
        } else {
            self.next_conn += 1;
            let conn = self.next_conn;
            self.pool
                .handle_opened(self.now, ticket, conn)
                .expect("open accepted");
            self.opened.insert(conn);
        }
        self.check();
    }

    fn do_close(&mut self, ticket: Ticket, conn: Conn) {
        self.pool
            .handle_closed(self.now, ticket)
            .expect("close accepted");
        self.closed.insert(conn, self.now);
        self.check();
    }

    fn do_reset(&mut self, ticket: Ticket, conn: Conn) {
        let ok = if self.fail_resets > 0 {
            self.fail_resets -= 1;
            false
        } else {
            true
        };
        self.pool
            .handle_reset(self.now, ticket, conn, ok)
            .expect("reset accepted");
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

    // ------------------------------------------------------------------ the checks

    /// A connection leaves the pool (in a checkout or a command): it must have been inside.
    fn take_out(&self, conn: Conn) {
        assert!(self.opened.contains(&conn), "{conn} was never opened");
        assert!(!self.held.contains_key(&conn), "{conn} is already held");
        assert!(
            !self.closes.iter().any(|c| c.1 == conn),
            "{conn} is closing"
        );
        assert!(
            !self.resets.iter().any(|c| c.1 == conn),
            "{conn} is resetting"
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
        let max = self.pool.config().max;
        assert!(
            s.size <= self.ceiling.max(max),
            "{} occupied, max {max}",
            s.size
        );
        self.ceiling = max.max(self.ceiling.min(s.size));

        assert!(self.held.len() <= s.in_use, "held {:?}, {s:?}", self.held);
        assert!(
            self.closes.len() <= s.closing,
            "closes {:?}, {s:?}",
            self.closes
        );
        assert!(
            self.resets.len() <= s.resetting,
            "resets {:?}, {s:?}",
            self.resets
        );
        let mut outside = BTreeSet::new();
        let all = self.held.keys().copied();
        let all = all.chain(self.closes.iter().map(|c| c.1));
        let all = all.chain(self.resets.iter().map(|c| c.1));
        let all = all.chain(self.closed.keys().copied());
        for conn in all.chain(self.detached.iter().copied()) {
            assert!(self.opened.contains(&conn), "{conn} was never opened");
            assert!(outside.insert(conn), "{conn} is in two places");
        }
        let inside_pool = s.idle
            + (s.in_use - self.held.len())
            + (s.resetting - self.resets.len())
            + (s.closing - self.closes.len());
        assert_eq!(
            self.opened.len(),
            outside.len() + inside_pool,
            "connections not conserved: {s:?}"
        );
    }
}
