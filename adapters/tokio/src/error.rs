//! The pool's typed errors.

use std::fmt;
use std::sync::Arc;

/// Why a pool operation failed. `E` is the [`Connector`](crate::Connector)'s error, shared
/// (`Arc`): one failed open can be the reason for many failed checkouts. Texts are the blocking
/// pool's (psycopg2's where the behaviour is psycopg2's).
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// The pool was closed.
    Closed,
    /// No idle connection and no room to open one, and checkouts do not wait (no timeout).
    Exhausted,
    /// The checkout waited its whole timeout; carries the last connect error if opens were failing.
    Timeout(Option<Arc<E>>),
    /// Too many checkouts are already waiting (`max_waiting`).
    TooManyWaiters,
    /// Opening the connection this checkout needed failed.
    Connect(Arc<E>),
    /// A connector method or hook panicked while opening the connection this checkout needed.
    Panicked,
    /// The core refused the settings (`min > max`, `max == 0`, ...), at build or `resize`.
    Config(sanspool_core::Error),
}

/// Why the last open failed.
#[derive(Debug)]
pub(crate) enum Failure<E> {
    Error(Arc<E>),
    Panic,
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
            // The driver records the failure before it reports a failed open, so `last` is set.
            Core::OpenFailed => match last {
                Some(Failure::Error(e)) => PoolError::Connect(Arc::clone(e)),
                _ => PoolError::Panicked,
            },
            other => PoolError::Config(other),
        }
    }
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
            PoolError::Connect(_) => f.write_str("could not open a connection"),
            PoolError::Panicked => f.write_str("opening a connection panicked"),
            PoolError::Config(e) => fmt::Display::fmt(e, f),
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
