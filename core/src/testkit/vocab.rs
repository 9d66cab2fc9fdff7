//! The one input vocabulary: a pool's configuration ([`Setup`]) and the inputs a driver can give
//! it ([`Op`]), in a form that fuzzers decode from bytes (`arbitrary`) and property tests generate
//! and shrink (proptest, through `proptest-derive`). [`Sim::step`](super::Sim::step) plays an op.
//!
//! Ops name handles by *picks* (the n-th one the driver holds, an old one, a forged one), never by
//! value, so every generated sequence is meaningful whatever the pool answered before.

use crate::{Config, Fairness, Finished, IdleOrder, KeepIdle, Returned};
use core::time::Duration;
use proptest::prelude::any;
use proptest::strategy::Strategy;
use proptest_derive::Arbitrary as Strategic;
use std::vec::Vec;

/// The tag of every pool the test kit builds: forged "foreign" handles carry another.
pub const TAG: u32 = 0x5a5a;

/// [`Setup::huge`]'s bit for a pool that does not refill `min`.
pub const NO_REFILL: u8 = 1 << 5;

/// [`Setup::huge`]'s bit for a pool that vets idle connections before use ([`Config::vet`]).
pub const VET: u8 = 1 << 6;

/// [`Setup::huge`]'s bit for a jittered open backoff ([`Config::backoff_jitter`]).
pub const BACKOFF_JITTER: u8 = 1 << 7;

/// A pool's configuration, in raw form ([`Setup::config`] reads it): any value is a
/// configuration, the refused ones included.
#[derive(arbitrary::Arbitrary, Strategic, Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// `% 6`.
    #[proptest(strategy = "0u8..4")]
    pub min: u8,
    /// `% 7` (0 is refused: `MaxZero`).
    #[proptest(strategy = "1u8..6")]
    pub max: u8,
    /// 0..=7 as is, above: 64.
    #[proptest(strategy = "proptest::prop_oneof![0u8..8, proptest::strategy::Just(255u8)]")]
    pub max_waiting: u8,
    /// [`IdleOrder::Fifo`] rather than LIFO.
    pub fifo: bool,
    /// [`KeepIdle::UpToMin`] (psycopg2) rather than up to max.
    pub up_to_min: bool,
    /// `max_lifetime` in ms.
    #[proptest(strategy = "proptest::option::weighted(0.3, 1u16..400)")]
    pub max_lifetime_ms: Option<u16>,
    /// Taken modulo the lifetime (a jitter not below it is refused: `InvalidTiming`).
    #[proptest(strategy = "0u16..100")]
    pub jitter_ms: u16,
    /// `max_idle` in ms.
    #[proptest(strategy = "proptest::option::weighted(0.3, 1u16..400)")]
    pub max_idle_ms: Option<u16>,
    /// 0 is refused (`InvalidTiming`).
    #[proptest(strategy = "1u16..50")]
    pub backoff_initial_ms: u16,
    /// `backoff_max` in ms.
    #[proptest(strategy = "1u16..400")]
    pub backoff_max_ms: u16,
    /// Bit 0: lifetime `Duration::MAX`; 1: jitter the largest accepted (lifetime - 1 ns; without a
    /// lifetime, `Duration::MAX`); 2: backoff_initial MAX; 3: backoff_max MAX; 4: max_idle MAX;
    /// 5: no refill of `min` (psycopg2's pool); 6: vetting ([`VET`]); 7: backoff jitter
    /// ([`BACKOFF_JITTER`]). (Bits here keep stored fuzz inputs' layout.)
    #[proptest(
        strategy = "proptest::prop_oneof![5 => proptest::strategy::Just(0u8), 3 => proptest::strategy::Just(NO_REFILL), 2 => proptest::strategy::Just(VET), 1 => proptest::strategy::Just(BACKOFF_JITTER), 1 => any::<u8>()]"
    )]
    pub huge: u8,
    /// Seed of the lifetime jitter.
    pub seed: u64,
    /// The fairness bound in ms ([`Fairness::Bounded`]); `None`: [`Fairness::Strict`].
    #[proptest(
        strategy = "proptest::option::weighted(0.8, proptest::prop_oneof![0u8..4, 100u8..=255])"
    )]
    pub bound_ms: Option<u8>,
    /// `leak_after` in ms.
    #[proptest(strategy = "proptest::option::weighted(0.3, 0u16..400)")]
    pub leak_ms: Option<u16>,
    /// `min_idle`, `% 4` (above `max`: refused).
    #[proptest(
        strategy = "proptest::prop_oneof![3 => proptest::strategy::Just(0u8), 1 => 1u8..4]"
    )]
    pub min_idle: u8,
}

impl Setup {
    /// `min..=max` with [`Config::new`]'s defaults otherwise (times in whole ms).
    pub fn new(min: u8, max: u8) -> Setup {
        Setup {
            min,
            max,
            max_waiting: 255,
            fifo: false,
            up_to_min: false,
            max_lifetime_ms: None,
            jitter_ms: 0,
            max_idle_ms: None,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            huge: 0,
            seed: 0x5eed,
            bound_ms: Some(1),
            leak_ms: None,
            min_idle: 0,
        }
    }

