//! Blocking connection pools — psycopg2's simple, threaded and persistent pools — driving the
//! [`sanspool_core`] state machine with real I/O.
//!
//! A client implements [`Connector`] (connect, judge a returned connection, reset, check, close);
//! a [`Builder`] makes one of three pools:
//!
//! - [`SimplePool`]: one thread, no locks, no background threads (psycopg2's
//!   `SimpleConnectionPool`);
//! - [`ThreadedPool`]: `Send + Sync`, checkouts wait FIFO-fair up to a timeout, opens on background
//!   threads, a maintenance thread for lifetimes, idle expiry and open retries (psycopg2's
//!   `ThreadedConnectionPool`, but no connect, close, reset or query ever runs under its lock);
//! - [`PersistentPool`]: one connection per thread, given back when the thread ends (psycopg2's
//!   `PersistentConnectionPool`, which leaks it).
//!
//! Each offers psycopg2's API — `getconn(key)`, `putconn(conn, key, close)`, `closeall()`, with a
//! shareable handle so that the same key gives the same connection — and the Rust idiom: `get()`
//! returns a [`PooledConn`] guard that derefs to the connection and gives it back on drop. A
//! returned connection is judged by [`Connector::state`]: clean ones are reused as they are, dirty
//! ones (left inside a transaction) reset first, broken ones closed and replaced.
//!
//! # Example
//!
//! ```
//! use sanspool::{Builder, Connector, PoolError, Returned};
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
//! # fn main() -> Result<(), PoolError<Infallible>> {
//! let pool = Builder::new(Server).min(1).max(4).build_threaded()?;
//!
//! // The Rust idiom: a guard, given back on drop.
//! {
//!     let mut conn = pool.get()?;
//!     conn.queries += 1;
//!     conn.in_transaction = true; // left dirty: the pool rolls it back
//! }
//! let conn = pool.get()?;
//! assert!(!conn.in_transaction);
//! drop(conn);
//!
//! // psycopg2's API: the same key gives the same connection.
//! let a = pool.getconn(Some(7))?;
//! let again = pool.getconn(Some(7))?;
//! assert!(a.ptr_eq(&again));
//! a.lock()?.queries += 1;
//! pool.putconn(a, Some(&7), false)?;
//! assert!(matches!(pool.putconn(again, None, false), Err(PoolError::AlreadyReturned)));
//!
//! pool.closeall()?;
//! assert_eq!(pool.get().unwrap_err().to_string(), "connection pool is closed");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod builder;
mod connector;
mod driver;
mod error;
mod guard;
mod maintenance;
mod persistent;
mod simple;
mod threaded;

pub use builder::Builder;
pub use connector::Connector;
pub use error::PoolError;
pub use guard::{Home, PooledConn};
pub use persistent::PersistentPool;
pub use simple::{LocalConn, LocalPooledConn, SimplePool};
pub use threaded::{Conn, ConnGuard, ThreadedPool};

pub use sanspool_core::Error as CoreError;
pub use sanspool_core::{IdleOrder, KeepIdle, Returned, Stats};
