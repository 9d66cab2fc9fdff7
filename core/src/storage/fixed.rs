//! The fixed-capacity, allocation-free backend.

use super::sealed::Backend;
use super::{Buffer, Holder, KeyIndex, Queue, Queued};
use crate::slot::{Slot, State, Waiter};
use crate::{Error, Handoff, Io, Lease, Time, WaiterId};

/// Fixed storage for at most `SLOTS` connections and `WAITERS` queued checkouts, inline in the pool:
/// no heap, no allocator. `max` above `SLOTS` is [`Error::CapacityExceeded`]; the waiter bound is
/// `min(max_waiting, WAITERS)`.
#[derive(Debug)]
pub enum Fixed<const SLOTS: usize, const WAITERS: usize> {}

impl<C, K: Eq, const SLOTS: usize, const WAITERS: usize> Backend<C, K> for Fixed<SLOTS, WAITERS> {
    type Slots = heapless::Vec<Slot<C, K>, SLOTS>;
    type Idle = heapless::Deque<u16, SLOTS>;
    type Waiters = heapless::Deque<Waiter<K>, WAITERS>;
    type Io = heapless::Deque<Io<C>, SLOTS>;
    type Grants = heapless::Deque<Queued<Handoff<C>>, SLOTS>;
    type Fails = heapless::Deque<Queued<(WaiterId, Error)>, WAITERS>;
    type Wakes = heapless::Deque<Queued<WaiterId>, SLOTS>;
    type Leaks = heapless::Deque<Queued<(Lease, Time)>, SLOTS>;
    type Keys = ScanKeys;
}

impl<T, const N: usize> Buffer<T> for heapless::Vec<T, N> {
    fn as_slice(&self) -> &[T] {
        self
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        self
    }
    fn push(&mut self, value: T) -> Result<(), T> {
        heapless::Vec::push(self, value)
    }
    fn capacity(&self) -> usize {
        N
    }
}

impl<T, const N: usize> Queue<T> for heapless::Deque<T, N> {
    fn len(&self) -> usize {
        heapless::Deque::len(self)
    }
    fn capacity(&self) -> usize {
        N
    }
    fn push_back(&mut self, value: T) -> Result<(), T> {
        heapless::Deque::push_back(self, value)
    }
    fn pop_front(&mut self) -> Option<T> {
        heapless::Deque::pop_front(self)
    }
    fn pop_back(&mut self) -> Option<T> {
        heapless::Deque::pop_back(self)
    }
    fn get(&self, index: usize) -> Option<&T> {
        heapless::Deque::get(self, index)
    }
    fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        heapless::Deque::get_mut(self, index)
    }
    fn remove(&mut self, index: usize) -> Option<T> {
        // The front is the usual case (the oldest waiter served): no rotation.
        if index == 0 {
            return heapless::Deque::pop_front(self);
        }
        // Rotate once through the ring, dropping the one element: O(N) on a small N, order kept.
        let len = self.len();
        let mut removed = None;
        for i in 0..len {
            let v = heapless::Deque::pop_front(self)?;
            if i == index {
                removed = Some(v);
            } else if let Err(v) = heapless::Deque::push_back(self, v) {
                // Cannot happen (one slot was just freed); keep the value rather than lose it.
                removed = removed.or(Some(v));
            }
        }
        removed
    }
    fn insert(&mut self, index: usize, value: T) -> Result<(), T> {
        if self.is_full() {
            return Err(value);
        }
        // Rotate once through the ring, dropping the value in on the way: O(N), order kept.
        let len = self.len();
        let mut value = Some(value);
        for i in 0..len {
            if i == index {
                if let Some(v) = value.take() {
                    let _ = heapless::Deque::push_back(self, v);
                }
            }
            if let Some(v) = heapless::Deque::pop_front(self) {
                let _ = heapless::Deque::push_back(self, v);
            }
        }
        match value {
            Some(v) => heapless::Deque::push_back(self, v),
            None => Ok(()),
        }
    }
}

/// No index at all: a key is found by scanning the slots and waiters that record it. O(SLOTS +
/// WAITERS) per keyed checkout, which for the small capacities of the fixed backend beats hashing.
#[derive(Copy, Clone, Debug, Default)]
pub struct ScanKeys;

impl<K: Eq> KeyIndex<K> for ScanKeys {
    fn find<C>(
        &self,
        key: &K,
        slots: &[Slot<C, K>],
        waiters: &impl Queue<Waiter<K>>,
    ) -> Option<Holder> {
        let slot = slots
            .iter()
            .position(|s| matches!(&s.state, State::InUse(Some(k)) if k == key));
        if let Some(i) = slot {
            return u16::try_from(i).ok().map(Holder::Slot);
        }
        let w = waiters.position(|w| w.key.as_ref() == Some(key))?;
        waiters.get(w).map(|w| Holder::Waiter(w.id))
    }
    fn insert(&mut self, _: &K, _: Holder) {}
    fn remove(&mut self, _: &K) {}
    fn recorded(&self) -> Option<usize> {
        None
    }
}
