//! Any bb8 connection manager as a [`Connector`] (feature `bb8`): [`Manager`] wraps a
//! [`bb8::ManageConnection`] unchanged — bb8-postgres's `PostgresConnectionManager`, bb8-redis's,
//! diesel-async's, ... — so that a [`Pool`](crate::Pool) pools what it opens, with sanspool's
//! fairness, bounds, lifetimes, leak detection and stats. Only the pool's construction changes:
//!
//! ```text
//! let pool = bb8::Pool::builder().max_size(8).build(manager).await?;                       // bb8
//! let pool = sanspool_tokio::Builder::new(sanspool_tokio::bb8::Manager::new(manager)).max(8).build().await?; // sanspool
//! ```
//!
//! # What maps to what
//!
//! | bb8 | sanspool-tokio |
//! |---|---|
//! | `ManageConnection::connect` | [`Connector::connect`], on a task of the pool's |
//! | `ManageConnection::is_valid` | [`Connector::check`]: on every checkout from the idle set with [`check_on_checkout(true)`](crate::Builder::check_on_checkout) |
//! | `ManageConnection::has_broken` | [`Connector::state`]: `true` is [`Returned::Broken`] (closed and replaced, [`Stats::broken_returns`](crate::Stats::broken_returns)) |
//! | `Builder::max_size` (default 10) | `max` (default 10) |
//! | `Builder::min_idle` (default none) | `min`, connections kept open (default 1) |
//! | `Builder::test_on_check_out` (default **on**) | `check_on_checkout` (default off: no round trip per checkout) |
//! | `Builder::connection_timeout` (30 s): `RunError::TimedOut` | `timeout` (30 s): [`GetError::Timeout`](crate::GetError::Timeout), with the last connect error if opens were failing |
//! | `Builder::retry_connection` (default on) | always: a failed open is retried with backoff while checkouts wait out their timeout, and while [`build`](crate::Builder::build) waits for `min` (a permanent failure fails both at once) |
//! | `Builder::max_lifetime` (30 min), `idle_timeout` (10 min) | `max_lifetime`, `max_idle` (default: none), plus `lifetime_jitter` |
//! | `Builder::queue_strategy` (`Fifo`, `Lifo`) | `idle_order` ([`IdleOrder::Fifo`](crate::IdleOrder::Fifo) by default, `Lifo`) |
//! | `Builder::connection_customizer` | [`Manager::with_customizer`]: its `on_acquire` after each connect |
//! | `Builder::error_sink` (default: discard) | see below |
//! | `Pool::state`, `Pool::get`, `get_owned` | [`Pool::stats`](crate::Pool::stats), [`Pool::get`](crate::Pool::get) (its guard is `'static`) |
//! | `Pool::dedicated_connection` | `pool.connector().manager().connect().await` |
//! | `Pool::add` | not mapped; see below |
//!
//! # What a returned connection keeps
//!
//! A bb8 manager has no reset: bb8 reuses a returned connection as it is unless `has_broken`
//! says it is broken, and so does [`Manager`] by default. Whatever a borrower left behind — an
//! open transaction, session settings, temporary tables, locks — **reaches the connection's next
//! borrower**. To clean up, give the adapter a reset: [`with_reset`](Manager::with_reset) runs a
//! future on every returned connection before its reuse (on a task, not in the borrower's), and
//! [`with_reset_when`](Manager::with_reset_when) only on those a local test, without I/O, finds
//! dirty. A reset that fails closes the connection. For tokio-postgres, this crate's
//! `postgres::PgConnector` (feature `postgres`, on by default) tracks the transaction status from
//! the protocol itself and resets only what needs it, with no round trip for a clean return.
//!
//! ```
//! use sanspool_tokio::bb8::Manager;
//! use sanspool_tokio::Builder;
//! # /// A "connection" that may be left inside a transaction.
//! # #[derive(Default)]
//! # struct Session { in_transaction: bool }
//! # struct Server;
//! # impl bb8::ManageConnection for Server {
//! #     type Connection = Session;
//! #     type Error = std::io::Error;
//! #     async fn connect(&self) -> Result<Session, std::io::Error> { Ok(Session::default()) }
//! #     async fn is_valid(&self, _: &mut Session) -> Result<(), std::io::Error> { Ok(()) }
//! #     fn has_broken(&self, _: &mut Session) -> bool { false }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!
//! // `Server` is any bb8::ManageConnection.
//! let manager = Manager::new(Server).with_reset_when(
//!     |conn: &mut Session| conn.in_transaction, // judged locally when the guard drops
//!     |conn: &mut Session| {
//!         Box::pin(async move {
//!             conn.in_transaction = false; // "ROLLBACK", run on a task before reuse
//!             Ok(())
//!         })
//!     },
//! );
//! let pool = Builder::new(manager).max(1).build().await?;
//! pool.get().await?.in_transaction = true;
//! assert!(!pool.get().await?.in_transaction);
//! assert_eq!(pool.stats().resets, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # What did not map
//!
//! - **`CustomizeConnection`** maps: [`with_customizer`](Manager::with_customizer) takes the
//!   same boxed customizer bb8's builder does; its `on_acquire` runs right after `connect`, and
//!   an error fails the open (the connection is dropped).
//! - **`ErrorSink`** does not: bb8 gives the sink each error by value, but sanspool keeps a failed
//!   open's error as the cause of the checkouts it fails
//!   ([`GetError::Connect`](crate::GetError::Connect), or `Timeout` with the cause, shared by
//!   every checkout that waited on it), so no sink can own it, and a generic error cannot be
//!   cloned. bb8's default sink discards them; [`Stats::open_failures`](crate::Stats::open_failures)
//!   counts failed opens.
//! - **`Pool::add`** (a connection made outside the pool, added to it) does not: in sanspool a
//!   connection enters a pool only through an open the core ordered, so that `max` counts it
//!   before it exists and a connection is never more than the pool can account for (the core's
//!   conservation of connections, checked by its model and fuzz tests). Adopting a foreign one
//!   would be a new input of the core for every driver, not something one adapter may add. Where
//!   a program has connections to hand over, a [`Connector`] whose `connect` takes them first
//!   and then opens new ones does the same job within the pool's bounds.
//! - **Errors that are not `std::error::Error + Sync`**: bb8 asks of a manager's error only
//!   `Debug + Send`; sanspool hands the error itself to the checkouts it fails, possibly on
//!   other tasks and threads, so [`Manager`] is a [`Connector`] when the manager's error is a
//!   `std::error::Error + Send + Sync`. bb8-postgres's (`tokio_postgres::Error`), bb8-redis's and
//!   diesel-async's are; for one that is not, wrap the manager in one that maps its error.

