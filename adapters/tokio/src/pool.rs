//! The async pool: the core behind one mutex, queued checkouts in a table beside it, I/O on tasks.
//!
//! Every input to the core and the drain of the commands it caused share one critical section;
//! grants, failures and wakes are taken there for the queued checkouts (in the core's order):
//! an outcome is left in its checkout's slot, under the lock, and its task is woken after the
//! lock is released (it takes the outcome from its slot without the pool's lock), where the I/O
//! commands (open, close, reset, check) are spawned as tasks. A woken checkout claims its
//! connection itself, when it runs, so a task already running may take a returned connection
//! first (the core's bounded fairness).
//! Each task reports its completion under the lock, with a new drain. No lock is held across an
//! await.

use crate::error::Failure;
use crate::{Connector, PoolError};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::{Mutex, MutexGuard};
use sanspool_core::{
    AllocPool, Checkout, Completion, Config, Finished, Handoff, Io, Lease, Returned, Stats, Time,
    Wait, WaiterId,
};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// An async hook run on a connection: after it is opened, or before it is reused.
pub(crate) type Hook<M> = Box<
    dyn for<'a> Fn(
            &'a mut <M as Connector>::Conn,
        ) -> BoxFuture<'a, Result<(), <M as Connector>::Error>>
        + Send
        + Sync,
>;

/// What a queued checkout receives: the lease, the connection and whether it was opened for this
/// very checkout (then it needs no vetting), or why it failed.
type Outcome<C, E> = Result<(Lease, C, bool), PoolError<E>>;
type OutcomeOf<M> = Outcome<<M as Connector>::Conn, <M as Connector>::Error>;

/// Where a queued checkout stands, in its [`Slot`]. Changed by the pool under its lock (then the
/// slot's), or by the checkout's own future under the slot's lock alone: to take its outcome, or
/// to leave a newer waker.
enum Entry<M: Connector> {
    /// In line: the waker of the task awaiting it (`None` until its future's first poll leaves
    /// it: a waker is cloned there, not under the pool's lock).
    Queued(Option<Waker>),
    /// Woken ([`Handoff::Wake`]), its waker spent: it will lock the pool and claim.
    Woken,
    /// Served or failed: the outcome waits here for its task (woken when it was settled).
    Settled(OutcomeOf<M>),
    /// The outcome was taken (or the slot is spare).
    Done,
}

impl<M: Connector> Entry<M> {
    /// The outcome, if settled (the entry is then done).
    fn take_settled(&mut self) -> Option<OutcomeOf<M>> {
        if !matches!(self, Entry::Settled(_)) {
            return None;
        }
        match std::mem::replace(self, Entry::Done) {
            Entry::Settled(outcome) => Some(outcome),
            _ => None,
        }
    }
}

/// A queued checkout's cell, shared by its `get()` future and, while the checkout is in line, the
/// pool's table. A settled outcome is left here, so the woken task takes it without the pool's
/// lock (which two threads would otherwise contend for three times per queued checkout), and
/// the future finds it here if it is dropped instead: nothing the pool hands out is in flight
/// outside a lock. Slots are reused (the guard of a checkout that queued brings its slot back to
/// the pool at checkin): a queued checkout allocates nothing once the pool is warm.
struct Slot<M: Connector>(Mutex<Entry<M>>);

/// Spare slots the pool keeps at most (more waiters than this at once allocate the rest).
const SPARE_SLOTS: usize = 256;

/// What a queued checkout's future gives: its outcome, and its slot to give back.
type Served<M> = (OutcomeOf<M>, Arc<Slot<M>>);

/// The queued checkouts, by waiter id. Ids are the core's arrival numbers, so the table is a
/// deque indexed from the oldest id it holds: a checkout queues at the back and is served (in
/// `Strict` order) from the front, without hashing; a settled checkout leaves it at once (its
/// outcome waits in its slot). A checkout that left out of order leaves a gap (`None`) until the
/// front passes it. A checkout that stays in line while many later ones come and go (with a
/// fairness bound, younger woken checkouts may claim before it) would hold the front back and
/// let the gaps pile up behind it: once the deque is mostly gaps, such entries move to a map of
/// their own, so the table stays as large as the checkouts in it.
struct Waiters<V> {
    /// The id of `entries[0]`.
    base: u64,
    entries: VecDeque<Option<V>>,
    /// How many of `entries` are not gaps.
    live: usize,
    /// Entries older than `base`, moved out of the deque's front.
    stragglers: HashMap<u64, V>,
}