    /// The configuration this stands for.
    pub fn config(&self) -> Config {
        let ms = |v: u16| Duration::from_millis(u64::from(v));
        let huge = |bit: u8, d: Duration| {
            if self.huge & (1 << bit) != 0 {
                Duration::MAX
            } else {
                d
            }
        };
        let max_lifetime = self.max_lifetime_ms.map(|v| huge(0, ms(v)));
        let jitter = match max_lifetime {
            _ if self.huge & 2 == 0 => match self.max_lifetime_ms {
                Some(life) if life > 0 => ms(self.jitter_ms % life),
                _ => ms(self.jitter_ms),
            },
            Some(life) => life.saturating_sub(Duration::from_nanos(1)),
            None => Duration::MAX,
        };
        Config {
            max_waiting: match self.max_waiting {
                n @ 0..=7 => usize::from(n),
                _ => 64,
            },
            keep_idle: if self.up_to_min {
                KeepIdle::UpToMin
            } else {
                KeepIdle::UpToMax
            },
            idle_order: if self.fifo {
                IdleOrder::Fifo
            } else {
                IdleOrder::Lifo
            },
            max_lifetime,
            lifetime_jitter: jitter,
            max_idle: self.max_idle_ms.map(|v| huge(4, ms(v))),
            backoff_initial: huge(2, ms(self.backoff_initial_ms)),
            backoff_max: huge(3, ms(self.backoff_max_ms)),
            min_idle: usize::from(self.min_idle % 4),
            refill: self.huge & NO_REFILL == 0,
            vet: self.huge & VET != 0,
            backoff_jitter: self.huge & BACKOFF_JITTER != 0,
            leak_after: self.leak_ms.map(ms),
            fairness: match self.bound_ms {
                Some(b) => Fairness::Bounded(ms(u16::from(b))),
                None => Fairness::Strict,
            },
            seed: self.seed,
            tag: TAG,
            ..Config::new(usize::from(self.min % 6), usize::from(self.max % 7))
        }
    }
}

/// Which handle an input gives back.
#[derive(arbitrary::Arbitrary, Strategic, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    /// One the driver holds for this input (a lease in hand, an operation in progress), by index.
    #[proptest(weight = 12)]
    Live(u8),
    /// Any handle ever issued (stale, in hand, or of another kind), by index.
    #[proptest(weight = 2)]
    Old(u8),
    /// An old handle's parts with another pool's tag.
    Foreign(u8),
    /// A slot that does not exist.
    NoSlot,
    /// An old handle's slot with a generation never issued.
    FutureGen(u8),
    /// Any parts at all: (tag, slot, generation).
    #[proptest(weight = 0)]
    Raw(u32, u16, u32),
}

/// The key given at checkin.
#[derive(arbitrary::Arbitrary, Strategic, Copy, Clone, Debug, PartialEq, Eq)]
pub enum KeyArg {
    /// None.
    #[proptest(weight = 4)]
    NoKey,
    /// The key the connection was checked out with.
    #[proptest(weight = 4)]
    Own,
    /// This key (`% 4`).
    Key(#[proptest(strategy = "0u8..4")] u8),
}

/// Which waiter a cancel or a claim names.
#[derive(arbitrary::Arbitrary, Strategic, Copy, Clone, Debug, PartialEq, Eq)]
pub enum WPick {
    /// One still waiting (as far as the driver knows), by index.
    #[proptest(weight = 4)]
    Waiting(u8),
    /// Any waiter ever seen.
    Any(u8),
    /// Any number.
    #[proptest(weight = 0)]
    Raw(u64),
}

/// How long a checkout waits.
#[derive(arbitrary::Arbitrary, Strategic, Copy, Clone, Debug, PartialEq, Eq)]
pub enum WaitArg {
    /// psycopg2: not at all.
    #[proptest(weight = 4)]
    No,
    /// Milliseconds from now.
    #[proptest(weight = 4)]
    Until(#[proptest(strategy = "0u16..500")] u16),
    /// Until served.
    #[proptest(weight = 2)]
    Forever,
    /// A deadline already past.
    Past,
    /// `Time::from_nanos(u64::MAX)`.
    End,
}

/// The state a connection is checked in with.
#[derive(arbitrary::Arbitrary, Strategic, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Back {
    /// [`Returned::Clean`].
    #[proptest(weight = 4)]
    Clean,
    /// [`Returned::Dirty`].
    Dirty,
    /// [`Returned::Broken`].
    Broken,
    /// [`Returned::Close`].
    Close,
}

/// How a reset, check or close the test reports ended.
#[derive(arbitrary::Arbitrary, Strategic, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// [`Finished::Ok`].
    #[proptest(weight = 3)]
    Ok,
    /// [`Finished::Failed`].
    #[proptest(weight = 2)]
    Failed,
    /// [`Finished::Abandoned`].
    Abandoned,
}

