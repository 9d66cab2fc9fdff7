//! The state machine: every rule of the pool, in one place.
//!
//! User actions (`checkout`, `checkin`, `detach`, `cancel`, `resize`, `drain`, `check_idle`,
//! `close`) and driver reports (`handle`, `handle_timeout`) first advance the pool's clock, then
//! act, then [`settle`](Pool::settle): order the opens that `min` and the waiters call for, and
//! re-arm the deadlines. Outputs are drained with [`Pool::poll_io`],
//! [`Pool::poll_handoff`], [`Pool::poll_report`] and [`Pool::poll_timeout`]. Nothing here blocks, allocates (with [`Fixed`](crate::Fixed) storage),
//! or panics.

use crate::config::{Config, Fairness, KeepIdle};
use crate::handle::SlotRef;
use crate::slot::{Counts, Slot, State, Waiter};
use crate::storage::{Buffer, Holder, KeyIndex, Queue, Queued, Storage};
use crate::time::nanos;
use crate::timer::{min_opt, Timer, TimerTable};
use crate::{
    Checkout, Completion, Error, Finished, Handoff, IdleOrder, Io, Lease, Rejected, Report,
    Returned, Stats, Ticket, Time, Wait, WaiterId,
};
use core::cmp::{max, min};
use core::time::Duration;

/// A connection pool's bookkeeping, generic over the connection `C`, the checkout key `K` and the
/// storage backend `S` ([`Alloc`](crate::Alloc) or [`Fixed`](crate::Fixed)).
///
/// # Driving it
///
/// This is the one statement of the driver contract; every driver's docs link here.
///
/// The pool never calls out. Its methods come in four kinds (quinn-proto's split):
///
/// - **getters** read and change nothing: [`stats`](Pool::stats), [`idle`](Pool::idle),
///   [`waiting`](Pool::waiting), [`config`](Pool::config),
///   [`is_warm`](Pool::is_warm), [`is_closed`](Pool::is_closed), [`is_empty`](Pool::is_empty),
///   [`now`](Pool::now), [`has_output`](Pool::has_output),
///   [`dates_connections`](Pool::dates_connections);
/// - **user actions**, plain verbs for what borrowers and the application ask:
///   [`checkout`](Pool::checkout), [`checkin`](Pool::checkin), [`detach`](Pool::detach),
///   [`cancel`](Pool::cancel), [`claim`](Pool::claim), [`resize`](Pool::resize), [`drain`](Pool::drain),
///   [`check_idle`](Pool::check_idle), [`close`](Pool::close);
/// - **driver reports**: [`handle`](Pool::handle) with the [`Completion`] of an [`Io`] the
///   driver performed, and [`handle_timeout`](Pool::handle_timeout) when the deadline came;
/// - **outputs**, one per consumer: [`poll_io`](Pool::poll_io) — [`Io`] to start (open a
///   connection; close, reset, check or vet this one), whose outcome comes back later as a
///   [`Completion`]; [`poll_handoff`](Pool::poll_handoff) — a [`Handoff`] for the queued
///   checkout it names (a grant, a failure, or a wake: the woken checkout calls
///   [`claim`](Pool::claim) when it runs); [`poll_report`](Pool::poll_report) — a [`Report`] for
///   the application (a leaked checkout), which nothing waits on; and
///   [`poll_timeout`](Pool::poll_timeout) — when to call `handle_timeout`.
///
/// Every input takes `now`; the pool's clock only moves forward. The loop a driver runs:
///
/// 1. **act**: feed one input (a user action, a completion, or `handle_timeout` once
///    `poll_timeout` has passed);
/// 2. **drain**: take *every* output of the three queues until each says `None` (in any order
///    of queues: within each, the order is the core's), delivering hand-offs and reports and
///    starting the I/O (the I/O may run later, outside any lock the driver keeps around the pool);
/// 3. **sleep** until `poll_timeout` or the next input, whichever comes first.
///
/// Mutate, then drain: an output's handle is not accepted back before it was drained, and each
/// input is O(1) (amortized) in the pool's size, `poll_timeout` included, so a driver may run the
/// whole loop after every input.
///
/// # Invariants
///
/// Documented here once, recomputed from scratch by `assert_invariants` (feature `testkit`),
/// which the test kit's simulated driver calls after every step:
/// 1. the per-state counts match the slots; occupied slots (opening, idle, in use, resetting,
///    closing) never exceed `max`, except right after a shrinking [`resize`](Pool::resize), when they
///    may exceed it only by connections that existed before it and no open is ordered until they are
///    back under `max`;
/// 2. the idle queue holds each idle slot exactly once, least recently returned first (by return
///    order, so ties in time keep their order; a checked connection goes back to its place);
/// 3. a key has at most one holder (an in-use slot or a waiter), and a slot or waiter at most one key;
/// 4. no checkout waits while a connection is idle — except under [`Fairness::Bounded`], while the
///    oldest waiter has waited less than the bound and the line is not in its strict phase (a
///    waiter served at the bound, none since in under half of it, the line not drained since):
///    then at least as many waiters as there are idle connections (or all those without a vet
///    on their behalf) are woken to claim one — or while every waiter has an idle connection out
///    for a vet on its behalf ([`Config::vet`]; one each at most, and a vetting waiter is never
///    woken). None waits without an open, an idle connection or a check on its way unless the
///    pool is at `max`, backing off after a failed open, or closed; grants go to the oldest
///    waiter, a vetted connection's to the checkout it was vetted for;
/// 5. every connection the core received is in exactly one place: idle inside, with a borrower,
///    or inside an emitted command (reset, check, vet, grant, close) — detached ones have left;
/// 6. after [`close`](Pool::close), no `Open` is emitted, nothing waits, nothing is idle, and every
///    connection that comes back leaves in a `Close` command;
/// 7. each deadline kept in the timer table is the one its definition gives for the current state,
///    so `poll_timeout` is exact and a `handle_timeout` at it acts.
// In declaration order (`repr(C)`): what every hand-off writes first, packed into as few cache
// lines as it fits in (a queued checkout and its grant write the clock, the counters, the timers,
// the line's summary, the waiters' and grants' queues and three counters of the stats); what
// inputs only read, or rarely write, after. Under two threads each line an input writes moves
// between their caches when the lock changes hands.
#[repr(C)]
pub struct Pool<C, K, S: Storage<C, K>> {
    now: Time,
    next_waiter: u64,
    next_seq: u64,
    counts: Counts,
    timers: TimerTable,
    line: Line,
    waiters: S::Waiters,
    grants: S::Grants,
    stats: Stats,
    config: Config,
    closed: bool,
    slots: S::Slots,
    idle: S::Idle,
    io: S::Io,
    fails: S::Fails,
    wakes: S::Wakes,
    leaks: S::Leaks,
    keys: S::Keys,
    /// `max`, raised to the occupied count by a shrinking resize and lowered as connections leave.
    ceiling: usize,
    /// The next [`Slot::idle_seq`].
    idle_seq: u64,
    /// The drain generation: connections opened in an older one are retired when they come back.
    epoch: u32,
    /// Consecutive rounds of failed opens, the current round (each backoff starts a new one), and
    /// when the next open may be tried.
    failures: u32,
    round: u32,
    retry_at: Option<Time>,
    rng: u64,
}

/// What the pool keeps about its line of waiters so that no input has to walk it. Invariant
/// (checked by `assert_invariants`): `fail_fast` counts the queued checkouts that do not wait,
/// `woken` those woken to claim a connection; from the waiter `unsorted_from` on (from the front
/// when `None`), the deadlines of the queued checkouts rise (or stay) in line order, and
/// `last_deadline` is the deadline of the last one queued with a deadline. So once the front is
/// at or past `unsorted_from`, the whole line is in deadline order again.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
struct Line {
    fail_fast: usize,
    woken: usize,
    /// The last waiter queued with a deadline earlier than one queued before it.
    unsorted_from: Option<WaiterId>,
    last_deadline: Option<Time>,
    /// [`Fairness::Bounded`]'s strict phase (Go's starvation mode): a waiter was served after
    /// waiting the bound, and none since in under half of it. Ends too when the line drains
    /// (with the rest of this summary).
    strict: bool,
    /// Waiters with an idle connection out for a vet on their behalf.
    vetting: usize,
}