/// Below this length the deque is never compacted, whatever its gaps.
const COMPACT_FROM: usize = 64;

impl<V> Waiters<V> {
    fn new() -> Self {
        Waiters {
            base: 0,
            entries: VecDeque::new(),
            live: 0,
            stragglers: HashMap::new(),
        }
    }

    fn insert(&mut self, id: WaiterId, entry: V) {
        let id = id.get();
        if self.entries.is_empty() {
            self.base = id;
        }
        let end = self.base + self.entries.len() as u64;
        if id == end {
            // The usual case: the newest waiter.
            self.entries.push_back(Some(entry));
            self.live += 1;
            return;
        }
        if id < self.base {
            // Not in arrival order (the core numbers waiters as they come, so not expected).
            self.stragglers.insert(id, entry);
            return;
        }
        let at = usize::try_from(id - self.base).unwrap_or(usize::MAX);
        if at >= self.entries.len() {
            self.entries.resize_with(at, || None);
            self.entries.push_back(Some(entry));
            self.live += 1;
        } else if self.entries[at].replace(entry).is_none() {
            self.live += 1;
        }
    }

    fn at(&self, id: WaiterId) -> Option<usize> {
        let at = id.get().checked_sub(self.base)?;
        usize::try_from(at).ok()
    }

    fn get_mut(&mut self, id: WaiterId) -> Option<&mut V> {
        match self.at(id) {
            Some(at) => self.entries.get_mut(at)?.as_mut(),
            None => self.stragglers.get_mut(&id.get()),
        }
    }

    fn remove(&mut self, id: WaiterId) -> Option<V> {
        let Some(at) = self.at(id) else {
            return self.stragglers.remove(&id.get());
        };
        let entry = if at == 0 {
            // The usual case: the oldest waiter.
            self.base += 1;
            self.entries.pop_front()?
        } else {
            self.entries.get_mut(at)?.take()
        };
        if entry.is_some() {
            self.live -= 1;
        }
        self.trim();
        entry
    }

    /// Drops the gaps at the front; while the deque is mostly gaps, moves its front entries to
    /// the stragglers.
    fn trim(&mut self) {
        loop {
            match self.entries.front() {
                Some(None) => {}
                Some(Some(_))
                    if self.entries.len() >= COMPACT_FROM && self.live * 2 < self.entries.len() => {
                }
                _ => return,
            }
            if let Some(Some(entry)) = self.entries.pop_front() {
                self.stragglers.insert(self.base, entry);
                self.live -= 1;
            }
            self.base += 1;
        }
    }
}

/// How long the build waits for `min` connections when checkouts do not wait (psycopg2 mode).
const WARM_UP_BOUND: Duration = Duration::from_secs(30);
/// The least the build waits for `min` connections (a checkout timeout of milliseconds says how
/// long a borrower may queue, not how long a server may take to accept).
const WARM_UP_LEAST: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

/// What the pool does I/O with, fixed at build: the connector, hooks, timeout, clock origin.
pub(crate) struct Settings<M: Connector> {
    connector: M,
    after_connect: Option<Hook<M>>,
    before_reuse: Option<Hook<M>>,
    check_on_checkout: bool,
    timeout: Option<Duration>,
    origin: Instant,
}

impl<M: Connector> Settings<M> {
    pub(crate) fn new(
        connector: M,
        after_connect: Option<Hook<M>>,
        before_reuse: Option<Hook<M>>,
        check_on_checkout: bool,
        timeout: Option<Duration>,
    ) -> Self {
        Settings {
            connector,
            after_connect,
            before_reuse,
            check_on_checkout,
            timeout,
            origin: Instant::now(),
        }
    }

    fn now(&self) -> Time {
        self.time(Instant::now())
    }

