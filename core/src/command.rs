//! What crosses the boundary between the core and its driver: what the core emits, one type per
//! consumer ([`Io`] to start, [`Handoff`]s for queued checkouts, [`Report`]s for the
//! application), the completions the driver reports back, and the answers to a checkout.

use crate::{Error, Lease, Ticket, Time, WaiterId};

/// I/O the driver must start, drained with [`Pool::poll_io`](crate::Pool::poll_io) in the order
/// the core decided it; each one's outcome comes back as the [`Completion`] of the same name.
///
/// A command that carries a connection carries it *out*: the driver owns it until it reports the
/// matching [`Completion`] with the ticket.
#[derive(Debug, PartialEq, Eq)]
pub enum Io<C> {
    /// Open a connection; report [`Completion::Opened`] or [`Completion::OpenFailed`].
    Open(Ticket),
    /// Close this connection; report [`Completion::Closed`] once it is gone (until then it counts
    /// against `max`: the server may still see it).
    Close {
        /// Reported back on completion.
        ticket: Ticket,
        /// The connection to close.
        conn: C,
    },
    /// Roll this connection back to a clean session (it was returned inside a transaction, failed,
    /// or mid-request); report [`Completion::Reset`].
    Reset {
        /// Reported back on completion.
        ticket: Ticket,
        /// The connection to reset.
        conn: C,
    },
    /// Check that this idle connection still works (asked for by
    /// [`Pool::check_idle`](crate::Pool::check_idle)); report [`Completion::Checked`].
    Check {
        /// Reported back on completion.
        ticket: Ticket,
        /// The connection to check.
        conn: C,
    },
    /// Vet this idle connection before the queued checkout it is for gets it ([`Config::vet`]):
    /// whatever the driver does before reuse — a look at its socket ([`Liveness`]), a hook, a
    /// round trip if asked. Report [`Completion::Checked`]: [`Finished::Ok`] grants it to that
    /// checkout (or, if it left meanwhile, to the oldest waiter, else back to its place among
    /// the idle), otherwise the core closes it. The checkout waits meanwhile up to its own
    /// deadline: a slow vet delays nobody past it. A vet decided without waiting (a look at a
    /// socket) may be done on the spot, by the thread or task that drained it.
    ///
    /// [`Config::vet`]: crate::Config::vet
    Vet {
        /// Reported back on completion.
        ticket: Ticket,
        /// The connection to vet.
        conn: C,
    },
}

impl<C> Io<C> {
    /// The ticket its completion carries.
    pub fn ticket(&self) -> Ticket {
        match self {
            Io::Open(ticket)
            | Io::Close { ticket, .. }
            | Io::Reset { ticket, .. }
            | Io::Check { ticket, .. }
            | Io::Vet { ticket, .. } => *ticket,
        }
    }
}

/// An outcome for a queued checkout, drained with
/// [`Pool::poll_handoff`](crate::Pool::poll_handoff) in the order the core decided them (grants
/// oldest waiter first). The driver delivers it to the checkout it names; nothing comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum Handoff<C> {
    /// Give this connection to that queued checkout.
    Grant {
        /// The checkout served.
        waiter: WaiterId,
        /// Check the connection in with this.
        lease: Lease,
        /// The connection: just opened, handed over by a checkin, or vetted if the pool
        /// vets ([`Config::vet`](crate::Config::vet)).
        conn: C,
    },
    /// That queued checkout failed: [`Error::Timeout`], [`Error::Closed`], [`Error::OpenFailed`]
    /// or [`Error::Exhausted`].
    Fail {
        /// The checkout.
        waiter: WaiterId,
        /// Why.
        error: Error,
    },
    /// Wake that queued checkout: a connection came back and is idle ([`Fairness::Bounded`]). It
    /// should [`claim`](crate::Pool::claim) it, which serves it or, if a running checkout took
    /// the connection first, leaves it queued in its place. A waiter that leaves the line before
    /// this is drained (granted, failed, cancelled) takes its wake with it.
    ///
    /// [`Fairness::Bounded`]: crate::Fairness::Bounded
    Wake {
        /// The checkout.
        waiter: WaiterId,
    },
}

