//! The async pool's running state: the kit's engine behind one mutex (parking_lot's, never held
//! across an await), the table of queued checkouts beside it, I/O on tasks, the maintenance task,
//! and a queued checkout's future ([`Pending`]).
//!
//! Every input to the core and the drain of its outputs share one critical section; grants,
//! failures and wakes are taken there for the queued checkouts (in the core's order): an outcome
//! is left in its checkout's slot, under the lock, and its task is woken after the lock is
//! released (it takes the outcome from its slot without the pool's lock), where the I/O is
//! spawned as tasks. A woken checkout claims its connection itself, when it runs, so a task
//! already running may take a returned connection first (the core's bounded fairness). Each task
//! reports its completion under the lock, with a new drain.

use crate::internals::{Drained, Entry, OutcomeOf, Rest, Served, Slot, SPARE_SLOTS};
use crate::{Connector, CoreError, GetError};
use parking_lot::{Mutex, MutexGuard};
use sanspool_core::{AllocPool, Checkout, Completion, Io, Lease, Returned, Time, Wait, WaiterId};
use sanspool_kit::{Delivery, Done, Engine, Granted, Outputs, Settings, Waiters};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long the build waits for `min` connections when checkouts do not wait (psycopg2 mode).
pub(crate) const WARM_UP_BOUND: Duration = Duration::from_secs(30);
/// The least the build waits for `min` connections (a checkout timeout of milliseconds says how
/// long a borrower may queue, not how long a server may take to accept).
pub(crate) const WARM_UP_LEAST: Duration = Duration::from_secs(1);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

/// What tasks share: the settings, the state behind its lock, the runtime.
pub(crate) struct Shared<M: Connector> {
    pub(crate) settings: Settings<M>,
    pub(crate) state: Mutex<State<M>>,
    pub(crate) runtime: Handle,
    /// Wakes the maintenance task when the next deadline moves earlier, or at the end.
    pub(crate) wake: Arc<Notify>,
    pub(crate) stopped: AtomicBool,
    /// Notified after drains while someone waits for the pool to be warm.
    pub(crate) changed: Notify,
}

/// Aligned to a cache line of its own, so that the lock's word is alone on the line before it:
/// a task spinning for the lock then does not pull away, line by line, what the holder writes.
#[repr(align(64))]
pub(crate) struct State<M: Connector> {
    pub(crate) engine: Engine<M::Conn, M::Error, ()>,
    /// Queued checkouts' slots, by waiter id, while they are in line.
    pub(crate) waiters: Waiters<Arc<Slot<M>>>,
    /// Slots to reuse.
    pub(crate) spare: Vec<Arc<Slot<M>>>,
    /// The deadline the maintenance task sleeps until.
    pub(crate) alarm: Option<Time>,
    /// Futures in `wait_ready` or the build's warm-up.
    pub(crate) ready_waiters: usize,
}

impl<M: Connector> State<M> {
    pub(crate) fn new(engine: Engine<M::Conn, M::Error, ()>) -> Self {
        State {
            engine,
            waiters: Waiters::new(),
            spare: Vec::new(),
            alarm: None,
            ready_waiters: 0,
        }
    }

    /// Keeps a slot its checkout is done with, for the next checkout that queues.
    fn keep(&mut self, slot: Arc<Slot<M>>) {
        if self.spare.len() < SPARE_SLOTS {
            self.spare.push(slot);
        }
    }
}

/// A drain's destination: settled outcomes go into their checkouts' slots, wakes spend their
/// wakers, the tasks to wake and the I/O are kept for after unlock.
struct Sink<'a, M: Connector> {
    waiters: &'a mut Waiters<Arc<Slot<M>>>,
    out: &'a mut Drained<M::Conn>,
}

