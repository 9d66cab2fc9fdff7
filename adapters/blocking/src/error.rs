//! The pools' typed errors.

use std::fmt;
use std::sync::Arc;

/// Why a pool operation failed. `E` is the [`Connector`](crate::Connector)'s error.
///
/// Texts follow psycopg2's `PoolError` messages where the behaviour is psycopg2's. The connector
/// error behind [`Connect`](PoolError::Connect) or [`Timeout`](PoolError::Timeout) is given by
/// [`source`](std::error::Error::source), not repeated in the text. It is shared (`Arc`): one failed
/// open can be the reason for many failed checkouts.
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// The pool was closed (psycopg2: "connection pool is closed"). A connection given back after
    /// the close is still taken, and closed.
    Closed,
    /// No idle connection and no room to open one, and the checkout does not wait
    /// (psycopg2: "connection pool exhausted").
    Exhausted,
    /// The checkout waited its whole timeout. Carries the last connect error if opens were failing
    /// (and says it: "timed out waiting for a connection: " then the error, as r2d2 does).
    Timeout(Option<Arc<E>>),
    /// Too many checkouts are already waiting (`max_waiting`).
    TooManyWaiters,
    /// The connection is not one this pool handed out (psycopg2: "trying to put unkeyed connection").
    Unkeyed,
    /// The connection belongs to another pool.
    Foreign,
    /// The connection was already given back (or detached): a double `putconn`.
    AlreadyReturned,
    /// The connection is not held under the key given with it.
    WrongKey,
    /// The key is busy: a guard holds it, or another checkout of it is still under way.
    KeyBusy,
    /// Opening the connection this checkout needed failed (psycopg2 raises the connect error).
    Connect(Arc<E>),
    /// A connector method or hook panicked while opening the connection this checkout needed.
    Panicked,
    /// The core refused the settings (`min > max`, `max == 0`, ...), at build or `resize`.
    Config(sanspool_core::Error),
    /// A thread panicked while it held this connection locked: the session may be anywhere
    /// (mid-transaction, mid-request). Give the handle back with `putconn` — it is reset, or
    /// closed — and check out another.
    Poisoned,
}

impl<E> PoolError<E> {
    /// The pool's error for a core error, given the last connect failure.
    pub(crate) fn from_core(error: sanspool_core::Error, last: Option<&Failure<E>>) -> Self {
        use sanspool_core::Error as Core;
        match error {
            Core::Closed => PoolError::Closed,
            Core::Exhausted => PoolError::Exhausted,
            Core::Timeout => PoolError::Timeout(match last {
                Some(Failure::Error(e)) => Some(Arc::clone(e)),
                _ => None,
            }),
            Core::TooManyWaiters => PoolError::TooManyWaiters,
            Core::Unkeyed => PoolError::Unkeyed,
            Core::Foreign => PoolError::Foreign,
            Core::AlreadyReturned => PoolError::AlreadyReturned,
            Core::WrongKey => PoolError::WrongKey,
            Core::KeyBusy => PoolError::KeyBusy,
            // The driver records the failure before it reports a failed open, so `last` is set.
            Core::OpenFailed => match last {
                Some(Failure::Error(e)) => PoolError::Connect(Arc::clone(e)),
                _ => PoolError::Panicked,
            },
            other => PoolError::Config(other),
        }
    }
}

/// Why the last open failed.
#[derive(Debug)]
pub(crate) enum Failure<E> {
    Error(Arc<E>),
    Panic,
}

impl<E: fmt::Display> fmt::Display for PoolError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use sanspool_core::Error as Core;
        let core = |e: Core, f: &mut fmt::Formatter<'_>| fmt::Display::fmt(&e, f);
        match self {
            PoolError::Closed => core(Core::Closed, f),
            PoolError::Exhausted => core(Core::Exhausted, f),
            PoolError::Timeout(None) => core(Core::Timeout, f),
            PoolError::Timeout(Some(e)) => {
                core(Core::Timeout, f)?;
                write!(f, ": {e}")
            }
            PoolError::TooManyWaiters => core(Core::TooManyWaiters, f),
            PoolError::Unkeyed => core(Core::Unkeyed, f),
            PoolError::Foreign => core(Core::Foreign, f),
            PoolError::AlreadyReturned => core(Core::AlreadyReturned, f),
            PoolError::WrongKey => core(Core::WrongKey, f),
            PoolError::KeyBusy => f.write_str("this key's connection is busy"),
            PoolError::Connect(_) => f.write_str("could not open a connection"),
            PoolError::Panicked => f.write_str("opening a connection panicked"),
            PoolError::Config(e) => fmt::Display::fmt(e, f),
            PoolError::Poisoned => {
                f.write_str("a thread panicked holding this connection: put it back, take another")
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PoolError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Connect(e) | PoolError::Timeout(Some(e)) => Some(&**e),
            _ => None,
        }
    }
}
