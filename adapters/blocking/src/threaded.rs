//! The threaded pool (psycopg2's `ThreadedConnectionPool`, and more): `Send + Sync`, a cloneable
//! handle, checkouts that wait (FIFO fair) up to a timeout.
//!
//! The core sits behind one mutex, and nothing slow ever runs under it: an input and the drain of
//! the commands it caused share one critical section, the I/O runs after it. Opens run on opener
//! threads (one per open, so at most `max`), so a slow connect delays nobody an idle connection
//! could serve. A queued checkout parks on its own slot; a returned connection goes to the oldest
//! waiter by the core's grant, straight into that slot.

use crate::driver::{Done, Engine, Outcome, Settings};
use crate::guard::Home;
use crate::maintenance::Maintenance;
use crate::{persistent, Connector, PoolError, PooledConn};
use sanspool_core::{
    Checkout, Command, Completion, Config, Lease, Rejected, Returned, Stats, Ticket, Time, WaiterId,
};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// A thread-safe pool. Cloning gives another handle to the same pool; it closes when the last
/// handle (and guard) is dropped, or at [`close`](ThreadedPool::close).
///
/// Keys (`K`, default `u64`) name checkouts as psycopg2's `getconn(key)` does: a key holds at most
/// one connection, and asking again for a key gives back the same one.
///
/// How it runs:
/// - the pool's state sits behind one mutex, and no connect, close, reset, check or query ever runs
///   while it is held: each input and the drain of the commands it caused share one critical
///   section, and the I/O runs after it, on the thread that caused it;
/// - opens run on opener threads (one per open, so at most `max` at once): a slow connect delays
///   no checkout that an idle connection can serve;
/// - a checkout that finds nothing idle parks on its own slot; a returned connection is handed to
///   the oldest waiter directly (FIFO). At its deadline a waiter fails with
///   [`PoolError::Timeout`] — or takes the connection granted to it just before;
/// - a maintenance thread sleeps until the next deadline (lifetime, idle expiry, open retry after a
///   failure) and acts on it. It holds only a weak reference, and the close or drop of the pool
///   joins it.
///
/// ```
/// # use sanspool::{Connector, Returned};
/// # use std::convert::Infallible;
/// # struct Server;
/// # impl Connector for Server {
/// #     type Conn = Vec<String>;
/// #     type Error = Infallible;
/// #     fn connect(&self) -> Result<Vec<String>, Infallible> { Ok(Vec::new()) }
/// #     fn state(&self, _: &mut Vec<String>) -> Returned { Returned::Clean }
/// #     fn reset(&self, _: &mut Vec<String>) -> Result<(), Infallible> { Ok(()) }
/// #     fn check(&self, _: &mut Vec<String>) -> Result<(), Infallible> { Ok(()) }
/// # }
/// use sanspool::{Builder, PoolError, ThreadedPool};
/// use std::time::Duration;
///
/// let pool: ThreadedPool<Server> = Builder::new(Server)
///     .min(2)
///     .max(4)
///     .timeout(Duration::from_secs(5))
///     .build_threaded()?;
/// std::thread::scope(|s| {
///     for _ in 0..8 {
///         s.spawn(|| pool.get().unwrap().push("SELECT 1".into()));
///     }
/// });
/// assert_eq!(pool.stats().checkouts, 8);
/// assert!(pool.stats().size <= 4);
/// # Ok::<(), PoolError<Infallible>>(())
/// ```
pub struct ThreadedPool<M: Connector, K = u64>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    owner: Arc<Owner<M, K>>,
}

/// What the pool's handles and guards share: its drop (the last handle's) closes the pool and joins
/// the maintenance thread. Opener threads and the maintenance thread hold the [`Shared`] state
/// only, so the pool never outlives its users' handles.
struct Owner<M: Connector, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    shared: Arc<Shared<M, K>>,
}

pub(crate) struct Shared<M: Connector, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    settings: Settings<M>,
    state: Mutex<State<M, K>>,
    /// Notified after every drain: `wait_ready` waits on it.
    changed: Condvar,
    maintenance: Maintenance,
}