    fn time(&self, at: Instant) -> Time {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        Time::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn instant(&self, t: Time) -> Option<Instant> {
        self.origin.checked_add(Duration::from_nanos(t.as_nanos()))
    }

    /// Connect and run `after_connect`; `Err(None)`: it panicked.
    async fn open(&self) -> Result<M::Conn, Option<M::Error>> {
        let opened = AssertUnwindSafe(async {
            let mut conn = self.connector.connect().await?;
            if let Some(hook) = &self.after_connect {
                if let Err(e) = hook(&mut conn).await {
                    let _ = self.connector.close(conn).await;
                    return Err(e);
                }
            }
            Ok(conn)
        })
        .catch_unwind()
        .await;
        match opened {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(Some(e)),
            Err(_) => Err(None),
        }
    }

    /// Whether connections taken from the idle set are vetted at all.
    fn vets(&self) -> bool {
        self.before_reuse.is_some() || self.check_on_checkout
    }

    /// Whether a connection taken from the idle set may be handed out.
    async fn vet(&self, conn: &mut M::Conn) -> bool {
        AssertUnwindSafe(async {
            if let Some(hook) = &self.before_reuse {
                if hook(conn).await.is_err() {
                    return false;
                }
            }
            !self.check_on_checkout || self.connector.check(conn).await.is_ok()
        })
        .catch_unwind()
        .await
        .unwrap_or(false)
    }

    /// The state of a connection given back, without I/O. A borrower unwinding from a panic may
    /// have left it mid-work, so it is at least reset.
    fn judge(&self, conn: &mut M::Conn, close: bool) -> Returned {
        if close {
            return Returned::Close;
        }
        let judged = std::panic::catch_unwind(AssertUnwindSafe(|| self.connector.state(conn)));
        match judged {
            Ok(Returned::Clean) if std::thread::panicking() => Returned::Dirty,
            Ok(state) => state,
            Err(_) => Returned::Broken,
        }
    }

    async fn close(&self, conn: M::Conn) {
        let _ = AssertUnwindSafe(self.connector.close(conn))
            .catch_unwind()
            .await;
    }

    /// How a reset, check or close ended (`Err`: it panicked): an error the connector says was
    /// cut off at its bound is [`Finished::Abandoned`]; any other error, or a panic, a failure.
    fn finished<P>(&self, result: Result<Result<(), M::Error>, P>) -> Finished {
        match result {
            Ok(Ok(())) => Finished::Ok,
            Ok(Err(e)) => {
                let abandoned =
                    std::panic::catch_unwind(AssertUnwindSafe(|| self.connector.is_abandoned(&e)));
                if abandoned.unwrap_or(false) {
                    Finished::Abandoned
                } else {
                    Finished::Failed
                }
            }
            Err(_) => Finished::Failed,
        }
    }

    /// The I/O of an open, close, reset or check, and its completion (with, for a failed open,
    /// why: `Some(None)` if it panicked).
    async fn perform(&self, io: Io<M::Conn>) -> (Completion<M::Conn>, Option<Option<M::Error>>) {
        let done = match io {
            Io::Open(ticket) => match self.open().await {
                Ok(conn) => Completion::Opened { ticket, conn },
                Err(e) => {
                    let permanent = e.as_ref().is_some_and(|e| {
                        std::panic::catch_unwind(AssertUnwindSafe(|| {
                            self.connector.is_permanent(e)
                        }))
                        .unwrap_or(false)
                    });
                    return (Completion::OpenFailed { ticket, permanent }, Some(e));
                }
            },
            Io::Close { ticket, conn } => {
                let closed = AssertUnwindSafe(self.connector.close(conn))
                    .catch_unwind()
                    .await;
                let outcome = self.finished(closed);
                Completion::Closed { ticket, outcome }
            }
            Io::Reset { ticket, mut conn } => {
                let reset = AssertUnwindSafe(self.connector.reset(&mut conn))
                    .catch_unwind()
                    .await;
                let outcome = self.finished(reset);
                Completion::Reset {
                    ticket,
                    conn,
                    outcome,
                }
            }
            Io::Check { ticket, mut conn } => {
                let checked = AssertUnwindSafe(self.connector.check(&mut conn))
                    .catch_unwind()
                    .await;
                let outcome = self.finished(checked);
                Completion::Checked {
                    ticket,
                    conn,
                    outcome,
                }
            }
        };
        (done, None)
    }
}

/// An async pool. Cloning gives another handle to the same pool; it closes when the last handle
/// (and guard) is dropped, or at [`close`](Pool::close).
///
/// How it runs:
/// - the core sits behind one mutex (parking_lot's), never held across an await: an input and the drain of
///   the commands it caused share one critical section; grants and failures are left in the
///   queued checkouts' slots there, their tasks (and those of woken checkouts) are woken right
///   after it, and opens, resets, checks and closes are spawned as tasks;
/// - a checkout that finds nothing idle queues in the core and in the pool's table of queued
///   checkouts (a slot with its task's waker, then its outcome: the task takes it without the
///   pool's lock; the slot comes back to the pool with the guard, for reuse). Who gets a
///   returned connection is the core's [`Fairness`](crate::Fairness): by default (`Strict`) it is
///   granted to the oldest waiter; with a bound it goes idle and the oldest waiter is woken to
///   claim it when its task runs, while a task already running may take it first, until the
///   oldest waiter has waited the bound. At its
///   deadline the core fails a waiter with [`PoolError::Timeout`] (through the maintenance task:
///   one timer for the pool, none per waiter). A `get()` future dropped while queued or woken
///   cancels its waiter through the core, and gives back a connection granted to it meanwhile;
/// - a dropped guard judges its connection without I/O ([`Connector::state`]) and checks it in:
///   a clean one is reused as it is, a dirty one is reset on a task;
/// - a maintenance task sleeps until the core's next deadline (lifetime, idle expiry, open retry,
///   waiter timeout), woken early only when that deadline moves earlier.
///
/// Its tasks run on the runtime that built it: build it on the runtime that uses it, and keep
/// that runtime running while the pool is used.
pub struct Pool<M: Connector> {
    owner: Arc<Owner<M>>,
}

/// What handles and guards share: its drop (the last handle's) closes the pool. Tasks hold the
/// [`Shared`] state only.
struct Owner<M: Connector> {
    shared: Arc<Shared<M>>,
}

struct Shared<M: Connector> {
    settings: Settings<M>,
    state: Mutex<State<M>>,
    runtime: Handle,
    /// Wakes the maintenance task when the next deadline moves earlier, or at the end.
    wake: Arc<Notify>,
    stopped: AtomicBool,
    /// Notified after drains while someone waits for the pool to be warm.
    changed: Notify,
}

struct State<M: Connector> {
    core: AllocPool<M::Conn, ()>,
    /// Why the last open failed; cleared by a successful open.
    last: Option<Failure<M::Error>>,
    /// Queued checkouts' slots, by waiter id, while they are in line.
    waiters: Waiters<Arc<Slot<M>>>,
    /// Slots to reuse.
    spare: Vec<Arc<Slot<M>>>,
    /// The deadline the maintenance task sleeps until.
    alarm: Option<Time>,
    /// Futures in `wait_ready` or the build's warm-up.
    ready_waiters: usize,
}

impl<M: Connector> State<M> {
    fn error(&self, e: sanspool_core::Error) -> PoolError<M::Error> {
        PoolError::from_core(e, self.last.as_ref())
    }

