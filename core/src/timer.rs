//! The pool's deadlines, kept rather than searched for (quinn-proto's `TimerTable`): one entry per
//! kind of deadline, so the next wake-up is a minimum over four values.

use crate::Time;

/// A kind of deadline.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The earliest deadline of a queued checkout.
    Wait = 0,
    /// The earliest end of life of an idle connection (`max_lifetime`).
    Lifetime = 1,
    /// When the least recently used idle connection has idled for `max_idle` (while above `min`).
    Idle = 2,
    /// The end of the open backoff, while an open is wanted and there is room for it.
    Backoff = 3,
}

/// Invariant: each entry equals what its kind's definition (on [`Timer`]) gives for the pool's
/// state once an input has settled, except that `Wait` and `Lifetime` may be marked stale, and
/// then are recomputed before the input returns (`assert_invariants` recomputes all four).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    at: [Option<Time>; 4],
    /// The entry that set `Wait` or `Lifetime` left: rescan before the input returns.
    stale: [bool; 2],
}

impl TimerTable {
    pub(crate) fn get(&self, timer: Timer) -> Option<Time> {
        self.at[timer as usize]
    }

    pub(crate) fn set(&mut self, timer: Timer, at: Option<Time>) {
        self.at[timer as usize] = at;
    }

    /// A new entry of a kept-minimum kind (`Wait`, `Lifetime`) arrived.
    pub(crate) fn add(&mut self, timer: Timer, at: Option<Time>) {
        let slot = &mut self.at[timer as usize];
        if let Some(t) = at {
            *slot = Some(slot.map_or(t, |s| s.min(t)));
        }
    }

    /// An entry of a kept-minimum kind left: if it was the minimum, the minimum must be found anew.
    pub(crate) fn remove(&mut self, timer: Timer, at: Option<Time>) {
        if at.is_some() && at == self.at[timer as usize] {
            self.stale[timer as usize] = true;
        }
    }

    /// Whether a kept-minimum entry must be recomputed; clears the mark.
    pub(crate) fn take_stale(&mut self, timer: Timer) -> bool {
        core::mem::take(&mut self.stale[timer as usize])
    }

    /// The next deadline.
    pub(crate) fn next(&self) -> Option<Time> {
        let [a, b, c, d] = self.at;
        min_opt(min_opt(a, b), min_opt(c, d))
    }
}

fn min_opt(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
