//! The running pool every public pool type is a handle to: the [`Engine`] behind one mutex and
//! the parked checkouts — every input to the core, with its drain. How the I/O that follows
//! runs is the `io` submodule's.
//!
//! Nothing slow ever runs under the mutex: an input and the drain of the commands it caused share
//! one critical section, the I/O runs after it. How it runs is the one difference between the pools:
//! - on threads (the threaded and persistent pools): each open, reset, check and close on an I/O
//!   thread of its own, so neither a checkout an idle connection can serve, a borrower giving a
//!   connection back, nor the maintenance thread waits on it; on a thread that is exiting nothing
//!   runs and no connection is dropped — the maintenance thread takes the work;
//! - inline (the simple pool): on the caller's thread, at once, with no background thread; a
//!   checkout never waits (nobody else could give a connection back), and time-driven upkeep runs
//!   on each use or at `maintain`.
//!
//! A queued checkout parks on its own [`Parking`] slot; a returned connection goes to the oldest
//! waiter by the core's grant, straight into that slot.

use crate::driver::{self, Engine, Outcome, Settings};
use crate::maintenance::Maintenance;
use crate::parking::{Parking, Woke};
use crate::{Connector, CoreError, GetError, Key};

mod io;
use parking_lot::{Condvar, Mutex, MutexGuard};
use sanspool_core::{Checkout, Io, Lease, Rejected, Returned, Stats, Time, Wait, WaiterId};
use sanspool_kit::{Delivery, Granted, Observed, Outputs, Waiters};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct Shared<M: Connector, K: Key> {
    pub(crate) settings: Settings<M>,
    /// parking_lot's mutex, as r2d2's: it spins a little before it parks and is not poisoned (every
    /// input is one call on the core, which a panic cannot leave half done). Measured against
    /// std's: `docs/tuning.md`.
    state: Mutex<State<M, K>>,
    /// Notified after every drain: `wait_ready` waits on it.
    changed: Condvar,
    /// `None`: the I/O runs inline and nothing runs in the background.
    maintenance: Option<Maintenance>,
}

struct State<M: Connector, K: Key> {
    engine: Engine<M, K>,
    /// Queued checkouts, each parked on its own slot.
    parked: Waiters<Parked<M>>,
    /// The deadline the maintenance thread sleeps until.
    alarm: Option<Time>,
    /// I/O that came up on a thread that is exiting — no thread may be spawned there, and no
    /// connection may be used or dropped (a blocking client's runtime is gone, and a panic in a
    /// thread-local destructor aborts the process): the maintenance thread performs it.
    deferred: Vec<Io<M::Conn>>,
    /// Connections to close, handed over by an exiting thread.
    strays: Vec<M::Conn>,
    /// Threads in `wait_ready`.
    ready_waiters: usize,
}

type Parked<M> = Arc<Parking<<M as Connector>::Conn, <M as Connector>::Error>>;

/// A checkout's result: a connection, or the lease of the checkout that already holds its key
/// (for psycopg2's "same key, same connection").
pub(crate) enum Checked<M: Connector> {
    Conn(Lease, M::Conn),
    Held(Lease),
}

enum Got<M: Connector> {
    Ready(Lease, M::Conn),
    Held(Lease),
    Waiting(WaiterId, Parked<M>),
}

impl<M: Connector, K: Key> Shared<M, K> {
    /// The running pool over `engine`; with `threads`, the maintenance thread is started.
    pub(crate) fn start(settings: Settings<M>, engine: Engine<M, K>, threads: bool) -> Arc<Self> {
        let shared = Arc::new(Shared {
            settings,
            state: Mutex::new(State {
                engine,
                parked: Waiters::new(),
                alarm: None,
                deferred: Vec::new(),
                strays: Vec::new(),
                ready_waiters: 0,
            }),
            changed: Condvar::new(),
            maintenance: threads.then(Maintenance::new),
        });
        if let Some(m) = &shared.maintenance {
            m.start(Arc::downgrade(&shared), |s: &Arc<Self>| s.tick());
        }
        shared
    }