struct State<M: Connector, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    engine: Engine<M, K>,
    /// Queued checkouts, each parked on its own slot.
    parked: HashMap<WaiterId, Parked<M>>,
    /// psycopg2 handles checked out under a key: `getconn(key)` again gives the same one.
    keyed: HashMap<K, Conn<M, K>>,
    /// The deadline the maintenance thread sleeps until.
    alarm: Option<Time>,
    /// I/O that came up on a thread that is exiting — no thread may be spawned there, and no
    /// connection may be used or dropped (a blocking client's runtime is gone, and a panic in a
    /// thread-local destructor aborts the process): the maintenance thread performs it.
    deferred: Vec<Command<M::Conn>>,
    /// Connections to close, handed over by an exiting thread.
    strays: Vec<M::Conn>,
    /// Threads in `wait_ready`.
    ready_waiters: usize,
}

/// Where one queued checkout waits for its grant or failure.
struct Parking<C, E> {
    outcome: Mutex<Option<Outcome<C, E>>>,
    cv: Condvar,
}

type Parked<M> = Arc<Parking<<M as Connector>::Conn, <M as Connector>::Error>>;

/// A checkout's result before it becomes a handle or a guard.
enum Checked<M: Connector, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    Conn(Lease, M::Conn),
    Held(Conn<M, K>),
}

enum Got<M: Connector, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    Ready(Lease, M::Conn),
    Held(Conn<M, K>),
    Waiting(WaiterId, Parked<M>),
}

/// Scheduler turns a waiter gives away before it sleeps.
const SPINS: usize = 32;

/// How long the build waits for `min` connections when the pool has no checkout timeout
/// (psycopg2 mode): long enough for a slow server, short of hanging on an unreachable one.
const WARM_UP_BOUND: Duration = Duration::from_secs(30);

/// The least the build waits for `min` connections: a checkout timeout of a few milliseconds
/// says how long a borrower may queue, not how long a server may take to accept a connection.
const WARM_UP_LEAST: Duration = Duration::from_secs(1);