    /// Keeps a slot its checkout is done with, for the next checkout that queues.
    fn keep(&mut self, slot: Arc<Slot<M>>) {
        if self.spare.len() < SPARE_SLOTS {
            self.spare.push(slot);
        }
    }
}

/// What a drain leaves to do once the lock is released: the tasks of settled or woken checkouts
/// to wake (waking may unpark a worker thread: a syscall the lock need not be held across), and
/// the I/O to spawn. The first waker has a place of its own and the rest is boxed, so the usual
/// drain (none, or one grant) allocates nothing and is two words to move.
struct Drained<C> {
    first: Option<Waker>,
    rest: Option<Box<Rest<C>>>,
}

/// A drain's wakers after the first, and its I/O.
struct Rest<C> {
    more: Vec<Waker>,
    io: Vec<Io<C>>,
}

impl<C> Drained<C> {
    fn rest(&mut self) -> &mut Rest<C> {
        self.rest.get_or_insert_with(|| {
            Box::new(Rest {
                more: Vec::new(),
                io: Vec::new(),
            })
        })
    }

    fn wake(&mut self, waker: Waker) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest().more.push(waker);
        }
    }

    /// Takes the I/O out, to be run by the caller.
    fn take_io(&mut self) -> Vec<Io<C>> {
        self.rest
            .as_mut()
            .map(|rest| std::mem::take(&mut rest.io))
            .unwrap_or_default()
    }
}

