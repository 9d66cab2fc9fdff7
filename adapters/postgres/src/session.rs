//! [`Session`]: what a pooled connection knows of its session without a round trip, shared by
//! this crate's [`PgConn`](crate::PgConn) and `sanspool-tokio`'s.

use sanspool::Returned;

use crate::tracked::{StatusCell, TxStatus};
use crate::Error;

/// A connection's session as its pool judges it: the [`StatusCell`] that follows the
/// transaction status, and the bytes the client had written when the session was last opened,
/// reset or checked (a checkout that wrote nothing cannot have changed the session).
#[derive(Clone, Debug)]
pub struct Session {
    cell: StatusCell,
    mark: u64,
}

impl Session {
    /// The session of a connection just opened over `cell`'s socket: clean.
    pub fn new(cell: StatusCell) -> Session {
        let mark = cell.bytes_written();
        Session { cell, mark }
    }

    /// The transaction status as of the last exchange with the server: no I/O.
    pub fn status(&self) -> TxStatus {
        self.cell.get()
    }

    /// The status cell.
    pub fn cell(&self) -> &StatusCell {
        &self.cell
    }

    /// Whether the client wrote anything since the session was last opened, reset or checked.
    pub fn used_since_reset(&self) -> bool {
        self.cell.bytes_written() != self.mark
    }

    /// The state the pool should see: [`Returned::Clean`] only when the session is idle, and,
    /// when the policy `resets_sessions`, unused since its last reset. `closed`: the client
    /// knows its connection is gone.
    pub fn judge(&self, closed: bool, resets_sessions: bool) -> Returned {
        if closed {
            return Returned::Broken;
        }
        match self.cell.get() {
            TxStatus::Idle if resets_sessions && self.used_since_reset() => Returned::Dirty,
            TxStatus::Idle => Returned::Clean,
            TxStatus::Closed => Returned::Broken,
            TxStatus::InTransaction | TxStatus::InError | TxStatus::Unknown => Returned::Dirty,
        }
    }

    /// After a reset: fine only if the session is known to be idle; then it is marked clean.
    pub fn settled(&mut self) -> Result<(), Error> {
        match self.cell.get() {
            TxStatus::Idle => {
                self.mark = self.cell.bytes_written();
                Ok(())
            }
            status => Err(Error::NotIdle(status)),
        }
    }

    /// After a check query: fine only if the session is idle. `unused`: it was clean before the
    /// check, and the check's own bytes do not make it used.
    pub fn checked(&mut self, unused: bool) -> Result<(), Error> {
        match self.cell.get() {
            TxStatus::Idle if unused => self.settled(),
            TxStatus::Idle => Ok(()),
            status => Err(Error::NotIdle(status)),
        }
    }
}