/// A connection whose holder panicked may be anywhere in its session: never reused as it is.
fn poisoned_is_dirty(returned: Returned, poisoned: bool) -> Returned {
    match returned {
        Returned::Clean if poisoned => Returned::Dirty,
        other => other,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C, E> Parking<C, E> {
    fn deliver(&self, outcome: Outcome<C, E>) {
        *lock(&self.outcome) = Some(outcome);
        self.cv.notify_one();
    }

    /// Waits for the outcome until `deadline`; `None` if it passed first.
    fn wait(&self, deadline: Option<Instant>) -> Option<Outcome<C, E>> {
        // A grant often comes within a few scheduler turns: yield before sleeping on the condvar,
        // which costs a futex sleep and wake-up.
        for _ in 0..SPINS {
            if let Some(outcome) = lock(&self.outcome).take() {
                return Some(outcome);
            }
            thread::yield_now();
        }
        let mut slot = lock(&self.outcome);
        loop {
            if let Some(outcome) = slot.take() {
                return Some(outcome);
            }
            slot = match deadline {
                None => self.cv.wait(slot).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    let waited = self.cv.wait_timeout(slot, d - now);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
    }
}

impl<M: Connector, K> ThreadedPool<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    pub(crate) fn build(
        settings: Settings<M>,
        config: Config,
    ) -> Result<Self, PoolError<M::Error>> {
        let engine = Engine::new(config)?;
        let bound = settings
            .timeout
            .map_or(WARM_UP_BOUND, |t| t.max(WARM_UP_LEAST));
        let shared = Arc::new(Shared {
            settings,
            state: Mutex::new(State {
                engine,
                parked: HashMap::new(),
                keyed: HashMap::new(),
                alarm: None,
                deferred: Vec::new(),
                strays: Vec::new(),
                ready_waiters: 0,
            }),
            changed: Condvar::new(),
            maintenance: Maintenance::new(),
        });
        shared
            .maintenance
            .start(Arc::downgrade(&shared), |s: &Arc<Shared<M, K>>| s.tick());
        let pool = ThreadedPool {
            owner: Arc::new(Owner { shared }),
        };
        // On an error the pool is dropped here, which closes it.
        pool.warm_up(bound)?;
        Ok(pool)
    }

    /// Opens `min` connections, psycopg2's way: the first failed open is the build's error. The
    /// opens run on opener threads and the wait is bounded, so a connect that hangs (an
    /// unreachable host) cannot hang the build: it ends in [`PoolError::Timeout`].
    fn warm_up(&self, bound: Duration) -> Result<(), PoolError<M::Error>> {
        let s = &self.owner.shared;
        let deadline = Instant::now().checked_add(bound);
        let tasks = s.drain(&mut lock(&s.state));
        s.run(tasks);
        let mut st = lock(&s.state);
        loop {
            if st.engine.core.is_warm() {
                return Ok(());
            }
            if let Some(failed) = st.engine.open_failure() {
                return Err(failed);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(st.engine.error(sanspool_core::Error::Timeout));
            }
            st.ready_waiters += 1;
            st = match deadline {
                Some(d) => {
                    let waited = s.changed.wait_timeout(st, d - now);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
                None => s.changed.wait(st).unwrap_or_else(PoisonError::into_inner),
            };
            st.ready_waiters -= 1;
        }
    }

    /// psycopg2's `getconn(key)`: a connection, as a shareable handle. The same key gives the same
    /// handle until [`putconn`](ThreadedPool::putconn). Without a key, a connection of its own.
    ///
    /// Waits up to the builder's timeout when none is idle and the pool is at `max` (no timeout:
    /// [`PoolError::Exhausted`] at once). A handle dropped without `putconn` is given back when
    /// its last clone goes — except a keyed one, which the pool holds until `putconn`, as psycopg2.
    pub fn getconn(&self, key: Option<K>) -> Result<Conn<M, K>, PoolError<M::Error>> {
        match self.owner.shared.checkout(key.clone(), true)? {
            Checked::Held(handle) => Ok(handle),
            Checked::Conn(lease, conn) => {
                let handle = Conn(Arc::new(Handle {
                    conn: Mutex::new(Some(conn)),
                    lease,
                    key: key.clone(),
                    pool: Arc::downgrade(&self.owner.shared),
                }));
                if let Some(key) = key {
                    let replaced = lock(&self.owner.shared.state)
                        .keyed
                        .insert(key, handle.clone());
                    drop(replaced);
                }
                Ok(handle)
            }
        }
    }

    /// psycopg2's `putconn(conn, key, close)`: gives a connection back (closed if `close`). Other
    /// clones of the handle find it gone. `key`, if given, must be the one it was checked out under.
    ///
    /// Errors: [`Foreign`](PoolError::Foreign) (another pool's), [`AlreadyReturned`](PoolError::AlreadyReturned),
    /// [`WrongKey`](PoolError::WrongKey) — the handle keeps its connection — and
    /// [`Closed`](PoolError::Closed): after [`closeall`](ThreadedPool::closeall) the connection is
    /// taken and closed, and this is reported, as psycopg2 does.
    ///
    /// It takes the connection out of the handle, so it waits while another clone holds
    /// [`Conn::lock`] (called while this thread holds that lock, it deadlocks, as any mutex would).
    pub fn putconn(
        &self,
        conn: Conn<M, K>,
        key: Option<&K>,
        close: bool,
    ) -> Result<(), PoolError<M::Error>> {
        self.owner.shared.putconn(conn, key, close)
    }

    /// psycopg2's `closeall()`: closes the pool. Idle connections are closed now, checked-out ones
    /// when they come back; waiting checkouts fail with [`PoolError::Closed`]; the maintenance
    /// thread is joined. A second call is [`PoolError::Closed`].
    pub fn closeall(&self) -> Result<(), PoolError<M::Error>> {
        self.owner.shared.close()
    }

    /// The same as [`closeall`](ThreadedPool::closeall).
    pub fn close(&self) -> Result<(), PoolError<M::Error>> {
        self.closeall()
    }

    /// A connection, as a guard given back on drop. Waits as [`getconn`](ThreadedPool::getconn).
    pub fn get(&self) -> Result<PooledConn<M, K>, PoolError<M::Error>> {
        self.guard(None)
    }

    /// A connection under `key`, as a guard. The key is held until the guard goes:
    /// another checkout of it meanwhile is [`PoolError::KeyBusy`].
    pub fn get_keyed(&self, key: K) -> Result<PooledConn<M, K>, PoolError<M::Error>> {
        self.guard(Some(key))
    }

    fn guard(&self, key: Option<K>) -> Result<PooledConn<M, K>, PoolError<M::Error>> {
        match self.owner.shared.checkout(key.clone(), false)? {
            Checked::Conn(lease, conn) => Ok(PooledConn::new(self.clone(), lease, key, conn)),
            Checked::Held(_) => Err(PoolError::KeyBusy),
        }
    }

    /// Gauges and counters (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        lock(&self.owner.shared.state).engine.core.stats()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.owner.shared.state).engine.core.is_closed()
    }

    /// The connector.
    pub fn connector(&self) -> &M {
        &self.owner.shared.settings.connector
    }

    /// Retires every connection that exists now (psycopg_pool's `drain`): idle ones close at once,
    /// checked-out ones when they come back; the pool refills to `min`.
    pub fn drain(&self) -> Result<(), PoolError<M::Error>> {
        self.owner
            .shared
            .input(|engine, now| engine.core.drain(now))
    }

    /// New `min` and `max`: growing opens at once, shrinking closes idle connections now and
    /// checked-out ones as they come back.
    pub fn resize(&self, min: usize, max: usize) -> Result<(), PoolError<M::Error>> {
        self.owner
            .shared
            .input(|engine, now| engine.core.resize(now, min, max))
    }

    /// Checks every idle connection ([`Connector::check`], psycopg_pool's `check`); those that fail
    /// are closed and replaced. Returns how many failed.
    pub fn check(&self) -> Result<usize, PoolError<M::Error>> {
        let s = &self.owner.shared;
        let mut st = lock(&s.state);
        if let Err(e) = st.engine.core.check_idle(s.settings.now()) {
            return Err(st.engine.error(e));
        }
        let tasks = s.drain(&mut st);
        drop(st);
        Ok(s.run_here(tasks))
    }

    /// Waits until at least `min` connections are open (a warm-up after a `resize`, a `drain`, or
    /// failed opens). [`PoolError::Timeout`] carries the last connect error, if any.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), PoolError<M::Error>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = lock(&self.owner.shared.state);
        loop {
            let core = &st.engine.core;
            if core.is_closed() {
                return Err(PoolError::Closed);
            }
            if core.is_warm() {
                return Ok(());
            }
            let changed = &self.owner.shared.changed;
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(st.engine.error(sanspool_core::Error::Timeout));
            }
            // Counted, so that drains notify only when someone waits here.
            st.ready_waiters += 1;
            st = match deadline {
                None => changed.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let waited = changed.wait_timeout(st, d - now);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
            };
            st.ready_waiters -= 1;
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<M, K>> {
        &self.owner.shared
    }

    /// The handle the pool holds for `key`, if a `getconn(key)` holds one.
    pub(crate) fn held(&self, key: &K) -> Option<Conn<M, K>> {
        lock(&self.owner.shared.state).keyed.get(key).cloned()
    }
}

impl<M: Connector, K> Shared<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// See [`ThreadedPool::putconn`].
    fn putconn(
        self: &Arc<Self>,
        conn: Conn<M, K>,
        key: Option<&K>,
        close: bool,
    ) -> Result<(), PoolError<M::Error>> {
        if !std::ptr::eq(conn.0.pool.as_ptr(), Arc::as_ptr(self)) {
            return Err(PoolError::Foreign);
        }
        let (taken, poisoned) = match conn.0.conn.lock() {
            Ok(mut slot) => (slot.take(), false),
            Err(poison) => (poison.into_inner().take(), true),
        };
        let Some(mut c) = taken else {
            return Err(PoolError::AlreadyReturned);
        };
        let returned = poisoned_is_dirty(self.settings.judge(&mut c, close), poisoned);
        let forget = conn.0.key.as_ref();
        match self.checkin(conn.0.lease, key, c, returned, forget) {
            Ok(()) => Ok(()),
            Err(Rejected { error, conn: back }) => {
                if let Some(c) = back {
                    *lock(&conn.0.conn) = Some(c);
                }
                Err(PoolError::from_core(error, None))
            }
        }
    }

    /// See [`ThreadedPool::closeall`].
    fn close(self: &Arc<Self>) -> Result<(), PoolError<M::Error>> {
        let mut st = lock(&self.state);
        let now = self.settings.now();
        if let Err(e) = st.engine.core.close(now) {
            return Err(st.engine.error(e));
        }
        let keyed = std::mem::take(&mut st.keyed);
        let (opens, mut io) = Self::split_deferred(&mut st);
        for ticket in opens {
            let _ = st.engine.core.handle(
                now,
                Completion::OpenFailed {
                    ticket,
                    permanent: false,
                },
            );
        }
        let strays = std::mem::take(&mut st.strays);
        io.extend(self.drain(&mut st));
        drop(st);
        for conn in strays {
            self.discard(conn);
        }
        self.run(io);
        // Handles only the pool still held give their connections back now (to be closed).
        drop(keyed);
        self.maintenance.stop();
        Ok(())
    }

    /// Takes every queued command under the lock: outcomes go to their parked checkouts, the
    /// maintenance thread is rearmed, `wait_ready` woken; the I/O is returned to run after unlock.
    fn drain(&self, st: &mut State<M, K>) -> VecDeque<Command<M::Conn>> {
        let mut tasks = VecDeque::new();
        loop {
            let mut outcomes = Vec::new();
            st.engine.drain(&mut tasks, &mut outcomes);
            let mut again = false;
            for (id, outcome) in outcomes {
                match (st.parked.remove(&id), outcome) {
                    (Some(parking), outcome) => parking.deliver(outcome),
                    // Nobody waits for it (cannot happen: a waiter leaves only with its outcome).
                    (None, Ok((lease, conn, _))) => {
                        let now = self.settings.now();
                        let back = st
                            .engine
                            .core
                            .checkin(now, lease, None, conn, Returned::Dirty);
                        debug_assert!(back.is_ok(), "grant without a waiter");
                        again = true;
                    }
                    (None, Err(_)) => {}
                }
            }
            if !again {
                break;
            }
        }
        let next = st.engine.core.poll_timeout();
        self.maintenance.rearm(&mut st.alarm, next);
        // A notify is a syscall even with nobody waiting: only for `wait_ready` callers.
        if st.ready_waiters > 0 {
            self.changed.notify_all();
        }
        tasks
    }

    /// Starts the I/O of `tasks`, each on a thread of its own: no caller — a borrower giving a
    /// connection back, a checkout, the maintenance thread that must keep refilling — waits for
    /// a connect, a reset, a check or a close it does not need. On an exiting thread nothing
    /// starts: the maintenance thread gets the tasks.
    fn run(self: &Arc<Self>, tasks: VecDeque<Command<M::Conn>>) {
        if persistent::exiting() {
            return self.defer(tasks, None);
        }
        for task in tasks {
            self.spawn_io(task);
        }
    }

    /// Performs `tasks` on this thread (what follows them is started as [`run`](Self::run) does);
    /// returns how many checks failed. For `check()`, whose caller asked for the answers.
    fn run_here(self: &Arc<Self>, tasks: VecDeque<Command<M::Conn>>) -> usize {
        let mut failed_checks = 0;
        for task in tasks {
            if let Command::Open(_) = task {
                self.spawn_io(task);
                continue;
            }
            let done = self.settings.perform(task);
            if let Completion::Checked { ok: false, .. } = done.0 {
                failed_checks += 1;
            }
            let next = self.report(done);
            self.run(next);
        }
        failed_checks
    }

    fn report(&self, done: Done<M::Conn, M::Error>) -> VecDeque<Command<M::Conn>> {
        let mut st = lock(&self.state);
        let stray = st.engine.report(self.settings.now(), done);
        let tasks = self.drain(&mut st);
        drop(st);
        if let Some(conn) = stray {
            self.discard(conn);
        }
        tasks
    }

    /// Closes a connection the pool does not take — on the maintenance thread if this one is
    /// exiting.
    fn discard(&self, conn: M::Conn) {
        if persistent::exiting() {
            self.defer([], Some(conn));
        } else {
            self.settings.close(conn);
        }
    }

    /// Hands I/O (and a connection to close) to the maintenance thread, waking it now.
    fn defer(&self, io: impl IntoIterator<Item = Command<M::Conn>>, stray: Option<M::Conn>) {
        let mut st = lock(&self.state);
        st.deferred.extend(io);
        st.strays.extend(stray);
        st.alarm = None;
        self.maintenance
            .rearm(&mut st.alarm, Some(self.settings.now()));
    }

    /// Deferred work split into opens (tickets) and the rest.
    fn split_deferred(st: &mut State<M, K>) -> (Vec<Ticket>, VecDeque<Command<M::Conn>>) {
        let mut opens = Vec::new();
        let mut io = VecDeque::new();
        for cmd in std::mem::take(&mut st.deferred) {
            match cmd {
                Command::Open(ticket) => opens.push(ticket),
                other => io.push_back(other),
            }
        }
        (opens, io)
    }

    /// Performs one command's I/O on a thread of its own (inline if the OS refuses a thread),
    /// reports it, and starts what follows.
    fn spawn_io(self: &Arc<Self>, task: Command<M::Conn>) {
        if persistent::exiting() {
            return self.defer([task], None);
        }
        let shared = Arc::clone(self);
        let slot = Arc::new(Mutex::new(Some(task)));
        let mine = Arc::clone(&slot);
        let spawned = thread::Builder::new()
            .name("sanspool-io".into())
            .spawn(move || shared.perform(&mine));
        if spawned.is_err() {
            self.perform(&slot);
        }
    }

    fn perform(self: &Arc<Self>, task: &Mutex<Option<Command<M::Conn>>>) {
        if let Some(task) = lock(task).take() {
            let done = self.settings.perform(task);
            let next = self.report(done);
            self.run(next);
        }
    }

    /// One input to the core, with its drain and I/O.
    fn input(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Engine<M, K>, Time) -> Result<(), sanspool_core::Error>,
    ) -> Result<(), PoolError<M::Error>> {
        let mut st = lock(&self.state);
        let result = f(&mut st.engine, self.settings.now()).map_err(|e| st.engine.error(e));
        let tasks = self.drain(&mut st);
        drop(st);
        self.run(tasks);
        result
    }

    /// A checkout: an idle connection, the key's handle, or a wait for a grant. A connection that
    /// fails `before_reuse` or the checkout check is given back broken, and the next one tried,
    /// within the same deadline.
    fn checkout(
        self: &Arc<Self>,
        key: Option<K>,
        handle: bool,
    ) -> Result<Checked<M, K>, PoolError<M::Error>> {
        // One clock read serves the deadline and the first attempt's `now`.
        let start = Instant::now();
        let (wait, deadline) = self.settings.wait_from(start);
        let mut first = Some(start);
        loop {
            let mut st = lock(&self.state);
            let now = self
                .settings
                .time(first.take().unwrap_or_else(Instant::now));
            let got = match st.engine.core.checkout(now, key.clone(), wait) {
                Err(e) => Err(st.engine.error(e)),
                Ok(Checkout::Held(lease)) => match key.as_ref().and_then(|k| st.keyed.get(k)) {
                    Some(h) if handle && h.0.lease == lease => Ok(Got::Held(h.clone())),
                    // Held by a guard, or by a getconn still on its way out.
                    _ => Err(PoolError::KeyBusy),
                },
                Ok(Checkout::Ready { lease, conn }) => Ok(Got::Ready(lease, conn)),
                Ok(Checkout::Waiting(id)) => {
                    let parking = Arc::new(Parking {
                        outcome: Mutex::new(None),
                        cv: Condvar::new(),
                    });
                    st.parked.insert(id, Arc::clone(&parking));
                    Ok(Got::Waiting(id, parking))
                }
            };
            let tasks = self.drain(&mut st);
            drop(st);
            self.run(tasks);
            let (lease, mut conn, fresh) = match got? {
                Got::Held(h) => return Ok(Checked::Held(h)),
                Got::Ready(lease, conn) => (lease, conn, false),
                Got::Waiting(id, parking) => self.wait_for(id, &parking, deadline)?,
            };
            if fresh || self.settings.vet(&mut conn) {
                return Ok(Checked::Conn(lease, conn));
            }
            if let Err(Rejected { conn: Some(c), .. }) =
                self.checkin(lease, None, conn, Returned::Broken, None)
            {
                self.discard(c);
            }
        }
    }

    /// Waits on the parking slot. At the deadline the waiter is timed out through the core, under
    /// the lock: if a grant was delivered just before, it is taken instead.
    fn wait_for(
        self: &Arc<Self>,
        id: WaiterId,
        parking: &Parking<M::Conn, M::Error>,
        deadline: Option<Instant>,
    ) -> Outcome<M::Conn, M::Error> {
        if let Some(outcome) = parking.wait(deadline) {
            return outcome;
        }
        let mut st = lock(&self.state);
        let now = self.settings.now();
        if lock(&parking.outcome).is_none() {
            st.engine.core.handle_timeout(now);
        }
        let mut tasks = self.drain(&mut st);
        let taken = lock(&parking.outcome).take();
        let outcome = match taken {
            Some(outcome) => outcome,
            None => {
                // The core did not time it out (it always does: the deadline is on the same clock).
                let _ = st.engine.core.cancel(now, id);
                st.parked.remove(&id);
                tasks.extend(self.drain(&mut st));
                Err(st.engine.error(sanspool_core::Error::Timeout))
            }
        };
        drop(st);
        self.run(tasks);
        outcome
    }

    /// A checkin, with its drain and I/O. `forget`: the key whose handle the pool holds for this
    /// lease, dropped once the connection is back.
    fn checkin(
        self: &Arc<Self>,
        lease: Lease,
        key: Option<&K>,
        conn: M::Conn,
        returned: Returned,
        forget: Option<&K>,
    ) -> Result<(), Rejected<M::Conn>> {
        let mut st = lock(&self.state);
        let result = st
            .engine
            .core
            .checkin(self.settings.now(), lease, key, conn, returned);
        let taken = matches!(result, Ok(()) | Err(Rejected { conn: None, .. }));
        let forgotten = match forget {
            Some(k) if taken && st.keyed.get(k).is_some_and(|h| h.0.lease == lease) => {
                st.keyed.remove(k)
            }
            _ => None,
        };
        let tasks = self.drain(&mut st);
        drop(st);
        // Dropped outside the lock: a handle's drop may give its connection back.
        drop(forgotten);
        self.run(tasks);
        result
    }

    fn give_back(self: &Arc<Self>, lease: Lease, key: Option<&K>, mut conn: M::Conn, close: bool) {
        let returned = self.settings.judge(&mut conn, close);
        self.give_back_as(lease, key, conn, returned);
    }

    /// A handle's connection, given back when its last clone goes; `poisoned`: a thread panicked
    /// holding it, so it is reset at least.
    fn give_back_judged(self: &Arc<Self>, lease: Lease, mut conn: M::Conn, poisoned: bool) {
        let returned = poisoned_is_dirty(self.settings.judge(&mut conn, false), poisoned);
        self.give_back_as(lease, None, conn, returned);
    }

    fn give_back_as(
        self: &Arc<Self>,
        lease: Lease,
        key: Option<&K>,
        conn: M::Conn,
        returned: Returned,
    ) {
        if let Err(Rejected { conn: Some(c), .. }) = self.checkin(lease, key, conn, returned, None)
        {
            self.discard(c);
        }
    }

    /// Gives back the connection `getconn(key)` holds, if any (a persistent pool's thread ended).
    pub(crate) fn give_back_key(self: &Arc<Self>, key: &K) {
        let handle = lock(&self.state).keyed.get(key).cloned();
        if let Some(handle) = handle {
            let _ = self.putconn(handle, Some(key), false);
        }
    }

    /// The maintenance thread's work: time the core forward, start deferred opens, run the I/O.
    fn tick(self: &Arc<Self>) -> Option<Instant> {
        let mut st = lock(&self.state);
        let now = self.settings.now();
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
            self.settings.close(conn);
        }
        for ticket in opens {
            self.spawn_io(Command::Open(ticket));
        }
        self.run(io);
        next.and_then(|t| self.settings.instant(t))
    }
}