impl<C> Handoff<C> {
    /// The checkout it is for.
    pub fn waiter(&self) -> WaiterId {
        match self {
            Handoff::Grant { waiter, .. }
            | Handoff::Fail { waiter, .. }
            | Handoff::Wake { waiter } => *waiter,
        }
    }
}

/// Something to tell the application, drained with
/// [`Pool::poll_report`](crate::Pool::poll_report): nothing in the pool waits on it.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// That borrower has held its connection since `since`, longer than `leak_after`: report it
    /// (a log line). Nothing changes; once per checkout. A lease checked in before this is
    /// drained takes its report with it.
    Leak {
        /// The checkout.
        lease: Lease,
        /// When it was handed out.
        since: Time,
    },
}

/// What the driver reports back through [`Pool::handle`](crate::Pool::handle): the outcome of an
/// [`Io`], one variant per kind, with its ticket.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion<C> {
    /// The [`Io::Open`] succeeded: here is the connection.
    Opened {
        /// The open's ticket.
        ticket: Ticket,
        /// The new connection.
        conn: C,
    },
    /// The [`Io::Open`] failed.
    OpenFailed {
        /// The open's ticket.
        ticket: Ticket,
        /// The failure will repeat until someone fixes something (authentication failed, the
        /// database does not exist): every queued checkout fails at once with
        /// [`Error::OpenFailed`] instead of waiting out its deadline behind retries that cannot
        /// succeed (and may lock an account). Refills to `min` go on, with backoff.
        permanent: bool,
    },
    /// The [`Io::Reset`] finished: [`Finished::Ok`] puts the connection back in service,
    /// otherwise the core closes it.
    Reset {
        /// The reset's ticket.
        ticket: Ticket,
        /// The connection, back from the driver.
        conn: C,
        /// Whether the session is clean now ([`Finished::Ok`]).
        outcome: Finished,
    },
    /// The [`Io::Check`] or [`Io::Vet`] finished: [`Finished::Ok`] grants the connection to the
    /// checkout it was vetted for, else to the oldest waiter, else puts it back in its place
    /// among the idle; otherwise the core closes it (counted in
    /// [`Stats::stale`](crate::Stats::stale)).
    Checked {
        /// The check's ticket.
        ticket: Ticket,
        /// The connection, back from the driver.
        conn: C,
        /// Whether it works ([`Finished::Ok`]).
        outcome: Finished,
    },
    /// The [`Io::Close`] is done. Whatever the outcome, its place is free: a close that
    /// failed or was abandoned still tore the connection down on the driver's side. (After an
    /// abandoned close the server may list its process until that process notices the closed
    /// socket: a refill can then briefly make it count one connection more than `max`.)
    Closed {
        /// The close's ticket.
        ticket: Ticket,
        /// How the close went ([`Finished::Abandoned`] is counted in
        /// [`Stats::abandoned_closes`](crate::Stats::abandoned_closes)).
        outcome: Finished,
    },
}

/// How a reset, check, vet or close the driver performed ended ([`Completion::Reset`],
/// [`Completion::Checked`], [`Completion::Closed`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Finished {
    /// It worked: a reset session is clean, a checked connection works, a closed one said goodbye.
    Ok,
    /// It failed (an error from the server or the socket): a reset or checked connection is
    /// closed; a closed one is gone all the same.
    Failed,
    /// The driver gave up on it at its bound (it hung): handled as [`Finished::Failed`] (a reset
    /// or checked connection is closed, a closed one is gone), and counted in
    /// [`Stats`](crate::Stats)' `abandoned_resets`, `abandoned_checks` or `abandoned_closes`.
    Abandoned,
}

impl Finished {
    /// [`Finished::Ok`] if `ok`, else [`Finished::Failed`].
    pub fn from_ok(ok: bool) -> Finished {
        if ok {
            Finished::Ok
        } else {
            Finished::Failed
        }
    }

    /// Whether it worked.
    pub fn is_ok(self) -> bool {
        self == Finished::Ok
    }
}

