//! Any r2d2 connection manager as a [`Connector`] (feature `r2d2`): [`Manager`] wraps an
//! [`r2d2::ManageConnection`] unchanged — r2d2_sqlite's, r2d2_postgres's, diesel's
//! `r2d2::ConnectionManager`, ... — so that a [`Pool`](crate::Pool) pools what it opens, with
//! sanspool's fairness, bounds, lifetimes, leak detection and stats. Only the pool's construction
//! changes:
//!
//! ```text
//! let pool = r2d2::Pool::builder().max_size(8).build(manager)?;                      // r2d2
//! let pool = sanspool::Pool::builder(sanspool::r2d2::Manager::new(manager)).max(8).build()?; // sanspool
//! ```
//!
//! # What maps to what
//!
//! | r2d2 | sanspool |
//! |---|---|
//! | `ManageConnection::connect` | [`Connector::connect`], on an opener thread of the pool's |
//! | `ManageConnection::is_valid` | [`Connector::check`]: on every checkout from the idle set with [`check_on_checkout(true)`](crate::Builder::check_on_checkout), and on [`Pool::check`](crate::Pool::check) |
//! | `ManageConnection::has_broken` | [`Connector::state`]: `true` is [`Returned::Broken`] (closed and replaced, [`Stats::broken_returns`](crate::Stats::broken_returns)) |
//! | `Builder::max_size` (default 10) | `max` (default 10) |
//! | `Builder::min_idle` (default: `max_size`) | `min`, connections kept open (default 1) |
//! | `Builder::test_on_check_out` (default **on**) | `check_on_checkout` (default off: no round trip per checkout); keep it on where `has_broken` cannot see a dead connection (diesel's sees only its own transaction state) |
//! | `Builder::connection_timeout` (30 s) | `timeout` (30 s); past it [`GetError::Timeout`](crate::GetError::Timeout), with the last connect error if opens were failing |
//! | `Builder::max_lifetime` (30 min), `idle_timeout` (10 min) | `max_lifetime`, `max_idle` (default: none), plus `lifetime_jitter` |
//! | `Builder::connection_customizer` | [`Manager::with_customizer`]: `on_acquire` after each connect, `on_release` at each close |
//! | `Builder::error_handler` (default: log at error level) | connect and `is_valid` errors are logged at error level, as r2d2's default does; see below |
//! | `Builder::build` (waits for `min_idle`, retrying until `connection_timeout`) | [`Builder::build`](crate::Builder::build): waits for `min`, retrying transient failures until its bound, failing at once on a permanent one |
//! | `Builder::event_handler` (`HandleEvent`) | [`Builder::events`](crate::Builder::events) ([`Events`](crate::Events)): acquire, release, checkout, checkin and timeout, with connection numbers and durations; [`LogEvents`](crate::LogEvents) logs them |
//! | `Builder::thread_pool` | none needed: each open, reset, check and close runs on an I/O thread of its own |
//!
//! # What a returned connection keeps
//!
//! An r2d2 manager has no reset: r2d2 reuses a returned connection as it is unless `has_broken`
//! says it is broken, and so does [`Manager`] by default. Whatever a borrower left behind — an
//! open transaction that the manager does not see (diesel's `has_broken` does see a transaction
//! opened through diesel's own transaction manager, and the connection is then closed rather
//! than reused; a `BEGIN` sent as plain SQL it does not), session settings, temporary tables,
//! locks — **reaches the connection's next borrower**. To clean up, give the adapter a reset:
//! [`with_reset`](Manager::with_reset) runs a closure on every returned connection before its
//! reuse (on an I/O thread, not on the borrower's), and
//! [`with_reset_when`](Manager::with_reset_when) only on those a local test, without I/O, finds
//! dirty (rusqlite's `is_autocommit()`, say). A reset that fails closes the connection. For
//! PostgreSQL, `sanspool-postgres`'s `PgConnector` tracks the transaction status from the
//! protocol itself and resets only what needs it, with no round trip for a clean return.
//!
//! ```
//! use sanspool::r2d2::Manager;
//! use sanspool::Pool;
//! # use std::convert::Infallible;
//! # /// A "connection" that may be left inside a transaction.
//! # #[derive(Default)]
//! # struct Session { in_transaction: bool }
//! # struct Server;
//! # impl r2d2::ManageConnection for Server {
//! #     type Connection = Session;
//! #     type Error = std::io::Error;
//! #     fn connect(&self) -> Result<Session, std::io::Error> { Ok(Session::default()) }
//! #     fn is_valid(&self, _: &mut Session) -> Result<(), std::io::Error> { Ok(()) }
//! #     fn has_broken(&self, _: &mut Session) -> bool { false }
//! # }
//!
//! // `Server` is any r2d2::ManageConnection.
//! let manager = Manager::new(Server).with_reset_when(
//!     |conn: &mut Session| conn.in_transaction, // judged locally when the guard drops
//!     |conn: &mut Session| {
//!         conn.in_transaction = false; // "ROLLBACK", run before the connection's reuse
//!         Ok(())
//!     },
//! );
//! let pool = Pool::builder(manager).max(1).build()?;
//! pool.get()?.in_transaction = true;
//! assert!(!pool.get()?.in_transaction);
//! assert_eq!(pool.stats().resets, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What did not map
//!
//! - **`CustomizeConnection`** maps: [`with_customizer`](Manager::with_customizer) takes the
//!   same boxed customizer r2d2's builder does. `on_acquire` runs right after `connect` (an error
//!   fails the open and drops the connection, as in r2d2), `on_release` when the pool closes the
//!   connection (broken, expired, idle past `max_idle`, the pool closed). A connection a borrower
//!   takes out of the pool for good ([`PooledConn::detach`](crate::PooledConn::detach)) is the
//!   borrower's, and is not released through the customizer.
//! - **`HandleError`** does not: r2d2 gives the handler each error by value, but sanspool keeps a
//!   failed open's error as the cause of the checkouts it fails
//!   ([`GetError::Connect`](crate::GetError::Connect), or `Timeout` with the cause, shared by
//!   every checkout that waited on it), so no handler can own it, and a generic error cannot be
//!   cloned. What r2d2 does by default — log each connect, `on_acquire` and `is_valid` error at
//!   error level — the adapter does too ([`log`](https://docs.rs/log) target `sanspool::r2d2`);
//!   [`Stats::open_failures`](crate::Stats::open_failures) counts failed opens.
//! - **`HandleEvent`** maps to [`Events`](crate::Events): the same five events, each
//!   connection numbered in open order (r2d2 numbers them too), with the open's duration, the
//!   connection's age, the checkout's wait and the borrower's hold. The hook runs under the
//!   pool's lock (r2d2's runs outside its own): the events come in the pool's order, and the
//!   hook must be short and must not call the pool.
//! - **Errors that are not `Send + Sync`**: r2d2 asks of a manager's error only
//!   `std::error::Error` (its pool keeps the text); sanspool hands the error itself to the
//!   checkouts it fails, possibly on other threads, so [`Manager`] is a [`Connector`] when the
//!   manager's error is `Send + Sync` too. Every manager named above has such an error; for one
//!   that does not, wrap the manager in one that maps its error.

