//! The simple pool (psycopg2's `SimpleConnectionPool`): one thread, no locks, no background
//! threads. Opens, resets and closes run inline, when the core asks for them; a checkout never
//! waits (with one thread, nobody else could give a connection back). Time-driven upkeep (lifetime,
//! idle expiry, open retries after a failure) runs when the pool is used, or at
//! [`maintain`](SimplePool::maintain).

use crate::driver::{Engine, Outcome, Outcomes, Settings};
use crate::guard::Home;
use crate::{Connector, PoolError, PooledConn, Stats};
use sanspool_core::{
    Checkout, Command, Completion, Config, Lease, Rejected, Returned, Time, Wait, WaiterId,
};
use std::cell::{RefCell, RefMut};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// A single-threaded pool (`!Send`, `!Sync`). Cloning gives another handle to the same pool; it
/// closes when the last handle (and guard) is dropped, or at [`close`](SimplePool::close).
///
/// No locks and no threads: opens, resets and closes run inline, when the core asks for them. A
/// checkout never waits (one thread: nobody else could give a connection back), so at `max` it is
/// psycopg2's [`PoolError::Exhausted`], and the builder's `timeout` is not used. Time-driven upkeep
/// (lifetimes, idle expiry, open retries after a failure) runs on each use, or at
/// [`maintain`](SimplePool::maintain).
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
/// use sanspool::{Builder, PoolError, SimplePool};
///
/// let pool: SimplePool<Server, &str> = Builder::new(Server).min(1).max(2).keys().build_simple()?;
/// let a = pool.getconn(Some("a"))?;
/// a.borrow_mut()?.push("SELECT 1".into());
/// assert!(a.ptr_eq(&pool.getconn(Some("a"))?));
/// let _b = pool.getconn(None)?;
/// assert!(matches!(pool.getconn(None), Err(PoolError::Exhausted)));
/// pool.putconn(a, Some(&"a"), false)?;
/// # Ok::<(), PoolError<Infallible>>(())
/// ```
///
/// It cannot cross threads:
///
/// ```compile_fail,E0277
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
/// let pool: sanspool::SimplePool<Server> = sanspool::Builder::new(Server).build_simple().unwrap();
/// std::thread::spawn(move || drop(pool));
/// ```
pub struct SimplePool<M: Connector, K = u64>
where
    K: Hash + Eq + Clone,
{
    inner: Rc<Inner<M, K>>,
}

/// The [`SimplePool`]'s guard.
pub type LocalPooledConn<M, K = u64> = PooledConn<M, K, SimplePool<M, K>>;

struct Inner<M: Connector, K>
where
    K: Hash + Eq + Clone,
{
    settings: Settings<M>,
    state: RefCell<State<M, K>>,
}

struct State<M: Connector, K>
where
    K: Hash + Eq + Clone,
{
    engine: Engine<M, K>,
    keyed: HashMap<K, LocalConn<M, K>>,
    /// Outcomes of queued checkouts, until their checkout reads them.
    outcomes: Outcomes<M>,
}

enum Checked<M: Connector, K>
where
    K: Hash + Eq + Clone,
{
    Conn(Lease, M::Conn),
    Held(LocalConn<M, K>),
}

enum Got<M: Connector, K>
where
    K: Hash + Eq + Clone,
{
    Ready(Lease, M::Conn),
    Held(LocalConn<M, K>),
    Waiting(WaiterId),
}

impl<M: Connector, K> State<M, K>
where
    K: Hash + Eq + Clone,
{
    fn drain(&mut self) -> VecDeque<Command<M::Conn>> {
        let mut tasks = VecDeque::new();
        self.engine.drain(&mut tasks, &mut self.outcomes);
        tasks
    }
}

