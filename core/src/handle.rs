//! Handles the core gives out: a lease for a checked-out connection, a ticket for a command in flight,
//! a waiter id for a queued checkout.
//!
//! A slot handle is `(pool tag, slot index, generation)`. The slot's generation changes on every state
//! change, so a handle is valid for exactly one state of one slot: a stale handle is detected, never
//! aliased to the connection that later occupies the same slot. The tag tells this pool's handles from
//! another pool's.

/// Identifies one checkout of one connection. Given back with the connection at checkin.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lease(pub(crate) SlotRef);

/// Identifies one operation the driver performs for the core: an open, a reset or check, a close.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(pub(crate) SlotRef);

/// Identifies one queued checkout. Its outcome arrives as [`Command::Grant`](crate::Command::Grant)
/// or [`Command::Fail`](crate::Command::Fail).
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
            /// The slot this handle refers to: stable for the slot's life, reused by later connections.
            pub fn slot(&self) -> usize {
                usize::from(self.0.index)
            }

            /// The tag of the pool that issued this handle ([`Config::tag`](crate::Config::tag)).
            pub fn pool_tag(&self) -> u32 {
                self.0.tag
            }

            /// Rebuilds a handle from its parts. Meant for fuzzers and tests that forge handles to
            /// check that the pool rejects them; a forged handle can never alias a live one unless
            /// it repeats the exact generation.
            pub fn from_parts(tag: u32, slot: u16, generation: u32) -> Self {
                Self(SlotRef {
                    tag,
                    index: slot,
                    gen: generation,
                })
            }

            /// The slot generation this handle was issued for.
            pub fn generation(&self) -> u32 {
                self.0.gen
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

    /// Rebuilds an id from its number (for drivers that keep ids outside the core, and for fuzzers).
    pub fn from_raw(n: u64) -> WaiterId {
        WaiterId(n)
    }
}
