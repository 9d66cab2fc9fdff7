//! What the pool is asked to keep: sizes, waiting, lifetimes, order.

use crate::Error;
use core::time::Duration;

/// Which idle connection a checkout gets.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum IdleOrder {
    /// The most recently returned (psycopg2): a warm connection, and the cold ones expire by `max_idle`.
    #[default]
    Lifo,
    /// The least recently returned: spreads use over every connection.
    Fifo,
}

/// How many returned connections stay idle.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum KeepIdle {
    /// Keep every returned connection (up to `max`); `max_idle` shrinks the pool back to `min`.
    #[default]
    UpToMax,
    /// psycopg2: a returned connection is kept only while fewer than `min` are idle, else closed.
    UpToMin,
}

/// Who gets a connection that comes back while checkouts wait: throughput against strict order
/// (Go's `sync.Mutex` modes, as a pool rule).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fairness {
    /// Every connection that comes back goes to the oldest waiter ([`Handoff::Grant`]): no
    /// checkout is ever served ahead of an older one, at the price of a hand-off (for a thread,
    /// a context switch) per checkin under contention.
    ///
    /// [`Handoff::Grant`]: crate::Handoff::Grant
    Strict,
    /// A connection a borrower gives back goes idle, and the oldest waiter not yet woken is
    /// woken ([`Handoff::Wake`]) to [`claim`](crate::Pool::claim) it; a checkout that is already
    /// running may take it first. Once the oldest waiter has waited this long it is served
    /// first: no waiter waits longer than the bound past the first connection that could have
    /// served it. A waiter served at the bound turns the line strict (Go's starvation mode:
    /// were running checkouts to go first again, they would push each waiter behind it to the
    /// bound too) until the line drains or a waiter is served in under half the bound. Opened
    /// and checked connections always go to the oldest waiter.
    ///
    /// [`Handoff::Wake`]: crate::Handoff::Wake
    Bounded(Duration),
}

impl Default for Fairness {
    /// A bound of 0.7 ms, a little under Go's starvation threshold (1 ms): the p99 wait is the
    /// bound plus the time the waiters that reached it together take to be served in turn
    /// (measured: `docs/tuning.md`).
    fn default() -> Fairness {
        Fairness::Bounded(Duration::from_micros(700))
    }
}