impl<M: Connector, K> SimplePool<M, K>
where
    K: Hash + Eq + Clone,
{
    pub(crate) fn build(
        settings: Settings<M>,
        config: Config,
    ) -> Result<Self, PoolError<M::Error>> {
        let mut engine = Engine::new(config)?;
        engine.warm_up(&settings)?;
        Ok(SimplePool {
            inner: Rc::new(Inner {
                settings,
                state: RefCell::new(State {
                    engine,
                    keyed: HashMap::new(),
                    outcomes: Vec::new(),
                }),
            }),
        })
    }

    /// psycopg2's `getconn(key)`: a connection, as a shareable handle. The same key gives the same
    /// handle until [`putconn`](SimplePool::putconn). Without a key, a connection of its own.
    /// [`PoolError::Exhausted`] when none is idle and the pool is at `max`.
    pub fn getconn(&self, key: Option<K>) -> Result<LocalConn<M, K>, PoolError<M::Error>> {
        match self.checkout(key.clone(), true)? {
            Checked::Held(handle) => Ok(handle),
            Checked::Conn(lease, conn) => {
                let handle = LocalConn(Rc::new(Handle {
                    conn: RefCell::new(Some(conn)),
                    lease,
                    key: key.clone(),
                    pool: Rc::downgrade(&self.inner),
                }));
                if let Some(key) = key {
                    let replaced = self
                        .inner
                        .state
                        .borrow_mut()
                        .keyed
                        .insert(key, handle.clone());
                    drop(replaced);
                }
                Ok(handle)
            }
        }
    }

    /// psycopg2's `putconn(conn, key, close)`: gives a connection back (closed if `close`). Errors
    /// as [`ThreadedPool::putconn`](crate::ThreadedPool::putconn).
    pub fn putconn(
        &self,
        conn: LocalConn<M, K>,
        key: Option<&K>,
        close: bool,
    ) -> Result<(), PoolError<M::Error>> {
        if !std::ptr::eq(conn.0.pool.as_ptr(), Rc::as_ptr(&self.inner)) {
            return Err(PoolError::Foreign);
        }
        let taken = match conn.0.conn.try_borrow_mut() {
            Ok(mut c) => c.take(),
            Err(_) => return Err(PoolError::KeyBusy),
        };
        let Some(mut c) = taken else {
            return Err(PoolError::AlreadyReturned);
        };
        let returned = self.inner.settings.judge(&mut c, close);
        let forget = conn.0.key.as_ref();
        match self.inner.checkin(conn.0.lease, key, c, returned, forget) {
            Ok(()) => Ok(()),
            Err(Rejected { error, conn: back }) => {
                if let Some(c) = back {
                    *conn.0.conn.borrow_mut() = Some(c);
                }
                Err(PoolError::from_core(error, None))
            }
        }
    }

    /// psycopg2's `closeall()`: closes the pool. Idle connections are closed now, checked-out ones
    /// when they come back. A second call is [`PoolError::Closed`].
    pub fn closeall(&self) -> Result<(), PoolError<M::Error>> {
        let (keyed, tasks) = {
            let mut st = self.inner.state.borrow_mut();
            if let Err(e) = st.engine.core.close(self.inner.settings.now()) {
                return Err(st.engine.error(e));
            }
            (std::mem::take(&mut st.keyed), st.drain())
        };
        self.inner.run(tasks);
        // Handles only the pool still held give their connections back now (to be closed).
        drop(keyed);
        Ok(())
    }

    /// The same as [`closeall`](SimplePool::closeall).
    pub fn close(&self) -> Result<(), PoolError<M::Error>> {
        self.closeall()
    }

    /// A connection, as a guard given back on drop.
    pub fn get(&self) -> Result<LocalPooledConn<M, K>, PoolError<M::Error>> {
        self.guard(None)
    }

    /// A connection under `key`, as a guard; the key is busy until the guard goes.
    pub fn get_keyed(&self, key: K) -> Result<LocalPooledConn<M, K>, PoolError<M::Error>> {
        self.guard(Some(key))
    }

    fn guard(&self, key: Option<K>) -> Result<LocalPooledConn<M, K>, PoolError<M::Error>> {
        match self.checkout(key.clone(), false)? {
            Checked::Conn(lease, conn) => Ok(PooledConn::new(self.clone(), lease, key, conn)),
            Checked::Held(_) => Err(PoolError::KeyBusy),
        }
    }

    /// Gauges and counters.
    pub fn stats(&self) -> Stats {
        self.inner.state.borrow().engine.core.stats()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.state.borrow().engine.core.is_closed()
    }

    /// The connector.
    pub fn connector(&self) -> &M {
        &self.inner.settings.connector
    }

    /// Retires every connection that exists now (see [`ThreadedPool::drain`](crate::ThreadedPool::drain)).
    pub fn drain(&self) -> Result<(), PoolError<M::Error>> {
        self.inner.input(|engine, now| engine.core.drain(now))
    }

    /// New `min` and `max` (see [`ThreadedPool::resize`](crate::ThreadedPool::resize)).
    pub fn resize(&self, min: usize, max: usize) -> Result<(), PoolError<M::Error>> {
        self.inner
            .input(|engine, now| engine.core.resize(now, min, max))
    }

    /// Checks every idle connection; those that fail are closed and replaced. Returns how many
    /// failed.
    pub fn check(&self) -> Result<usize, PoolError<M::Error>> {
        let tasks = {
            let mut st = self.inner.state.borrow_mut();
            if let Err(e) = st.engine.core.check_idle(self.inner.settings.now()) {
                return Err(st.engine.error(e));
            }
            st.drain()
        };
        Ok(self.inner.run(tasks))
    }

    /// The upkeep a threaded pool's maintenance thread does: closes connections past their
    /// lifetime or idle too long, retries failed opens after their backoff. Returns how long until
    /// it is due again (`None`: nothing is scheduled).
    pub fn maintain(&self) -> Option<Duration> {
        let tasks = {
            let mut st = self.inner.state.borrow_mut();
            let now = self.inner.settings.now();
            if st.engine.core.poll_timeout().is_some_and(|t| t <= now) {
                st.engine.core.handle_timeout(now);
            }
            st.drain()
        };
        self.inner.run(tasks);
        let next = self.inner.state.borrow().engine.core.poll_timeout()?;
        Some(next.saturating_since(self.inner.settings.now()))
    }

    /// A checkout that does not wait. A connection that fails `before_reuse` or the checkout check
    /// is given back broken and the next one tried.
    fn checkout(&self, key: Option<K>, handle: bool) -> Result<Checked<M, K>, PoolError<M::Error>> {
        let inner = &self.inner;
        loop {
            let (got, tasks) = {
                let mut st = inner.state.borrow_mut();
                let now = inner.settings.now();
                let got = match st.engine.core.checkout(now, key.clone(), Wait::No) {
                    Err(e) => Err(st.engine.error(e)),
                    Ok(Checkout::Held(lease)) => match key.as_ref().and_then(|k| st.keyed.get(k)) {
                        Some(h) if handle && h.0.lease == lease => Ok(Got::Held(h.clone())),
                        _ => Err(PoolError::KeyBusy),
                    },
                    Ok(Checkout::Ready { lease, conn }) => Ok(Got::Ready(lease, conn)),
                    Ok(Checkout::Waiting(id)) => Ok(Got::Waiting(id)),
                };
                (got, st.drain())
            };
            inner.run(tasks);
            let (lease, mut conn, fresh) = match got? {
                Got::Held(h) => return Ok(Checked::Held(h)),
                Got::Ready(lease, conn) => (lease, conn, false),
                Got::Waiting(id) => inner.outcome(id)?,
            };
            if fresh || inner.settings.vet(&mut conn) {
                return Ok(Checked::Conn(lease, conn));
            }
            if let Err(Rejected { conn: Some(c), .. }) =
                inner.checkin(lease, None, conn, Returned::Broken, None)
            {
                inner.settings.close(c);
            }
        }
    }
}

