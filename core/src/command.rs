//! What flows out of the core: commands for the driver, and the answer to a checkout.

use crate::{Error, Lease, Ticket, WaiterId};

/// Work the driver must do, drained with [`Pool::poll_command`](crate::Pool::poll_command) in order.
///
/// A command that carries a connection carries it *out*: the driver owns it until it reports back
/// with the ticket (or, for a grant, until the borrower checks it in with the lease).
#[derive(Debug, PartialEq, Eq)]
pub enum Command<C> {
    /// Open a connection; report [`handle_opened`](crate::Pool::handle_opened) or
    /// [`handle_open_failed`](crate::Pool::handle_open_failed) with this ticket.
    Open(Ticket),
    /// Close this connection; report [`handle_closed`](crate::Pool::handle_closed) once it is gone
    /// (until then it counts against `max`: the server may still see it).
    Close {
        /// Reported back on completion.
        ticket: Ticket,
        /// The connection to close.
        conn: C,
    },
    /// Roll this connection back to a clean session (it was returned inside a transaction, failed, or
    /// mid-request); report [`handle_reset`](crate::Pool::handle_reset).
    Reset {
        /// Reported back on completion.
        ticket: Ticket,
        /// The connection to reset.
        conn: C,
    },
    /// Check that this idle connection still works (asked for by [`Pool::check_idle`](crate::Pool::check_idle));
    /// report [`handle_reset`](crate::Pool::handle_reset).
    Check {
        /// Reported back on completion.
        ticket: Ticket,
        /// The connection to check.
        conn: C,
    },
    /// Give this connection to that queued checkout.
    Grant {
        /// The checkout served.
        waiter: WaiterId,
        /// Check the connection in with this.
        lease: Lease,
        /// The connection.
        conn: C,
    },
    /// That queued checkout failed: [`Error::Timeout`], [`Error::Closed`] or [`Error::OpenFailed`].
    Fail {
        /// The checkout.
        waiter: WaiterId,
        /// Why.
        error: Error,
    },
    /// `min` connections are open for the first time: a warm-up wait can end. Emitted once.
    Ready,
}

/// The answer to [`Pool::handle_checkout`](crate::Pool::handle_checkout).
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
    /// Queued: the outcome arrives as a [`Command::Grant`] or [`Command::Fail`] for this waiter.
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
    Until(crate::Time),
    /// Queue until served, cancelled, or the pool closes.
    Forever,
}

/// The state of a connection given back at checkin.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
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
