//! [`Session`]: what a pooled connection knows of its session without a round trip;
//! [`SessionReset`]: what a returned session is reset with. Both connectors judge and reset by
//! these.

use std::fmt;
use std::sync::Arc;

use sanspool_core::Returned;

use crate::error::Error;
use crate::probe::Liveness;
use crate::status::{StatusCell, TxStatus};

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

    /// Whether the connection is still there, without a round trip ([`StatusCell::probe`]).
    pub fn probe(&self) -> Liveness {
        self.cell.probe()
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

/// What [`SessionReset::discard`] sends: `DISCARD ALL` but for its `DEALLOCATE ALL`, which would
/// deallocate the statements the client caches for its type lookups (tokio-postgres can clear
/// its cache of types, not of those statements); statements prepared with SQL `PREPARE` are
/// deallocated one by one. One simple query, one round trip.
pub const DISCARD_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
    UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES; \
    DO $$DECLARE s text; BEGIN FOR s IN SELECT name FROM pg_prepared_statements WHERE from_sql \
    LOOP EXECUTE format('DEALLOCATE %I', s); END LOOP; END$$";

/// What a connection's session is reset with before the next borrower gets it (a connector's
/// `session_reset`). The same policies, with the same effects, in the blocking and the async
/// connector.
///
/// | left by a borrower | `rollback` | `discard` |
/// |---|---|---|
/// | an open or failed transaction, unread results, a COPY | reset | reset |
/// | `SET ROLE`, `SET SESSION AUTHORIZATION` | **leaks** | reset |
/// | `set_config(.., false)` (row-level-security tenants), `SET` of any setting | **leaks** | reset |
/// | temporary tables, `PREPARE`, `WITH HOLD` cursors | **leaks** | reset |
/// | session advisory locks | **leaks** | reset |
/// | `LISTEN`, and notifications already received | **leaks** | reset, and dropped |
///
/// (Settings changed inside a transaction that was rolled back are undone by the server under
/// every policy.) See the README for the measured cost.
#[derive(Clone, Default)]
pub struct SessionReset(Option<Arc<str>>);

impl SessionReset {
    /// `ROLLBACK` when the session is not idle, nothing otherwise: a clean return costs no round
    /// trip, and session state (settings, role, temporary tables, ...) passes to the next
    /// borrower. The default, as in psycopg2's pool.
    pub fn rollback() -> SessionReset {
        SessionReset(None)
    }

    /// [`DISCARD_SESSION`] after every checkout that sent anything (one round trip; nothing for
    /// a checkout that sent nothing), after a `ROLLBACK` when the session is not idle; then the
    /// client's type cache is cleared and notifications already received are dropped.
    pub fn discard() -> SessionReset {
        SessionReset::statement(DISCARD_SESSION)
    }

    /// As [`discard`](Self::discard), with `sql` (one or more statements, sent as a simple query)
    /// instead of [`DISCARD_SESSION`]. Not `DISCARD ALL` nor `DEALLOCATE ALL`: they deallocate
    /// the statements the client prepared and caches for its type lookups, and the client's next
    /// lookup of a new type fails (`prepared statement "s8" does not exist`).
    pub fn statement(sql: impl Into<String>) -> SessionReset {
        SessionReset(Some(Arc::from(sql.into())))
    }

    /// Whether it resets sessions (every checkout that sent anything), not only transactions.
    pub fn resets_sessions(&self) -> bool {
        self.0.is_some()
    }

    /// What to send to a returned session in `status`: `ROLLBACK` if it is not idle (`DISCARD`
    /// refuses to run in a transaction block), then the policy's statement, if any.
    pub fn statements(&self, status: TxStatus) -> impl Iterator<Item = &str> {
        let rollback = match &self.0 {
            None => true,
            Some(_) => status != TxStatus::Idle,
        };
        rollback
            .then_some("ROLLBACK")
            .into_iter()
            .chain(self.0.as_deref())
    }
}

impl fmt::Debug for SessionReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("SessionReset::Rollback"),
            Some(sql) => write!(f, "SessionReset::Statement({sql:?})"),
        }
    }
}