impl<M: Connector, K> Inner<M, K>
where
    K: Hash + Eq + Clone,
{
    /// Runs tasks inline, with the state not borrowed (a connector may drop a handle, which gives
    /// its connection back). Returns how many checks failed.
    fn run(&self, mut tasks: VecDeque<Command<M::Conn>>) -> usize {
        let mut failed_checks = 0;
        while let Some(task) = tasks.pop_front() {
            let done = self.settings.perform(task);
            if let Completion::Checked { ok: false, .. } = done.0 {
                failed_checks += 1;
            }
            let stray = {
                let mut st = self.state.borrow_mut();
                let stray = st.engine.report(self.settings.now(), done);
                tasks.extend(st.drain());
                stray
            };
            if let Some(conn) = stray {
                self.settings.close(conn);
            }
        }
        failed_checks
    }

    /// The outcome of a queued checkout, after its tasks ran (its open, inline).
    fn outcome(&self, id: WaiterId) -> Outcome<M::Conn, M::Error> {
        let mut st = self.state.borrow_mut();
        if let Some(pos) = st.outcomes.iter().position(|(w, _)| *w == id) {
            return st.outcomes.swap_remove(pos).1;
        }
        // Still queued (cannot happen: its open ran inline). Give up the wait.
        let _ = st.engine.core.cancel(self.settings.now(), id);
        let tasks = st.drain();
        drop(st);
        self.run(tasks);
        Err(PoolError::Exhausted)
    }

    fn input(
        &self,
        f: impl FnOnce(&mut Engine<M, K>, Time) -> Result<(), sanspool_core::Error>,
    ) -> Result<(), PoolError<M::Error>> {
        let (result, tasks) = {
            let mut st = self.state.borrow_mut();
            let result = f(&mut st.engine, self.settings.now()).map_err(|e| st.engine.error(e));
            (result, st.drain())
        };
        self.run(tasks);
        result
    }

    fn checkin(
        &self,
        lease: Lease,
        key: Option<&K>,
        conn: M::Conn,
        returned: Returned,
        forget: Option<&K>,
    ) -> Result<(), Rejected<M::Conn>> {
        let (result, forgotten, tasks) = {
            let mut st = self.state.borrow_mut();
            let now = self.settings.now();
            let result = st.engine.core.checkin(now, lease, key, conn, returned);
            let taken = matches!(result, Ok(()) | Err(Rejected { conn: None, .. }));
            let forgotten = match forget {
                Some(k) if taken && st.keyed.get(k).is_some_and(|h| h.0.lease == lease) => {
                    st.keyed.remove(k)
                }
                _ => None,
            };
            (result, forgotten, st.drain())
        };
        drop(forgotten);
        self.run(tasks);
        result
    }

    fn give_back(&self, lease: Lease, key: Option<&K>, mut conn: M::Conn, close: bool) {
        let returned = self.settings.judge(&mut conn, close);
        if let Err(Rejected { conn: Some(c), .. }) = self.checkin(lease, key, conn, returned, None)
        {
            self.settings.close(c);
        }
    }
}

