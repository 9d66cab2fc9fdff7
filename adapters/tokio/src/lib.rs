//! An async connection pool on tokio: the third driver of the sans-IO `sanspool-core` state
//! machine, beside the blocking pools of `sanspool`.
//!
//! The rules (fairness, `min`/`max`, lifetimes, backoff, what a returned connection needs)
//! are the core's; this crate only runs them: one mutex around the core, a table of queued
//! checkouts beside it (a waker, then the outcome, per checkout), opens, resets, checks and
//! closes on tasks, and a maintenance task sleeping until the core's next deadline. See
//! [`Pool`].
//!
//! With feature `postgres` (on by default), `postgres::PgConnector` pools
//! `tokio_postgres::Client`s opened through `sanspool-pgconn`'s tracked socket, so a clean
//! return costs no round trip. With feature `bb8` (off by default), `bb8::Manager` pools what
//! any bb8 connection manager opens (bb8-postgres, bb8-redis, ...).
//!
//! An event hook ([`Builder::events`], r2d2's `HandleEvent`) sees each connection's acquire and
//! release, each checkout, checkin and timeout ([`Event`]); [`LogEvents`] logs them, and with
//! feature `tracing`, `TracingEvents` emits them as `tracing` events.
//!
//! ```
//! # use sanspool_tokio::{Builder, Connector, Returned};
//! # use std::convert::Infallible;
//! # struct Server;
//! # impl Connector for Server {
//! #     type Conn = Vec<String>;
//! #     type Error = Infallible;
//! #     async fn connect(&self) -> Result<Vec<String>, Infallible> { Ok(Vec::new()) }
//! #     fn state(&self, _: &mut Vec<String>) -> Returned { Returned::Clean }
//! #     async fn reset(&self, _: &mut Vec<String>) -> Result<(), Infallible> { Ok(()) }
//! #     async fn check(&self, _: &mut Vec<String>) -> Result<(), Infallible> { Ok(()) }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! let pool = Builder::new(Server)
//!     .min(2)
//!     .max(4)
//!     .timeout(Duration::from_secs(5))
//!     .build()
//!     .await?;
//! let mut tasks = Vec::new();
//! for _ in 0..8 {
//!     let pool = pool.clone();
//!     tasks.push(tokio::spawn(async move {
//!         pool.get().await.unwrap().push("SELECT 1".into());
//!     }));
//! }
//! for t in tasks {
//!     t.await.unwrap();
//! }
//! assert_eq!(pool.stats().checkouts, 8);
//! assert!(pool.stats().size <= 4);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
#[cfg(feature = "bb8")]
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub mod bb8;
mod builder;
mod inner;
mod internals;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

pub use api::{Pool, PooledConn};
pub use builder::Builder;
pub use sanspool_core::Error as CoreError;
pub use sanspool_core::{Fairness, IdleOrder, KeepIdle, Returned, Stats};
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use sanspool_kit::TracingEvents;
pub use sanspool_kit::{BuildError, Connector, Event, Events, GetError, LogEvents};

// The README's examples, compiled (and run where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
