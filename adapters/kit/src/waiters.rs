//! [`Waiters`]: the table of queued checkouts every driver keeps beside the core.

use sanspool_core::WaiterId;
use std::collections::{HashMap, VecDeque};

/// A driver's table of queued checkouts, by waiter id: what each driver keeps per checkout (the
/// blocking one a parking slot, the async one a waker slot). Ids are the core's arrival numbers, so the table is a
/// deque indexed from the oldest id it holds: a checkout queues at the back and is served (in
/// `Strict` order) from the front, without hashing; a settled checkout leaves it at once (its
/// outcome waits in its slot). A checkout that left out of order leaves a gap (`None`) until the
/// front passes it. A checkout that stays in line while many later ones come and go (with a
/// fairness bound, younger woken checkouts may claim before it) would hold the front back and
/// let the gaps pile up behind it: once the deque is mostly gaps, such entries move to a map of
/// their own, so the table stays as large as the checkouts in it.
pub struct Waiters<V> {
    /// The id of `entries[0]`.
    base: u64,
    entries: VecDeque<Option<V>>,
    /// How many of `entries` are not gaps.
    live: usize,
    /// Entries older than `base`, moved out of the deque's front.
    stragglers: HashMap<u64, V>,
}

/// Below this length the deque is never compacted, whatever its gaps.
const COMPACT_FROM: usize = 64;

impl<V> Waiters<V> {
    /// An empty table.
    pub fn new() -> Self {
        Waiters {
            base: 0,
            entries: VecDeque::new(),
            live: 0,
            stragglers: HashMap::new(),
        }
    }

    /// Enters a queued checkout.
    #[inline]
    pub fn insert(&mut self, id: WaiterId, entry: V) {
        let id = id.get();
        if self.entries.is_empty() {
            self.base = id;
        }
        let end = self.base + self.entries.len() as u64;
        if id == end {
            // The usual case: the newest waiter.
            self.entries.push_back(Some(entry));
            self.live += 1;
            return;
        }
        if id < self.base {
            // Not in arrival order (the core numbers waiters as they come, so not expected).
            self.stragglers.insert(id, entry);
            return;
        }
        let at = usize::try_from(id - self.base).unwrap_or(usize::MAX);
        if at >= self.entries.len() {
            self.entries.resize_with(at, || None);
            self.entries.push_back(Some(entry));
            self.live += 1;
        } else if self.entries[at].replace(entry).is_none() {
            self.live += 1;
        }
    }

    fn at(&self, id: WaiterId) -> Option<usize> {
        let at = id.get().checked_sub(self.base)?;
        usize::try_from(at).ok()
    }

    /// A queued checkout's entry.
    pub fn get(&self, id: WaiterId) -> Option<&V> {
        match self.at(id) {
            Some(at) => self.entries.get(at)?.as_ref(),
            None => self.stragglers.get(&id.get()),
        }
    }

    /// A queued checkout's entry, mutably.
    pub fn get_mut(&mut self, id: WaiterId) -> Option<&mut V> {
        match self.at(id) {
            Some(at) => self.entries.get_mut(at)?.as_mut(),
            None => self.stragglers.get_mut(&id.get()),
        }
    }

    /// Takes a checkout out of the table.
    #[inline]
    pub fn remove(&mut self, id: WaiterId) -> Option<V> {
        let Some(at) = self.at(id) else {
            return self.stragglers.remove(&id.get());
        };
        let entry = if at == 0 {
            // The usual case: the oldest waiter.
            self.base += 1;
            self.entries.pop_front()?
        } else {
            self.entries.get_mut(at)?.take()
        };
        if entry.is_some() {
            self.live -= 1;
        }
        self.trim();
        entry
    }

    /// Drops the gaps at the front; while the deque is mostly gaps, moves its front entries to
    /// the stragglers.
    fn trim(&mut self) {
        loop {
            match self.entries.front() {
                Some(None) => {}
                Some(Some(_))
                    if self.entries.len() >= COMPACT_FROM && self.live * 2 < self.entries.len() => {
                }
                _ => return,
            }
            if let Some(Some(entry)) = self.entries.pop_front() {
                self.stragglers.insert(self.base, entry);
                self.live -= 1;
            }
            self.base += 1;
        }
    }
}

impl<V> Default for Waiters<V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanspool_core::testkit::forge;

    /// Entries leave in any order; the table holds exactly those still in it, and stays small
    /// while one old entry lingers behind many that come and go.
    #[test]
    fn entries_come_and_go_in_any_order() {
        let mut table = Waiters::new();
        for id in 1..=10 {
            table.insert(forge::waiter(id), id);
        }
        for id in [5, 1, 10, 2] {
            assert_eq!(table.remove(forge::waiter(id)), Some(id));
            assert_eq!(table.remove(forge::waiter(id)), None);
        }
        for id in [3, 4, 6, 7, 8, 9] {
            assert_eq!(table.get(forge::waiter(id)), Some(&id));
        }
        // 3 stays while a thousand later ones are served.
        for id in 11..1_011 {
            table.insert(forge::waiter(id), id);
            assert_eq!(table.remove(forge::waiter(id)), Some(id));
        }
        assert!(
            table.entries.len() < COMPACT_FROM * 2,
            "{}",
            table.entries.len()
        );
        assert_eq!(table.remove(forge::waiter(3)), Some(3));
    }
}
