//! The reference model: the pool's rules written as plainly as possible.
//!
//! No slots, no generations, no counters kept in step: a list of connection *places*, a list of idle
//! ones, a list of waiters, a list of commands not yet drained. Every number the real pool keeps
//! incrementally is recomputed here by counting. Handles are abstract: every time a place changes
//! stage it gets a fresh handle number, and the harness maps the real pool's leases and tickets to
//! these numbers one to one.
//!
//! A refused input changes nothing, not even the clock: every input checks its arguments first and
//! only then takes `now`.
//!
//! The rules follow the real pool's documentation (core/src/pool/mod.rs), which follows psycopg2's
//! `AbstractConnectionPool`, in the order the docs give them.

use sanspool_core::{Error, IdleOrder, KeepIdle, Returned, Stats};
use std::time::Duration;

/// An abstract handle (lease or ticket): one per stage of one place.
pub type H = u64;
/// An abstract waiter id.
pub type W = u64;
/// A connection: the driver numbers them.
pub type Conn = u64;
/// A checkout key.
pub type Key = u8;

/// What the model is told about a handle given back to it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Handle {
    /// A handle this pool issued (maybe long ago).
    Issued(H),
    /// A handle from another pool (another tag).
    Foreign,
    /// Forged: never issued by this pool.
    Unknown,
}

/// The stage of one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    Opening,
    Idle(Conn),
    InUse(Option<Key>),
    Resetting,
    Closing,
}

/// One connection's place in the pool, from the order to open it to the report that it is closed.
#[derive(Clone, Debug)]
pub struct Place {
    pub handle: H,
    pub stage: Stage,
    /// When its lifetime ends.
    pub expires: Option<u64>,
    /// When it last became idle.
    pub idle_since: u64,
    /// The drain epoch it was opened in.
    pub epoch: u32,
    /// Out for a check (not a reset).
    pub checking: bool,
}

#[derive(Clone, Debug)]
pub struct Waiter {
    pub id: W,
    pub key: Option<Key>,
    pub deadline: Option<u64>,
    /// `Wait::No`: fails when an open fails.
    pub fail_fast: bool,
    pub since: u64,
}

/// A command, as the model emits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    Open(H),
    Close(H, Conn),
    Reset(H, Conn),
    Check(H, Conn),
    Grant(W, H, Conn),
    Fail(W, Error),
    Ready,
}