impl Report {
    /// The line a driver logs, given the pool's clock: which slot, held how long, and the
    /// likely cause.
    pub fn describe(&self, now: Time) -> impl core::fmt::Display {
        match self {
            Report::Leak { lease, since } => LeakReport {
                slot: lease.slot(),
                held: now.saturating_since(*since),
            },
        }
    }
}

struct LeakReport {
    slot: usize,
    held: core::time::Duration,
}

impl core::fmt::Display for LeakReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "a connection (slot {}) has been checked out for {:?}, past leak_after: \
             a guard forgotten or leaked?",
            self.slot, self.held
        )
    }
}

impl<C> Completion<C> {
    /// The ticket it answers.
    pub fn ticket(&self) -> Ticket {
        match self {
            Completion::Opened { ticket, .. }
            | Completion::OpenFailed { ticket, .. }
            | Completion::Reset { ticket, .. }
            | Completion::Checked { ticket, .. }
            | Completion::Closed { ticket, .. } => *ticket,
        }
    }

    /// The connection it carries, if any (the one a refused completion hands back).
    pub fn into_conn(self) -> Option<C> {
        match self {
            Completion::Opened { conn, .. }
            | Completion::Reset { conn, .. }
            | Completion::Checked { conn, .. } => Some(conn),
            Completion::OpenFailed { .. } | Completion::Closed { .. } => None,
        }
    }
}

/// The answer to [`Pool::checkout`](crate::Pool::checkout).
#[derive(Debug, PartialEq, Eq)]
pub enum Checkout<C> {
    /// Served at once with an idle connection.
    Ready {
        /// Check the connection in with this.
        lease: Lease,
        /// The connection.
        conn: C,
    },
    /// The key already holds this lease: the caller has its connection (psycopg2's "same key, same
    /// connection").
    Held(Lease),
    /// Queued: the outcome arrives as a [`Handoff::Grant`] or [`Handoff::Fail`] for this waiter
    /// (or, after a [`Handoff::Wake`], as the answer to a [`claim`](crate::Pool::claim)).
    Waiting(WaiterId),
}

/// How long a checkout may wait when no connection is idle.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// psycopg2: fail with [`Error::Exhausted`] when the pool is at `max`. When there is room, the
    /// checkout is queued for the open it triggers (skipping any backoff, not counted in
    /// `max_waiting`) and fails with [`Error::OpenFailed`] if an open fails, or with
    /// [`Error::Exhausted`] if the connection goes to an older waiter and no room is left.
    No,
    /// Queue until this deadline, then [`Error::Timeout`].
    Until(Time),
    /// Queue until served, cancelled, or the pool closes.
    Forever,
}

impl Wait {
    /// How a checkout starting at `start` may wait `timeout`: `None` does not wait
    /// ([`Wait::No`]); a deadline past the end of time is [`Wait::Forever`].
    #[inline]
    pub fn within(start: Time, timeout: Option<core::time::Duration>) -> Wait {
        match timeout {
            None => Wait::No,
            Some(d) => start.checked_add(d).map_or(Wait::Forever, Wait::Until),
        }
    }
}

/// What a look at an idle connection found, without a round trip (a connector's probe of its
/// socket: the server may have closed it, or sent a FATAL error, while it sat idle). A driver
/// vetting a connection ([`Io::Vet`]) closes a [`Dead`](Liveness::Dead) one at once, and checks
/// an [`Unsure`](Liveness::Unsure) one with a round trip.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Nothing says the connection is gone: hand it out as it is.
    Alive,
    /// The connection is gone (the server closed it, or it was reset): any use would fail.
    Dead,
    /// Cannot tell without a round trip (bytes are waiting that cannot be read where the probe
    /// looks, or there is nothing to look at).
    Unsure,
}

/// The state of a connection given back at checkin.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Returned {
    /// Idle session: reusable as it is.
    Clean,
    /// Inside a transaction, in a failed one, or mid-request: reset before reuse.
    Dirty,
    /// Lost or unusable: close it (counted in `broken_returns`).
    Broken,
    /// The borrower asks for it to be closed (psycopg2's `putconn(close=True)`).
    Close,
}
