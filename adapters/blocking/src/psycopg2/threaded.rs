//! [`ThreadedConnectionPool`]: the [`Pool`] with psycopg2's API.

use super::keyed::Keyed;
use super::Conn;
use super::PutError;
use crate::pool::Start;
use crate::{BuildError, Builder, Connector, CoreError, GetError, Key, Pool};
use std::fmt;
use std::ops::Deref;

/// psycopg2's `ThreadedConnectionPool`: a [`Pool`] (which it derefs to, for `get`, `stats`,
/// `resize`, ...) with psycopg2's `getconn`, `putconn` and `closeall`. Cloning gives another
/// handle to the same pool.
///
/// Keys (`K`, default `u64`) name checkouts as psycopg2's `getconn(key)` does: a key holds at most
/// one connection, and asking again for a key gives back the same one.
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
/// use sanspool::psycopg2::ThreadedConnectionPool;
/// use sanspool::psycopg2::PutError;
/// use sanspool::GetError;
///
/// let pool = ThreadedConnectionPool::new(1, 2, Server)?;
/// let a = pool.getconn(Some(7))?;
/// a.lock()?.push("SELECT 1".into());
/// assert!(a.ptr_eq(&pool.getconn(Some(7))?));
/// let _b = pool.getconn(None)?;
/// assert!(matches!(pool.getconn(None), Err(GetError::Exhausted))); // psycopg2 does not wait
/// pool.putconn(a.clone(), Some(&7), false)?;
/// assert_eq!(pool.putconn(a, None, false), Err(PutError::AlreadyReturned));
/// pool.closeall()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ThreadedConnectionPool<M: Connector, K: Key = u64> {
    keyed: Keyed<M, K>,
}

impl<M: Connector> ThreadedConnectionPool<M> {
    /// psycopg2's `ThreadedConnectionPool(minconn, maxconn, ...)`: `minconn` connections open now,
    /// at most `maxconn`, psycopg2's behaviour ([`Builder::psycopg2`]): a checkout at `maxconn`
    /// fails at once.
    pub fn new(minconn: usize, maxconn: usize, connector: M) -> Result<Self, BuildError<M::Error>> {
        Builder::new(connector)
            .min(minconn)
            .max(maxconn)
            .psycopg2()
            .build_threaded()
    }
}

impl<M: Connector, K: Key> Builder<M, K> {
    /// A [`ThreadedConnectionPool`]: a [`Pool`] with psycopg2's API, with `min` connections
    /// open. The first failed open is the error (psycopg2's build).
    pub fn build_threaded(self) -> Result<ThreadedConnectionPool<M, K>, BuildError<M::Error>> {
        self.start(Start::FirstFailure)
            .map(ThreadedConnectionPool::from)
    }
}

impl<M: Connector, K: Key> ThreadedConnectionPool<M, K> {
    /// psycopg2's `getconn(key)`: a connection, as a shareable handle. The same key gives the same
    /// handle until [`putconn`](ThreadedConnectionPool::putconn). Without a key, a connection of
    /// its own.
    ///
    /// Waits as [`Pool::get`]. A handle dropped without `putconn` is given back when its last clone
    /// goes — except a keyed one, which the pool holds until `putconn`, as psycopg2.
    pub fn getconn(&self, key: Option<K>) -> Result<Conn<M, K>, GetError<M::Error>> {
        self.keyed.getconn(key).map(Conn)
    }

    /// psycopg2's `putconn(conn, key, close)`: gives a connection back (closed if `close`). Other
    /// clones of the handle find it gone. `key`, if given, must be the one it was checked out under.
    ///
    /// Errors: [`Foreign`](PutError::Foreign) (another pool's),
    /// [`AlreadyReturned`](PutError::AlreadyReturned), [`WrongKey`](PutError::WrongKey) — the
    /// handle keeps its connection — and [`Closed`](PutError::Closed): after
    /// [`closeall`](ThreadedConnectionPool::closeall) the connection is taken and closed, and this
    /// is reported, as psycopg2 does.
    ///
    /// It takes the connection out of the handle, so it waits while another clone holds
    /// [`Conn::lock`] (called while this thread holds that lock, it deadlocks, as any mutex would).
    pub fn putconn(&self, conn: Conn<M, K>, key: Option<&K>, close: bool) -> Result<(), PutError> {
        self.keyed.putconn(&conn.0, key, close, false)
    }

    /// psycopg2's `closeall()`: [`Pool::close`]; the handles held only under their keys give
    /// their connections back then, to be closed. Returns once the idle connections and those
    /// are closed (psycopg2's closes them before it returns); a handle still held elsewhere is
    /// closed when it comes back.
    pub fn closeall(&self) -> Result<(), CoreError> {
        self.keyed.closeall()
    }

    /// The handle held for `key`, if a `getconn(key)` holds one.
    pub(crate) fn held(&self, key: &K) -> Option<Conn<M, K>> {
        self.keyed.held(key).map(Conn)
    }

    pub(crate) fn keyed(&self) -> &Keyed<M, K> {
        &self.keyed
    }
}

impl<M: Connector, K: Key> From<Pool<M, K>> for ThreadedConnectionPool<M, K> {
    /// psycopg2's API over `pool` (with keyed handles of its own).
    fn from(pool: Pool<M, K>) -> Self {
        ThreadedConnectionPool {
            keyed: Keyed::new(pool),
        }
    }
}

impl<M: Connector, K: Key> Deref for ThreadedConnectionPool<M, K> {
    type Target = Pool<M, K>;

    fn deref(&self) -> &Pool<M, K> {
        &self.keyed.pool
    }
}

impl<M: Connector, K: Key> Clone for ThreadedConnectionPool<M, K> {
    fn clone(&self) -> Self {
        ThreadedConnectionPool {
            keyed: self.keyed.clone(),
        }
    }
}

impl<M: Connector, K: Key> fmt::Debug for ThreadedConnectionPool<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadedConnectionPool")
            .field("stats", &self.stats())
            .finish()
    }
}
