//! What the async pool keeps per queued checkout and per drain: a checkout's [`Slot`] (where its
//! task's waker waits, then its outcome) and a drain's leftovers ([`Drained`]: the tasks to wake
//! and the I/O to spawn once the lock is released).

use crate::Connector;
use parking_lot::Mutex;
use sanspool_core::Io;
use std::sync::Arc;
use std::task::Waker;

/// What a queued checkout receives.
pub(crate) type OutcomeOf<M> =
    sanspool_kit::Outcome<<M as Connector>::Conn, <M as Connector>::Error>;

/// Where a queued checkout stands, in its [`Slot`]. Changed by the pool under its lock (then the
/// slot's), or by the checkout's own future under the slot's lock alone: to take its outcome, or
/// to leave a newer waker.
pub(crate) enum Entry<M: Connector> {
    /// In line: the waker of the task awaiting it (`None` until its future's first poll leaves
    /// it: a waker is cloned there, not under the pool's lock).
    Queued(Option<Waker>),
    /// Woken ([`Handoff::Wake`]), its waker spent: it will lock the pool and claim.
    Woken,
    /// Served or failed: the outcome waits here for its task (woken when it was settled).
    Settled(OutcomeOf<M>),
    /// The outcome was taken (or the slot is spare).
    Done,
}

impl<M: Connector> Entry<M> {
    /// The outcome, if settled (the entry is then done).
    pub(crate) fn take_settled(&mut self) -> Option<OutcomeOf<M>> {
        if !matches!(self, Entry::Settled(_)) {
            return None;
        }
        match std::mem::replace(self, Entry::Done) {
            Entry::Settled(outcome) => Some(outcome),
            _ => None,
        }
    }
}

/// A queued checkout's cell, shared by its `get()` future and, while the checkout is in line, the
/// pool's table. A settled outcome is left here, so the woken task takes it without the pool's
/// lock (which two threads would otherwise contend for three times per queued checkout), and
/// the future finds it here if it is dropped instead: nothing the pool hands out is in flight
/// outside a lock. Slots are reused (the guard of a checkout that queued brings its slot back to
/// the pool at checkin): a queued checkout allocates nothing once the pool is warm.
pub(crate) struct Slot<M: Connector>(pub(crate) Mutex<Entry<M>>);

/// Spare slots the pool keeps at most (more waiters than this at once allocate the rest).
pub(crate) const SPARE_SLOTS: usize = 256;

/// What a queued checkout's future gives: its outcome, and its slot to give back.
pub(crate) type Served<M> = (OutcomeOf<M>, Arc<Slot<M>>);

/// What a drain leaves to do once the lock is released: the tasks of settled or woken checkouts
/// to wake (waking may unpark a worker thread: a syscall the lock need not be held across), and
/// the I/O to spawn. The first waker has a place of its own and the rest is boxed, so the usual
/// drain (none, or one grant) allocates nothing and is two words to move.
pub(crate) struct Drained<C> {
    pub(crate) first: Option<Waker>,
    pub(crate) rest: Option<Box<Rest<C>>>,
}

/// A drain's wakers after the first, and its I/O.
pub(crate) struct Rest<C> {
    pub(crate) more: Vec<Waker>,
    pub(crate) io: Vec<Io<C>>,
}

impl<C> Drained<C> {
    pub(crate) fn none() -> Self {
        Drained {
            first: None,
            rest: None,
        }
    }

    pub(crate) fn rest(&mut self) -> &mut Rest<C> {
        self.rest.get_or_insert_with(|| {
            Box::new(Rest {
                more: Vec::new(),
                io: Vec::new(),
            })
        })
    }

    pub(crate) fn wake(&mut self, waker: Waker) {
        if self.first.is_none() {
            self.first = Some(waker);
        } else {
            self.rest().more.push(waker);
        }
    }

    /// Takes the I/O out, to be run by the caller.
    pub(crate) fn take_io(&mut self) -> Vec<Io<C>> {
        self.rest
            .as_mut()
            .map(|rest| std::mem::take(&mut rest.io))
            .unwrap_or_default()
    }
}