impl From<Outcome> for Finished {
    fn from(o: Outcome) -> Finished {
        match o {
            Outcome::Ok => Finished::Ok,
            Outcome::Failed => Finished::Failed,
            Outcome::Abandoned => Finished::Abandoned,
        }
    }
}

impl From<Back> for Returned {
    fn from(b: Back) -> Returned {
        match b {
            Back::Clean => Returned::Clean,
            Back::Dirty => Returned::Dirty,
            Back::Broken => Returned::Broken,
            Back::Close => Returned::Close,
        }
    }
}

/// One input (times in milliseconds).
#[derive(arbitrary::Arbitrary, Strategic, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A checkout; key `% 4`.
    #[proptest(weight = 12)]
    Checkout {
        /// The key.
        #[proptest(strategy = "proptest::option::weighted(0.3, 0u8..4)")]
        key: Option<u8>,
        /// How long it waits.
        wait: WaitArg,
    },
    /// A checkin.
    #[proptest(weight = 10)]
    Checkin {
        /// The lease given.
        lease: Pick,
        /// The key given.
        key: KeyArg,
        /// The connection's state.
        back: Back,
    },
    /// The borrower keeps the connection.
    Detach {
        /// The lease given.
        lease: Pick,
    },
    /// A queued checkout claims an idle connection (after a wake, or not).
    #[proptest(weight = 3)]
    Claim {
        /// The waiter named.
        waiter: WPick,
    },
    /// A queued checkout gives up.
    #[proptest(weight = 2)]
    Cancel {
        /// The waiter named.
        waiter: WPick,
    },
    /// Drain up to `n` commands (0: all).
    #[proptest(weight = 4)]
    Poll {
        /// How many.
        #[proptest(strategy = "0u8..4")]
        n: u8,
    },
    /// A well-behaved driver catches up: drain everything, report every open, reset, check and
    /// close as done, drain again.
    #[proptest(weight = 6)]
    Serve,
    /// Report an open as succeeded.
    #[proptest(weight = 4)]
    Opened {
        /// The ticket given.
        ticket: Pick,
    },
    /// Report an open as failed.
    #[proptest(weight = 3)]
    OpenFailed {
        /// The ticket given.
        ticket: Pick,
        /// A failure that will repeat (bad credentials).
        #[proptest(strategy = "proptest::bool::weighted(0.2)")]
        permanent: bool,
    },
    /// Report a reset.
    #[proptest(weight = 2)]
    ResetDone {
        /// The ticket given.
        ticket: Pick,
        /// Whether it worked, failed, or was abandoned at the driver's bound.
        outcome: Outcome,
    },
    /// Report a check.
    CheckDone {
        /// The ticket given.
        ticket: Pick,
        /// Whether the connection works, does not, or the check was abandoned.
        outcome: Outcome,
    },
    /// Report a close.
    #[proptest(weight = 2)]
    CloseDone {
        /// The ticket given.
        ticket: Pick,
        /// Whether it went well, failed, or was abandoned (the connection is gone all the same).
        #[proptest(
            strategy = "proptest::prop_oneof![6 => proptest::strategy::Just(Outcome::Ok), 1 => proptest::strategy::Just(Outcome::Failed), 1 => proptest::strategy::Just(Outcome::Abandoned)]"
        )]
        outcome: Outcome,
    },
    /// The clock moves, no input.
    #[proptest(weight = 2)]
    Tick {
        /// How far.
        #[proptest(strategy = "0u16..300")]
        ms: u16,
    },
    /// The clock moves and `handle_timeout` runs.
    #[proptest(weight = 3)]
    Timeout {
        /// How far.
        #[proptest(strategy = "0u16..300")]
        ms: u16,
    },
    /// `handle_timeout` at `poll_timeout()`.
    #[proptest(weight = 3)]
    ToDeadline,
    /// `handle_timeout` in the past.
    Backwards {
        /// How far back.
        #[proptest(strategy = "0u16..300")]
        ms: u16,
    },
    /// The clock jumps to a few ms before the end of time.
    #[proptest(weight = 0)]
    FarFuture,
    /// `min % 6`, `max % 8`.
    Resize {
        /// New min.
        #[proptest(strategy = "0u8..4")]
        min: u8,
        /// New max.
        #[proptest(strategy = "0u8..7")]
        max: u8,
    },
    /// Retire every connection.
    Drain,
    /// Check every idle connection.
    CheckIdle,
    /// Close the pool.
    #[proptest(weight = 1)]
    Close,
}

/// A configuration and a run of inputs: one fuzz case.
#[derive(arbitrary::Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// The configuration.
    pub setup: Setup,
    /// The inputs.
    pub ops: Vec<Op>,
}

/// Cases of up to `len` ops, for property tests.
pub fn cases(len: usize) -> impl Strategy<Value = Case> {
    (
        any::<Setup>(),
        proptest::collection::vec(any::<Op>(), 0..len),
    )
        .prop_map(|(setup, ops)| Case { setup, ops })
}