impl<M: Connector> Shared<M> {
    /// Takes every queued command: outcomes are left in their checkouts' slots (under the
    /// lock) and the tasks to wake are collected, the maintenance task is rearmed; the rest is
    /// done by [`finish`](Self::finish) after unlock.
    fn drain(&self, st: &mut State<M>) -> Drained<M::Conn> {
        let mut out = Drained {
            first: None,
            rest: None,
        };
        loop {
            let mut orphan = None;
            while let Some(io) = st.core.poll_io() {
                out.rest().io.push(io);
            }
            while let Some(report) = st.core.poll_report() {
                log::warn!("sanspool: {}", report.describe(st.core.now()));
            }
            while let Some(handoff) = st.core.poll_handoff() {
                let (waiter, outcome) = match handoff {
                    Handoff::Grant {
                        waiter,
                        lease,
                        conn,
                        fresh,
                    } => (waiter, Some(Ok((lease, conn, fresh)))),
                    Handoff::Fail { waiter, error } => (waiter, Some(Err(st.error(error)))),
                    Handoff::Wake { waiter } => (waiter, None),
                };
                match outcome {
                    // Settled: out of the table, the outcome in its slot, its task woken to take
                    // it (a woken one is awake already, and will find it there).
                    Some(outcome) => match st.waiters.remove(waiter) {
                        Some(slot) => {
                            let mut entry = slot.0.lock();
                            if let Entry::Queued(Some(waker)) =
                                std::mem::replace(&mut *entry, Entry::Settled(outcome))
                            {
                                out.wake(waker);
                            }
                        }
                        // Nobody takes it (cannot happen: a checkout leaves the table only under
                        // the lock, with its outcome or its cancel).
                        None => {
                            debug_assert!(false, "an outcome for a checkout that is not queued");
                            if let Ok((lease, conn, _)) = outcome {
                                orphan.get_or_insert_with(Vec::new).push((lease, conn));
                            }
                        }
                    },
                    // A wake spends the waker; the checkout stays in line until it claims.
                    None => {
                        if let Some(slot) = st.waiters.get_mut(waiter) {
                            let mut entry = slot.0.lock();
                            if let Entry::Queued(waker) = &mut *entry {
                                let waker = waker.take();
                                *entry = Entry::Woken;
                                if let Some(waker) = waker {
                                    out.wake(waker);
                                }
                            }
                        } else {
                            debug_assert!(false, "a wake for a checkout that is not queued");
                        }
                    }
                }
            }
            let Some(orphans) = orphan else {
                break;
            };
            // Unused, so clean.
            let now = self.settings.now();
            for (lease, conn) in orphans {
                let back = st.core.checkin(now, lease, None, conn, Returned::Clean);
                debug_assert!(back.is_ok(), "grant without a waiter");
            }
        }
        let next = st.core.poll_timeout();
        let earlier = match (next, st.alarm) {
            (Some(n), Some(a)) => n < a,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier {
            st.alarm = next;
            self.wake.notify_one();
        }
        if st.ready_waiters > 0 {
            self.changed.notify_waiters();
        }
        out
    }

    /// After unlock: wakes the drained checkouts' tasks, in the core's order, and spawns the I/O.
    fn finish(self: &Arc<Self>, out: Drained<M::Conn>) {
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

    /// One checkout attempt: a connection, or a place in line (a slot; its future leaves its
    /// task's waker there when first polled).
    ///
    /// The clock is read before the lock (a contended lock's holder should not be reading
    /// clocks), and the deadline (`wait`, set by the first attempt) is taken from the pool's
    /// latest time if that is later: two checkouts racing for the lock then still queue with
    /// their deadlines in line order, the order the core's timer table finds the earliest in at
    /// once (out of order, the core searches the line whenever its front leaves).
    fn attempt<'a>(
        self: &'a Arc<Self>,
        wait: &mut Option<Wait>,
    ) -> Result<Got<'a, M>, PoolError<M::Error>> {
        let now = self.settings.now();
        let mut st = lock(&self.state);
        let start = now.max(st.core.now());
        let wait = *wait.get_or_insert_with(|| Wait::within(start, self.settings.timeout));
        let got = match st.core.checkout(now, None, wait) {
            Err(e) => Err(st.error(e)),
            Ok(Checkout::Ready { lease, conn }) => Ok(Got::Ready(lease, conn)),
            Ok(Checkout::Waiting(id)) => {
                // A spare slot is the pool's alone: set without locking it.
                let slot = st
                    .spare
                    .pop()
                    .and_then(|mut slot| {
                        *Arc::get_mut(&mut slot)?.0.get_mut() = Entry::Queued(None);
                        Some(slot)
                    })
                    .unwrap_or_else(|| Arc::new(Slot(Mutex::new(Entry::Queued(None)))));
                st.waiters.insert(id, Arc::clone(&slot));
                Ok(Got::Waiting(Pending {
                    shared: self,
                    id,
                    slot: Some(slot),
                }))
            }
            // Only keyed checkouts are held, and this pool has no keys.
            Ok(Checkout::Held(_)) => Err(PoolError::Config(sanspool_core::Error::KeyBusy)),
        };
        let out = self.drain(&mut st);
        drop(st);
        self.finish(out);
        got
    }

    /// Spawns each command's I/O as a task of its own.
    fn run(self: &Arc<Self>, io: Vec<Io<M::Conn>>) {
        for cmd in io {
            drop(self.spawn(cmd));
        }
    }

