//! What a thread that ends does for the pools: a persistent pool's connection held by the thread
//! is given back then (psycopg2 leaks it), and while that runs no I/O may start on the thread.

use crate::shared::Shared;
use crate::{Connector, Key};
use std::cell::{Cell, RefCell};
use std::sync::{Arc, Weak};

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
struct GiveBack<M: Connector, K: Key> {
    pool: Weak<Shared<M, K>>,
    key: K,
}

impl<M: Connector, K: Key> AtExit for GiveBack<M, K> {
    fn pool(&self) -> *const () {
        self.pool.as_ptr().cast()
    }

    fn alive(&self) -> bool {
        self.pool.strong_count() > 0
    }
}

impl<M: Connector, K: Key> Drop for GiveBack<M, K> {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let _ = EXITING.try_with(|e| e.set(true));
            pool.give_back_key(&self.key);
            let _ = EXITING.try_with(|e| e.set(false));
        }
    }
}

/// When this thread ends, the connection `shared` holds under `key` (if any) goes back to it.
/// Registered once per pool.
pub(crate) fn give_back_at_exit<M: Connector, K: Key>(shared: &Arc<Shared<M, K>>, key: K) {
    let _ = AT_EXIT.try_with(|entries| {
        let Ok(mut entries) = entries.try_borrow_mut() else {
            return;
        };
        entries.retain(|e| e.alive());
        let id = Arc::as_ptr(shared).cast();
        if !entries.iter().any(|e| e.pool() == id) {
            entries.push(Box::new(GiveBack {
                pool: Arc::downgrade(shared),
                key,
            }));
        }
    });
}