use crate::{Connector, Returned};
use ::r2d2::{CustomizeConnection, ManageConnection};
use std::fmt;

/// A connection of `M`.
type Conn<M> = <M as ManageConnection>::Connection;
/// A boxed closure over a connection of `M`.
type Hook<M, T> = Box<dyn Fn(&mut Conn<M>) -> T + Send + Sync>;

/// An [`r2d2::ManageConnection`] as a [`Connector`]: `connect` is the manager's `connect` (then
/// the customizer's `on_acquire`), `check` its `is_valid`, a returned connection is
/// [`Broken`](Returned::Broken) when its `has_broken` says so, else clean — or, with a reset,
/// dirty and reset before reuse. See the [module docs](self).
pub struct Manager<M: ManageConnection> {
    manager: M,
    customizer: Option<Box<dyn CustomizeConnection<M::Connection, M::Error>>>,
    /// Whether a returned connection needs the reset (`None`: every one does).
    dirty: Option<Hook<M, bool>>,
    reset: Option<Hook<M, Result<(), M::Error>>>,
}

impl<M: ManageConnection> Manager<M> {
    /// The adapter over `manager`: returned connections are reused as they are unless broken.
    pub fn new(manager: M) -> Self {
        Manager {
            manager,
            customizer: None,
            dirty: None,
            reset: None,
        }
    }