impl<M: Connector> Outputs<M::Conn, M::Error> for Sink<'_, M> {
    fn io(&mut self, io: Io<M::Conn>) {
        self.out.rest().io.push(io);
    }

    fn deliver(
        &mut self,
        waiter: WaiterId,
        delivery: Delivery<M::Conn, M::Error>,
    ) -> Option<Granted<M::Conn>> {
        match delivery {
            // Settled: out of the table, the outcome in its slot, its task woken to take it (a
            // woken one is awake already, and will find it there).
            Delivery::Outcome(outcome) => {
                let Some(slot) = self.waiters.remove(waiter) else {
                    return outcome.ok();
                };
                let mut entry = slot.0.lock();
                if let Entry::Queued(Some(waker)) =
                    std::mem::replace(&mut *entry, Entry::Settled(outcome))
                {
                    self.out.wake(waker);
                }
            }
            // A wake spends the waker; the checkout stays in line until it claims.
            Delivery::Wake => {
                if let Some(slot) = self.waiters.get_mut(waiter) {
                    let mut entry = slot.0.lock();
                    if let Entry::Queued(waker) = &mut *entry {
                        let waker = waker.take();
                        *entry = Entry::Woken;
                        if let Some(waker) = waker {
                            self.out.wake(waker);
                        }
                    }
                }
            }
        }
        None
    }
}

impl<M: Connector> Shared<M> {
    /// Takes every output: outcomes are left in their checkouts' slots (under the lock) and the
    /// tasks to wake are collected, the maintenance task is rearmed; the rest is done by
    /// [`finish`](Self::finish) after unlock.
    pub(crate) fn drain(&self, st: &mut State<M>) -> Drained<M::Conn> {
        let mut out = Drained::none();
        let State {
            engine, waiters, ..
        } = st;
        // Most inputs under load leave nothing to drain but a grant or none.
        if engine.core.has_output() {
            engine.drain(&mut Sink {
                waiters,
                out: &mut out,
            });
        }
        // A vet tried on the spot reports at once, and that report's drain rearms: a checkout
        // queued only for its vet wakes no maintenance task. One spawned after all rearms first
        // (`run`).
        let vet_at_once = out.rest.as_ref().is_some_and(|rest| {
            rest.io.iter().any(|io| matches!(io, Io::Vet { .. })) && self.settings.vets_at_once()
        });
        if !vet_at_once {
            self.rearm(st);
        }
        if st.ready_waiters > 0 {
            self.changed.notify_waiters();
        }
        out
    }

    /// Wakes the maintenance task if the core's next deadline is earlier than its alarm.
    fn rearm(&self, st: &mut State<M>) {
        let next = st.engine.core.poll_timeout();
        if sanspool_kit::sooner(next, st.alarm) {
            st.alarm = next;
            self.wake.notify_one();
        }
    }

    /// After unlock: wakes the drained checkouts' tasks, in the core's order, and spawns the I/O.
    pub(crate) fn finish(self: &Arc<Self>, out: Drained<M::Conn>) {
        let Drained { first, rest } = out;
        if let Some(waker) = first {
            waker.wake();
        }
        if let Some(rest) = rest {
            self.finish_rest(*rest);
        }
    }

    /// The rest of [`finish`](Self::finish): more wakes, and the I/O.
    #[inline(never)]
    fn finish_rest(self: &Arc<Self>, rest: Rest<M::Conn>) {
        for waker in rest.more {
            waker.wake();
        }
        self.run(rest.io);
    }

