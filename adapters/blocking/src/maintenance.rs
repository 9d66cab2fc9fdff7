//! The background thread that acts on the core's deadlines: refills to `min` after an open
//! backoff, closes connections past their lifetime or idle too long, times out waiters.
//!
//! It holds only a `Weak` to the pool between ticks, sleeps on its own condvar until the next
//! deadline or until an input brings that deadline forward ([`Maintenance::rearm`]), and ends when
//! the pool is closed or dropped; both join it.

use sanspool_core::Time;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The shortest sleep between ticks: a deadline the core could not act on (it never should) must
/// not become a busy loop.
const FLOOR: Duration = Duration::from_millis(1);

/// The maintenance thread of one pool.
pub(crate) struct Maintenance {
    wake: Arc<Wake>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Wake {
    state: Mutex<WakeState>,
    cv: Condvar,
}

struct WakeState {
    /// Bumped whenever the deadline moves earlier: a sleeper that saw an older one re-ticks.
    generation: u64,
    stop: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Maintenance {
    pub(crate) fn new() -> Self {
        Maintenance {
            wake: Arc::new(Wake {
                state: Mutex::new(WakeState {
                    generation: 0,
                    stop: false,
                }),
                cv: Condvar::new(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Starts the thread: `tick` runs the pool's due work and returns when it is next due.
    pub(crate) fn start<T, F>(&self, target: Weak<T>, tick: F)
    where
        T: Send + Sync + 'static,
        F: Fn(&Arc<T>) -> Option<Instant> + Send + 'static,
    {
        let wake = Arc::clone(&self.wake);
        let spawned = thread::Builder::new()
            .name("sanspool-maint".into())
            .spawn(move || loop {
                let Some(seen) = wake.generation() else {
                    return;
                };
                let Some(pool) = target.upgrade() else {
                    return;
                };
                let next = tick(&pool);
                // If this was the last reference, the pool's drop runs here and stops this loop.
                drop(pool);
                let next = next.map(|t| t.max(Instant::now() + FLOOR));
                wake.sleep(seen, next);
            });
        // Without the thread (the OS refused one), deadlines are still met by the inputs that
        // follow: every input runs the core's rules. Nothing more to do.
        if let Ok(handle) = spawned {
            *lock(&self.thread) = Some(handle);
        }
    }

    /// The core's next deadline after an input: wakes the thread if it is earlier than the one the
    /// thread sleeps until (`alarm`).
    #[inline]
    pub(crate) fn rearm(&self, alarm: &mut Option<Time>, next: Option<Time>) {
        if sanspool_kit::sooner(next, *alarm) {
            *alarm = next;
            self.wake_up();
        }
    }

    #[inline(never)]
    fn wake_up(&self) {
        let mut state = lock(&self.wake.state);
        state.generation = state.generation.wrapping_add(1);
        self.wake.cv.notify_all();
    }

    /// Stops the thread and joins it (unless called on it: then it ends when this returns).
    pub(crate) fn stop(&self) {
        lock(&self.wake.state).stop = true;
        self.wake.cv.notify_all();
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl Wake {
    /// The current generation; `None` once stopped.
    fn generation(&self) -> Option<u64> {
        let state = lock(&self.state);
        (!state.stop).then_some(state.generation)
    }

    /// Sleeps until `until`, a stop, or a generation other than `seen`.
    fn sleep(&self, seen: u64, until: Option<Instant>) {
        let mut state = lock(&self.state);
        while !state.stop && state.generation == seen {
            state = match until {
                None => self.cv.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(t) => {
                    let now = Instant::now();
                    if now >= t {
                        return;
                    }
                    self.cv
                        .wait_timeout(state, t - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}
