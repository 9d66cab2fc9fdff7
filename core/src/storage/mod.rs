//! Where the pool keeps its slots, queues and key index: the caller picks the backend (as in smoltcp),
//! the rules in [`Pool`](crate::Pool) are the same for both.
//!
//! - [`Alloc`] (feature `alloc`): growable `Vec`/`VecDeque`, keys in a hashbrown map.
//! - [`Fixed`]: heapless arrays sized by const parameters; no heap allocation at all, keys found by
//!   scanning the (small) slot and waiter arrays.
//!
//! The module is private: the container traits below are nameable only inside the crate, and
//! [`Storage`] is sealed, so these two backends are the only ones and their plumbing can change
//! without breaking anyone.

#[cfg(feature = "alloc")]
mod alloc;
mod fixed;

#[cfg(feature = "alloc")]
pub use self::alloc::Alloc;
pub use self::fixed::Fixed;

use crate::slot::{Slot, Waiter};
use crate::WaiterId;

/// A storage backend for a pool of connections `C` under keys `K`: [`Alloc`] or [`Fixed`].
///
/// Sealed, and nothing more than a name: the container types a backend uses belong to a
/// supertrait outside the public API, so no plumbing type can be named from outside.
pub trait Storage<C, K>: sealed::Backend<C, K> {}

impl<C, K, S: sealed::Backend<C, K>> Storage<C, K> for S {}

pub(crate) mod sealed {
    use super::{Buffer, KeyIndex, Queue, Queued};
    use crate::slot::{Slot, Waiter};
    use crate::{Error, Handoff, Io, Lease, Time, WaiterId};

    /// The container types one pool uses. Public only in name (this module is private), so
    /// [`Storage`](super::Storage) is sealed to the backends below.
    pub trait Backend<C, K> {
        /// Slot array (grows up to `max`, never shrinks: slot indices stay valid).
        type Slots: Buffer<Slot<C, K>> + Default;
        /// Idle slot indices, least recently returned at the front.
        type Idle: Queue<u16> + Default;
        /// Queued checkouts, oldest at the front.
        type Waiters: Queue<Waiter<K>> + Default;
        /// I/O about slots, in emission order. At most one command per slot (I/O or grant), so it
        /// never needs more room than the slot array.
        type Io: Queue<Io<C>> + Default;
        /// Grants, in emission order: the slot's one command too.
        type Grants: Queue<Queued<Handoff<C>>> + Default;
        /// Failed waiters awaiting their `Fail` command. A waiter keeps its place in
        /// `max_waiting` until drained, so this never needs more room than the waiter queue.
        type Fails: Queue<Queued<(WaiterId, Error)>> + Default;
        /// Waiters woken to claim an idle connection, awaiting their `Wake` command. A woken
        /// waiter is one of at most as many as there were idle connections when it was woken, so
        /// this never needs more room than the slot array.
        type Wakes: Queue<Queued<WaiterId>> + Default;
        /// Borrowers reported past `leak_after`, awaiting their `Leak` command: one per in-use
        /// slot at most (a checkin takes its report back), so the slot array's room.
        type Leaks: Queue<Queued<(Lease, Time)>> + Default;
        /// Key to holder index.
        type Keys: KeyIndex<K> + Default;
    }
}

/// A hand-off with its emission sequence number, so the three queues of hand-offs (grants,
/// failures, wakes) drain in one order.
#[derive(Debug)]
pub struct Queued<T> {
    pub(crate) seq: u64,
    pub(crate) item: T,
}

/// A growable array.
pub trait Buffer<T> {
    /// The elements.
    fn as_slice(&self) -> &[T];
    /// The elements, mutably.
    fn as_mut_slice(&mut self) -> &mut [T];
    /// Appends, or gives the value back when full.
    fn push(&mut self, value: T) -> Result<(), T>;
    /// The most elements it can hold.
    fn capacity(&self) -> usize;
}

/// A double-ended queue with removal by position.
pub trait Queue<T> {
    /// Number of elements.
    fn len(&self) -> usize;
    /// Whether empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The most elements it can hold.
    fn capacity(&self) -> usize;
    /// Appends at the back, or gives the value back when full.
    fn push_back(&mut self, value: T) -> Result<(), T>;
    /// Removes from the front.
    fn pop_front(&mut self) -> Option<T>;
    /// The element at `index` from the front, mutably.
    fn get_mut(&mut self, index: usize) -> Option<&mut T>;
    /// Removes from the back.
    fn pop_back(&mut self) -> Option<T>;
    /// The element at `index` from the front.
    fn get(&self, index: usize) -> Option<&T>;
    /// Removes the element at `index`, keeping the others in order.
    fn remove(&mut self, index: usize) -> Option<T>;
    /// Inserts at `index` (at most `len`), keeping the others in order, or gives the value back
    /// when full.
    fn insert(&mut self, index: usize, value: T) -> Result<(), T>;
    /// The position of the first element matching `f`.
    fn position(&self, mut f: impl FnMut(&T) -> bool) -> Option<usize> {
        (0..self.len()).find(|&i| self.get(i).is_some_and(&mut f))
    }
}

/// Who holds a key: an in-use slot or a queued checkout.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// The slot with this index.
    Slot(u16),
    /// The queued checkout.
    Waiter(WaiterId),
}

/// Finds a key's holder. The slots and waiters themselves record their keys, so an index may keep a
/// map ([`HashKeys`]) or nothing at all and search them ([`ScanKeys`]).
pub trait KeyIndex<K> {
    /// The holder of `key`.
    fn find<C>(
        &self,
        key: &K,
        slots: &[Slot<C, K>],
        waiters: &impl Queue<Waiter<K>>,
    ) -> Option<Holder>;
    /// Records that `holder` now holds `key` (replacing any previous holder).
    fn insert(&mut self, key: &K, holder: Holder);
    /// Forgets `key`.
    fn remove(&mut self, key: &K);
    /// How many keys are recorded, if this index records them (for `assert_invariants`).
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    fn recorded(&self) -> Option<usize>;
}