    /// Spawns one command's I/O and its report; the task says whether it was a failed check.
    /// A task, not the caller's future: dropped mid-way, the caller would lose the connection.
    fn spawn(self: &Arc<Self>, cmd: Io<M::Conn>) -> JoinHandle<bool> {
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            let done = shared.settings.perform(cmd).await;
            let failed = matches!(done.0, Completion::Checked { outcome, .. } if !outcome.is_ok());
            shared.report(done);
            failed
        })
    }

    /// Reports a performed command, with its drain; starts what follows.
    fn report(self: &Arc<Self>, done: (Completion<M::Conn>, Option<Option<M::Error>>)) {
        let (completion, failure) = done;
        let mut st = lock(&self.state);
        match (&completion, failure) {
            (Completion::Opened { .. }, _) => st.last = None,
            (_, Some(e)) => {
                st.last = Some(match e {
                    Some(e) => Failure::Error(Arc::new(e)),
                    None => Failure::Panic,
                });
            }
            _ => {}
        }
        let refused = st.core.handle(self.settings.now(), completion).err();
        let out = self.drain(&mut st);
        drop(st);
        if let Some(conn) = refused.and_then(|r| r.conn) {
            debug_assert!(false, "a completion of a drained command was refused");
            self.discard(conn);
        }
        self.finish(out);
    }

    /// Closes, on a task, a connection the core does not take.
    fn discard(self: &Arc<Self>, conn: M::Conn) {
        let shared = Arc::clone(self);
        self.runtime
            .spawn(async move { shared.settings.close(conn).await });
    }

    /// One input to the core, with its drain and I/O.
    fn input<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut AllocPool<M::Conn, ()>, Time) -> Result<T, sanspool_core::Error>,
    ) -> Result<T, PoolError<M::Error>> {
        let mut st = lock(&self.state);
        let now = self.settings.now();
        let result = f(&mut st.core, now).map_err(|e| st.error(e));
        let out = self.drain(&mut st);
        drop(st);
        self.finish(out);
        result
    }

    /// A guard's connection back, with the slot its checkout queued in (if it did), to reuse.
    fn checkin(
        self: &Arc<Self>,
        lease: Lease,
        conn: M::Conn,
        returned: Returned,
        slot: Option<Arc<Slot<M>>>,
    ) {
        let now = self.settings.now();
        let mut st = lock(&self.state);
        if let Some(slot) = slot {
            st.keep(slot);
        }
        let back = st.core.checkin(now, lease, None, conn, returned);
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
        let now = self.settings.now();
        if st.core.poll_timeout().is_some_and(|t| t <= now) {
            st.core.handle_timeout(now);
        }
        let out = self.drain(&mut st);
        let next = st.core.poll_timeout();
        st.alarm = next;
        drop(st);
        self.finish(out);
        next.and_then(|t| self.settings.instant(t))
    }

    /// Waits until `done` says the pool is ready (or failed), or `deadline` passes.
    async fn wait_until<T>(
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
async fn maintain<M: Connector>(pool: Weak<Shared<M>>, wake: Arc<Notify>) {
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
struct Pending<'a, M: Connector> {
    shared: &'a Arc<Shared<M>>,
    id: WaiterId,
    /// `None` once the outcome was taken (nothing to undo).
    slot: Option<Arc<Slot<M>>>,
}

impl<M: Connector> Future for Pending<'_, M> {
    type Output = Served<M>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Served<M>> {
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
                    return Poll::Ready(self.served(Err(PoolError::Closed)));
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
        let now = s.settings.now();
        let got = match st.core.claim(now, self.id) {
            Ok(Checkout::Ready { lease, conn }) => {
                st.waiters.remove(self.id);
                *entry = Entry::Done;
                // Taken from the idle set: vetted like any reused connection.
                Some(Ok((lease, conn, false)))
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
                Some(Err(PoolError::Closed))
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
        let now = s.settings.now();
        let entry = std::mem::replace(&mut *slot.0.lock(), Entry::Done);
        let granted = match entry {
            // Still in line, woken or not: its wake (if undrained) leaves the core with it.
            Entry::Queued(_) | Entry::Woken => {
                st.waiters.remove(self.id);
                let _ = st.core.cancel(now, self.id);
                None
            }
            Entry::Settled(outcome) => outcome.ok(),
            Entry::Done => None,
        };
        st.keep(slot);
        if let Some((lease, mut conn, _)) = granted {
            let returned = s.settings.judge(&mut conn, false);
            if let Err(sanspool_core::Rejected { conn: Some(c), .. }) =
                st.core.checkin(now, lease, None, conn, returned)
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

enum Got<'a, M: Connector> {
    Ready(Lease, M::Conn),
    Waiting(Pending<'a, M>),
}

impl<M: Connector> Pool<M> {
    pub(crate) async fn build(
        settings: Settings<M>,
        config: Config,
    ) -> Result<Self, PoolError<M::Error>> {
        let core = AllocPool::new(config).map_err(PoolError::Config)?;
        let bound = settings
            .timeout
            .map_or(WARM_UP_BOUND, |t| t.max(WARM_UP_LEAST));
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            settings,
            state: Mutex::new(State {
                core,
                last: None,
                waiters: Waiters::new(),
                spare: Vec::new(),
                alarm: None,
                ready_waiters: 0,
            }),
            runtime: Handle::current(),
            wake: Arc::clone(&wake),
            stopped: AtomicBool::new(false),
            changed: Notify::new(),
        });
        shared
            .runtime
            .spawn(maintain(Arc::downgrade(&shared), wake));
        let pool = Pool {
            owner: Arc::new(Owner { shared }),
        };
        // On an error the pool is dropped here, which closes it.
        pool.warm_up(bound).await?;
        Ok(pool)
    }

    /// Opens `min` connections, psycopg2's way: the first failed open is the build's error;
    /// bounded, so an unreachable server ends in [`PoolError::Timeout`].
    async fn warm_up(&self, bound: Duration) -> Result<(), PoolError<M::Error>> {
        let s = &self.owner.shared;
        let out = s.drain(&mut lock(&s.state));
        s.finish(out);
        let deadline = Instant::now().checked_add(bound);
        let ready = s
            .wait_until(deadline, |st| {
                if st.core.is_warm() {
                    Some(Ok(()))
                } else {
                    st.last
                        .as_ref()
                        .map(|_| Err(st.error(sanspool_core::Error::OpenFailed)))
                }
            })
            .await;
        ready.unwrap_or_else(|| Err(lock(&s.state).error(sanspool_core::Error::Timeout)))
    }

    /// A connection, as a guard given back on drop.
    ///
    /// An idle connection is taken at once; otherwise the checkout queues up to the builder's
    /// timeout (no timeout: [`PoolError::Exhausted`] at `max`), served in line as the builder's
    /// [`fairness`](crate::Builder::fairness) says. Cancellation-safe: dropping the future while
    /// it waits (or is woken) leaves no trace in the pool.
    pub async fn get(&self) -> Result<PooledConn<M>, PoolError<M::Error>> {
        let s = &self.owner.shared;
        // The first attempt sets the deadline (from its clock read); a retry after a failed
        // vetting keeps it.
        let mut wait = None;
        loop {
            let got = s.attempt(&mut wait)?;
            let (lease, conn, fresh, slot) = match got {
                Got::Ready(lease, conn) => (lease, conn, false, None),
                Got::Waiting(pending) => {
                    let (outcome, slot) = pending.await;
                    let (lease, conn, fresh) = outcome?;
                    (lease, conn, fresh, Some(slot))
                }
            };
            // A guard before the vetting's awaits: a future dropped there still gives it back.
            let mut guard = PooledConn {
                pool: self.clone(),
                lease,
                conn: Some(conn),
                close: false,
                slot,
            };
            if fresh || !s.settings.vets() || s.settings.vet(guard.conn_mut()).await {
                return Ok(guard);
            }
            guard.give_back(Returned::Broken);
        }
    }

    /// Gauges and counters (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        lock(&self.owner.shared.state).core.stats()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.owner.shared.state).core.is_closed()
    }

    /// The connector.
    pub fn connector(&self) -> &M {
        &self.owner.shared.settings.connector
    }

    /// Closes the pool: idle connections are closed now (on tasks), checked-out ones when they
    /// come back; waiting checkouts fail with [`PoolError::Closed`]. A second call is
    /// [`PoolError::Closed`].
    pub fn close(&self) -> Result<(), PoolError<M::Error>> {
        let s = &self.owner.shared;
        s.input(|core, now| core.close(now))?;
        s.stopped.store(true, Ordering::Release);
        s.wake.notify_one();
        Ok(())
    }

    /// Retires every connection that exists now: idle ones close at once, checked-out ones when
    /// they come back; the pool refills to `min`.
    pub fn drain(&self) -> Result<(), PoolError<M::Error>> {
        self.owner.shared.input(|core, now| core.drain(now))
    }

    /// New `min` and `max`: growing opens at once, shrinking closes idle connections now and
    /// checked-out ones as they come back.
    pub fn resize(&self, min: usize, max: usize) -> Result<(), PoolError<M::Error>> {
        self.owner
            .shared
            .input(|core, now| core.resize(now, min, max))
    }

    /// Checks every idle connection ([`Connector::check`], psycopg_pool's `check`) on tasks, and
    /// waits for the answers; those that fail are closed and replaced. Returns how many failed.
    ///
    /// Dropping the future stops only the count: the checks run on and report to the pool.
    pub async fn check(&self) -> Result<usize, PoolError<M::Error>> {
        let s = &self.owner.shared;
        // A block, so the future holds no guard across its awaits (and stays `Send`).
        let mut out = {
            let mut st = lock(&s.state);
            if let Err(e) = st.core.check_idle(s.settings.now()) {
                return Err(st.error(e));
            }
            s.drain(&mut st)
        };
        // Every check in this drain is one of ours: earlier inputs' commands were drained by
        // their own inputs, under the same lock.
        let io = out.take_io();
        s.finish(out);
        let mut checks = Vec::new();
        for cmd in io {
            let is_check = matches!(cmd, Io::Check { .. });
            let task = s.spawn(cmd);
            if is_check {
                checks.push(task);
            }
        }
        let mut failed = 0;
        for task in checks {
            // A task that did not finish (the runtime shutting down) lost its connection: failed.
            if task.await.unwrap_or(true) {
                failed += 1;
            }
        }
        Ok(failed)
    }

    /// Waits until at least `min` connections are open. [`PoolError::Timeout`] carries the last
    /// connect error, if any.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), PoolError<M::Error>> {
        let s = &self.owner.shared;
        let deadline = Instant::now().checked_add(timeout);
        let ready = s
            .wait_until(deadline, |st| {
                if st.core.is_closed() {
                    Some(Err(PoolError::Closed))
                } else if st.core.is_warm() {
                    Some(Ok(()))
                } else {
                    None
                }
            })
            .await;
        ready.unwrap_or_else(|| Err(lock(&s.state).error(sanspool_core::Error::Timeout)))
    }
}

impl<M: Connector> Drop for Owner<M> {
    fn drop(&mut self) {
        let s = &self.shared;
        let _ = s.input(|core, now| core.close(now));
        s.stopped.store(true, Ordering::Release);
        s.wake.notify_one();
    }
}

impl<M: Connector> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            owner: Arc::clone(&self.owner),
        }
    }
}

