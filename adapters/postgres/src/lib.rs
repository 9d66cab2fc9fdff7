//! The sanspool [`Connector`] for the blocking [`postgres`] crate: pooled `postgres::Client`s
//! whose cleanliness is read, not queried.
//!
//! [`PgConnector`] opens each connection with a transparent observer of the protocol in its
//! stream ([`tracked`]), which keeps the transaction status the server sends in every ReadyForQuery message (what
//! libpq's `PQtransactionStatus` reports, and `postgres::Client` does not). So when a connection
//! comes back to the pool:
//!
//! - idle: it is reused as it is — **no round trip**;
//! - inside a transaction, in a failed one, or mid-request (a `Transaction` leaked with
//!   `mem::forget`, `BEGIN` sent by hand, a `COPY` left half done, unread results): one `ROLLBACK`
//!   before the next borrower gets it, who never sees the previous transaction;
//! - closed (the server went away, the backend was terminated): closed and replaced.
//!
//! That is the transaction, not the session: settings, `SET ROLE`, temporary tables, prepared
//! statements, advisory locks and `LISTEN` pass to the next borrower unless the connector is
//! given [`SessionReset::discard`] (one round trip after each checkout that sent anything); see
//! [`SessionReset`] for what leaks under which policy.
//!
//! Everything a program needs comes from this crate: the connector, the pools and their builder
//! (re-exported from [`sanspool`]: r2d2's [`Pool`] at the top, psycopg2's pools in [`psycopg2`]),
//! and [`postgres`] itself — the stock crate: the pool hands out real `postgres::Client`s. What
//! this connector shares with the async one (opening, TLS, the tracker, bounds, session reset,
//! cancellation, the error type) is `sanspool-pgconn`'s.
//!
//! # Example
//!
//! ```no_run
//! use sanspool_postgres::psycopg2::ThreadedConnectionPool;
//! use sanspool_postgres::{PgConnector, Pool};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dsn = "host=localhost user=postgres application_name=shop";
//!
//! // r2d2's shape: a thread-safe pool (clone it to share it) whose checkouts wait up to the
//! // timeout, and a guard that derefs to `postgres::Client`, given back on drop.
//! let pool = Pool::builder(PgConnector::new(dsn)?)
//!     .min(2)
//!     .max(8)
//!     .timeout(Duration::from_secs(5))
//!     .build()?;
//! {
//!     let mut conn = pool.get()?;
//!     let row = conn.query_one("SELECT $1::text", &[&"hello"])?;
//!     assert_eq!(row.get::<_, &str>(0), "hello");
//!
//!     // Left inside a transaction: the pool rolls it back before anyone else gets it.
//!     conn.batch_execute("BEGIN; CREATE TEMP TABLE scratch (x int)")?;
//! }
//! println!("{:?}", pool.stats());
//! pool.close()?;
//!
//! // psycopg2's API: getconn / putconn / closeall (minconn 1, maxconn 8; at maxconn a getconn
//! // fails at once, as psycopg2's does).
//! let pool = ThreadedConnectionPool::new(1, 8, PgConnector::new(dsn)?)?;
//! let conn = pool.getconn(Some(1))?;
//! conn.lock()?.execute("SELECT 1", &[])?;
//! pool.putconn(conn, Some(&1), false)?;
//! pool.closeall()?;
//! # Ok(())
//! # }
//! ```
//!
//! # TLS and cancellation
//!
//! [`PgConnector::new`] follows libpq's `sslmode` (all of [`SslMode`]; `prefer` by default) and
//! `sslrootcert` through rustls (feature `rustls`, on by default; see `sanspool_pgconn::tls` for
//! what each mode verifies); [`PgConnector::from_config`] follows the configuration's `sslmode`, and
//! [`PgConnector::ssl`] sets `verify-ca` or `verify-full`. Without the feature, `prefer` is
//! plaintext and the modes that demand TLS are refused. Any other TLS connector generic over the
//! stream can be given to [`PgConnector::with_tls`]. The status is tracked above the encryption.
//! Unix-domain sockets ignore `sslmode`, as libpq does. To cancel a running query from another
//! thread, use [`PgConn::cancel_token`] (see [`tracked`] for why the client's own token cannot).
//!
//! # Bounds
//!
//! Every network operation of the connector has a bound: opening ([`DEFAULT_CONNECT_TIMEOUT`]
//! per host address, or the configuration's `connect_timeout`), the reset, the check and the
//! close ([`Bounds`], shared with `sanspool-tokio`'s connector). A connection that exceeds one
//! fails with [`Error::TimedOut`] and is closed; a pool counts the resets, checks and closes cut
//! off so in its stats (`abandoned_resets`, `abandoned_checks`, `abandoned_closes`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod connector;
mod open;
pub mod tracked;

pub use connector::{PgConn, PgConnector};
pub use sanspool_pgconn::{
    Bounds, CancelToken, Error, Liveness, Op, PgSocket, SessionReset, SslMode, StatusCell,
    TxStatus, DEFAULT_CHECK_TIMEOUT, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RESET_TIMEOUT, DISCARD_SESSION,
};

pub use postgres;
pub use sanspool;
pub use sanspool::psycopg2;
pub use sanspool::{
    BuildError, Builder, Connector, CoreError, Event, Events, Fairness, GetError, IdleOrder,
    KeepIdle, LogEvents, OwnedConn, Pool, PooledConn, Returned, Stats,
};

// The README's examples, compiled (and run where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
