//! The growable backend.

extern crate alloc;

use super::sealed::Backend;
use super::{Buffer, Holder, KeyIndex, Queue, Queued};
use crate::slot::{Slot, Waiter};
use crate::{Error, Handoff, Io, Lease, Time, WaiterId};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::hash::Hash;

/// Growable storage: `Vec` slots, `VecDeque` queues, a hashbrown key map. Capacity grows with `max`.
#[derive(Debug)]
pub enum Alloc {}

impl<C, K: Hash + Eq + Clone> Backend<C, K> for Alloc {
    type Slots = Vec<Slot<C, K>>;
    type Idle = VecDeque<u16>;
    type Waiters = VecDeque<Waiter<K>>;
    type Io = VecDeque<Io<C>>;
    type Grants = VecDeque<Queued<Handoff<C>>>;
    type Fails = VecDeque<Queued<(WaiterId, Error)>>;
    type Wakes = VecDeque<Queued<WaiterId>>;
    type Leaks = VecDeque<Queued<(Lease, Time)>>;
    type Keys = HashKeys<K>;
}

impl<T> Buffer<T> for Vec<T> {
    fn as_slice(&self) -> &[T] {
        self
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        self
    }
    fn push(&mut self, value: T) -> Result<(), T> {
        Vec::push(self, value);
        Ok(())
    }
    fn capacity(&self) -> usize {
        usize::MAX
    }
}

impl<T> Queue<T> for VecDeque<T> {
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
    fn capacity(&self) -> usize {
        usize::MAX
    }
    fn push_back(&mut self, value: T) -> Result<(), T> {
        VecDeque::push_back(self, value);
        Ok(())
    }
    fn pop_front(&mut self) -> Option<T> {
        VecDeque::pop_front(self)
    }
    fn pop_back(&mut self) -> Option<T> {
        VecDeque::pop_back(self)
    }
    fn get(&self, index: usize) -> Option<&T> {
        VecDeque::get(self, index)
    }
    fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        VecDeque::get_mut(self, index)
    }
    #[inline]
    fn remove(&mut self, index: usize) -> Option<T> {
        // The front is the usual case (the oldest waiter served): no shifting to do.
        if index == 0 {
            return VecDeque::pop_front(self);
        }
        VecDeque::remove(self, index)
    }
    fn insert(&mut self, index: usize, value: T) -> Result<(), T> {
        VecDeque::insert(self, index.min(self.len()), value);
        Ok(())
    }
}

/// Keys in a hash map: O(1) keyed checkout with any number of keys.
#[derive(Debug)]
pub struct HashKeys<K>(hashbrown::HashMap<K, Holder>);

impl<K> Default for HashKeys<K> {
    fn default() -> Self {
        HashKeys(hashbrown::HashMap::default())
    }
}

impl<K: Hash + Eq + Clone> KeyIndex<K> for HashKeys<K> {
    fn find<C>(&self, key: &K, _: &[Slot<C, K>], _: &impl Queue<Waiter<K>>) -> Option<Holder> {
        self.0.get(key).copied()
    }
    fn insert(&mut self, key: &K, holder: Holder) {
        match self.0.get_mut(key) {
            Some(h) => *h = holder,
            None => {
                self.0.insert(key.clone(), holder);
            }
        }
    }
    fn remove(&mut self, key: &K) {
        self.0.remove(key);
    }
    fn recorded(&self) -> Option<usize> {
        Some(self.0.len())
    }
}