impl<M: Connector, K> Drop for Shared<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        self.maintenance.stop();
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let mut held = Vec::new();
        for (_, mut handle) in st.keyed.drain() {
            if let Some(h) = Arc::get_mut(&mut handle.0) {
                if let Some(conn) = h
                    .conn
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                {
                    held.push((h.lease, conn));
                }
            }
        }
        let now = self.settings.now();
        let (opens, io) = Self::split_deferred(st);
        for ticket in opens {
            let _ = st.engine.core.handle(
                now,
                Completion::OpenFailed {
                    ticket,
                    permanent: false,
                },
            );
        }
        for conn in st.strays.drain(..) {
            self.settings.close(conn);
        }
        st.engine.shut_down(&self.settings, held, io);
    }
}

impl<M: Connector, K> Drop for Owner<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        // Already closed (closeall) or not, the maintenance thread is joined here.
        let _ = self.shared.close();
        self.shared.maintenance.stop();
    }
}

impl<M: Connector, K> Clone for ThreadedPool<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn clone(&self) -> Self {
        ThreadedPool {
            owner: Arc::clone(&self.owner),
        }
    }
}

impl<M: Connector, K> fmt::Debug for ThreadedPool<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadedPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M: Connector, K> Home<M, K> for ThreadedPool<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn give_back(&self, lease: Lease, key: Option<&K>, conn: M::Conn, close: bool) {
        self.owner.shared.give_back(lease, key, conn, close);
    }

    fn detach(&self, lease: Lease) {
        let _ = self
            .owner
            .shared
            .input(|engine, now| engine.core.detach(now, lease));
    }
}

