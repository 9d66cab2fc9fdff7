//! The pool's deadlines that are minima over many entries — every waiter's deadline, every idle
//! connection's end of life, every borrower's leak threshold — kept rather than searched for (quinn-proto's `TimerTable`). The two
//! other deadlines (`max_idle` of the least recently used idle connection, the end of the open
//! backoff) are O(1) reads of state the pool keeps anyway (`Pool::poll_timeout`).

use crate::Time;

/// A kind of deadline.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The earliest deadline of a queued checkout.
    Wait = 0,
    /// The earliest end of life of an idle connection (`max_lifetime`).
    Lifetime = 1,
    /// The earliest moment a borrower not yet reported has held its connection `leak_after`.
    Leak = 2,
}

/// Invariant: once an input has returned, each entry equals what its kind's definition (on
/// [`Timer`]) gives for the pool's state. During an input an entry may be marked stale (the entry
/// that set it left); it is recomputed before the input returns (`assert_invariants` recomputes
/// both).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    at: [Option<Time>; 3],
    /// The entry that set a kind's minimum left: rescan before the input returns.
    stale: [bool; 3],
}

impl TimerTable {
    #[inline]
    pub(crate) fn get(&self, timer: Timer) -> Option<Time> {
        self.at[timer as usize]
    }

    #[inline]
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Time>) {
        self.at[timer as usize] = at;
    }

    /// A new entry arrived.
    #[inline]
    pub(crate) fn add(&mut self, timer: Timer, at: Option<Time>) {
        let slot = &mut self.at[timer as usize];
        if let Some(t) = at {
            *slot = Some(slot.map_or(t, |s| s.min(t)));
        }
    }

    /// An entry left: if it was the minimum, the minimum must be found anew.
    #[inline]
    pub(crate) fn remove(&mut self, timer: Timer, at: Option<Time>) {
        if at.is_some() && at == self.at[timer as usize] {
            self.stale[timer as usize] = true;
        }
    }

    /// Whether the entry must be recomputed; clears the mark.
    #[inline]
    pub(crate) fn take_stale(&mut self, timer: Timer) -> bool {
        core::mem::take(&mut self.stale[timer as usize])
    }

    /// The earliest.
    #[inline]
    pub(crate) fn next(&self) -> Option<Time> {
        min_opt(self.at[0], min_opt(self.at[1], self.at[2]))
    }

    /// Whether `timer` is the only entry marked stale.
    #[inline]
    pub(crate) fn only_stale(&self, timer: Timer) -> bool {
        let mut only = [false; 3];
        only[timer as usize] = true;
        self.stale == only
    }

    /// `timer`'s minimum found anew: `at`.
    #[inline]
    pub(crate) fn rearmed(&mut self, timer: Timer, at: Option<Time>) {
        self.at[timer as usize] = at;
        self.stale[timer as usize] = false;
    }

    /// Whether any entry is marked stale.
    #[inline]
    pub(crate) fn any_stale(&self) -> bool {
        self.stale[0] | self.stale[1] | self.stale[2]
    }
}

/// The earlier of two optional deadlines.
#[inline]
pub(crate) fn min_opt(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