impl<M: Connector, K> Drop for Inner<M, K>
where
    K: Hash + Eq + Clone,
{
    fn drop(&mut self) {
        let st = self.state.get_mut();
        let mut held = Vec::new();
        for (_, mut handle) in st.keyed.drain() {
            if let Some(h) = Rc::get_mut(&mut handle.0) {
                if let Some(conn) = h.conn.get_mut().take() {
                    held.push((h.lease, conn));
                }
            }
        }
        st.engine.shut_down(&self.settings, held, VecDeque::new());
    }
}

impl<M: Connector, K> Clone for SimplePool<M, K>
where
    K: Hash + Eq + Clone,
{
    fn clone(&self) -> Self {
        SimplePool {
            inner: Rc::clone(&self.inner),
        }
    }
}

impl<M: Connector, K> fmt::Debug for SimplePool<M, K>
where
    K: Hash + Eq + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimplePool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M: Connector, K> Home<M, K> for SimplePool<M, K>
where
    K: Hash + Eq + Clone,
{
    fn give_back(&self, lease: Lease, key: Option<&K>, conn: M::Conn, close: bool) {
        self.inner.give_back(lease, key, conn, close);
    }

    fn detach(&self, lease: Lease) {
        let _ = self
            .inner
            .input(|engine, now| engine.core.detach(now, lease));
    }
}

/// psycopg2's connection object for the [`SimplePool`]: a shareable handle (cloning gives the same
/// connection). [`borrow_mut`](LocalConn::borrow_mut) it to use the connection.
///
/// Given back by [`putconn`](SimplePool::putconn), or when its last clone is dropped (a keyed
/// handle is held by the pool until `putconn`).
pub struct LocalConn<M: Connector, K = u64>(Rc<Handle<M, K>>)
where
    K: Hash + Eq + Clone;

struct Handle<M: Connector, K>
where
    K: Hash + Eq + Clone,
{
    conn: RefCell<Option<M::Conn>>,
    lease: Lease,
    key: Option<K>,
    pool: Weak<Inner<M, K>>,
}

impl<M: Connector, K> LocalConn<M, K>
where
    K: Hash + Eq + Clone,
{
    /// Borrows the connection. [`PoolError::AlreadyReturned`] once it was given back.
    ///
    /// # Panics
    /// If it is already borrowed (as `RefCell::borrow_mut`).
    pub fn borrow_mut(&self) -> Result<RefMut<'_, M::Conn>, PoolError<M::Error>> {
        RefMut::filter_map(self.0.conn.borrow_mut(), Option::as_mut)
            .map_err(|_| PoolError::AlreadyReturned)
    }

    /// The key it was checked out under.
    pub fn key(&self) -> Option<&K> {
        self.0.key.as_ref()
    }

    /// Whether both handles are the same connection checkout (psycopg2's `conn1 is conn2`).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl<M: Connector, K> Clone for LocalConn<M, K>
where
    K: Hash + Eq + Clone,
{
    fn clone(&self) -> Self {
        LocalConn(Rc::clone(&self.0))
    }
}

impl<M: Connector, K> fmt::Debug for LocalConn<M, K>
where
    K: Hash + Eq + Clone + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalConn")
            .field("key", &self.0.key)
            .field("slot", &self.0.lease.slot())
            .finish_non_exhaustive()
    }
}

impl<M: Connector, K> Drop for Handle<M, K>
where
    K: Hash + Eq + Clone,
{
    fn drop(&mut self) {
        if let Some(conn) = self.conn.get_mut().take() {
            match self.pool.upgrade() {
                Some(pool) => pool.give_back(self.lease, None, conn, false),
                None => drop(conn),
            }
        }
    }
}
