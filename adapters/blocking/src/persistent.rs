//! The persistent pool (psycopg2's `PersistentConnectionPool`): the key is the calling thread.
//!
//! A thread asking again gets the same connection back. When a thread that holds one ends, a
//! thread-local entry gives it back to the pool (psycopg2 leaks it).

use crate::threaded::Shared;
use crate::{Conn, Connector, PoolError, PooledConn, Stats, ThreadedPool};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::{Arc, Weak};
use std::thread::{self, ThreadId};
use std::time::Duration;

/// A pool that gives each thread its own connection. `Send + Sync`, cloneable; runs on the
/// [`ThreadedPool`]'s engine, keyed by [`ThreadId`].
///
/// `getconn()` in a thread gives the same handle until `putconn`; a thread that ends without
/// `putconn` gives its connection back then (psycopg2 leaks it).
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
/// use sanspool::{Builder, PersistentPool, PoolError};
///
/// let pool: PersistentPool<Server> = Builder::new(Server).min(1).max(4).build_persistent()?;
/// let conn = pool.getconn()?;
/// assert!(conn.ptr_eq(&pool.getconn()?));
/// let p = pool.clone();
/// std::thread::spawn(move || {
///     p.getconn().unwrap().lock().unwrap().push("SELECT 1".into());
///     // no putconn: the connection goes back when this thread ends
/// })
/// .join()
/// .unwrap();
/// assert_eq!(pool.stats().in_use, 1); // only this thread's
/// pool.putconn(None, false)?;
/// # Ok::<(), PoolError<Infallible>>(())
/// ```
pub struct PersistentPool<M: Connector> {
    pool: ThreadedPool<M, ThreadId>,
}

thread_local! {
    /// Set while this thread's exit entries give connections back: no thread may be spawned then.
    static EXITING: Cell<bool> = const { Cell::new(false) };
    /// One entry per pool this thread took a connection from with `getconn`.
    static AT_EXIT: RefCell<Vec<Box<dyn AtExit>>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread is ending (its thread-locals are being destroyed).
pub(crate) fn exiting() -> bool {
    EXITING.try_with(Cell::get).unwrap_or(true)
}

trait AtExit {
    /// The pool's identity.
    fn pool(&self) -> *const ();
    fn alive(&self) -> bool;
}

/// Gives the thread's connection back to the pool when dropped with the thread's locals.
struct GiveBack<M: Connector> {
    pool: Weak<Shared<M, ThreadId>>,
    thread: ThreadId,
}

impl<M: Connector> AtExit for GiveBack<M> {
    fn pool(&self) -> *const () {
        self.pool.as_ptr().cast()
    }

    fn alive(&self) -> bool {
        self.pool.strong_count() > 0
    }
}

impl<M: Connector> Drop for GiveBack<M> {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let _ = EXITING.try_with(|e| e.set(true));
            pool.give_back_key(&self.thread);
            let _ = EXITING.try_with(|e| e.set(false));
        }
    }
}

impl<M: Connector> PersistentPool<M> {
    pub(crate) fn new(pool: ThreadedPool<M, ThreadId>) -> Self {
        PersistentPool { pool }
    }

    /// psycopg2's `getconn()`: this thread's connection, the same handle every time until
    /// [`putconn`](PersistentPool::putconn); given back when the thread ends.
    pub fn getconn(&self) -> Result<Conn<M, ThreadId>, PoolError<M::Error>> {
        let me = thread::current().id();
        let conn = self.pool.getconn(Some(me))?;
        let shared = self.pool.shared();
        let _ = AT_EXIT.try_with(|entries| {
            let Ok(mut entries) = entries.try_borrow_mut() else {
                return;
            };
            entries.retain(|e| e.alive());
            let id = Arc::as_ptr(shared).cast();
            if !entries.iter().any(|e| e.pool() == id) {
                entries.push(Box::new(GiveBack {
                    pool: Arc::downgrade(shared),
                    thread: me,
                }));
            }
        });
        Ok(conn)
    }

    /// psycopg2's `putconn(conn=None, close=False)`: gives back this thread's connection (`conn`,
    /// or the one it holds when `None`), closed if `close`. A connection of another thread is
    /// [`PoolError::WrongKey`]; none held is [`PoolError::Unkeyed`].
    pub fn putconn(
        &self,
        conn: Option<Conn<M, ThreadId>>,
        close: bool,
    ) -> Result<(), PoolError<M::Error>> {
        let me = thread::current().id();
        let conn = match conn {
            Some(conn) => conn,
            None => self.pool.held(&me).ok_or(PoolError::Unkeyed)?,
        };
        self.pool.putconn(conn, Some(&me), close)
    }

    /// psycopg2's `closeall()` (see [`ThreadedPool::closeall`]).
    pub fn closeall(&self) -> Result<(), PoolError<M::Error>> {
        self.pool.closeall()
    }

    /// The same as [`closeall`](PersistentPool::closeall).
    pub fn close(&self) -> Result<(), PoolError<M::Error>> {
        self.pool.closeall()
    }

    /// This thread's connection as a guard, given back to the pool on drop. While it lives, the
    /// thread's key is busy: `get` or `getconn` on the same thread is [`PoolError::KeyBusy`].
    pub fn get(&self) -> Result<PooledConn<M, ThreadId>, PoolError<M::Error>> {
        self.pool.get_keyed(thread::current().id())
    }

    /// Gauges and counters.
    pub fn stats(&self) -> Stats {
        self.pool.stats()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// The connector.
    pub fn connector(&self) -> &M {
        self.pool.connector()
    }

    /// See [`ThreadedPool::drain`].
    pub fn drain(&self) -> Result<(), PoolError<M::Error>> {
        self.pool.drain()
    }

    /// See [`ThreadedPool::resize`].
    pub fn resize(&self, min: usize, max: usize) -> Result<(), PoolError<M::Error>> {
        self.pool.resize(min, max)
    }

    /// See [`ThreadedPool::check`].
    pub fn check(&self) -> Result<usize, PoolError<M::Error>> {
        self.pool.check()
    }

    /// See [`ThreadedPool::wait_ready`].
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), PoolError<M::Error>> {
        self.pool.wait_ready(timeout)
    }
}

impl<M: Connector> Clone for PersistentPool<M> {
    fn clone(&self) -> Self {
        PersistentPool {
            pool: self.pool.clone(),
        }
    }
}

impl<M: Connector> fmt::Debug for PersistentPool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentPool")
            .field("stats", &self.stats())
            .finish()
    }
}