    /// Runs the opens the build ordered and waits, up to `bound`, for `min` connections. Without
    /// `retry` (psycopg2's way) the first failed open is the error; with it (r2d2's) the core
    /// retries failed opens with backoff, and only a permanent failure or a panic ends the wait
    /// early. A connect that hangs cannot hang the build.
    pub(crate) fn warm_up(
        self: &Arc<Self>,
        bound: Duration,
        retry: bool,
    ) -> Result<(), GetError<M::Error>> {
        let deadline = Instant::now().checked_add(bound);
        let tasks = self.drain(&mut self.state.lock());
        self.run(tasks);
        let mut st = self.state.lock();
        loop {
            if st.engine.core.is_warm() {
                return Ok(());
            }
            let failed = if retry {
                st.engine.hopeless_failure()
            } else {
                st.engine.open_failure()
            };
            if let Some(failed) = failed {
                return Err(failed);
            }
            st = match self.wait_changed(st, deadline) {
                Some(st) => st,
                None => return Err(self.state.lock().engine.error(CoreError::Timeout)),
            };
        }
    }

    /// Waits until at least `min` connections are open.
    pub(crate) fn wait_ready(&self, timeout: Duration) -> Result<(), GetError<M::Error>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = self.state.lock();
        loop {
            let core = &st.engine.core;
            if core.is_closed() {
                return Err(GetError::Closed);
            }
            if core.is_warm() {
                return Ok(());
            }
            st = match self.wait_changed(st, deadline) {
                Some(st) => st,
                None => return Err(self.state.lock().engine.error(CoreError::Timeout)),
            };
        }
    }

    /// Sleeps until a drain or `deadline`; `None` (the lock released) once it passed.
    fn wait_changed<'a>(
        &self,
        mut st: MutexGuard<'a, State<M, K>>,
        deadline: Option<Instant>,
    ) -> Option<MutexGuard<'a, State<M, K>>> {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        // Counted, so that drains notify only when someone waits here.
        st.ready_waiters += 1;
        match deadline {
            Some(d) => {
                let _ = self.changed.wait_until(&mut st, d);
            }
            None => self.changed.wait(&mut st),
        }
        st.ready_waiters -= 1;
        Some(st)
    }

    pub(crate) fn stats(&self) -> Stats {
        self.state.lock().engine.core.stats()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().engine.core.is_closed()
    }

    /// Closes the pool: idle connections close now, checked-out ones when they come back,
    /// waiting checkouts fail; the maintenance thread is joined. Does not wait for the closes:
    /// [`wait_closed`](Self::wait_closed) does.
    pub(crate) fn close(self: &Arc<Self>) -> Result<(), CoreError> {
        let mut st = self.state.lock();
        let now = self.settings.clock.now();
        st.engine.core.close(now)?;
        let mut io = Self::cancel_deferred_opens(&mut st, now);
        let strays = std::mem::take(&mut st.strays);
        io.extend(self.drain(&mut st));
        drop(st);
        for conn in strays {
            self.discard(conn);
        }
        self.run(io);
        self.stop_maintenance();
        Ok(())
    }

    /// After a close: waits until no connection the pool holds is left to close — none idle,
    /// being reset (a reset connection comes back to be closed) or being closed. Each of those
    /// closes is bounded by the connector, so this is too. I/O handed over by exiting threads
    /// meanwhile (the maintenance thread that would take it is stopped) runs from here. Inline,
    /// the closes ran already; on a thread that is exiting none may start here, so it does not
    /// wait (the pool's drop closes what is left).
    pub(crate) fn wait_closed(self: &Arc<Self>) {
        if self.maintenance.is_none() || self.hand_over() {
            return;
        }
        let mut st = self.state.lock();
        loop {
            if !st.deferred.is_empty() || !st.strays.is_empty() {
                let io = Self::cancel_deferred_opens(&mut st, self.settings.clock.now());
                let strays = std::mem::take(&mut st.strays);
                drop(st);
                for conn in strays {
                    self.discard(conn);
                }
                self.run(io);
                st = self.state.lock();
                continue;
            }
            let stats = st.engine.core.stats();
            if stats.resetting + stats.closing == 0 {
                return;
            }
            st = match self.wait_changed(st, None) {
                Some(st) => st,
                None => return,
            };
        }
    }

    pub(crate) fn stop_maintenance(&self) {
        if let Some(m) = &self.maintenance {
            m.stop();
        }
    }

    /// Checks every idle connection on this thread (its caller asked for the answers); returns
    /// how many failed.
    pub(crate) fn check(self: &Arc<Self>) -> Result<usize, CoreError> {
        let mut st = self.state.lock();
        st.engine.core.check_idle(self.settings.clock.now())?;
        let tasks = self.drain(&mut st);
        drop(st);
        Ok(self.run_here(tasks))
    }

    /// Takes every queued command under the lock: outcomes go to their parked checkouts, the
    /// maintenance thread is rearmed, `wait_ready` woken; the I/O is returned to run after unlock.
    #[inline(always)]
    fn drain(&self, st: &mut State<M, K>) -> VecDeque<Io<M::Conn>> {
        let tasks = if st.engine.core.has_output() {
            self.drain_commands(st)
        } else {
            VecDeque::new()
        };
        // A vet tried on the spot reports at once, and that report's drain rearms: a checkout
        // queued only for its vet wakes no maintenance thread (a context switch per checkout).
        // A vet that goes to a thread after all rearms first (`start_io`).
        let vet_at_once = !tasks.is_empty()
            && self.settings.vets_at_once()
            && tasks.iter().any(|t| matches!(t, Io::Vet { .. }));
        if !vet_at_once {
            self.rearm(st);
        }
        // A notify is a syscall even with nobody waiting: only for `wait_ready` callers.
        if st.ready_waiters > 0 {
            self.changed.notify_all();
        }
        tasks
    }

    /// Wakes the maintenance thread if the core's next deadline is earlier than its alarm.
    #[inline(always)]
    fn rearm(&self, st: &mut State<M, K>) {
        if let Some(m) = &self.maintenance {
            let next = st.engine.core.poll_timeout();
            m.rearm(&mut st.alarm, next);
        }
    }

    /// [`drain`](Self::drain)'s outputs, when there are some.
    #[inline(never)]
    fn drain_commands(&self, st: &mut State<M, K>) -> VecDeque<Io<M::Conn>> {
        let mut tasks = VecDeque::new();
        let State { engine, parked, .. } = st;
        engine.drain(&mut Sink::<M> {
            tasks: &mut tasks,
            parked,
        });
        tasks
    }

    /// One input to the core, with its drain and I/O.
    pub(crate) fn input(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Engine<M, K>, Time) -> Result<(), CoreError>,
    ) -> Result<(), CoreError> {
        let mut st = self.state.lock();
        let result = f(&mut st.engine, self.settings.clock.now());
        let tasks = self.drain(&mut st);
        drop(st);
        self.run(tasks);
        result
    }

    /// A checkout: an idle connection, the lease holding the key already, or a wait for a grant
    /// up to `timeout` (`None`: no wait) — the grant of a vetted idle connection included (the
    /// core's rule: a vet runs while the checkout waits, within its deadline).
    pub(crate) fn checkout(
        self: &Arc<Self>,
        key: Option<K>,
        timeout: Option<Duration>,
    ) -> Result<Checked<M>, GetError<M::Error>> {
        let mut st = self.state.lock();
        let core = &st.engine.core;
        // Served at once, a checkout needs no time if the pool dates nothing; one that may queue
        // reads the clock, for its deadline and the fairness bound.
        let now = if core.idle() > 0 && core.waiting() == 0 && !core.config().vet {
            self.served_at_once(core)
        } else {
            self.settings.clock.now()
        };
        // From the pool's latest time at least.
        let wait = Wait::within(now.max(core.now()), timeout);
        let got = match st.engine.core.checkout(now, key, wait) {
            Err(e) => Err(st.engine.error(e)),
            Ok(Checkout::Held(lease)) => Ok(Got::<M>::Held(lease)),
            Ok(Checkout::Ready { lease, conn }) => Ok(Got::Ready(lease, conn)),
            Ok(Checkout::Waiting(id)) => {
                let parking = Parking::for_this_thread();
                st.parked.insert(id, Arc::clone(&parking));
                Ok(Got::Waiting(id, parking))
            }
        };
        let tasks = self.drain(&mut st);
        drop(st);
        self.run(tasks);
        match got? {
            Got::Held(lease) => Ok(Checked::Held(lease)),
            Got::Ready(lease, conn) => Ok(Checked::Conn(lease, conn)),
            Got::Waiting(id, parking) => self.queued(id, parking, wait),
        }
    }

    /// A queued checkout: waits for its outcome (off the path of one served at once).
    #[inline(never)]
    fn queued(
        self: &Arc<Self>,
        id: WaiterId,
        parking: Parked<M>,
        wait: Wait,
    ) -> Result<Checked<M>, GetError<M::Error>> {
        let outcome = self.wait_for(id, &parking, self.settings.clock.deadline(wait));
        Parking::keep_for_this_thread(parking);
        let Granted { lease, conn } = outcome?;
        Ok(Checked::Conn(lease, conn))
    }

    /// Waits on the parking slot (inline, the I/O already ran: the outcome is there). At the
    /// deadline the waiter is timed out through the core, under the lock: if a grant was
    /// delivered just before, it is taken instead.
    fn wait_for(
        self: &Arc<Self>,
        id: WaiterId,
        parking: &Parking<M::Conn, M::Error>,
        deadline: Option<Instant>,
    ) -> Outcome<M::Conn, M::Error> {
        let inline = self.maintenance.is_none();
        loop {
            let delivered = if inline {
                parking.take().map(Woke::Outcome)
            } else {
                parking.wait(deadline)
            };
            match delivered {
                Some(Woke::Outcome(outcome)) => return outcome,
                Some(Woke::Claim) => {
                    if let Some(outcome) = self.claim(id, parking) {
                        return outcome;
                    }
                }
                None => break,
            }
        }
        let mut st = self.state.lock();
        let now = self.settings.clock.now();
        if parking.is_empty() && !inline {
            st.engine.core.handle_timeout(now);
        }
        let mut tasks = self.drain(&mut st);
        let outcome = match parking.take() {
            Some(outcome) => outcome,
            None => {
                // Not timed out by the core (the sleep ended a moment early on the pool's clock,
                // see `Clock`), or inline, not granted (cannot happen: its open ran inline).
                // Give up the wait.
                let _ = st.engine.core.cancel(now, id);
                st.parked.remove(id);
                tasks.extend(self.drain(&mut st));
                Err(if inline {
                    GetError::Exhausted
                } else {
                    st.engine.error(CoreError::Timeout)
                })
            }
        };
        drop(st);
        self.run(tasks);
        outcome
    }

    /// A woken checkout claims an idle connection from its place in line: the outcome, or
    /// `None` if a running checkout took it first (it waits on, in its place).
    fn claim(
        self: &Arc<Self>,
        id: WaiterId,
        parking: &Parking<M::Conn, M::Error>,
    ) -> Option<Outcome<M::Conn, M::Error>> {
        let mut st = self.state.lock();
        let now = self.settings.clock.now();
        let served = match st.engine.core.claim(now, id) {
            Ok(Checkout::Ready { lease, conn }) => {
                st.parked.remove(id);
                Some(Ok(Granted { lease, conn }))
            }
            // Still waiting (a running checkout took it first), or served or failed meanwhile:
            // then its outcome is delivered by this drain at the latest.
            _ => None,
        };
        let tasks = self.drain(&mut st);
        let outcome = served.or_else(|| parking.take());
        drop(st);
        self.run(tasks);
        outcome
    }

    /// The time of an input the core serves at once: the clock if the pool dates its
    /// connections, else the pool's own time (no clock read).
    #[inline]
    fn served_at_once(&self, core: &Observed<M::Conn, K>) -> Time {
        if core.dates_connections() {
            self.settings.clock.now()
        } else {
            core.now()
        }
    }

    /// A checkin, with its drain and I/O.
    pub(crate) fn checkin(
        self: &Arc<Self>,
        lease: Lease,
        key: Option<&K>,
        conn: M::Conn,
        returned: Returned,
    ) -> Result<(), Rejected<M::Conn>> {
        let mut st = self.state.lock();
        // Nobody waits: the time only dates the idle connection, if the pool dates anything.
        let now = if st.engine.core.waiting() == 0 {
            self.served_at_once(&st.engine.core)
        } else {
            self.settings.clock.now()
        };
        let result = st.engine.core.checkin(now, lease, key, conn, returned);
        let tasks = self.drain(&mut st);
        drop(st);
        self.run(tasks);
        result
    }

    /// A guard's connection given back: judged with [`Connector::state`], or closed if `close`.
    pub(crate) fn give_back(
        self: &Arc<Self>,
        lease: Lease,
        key: Option<&K>,
        mut conn: M::Conn,
        close: bool,
    ) {
        let returned = self.settings.judge(&mut conn, close);
        self.give_back_as(lease, key, conn, returned);
    }

    /// A connection given back as `returned`.
    pub(crate) fn give_back_as(
        self: &Arc<Self>,
        lease: Lease,
        key: Option<&K>,
        conn: M::Conn,
        returned: Returned,
    ) {
        if let Err(Rejected { conn: Some(c), .. }) = self.checkin(lease, key, conn, returned) {
            self.discard(c);
        }
    }

    /// A guard's connection kept by its borrower for good.
    pub(crate) fn detach(self: &Arc<Self>, lease: Lease) {
        let _ = self.input(|engine, now| engine.core.detach(now, lease));
    }

    /// The maintenance thread's work (inline: `maintain`'s): time the core forward, start deferred
    /// opens, run the I/O. Returns when it is next due.
    pub(crate) fn tick(self: &Arc<Self>) -> Option<Instant> {
        let mut st = self.state.lock();
        let now = self.settings.clock.now();
        if st.engine.core.poll_timeout().is_some_and(|t| t <= now) {
            st.engine.core.handle_timeout(now);
        }
        let (opens, mut io) = Self::split_deferred(&mut st);
        let strays = std::mem::take(&mut st.strays);
        io.extend(self.drain(&mut st));
        let next = st.engine.core.poll_timeout();
        st.alarm = next;
        drop(st);
        for conn in strays {
            driver::close(&self.settings, conn);
        }
        for ticket in opens {
            self.spawn_io(Io::Open(ticket));
        }
        self.run(io);
        next.and_then(|t| self.settings.clock.instant(t))
    }

    /// How long until the core's next deadline; `None`: nothing is scheduled.
    pub(crate) fn next_due(&self) -> Option<Duration> {
        let next = self.state.lock().engine.core.poll_timeout()?;
        Some(next.saturating_since(self.settings.clock.now()))
    }
}

