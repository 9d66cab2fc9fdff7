//! [`SimpleConnectionPool`]: the pool for one thread.

use super::keyed::Keyed;
use super::LocalConn;
use super::PutError;
use crate::guard::{Home, PooledConn};
use crate::pool::Start;
use crate::{BuildError, Connector, CoreError, GetError, Key, Pool, Stats};
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

/// psycopg2's `SimpleConnectionPool`: a pool for one thread (`!Send`, `!Sync`). Cloning gives
/// another handle to the same pool; it closes when the last handle (and guard) is dropped, or at
/// [`closeall`](SimpleConnectionPool::closeall).
///
/// The [`Pool`]'s engine with its I/O inline and no thread: opens, resets and closes run on the
/// caller's thread, when the core asks for them. A checkout never waits (one thread: nobody else
/// could give a connection back), so at `max` it is psycopg2's [`GetError::Exhausted`], and the
/// builder's `timeout` is not used. Time-driven upkeep (lifetimes, idle expiry, open retries after a
/// failure) runs on each use, or at [`maintain`](SimpleConnectionPool::maintain).
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
/// use sanspool::psycopg2::SimpleConnectionPool;
/// use sanspool::{Builder, GetError};
///
/// let pool: SimpleConnectionPool<Server, &str> =
///     Builder::new(Server).min(1).max(2).keys().build_simple()?;
/// let a = pool.getconn(Some("a"))?;
/// a.borrow_mut()?.push("SELECT 1".into());
/// assert!(a.ptr_eq(&pool.getconn(Some("a"))?));
/// let _b = pool.getconn(None)?;
/// assert!(matches!(pool.getconn(None), Err(GetError::Exhausted)));
/// pool.putconn(a, Some(&"a"), false)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
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
/// let pool: sanspool::psycopg2::SimpleConnectionPool<Server> =
///     sanspool::Builder::new(Server).build_simple().unwrap();
/// std::thread::spawn(move || drop(pool));
/// ```
pub struct SimpleConnectionPool<M: Connector, K: Key = u64> {
    keyed: Keyed<M, K>,
    local: PhantomData<Rc<()>>,
}

/// The [`SimpleConnectionPool`]'s guard.
pub type LocalPooledConn<M, K = u64> = PooledConn<'static, M, K, SimpleConnectionPool<M, K>>;

impl<M: Connector> SimpleConnectionPool<M> {
    /// psycopg2's `SimpleConnectionPool(minconn, maxconn, ...)`: `minconn` connections open now,
    /// at most `maxconn`, psycopg2's behaviour ([`Builder::psycopg2`](crate::Builder::psycopg2)).
    pub fn new(minconn: usize, maxconn: usize, connector: M) -> Result<Self, BuildError<M::Error>> {
        crate::Builder::new(connector)
            .min(minconn)
            .max(maxconn)
            .psycopg2()
            .build_simple()
    }
}

impl<M: Connector, K: Key> crate::Builder<M, K> {
    /// A [`SimpleConnectionPool`] (I/O inline, no thread, never waits), with `min` connections
    /// open. The first failed open is the error.
    pub fn build_simple(self) -> Result<SimpleConnectionPool<M, K>, BuildError<M::Error>> {
        self.start(Start::Inline)
            .map(SimpleConnectionPool::new_inline)
    }
}

impl<M: Connector, K: Key> SimpleConnectionPool<M, K> {
    pub(crate) fn new_inline(pool: Pool<M, K>) -> Self {
        SimpleConnectionPool {
            keyed: Keyed::new(pool),
            local: PhantomData,
        }
    }

    fn pool(&self) -> &Pool<M, K> {
        &self.keyed.pool
    }

    /// psycopg2's `getconn(key)`: a connection, as a shareable handle. The same key gives the same
    /// handle until [`putconn`](SimpleConnectionPool::putconn). Without a key, a connection of its
    /// own. [`GetError::Exhausted`] when none is idle and the pool is at `max`.
    pub fn getconn(&self, key: Option<K>) -> Result<LocalConn<M, K>, GetError<M::Error>> {
        self.keyed.getconn(key).map(LocalConn::new)
    }

    /// psycopg2's `putconn(conn, key, close)`: gives a connection back (closed if `close`). Errors
    /// as [`ThreadedConnectionPool::putconn`](super::ThreadedConnectionPool::putconn), and [`PutError::Borrowed`] while a
    /// [`borrow_mut`](LocalConn::borrow_mut) of it lives.
    pub fn putconn(
        &self,
        conn: LocalConn<M, K>,
        key: Option<&K>,
        close: bool,
    ) -> Result<(), PutError> {
        // As in `borrow_mut`: a panic while borrowed does not make the connection dirty.
        conn.handle.conn.clear_poison();
        self.keyed.putconn(&conn.handle, key, close, true)
    }

    /// psycopg2's `closeall()`: closes the pool. Idle connections are closed now, on this thread,
    /// before it returns; checked-out ones when they come back. A second call is
    /// [`CoreError::Closed`].
    pub fn closeall(&self) -> Result<(), CoreError> {
        self.keyed.closeall()
    }

    /// A connection, as a guard given back on drop.
    pub fn get(&self) -> Result<LocalPooledConn<M, K>, GetError<M::Error>> {
        self.pool().guard_for(self.clone(), None, None)
    }

    /// A connection under `key`, as a guard; the key is busy until the guard goes.
    pub fn get_keyed(&self, key: K) -> Result<LocalPooledConn<M, K>, GetError<M::Error>> {
        self.pool().guard_for(self.clone(), Some(key), None)
    }

    /// Gauges and counters.
    pub fn stats(&self) -> Stats {
        self.pool().stats()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.pool().is_closed()
    }

    /// The connector.
    pub fn connector(&self) -> &M {
        self.pool().connector()
    }

    /// The same as [`closeall`](SimpleConnectionPool::closeall).
    pub fn close(&self) -> Result<(), CoreError> {
        self.pool().close()
    }

    /// Retires every connection that exists now (see [`Pool::drain`]).
    pub fn drain(&self) -> Result<(), CoreError> {
        self.pool().drain()
    }

    /// New `min` and `max` (see [`Pool::resize`]).
    pub fn resize(&self, min: usize, max: usize) -> Result<(), CoreError> {
        self.pool().resize(min, max)
    }

    /// Checks every idle connection; those that fail are closed and replaced. Returns how many
    /// failed.
    pub fn check(&self) -> Result<usize, CoreError> {
        self.pool().check()
    }

    /// The upkeep a threaded pool's maintenance thread does: closes connections past their
    /// lifetime or idle too long, retries failed opens after their backoff. Returns how long until
    /// it is due again (`None`: nothing is scheduled).
    pub fn maintain(&self) -> Option<Duration> {
        let shared = self.pool().shared();
        shared.tick();
        shared.next_due()
    }
}

impl<M: Connector, K: Key> Clone for SimpleConnectionPool<M, K> {
    fn clone(&self) -> Self {
        SimpleConnectionPool {
            keyed: self.keyed.clone(),
            local: PhantomData,
        }
    }
}

impl<M: Connector, K: Key> fmt::Debug for SimpleConnectionPool<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleConnectionPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M: Connector, K: Key> crate::guard::sealed::Sealed for SimpleConnectionPool<M, K> {}

impl<M: Connector, K: Key> Home<M, K> for SimpleConnectionPool<M, K> {
    fn pool(&self) -> &Pool<M, K> {
        &self.keyed.pool
    }
}
