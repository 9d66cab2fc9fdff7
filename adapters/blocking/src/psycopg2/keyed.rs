//! psycopg2's keyed checkouts: [`Keyed`], the part every psycopg2 pool shares — the pool, and the
//! handles `getconn(key)` gave out, held under their keys until `putconn` — and [`Handle`], one
//! checkout shared by the handle's clones.

use super::PutError;
use crate::shared::{Checked, Shared};
use crate::{Connector, CoreError, GetError, Key, Pool};
use sanspool_core::{Lease, Rejected, Returned};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, TryLockError, Weak};

/// One psycopg2 checkout: the connection (`None` once given back) and where it goes back.
pub(crate) struct Handle<M: Connector, K: Key> {
    /// A std mutex: poisoned by a holder that panicked (`Conn::lock` says so).
    pub(crate) conn: Mutex<Option<M::Conn>>,
    pub(crate) lease: Lease,
    pub(crate) key: Option<K>,
    pool: Weak<Shared<M, K>>,
}

/// The handles checked out under a key: `getconn(key)` again gives the same one until `putconn`.
type Held<M, K> = Mutex<HashMap<K, Arc<Handle<M, K>>>>;

/// A psycopg2 pool's state: the pool, and its keyed handles (shared by the psycopg2 pool's
/// clones; a psycopg2 pool made from a [`Pool`] has keyed handles of its own).
pub(crate) struct Keyed<M: Connector, K: Key> {
    // Declared first, so dropped first: the handles only this holds give their connections
    // back while the pool is still there.
    held: Arc<Held<M, K>>,
    pub(crate) pool: Pool<M, K>,
}

