//! Counters and gauges, read at any time with [`Pool::stats`](crate::Pool::stats).

use core::time::Duration;

/// A snapshot of the pool. Gauges describe now; counters add up since the pool was made.
// `repr(C)`, the three counters every served checkout writes first: the pool keeps its counters
// in one of these, right after what every hand-off writes (see `Pool`'s layout).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Stats {
    /// Checkouts served (at once or after waiting).
    pub checkouts: u64,
    /// Checkouts served after waiting.
    pub waits: u64,
    /// Total time served checkouts spent waiting.
    pub wait_time: Duration,
    /// Connections that exist or are being opened or closed (what `max` bounds).
    pub size: usize,
    /// Idle connections.
    pub idle: usize,
    /// Connections with borrowers (including grants not yet drained).
    pub in_use: usize,
    /// Queued checkouts.
    pub waiting: usize,
    /// Opens ordered and not yet reported.
    pub opening: usize,
    /// Connections out for a reset, a check or a vet.
    pub resetting: usize,
    /// Connections out to be closed.
    pub closing: usize,
    /// Queued checkouts that timed out.
    pub timeouts: u64,
    /// Opens that succeeded.
    pub opens: u64,
    /// Opens that failed.
    pub open_failures: u64,
    /// Close commands emitted.
    pub closes: u64,
    /// Connections returned broken.
    pub broken_returns: u64,
    /// Connections returned dirty and sent for reset.
    pub resets: u64,
    /// Resets the driver gave up on at its bound ([`Finished::Abandoned`]); each closed the
    /// connection, as a failed reset does.
    ///
    /// [`Finished::Abandoned`]: crate::Finished::Abandoned
    pub abandoned_resets: u64,
    /// Checks ([`Pool::check_idle`](crate::Pool::check_idle)) the driver gave up on at its bound
    /// ([`Finished::Abandoned`](crate::Finished::Abandoned)); each closed the connection, as a
    /// failed check does.
    pub abandoned_checks: u64,
    /// Closes the driver gave up on at its bound
    /// ([`Finished::Abandoned`](crate::Finished::Abandoned)): the connection was torn down
    /// without a goodbye; its place was freed all the same.
    pub abandoned_closes: u64,
    /// Idle connections sent for a vet before a checkout got them
    /// ([`Config::vet`](crate::Config::vet)).
    pub vets: u64,
    /// Idle connections a check or a vet found unusable (failed or abandoned): closed before
    /// any borrower got them.
    pub stale: u64,
    /// Connections closed for age (`max_lifetime`) or idleness (`max_idle`).
    pub expired: u64,
    /// Connections detached by their borrowers (they leave the pool without a close).
    pub detached: u64,
    /// Checkouts held longer than `leak_after`, each reported once ([`Report::Leak`](crate::Report::Leak)).
    pub leaks: u64,
}
