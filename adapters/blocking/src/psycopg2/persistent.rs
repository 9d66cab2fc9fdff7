//! [`PersistentConnectionPool`]: the key is the calling thread.

use super::PutError;
use super::{Conn, ThreadedConnectionPool};
use crate::guard::PooledConn;
use crate::pool::Start;
use crate::{thread_exit, BuildError, Builder, Connector, CoreError, GetError, Pool};
use std::fmt;
use std::ops::Deref;
use std::thread::{self, ThreadId};

/// psycopg2's `PersistentConnectionPool`: each thread gets its own connection. `Send + Sync`,
/// cloneable; a [`Pool`] keyed by [`ThreadId`], which it derefs to (`stats`, `resize`,
/// `wait_ready`, ...).
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
/// use sanspool::psycopg2::PersistentConnectionPool;
/// use sanspool::Builder;
///
/// let pool: PersistentConnectionPool<Server> =
///     Builder::new(Server).min(1).max(4).build_persistent()?;
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
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PersistentConnectionPool<M: Connector> {
    pool: ThreadedConnectionPool<M, ThreadId>,
}

impl<M: Connector, K> Builder<M, K> {
    /// A [`PersistentConnectionPool`], with `min` connections open. The first failed open is the
    /// error (psycopg2's build).
    pub fn build_persistent(self) -> Result<PersistentConnectionPool<M>, BuildError<M::Error>> {
        self.keys()
            .start(Start::FirstFailure)
            .map(PersistentConnectionPool::from_pool)
    }
}

impl<M: Connector> PersistentConnectionPool<M> {
    pub(crate) fn from_pool(pool: Pool<M, ThreadId>) -> Self {
        PersistentConnectionPool {
            pool: ThreadedConnectionPool::from(pool),
        }
    }

    /// psycopg2's `PersistentConnectionPool(minconn, maxconn, ...)`: `minconn` connections open
    /// now, at most `maxconn`, psycopg2's behaviour ([`Builder::psycopg2`]).
    pub fn new(minconn: usize, maxconn: usize, connector: M) -> Result<Self, BuildError<M::Error>> {
        Builder::new(connector)
            .min(minconn)
            .max(maxconn)
            .psycopg2()
            .build_persistent()
    }

    /// psycopg2's `getconn()`: this thread's connection, the same handle every time until
    /// [`putconn`](PersistentConnectionPool::putconn); given back when the thread ends.
    pub fn getconn(&self) -> Result<Conn<M, ThreadId>, GetError<M::Error>> {
        let me = thread::current().id();
        let conn = self.pool.getconn(Some(me))?;
        thread_exit::at_exit(self.pool.keyed().give_back_later(me));
        Ok(conn)
    }

    /// psycopg2's `putconn(conn=None, close=False)`: gives back this thread's connection (`conn`,
    /// or the one it holds when `None`), closed if `close`. A connection of another thread is
    /// [`PutError::WrongKey`]; none held is [`PutError::Unkeyed`].
    pub fn putconn(&self, conn: Option<Conn<M, ThreadId>>, close: bool) -> Result<(), PutError> {
        let me = thread::current().id();
        let conn = match conn {
            Some(conn) => conn,
            None => self.pool.held(&me).ok_or(PutError::Unkeyed)?,
        };
        self.pool.putconn(conn, Some(&me), close)
    }

    /// psycopg2's `closeall()`: [`ThreadedConnectionPool::closeall`] — the connections held
    /// only under their threads' keys are given back and closed with the idle ones, and it
    /// returns once those closes are done.
    pub fn closeall(&self) -> Result<(), CoreError> {
        self.pool.closeall()
    }

    /// This thread's connection as a guard, given back to the pool on drop. While it lives, the
    /// thread's key is busy: `get` or `getconn` on the same thread is [`GetError::KeyBusy`].
    pub fn get(&self) -> Result<PooledConn<'_, M, ThreadId>, GetError<M::Error>> {
        self.pool.get_keyed(thread::current().id())
    }
}

impl<M: Connector> Deref for PersistentConnectionPool<M> {
    type Target = Pool<M, ThreadId>;

    fn deref(&self) -> &Pool<M, ThreadId> {
        &self.pool
    }
}

impl<M: Connector> Clone for PersistentConnectionPool<M> {
    fn clone(&self) -> Self {
        PersistentConnectionPool {
            pool: self.pool.clone(),
        }
    }
}

impl<M: Connector> fmt::Debug for PersistentConnectionPool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentConnectionPool")
            .field("stats", &self.stats())
            .finish()
    }
}
