//! psycopg2's `pool` module: [`SimpleConnectionPool`], [`ThreadedConnectionPool`] and
//! [`PersistentConnectionPool`], with `getconn(key)`, `putconn(conn, key, close)` and
//! `closeall()`, psycopg2's connection objects ([`Conn`], [`LocalConn`]) and its error texts.
//!
//! Each is the crate's [`Pool`](crate::Pool) underneath: the threaded and persistent pools deref
//! to it, and the simple one is the same engine with its I/O inline and no thread. Made by
//! `new(minconn, maxconn, connector)` with psycopg2's behaviour (checkouts never wait; see
//! [`Builder::psycopg2`](crate::Builder::psycopg2)), or by the [`Builder`](crate::Builder)'s
//! `build_simple`, `build_threaded` and `build_persistent` with any settings.
//!
//! ```
//! # use sanspool::{Connector, Returned};
//! # use std::convert::Infallible;
//! # struct Server;
//! # impl Connector for Server {
//! #     type Conn = Vec<String>;
//! #     type Error = Infallible;
//! #     fn connect(&self) -> Result<Vec<String>, Infallible> { Ok(Vec::new()) }
//! #     fn state(&self, _: &mut Vec<String>) -> Returned { Returned::Clean }
//! #     fn reset(&self, _: &mut Vec<String>) -> Result<(), Infallible> { Ok(()) }
//! #     fn check(&self, _: &mut Vec<String>) -> Result<(), Infallible> { Ok(()) }
//! # }
//! use sanspool::psycopg2::ThreadedConnectionPool;
//!
//! let pool = ThreadedConnectionPool::new(1, 4, Server)?; // minconn, maxconn
//! let conn = pool.getconn(None)?;
//! conn.lock()?.push("SELECT 1".into());
//! pool.putconn(conn, None, false)?;
//! pool.closeall()?;
//! assert_eq!(pool.closeall().unwrap_err().to_string(), "connection pool is closed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod handle;
mod keyed;
mod persistent;
mod simple;
mod threaded;

pub use error::PutError;
pub use handle::{Conn, ConnGuard, LocalConn, LockError};
pub use persistent::PersistentConnectionPool;
pub use simple::{LocalPooledConn, SimpleConnectionPool};
pub use threaded::ThreadedConnectionPool;
