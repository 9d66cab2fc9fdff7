//! [`PutError`]: why psycopg2's `putconn` refused a connection. The other errors are the driver
//! kit's, the same in every driver (`GetError`, `BuildError`) and the core's (`CoreError`).

use sanspool_core::Error as Core;
use std::error::Error;
use std::fmt;

/// Why a connection could not be given back (psycopg2's `putconn`). Except for
/// [`Closed`](PutError::Closed), the handle keeps its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutError {
    /// The connection is not one this pool handed out (psycopg2: "trying to put unkeyed connection").
    Unkeyed,
    /// The connection belongs to another pool.
    Foreign,
    /// The connection was already given back (or detached): a double `putconn`.
    AlreadyReturned,
    /// The connection is not held under the key given with it.
    WrongKey,
    /// The pool was closed: the connection was taken, and closed, as psycopg2 does.
    Closed,
    /// The handle is borrowed (a single-threaded handle's `borrow_mut` is still alive).
    Borrowed,
}

impl PutError {
    /// The error for a core refusal of a checkin.
    pub(crate) fn from_core(error: Core) -> Self {
        match error {
            Core::Closed => PutError::Closed,
            Core::Foreign => PutError::Foreign,
            Core::AlreadyReturned => PutError::AlreadyReturned,
            Core::WrongKey => PutError::WrongKey,
            // Unkeyed, and a handle the core cannot place at all.
            _ => PutError::Unkeyed,
        }
    }
}

impl fmt::Display for PutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = match self {
            PutError::Unkeyed => Core::Unkeyed,
            PutError::Foreign => Core::Foreign,
            PutError::AlreadyReturned => Core::AlreadyReturned,
            PutError::WrongKey => Core::WrongKey,
            PutError::Closed => Core::Closed,
            PutError::Borrowed => return f.write_str("this key's connection is busy"),
        };
        fmt::Display::fmt(&core, f)
    }
}

impl Error for PutError {}