impl Cmd {
    fn handle(&self) -> Option<H> {
        match *self {
            Cmd::Open(h) | Cmd::Close(h, _) | Cmd::Reset(h, _) | Cmd::Check(h, _) => Some(h),
            Cmd::Grant(_, h, _) => Some(h),
            Cmd::Fail(..) | Cmd::Ready => None,
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MWait {
    No,
    Until(u64),
    Forever,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MCheckout {
    Ready(H, Conn),
    Held(H),
    Waiting(W),
}

/// An input refused: the error, and whether the connection given with it came back.
pub type Refused = (Error, bool);

/// What the model needs of the configuration (jitter is zero: the model has no random numbers).
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub min: usize,
    pub max: usize,
    pub max_waiting: usize,
    pub keep_idle: KeepIdle,
    pub idle_order: IdleOrder,
    pub max_lifetime: Option<u64>,
    pub max_idle: Option<u64>,
    pub backoff_initial: u64,
    pub backoff_max: u64,
    /// The storage's room: slots and waiters.
    pub slot_capacity: usize,
    pub waiter_capacity: usize,
}

#[derive(Clone, Debug)]
pub struct Model {
    cfg: ModelConfig,
    now: u64,
    closed: bool,
    places: Vec<Place>,
    /// Idle places by handle, least recently returned first.
    idle: Vec<H>,
    waiters: Vec<Waiter>,
    /// Emitted, not yet drained.
    queue: Vec<Cmd>,
    ready: ReadyState,
    epoch: u32,
    failures: u32,
    retry_at: Option<u64>,
    next_handle: H,
    next_waiter: W,
    counters: Stats,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ReadyState {
    NotYet,
    Queued,
    Sent,
}

fn check_sizes(min: usize, max: usize, capacity: usize) -> Result<(), Error> {
    if max == 0 {
        Err(Error::MaxZero)
    } else if min > max {
        Err(Error::MinAboveMax)
    } else if max > capacity || max > 65_535 {
        Err(Error::CapacityExceeded)
    } else {
        Ok(())
    }
}

impl Model {
    // ------------------------------------------------------------------ construction

    /// psycopg2's constructor opens `minconn` connections at once.
    pub fn new(cfg: ModelConfig) -> Result<Model, Error> {
        check_sizes(cfg.min, cfg.max, cfg.slot_capacity)?;
        // A zero lifetime or backoff would churn or spin (the model has no jitter).
        if cfg.max_lifetime == Some(0) || cfg.backoff_initial == 0 {
            return Err(Error::InvalidTiming);
        }
        let mut m = Model {
            cfg,
            now: 0,
            closed: false,
            places: Vec::new(),
            idle: Vec::new(),
            waiters: Vec::new(),
            queue: Vec::new(),
            ready: ReadyState::NotYet,
            epoch: 0,
            failures: 0,
            retry_at: None,
            next_handle: 0,
            next_waiter: 0,
            counters: Stats::default(),
        };
        m.settle();
        Ok(m)
    }

    // ------------------------------------------------------------------ counting

    fn count(&self, f: impl Fn(&Stage) -> bool) -> usize {
        self.places.iter().filter(|p| f(&p.stage)).count()
    }
    fn opening(&self) -> usize {
        self.count(|s| *s == Stage::Opening)
    }
    fn idle_count(&self) -> usize {
        self.count(|s| matches!(s, Stage::Idle(_)))
    }
    fn closing(&self) -> usize {
        self.count(|s| *s == Stage::Closing)
    }
    /// Everything `max` bounds: every place, even one being closed.
    fn size(&self) -> usize {
        self.places.len()
    }
    /// Connections that exist and stay: what `min` asks for.
    fn open(&self) -> usize {
        self.count(|s| matches!(s, Stage::Idle(_) | Stage::InUse(_) | Stage::Resetting))
    }
    /// Connections that will remain once the closes in flight are done.
    fn remaining(&self) -> usize {
        self.size() - self.closing()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            size: self.size(),
            idle: self.idle_count(),
            in_use: self.count(|s| matches!(s, Stage::InUse(_))),
            waiting: self.waiters.len(),
            opening: self.opening(),
            resetting: self.count(|s| *s == Stage::Resetting),
            closing: self.closing(),
            ..self.counters
        }
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty() && self.queue.iter().all(|c| *c == Cmd::Ready)
    }

    pub fn is_ready(&self) -> bool {
        self.ready != ReadyState::NotYet
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    // ------------------------------------------------------------------ places and handles

    fn place_of(&self, h: H) -> Option<usize> {
        self.places.iter().position(|p| p.handle == h)
    }

    /// Whether a command naming `h` is still waiting to be drained (the driver cannot have it).
    fn queued(&self, h: H) -> bool {
        self.queue.iter().any(|c| c.handle() == Some(h))
    }

    /// A place moves to a new stage and gets a new handle: every older handle is stale.
    fn set_stage(&mut self, p: usize, stage: Stage) -> H {
        self.next_handle += 1;
        self.places[p].handle = self.next_handle;
        self.places[p].stage = stage;
        self.next_handle
    }

    fn remove_place(&mut self, p: usize) {
        let h = self.places[p].handle;
        self.idle.retain(|&i| i != h);
        self.places.remove(p);
    }

    /// A lease given back: a current, drained, in-use handle; else a stale one was returned already;
    /// else the pool does not know it.
    fn lease(&self, lease: Handle) -> Result<usize, Error> {
        let h = match lease {
            Handle::Foreign => return Err(Error::Foreign),
            Handle::Unknown => return Err(Error::Unkeyed),
            Handle::Issued(h) => h,
        };
        match self.place_of(h) {
            Some(p) if matches!(self.places[p].stage, Stage::InUse(_)) && !self.queued(h) => Ok(p),
            Some(_) => Err(Error::Unkeyed),
            None => Err(Error::AlreadyReturned),
        }
    }

    /// A ticket reported back: current, drained, and for the operation reported.
    fn ticket(&self, ticket: Handle, stage: &Stage) -> Result<usize, Error> {
        match ticket {
            Handle::Issued(h) => match self.place_of(h) {
                Some(p) if self.places[p].stage == *stage && !self.queued(h) => Ok(p),
                _ => Err(Error::UnknownTicket),
            },
            Handle::Foreign | Handle::Unknown => Err(Error::UnknownTicket),
        }
    }

    fn outlived(&self, p: usize) -> bool {
        self.places[p].expires.is_some_and(|t| t <= self.now)
    }

    fn advance(&mut self, now: u64) {
        self.now = self.now.max(now);
    }

    fn emit(&mut self, cmd: Cmd) {
        self.queue.push(cmd);
    }

    // ------------------------------------------------------------------ checkout

    pub fn checkout(
        &mut self,
        now: u64,
        key: Option<Key>,
        wait: MWait,
    ) -> Result<MCheckout, Error> {
        // getconn on a closed pool.
        if self.closed {
            return Err(Error::Closed);
        }
        // A key that holds a connection gets that connection again; a key already waiting (or whose
        // grant is not drained yet) is busy.
        if let Some(k) = key {
            if let Some(p) = self
                .places
                .iter()
                .find(|p| p.stage == Stage::InUse(Some(k)))
            {
                if self.queued(p.handle) {
                    return Err(Error::KeyBusy);
                }
                return Ok(MCheckout::Held(p.handle));
            }
            if self.waiters.iter().any(|w| w.key == Some(k)) {
                return Err(Error::KeyBusy);
            }
        }
        self.advance(now);
        let out = self.checkout_idle(key, wait);
        self.settle();
        out
    }

    fn checkout_idle(&mut self, key: Option<Key>, wait: MWait) -> Result<MCheckout, Error> {
        // The most recently returned idle connection (LIFO), or the least (FIFO); one past its
        // lifetime is closed instead.
        while !self.idle.is_empty() {
            let h = match self.cfg.idle_order {
                IdleOrder::Lifo => self.idle.pop().unwrap(),
                IdleOrder::Fifo => self.idle.remove(0),
            };
            let p = self.place_of(h).unwrap();
            let Stage::Idle(conn) = self.places[p].stage else {
                unreachable!("idle list names a non-idle place")
            };
            if self.outlived(p) {
                self.counters.expired += 1;
                self.close_conn(p, conn);
                continue;
            }
            let lease = self.set_stage(p, Stage::InUse(key));
            self.counters.checkouts += 1;
            return Ok(MCheckout::Ready(lease, conn));
        }
        // No idle connection: psycopg2 fails when at max; otherwise the checkout queues.
        if wait == MWait::No && self.size() >= self.cfg.max {
            return Err(Error::Exhausted);
        }
        let pending_fails = self
            .queue
            .iter()
            .filter(|c| matches!(c, Cmd::Fail(..)))
            .count();
        // max_waiting bounds checkouts that wait; one that will not is bounded by storage only.
        let bound = match wait {
            MWait::No => self.cfg.waiter_capacity,
            _ => self.cfg.max_waiting.min(self.cfg.waiter_capacity),
        };
        if self.waiters.len() + pending_fails >= bound {
            return Err(Error::TooManyWaiters);
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.push(Waiter {
            id,
            key,
            deadline: match wait {
                MWait::Until(t) => Some(t),
                MWait::No | MWait::Forever => None,
            },
            fail_fast: wait == MWait::No,
            since: self.now,
        });
        // A checkout that will not wait gets an open of its own at once, backoff or not.
        if wait == MWait::No && self.waiters.len() > self.opening() {
            self.order_open();
        }
        Ok(MCheckout::Waiting(id))
    }

    // ------------------------------------------------------------------ checkin

    pub fn checkin(
        &mut self,
        now: u64,
        lease: Handle,
        key: Option<Key>,
        conn: Conn,
        returned: Returned,
    ) -> Result<(), Refused> {
        let p = self.lease(lease).map_err(|e| (e, true))?;
        let Stage::InUse(held_key) = self.places[p].stage else {
            unreachable!()
        };
        if key.is_some() && key != held_key {
            return Err((Error::WrongKey, true));
        }
        self.advance(now);
        // The key is released.
        self.places[p].stage = Stage::InUse(None);
        // putconn on a closed pool: the connection is closed all the same, and the caller is told.
        if self.closed {
            self.close_conn(p, conn);
            return Err((Error::Closed, false));
        }
        match returned {
            Returned::Clean => self.arrive(p, conn, Arrival::Returned),
            Returned::Dirty => {
                if self.keeps(p, true) {
                    self.counters.resets += 1;
                    let ticket = self.set_stage(p, Stage::Resetting);
                    self.emit(Cmd::Reset(ticket, conn));
                } else {
                    self.close_unkept(p, conn);
                }
            }
            Returned::Broken => {
                self.counters.broken_returns += 1;
                self.close_conn(p, conn);
            }
            Returned::Close => self.close_conn(p, conn),
        }
        self.settle();
        Ok(())
    }

    pub fn detach(&mut self, now: u64, lease: Handle) -> Result<(), Error> {
        let p = self.lease(lease)?;
        self.advance(now);
        self.remove_place(p);
        self.counters.detached += 1;
        self.settle();
        Ok(())
    }

    pub fn cancel(&mut self, now: u64, waiter: Option<W>) -> Result<(), Error> {
        let pos = self
            .waiters
            .iter()
            .position(|w| Some(w.id) == waiter)
            .ok_or(Error::UnknownWaiter)?;
        self.advance(now);
        self.waiters.remove(pos);
        self.settle();
        Ok(())
    }

    // ------------------------------------------------------------------ the driver's reports

    pub fn opened(&mut self, now: u64, ticket: Handle, conn: Conn) -> Result<(), Refused> {
        let p = self
            .ticket(ticket, &Stage::Opening)
            .map_err(|e| (e, true))?;
        self.advance(now);
        self.counters.opens += 1;
        self.failures = 0;
        self.retry_at = None;
        self.places[p].epoch = self.epoch;
        self.places[p].expires = self.cfg.max_lifetime.map(|d| self.now.saturating_add(d));
        self.arrive(p, conn, Arrival::Opened);
        self.settle();
        Ok(())
    }

    pub fn open_failed(&mut self, now: u64, ticket: Handle) -> Result<(), Error> {
        let p = self.ticket(ticket, &Stage::Opening)?;
        self.advance(now);
        self.remove_place(p);
        self.counters.open_failures += 1;
        self.failures += 1;
        // Exponential backoff: initial, doubled per consecutive failure, at most backoff_max.
        let mut delay = self.cfg.backoff_initial.min(self.cfg.backoff_max);
        for _ in 1..self.failures {
            delay = delay.saturating_mul(2).min(self.cfg.backoff_max);
        }
        self.retry_at = Some(self.now.saturating_add(delay));
        if let Some(pos) = self.waiters.iter().position(|w| w.fail_fast) {
            self.fail_waiter(pos, Error::OpenFailed);
        }
        self.settle();
        Ok(())
    }

    pub fn reset_done(
        &mut self,
        now: u64,
        ticket: Handle,
        conn: Conn,
        ok: bool,
    ) -> Result<(), Refused> {
        let p = self
            .ticket(ticket, &Stage::Resetting)
            .map_err(|e| (e, true))?;
        self.advance(now);
        let arrival = if std::mem::take(&mut self.places[p].checking) {
            Arrival::Checked
        } else {
            Arrival::Returned
        };
        if ok {
            self.arrive(p, conn, arrival);
        } else {
            self.close_conn(p, conn);
        }
        self.settle();
        Ok(())
    }

    pub fn closed(&mut self, now: u64, ticket: Handle) -> Result<(), Error> {
        let p = self.ticket(ticket, &Stage::Closing)?;
        self.advance(now);
        self.remove_place(p);
        self.settle();
        Ok(())
    }

    // ------------------------------------------------------------------ time

    pub fn timeout(&mut self, now: u64) {
        self.advance(now);
        // Waiters past their deadline fail, oldest first.
        let mut pos = 0;
        while pos < self.waiters.len() {
            if self.waiters[pos].deadline.is_some_and(|d| d <= self.now) {
                self.counters.timeouts += 1;
                self.fail_waiter(pos, Error::Timeout);
            } else {
                pos += 1;
            }
        }
        // Idle connections past their lifetime, or idle too long while more than min are open,
        // are closed, least recently returned first.
        for h in self.idle.clone() {
            let p = self.place_of(h).unwrap();
            let since = self.places[p].idle_since;
            let idled_out = self
                .cfg
                .max_idle
                .is_some_and(|d| since.saturating_add(d) <= self.now)
                && self.open() > self.cfg.min;
            if self.outlived(p) || idled_out {
                self.counters.expired += 1;
                self.close_idle(h);
            }
        }
        self.settle();
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        let mut times = Vec::new();
        times.extend(self.waiters.iter().filter_map(|w| w.deadline));
        for &h in &self.idle {
            let p = &self.places[self.place_of(h).unwrap()];
            times.extend(p.expires);
        }
        if let (Some(d), Some(&h)) = (self.cfg.max_idle, self.idle.first()) {
            if self.open() > self.cfg.min {
                let p = &self.places[self.place_of(h).unwrap()];
                times.push(p.idle_since.saturating_add(d));
            }
        }
        if let Some(t) = self.retry_at {
            if self.open_deficit() > 0 && self.size() < self.cfg.max {
                times.push(t);
            }
        }
        times.into_iter().min()
    }

    // ------------------------------------------------------------------ user operations

    pub fn resize(&mut self, now: u64, min: usize, max: usize) -> Result<(), Error> {
        check_sizes(min, max, self.cfg.slot_capacity)?;
        if self.closed {
            return Err(Error::Closed);
        }
        self.advance(now);
        self.cfg.min = min;
        self.cfg.max = max;
        // Shrinking first withdraws the opens the driver has not seen yet, newest first...
        while self.size() > max {
            let Some(pos) = self.queue.iter().rposition(|c| matches!(c, Cmd::Open(_))) else {
                break;
            };
            let Cmd::Open(h) = self.queue.remove(pos) else {
                unreachable!()
            };
            let p = self.place_of(h).unwrap();
            self.remove_place(p);
        }
        // ...then closes idle connections, least recently used first, until at most max remain.
        while self.remaining() > max && !self.idle.is_empty() {
            let h = self.idle[0];
            self.close_idle(h);
        }
        self.settle();
        Ok(())
    }

    pub fn drain(&mut self, now: u64) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.advance(now);
        self.epoch += 1;
        while let Some(&h) = self.idle.first() {
            self.close_idle(h);
        }
        self.settle();
        Ok(())
    }

    pub fn check_idle(&mut self, now: u64) -> Result<usize, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.advance(now);
        let idle = std::mem::take(&mut self.idle);
        for &h in &idle {
            let p = self.place_of(h).unwrap();
            let Stage::Idle(conn) = self.places[p].stage else {
                unreachable!()
            };
            self.places[p].checking = true;
            let ticket = self.set_stage(p, Stage::Resetting);
            self.emit(Cmd::Check(ticket, conn));
        }
        self.settle();
        Ok(idle.len())
    }

    /// closeall: refuse checkouts, fail every waiter, close idle connections now and the others as
    /// they come back, and forget the opens the driver has not seen yet.
    pub fn close(&mut self, now: u64) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.advance(now);
        self.closed = true;
        while !self.waiters.is_empty() {
            self.fail_waiter(0, Error::Closed);
        }
        while let Some(&h) = self.idle.first() {
            self.close_idle(h);
        }
        let undrained: Vec<H> = self
            .queue
            .iter()
            .filter_map(|c| match c {
                Cmd::Open(h) => Some(*h),
                _ => None,
            })
            .collect();
        self.queue.retain(|c| !matches!(c, Cmd::Open(_)));
        for h in undrained {
            let p = self.place_of(h).unwrap();
            self.remove_place(p);
        }
        if self.ready == ReadyState::Queued {
            // Not emitted after close, but `min` was reached: is_ready stays true.
            self.queue.retain(|c| *c != Cmd::Ready);
            self.ready = ReadyState::Sent;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ outputs

    pub fn poll(&mut self) -> Option<Cmd> {
        if self.queue.is_empty() {
            return None;
        }
        let cmd = self.queue.remove(0);
        if cmd == Cmd::Ready {
            self.ready = ReadyState::Sent;
        }
        Some(cmd)
    }

    // ------------------------------------------------------------------ the rules' helpers

    /// Whether the pool keeps a connection arriving at place `p` (`returned`: from a borrower or a
    /// reset, where psycopg2's "keep only while fewer than min are idle" applies if configured).
    fn keeps(&self, p: usize, returned: bool) -> bool {
        let wanted = !returned
            || self.cfg.keep_idle == KeepIdle::UpToMax
            || !self.waiters.is_empty()
            || self.idle_count() < self.cfg.min;
        !self.closed
            && self.remaining() <= self.cfg.max
            && self.places[p].epoch == self.epoch
            && !self.outlived(p)
            && wanted
    }

    /// A connection arriving at place `p` (opened, returned clean, reset or checked): closed if the
    /// pool does not keep it, else to the oldest waiter, else idle.
    fn arrive(&mut self, p: usize, conn: Conn, arrival: Arrival) {
        if !self.keeps(p, arrival == Arrival::Returned) {
            self.close_unkept(p, conn);
        } else if !self.waiters.is_empty() {
            let w = self.waiters.remove(0);
            self.counters.checkouts += 1;
            self.counters.waits += 1;
            self.counters.wait_time += Duration::from_nanos(self.now.saturating_sub(w.since));
            let lease = self.set_stage(p, Stage::InUse(w.key));
            self.emit(Cmd::Grant(w.id, lease, conn));
        } else if arrival == Arrival::Checked {
            // A check is not a use: back to its old place among the idle, by idle time.
            let since = self.places[p].idle_since;
            let h = self.set_stage(p, Stage::Idle(conn));
            let pos = self
                .idle
                .iter()
                .position(|&i| self.places[self.place_of(i).unwrap()].idle_since > since)
                .unwrap_or(self.idle.len());
            self.idle.insert(pos, h);
        } else {
            let h = self.set_stage(p, Stage::Idle(conn));
            self.places[p].idle_since = self.now;
            self.idle.push(h);
        }
    }

    /// A connection the pool does not keep is closed; counted as expired if its lifetime is over.
    fn close_unkept(&mut self, p: usize, conn: Conn) {
        if self.outlived(p) {
            self.counters.expired += 1;
        }
        self.close_conn(p, conn);
    }

    fn close_idle(&mut self, h: H) {
        let p = self.place_of(h).unwrap();
        let Stage::Idle(conn) = self.places[p].stage else {
            unreachable!()
        };
        self.idle.retain(|&i| i != h);
        self.close_conn(p, conn);
    }

    fn close_conn(&mut self, p: usize, conn: Conn) {
        self.counters.closes += 1;
        let ticket = self.set_stage(p, Stage::Closing);
        self.emit(Cmd::Close(ticket, conn));
    }

    fn fail_waiter(&mut self, pos: usize, error: Error) {
        let w = self.waiters.remove(pos);
        self.emit(Cmd::Fail(w.id, error));
    }

    fn open_deficit(&self) -> usize {
        if self.closed {
            return 0;
        }
        let for_min = self.cfg.min.saturating_sub(self.open() + self.opening());
        let for_waiters = self.waiters.len().saturating_sub(self.opening());
        for_min.max(for_waiters)
    }

    fn order_open(&mut self) {
        if self.size() >= self.cfg.max {
            return;
        }
        self.places.push(Place {
            handle: 0,
            stage: Stage::Opening,
            expires: None,
            idle_since: 0,
            epoch: self.epoch,
            checking: false,
        });
        let p = self.places.len() - 1;
        let ticket = self.set_stage(p, Stage::Opening);
        self.emit(Cmd::Open(ticket));
    }

    /// Order the opens that min and the waiters call for (unless backing off after a failed
    /// open), and signal "ready" once min connections are first open.
    fn settle(&mut self) {
        if self.closed {
            return;
        }
        let backing_off = self.retry_at.is_some_and(|t| self.now < t);
        while !backing_off && self.open_deficit() > 0 && self.size() < self.cfg.max {
            self.order_open();
        }
        // A checkout that would not wait, beyond the waiters the opens in flight serve, with no
        // room for another open: exhausted.
        if self.size() >= self.cfg.max {
            let served = self.opening();
            let mut pos = served;
            while pos < self.waiters.len() {
                if self.waiters[pos].fail_fast {
                    self.fail_waiter(pos, Error::Exhausted);
                } else {
                    pos += 1;
                }
            }
        }
        if self.ready == ReadyState::NotYet && self.open() >= self.cfg.min {
            self.ready = ReadyState::Queued;
            self.emit(Cmd::Ready);
        }
    }
}

/// How a connection arrives at a place: opened, back from a borrower (or its reset), or back from
/// a check of an idle connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    Opened,
    Returned,
    Checked,
}