    /// A checkout: a connection, or a place in line (a slot; its future leaves its task's waker
    /// there when first polled).
    ///
    /// The clock is read before the lock (a contended lock's holder should not be reading
    /// clocks), and the deadline is taken from the pool's latest time if that is later: two
    /// checkouts racing for the lock then still queue with their deadlines in line order, the
    /// order the core's timer table finds the earliest in at once (out of order, the core
    /// searches the line whenever its front leaves).
    pub(crate) fn attempt(
        self: &Arc<Self>,
        waker: &Waker,
    ) -> Result<Got<'_, M>, GetError<M::Error>> {
        let now = self.settings.clock.now();
        let mut st = lock(&self.state);
        let start = now.max(st.engine.core.now());
        let wait = Wait::within(start, self.settings.timeout);
        let got = match st.engine.core.checkout(now, None, wait) {
            Err(e) => Err(st.engine.error(e)),
            Ok(Checkout::Ready { lease, conn }) => Ok(Got::Ready(lease, conn)),
            Ok(Checkout::Waiting(id)) => {
                // Queued with nothing to start (the usual case under load: it waits for a
                // return), it leaves its task's waker now, so a grant drained from now on wakes
                // it and its first poll has nothing to look at. With I/O to start (an open, or a
                // vet on its behalf, which may pass at once, before the lock is released
                // again), it leaves none: its first poll looks, and may find its connection
                // there without a wake. A spare slot is the pool's alone: set without locking it.
                let registered = !st.engine.core.has_output();
                let entry = Entry::Queued(registered.then(|| waker.clone()));
                let slot = match st.spare.pop() {
                    Some(mut slot) => match Arc::get_mut(&mut slot) {
                        Some(only) => {
                            *only.0.get_mut() = entry;
                            slot
                        }
                        None => Arc::new(Slot(Mutex::new(entry))),
                    },
                    None => Arc::new(Slot(Mutex::new(entry))),
                };
                st.waiters.insert(id, Arc::clone(&slot));
                Ok(Got::Waiting(Pending {
                    shared: self,
                    id,
                    slot: Some(slot),
                    registered,
                }))
            }
            // Only keyed checkouts are held, and this pool has no keys.
            Ok(Checkout::Held(_)) => Err(GetError::KeyBusy),
        };
        let out = self.drain(&mut st);
        drop(st);
        self.finish(out);
        got
    }

    /// Spawns each command's I/O as a task of its own — but a vet the probe decides, which
    /// costs a look at a socket: that is done here.
    pub(crate) fn run(self: &Arc<Self>, io: Vec<Io<M::Conn>>) {
        for cmd in io {
            match self.settings.perform_at_once(cmd) {
                Ok(done) => self.report(done),
                Err(cmd) => {
                    if matches!(cmd, Io::Vet { .. }) {
                        // The drain left the alarm for this vet's report: it comes later.
                        self.rearm(&mut lock(&self.state));
                    }
                    drop(self.spawn(cmd))
                }
            }
        }
    }

    /// Spawns one command's I/O and its report; the task says whether it was a failed check.
    /// A task, not the caller's future: dropped mid-way, the caller would lose the connection.
    pub(crate) fn spawn(self: &Arc<Self>, cmd: Io<M::Conn>) -> JoinHandle<bool> {
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            let done = shared.settings.perform(cmd).await;
            let failed = matches!(done.0, Completion::Checked { outcome, .. } if !outcome.is_ok());
            shared.report(done);
            failed
        })
    }

    /// Reports a performed command, with its drain; starts what follows.
    fn report(self: &Arc<Self>, done: Done<M::Conn, M::Error>) {
        let mut st = lock(&self.state);
        let refused = st.engine.report(self.settings.clock.now(), done);
        let out = self.drain(&mut st);
        drop(st);
        if let Some(conn) = refused {
            self.discard(conn);
        }
        self.finish(out);
    }

    /// Closes, on a task, a connection the core does not take.
    pub(crate) fn discard(self: &Arc<Self>, conn: M::Conn) {
        let shared = Arc::clone(self);
        self.runtime
            .spawn(async move { shared.settings.close(conn).await });
    }

    /// One input to the core, with its drain and I/O.
    pub(crate) fn input<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut AllocPool<M::Conn, ()>, Time) -> Result<T, CoreError>,
    ) -> Result<T, CoreError> {
        let mut st = lock(&self.state);
        let now = self.settings.clock.now();
        let result = f(&mut st.engine.core, now);
        let out = self.drain(&mut st);
        drop(st);
        self.finish(out);
        result
    }

    /// A guard's connection back, with the slot its checkout queued in (if it did), to reuse.
    pub(crate) fn checkin(
        self: &Arc<Self>,
        lease: Lease,
        conn: M::Conn,
        returned: Returned,
        slot: Option<Arc<Slot<M>>>,
    ) {
        let now = self.settings.clock.now();
        let mut st = lock(&self.state);
        if let Some(slot) = slot {
            st.keep(slot);
        }
        let back = st.engine.core.checkin(now, lease, None, conn, returned);
        let out = self.drain(&mut st);
        drop(st);
        // After a close the core takes the connection and closes it itself; a refused one
        // (cannot happen: the guard's lease is this pool's) is closed here.
        if let Err(sanspool_core::Rejected { conn: Some(c), .. }) = back {
            self.discard(c);
        }
        self.finish(out);
    }

    /// The maintenance task's work: time the core forward; returns when to come back.
    fn tick(self: &Arc<Self>) -> Option<Instant> {
        let mut st = lock(&self.state);
        let now = self.settings.clock.now();
        if st.engine.core.poll_timeout().is_some_and(|t| t <= now) {
            st.engine.core.handle_timeout(now);
        }
        let out = self.drain(&mut st);
        let next = st.engine.core.poll_timeout();
        st.alarm = next;
        drop(st);
        self.finish(out);
        next.and_then(|t| self.settings.clock.instant(t))
    }

    /// Waits until `done` says the pool is ready (or failed), or `deadline` passes.
    pub(crate) async fn wait_until<T>(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&State<M>) -> Option<T>,
    ) -> Option<T> {
        loop {
            let mut changed = pin!(self.changed.notified());
            // Registered before the state is read, so a drain in between is not missed.
            changed.as_mut().enable();
            {
                let mut st = lock(&self.state);
                if let Some(out) = done(&st) {
                    return Some(out);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return None;
                }
                st.ready_waiters += 1;
            }
            // Counted off even if this future is dropped while it waits.
            let _counted = Counted(&self.state);
            match deadline {
                Some(d) => {
                    let _ = tokio::time::timeout_at(d.into(), changed).await;
                }
                None => changed.await,
            }
        }
    }
}