/// The pool's settings. [`Config::new`] gives the defaults; [`Config::psycopg2`] psycopg2's behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Connections kept open even when unused: opened at start, refilled after closes and failures.
    pub min: usize,
    /// The most connections that exist at once, counting those being opened and closed.
    pub max: usize,
    /// Spare connections kept idle (r2d2's and bb8's `min_idle`), as far as `max` allows: when
    /// fewer are idle or on their way, beyond what the waiting checkouts will take, more are
    /// opened; `max_idle` does not close the idle ones below it. Not more than `max`. (`min`
    /// counts connections open whether idle or not: psycopg2's `minconn`.)
    pub min_idle: usize,
    /// The most checkouts waiting at once; more get [`Error::TooManyWaiters`]. Unbounded by
    /// default (`usize::MAX`), as bb8, deadpool, psycopg_pool and HikariCP leave the line: the
    /// storage is then the only bound (none for the `Alloc` backend, the waiter capacity for
    /// [`Fixed`](crate::Fixed)).
    pub max_waiting: usize,
    /// How many returned connections stay idle.
    pub keep_idle: KeepIdle,
    /// Reopen connections to keep `min` open after closes, failed opens, expiry, a drain or a
    /// growing resize. `false` is psycopg2's pool: `min` is opened when the pool is made, and
    /// afterwards connections open only for checkouts.
    pub refill: bool,
    /// Idle order.
    pub idle_order: IdleOrder,
    /// Who gets a returned connection while checkouts wait.
    pub fairness: Fairness,
    /// A connection older than this is closed when idle or returned, and replaced down to `min`.
    /// A lifetime that would end past the end of [`Time`](crate::Time) never ends.
    pub max_lifetime: Option<Duration>,
    /// Each connection's lifetime is shortened by a pseudo-random part of this, so that connections
    /// opened together do not all expire together.
    pub lifetime_jitter: Duration,
    /// An idle connection unused for this long is closed while more than `min` are open.
    pub max_idle: Option<Duration>,
    /// A borrower that holds a connection this long is reported, once per checkout
    /// ([`Report::Leak`](crate::Report::Leak), counted in `Stats::leaks`): HikariCP's
    /// `leakDetectionThreshold`, for a guard forgotten or leaked. The connection stays with it.
    pub leak_after: Option<Duration>,
    /// The delay after a round of failed opens; doubled per round. A round is the opens that
    /// were under way together: when several fail at once (every waiter's open, against a server
    /// that is down or full), the backoff grows by one step, not one per open.
    pub backoff_initial: Duration,
    /// The longest delay between rounds of open retries: once the server is back, the pool
    /// serves again within this (plus the connect).
    pub backoff_max: Duration,
    /// Each delay is shortened by a pseudo-random part of up to a fifth of it, so that pools
    /// that failed together (every process of a service, when the database restarted) do not
    /// retry together.
    pub backoff_jitter: bool,
    /// Vet every idle connection before a checkout gets it: wherever the pool would hand one
    /// over (to a new checkout, a claim, a waiter past the fairness bound), the checkout waits
    /// in line instead and the connection goes out as an [`Io::Vet`](crate::Io::Vet) on its
    /// behalf (the driver's look at its socket, a hook, a round trip: the driver's choice); it
    /// is that checkout's by grant once it passes, and if it fails it is closed and the
    /// checkout is served by the rules as any waiter (the next idle one vetted for it, or woken
    /// to claim it). The fairness rules hold as without vetting. Connections handed over at
    /// checkin or just opened are not vetted (they were in use a moment ago).
    pub vet: bool,
    /// Seed for the lifetime jitter: the core has no entropy of its own.
    pub seed: u64,
    /// This pool's identity in every handle it issues, so a handle from another pool is refused.
    /// Drivers running several pools give each a distinct tag.
    pub tag: u32,
}

impl Config {
    /// `min..=max` connections; waits allowed (no bound on waiters but the storage's); LIFO;
    /// returned connections kept; fairness bounded at 0.7 ms; no lifetime limits; open retries
    /// backing off from 100 ms to 1 s, with jitter; no spare idle ones; no vetting.
    pub fn new(min: usize, max: usize) -> Config {
        Config {
            min,
            max,
            min_idle: 0,
            max_waiting: usize::MAX,
            keep_idle: KeepIdle::UpToMax,
            refill: true,
            idle_order: IdleOrder::Lifo,
            fairness: Fairness::default(),
            max_lifetime: None,
            lifetime_jitter: Duration::ZERO,
            max_idle: None,
            leak_after: None,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            backoff_jitter: true,
            vet: false,
            seed: 0x5eed,
            tag: 0,
        }
    }

    /// psycopg2's pool: `min` connections are opened when the pool is made and never refilled;
    /// returned connections beyond `min` idle are closed. Checkouts that do not wait
    /// ([`Wait::No`](crate::Wait::No)) then behave exactly like psycopg2's `getconn`.
    pub fn psycopg2(min: usize, max: usize) -> Config {
        Config {
            keep_idle: KeepIdle::UpToMin,
            refill: false,
            ..Config::new(min, max)
        }
    }

    /// Durations that would make the pool churn: a lifetime of zero (or eaten whole by its jitter)
    /// closes every connection as it opens; a zero backoff retries a failing server in a busy loop.
    pub(crate) fn check_timing(&self) -> Result<(), Error> {
        let lifetime_ok = self
            .max_lifetime
            .is_none_or(|d| !d.is_zero() && self.lifetime_jitter < d);
        if lifetime_ok && !self.backoff_initial.is_zero() {
            Ok(())
        } else {
            Err(Error::InvalidTiming)
        }
    }

    pub(crate) fn check_sizes(min: usize, max: usize, capacity: usize) -> Result<(), Error> {
        if max == 0 {
            Err(Error::MaxZero)
        } else if min > max {
            Err(Error::MinAboveMax)
        } else if max > capacity || max > usize::from(u16::MAX) {
            Err(Error::CapacityExceeded)
        } else {
            Ok(())
        }
    }
}