    /// Runs `reset` on every returned connection that is not broken, before its reuse (on an I/O
    /// thread; the borrower does not wait for it), counted in
    /// [`Stats::resets`](crate::Stats::resets). An error closes the connection. Each return then
    /// costs whatever `reset` does (a round trip for a `ROLLBACK`); see
    /// [`with_reset_when`](Manager::with_reset_when) to run it only when needed.
    pub fn with_reset<R>(mut self, reset: R) -> Self
    where
        R: Fn(&mut M::Connection) -> Result<(), M::Error> + Send + Sync + 'static,
    {
        self.dirty = None;
        self.reset = Some(Box::new(reset));
        self
    }

    /// Like [`with_reset`](Manager::with_reset), for the returned connections `dirty` finds dirty.
    /// `dirty` runs when the guard drops, on the borrower's thread, so it must not do I/O. A
    /// reset that succeeds must leave the connection clean: the pool does not ask `dirty` again.
    pub fn with_reset_when<D, R>(mut self, dirty: D, reset: R) -> Self
    where
        D: Fn(&mut M::Connection) -> bool + Send + Sync + 'static,
        R: Fn(&mut M::Connection) -> Result<(), M::Error> + Send + Sync + 'static,
    {
        self.dirty = Some(Box::new(dirty));
        self.reset = Some(Box::new(reset));
        self
    }

    /// r2d2's `Builder::connection_customizer`: `on_acquire` runs after each connect (an error
    /// fails the open), `on_release` gets each connection the pool closes.
    pub fn with_customizer(
        mut self,
        customizer: Box<dyn CustomizeConnection<M::Connection, M::Error>>,
    ) -> Self {
        self.customizer = Some(customizer);
        self
    }

    /// The r2d2 manager (for a connection outside the pool: `pool.connector().manager().connect()`).
    pub fn manager(&self) -> &M {
        &self.manager
    }
}

/// Logs a manager's error as r2d2's default error handler does.
fn logged<T, E: fmt::Display>(result: Result<T, E>) -> Result<T, E> {
    if let Err(e) = &result {
        log::error!("{e}");
    }
    result
}

impl<M> Connector for Manager<M>
where
    M: ManageConnection,
    M::Error: Send + Sync,
{
    type Conn = M::Connection;
    type Error = M::Error;

    fn connect(&self) -> Result<M::Connection, M::Error> {
        let mut conn = logged(self.manager.connect())?;
        if let Some(customizer) = &self.customizer {
            // On error the connection is dropped, not released, as r2d2 does.
            logged(customizer.on_acquire(&mut conn))?;
        }
        Ok(conn)
    }

    fn state(&self, conn: &mut M::Connection) -> Returned {
        if self.manager.has_broken(conn) {
            return Returned::Broken;
        }
        let dirty = match (&self.reset, &self.dirty) {
            (None, _) => false,
            (Some(_), Some(dirty)) => dirty(conn),
            (Some(_), None) => true,
        };
        if dirty {
            Returned::Dirty
        } else {
            Returned::Clean
        }
    }

    fn reset(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        // `state` says Dirty only with a reset.
        let Some(reset) = &self.reset else {
            return Ok(());
        };
        reset(conn)
    }

    fn check(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        logged(self.manager.is_valid(conn))
    }

    fn close(&self, conn: M::Connection) -> Result<(), M::Error> {
        match &self.customizer {
            Some(customizer) => customizer.on_release(conn),
            None => drop(conn),
        }
        Ok(())
    }
}

impl<M: ManageConnection + fmt::Debug> fmt::Debug for Manager<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("manager", &self.manager)
            .field("customizer", &self.customizer)
            .field("reset", &self.reset.is_some())
            .field("reset_when", &self.dirty.is_some())
            .finish()
    }
}
