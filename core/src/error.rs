//! The core's typed errors. psycopg2's texts are kept word for word where its behaviour is kept.

use core::fmt;

/// Everything an input can be refused for. A refused input changes nothing, with one documented
/// exception: a checkin after [`close`](crate::Pool::close) (see [`Error::Closed`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The pool was closed: no checkout, no second close. A checkin after close is still *taken* (the
    /// connection ends in a close command, as close promised) and reports this error, as psycopg2 does.
    Closed,
    /// No idle connection, no room to open one, and the checkout did not want to wait.
    Exhausted,
    /// The handle was not issued by this pool's slots (psycopg2: a connection the pool does not know).
    Unkeyed,
    /// The handle was issued by another pool (its tag differs).
    Foreign,
    /// The lease was valid once but its connection was already returned or detached: a double checkin.
    AlreadyReturned,
    /// The checkin named a key the connection is not held under.
    WrongKey,
    /// The key already has a checkout waiting for a connection.
    KeyBusy,
    /// The waiter queue is full (`max_waiting`, or the fixed backend's capacity).
    TooManyWaiters,
    /// The ticket does not match an operation the core is waiting for (stale, forged, or its command
    /// was not drained yet).
    UnknownTicket,
    /// The waiter is not waiting: its outcome was already emitted, or it never existed.
    UnknownWaiter,
    /// A queued checkout's deadline passed.
    Timeout,
    /// The open this checkout was waiting on failed (only checkouts that do not wait see this).
    OpenFailed,
    /// `min` is greater than `max`.
    MinAboveMax,
    /// `max` is zero.
    MaxZero,
    /// `max` exceeds what the storage can hold (the fixed backend's slot count, or 65 535).
    CapacityExceeded,
    /// `max_lifetime` is zero or not longer than `lifetime_jitter`, or `backoff_initial` is zero.
    InvalidTiming,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Closed => "connection pool is closed",
            Error::Exhausted => "connection pool exhausted",
            Error::Unkeyed => "trying to put unkeyed connection",
            Error::Foreign => "trying to put unkeyed connection: it belongs to another pool",
            Error::AlreadyReturned => "trying to put unkeyed connection: it was already returned",
            Error::WrongKey => "connection is not held under this key",
            Error::KeyBusy => "this key is already waiting for a connection",
            Error::TooManyWaiters => "too many waiters for a connection",
            Error::UnknownTicket => "no such operation in progress",
            Error::UnknownWaiter => "no such waiter",
            Error::Timeout => "timed out waiting for a connection",
            Error::OpenFailed => "opening a connection failed",
            Error::MinAboveMax => "min connections is greater than max connections",
            Error::MaxZero => "max connections must be at least 1",
            Error::CapacityExceeded => "max connections exceeds the pool's storage capacity",
            Error::InvalidTiming => {
                "max_lifetime must be longer than zero and than lifetime_jitter, and backoff_initial longer than zero"
            }
        })
    }
}

impl core::error::Error for Error {}

/// A refused input that may carry a connection ([`Pool::checkin`](crate::Pool::checkin),
/// [`Pool::handle`](crate::Pool::handle)): the error and, unless the core took it, the connection.
///
/// `conn` is `Some` whenever the input carried a connection and changed nothing: the caller gets
/// its connection back and nothing is lost. It is `None` when the input carried none (an
/// [`OpenFailed`](crate::Completion::OpenFailed) or [`Closed`](crate::Completion::Closed)
/// completion), and for [`Error::Closed`] on checkin, where the core kept the connection to close
/// it.
#[derive(Debug)]
pub struct Rejected<C> {
    /// Why.
    pub error: Error,
    /// The connection, handed back.
    pub conn: Option<C>,
}

impl<C> Rejected<C> {
    /// Refused, and the connection goes back to the caller: the input changed nothing.
    pub(crate) fn handing_back(error: Error, conn: C) -> Self {
        Rejected {
            error,
            conn: Some(conn),
        }
    }
}

impl<C> fmt::Display for Rejected<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<C: fmt::Debug> core::error::Error for Rejected<C> {}