use crate::{Connector, Returned};
use ::bb8::{CustomizeConnection, ManageConnection};
use futures_util::future::BoxFuture;
use std::fmt;

/// A reset: a future over a connection of `M`.
type ResetFn<M> = Box<
    dyn for<'a> Fn(
            &'a mut <M as ManageConnection>::Connection,
        ) -> BoxFuture<'a, Result<(), <M as ManageConnection>::Error>>
        + Send
        + Sync,
>;
/// Whether a returned connection of `M` needs the reset.
type DirtyFn<M> = Box<dyn Fn(&mut <M as ManageConnection>::Connection) -> bool + Send + Sync>;

/// A [`bb8::ManageConnection`] as a [`Connector`]: `connect` is the manager's `connect` (then the
/// customizer's `on_acquire`), `check` its `is_valid`, a returned connection is
/// [`Broken`](Returned::Broken) when its `has_broken` says so, else clean — or, with a reset,
/// dirty and reset before reuse. See the [module docs](self).
pub struct Manager<M: ManageConnection> {
    manager: M,
    customizer: Option<Box<dyn CustomizeConnection<M::Connection, M::Error>>>,
    /// Whether a returned connection needs the reset (`None`: every one does).
    dirty: Option<DirtyFn<M>>,
    reset: Option<ResetFn<M>>,
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

    /// Runs `reset` on every returned connection that is not broken, before its reuse (on a task;
    /// the borrower does not wait for it), counted in [`Stats::resets`](crate::Stats::resets).
    /// An error closes the connection. Write it as `|conn| Box::pin(async move { ... })`. Each
    /// return then costs whatever `reset` does (a round trip for a `ROLLBACK`); see
    /// [`with_reset_when`](Manager::with_reset_when) to run it only when needed.
    pub fn with_reset<R>(mut self, reset: R) -> Self
    where
        R: for<'a> Fn(&'a mut M::Connection) -> BoxFuture<'a, Result<(), M::Error>>
            + Send
            + Sync
            + 'static,
    {
        self.dirty = None;
        self.reset = Some(Box::new(reset));
        self
    }

    /// Like [`with_reset`](Manager::with_reset), for the returned connections `dirty` finds dirty.
    /// `dirty` runs when the guard drops, so it must not do I/O. A reset that
    /// succeeds must leave the connection clean: the pool does not ask `dirty` again.
    pub fn with_reset_when<D, R>(mut self, dirty: D, reset: R) -> Self
    where
        D: Fn(&mut M::Connection) -> bool + Send + Sync + 'static,
        R: for<'a> Fn(&'a mut M::Connection) -> BoxFuture<'a, Result<(), M::Error>>
            + Send
            + Sync
            + 'static,
    {
        self.dirty = Some(Box::new(dirty));
        self.reset = Some(Box::new(reset));
        self
    }

    /// bb8's `Builder::connection_customizer`: its `on_acquire` runs after each connect; an error
    /// fails the open.
    pub fn with_customizer(
        mut self,
        customizer: Box<dyn CustomizeConnection<M::Connection, M::Error>>,
    ) -> Self {
        self.customizer = Some(customizer);
        self
    }

    /// The bb8 manager (bb8's `dedicated_connection`: `pool.connector().manager().connect()`).
    pub fn manager(&self) -> &M {
        &self.manager
    }
}

impl<M> Connector for Manager<M>
where
    M: ManageConnection,
    M::Error: std::error::Error + Sync,
{
    type Conn = M::Connection;
    type Error = M::Error;

    async fn connect(&self) -> Result<M::Connection, M::Error> {
        let mut conn = self.manager.connect().await?;
        if let Some(customizer) = &self.customizer {
            // On error the connection is dropped, as bb8 does.
            customizer.on_acquire(&mut conn).await?;
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

    async fn reset(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        // `state` says Dirty only with a reset.
        let Some(reset) = &self.reset else {
            return Ok(());
        };
        reset(conn).await
    }

    async fn check(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        self.manager.is_valid(conn).await
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