/// A drain's destination: the I/O is kept for after unlock; outcomes go to their parked
/// checkouts' slots, wakes rouse them.
struct Sink<'a, M: Connector> {
    tasks: &'a mut VecDeque<Io<M::Conn>>,
    parked: &'a mut Waiters<Parked<M>>,
}

impl<M: Connector> Outputs<M::Conn, M::Error> for Sink<'_, M> {
    fn io(&mut self, io: Io<M::Conn>) {
        self.tasks.push_back(io);
    }

    fn deliver(
        &mut self,
        waiter: WaiterId,
        delivery: Delivery<M::Conn, M::Error>,
    ) -> Option<Granted<M::Conn>> {
        match delivery {
            Delivery::Outcome(outcome) => match self.parked.remove(waiter) {
                Some(parking) => parking.deliver(outcome),
                None => return outcome.ok(),
            },
            // The woken checkout claims when it runs: meanwhile a running one may take it.
            Delivery::Wake => {
                if let Some(parking) = self.parked.get(waiter) {
                    parking.wake();
                }
            }
        }
        None
    }
}

impl<M: Connector, K: Key> Drop for Shared<M, K> {
    fn drop(&mut self) {
        self.stop_maintenance();
        let st = self.state.get_mut();
        let io = Self::cancel_deferred_opens(st, self.settings.clock.now());
        for conn in st.strays.drain(..) {
            driver::close(&self.settings, conn);
        }
        driver::shut_down(&mut st.engine, &self.settings, io);
    }
}
