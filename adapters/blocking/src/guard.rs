//! The Rust idiom's checkout: a guard that derefs to the connection and gives it back on drop.

use crate::{Connector, Key, Pool};
use sanspool_core::Lease;
use std::fmt;
use std::ops::{Deref, DerefMut};

mod sealed {
    pub trait Sealed {}
}

/// A pool a [`PooledConn`] goes back to: [`Pool`], or the psycopg2 module's
/// [`SimpleConnectionPool`](crate::psycopg2::SimpleConnectionPool). Sealed.
pub trait Home<M: Connector, K: Key>: sealed::Sealed {
    /// The pool the connection goes back to.
    #[doc(hidden)]
    fn pool(&self) -> &Pool<M, K>;
}

impl<M: Connector, K: Key> sealed::Sealed for Pool<M, K> {}
impl<M: Connector, K: Key> sealed::Sealed for crate::psycopg2::SimpleConnectionPool<M, K> {}

impl<M: Connector, K: Key> Home<M, K> for Pool<M, K> {
    fn pool(&self) -> &Pool<M, K> {
        self
    }
}

/// A checked-out connection. Derefs to `M::Conn`; given back to its pool when dropped, its state
/// judged by [`Connector::state`] (clean: reused; dirty: reset first; broken: closed and replaced).
///
/// `P` is the pool it came from: the default is [`Pool`] (also the psycopg2 threaded and
/// persistent pools'); the psycopg2 simple pool's guard is
/// [`LocalPooledConn`](crate::psycopg2::LocalPooledConn). A guard keeps its pool alive.
pub struct PooledConn<M: Connector, K: Key = u64, P: Home<M, K> = Pool<M, K>> {
    /// `None` only inside `take`, `discard` and `drop`.
    conn: Option<M::Conn>,
    lease: Lease,
    key: Option<K>,
    pool: P,
}

impl<M: Connector, K: Key, P: Home<M, K>> PooledConn<M, K, P> {
    pub(crate) fn new(pool: P, lease: Lease, key: Option<K>, conn: M::Conn) -> Self {
        PooledConn {
            conn: Some(conn),
            lease,
            key,
            pool,
        }
    }

    /// The key it was checked out under ([`get_keyed`](Pool::get_keyed)).
    pub fn key(&self) -> Option<&K> {
        self.key.as_ref()
    }

    /// Detaches the connection: it leaves the pool for good (the pool may open another in its
    /// place) and is yours to keep or close.
    pub fn take(mut self) -> M::Conn {
        let conn = self.conn.take();
        self.pool.pool().shared().detach(self.lease);
        match conn {
            Some(conn) => conn,
            None => unreachable!("a live guard holds its connection"),
        }
    }

    /// Gives the connection back to be closed (psycopg2's `putconn(conn, close=True)`).
    pub fn discard(mut self) {
        if let Some(conn) = self.conn.take() {
            let shared = self.pool.pool().shared();
            shared.give_back(self.lease, self.key.as_ref(), conn, true);
        }
    }
}

impl<M: Connector, K: Key, P: Home<M, K>> Deref for PooledConn<M, K, P> {
    type Target = M::Conn;

    fn deref(&self) -> &M::Conn {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a live guard holds its connection"),
        }
    }
}

impl<M: Connector, K: Key, P: Home<M, K>> DerefMut for PooledConn<M, K, P> {
    fn deref_mut(&mut self) -> &mut M::Conn {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a live guard holds its connection"),
        }
    }
}

impl<M: Connector, K: Key, P: Home<M, K>> Drop for PooledConn<M, K, P> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let shared = self.pool.pool().shared();
            shared.give_back(self.lease, self.key.as_ref(), conn, false);
        }
    }
}

impl<M: Connector, K: Key + fmt::Debug, P: Home<M, K>> fmt::Debug for PooledConn<M, K, P>
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