/// psycopg2's connection object for the threaded and persistent pools: a shareable handle
/// (cloning gives the same connection). [`lock`](Conn::lock) it to use the connection.
///
/// Given back by [`putconn`](ThreadedPool::putconn), or when its last clone is dropped (a keyed
/// handle is held by the pool until `putconn`).
pub struct Conn<M: Connector, K = u64>(Arc<Handle<M, K>>)
where
    K: Hash + Eq + Clone + Send + Sync + 'static;

struct Handle<M: Connector, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// `None` once given back.
    conn: Mutex<Option<M::Conn>>,
    lease: Lease,
    key: Option<K>,
    pool: Weak<Shared<M, K>>,
}

impl<M: Connector, K> Conn<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Locks the handle for use of the connection (blocks while another clone has it locked).
    /// [`PoolError::AlreadyReturned`] once it was given back; [`PoolError::Poisoned`] if a thread
    /// panicked holding it (its session may be inside that thread's transaction).
    pub fn lock(&self) -> Result<ConnGuard<'_, M>, PoolError<M::Error>> {
        let guard = self.0.conn.lock().map_err(|_| PoolError::Poisoned)?;
        if guard.is_none() {
            return Err(PoolError::AlreadyReturned);
        }
        Ok(ConnGuard(guard))
    }

    /// The key it was checked out under.
    pub fn key(&self) -> Option<&K> {
        self.0.key.as_ref()
    }

    /// Whether both handles are the same connection checkout (psycopg2's `conn1 is conn2`).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<M: Connector, K> Clone for Conn<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn clone(&self) -> Self {
        Conn(Arc::clone(&self.0))
    }
}

impl<M: Connector, K> fmt::Debug for Conn<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("key", &self.0.key)
            .field("slot", &self.0.lease.slot())
            .finish_non_exhaustive()
    }
}

impl<M: Connector, K> Drop for Handle<M, K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        let poisoned = self.conn.is_poisoned();
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(conn) = conn {
            match self.pool.upgrade() {
                Some(pool) => pool.give_back_judged(self.lease, conn, poisoned),
                None => drop(conn),
            }
        }
    }
}

/// A locked [`Conn`]: derefs to the connection.
pub struct ConnGuard<'a, M: Connector>(MutexGuard<'a, Option<M::Conn>>);

impl<M: Connector> Deref for ConnGuard<'_, M> {
    type Target = M::Conn;

    fn deref(&self) -> &M::Conn {
        match &*self.0 {
            Some(conn) => conn,
            None => unreachable!("checked at lock, and only putconn empties it, under the lock"),
        }
    }
}

impl<M: Connector> DerefMut for ConnGuard<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Conn {
        match &mut *self.0 {
            Some(conn) => conn,
            None => unreachable!("checked at lock, and only putconn empties it, under the lock"),
        }
    }
}

impl<M: Connector> fmt::Debug for ConnGuard<'_, M>
where
    M::Conn: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
