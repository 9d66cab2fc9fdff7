//! What a thread that ends does for the pools: while its thread-locals are destroyed, entries
//! registered with [`at_exit`] run (a persistent pool gives the thread's connection back), and no
//! I/O may start on the thread ([`exiting`]).

use std::cell::{Cell, RefCell};

thread_local! {
    /// Set while this thread's exit entries run: no thread may be spawned then.
    static EXITING: Cell<bool> = const { Cell::new(false) };
    /// What runs when this thread ends.
    static AT_EXIT: RefCell<Vec<Box<dyn AtExit>>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread is ending (its thread-locals are being destroyed).
pub(crate) fn exiting() -> bool {
    EXITING.try_with(Cell::get).unwrap_or(true)
}

/// Something to do when this thread ends.
pub(crate) trait AtExit {
    /// What it is for (one entry per identity is kept).
    fn id(&self) -> *const ();
    /// Whether it still has anything to do.
    fn alive(&self) -> bool;
    /// Does it, with [`exiting`] true.
    fn run(&mut self);
}

/// Registers `entry` to be dropped when this thread ends, unless one with the same id is.
pub(crate) fn at_exit(entry: impl AtExit + 'static) {
    let _ = AT_EXIT.try_with(|entries| {
        let Ok(mut entries) = entries.try_borrow_mut() else {
            return;
        };
        entries.retain(|e| e.alive());
        if !entries.iter().any(|e| e.id() == entry.id()) {
            entries.push(Box::new(Exiting(entry)));
        }
    });
}

/// Runs the entry when dropped (with the thread's locals), with [`exiting`] set.
struct Exiting<E: AtExit>(E);

impl<E: AtExit> AtExit for Exiting<E> {
    fn id(&self) -> *const () {
        self.0.id()
    }

    fn alive(&self) -> bool {
        self.0.alive()
    }

    fn run(&mut self) {
        self.0.run();
    }
}

impl<E: AtExit> Drop for Exiting<E> {
    fn drop(&mut self) {
        let _ = EXITING.try_with(|e| e.set(true));
        self.0.run();
        let _ = EXITING.try_with(|e| e.set(false));
    }
}
