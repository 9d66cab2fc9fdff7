//! psycopg2's connection objects: shareable handles to one checkout, given back by `putconn`.

use super::keyed::Handle;
use crate::{Connector, Key};
use sanspool_core::Error as Core;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::sync::{Arc, MutexGuard, TryLockError};

/// psycopg2's connection object for the threaded and persistent pools: a shareable handle
/// (cloning gives the same connection). [`lock`](Conn::lock) it to use the connection.
///
/// Given back by `putconn`, or when its last clone is dropped (a keyed handle is held by the pool
/// until `putconn`).
pub struct Conn<M: Connector, K: Key = u64>(pub(crate) Arc<Handle<M, K>>);

/// psycopg2's connection object for the [`SimpleConnectionPool`](super::SimpleConnectionPool): a
/// [`Conn`] that stays on its thread (`!Send`). [`borrow_mut`](LocalConn::borrow_mut) it to use the
/// connection.
pub struct LocalConn<M: Connector, K: Key = u64> {
    pub(crate) handle: Arc<Handle<M, K>>,
    local: PhantomData<Rc<()>>,
}

/// A locked [`Conn`] or borrowed [`LocalConn`]: derefs to the connection.
pub struct ConnGuard<'a, M: Connector>(MutexGuard<'a, Option<M::Conn>>);

/// Why a handle's connection cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// It was given back (`putconn`).
    Returned,
    /// A thread panicked while it held this connection locked: the session may be anywhere
    /// (mid-transaction, mid-request). Give the handle back with `putconn` — it is reset, or
    /// closed — and check out another.
    Poisoned,
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Returned => fmt::Display::fmt(&Core::AlreadyReturned, f),
            LockError::Poisoned => {
                f.write_str("a thread panicked holding this connection: put it back, take another")
            }
        }
    }
}

impl std::error::Error for LockError {}

fn guard<M: Connector>(
    slot: MutexGuard<'_, Option<M::Conn>>,
) -> Result<ConnGuard<'_, M>, LockError> {
    match *slot {
        Some(_) => Ok(ConnGuard(slot)),
        None => Err(LockError::Returned),
    }
}

impl<M: Connector, K: Key> Conn<M, K> {
    /// Locks the handle for use of the connection (blocks while another clone has it locked).
    /// [`LockError::Returned`] once it was given back; [`LockError::Poisoned`] if a thread
    /// panicked holding it (its session may be inside that thread's transaction).
    pub fn lock(&self) -> Result<ConnGuard<'_, M>, LockError> {
        guard(self.0.conn.lock().map_err(|_| LockError::Poisoned)?)
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

impl<M: Connector, K: Key> LocalConn<M, K> {
    pub(crate) fn new(handle: Arc<Handle<M, K>>) -> Self {
        LocalConn {
            handle,
            local: PhantomData,
        }
    }

    /// Borrows the connection. [`LockError::Returned`] once it was given back.
    ///
    /// # Panics
    /// If it is already borrowed (as `RefCell::borrow_mut`).
    pub fn borrow_mut(&self) -> Result<ConnGuard<'_, M>, LockError> {
        match self.handle.conn.try_lock() {
            Ok(slot) => guard(slot),
            // A panic while borrowed does not spoil a single-threaded handle (a `RefCell` would
            // not remember it either): the pool judges the connection when it comes back.
            Err(TryLockError::Poisoned(poison)) => {
                self.handle.conn.clear_poison();
                guard(poison.into_inner())
            }
            Err(TryLockError::WouldBlock) => panic!("already borrowed: BorrowMutError"),
        }
    }

    /// The key it was checked out under.
    pub fn key(&self) -> Option<&K> {
        self.handle.key.as_ref()
    }

    /// Whether both handles are the same connection checkout (psycopg2's `conn1 is conn2`).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.handle, &other.handle)
    }
}

impl<M: Connector, K: Key> Drop for LocalConn<M, K> {
    fn drop(&mut self) {
        // As in `borrow_mut`: a panic while borrowed does not make the connection dirty.
        self.handle.conn.clear_poison();
    }
}

impl<M: Connector, K: Key> Clone for Conn<M, K> {
    fn clone(&self) -> Self {
        Conn(Arc::clone(&self.0))
    }
}

impl<M: Connector, K: Key> Clone for LocalConn<M, K> {
    fn clone(&self) -> Self {
        LocalConn::new(Arc::clone(&self.handle))
    }
}

fn debug<M: Connector, K: Key + fmt::Debug>(
    name: &str,
    handle: &Handle<M, K>,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    f.debug_struct(name)
        .field("key", &handle.key)
        .field("slot", &handle.lease.slot())
        .finish_non_exhaustive()
}

impl<M: Connector, K: Key + fmt::Debug> fmt::Debug for Conn<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug("Conn", &self.0, f)
    }
}

impl<M: Connector, K: Key + fmt::Debug> fmt::Debug for LocalConn<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug("LocalConn", &self.handle, f)
    }
}

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