impl<M: Connector> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// A checked-out connection: derefs to it, given back when dropped (judged without I/O: clean is
/// reused as it is, dirty is reset on a task, broken is closed).
pub struct PooledConn<M: Connector> {
    pool: Pool<M>,
    lease: Lease,
    /// `None` once given back or detached.
    conn: Option<M::Conn>,
    close: bool,
    /// The slot the checkout queued in, if it did: back to the pool with the connection.
    slot: Option<Arc<Slot<M>>>,
}

impl<M: Connector> PooledConn<M> {
    fn conn_mut(&mut self) -> &mut M::Conn {
        self.conn.as_mut().expect("present until given back")
    }

    fn give_back(&mut self, returned: Returned) {
        if let Some(conn) = self.conn.take() {
            let slot = self.slot.take();
            self.pool
                .owner
                .shared
                .checkin(self.lease, conn, returned, slot);
        }
    }

    /// Asks for the connection to be closed rather than reused when the guard goes.
    pub fn close_on_drop(&mut self) {
        self.close = true;
    }

    /// Takes the connection out of the pool for good: its place is freed (and refilled if `min`
    /// asks).
    pub fn detach(mut self) -> M::Conn {
        let conn = self.conn.take().expect("present until given back");
        let lease = self.lease;
        let _ = self
            .pool
            .owner
            .shared
            .input(|core, now| core.detach(now, lease));
        conn
    }
}

impl<M: Connector> Deref for PooledConn<M> {
    type Target = M::Conn;

    fn deref(&self) -> &M::Conn {
        self.conn.as_ref().expect("present until given back")
    }
}

impl<M: Connector> DerefMut for PooledConn<M> {
    fn deref_mut(&mut self) -> &mut M::Conn {
        self.conn_mut()
    }
}

impl<M: Connector> Drop for PooledConn<M> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            let returned = self.pool.owner.shared.settings.judge(conn, self.close);
            self.give_back(returned);
        }
    }
}

impl<M: Connector> fmt::Debug for PooledConn<M>
where
    M::Conn: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("conn", &self.conn)
            .field("slot", &self.lease.slot())
            .finish()
    }
}
