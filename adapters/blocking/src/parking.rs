//! Where one queued checkout waits for its grant or failure: a slot of its own, filled by the
//! drain that takes the core's `Grant` or `Fail`, so a hand-off wakes exactly its waiter. A
//! `Wake` (a connection came back idle) rouses it to claim one.

use crate::driver::Outcome;
use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Instant;

/// Scheduler turns a waiter gives away before it sleeps: few, since the yields take the CPU the
/// server needs, and none makes every grant a futex wake-up (measured: `docs/tuning.md`).
const SPINS: usize = 8;

pub(crate) struct Parking<C, E> {
    slot: Mutex<Slot<C, E>>,
    cv: Condvar,
}

struct Slot<C, E> {
    outcome: Option<Outcome<C, E>>,
    woken: bool,
    /// On the condvar: only then is a notify (a futex syscall) needed.
    sleeping: bool,
}

/// Why a parked checkout stopped waiting.
pub(crate) enum Woke<C, E> {
    /// Its grant or failure.
    Outcome(Outcome<C, E>),
    /// A connection came back idle: claim it.
    Claim,
}

thread_local! {
    /// The slot this thread parked on last (an `Option<Arc<Parking<C, E>>>` of its pool's types),
    /// kept for its next wait: a thread waits for one checkout at a time, so a queued checkout
    /// allocates nothing. A thread that waits on pools of two kinds keeps the last one's.
    static SPARE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<C: 'static, E: 'static> Parking<C, E> {
    /// A slot to park on: this thread's spare, or a new one (the spare is in use by a wait further
    /// up this thread's stack, or of another kind, or the thread is exiting).
    pub(crate) fn for_this_thread() -> Arc<Self> {
        let spare = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            spare.as_mut()?.downcast_mut::<Option<Arc<Self>>>()?.take()
        });
        spare
            .ok()
            .flatten()
            .unwrap_or_else(|| Arc::new(Parking::new()))
    }

    /// Keeps `this` as the thread's spare, emptied, once nobody else holds it (its outcome was
    /// taken and the pool let go of it).
    pub(crate) fn keep_for_this_thread(mut this: Arc<Self>) {
        let Some(parking) = Arc::get_mut(&mut this) else {
            return;
        };
        let slot = parking
            .slot
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Slot::empty();
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            match spare
                .as_mut()
                .and_then(|s| s.downcast_mut::<Option<Arc<Self>>>())
            {
                Some(kept) => *kept = Some(this),
                // The first wait of this thread (or on a pool of another kind): one box, kept.
                None => *spare = Some(Box::new(Some(this))),
            }
        });
    }
}

impl<C, E> Slot<C, E> {
    fn empty() -> Self {
        Slot {
            outcome: None,
            woken: false,
            sleeping: false,
        }
    }
}

impl<C, E> Parking<C, E> {
    pub(crate) fn new() -> Self {
        Parking {
            slot: Mutex::new(Slot::empty()),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn deliver(&self, outcome: Outcome<C, E>) {
        let mut slot = lock(&self.slot);
        slot.outcome = Some(outcome);
        self.notify(slot);
    }

    pub(crate) fn wake(&self) {
        let mut slot = lock(&self.slot);
        slot.woken = true;
        self.notify(slot);
    }

    /// Wakes the waiter if it sleeps, after letting go of its slot: woken under the lock, it
    /// could find the lock still held and sleep on it again.
    fn notify(&self, slot: MutexGuard<'_, Slot<C, E>>) {
        let sleeping = slot.sleeping;
        drop(slot);
        if sleeping {
            self.cv.notify_one();
        }
    }

    /// The outcome, if it was delivered.
    pub(crate) fn take(&self) -> Option<Outcome<C, E>> {
        lock(&self.slot).outcome.take()
    }

    /// Whether the outcome was delivered and not taken yet.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.slot).outcome.is_none()
    }

    /// The outcome, or a wake-up, if either came (the outcome first).
    fn poll(slot: &mut Slot<C, E>) -> Option<Woke<C, E>> {
        if let Some(outcome) = slot.outcome.take() {
            return Some(Woke::Outcome(outcome));
        }
        std::mem::take(&mut slot.woken).then_some(Woke::Claim)
    }

    /// Waits for the outcome or a wake-up until `deadline`; `None` if it passed first.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<Woke<C, E>> {
        // A grant often comes within a few scheduler turns: yield before sleeping on the condvar,
        // which costs a futex sleep and wake-up.
        for _ in 0..SPINS {
            if let Some(woke) = Self::poll(&mut lock(&self.slot)) {
                return Some(woke);
            }
            thread::yield_now();
        }
        let mut slot = lock(&self.slot);
        loop {
            if let Some(woke) = Self::poll(&mut slot) {
                return Some(woke);
            }
            slot.sleeping = true;
            slot = match deadline {
                None => self.cv.wait(slot).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        slot.sleeping = false;
                        return None;
                    }
                    let waited = self.cv.wait_timeout(slot, d - now);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
            };
            slot.sleeping = false;
        }
    }
}