/// How a connection arrives in a slot, which decides whether the pool keeps it and where.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Arrival {
    /// Just opened.
    Opened,
    /// Back from a borrower, directly or through a reset.
    Returned,
    /// Back from a check of an idle connection.
    Checked,
}

impl<C, K: Eq + Clone, S: Storage<C, K>> Pool<C, K, S> {
    /// A pool with this configuration. The opens for `min` connections are queued at once.
    pub fn new(config: Config) -> Result<Self, Error> {
        let slots = S::Slots::default();
        Config::check_sizes(config.min, config.max, slots.capacity())?;
        if config.min_idle > config.max {
            return Err(Error::MinAboveMax);
        }
        config.check_timing()?;
        let mut pool = Pool {
            ceiling: config.max,
            rng: config.seed | 1,
            config,
            now: Time::ZERO,
            closed: false,
            slots,
            idle: S::Idle::default(),
            waiters: S::Waiters::default(),
            io: S::Io::default(),
            grants: S::Grants::default(),
            fails: S::Fails::default(),
            wakes: S::Wakes::default(),
            leaks: S::Leaks::default(),
            keys: S::Keys::default(),
            counts: Counts::default(),
            timers: TimerTable::default(),
            line: Line::default(),
            next_waiter: 0,
            next_seq: 0,
            idle_seq: 0,
            epoch: 0,
            failures: 0,
            round: 0,
            retry_at: None,
            stats: Stats::default(),
        };
        // `min` is opened now whether or not the pool refills it later.
        while pool.counts.opening() < pool.config.min && pool.order_open() {}
        pool.settle();
        Ok(pool)
    }

    // ---------------------------------------------------------------- user actions: borrowers