/// One future in `wait_until`, counted so that drains notify only when someone waits.
struct Counted<'a, M: Connector>(&'a Mutex<State<M>>);

impl<M: Connector> Drop for Counted<'_, M> {
    fn drop(&mut self) {
        lock(self.0).ready_waiters -= 1;
    }
}

/// The maintenance task: sleeps until the core's next deadline, or until woken because it moved
/// earlier; holds the pool only weakly.
pub(crate) async fn maintain<M: Connector>(pool: Weak<Shared<M>>, wake: Arc<Notify>) {
    loop {
        let next = match pool.upgrade() {
            Some(s) if !s.stopped.load(Ordering::Acquire) => s.tick(),
            _ => return,
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// A queued checkout's claim on its outcome, awaited by its `get()`. No timer of its own: the
/// core times the waiter out at its deadline, through the maintenance task, which sleeps until
/// the core's next deadline — one timer for the pool, not one per waiting checkout. Dropped
/// before the outcome was taken (the `get()` future was dropped), it cancels the waiter through
/// the core, or gives back the connection that was granted to it meanwhile.
pub(crate) struct Pending<'a, M: Connector> {
    shared: &'a Arc<Shared<M>>,
    id: WaiterId,
    /// `None` once the outcome was taken (nothing to undo).
    slot: Option<Arc<Slot<M>>>,
    /// The slot holds the waker of the poll that queued the checkout: `get()` polls this future
    /// first in that same poll, which then has nothing to look at (an outcome settled since the
    /// checkout queued woke the task, which polls again).
    registered: bool,
}

impl<M: Connector> Future for Pending<'_, M> {
    type Output = Served<M>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Served<M>> {
        if std::mem::take(&mut self.registered) {
            return Poll::Pending;
        }
        self.look(cx)
    }
}

impl<M: Connector> Pending<'_, M> {
    /// Looks at the checkout's slot: takes its outcome, claims if woken, or waits on.
    fn look(&mut self, cx: &mut Context<'_>) -> Poll<Served<M>> {
        let Some(slot) = self.slot.as_ref() else {
            debug_assert!(false, "polled after its outcome");
            return Poll::Pending;
        };
        {
            let mut entry = slot.0.lock();
            if let Some(outcome) = entry.take_settled() {
                drop(entry);
                return Poll::Ready(self.served(outcome));
            }
            match &mut *entry {
                Entry::Queued(Some(waker)) => {
                    if !waker.will_wake(cx.waker()) {
                        waker.clone_from(cx.waker());
                    }
                    return Poll::Pending;
                }
                Entry::Queued(waker) => {
                    *waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Entry::Woken => {}
                // Cannot happen: only this future takes the outcome, and then it is done.
                Entry::Settled(_) | Entry::Done => {
                    debug_assert!(false, "a queued checkout without its outcome");
                    drop(entry);
                    return Poll::Ready(self.served(Err(GetError::Closed)));
                }
            }
        }
        self.claim(cx)
    }

    /// Woken: claims an idle connection from the checkout's place in line; if a running checkout
    /// took it first, queued again in the same place (same id, same deadline).
    fn claim(&mut self, cx: &mut Context<'_>) -> Poll<Served<M>> {
        let s = self.shared;
        let Some(slot) = self.slot.as_ref() else {
            return Poll::Pending;
        };
        let mut st = lock(&s.state);
        let mut entry = slot.0.lock();
        // Settled since the look (a grant or a failure): nothing to claim.
        if let Some(outcome) = entry.take_settled() {
            drop((entry, st));
            return Poll::Ready(self.served(outcome));
        }
        let now = s.settings.clock.now();
        let got = match st.engine.core.claim(now, self.id) {
            Ok(Checkout::Ready { lease, conn }) => {
                st.waiters.remove(self.id);
                *entry = Entry::Done;
                Some(Ok(Granted { lease, conn }))
            }
            Ok(Checkout::Waiting(_)) => {
                // In the slot before the drain, which may wake it again at once.
                *entry = Entry::Queued(Some(cx.waker().clone()));
                None
            }
            // Cannot happen: an outcome drained while woken is left in the slot, and only this
            // future cancels its waiter.
            Ok(Checkout::Held(_)) | Err(_) => {
                debug_assert!(false, "a woken checkout that is neither queued nor settled");
                st.waiters.remove(self.id);
                *entry = Entry::Done;
                Some(Err(GetError::Closed))
            }
        };
        drop(entry);
        let out = s.drain(&mut st);
        drop(st);
        s.finish(out);
        match got {
            Some(outcome) => Poll::Ready(self.served(outcome)),
            None => Poll::Pending,
        }
    }

    /// The outcome, with the slot to give back (nothing left to undo).
    fn served(&mut self, outcome: OutcomeOf<M>) -> Served<M> {
        let slot = self.slot.take().expect("taken once");
        (outcome, slot)
    }
}

impl<M: Connector> Drop for Pending<'_, M> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let s = &self.shared;
        let mut st = lock(&s.state);
        let now = s.settings.clock.now();
        let entry = std::mem::replace(&mut *slot.0.lock(), Entry::Done);
        let granted = match entry {
            // Still in line, woken or not: its wake (if undrained) leaves the core with it.
            Entry::Queued(_) | Entry::Woken => {
                st.waiters.remove(self.id);
                let _ = st.engine.core.cancel(now, self.id);
                None
            }
            Entry::Settled(outcome) => outcome.ok(),
            Entry::Done => None,
        };
        st.keep(slot);
        if let Some(Granted {
            lease, mut conn, ..
        }) = granted
        {
            let returned = s.settings.judge(&mut conn, false);
            if let Err(sanspool_core::Rejected { conn: Some(c), .. }) =
                st.engine.core.checkin(now, lease, None, conn, returned)
            {
                let shared = Arc::clone(s);
                s.runtime
                    .spawn(async move { shared.settings.close(c).await });
            }
        }
        let out = s.drain(&mut st);
        drop(st);
        s.finish(out);
    }
}

pub(crate) enum Got<'a, M: Connector> {
    Ready(Lease, M::Conn),
    Waiting(Pending<'a, M>),
}
