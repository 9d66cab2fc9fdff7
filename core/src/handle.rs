//! Handles the core gives out: a lease for a checked-out connection, a ticket for a command in flight,
//! a waiter id for a queued checkout.
//!
//! A slot handle is `(pool tag, slot index, generation)`. The slot's generation changes on every state
//! change, so a handle is valid for exactly one state of one slot: a stale handle is detected, never
//! aliased to the connection that later occupies the same slot. The tag tells this pool's handles from
//! another pool's. Handles cannot be made outside the core (the test kit forges them to check that
//! the pool refuses them).

/// Identifies one checkout of one connection. Given back with the connection at checkin.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lease(pub(crate) SlotRef);

/// Identifies one operation the driver performs for the core: an open, a reset or check, a close.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(pub(crate) SlotRef);

/// Identifies one queued checkout. Its outcome arrives as [`Handoff::Grant`](crate::Handoff::Grant)
/// or [`Handoff::Fail`](crate::Handoff::Fail).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaiterId(pub(crate) u64);

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SlotRef {
    pub(crate) tag: u32,
    pub(crate) index: u16,
    pub(crate) gen: u32,
}

macro_rules! slot_handle {
    ($t:ty) => {
        impl $t {
            /// The slot this handle refers to: stable for the slot's life, reused by later
            /// connections. A driver may index its own per-connection data by it.
            pub fn slot(&self) -> usize {
                usize::from(self.0.index)
            }
        }
    };
}
slot_handle!(Lease);
slot_handle!(Ticket);

impl WaiterId {
    /// The waiter's sequence number: waiters are numbered in arrival order, from 0.
    pub fn get(self) -> u64 {
        self.0
    }
}