    /// A checkout: `key` (psycopg2's `getconn(key)`) and how long it may wait.
    ///
    /// In order: a closed pool refuses ([`Error::Closed`]); a key that holds a connection gets its
    /// lease again ([`Checkout::Held`]); an idle connection is handed over ([`Checkout::Ready`]; one
    /// past its lifetime is closed instead); otherwise the checkout is queued ([`Checkout::Waiting`])
    /// and an open is ordered if there is room, or refused with [`Error::Exhausted`] (no room and
    /// [`Wait::No`]) or [`Error::TooManyWaiters`]. A key that is already waiting is
    /// [`Error::KeyBusy`]. With [`Config::vet`], a checkout an idle connection could serve is
    /// queued too (whatever `max_waiting` and its wait say), and the connection sent for its vet.
    pub fn checkout(
        &mut self,
        now: Time,
        key: Option<K>,
        wait: Wait,
    ) -> Result<Checkout<C>, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        if let Some(k) = &key {
            match self.keys.find(k, self.slots.as_slice(), &self.waiters) {
                Some(Holder::Slot(i)) if !self.slots.as_slice()[usize::from(i)].queued => {
                    return Ok(Checkout::Held(Lease(self.slot_ref(usize::from(i)))));
                }
                Some(_) => return Err(Error::KeyBusy),
                None => {}
            }
        }
        self.advance(now);
        if !self.waiters.is_empty() && !self.idle.is_empty() {
            // A waiter past the fairness bound comes before this newcomer.
            self.serve_starving();
        }
        let out = self.checkout_idle(key, wait);
        self.settle();
        out
    }

    #[inline]
    fn checkout_idle(&mut self, key: Option<K>, wait: Wait) -> Result<Checkout<C>, Error> {
        // With vetting, an idle connection serves a checkout through its vet: it queues for it.
        let for_vet = self.config.vet && !self.idle.is_empty();
        if let Some(i) = (!for_vet).then(|| self.idle_pop_live()).flatten() {
            if let Some(k) = &key {
                self.keys.insert(k, Holder::Slot(slot_u16(i)));
            }
            let Some(conn) = self.take_idle(i, State::InUse(key)) else {
                return Err(Error::Exhausted);
            };
            self.stats.checkouts += 1;
            return Ok(Checkout::Ready {
                lease: Lease(self.slot_ref(i)),
                conn,
            });
        }
        if wait == Wait::No && !for_vet && self.counts.occupied() >= self.config.max {
            return Err(Error::Exhausted);
        }
        // `max_waiting` bounds checkouts that wait; one that will not is queued only for the open
        // it triggers (at most `max` of those), one an idle connection serves only for its vet:
        // only the storage bounds them.
        let bound = match wait {
            _ if for_vet => self.waiter_capacity(),
            Wait::No => self.waiter_capacity(),
            Wait::Until(_) | Wait::Forever => self.waiter_bound(),
        };
        if self.waiters.len() + self.fails.len() >= bound {
            return Err(Error::TooManyWaiters);
        }
        let id = WaiterId(self.next_waiter);
        let waiter = Waiter {
            id,
            deadline: match wait {
                Wait::Until(t) => Some(t),
                Wait::No | Wait::Forever => None,
            },
            fail_fast: wait == Wait::No,
            since: self.now,
            woken: false,
            for_vet,
            vetting: false,
            key,
        };
        if let Some(k) = &waiter.key {
            self.keys.insert(k, Holder::Waiter(id));
        }
        let (deadline, fail_fast) = (waiter.deadline, waiter.fail_fast);
        if let Err(w) = self.waiters.push_back(waiter) {
            self.forget_key(w.key.as_ref());
            return Err(Error::TooManyWaiters);
        }
        self.timers.add(Timer::Wait, deadline);
        if let Some(d) = deadline {
            if self.line.last_deadline.is_some_and(|last| d < last) {
                self.line.unsorted_from = Some(id);
            }
            self.line.last_deadline = Some(d);
        }
        self.line.fail_fast += usize::from(fail_fast);
        self.next_waiter += 1;
        if for_vet {
            if let Some(i) = self.idle_pop_live() {
                self.vet_for_waiter(i, self.waiters.len() - 1);
            }
        }
        // psycopg2 connects on demand: a checkout that will not wait gets its own open at once,
        // backoff or not, and hears if it fails.
        if wait == Wait::No && self.waiters.len() > self.counts.coming() {
            self.order_open();
        }
        Ok(Checkout::Waiting(id))
    }

    /// A checkin (psycopg2's `putconn(conn, key, close)`): the lease, optionally the key to verify,
    /// the connection and its state.
    ///
    /// The key is released. A broken connection or [`Returned::Close`] is closed; a dirty one is sent
    /// for reset; a clean one goes to the oldest waiter, else idle — unless the pool no longer keeps it
    /// (closed, over `max` after a shrink, past its lifetime, opened before a [`drain`](Pool::drain), or
    /// beyond the idle it keeps with [`KeepIdle::UpToMin`]), then it is closed.
    ///
    /// Refused with the connection handed back: a lease this pool never issued
    /// ([`Error::Unkeyed`]), another pool's ([`Error::Foreign`]), one already checked in
    /// ([`Error::AlreadyReturned`]), or a key the connection is not held under
    /// ([`Error::WrongKey`]). After [`close`](Pool::close) the connection is taken and closed, and
    /// the answer is [`Error::Closed`] (psycopg2's behaviour).
    pub fn checkin(
        &mut self,
        now: Time,
        lease: Lease,
        key: Option<&K>,
        conn: C,
        returned: Returned,
    ) -> Result<(), Rejected<C>> {
        let i = match self.lease_slot(lease) {
            Ok(i) => i,
            Err(error) => return Err(Rejected::handing_back(error, conn)),
        };
        if key.is_some() && self.slots.as_slice()[i].key() != key {
            return Err(Rejected::handing_back(Error::WrongKey, conn));
        }
        self.advance(now);
        self.release_key(i);
        if self.closed {
            self.close_conn(i, conn);
            self.settle();
            return Err(Rejected {
                error: Error::Closed,
                conn: None,
            });
        }
        match returned {
            Returned::Clean => self.place(i, conn, Arrival::Returned),
            Returned::Dirty if self.keeps(i, true) => {
                self.stats.resets += 1;
                self.set_state(i, State::Resetting);
                let ticket = Ticket(self.slot_ref(i));
                self.push_io(i, Io::Reset { ticket, conn });
            }
            Returned::Broken => {
                self.stats.broken_returns += 1;
                self.close_conn(i, conn);
            }
            Returned::Dirty if self.outlived(i) => {
                // Not worth a reset: closed for age, as a clean one past its lifetime is.
                self.stats.expired += 1;
                self.close_conn(i, conn);
            }
            Returned::Dirty | Returned::Close => self.close_conn(i, conn),
        }
        self.settle();
        Ok(())
    }

    /// The borrower keeps the connection for good: it leaves the pool (no close command) and its
    /// place is freed, to be refilled if `min` asks. Also after [`close`](Pool::close): a detached
    /// connection is no longer the pool's to close.
    pub fn detach(&mut self, now: Time, lease: Lease) -> Result<(), Error> {
        let i = self.lease_slot(lease)?;
        self.advance(now);
        self.release_key(i);
        self.set_state(i, State::Free);
        self.stats.detached += 1;
        self.settle();
        Ok(())
    }

    /// A queued checkout gives up (its caller went away): it leaves the queue and its outcome will
    /// not be emitted. [`Error::UnknownWaiter`] if it is not waiting (served, failed, or never
    /// queued).
    pub fn cancel(&mut self, now: Time, waiter: WaiterId) -> Result<(), Error> {
        let pos = self.waiter_pos(waiter).ok_or(Error::UnknownWaiter)?;
        self.advance(now);
        if let Some(w) = self.waiters.remove(pos) {
            self.waiter_left(&w);
            self.forget_key(w.key.as_ref());
        }
        self.settle();
        Ok(())
    }

    /// A queued checkout, woken by [`Handoff::Wake`] (or not), tries for an idle connection from
    /// its place in line: [`Checkout::Ready`] if one is idle and no older waiter must be served
    /// first (past the fairness bound, or the line in its strict phase), and the pool does not
    /// [`vet`](Config::vet) connections (then idle ones reach the line by their vets only);
    /// otherwise [`Checkout::Waiting`], still queued in its place (its outcome may then come as
    /// a [`Handoff::Grant`]). [`Error::UnknownWaiter`] if it is not waiting (served, failed, or
    /// cancelled meanwhile: its outcome is among the hand-offs drained).
    pub fn claim(&mut self, now: Time, waiter: WaiterId) -> Result<Checkout<C>, Error> {
        let pos = self.waiter_pos(waiter).ok_or(Error::UnknownWaiter)?;
        self.advance(now);
        let served = if pos == 0 || !self.front_starving() {
            self.claim_idle(pos)
        } else {
            None
        };
        let out = match served {
            Some((lease, conn)) => Checkout::Ready { lease, conn },
            None => {
                if let Some(w) = self.waiters.get_mut(pos) {
                    if core::mem::take(&mut w.woken) {
                        self.line.woken -= 1;
                        self.unwake(waiter);
                    }
                }
                Checkout::Waiting(waiter)
            }
        };
        self.settle();
        Ok(out)
    }

    /// Serves the waiter at `pos` with an idle connection, if one is (closing those past their
    /// lifetime on the way) — with vetting, sends it for a vet on the waiter's behalf instead.
    fn claim_idle(&mut self, pos: usize) -> Option<(Lease, C)> {
        if self.waiters.get(pos).is_some_and(|w| w.vetting) {
            return None;
        }
        let i = self.idle_pop_live()?;
        if self.config.vet {
            self.vet_for_waiter(i, pos);
            return None;
        }
        let conn = self.take_idle(i, State::Resetting)?;
        let (_, lease) = self.serve_waiter(pos, i)?;
        Some((lease, conn))
    }

    // ---------------------------------------------------------------- driver reports

    /// The driver reports the outcome of a command it drained.
    ///
    /// - [`Completion::Opened`]: the connection goes to the oldest waiter, else idle (or is closed
    ///   if the pool was closed or shrunk meanwhile); the open backoff resets.
    /// - [`Completion::OpenFailed`]: the next open waits for the backoff (doubling per round of
    ///   failures — the opens under way together count once — from `backoff_initial` to
    ///   `backoff_max`, shortened by its jitter); the oldest checkout that does not wait
    ///   fails with [`Error::OpenFailed`]; waiting ones keep waiting until their deadline — unless
    ///   the failure is `permanent`: then every queued checkout fails with it at once.
    /// - [`Completion::Reset`] and [`Completion::Checked`]: [`Finished::Ok`] puts the connection
    ///   back in service (a reset one as a clean checkin would; a checked or vetted one goes to
    ///   the oldest waiter, else to its old place among the idle); otherwise it is closed (a
    ///   checked or vetted one counted in [`Stats::stale`]). [`Finished::Abandoned`] is counted in
    ///   [`Stats::abandoned_resets`] or [`Stats::abandoned_checks`].
    /// - [`Completion::Closed`]: its place is free, and may be refilled, whatever the outcome
    ///   ([`Finished::Abandoned`] is counted in [`Stats::abandoned_closes`]).
    ///
    /// A ticket that does not answer a drained command of that kind is [`Error::UnknownTicket`],
    /// and the connection, if any, is handed back: nothing changed.
    pub fn handle(&mut self, now: Time, completion: Completion<C>) -> Result<(), Rejected<C>> {
        let ticket = completion.ticket();
        let stage: fn(&Slot<C, K>) -> bool = match &completion {
            Completion::Opened { .. } | Completion::OpenFailed { .. } => {
                |s| matches!(s.state, State::Opening)
            }
            Completion::Reset { .. } => |s| matches!(s.state, State::Resetting),
            Completion::Checked { .. } => |s| matches!(s.state, State::Checking),
            Completion::Closed { .. } => |s| matches!(s.state, State::Closing),
        };
        let i = match self.ticket_slot(ticket, stage) {
            Ok(i) => i,
            Err(error) => {
                return Err(Rejected {
                    error,
                    conn: completion.into_conn(),
                })
            }
        };
        self.advance(now);
        match completion {
            Completion::Opened { conn, .. } => self.opened(i, conn),
            Completion::OpenFailed { permanent, .. } => self.open_failed(i, permanent),
            Completion::Reset { conn, outcome, .. } => {
                if outcome == Finished::Abandoned {
                    self.stats.abandoned_resets += 1;
                }
                self.back_from_driver(i, conn, outcome.is_ok(), Arrival::Returned)
            }
            Completion::Checked { conn, outcome, .. } => {
                if outcome == Finished::Abandoned {
                    self.stats.abandoned_checks += 1;
                }
                if !outcome.is_ok() {
                    self.stats.stale += 1;
                }
                self.vetted(i, conn, outcome.is_ok())
            }
            Completion::Closed { outcome, .. } => {
                if outcome == Finished::Abandoned {
                    self.stats.abandoned_closes += 1;
                }
                self.set_state(i, State::Free);
            }
        }
        self.settle();
        Ok(())
    }

    fn opened(&mut self, i: usize, conn: C) {
        self.stats.opens += 1;
        self.failures = 0;
        self.retry_at = None;
        let lifetime = self
            .config
            .max_lifetime
            .map(|d| d.saturating_sub(self.jitter()));
        let slot = &mut self.slots.as_mut_slice()[i];
        slot.epoch = self.epoch;
        // A lifetime that would end past the end of `Time` never ends: saturating would make a
        // connection opened at the end of time expire at once, and the pool churn.
        slot.expires = lifetime.and_then(|d| self.now.checked_add(d));
        self.place(i, conn, Arrival::Opened);
    }

    fn open_failed(&mut self, i: usize, permanent: bool) {
        self.set_state(i, State::Free);
        self.stats.open_failures += 1;
        // Opens ordered before the current backoff began were counted with the first of them.
        if self.slots.as_slice()[i].round == self.round {
            self.back_off();
        }
        if self.line.fail_fast > 0 {
            if let Some(pos) = self.waiters.position(|w| w.fail_fast) {
                self.fail_waiter(pos, Error::OpenFailed);
            }
        }
        if permanent {
            while !self.waiters.is_empty() {
                self.fail_waiter(0, Error::OpenFailed);
            }
        }
    }

    /// A new round of backoff: one step more (doubling, up to `backoff_max`), shortened by the
    /// jitter.
    fn back_off(&mut self) {
        self.round = self.round.wrapping_add(1);
        self.failures = self.failures.saturating_add(1);
        let doubled =
            nanos(self.config.backoff_initial).saturating_mul(1 << min(self.failures - 1, 63));
        let mut delay = nanos(self.config.backoff_max).min(doubled);
        if self.config.backoff_jitter {
            delay -= self.random_below(delay / 5 + 1);
        }
        self.retry_at = Some(self.now.saturating_add(Duration::from_nanos(delay)));
    }

    /// A check or vet came back: a vetted connection that passed goes to the checkout it was
    /// vetted for, if that one still waits; otherwise as any checked one (to the oldest waiter,
    /// else its old place among the idle), or closed if it failed (its checkout waits on, and is
    /// vetted for, woken for, or granted the next connection as the rules say).
    fn vetted(&mut self, i: usize, conn: C, ok: bool) {
        let pos = self.slots.as_mut_slice()[i]
            .vet_for
            .take()
            .and_then(|id| self.waiter_pos(id));
        if let Some(w) = pos.and_then(|p| self.waiters.get_mut(p)) {
            w.vetting = false;
            self.line.vetting -= 1;
        }
        match pos {
            Some(p) if ok && self.keeps(i, false) => self.grant(p, i, conn),
            _ => self.back_from_driver(i, conn, ok, Arrival::Checked),
        }
    }

    /// A reset or check came back: in service if `ok`, else closed.
    fn back_from_driver(&mut self, i: usize, conn: C, ok: bool, arrival: Arrival) {
        if ok {
            self.place(i, conn, arrival);
        } else {
            self.close_conn(i, conn);
        }
    }

    /// Time has reached `now` (call it once [`poll_timeout`](Pool::poll_timeout) has passed; at
    /// any other time it is harmless): waiters past their deadline fail with [`Error::Timeout`];
    /// borrowers past `leak_after` are reported ([`Report::Leak`]);
    /// the oldest waiter, past the fairness bound, gets an idle connection nobody claimed;
    /// idle connections past their lifetime, or idle longer than `max_idle` while more than `min`
    /// are open, are closed; opens delayed by backoff are ordered.
    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now);
        let now = self.now;
        let due = |t: Option<Time>| t.is_some_and(|t| t <= now);
        if due(self.timers.get(Timer::Wait)) {
            let mut pos = 0;
            while let Some(w) = self.waiters.get(pos) {
                if w.deadline.is_some_and(|d| d <= self.now) {
                    self.stats.timeouts += 1;
                    self.fail_waiter(pos, Error::Timeout);
                } else {
                    pos += 1;
                }
            }
        }
        if due(self.timers.get(Timer::Lifetime)) || due(self.idle_deadline()) {
            self.expire_idle();
        }
        // Before the leak reports: a connection granted now is a checkout whose leak threshold
        // may be now already (`leak_after` zero, or the end of time), and must not be left due.
        self.serve_starving();
        if due(self.timers.get(Timer::Leak)) {
            self.report_leaks();
        }
        self.settle();
    }

    /// Reports every borrower past `leak_after` not reported yet, in checkout order.
    fn report_leaks(&mut self) {
        loop {
            let now = self.now;
            let slots = self.slots.as_slice();
            let due = (0..slots.len()).filter(|&i| self.leak_deadline(i).is_some_and(|t| t <= now));
            let Some(i) = due.min_by_key(|&i| slots[i].out_seq) else {
                break;
            };
            self.timers.remove(Timer::Leak, self.leak_deadline(i));
            let slot = &mut self.slots.as_mut_slice()[i];
            slot.leak_told = true;
            let since = slot.out_since;
            self.stats.leaks += 1;
            let (seq, lease) = (self.next_seq(), Lease(self.slot_ref(i)));
            let pushed = self.leaks.push_back(Queued {
                seq,
                item: (lease, since),
            });
            debug_assert!(pushed.is_ok(), "leak queue over its bound");
        }
    }

    /// When the borrower of slot `i` passes `leak_after`, if it is in use and not reported yet.
    fn leak_deadline(&self, i: usize) -> Option<Time> {
        let d = self.config.leak_after?;
        let slot = &self.slots.as_slice()[i];
        let lent = matches!(slot.state, State::InUse(_)) && !slot.leak_told;
        lent.then(|| slot.out_since.saturating_add(d))
    }

    /// Closes the idle connections past their lifetime or their `max_idle`.
    fn expire_idle(&mut self) {
        let mut pos = 0;
        while let Some(&i) = self.idle.get(pos) {
            let i = usize::from(i);
            // The same saturating deadline `poll_timeout` reports, so that at the end of time a
            // deadline it reports is one this acts on (no busy loop for the driver).
            let since = self.slots.as_slice()[i].idle_since;
            let idled_out = self
                .config
                .max_idle
                .is_some_and(|d| since.saturating_add(d) <= self.now)
                && self.counts.open() > self.config.min
                && self.counts.idle() > self.config.min_idle;
            if self.outlived(i) || idled_out {
                self.stats.expired += 1;
                self.idle.remove(pos);
                self.timers
                    .remove(Timer::Lifetime, self.slots.as_slice()[i].expires);
                self.close_idle(i);
            } else {
                pos += 1;
            }
        }
    }

    // ---------------------------------------------------------------- user actions: the application

    /// New `min` and `max`. Growing orders opens at once; shrinking closes idle connections (least
    /// recently used first) and in-use ones as they come back, until at most `max` remain.
    pub fn resize(&mut self, now: Time, new_min: usize, new_max: usize) -> Result<(), Error> {
        Config::check_sizes(new_min, new_max, self.slots.capacity())?;
        if self.closed {
            return Err(Error::Closed);
        }
        self.advance(now);
        self.config.min = new_min;
        self.config.max = new_max;
        self.ceiling = max(new_max, self.counts.occupied());
        self.withdraw_opens(|pool| pool.counts.occupied() > pool.config.max);
        for _ in new_max..self.counts.live() {
            let Some(i) = self.idle_pop(IdleOrder::Fifo) else {
                break;
            };
            self.close_idle(i);
        }
        self.settle();
        Ok(())
    }

    /// Retire every connection that exists now (psycopg_pool's `drain`): idle ones are closed at
    /// once, in-use and resetting ones when they come back; the pool stays open and refills.
    pub fn drain(&mut self, now: Time) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.advance(now);
        self.epoch = self.epoch.wrapping_add(1);
        while let Some(i) = self.idle_pop(IdleOrder::Fifo) {
            self.close_idle(i);
        }
        self.settle();
        Ok(())
    }

    /// Send every idle connection out for an [`Io::Check`]; the answers come back as
    /// [`Completion::Checked`]. Returns how many were sent.
    pub fn check_idle(&mut self, now: Time) -> Result<usize, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.advance(now);
        let mut sent = 0;
        while let Some(i) = self.idle_pop(IdleOrder::Fifo) {
            if let Some(conn) = self.take_idle(i, State::Checking) {
                let ticket = Ticket(self.slot_ref(i));
                self.push_io(i, Io::Check { ticket, conn });
                sent += 1;
            }
        }
        self.settle();
        Ok(sent)
    }

    /// Close the pool (psycopg2's `closeall`): refuse new checkouts, fail every waiter with
    /// [`Error::Closed`], close idle connections at once and the others as they come back, cancel
    /// opens not yet drained. A second close is [`Error::Closed`].
    pub fn close(&mut self, now: Time) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.advance(now);
        self.closed = true;
        while !self.waiters.is_empty() {
            self.fail_waiter(0, Error::Closed);
        }
        while let Some(i) = self.idle_pop(IdleOrder::Fifo) {
            self.close_idle(i);
        }
        self.withdraw_opens(|_| true);
        self.settle();
        Ok(())
    }

    // ---------------------------------------------------------------- outputs

    /// The next I/O to start, in the order the core decided it; `None` when there is none.
    #[must_use = "every I/O must be performed: it may carry a connection, or the place of one"]
    #[inline]
    pub fn poll_io(&mut self) -> Option<Io<C>> {
        let io = self.io.pop_front()?;
        let index = usize::from(io.ticket().0.index);
        if let Some(slot) = self.slots.as_mut_slice().get_mut(index) {
            slot.queued = false;
        }
        Some(io)
    }

    /// The next outcome for a queued checkout, in the order the core decided them; `None` when
    /// there is none.
    #[must_use = "every hand-off must be delivered: a connection or a waiter's outcome is in it"]
    #[inline]
    pub fn poll_handoff(&mut self) -> Option<Handoff<C>> {
        // Three queues, one order: the emission sequence. Usually there are grants only.
        if !(self.fails.is_empty() && self.wakes.is_empty()) {
            let seq = |q: Option<u64>| q.unwrap_or(u64::MAX);
            let grant = seq(self.grants.get(0).map(|q| q.seq));
            let fail = seq(self.fails.get(0).map(|q| q.seq));
            let wake = seq(self.wakes.get(0).map(|q| q.seq));
            if wake < grant && wake < fail {
                let waiter = self.wakes.pop_front()?.item;
                return Some(Handoff::Wake { waiter });
            }
            if fail < grant {
                let (waiter, error) = self.fails.pop_front()?.item;
                return Some(Handoff::Fail { waiter, error });
            }
        }
        let grant = self.grants.pop_front()?.item;
        if let Handoff::Grant { lease, .. } = &grant {
            if let Some(slot) = self
                .slots
                .as_mut_slice()
                .get_mut(usize::from(lease.0.index))
            {
                slot.queued = false;
            }
        }
        Some(grant)
    }

    /// The next report for the application; `None` when there is none.
    #[inline]
    pub fn poll_report(&mut self) -> Option<Report> {
        let (lease, since) = self.leaks.pop_front()?.item;
        Some(Report::Leak { lease, since })
    }

    /// Whether any of [`poll_io`](Pool::poll_io), [`poll_handoff`](Pool::poll_handoff) and
    /// [`poll_report`](Pool::poll_report) has something to give: a driver's drain can skip its
    /// setup when not.
    #[inline]
    pub fn has_output(&self) -> bool {
        !(self.io.is_empty()
            && self.grants.is_empty()
            && self.fails.is_empty()
            && self.wakes.is_empty()
            && self.leaks.is_empty())
    }

    /// When the driver must call [`handle_timeout`](Pool::handle_timeout) next: the earliest waiter
    /// deadline, idle expiry, end of an open backoff or fairness bound that matters. `None`: only inputs matter.
    /// O(1): the deadlines are kept as inputs change them, not searched for.
    #[must_use]
    #[inline]
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut next = self.timers.next();
        // Each computed deadline behind the one compare that rules it out on the hot path.
        if self.config.max_idle.is_some() {
            next = min_opt(next, self.idle_deadline());
        }
        if self.retry_at.is_some() {
            next = min_opt(next, self.backoff_deadline());
        }
        if !self.waiters.is_empty() {
            next = min_opt(next, self.starve_deadline());
        }
        next
    }

    /// When the oldest waiter reaches the fairness bound while a connection is idle: then it is
    /// served, whoever else wanted the connection.
    fn starve_deadline(&self) -> Option<Time> {
        let Fairness::Bounded(bound) = self.config.fairness else {
            return None;
        };
        // Nobody to serve: nothing idle, or every waiter has its vet coming.
        if self.idle.is_empty() || self.line.vetting == self.waiters.len() {
            return None;
        }
        Some(self.waiters.get(0)?.since.saturating_add(bound))
    }

    /// When the least recently used idle connection has idled for `max_idle`, while more than
    /// `min` are open. Saturating, so that at the end of time a deadline it reports is one
    /// `handle_timeout` acts on (no busy loop for the driver).
    fn idle_deadline(&self) -> Option<Time> {
        let d = self.config.max_idle?;
        if self.counts.open() <= self.config.min || self.counts.idle() <= self.config.min_idle {
            return None;
        }
        Some(self.slot_at_idle(0)?.idle_since.saturating_add(d))
    }

    /// The end of the open backoff, while an open is wanted and there is room for it.
    fn backoff_deadline(&self) -> Option<Time> {
        self.retry_at
            .filter(|_| self.open_deficit() > 0 && self.has_room())
    }

    // ---------------------------------------------------------------- reading

    /// Gauges and counters.
    pub fn stats(&self) -> Stats {
        Stats {
            size: self.counts.occupied(),
            idle: self.counts.idle(),
            in_use: self.counts.in_use(),
            waiting: self.waiters.len(),
            opening: self.counts.opening(),
            resetting: self.counts.resetting() + self.counts.checking(),
            closing: self.counts.closing(),
            ..self.stats
        }
    }

    /// The configuration in force (after any [`resize`](Pool::resize)).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether [`close`](Pool::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether at least `min` connections are open now (idle, in use, or being reset or checked),
    /// `min_idle` of them idle unless the pool is at `max`: a warm-up wait ends when this turns
    /// true. False once the pool is closed.
    pub fn is_warm(&self) -> bool {
        !self.closed
            && self.counts.open() >= self.config.min
            && (self.counts.idle() >= self.config.min_idle
                || self.counts.occupied() >= self.config.max)
    }

    /// Idle connections now (as [`Stats::idle`], without building the stats).
    #[inline]
    pub fn idle(&self) -> usize {
        self.counts.idle()
    }

    /// Queued checkouts now (as [`Stats::waiting`]).
    #[inline]
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// The pool's clock: the latest `now` given with an input it accepted.
    #[inline]
    pub fn now(&self) -> Time {
        self.now
    }

    /// Whether the pool dates its connections and borrowers: only with `max_lifetime`,
    /// `max_idle` or `leak_after`. When it does not, the time of a checkout an idle connection
    /// serves at once and of a checkin nobody waits for changes nothing (no waiter's deadline or
    /// wait, no lifetime, idle time or leak threshold counts from it): a driver may give these
    /// inputs the pool's own time, [`now`](Pool::now), and read no clock. Any input that may queue
    /// or serve a queued checkout needs the time.
    #[inline]
    pub fn dates_connections(&self) -> bool {
        let c = &self.config;
        c.max_lifetime.is_some() || c.max_idle.is_some() || c.leak_after.is_some()
    }

    /// Whether the pool still holds anything: nothing occupied, nothing to drain. After close, the
    /// driver is done when this is true.
    pub fn is_empty(&self) -> bool {
        self.counts.occupied() == 0
            && self.io.is_empty()
            && self.grants.is_empty()
            && self.fails.is_empty()
            && self.wakes.is_empty()
    }

    /// The most slots this pool's storage can hold.
    #[cfg(feature = "testkit")]
    pub(crate) fn storage_capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// The most slots storage `S` can hold.
    #[cfg(feature = "testkit")]
    pub(crate) fn capacity_for() -> usize {
        S::Slots::default().capacity()
    }

    // ---------------------------------------------------------------- the rules' helpers

    /// The pool's clock never goes back: an earlier `now` is taken as the latest one seen. Inputs
    /// call this only once their arguments are accepted: a refused input changes nothing, not even
    /// the clock (which would otherwise pass a deadline without the pool acting on it).
    #[inline]
    fn advance(&mut self, now: Time) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Order the opens that `min` and the waiters call for, as far as room and backoff allow, then
    /// re-arm the deadlines. When there is nothing to do — no open wanted, nobody waiting, no
    /// deadline to find anew: every input on the hot path — this is a few compares, inline.
    ///
    /// Under load — checkouts waiting, nothing idle, the pool at `max`, none that will not
    /// wait — no rule but the timers' can act (nothing to serve, open, fail or wake): only the
    /// timers are re-armed.
    #[inline]
    fn settle(&mut self) {
        if self.waiters.is_empty() {
            if self.timers.any_stale() || self.open_deficit() > 0 {
                self.settle_slow();
            }
        } else if self.idle.is_empty() && self.line.fail_fast == 0 && !self.has_room() {
            self.rearm();
        } else {
            self.settle_slow();
        }
    }

    /// Each rule below is gated by a compare or two, so that an input while checkouts wait (all of
    /// them, under load) pays only for the rules that act.
    #[inline(never)]
    fn settle_slow(&mut self) {
        if !self.idle.is_empty() {
            self.serve_starving();
        }
        // At `max` (the usual state under load) no open is ordered: `order_open` needs room.
        if self.has_room() && self.open_deficit() > 0 && self.retry_at.is_none_or(|t| self.now >= t)
        {
            while self.open_deficit() > 0 && self.order_open() {}
        }
        // A checkout that would not wait, whose open went to an older waiter, with no room for
        // another: exhausted after all, as psycopg2 would have said at once.
        if self.line.fail_fast > 0 && !self.has_room() {
            // Those the opens in flight, the idle connections and the checks will not serve: a
            // vet serves the waiter it is for; the rest serve the oldest of the others.
            let mut unbound = self.counts.coming() - self.line.vetting;
            let mut pos = 0;
            while let Some(w) = self.waiters.get(pos) {
                if w.vetting || unbound > 0 {
                    unbound -= usize::from(!w.vetting);
                    pos += 1;
                } else if w.fail_fast {
                    self.fail_waiter(pos, Error::Exhausted);
                } else {
                    pos += 1;
                }
            }
        }
        if self.line.woken < min(self.idle.len(), self.waiters.len() - self.line.vetting) {
            self.wake_claimers();
        }
        self.rearm();
    }

    /// Brings the timer table up to date (invariant 7): a kept minimum is searched for only when
    /// the entry that set it left.
    ///
    /// The usual case, inline: only the waiters' minimum is stale (the oldest waiter left) and the
    /// line is in deadline order, so the new minimum is the new oldest waiter's deadline.
    #[inline]
    fn rearm(&mut self) {
        if !self.timers.any_stale() {
            return;
        }
        if self.timers.only_stale(Timer::Wait) && self.line.unsorted_from.is_none() {
            match self.waiters.get(0) {
                None => return self.timers.rearmed(Timer::Wait, None),
                Some(w) if w.deadline.is_some() => {
                    return self.timers.rearmed(Timer::Wait, w.deadline);
                }
                Some(_) => {}
            }
        }
        self.rearm_stale();
    }

    #[inline(never)]
    fn rearm_stale(&mut self) {
        if self.timers.take_stale(Timer::Wait) {
            let mut deadlines =
                (0..self.waiters.len()).filter_map(|p| self.waiters.get(p)?.deadline);
            // In line order the deadlines usually rise (every checkout waits as long): then the
            // first is the earliest, and finding it costs nothing. One queued out of order makes
            // the line unsorted only until it reaches the front.
            let front = self.waiters.get(0).map(|w| w.id);
            if self.line.unsorted_from.is_some_and(|u| front >= Some(u)) {
                self.line.unsorted_from = None;
            }
            let earliest = if self.line.unsorted_from.is_none() {
                deadlines.next()
            } else {
                deadlines.min()
            };
            self.timers.set(Timer::Wait, earliest);
        }
        if self.timers.take_stale(Timer::Lifetime) {
            let ends = (0..self.idle.len()).filter_map(|p| self.slot_at_idle(p)?.expires);
            self.timers.set(Timer::Lifetime, ends.min());
        }
        if self.timers.take_stale(Timer::Leak) {
            let dues = (0..self.slots.as_slice().len()).filter_map(|i| self.leak_deadline(i));
            self.timers.set(Timer::Leak, dues.min());
        }
    }

    /// Opens wanted: up to `min` (when the pool refills), and one per waiter without an open on its
    /// way or an idle connection to claim — plus `min_idle` spare ones beyond the waiters' (when
    /// the pool refills).
    #[inline]
    fn open_deficit(&self) -> usize {
        if self.closed {
            return 0;
        }
        if !self.config.refill {
            return self.waiters.len().saturating_sub(self.counts.coming());
        }
        let wanted = self.waiters.len() + self.config.min_idle;
        let size = self.counts.open() + self.counts.opening();
        max(
            self.config.min.saturating_sub(size),
            wanted.saturating_sub(self.counts.coming()),
        )
    }

    #[inline]
    fn has_room(&self) -> bool {
        self.counts.occupied() < self.config.max
    }

    /// Take back opens not yet drained, newest first, while `more` says so: the driver never saw
    /// them, so no connection is lost.
    fn withdraw_opens(&mut self, more: fn(&Self) -> bool) {
        let mut pos = self.io.len();
        while pos > 0 && more(self) {
            pos -= 1;
            if let Some(Io::Open(t)) = self.io.get(pos) {
                let i = usize::from(t.0.index);
                self.io.remove(pos);
                self.slots.as_mut_slice()[i].queued = false;
                self.set_state(i, State::Free);
            }
        }
    }

    /// Take a free slot (growing the slot array up to `max`) and queue its `Open`.
    fn order_open(&mut self) -> bool {
        if !self.has_room() {
            return false;
        }
        let free = self
            .slots
            .as_slice()
            .iter()
            .position(|s| matches!(s.state, State::Free));
        let i = match free {
            Some(i) => i,
            None => {
                if self.slots.push(Slot::free()).is_err() {
                    return false;
                }
                self.counts.add(State::<C, K>::FREE);
                self.slots.as_slice().len() - 1
            }
        };
        self.set_state(i, State::Opening);
        self.slots.as_mut_slice()[i].round = self.round;
        let ticket = Ticket(self.slot_ref(i));
        self.push_io(i, Io::Open(ticket));
        true
    }

    /// Where a connection arriving in slot `i` goes (opened, returned clean, reset): closed if the
    /// pool does not keep it, else to the oldest waiter, else idle.
    #[inline(always)]
    fn place(&mut self, i: usize, conn: C, arrival: Arrival) {
        if !self.keeps(i, arrival == Arrival::Returned) {
            if self.outlived(i) {
                self.stats.expired += 1;
            }
            self.close_conn(i, conn);
        } else if !self.waiters.is_empty()
            && (arrival != Arrival::Returned || self.front_starving())
        {
            self.grant(0, i, conn);
        } else if arrival == Arrival::Checked {
            // A check is not a use: the connection keeps its idle time and its place in the order.
            self.set_state(i, State::Idle(conn));
            let seq = self.slots.as_slice()[i].idle_seq;
            let slots = self.slots.as_slice();
            let pos = self
                .idle
                .position(|&j| slots[usize::from(j)].idle_seq > seq)
                .unwrap_or(self.idle.len());
            let _ = self.idle.insert(pos, slot_u16(i));
            self.timers
                .add(Timer::Lifetime, self.slots.as_slice()[i].expires);
        } else {
            self.set_state(i, State::Idle(conn));
            let slot = &mut self.slots.as_mut_slice()[i];
            slot.idle_since = self.now;
            slot.idle_seq = self.idle_seq;
            self.idle_seq += 1;
            let _ = self.idle.push_back(slot_u16(i));
            self.timers
                .add(Timer::Lifetime, self.slots.as_slice()[i].expires);
        }
    }

    /// THE GRANT RULE's other half: whether there is an oldest waiter who must be served before
    /// anyone else ([`Fairness::Strict`]: always; [`Fairness::Bounded`]: once it waited the bound,
    /// or while the line is in its strict phase, see [`note_wait`](Self::note_wait)).
    #[inline]
    fn front_starving(&self) -> bool {
        self.waiters
            .get(0)
            .is_some_and(|w| match self.config.fairness {
                Fairness::Strict => true,
                Fairness::Bounded(bound) => {
                    self.line.strict || w.since.saturating_add(bound) <= self.now
                }
            })
    }

    /// Under [`Fairness::Bounded`], the wait of a waiter just served sets the phase of the line it
    /// leaves (Go's `sync.Mutex` starvation mode): served at the bound, the line turns strict —
    /// were running checkouts to go first again, they would push each waiter behind it to the
    /// bound too, woken to claim in vain until then; served in under half the bound, it is no
    /// longer strict — a line that moves that fast would, with running checkouts first, leave
    /// fewer than half the checkouts queued, served at the bound. A line that drains starts over
    /// (`waiter_left`).
    #[inline]
    fn note_wait(&mut self, waited: Duration) {
        if let Fairness::Bounded(bound) = self.config.fairness {
            if waited >= bound {
                self.line.strict = !self.waiters.is_empty();
            } else if waited < bound / 2 {
                self.line.strict = false;
            }
        }
    }

    /// Gives the connection of slot `i` (taken out of it) to the waiter at `pos` — the oldest,
    /// or the one it was vetted for — by a grant.
    fn grant(&mut self, pos: usize, i: usize, conn: C) {
        let Some((waiter, lease)) = self.serve_waiter(pos, i) else {
            return debug_assert!(false, "grant without a waiter");
        };
        {
            let seq = self.next_seq();
            self.slots.as_mut_slice()[i].queued = true;
            let grant = Handoff::Grant {
                waiter,
                lease,
                conn,
            };
            let pushed = self.grants.push_back(Queued { seq, item: grant });
            debug_assert!(pushed.is_ok(), "grant queue over its bound");
        }
    }

    /// The waiter at `pos` leaves the line with slot `i`, now in use under its key: its id and
    /// the lease.
    #[inline]
    fn serve_waiter(&mut self, pos: usize, i: usize) -> Option<(WaiterId, Lease)> {
        let w = self.waiters.remove(pos)?;
        self.waiter_left(&w);
        let waited = self.now.saturating_since(w.since);
        self.note_wait(waited);
        if let Some(k) = &w.key {
            self.keys.insert(k, Holder::Slot(slot_u16(i)));
        }
        self.set_state(i, State::InUse(w.key));
        self.stats.checkouts += 1;
        self.stats.waits += 1;
        self.stats.wait_time += waited;
        Some((w.id, Lease(self.slot_ref(i))))
    }

    /// Idle connections go to the oldest waiters while the oldest must be served first (with
    /// vetting: out for a vet on behalf of each, oldest first, skipping those with one already).
    fn serve_starving(&mut self) {
        while !self.idle.is_empty() && self.front_starving() {
            let Some(pos) = self.first_unvetted() else {
                break;
            };
            let Some(i) = self.idle_pop_live() else {
                break;
            };
            if self.config.vet {
                self.vet_for_waiter(i, pos);
            } else if let Some(conn) = self.take_idle(i, State::Resetting) {
                self.grant(pos, i, conn);
            }
        }
    }

    /// The oldest waiter without a vet on its behalf (without vetting: the oldest).
    fn first_unvetted(&self) -> Option<usize> {
        if self.line.vetting == 0 {
            return (!self.waiters.is_empty()).then_some(0);
        }
        self.waiters.position(|w| !w.vetting)
    }

    /// Sends idle slot `i` (out of the idle queue) for a vet on behalf of the waiter at `pos`:
    /// if it passes and the waiter still waits, it is that waiter's. Its wake, if any, is used.
    fn vet_for_waiter(&mut self, i: usize, pos: usize) {
        let Some(conn) = self.take_idle(i, State::Checking) else {
            return;
        };
        let Some(w) = self.waiters.get_mut(pos) else {
            // Cannot happen (the callers name a waiter in line): checked as any connection.
            debug_assert!(false, "a vet for nobody");
            let ticket = Ticket(self.slot_ref(i));
            return self.push_io(i, Io::Check { ticket, conn });
        };
        let id = w.id;
        w.vetting = true;
        if core::mem::take(&mut w.woken) {
            self.line.woken -= 1;
            self.unwake(id);
        }
        self.line.vetting += 1;
        self.stats.vets += 1;
        self.slots.as_mut_slice()[i].vet_for = Some(id);
        let ticket = Ticket(self.slot_ref(i));
        self.push_io(i, Io::Vet { ticket, conn });
    }

    /// Wakes waiters, oldest first, until as many are woken as connections are idle (or all
    /// those without a vet on their behalf).
    fn wake_claimers(&mut self) {
        let want = min(self.idle.len(), self.waiters.len() - self.line.vetting);
        let mut pos = 0;
        while self.line.woken < want {
            let Some(w) = self.waiters.get_mut(pos) else {
                break;
            };
            pos += 1;
            if w.woken || w.vetting {
                continue;
            }
            w.woken = true;
            let waiter = w.id;
            self.line.woken += 1;
            let seq = self.next_seq();
            let pushed = self.wakes.push_back(Queued { seq, item: waiter });
            debug_assert!(pushed.is_ok(), "wake queue over its bound");
        }
    }

    /// Takes back the undrained wake of `waiter`, if any: it was served, failed or claimed first.
    fn unwake(&mut self, waiter: WaiterId) {
        if let Some(p) = self.wakes.position(|q| q.item == waiter) {
            self.wakes.remove(p);
        }
    }

    /// Whether the pool keeps the connection in slot `i`. `returned`: it comes back from a borrower,
    /// so psycopg2's "keep only up to `min` idle" applies when configured.
    #[inline]
    fn keeps(&self, i: usize, returned: bool) -> bool {
        let slot = &self.slots.as_slice()[i];
        let wanted = || {
            !returned
                || self.config.keep_idle == KeepIdle::UpToMax
                || !self.waiters.is_empty()
                || self.counts.idle() < self.config.min
        };
        // Below the shrink ceiling nothing is over `max`: the count is needed only after a shrink.
        let within_max =
            || self.ceiling == self.config.max || self.counts.live() <= self.config.max;
        !self.closed
            && slot.epoch == self.epoch
            && slot.expires.is_none_or(|t| t > self.now)
            && within_max()
            && wanted()
    }

    #[inline(always)]
    fn outlived(&self, i: usize) -> bool {
        self.slots.as_slice()[i]
            .expires
            .is_some_and(|t| t <= self.now)
    }

    /// The next idle slot in the idle order, out of the queue, closing those past their lifetime
    /// on the way.
    #[inline(always)]
    fn idle_pop_live(&mut self) -> Option<usize> {
        while let Some(i) = self.idle_pop(self.config.idle_order) {
            if !self.outlived(i) {
                return Some(i);
            }
            self.stats.expired += 1;
            self.close_idle(i);
        }
        None
    }

    /// Takes the most (`Lifo`) or least (`Fifo`) recently returned idle slot out of the queue.
    #[inline(always)]
    fn idle_pop(&mut self, end: IdleOrder) -> Option<usize> {
        let i = usize::from(match end {
            IdleOrder::Lifo => self.idle.pop_back(),
            IdleOrder::Fifo => self.idle.pop_front(),
        }?);
        self.timers
            .remove(Timer::Lifetime, self.slots.as_slice()[i].expires);
        Some(i)
    }

    #[inline]
    fn slot_at_idle(&self, pos: usize) -> Option<&Slot<C, K>> {
        self.slots.as_slice().get(usize::from(*self.idle.get(pos)?))
    }

    /// Move idle slot `i` (already out of the idle queue) to `next`, giving back its connection.
    #[inline(always)]
    fn take_idle(&mut self, i: usize, next: State<C, K>) -> Option<C> {
        if !matches!(self.slots.as_slice()[i].state, State::Idle(_)) {
            debug_assert!(false, "idle queue points at slot {i}, which is not idle");
            return None;
        }
        match self.set_state(i, next) {
            State::Idle(conn) => Some(conn),
            _ => None,
        }
    }

    fn close_idle(&mut self, i: usize) {
        if let Some(conn) = self.take_idle(i, State::Resetting) {
            self.close_conn(i, conn);
        }
    }

    fn close_conn(&mut self, i: usize, conn: C) {
        self.set_state(i, State::Closing);
        self.stats.closes += 1;
        let ticket = Ticket(self.slot_ref(i));
        self.push_io(i, Io::Close { ticket, conn });
    }

    fn fail_waiter(&mut self, pos: usize, error: Error) {
        if let Some(w) = self.waiters.remove(pos) {
            self.waiter_left(&w);
            self.forget_key(w.key.as_ref());
            let seq = self.next_seq();
            let pushed = self.fails.push_back(Queued {
                seq,
                item: (w.id, error),
            });
            debug_assert!(pushed.is_ok(), "fail queue over its bound");
        }
    }

    #[inline]
    /// A waiter left the line (served, failed or cancelled): the line's summary follows.
    fn waiter_left(&mut self, w: &Waiter<K>) {
        self.timers.remove(Timer::Wait, w.deadline);
        self.line.fail_fast -= usize::from(w.fail_fast);
        if w.woken {
            self.line.woken -= 1;
            self.unwake(w.id);
        }
        self.line.vetting -= usize::from(w.vetting);
        if self.waiters.is_empty() {
            self.line = Line::default();
        }
    }

    /// Where a waiter stands in line: ids rise in arrival order, so a binary search finds it.
    fn waiter_pos(&self, id: WaiterId) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.waiters.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.waiters.get(mid)?.id.cmp(&id) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    fn release_key(&mut self, i: usize) {
        if let State::InUse(key) = &mut self.slots.as_mut_slice()[i].state {
            if let Some(k) = key.take() {
                self.keys.remove(&k);
            }
        }
    }

    fn forget_key(&mut self, key: Option<&K>) {
        if let Some(k) = key {
            self.keys.remove(k);
        }
    }

    /// The one place a slot changes state: counts follow, the generation moves on (so every handle
    /// for the old state goes stale), and the shrink ceiling comes down as connections leave.
    #[inline(always)]
    fn set_state(&mut self, i: usize, state: State<C, K>) -> State<C, K> {
        if self.config.leak_after.is_some() {
            self.leak_watch(i, &state);
        }
        let slot = &mut self.slots.as_mut_slice()[i];
        let old = core::mem::replace(&mut slot.state, state);
        slot.gen = slot.gen.wrapping_add(1);
        self.counts.moved(old.stage(), slot.state.stage());
        if self.ceiling > self.config.max {
            self.ceiling = max(self.config.max, min(self.ceiling, self.counts.occupied()));
        }
        old
    }

    /// Slot `i` moves to `next`: a checkout starts the leak clock; the end of one stops it and
    /// takes back its undrained report (its lease goes stale).
    #[cold]
    #[inline(never)]
    fn leak_watch(&mut self, i: usize, next: &State<C, K>) {
        if let Some(due) = self.leak_deadline(i) {
            self.timers.remove(Timer::Leak, Some(due));
        }
        if !self.leaks.is_empty() {
            if let Some(p) = self.leaks.position(|q| usize::from(q.item.0 .0.index) == i) {
                self.leaks.remove(p);
            }
        }
        let slot = &mut self.slots.as_mut_slice()[i];
        slot.leak_told = false;
        if matches!(next, State::InUse(_)) {
            slot.out_since = self.now;
            slot.out_seq = self.next_seq;
            self.next_seq += 1;
            let due = self.config.leak_after.map(|d| self.now.saturating_add(d));
            self.timers.add(Timer::Leak, due);
        }
    }

    fn push_io(&mut self, i: usize, io: Io<C>) {
        self.slots.as_mut_slice()[i].queued = true;
        let pushed = self.io.push_back(io);
        debug_assert!(pushed.is_ok(), "I/O queue over its bound");
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn waiter_bound(&self) -> usize {
        min(self.config.max_waiting, self.waiter_capacity())
    }

    fn waiter_capacity(&self) -> usize {
        min(self.waiters.capacity(), self.fails.capacity())
    }

    #[inline]
    fn slot_ref(&self, i: usize) -> SlotRef {
        SlotRef {
            tag: self.config.tag,
            index: slot_u16(i),
            gen: self.slots.as_slice()[i].gen,
        }
    }

    #[inline]
    fn lease_slot(&self, lease: Lease) -> Result<usize, Error> {
        let r = lease.0;
        if r.tag != self.config.tag {
            return Err(Error::Foreign);
        }
        let i = usize::from(r.index);
        let slot = self.slots.as_slice().get(i).ok_or(Error::Unkeyed)?;
        if slot.gen == r.gen && !slot.queued && matches!(slot.state, State::InUse(_)) {
            Ok(i)
        } else if r.gen < slot.gen {
            Err(Error::AlreadyReturned)
        } else {
            Err(Error::Unkeyed)
        }
    }

    fn ticket_slot(&self, ticket: Ticket, stage: fn(&Slot<C, K>) -> bool) -> Result<usize, Error> {
        let r = ticket.0;
        let i = usize::from(r.index);
        match self.slots.as_slice().get(i) {
            Some(s) if r.tag == self.config.tag && s.gen == r.gen && !s.queued && stage(s) => Ok(i),
            _ => Err(Error::UnknownTicket),
        }
    }

    /// A pseudo-random part of `lifetime_jitter`.
    fn jitter(&mut self) -> Duration {
        let span = nanos(self.config.lifetime_jitter);
        // `span + 1` overflows for a jitter of `Duration::MAX`: then every value is in range.
        Duration::from_nanos(self.random_below(span.wrapping_add(1)))
    }

    /// A pseudo-random number below `bound` (any, for 0: the whole range), by xorshift64 from
    /// the configured seed.
    fn random_below(&mut self, bound: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng.checked_rem(bound).unwrap_or(self.rng)
    }
}

fn slot_u16(i: usize) -> u16 {
    // Slot counts are bounded by `max`, which `Config::check_sizes` keeps within u16.
    u16::try_from(i).unwrap_or(u16::MAX)
}

#[cfg(feature = "testkit")]
mod invariants;