/// A connection whose holder panicked may be anywhere in its session: never reused as it is.
fn poisoned_is_dirty(returned: Returned, poisoned: bool) -> Returned {
    match returned {
        Returned::Clean if poisoned => Returned::Dirty,
        other => other,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<M: Connector, K: Key> Keyed<M, K> {
    pub(crate) fn new(pool: Pool<M, K>) -> Self {
        Keyed {
            held: Arc::default(),
            pool,
        }
    }

    /// psycopg2's `getconn(key)`: the key's handle if it has one, else a new handle (held under
    /// its key until `putconn`).
    pub(crate) fn getconn(&self, key: Option<K>) -> Result<Arc<Handle<M, K>>, GetError<M::Error>> {
        let shared = self.pool.shared();
        match shared.checkout(key.clone(), shared.settings.timeout)? {
            Checked::Held(lease) => match key.and_then(|k| lock(&self.held).get(&k).cloned()) {
                Some(handle) if handle.lease == lease => Ok(handle),
                // Held by a guard, or by a getconn still on its way out.
                _ => Err(GetError::KeyBusy),
            },
            Checked::Conn(lease, conn) => {
                let handle = Arc::new(Handle {
                    conn: Mutex::new(Some(conn)),
                    lease,
                    key: key.clone(),
                    pool: Arc::downgrade(shared),
                });
                if let Some(key) = key {
                    let replaced = lock(&self.held).insert(key, Arc::clone(&handle));
                    drop(replaced);
                }
                Ok(handle)
            }
        }
    }

    /// psycopg2's `putconn(conn, key, close)`; `local`: see [`put_back`].
    pub(crate) fn putconn(
        &self,
        handle: &Handle<M, K>,
        key: Option<&K>,
        close: bool,
        local: bool,
    ) -> Result<(), PutError> {
        put_back(self.pool.shared(), &self.held, handle, key, close, local)
    }

    /// The handle held for `key`, if a `getconn(key)` holds one.
    pub(crate) fn held(&self, key: &K) -> Option<Arc<Handle<M, K>>> {
        lock(&self.held).get(key).cloned()
    }

    /// psycopg2's `closeall()`: the pool closes; the handles held only under their keys give
    /// their connections back now (to be closed); returns once those closes and the idle
    /// connections' are done.
    pub(crate) fn closeall(&self) -> Result<(), CoreError> {
        let shared = self.pool.shared();
        shared.close()?;
        let handles = std::mem::take(&mut *lock(&self.held));
        drop(handles);
        shared.wait_closed();
        Ok(())
    }

    /// What gives `key`'s connection back when a thread ends (a persistent pool's): holds the
    /// handles weakly.
    pub(crate) fn give_back_later(&self, key: K) -> GiveBack<M, K> {
        GiveBack {
            held: Arc::downgrade(&self.held),
            key,
        }
    }
}

impl<M: Connector, K: Key> Clone for Keyed<M, K> {
    fn clone(&self) -> Self {
        Keyed {
            held: Arc::clone(&self.held),
            pool: self.pool.clone(),
        }
    }
}

/// Takes the connection out of `handle` and checks it in (closed if `close`); the key forgets
/// the handle once the connection is back. Waits while another clone holds the handle's lock —
/// unless `local` (one thread: the lock can only be this thread's, [`PutError::Borrowed`]).
fn put_back<M: Connector, K: Key>(
    shared: &Arc<Shared<M, K>>,
    held: &Held<M, K>,
    handle: &Handle<M, K>,
    key: Option<&K>,
    close: bool,
    local: bool,
) -> Result<(), PutError> {
    if !std::ptr::eq(handle.pool.as_ptr(), Arc::as_ptr(shared)) {
        return Err(PutError::Foreign);
    }
    let locked = if local {
        match handle.conn.try_lock() {
            Err(TryLockError::WouldBlock) => return Err(PutError::Borrowed),
            Err(TryLockError::Poisoned(poison)) => Err(poison),
            Ok(slot) => Ok(slot),
        }
    } else {
        handle.conn.lock()
    };
    let (taken, poisoned) = match locked {
        Ok(mut slot) => (slot.take(), false),
        Err(poison) => (poison.into_inner().take(), true),
    };
    let Some(mut conn) = taken else {
        return Err(PutError::AlreadyReturned);
    };
    let returned = poisoned_is_dirty(shared.settings.judge(&mut conn, close), poisoned);
    let back = shared.checkin(handle.lease, key, conn, returned);
    if matches!(back, Ok(()) | Err(Rejected { conn: None, .. })) {
        if let Some(k) = &handle.key {
            let mut held = lock(held);
            if held.get(k).is_some_and(|h| h.lease == handle.lease) {
                let forgotten = held.remove(k);
                drop(held);
                // Dropped outside the lock: it holds nothing now.
                drop(forgotten);
            }
        }
    }
    match back {
        Ok(()) => Ok(()),
        Err(Rejected { error, conn }) => {
            if let Some(conn) = conn {
                *lock(&handle.conn) = Some(conn);
            }
            Err(PutError::from_core(error))
        }
    }
}

/// Gives a thread's keyed connection back (at the thread's end: [`crate::thread_exit`]).
pub(crate) struct GiveBack<M: Connector, K: Key> {
    held: Weak<Held<M, K>>,
    key: K,
}

impl<M: Connector, K: Key> crate::thread_exit::AtExit for GiveBack<M, K> {
    fn id(&self) -> *const () {
        self.held.as_ptr().cast()
    }

    fn alive(&self) -> bool {
        self.held.strong_count() > 0
    }

    fn run(&mut self) {
        let Some(held) = self.held.upgrade() else {
            return;
        };
        let handle = lock(&held).get(&self.key).cloned();
        if let Some(handle) = handle {
            if let Some(shared) = handle.pool.upgrade() {
                let _ = put_back(&shared, &held, &handle, Some(&self.key), false, false);
            }
        }
    }
}

impl<M: Connector, K: Key> Drop for Handle<M, K> {
    /// The last clone of a handle gives its connection back; a thread panicked holding it
    /// (`poisoned`): it is reset at least.
    fn drop(&mut self) {
        let poisoned = self.conn.is_poisoned();
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut conn) = conn {
            match self.pool.upgrade() {
                Some(pool) => {
                    let judged = pool.settings.judge(&mut conn, false);
                    pool.give_back_as(self.lease, None, conn, poisoned_is_dirty(judged, poisoned));
                }
                None => drop(conn),
            }
        }
    }
}
