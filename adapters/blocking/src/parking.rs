//! Where one queued checkout waits for its grant or failure: a slot of its own, filled by the
//! drain that takes the core's `Grant` or `Fail`, so a hand-off wakes exactly its waiter.

use crate::driver::Outcome;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

/// Scheduler turns a waiter gives away before it sleeps.
const SPINS: usize = 32;

pub(crate) struct Parking<C, E> {
    outcome: Mutex<Option<Outcome<C, E>>>,
    cv: Condvar,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C, E> Parking<C, E> {
    pub(crate) fn new() -> Self {
        Parking {
            outcome: Mutex::new(None),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn deliver(&self, outcome: Outcome<C, E>) {
        *lock(&self.outcome) = Some(outcome);
        self.cv.notify_one();
    }

    /// The outcome, if it was delivered.
    pub(crate) fn take(&self) -> Option<Outcome<C, E>> {
        lock(&self.outcome).take()
    }

    /// Whether the outcome was delivered and not taken yet.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.outcome).is_none()
    }

    /// Waits for the outcome until `deadline`; `None` if it passed first.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<Outcome<C, E>> {
        // A grant often comes within a few scheduler turns: yield before sleeping on the condvar,
        // which costs a futex sleep and wake-up.
        for _ in 0..SPINS {
            if let Some(outcome) = self.take() {
                return Some(outcome);
            }
            thread::yield_now();
        }
        let mut slot = lock(&self.outcome);
        loop {
            if let Some(outcome) = slot.take() {
                return Some(outcome);
            }
            slot = match deadline {
                None => self.cv.wait(slot).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    let waited = self.cv.wait_timeout(slot, d - now);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
    }
}
