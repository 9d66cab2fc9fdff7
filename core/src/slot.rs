//! A slot: the place of one connection, whatever stage of its life it is in.

use crate::Time;

/// One place for a connection.
///
/// Not part of the public API (it appears only in the sealed [`Storage`](crate::Storage)'s
/// associated types). Invariants (checked by `Pool::assert_invariants`):
/// - a slot is in exactly one [`State`]; the pool's per-state counts match the slots;
/// - `queued` is set exactly while a command about this slot sits in the command queue; while it is
///   set, the handle in that command is not accepted back (the driver cannot have it yet);
/// - an `Idle` slot's index is in the idle queue exactly once, and no other slot's is;
/// - an `InUse` slot with a key is the one slot that key maps to.
#[derive(Debug)]
pub struct Slot<C, K> {
    pub(crate) gen: u32,
    pub(crate) state: State<C, K>,
    pub(crate) queued: bool,
    /// When the connection's lifetime ends (`None`: never).
    pub(crate) expires: Option<Time>,
    /// When it was last made idle (for `max_idle`).
    pub(crate) idle_since: Time,
    /// Its place in the order connections became idle (returns at the same instant included):
    /// the idle queue is sorted by it, and a checked connection goes back to its place by it.
    pub(crate) idle_seq: u64,
    /// The drain epoch it was opened in: older than the pool's means "retire on return".
    pub(crate) epoch: u32,
    /// The backoff round its open was ordered in: a failure from an older round was counted
    /// already.
    pub(crate) round: u32,
    /// Out for a vet on behalf of this checkout (which gets it if it passes and the checkout
    /// still waits); `None` for a check, or a vet whose checkout left.
    pub(crate) vet_for: Option<crate::WaiterId>,
    /// When it was last handed to a borrower (for `leak_after`), and in which order: reports of
    /// one `handle_timeout` come in checkout order.
    pub(crate) out_since: Time,
    pub(crate) out_seq: u64,
    /// Its borrower was reported for holding it past `leak_after`.
    pub(crate) leak_told: bool,
}

/// A slot's stage. Only `Idle` holds the connection itself: in every other stage it is with the
/// driver (being opened, reset, checked or closed) or with a borrower.
#[derive(Debug)]
pub enum State<C, K> {
    /// No connection.
    Free,
    /// An open was ordered; the connection does not exist yet.
    Opening,
    /// Held by the pool, ready to hand out.
    Idle(C),
    /// With a borrower, under an optional key.
    InUse(Option<K>),
    /// With the driver for a reset.
    Resetting,
    /// With the driver for a check or a vet: an idle connection on its way back, to the oldest
    /// waiter or to its old place among the idle.
    Checking,
    /// With the driver to be closed; still counts against `max` until reported closed.
    Closing,
}

impl<C, K> Slot<C, K> {
    pub(crate) fn free() -> Self {
        Slot {
            gen: 0,
            state: State::Free,
            queued: false,
            expires: None,
            idle_since: Time::ZERO,
            idle_seq: 0,
            epoch: 0,
            round: 0,
            vet_for: None,
            out_since: Time::ZERO,
            out_seq: 0,
            leak_told: false,
        }
    }

    pub(crate) fn key(&self) -> Option<&K> {
        match &self.state {
            State::InUse(key) => key.as_ref(),
            _ => None,
        }
    }
}

/// Per-stage slot counts, kept in step with every transition (`Pool::set_state`): one counter per
/// stage, indexed by [`State::stage`], so a transition is two array updates and no branch.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts([usize; 7]);

impl<C, K> State<C, K> {
    /// [`State::Free`]'s index in [`Counts`].
    pub(crate) const FREE: usize = 0;

    /// The stage's index in [`Counts`].
    pub(crate) fn stage(&self) -> usize {
        match self {
            State::Free => 0,
            State::Opening => 1,
            State::Idle(_) => 2,
            State::InUse(_) => 3,
            State::Resetting => 4,
            State::Closing => 5,
            State::Checking => 6,
        }
    }
}

impl Counts {
    /// A slot moved from stage `old` to stage `new`.
    pub(crate) fn moved(&mut self, old: usize, new: usize) {
        self.0[old] -= 1;
        self.0[new] += 1;
    }

    /// A slot was added in stage `stage`.
    pub(crate) fn add(&mut self, stage: usize) {
        self.0[stage] += 1;
    }

    pub(crate) fn opening(&self) -> usize {
        self.0[1]
    }
    pub(crate) fn idle(&self) -> usize {
        self.0[2]
    }
    pub(crate) fn in_use(&self) -> usize {
        self.0[3]
    }
    pub(crate) fn resetting(&self) -> usize {
        self.0[4]
    }
    pub(crate) fn closing(&self) -> usize {
        self.0[5]
    }
    pub(crate) fn checking(&self) -> usize {
        self.0[6]
    }

    /// Slots that hold or will hold a server connection: what `max` bounds.
    pub(crate) fn occupied(&self) -> usize {
        self.open() + self.opening() + self.closing()
    }

    /// Slots not on their way out: what a shrink brings down to `max`.
    pub(crate) fn live(&self) -> usize {
        self.occupied() - self.closing()
    }

    /// Connections that exist and are not on their way out: what `min` asks for.
    pub(crate) fn open(&self) -> usize {
        self.idle() + self.in_use() + self.resetting() + self.checking()
    }

    /// Connections on their way to the line: opening, idle (claimed, or sent for a vet), out
    /// for a check or a vet (each is granted to the oldest waiter when it comes back). A waiter
    /// beyond these has nothing coming for it.
    pub(crate) fn coming(&self) -> usize {
        self.opening() + self.idle() + self.checking()
    }
}

/// A queued checkout.
#[derive(Clone, Debug)]
pub struct Waiter<K> {
    pub(crate) id: crate::WaiterId,
    pub(crate) key: Option<K>,
    pub(crate) deadline: Option<Time>,
    /// Queued only for the open it triggered ([`Wait::No`](crate::Wait::No)): fails if an open fails.
    pub(crate) fail_fast: bool,
    pub(crate) since: Time,
    /// Woken ([`Handoff::Wake`](crate::Handoff::Wake)) to claim an idle connection, and has not
    /// claimed since.
    pub(crate) woken: bool,
    /// Queued when an idle connection could serve it, for that connection's vet
    /// ([`Config::vet`](crate::Config::vet)): it is not counted against `max_waiting`. (Only
    /// `assert_invariants` reads it back.)
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    pub(crate) for_vet: bool,
    /// An idle connection is out for a vet on its behalf: it gets that connection if it
    /// passes, and nothing else is sent or woken for it meanwhile.
    pub(crate) vetting: bool,
}
