//! The Rust idiom's checkout: a guard that derefs to the connection and gives it back on drop.

use crate::shared::Checked;
use crate::{Connector, GetError, Key, Pool};
use sanspool_core::Lease;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// Where a [`PooledConn`] goes back: a borrowed [`Pool`] (what [`Pool::get`] gives), an owned one
/// ([`OwnedConn`]), or a pool type of this crate that wraps one (the psycopg2 module's simple
/// pool). Sealed.
pub trait Home<M: Connector, K: Key>: sealed::Sealed {
    /// The pool the connection goes back to.
    #[doc(hidden)]
    fn pool(&self) -> &Pool<M, K>;
}

impl<M: Connector, K: Key> sealed::Sealed for Pool<M, K> {}
impl<M: Connector, K: Key> sealed::Sealed for &Pool<M, K> {}

impl<M: Connector, K: Key> Home<M, K> for Pool<M, K> {
    fn pool(&self) -> &Pool<M, K> {
        self
    }
}

impl<M: Connector, K: Key> Home<M, K> for &Pool<M, K> {
    fn pool(&self) -> &Pool<M, K> {
        self
    }
}

/// A checked-out connection. Derefs to `M::Conn`; given back to its pool when dropped, its state
/// judged by [`Connector::state`] (clean: reused; dirty: reset first; broken: closed and replaced).
///
/// `P` is where it goes back. By default it borrows the [`Pool`] it came from, as bb8's guard
/// does: taking a reference costs nothing, where a handle of its own is a shared count
/// incremented at every checkout and decremented at every return (two atomic operations, about
/// as much as the rest of an uncontended checkout and return). To store a guard or move it to a
/// thread of its own, [`PooledConn::into_owned`] gives an [`OwnedConn`], which keeps
/// its pool alive. The psycopg2 simple pool's guard is
/// [`LocalPooledConn`](crate::psycopg2::LocalPooledConn).
pub struct PooledConn<'a, M: Connector, K: Key = u64, P: Home<M, K> = &'a Pool<M, K>> {
    /// `None` only inside `detach`, `close`, `into_owned` and `drop`.
    conn: Option<M::Conn>,
    lease: Lease,
    key: Option<K>,
    pool: P,
    borrows: PhantomData<&'a Pool<M, K>>,
}

/// A checked-out connection that owns a handle to its pool (r2d2's guard): `'static`, so it can
/// be stored or sent to another thread; its pool stays open while it lives. From
/// [`PooledConn::into_owned`].
pub type OwnedConn<M, K = u64> = PooledConn<'static, M, K, Pool<M, K>>;

impl<'a, M: Connector, K: Key, P: Home<M, K>> PooledConn<'a, M, K, P> {
    pub(crate) fn new(pool: P, lease: Lease, key: Option<K>, conn: M::Conn) -> Self {
        PooledConn {
            conn: Some(conn),
            lease,
            key,
            pool,
            borrows: PhantomData,
        }
    }

    /// The same checkout with a handle of its own to the pool: an [`OwnedConn`]. (An associated
    /// function, as the guard's others: `PooledConn::into_owned(conn)`, so that it never hides a
    /// method of the connection it derefs to.)
    pub fn into_owned(mut this: Self) -> OwnedConn<M, K> {
        let pool = this.pool.pool().clone();
        let key = this.key.take();
        match this.conn.take() {
            Some(conn) => PooledConn::new(pool, this.lease, key, conn),
            None => unreachable!("a live guard holds its connection"),
        }
    }

    /// The key it was checked out under ([`get_keyed`](Pool::get_keyed)).
    pub fn key(this: &Self) -> Option<&K> {
        this.key.as_ref()
    }

    /// Takes the connection out of the pool for good (the core's `detach`): its place is freed
    /// (and refilled if `min` asks), and it is yours to keep or close.
    pub fn detach(mut this: Self) -> M::Conn {
        let conn = this.conn.take();
        this.pool.pool().shared().detach(this.lease);
        match conn {
            Some(conn) => conn,
            None => unreachable!("a live guard holds its connection"),
        }
    }

    /// Gives the connection back to be closed rather than reused (psycopg2's
    /// `putconn(conn, close=True)`).
    pub fn close(mut this: Self) {
        if let Some(conn) = this.conn.take() {
            let shared = this.pool.pool().shared();
            shared.give_back(this.lease, this.key.as_ref(), conn, true);
        }
    }
}

impl<M: Connector, K: Key> Pool<M, K> {
    /// A connection, as a guard given back on drop. Waits up to the builder's timeout when none is
    /// idle and the pool is at `max` (no timeout: [`GetError::Exhausted`] at once).
    ///
    /// The guard borrows the pool (bb8's `get`): [`PooledConn::into_owned`] for one
    /// to store or send to a thread of its own (r2d2's).
    pub fn get(&self) -> Result<PooledConn<'_, M, K>, GetError<M::Error>> {
        self.guard_for(self, None, self.shared().settings.timeout)
    }

    /// A connection, waiting up to `timeout` rather than the builder's.
    pub fn get_timeout(
        &self,
        timeout: Duration,
    ) -> Result<PooledConn<'_, M, K>, GetError<M::Error>> {
        self.guard_for(self, None, Some(timeout))
    }

    /// A connection under `key`, as a guard. The key is held until the guard goes:
    /// another checkout of it meanwhile is [`GetError::KeyBusy`].
    pub fn get_keyed(&self, key: K) -> Result<PooledConn<'_, M, K>, GetError<M::Error>> {
        self.guard_for(self, Some(key), self.shared().settings.timeout)
    }

    /// A guard going back to `home`.
    pub(crate) fn guard_for<'a, P: Home<M, K>>(
        &self,
        home: P,
        key: Option<K>,
        timeout: Option<Duration>,
    ) -> Result<PooledConn<'a, M, K, P>, GetError<M::Error>> {
        match self.shared().checkout(key.clone(), timeout)? {
            Checked::Conn(lease, conn) => Ok(PooledConn::new(home, lease, key, conn)),
            Checked::Held(_) => Err(GetError::KeyBusy),
        }
    }
}

impl<M: Connector, K: Key, P: Home<M, K>> Deref for PooledConn<'_, M, K, P> {
    type Target = M::Conn;

    fn deref(&self) -> &M::Conn {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a live guard holds its connection"),
        }
    }
}

impl<M: Connector, K: Key, P: Home<M, K>> DerefMut for PooledConn<'_, M, K, P> {
    fn deref_mut(&mut self) -> &mut M::Conn {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a live guard holds its connection"),
        }
    }
}

impl<M: Connector, K: Key, P: Home<M, K>> Drop for PooledConn<'_, M, K, P> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let shared = self.pool.pool().shared();
            shared.give_back(self.lease, self.key.as_ref(), conn, false);
        }
    }
}

impl<M: Connector, K: Key + fmt::Debug, P: Home<M, K>> fmt::Debug for PooledConn<'_, M, K, P>
where
    M::Conn: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("conn", &self.conn)
            .field("key", &self.key)
            .field("slot", &self.lease.slot())
            .finish()
    }
}
