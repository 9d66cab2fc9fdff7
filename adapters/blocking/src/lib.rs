//! Blocking connection pools driving the [`sanspool_core`] state machine with real I/O: r2d2's
//! shape at the top, psycopg2's `pool` module in [`psycopg2`].
//!
//! A client implements [`Connector`] (connect, judge a returned connection, reset, check, close);
//! a [`Pool`] — `Send + Sync`, checkouts waiting FIFO-fair up to a timeout, opens on background
//! threads, a maintenance thread for lifetimes, idle expiry and open retries, and no connect,
//! close, reset or query ever under its lock — hands out [`PooledConn`] guards that deref to the
//! connection and go back on drop. A returned connection is judged by [`Connector::state`]: clean
//! ones are reused as they are, dirty ones (left inside a transaction) reset first, broken ones
//! closed and replaced.
//!
//! Errors are typed by call: a checkout fails with [`GetError`], a give-back ([`psycopg2`]'s
//! `putconn`) with [`psycopg2::PutError`], a build with [`BuildError`], and the pool's own inputs (`close`,
//! `drain`, `resize`, `check`) with the core's [`CoreError`]. psycopg2's texts are kept word for
//! word.
//!
//! With feature `r2d2` (off by default), `r2d2::Manager` pools what any r2d2 connection
//! manager opens (r2d2_sqlite, r2d2_postgres, diesel's `ConnectionManager`, ...).
//!
//! An event hook ([`Builder::events`], r2d2's `HandleEvent`) sees each connection's acquire and
//! release, each checkout, checkin and timeout ([`Event`]); [`LogEvents`] logs them, and with
//! feature `tracing`, `TracingEvents` emits them as `tracing` events.
//!
//! # Example
//!
//! ```
//! use sanspool::{Connector, Pool, Returned};
//! use std::convert::Infallible;
//!
//! /// A "connection" that counts its queries and may be left inside a transaction.
//! #[derive(Debug, Default)]
//! struct Session {
//!     queries: u32,
//!     in_transaction: bool,
//! }
//!
//! struct Server;
//!
//! impl Connector for Server {
//!     type Conn = Session;
//!     type Error = Infallible;
//!
//!     fn connect(&self) -> Result<Session, Infallible> {
//!         Ok(Session::default())
//!     }
//!     fn state(&self, conn: &mut Session) -> Returned {
//!         if conn.in_transaction { Returned::Dirty } else { Returned::Clean }
//!     }
//!     fn reset(&self, conn: &mut Session) -> Result<(), Infallible> {
//!         conn.in_transaction = false; // "ROLLBACK"
//!         Ok(())
//!     }
//!     fn check(&self, _conn: &mut Session) -> Result<(), Infallible> {
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder(Server).min(1).max(4).build()?;
//!
//! // A guard, given back on drop.
//! {
//!     let mut conn = pool.get()?;
//!     conn.queries += 1;
//!     conn.in_transaction = true; // left dirty: the pool rolls it back
//! }
//! let conn = pool.get()?;
//! assert!(!conn.in_transaction);
//! drop(conn);
//!
//! pool.close()?;
//! assert_eq!(pool.get().unwrap_err().to_string(), "connection pool is closed");
//!
//! // psycopg2's API: the same key gives the same connection.
//! use sanspool::psycopg2::ThreadedConnectionPool;
//! use sanspool::psycopg2::PutError;
//!
//! let pool = ThreadedConnectionPool::new(1, 4, Server)?;
//! let a = pool.getconn(Some(7))?;
//! let again = pool.getconn(Some(7))?;
//! assert!(a.ptr_eq(&again));
//! a.lock()?.queries += 1;
//! pool.putconn(a, Some(&7), false)?;
//! assert_eq!(pool.putconn(again, None, false), Err(PutError::AlreadyReturned));
//! pool.closeall()?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod connector;
mod driver;
mod guard;
mod maintenance;
mod parking;
mod pool;
pub mod psycopg2;
#[cfg(feature = "r2d2")]
pub mod r2d2;
mod shared;
mod thread_exit;

pub use builder::Builder;
pub use connector::Connector;
pub use guard::{Home, OwnedConn, PooledConn};
pub use pool::Pool;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use sanspool_kit::TracingEvents;
pub use sanspool_kit::{BuildError, Event, Events, GetError, LogEvents};

pub use sanspool_core::Error as CoreError;
pub use sanspool_core::{Fairness, IdleOrder, KeepIdle, Returned, Stats};

use std::hash::Hash;

/// What can name a checkout (`get_keyed`, psycopg2's `getconn(key)`): anything hashable that can
/// be shared between threads. Implemented for every such type.
pub trait Key: Hash + Eq + Clone + Send + Sync + 'static {}

impl<T: Hash + Eq + Clone + Send + Sync + 'static> Key for T {}

// The README's examples, compiled (and run where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
