//! A sans-IO connection pool: psycopg2's `pool` module as a `no_std` state machine.
//!
//! The pool here does no I/O, reads no clock and starts no thread. Its inputs are what happens — a
//! checkout, a checkin, "the open succeeded", "the time is now T" — given as `handle_*` calls; its
//! outputs are what to do next — open a connection, close this one, reset that one, hand this one
//! to that waiter — drained with [`Pool::poll_command`], and when to wake it up next,
//! [`Pool::poll_timeout`]. A driver (the blocking pools of the `sanspool` crate, an async runtime,
//! a microcontroller's main loop) performs the I/O and reports back. Time is a plain [`Time`] value,
//! so a test drives hours of pool life in microseconds.
//!
//! The pool owns idle connections (any type `C`): a command that closes, resets or grants one carries
//! it out, a checkin carries it back, so ownership shows where every connection is. Checked-out
//! connections are named by a [`Lease`], operations in flight by a [`Ticket`]; both carry a slot
//! generation, so a stale or foreign handle is a typed [`Error`], never an alias.
//!
//! Storage is the caller's: [`Alloc`] (feature `alloc`, the default: hashbrown keys, grows with
//! `max`) or [`Fixed`] (heapless, no allocation at all).
//!
//! # A hand-driven pool
//!
//! Here the "connections" are numbers and the driver is a loop; a real driver opens sockets.
//!
//! ```
//! use sanspool_core::{Checkout, Command, Config, Fixed, Pool, Returned, Time, Wait};
//!
//! // At most 2 connections, 1 kept open; up to 4 queued checkouts; no heap.
//! let mut pool: Pool<u32, &str, Fixed<2, 4>> = Pool::new(Config::new(1, 2)).unwrap();
//! let mut next_conn = 100;
//!
//! // The driver loop: do what the pool asks, report the outcome.
//! let mut drive = |pool: &mut Pool<u32, &str, Fixed<2, 4>>, now: Time| {
//!     let mut granted = Vec::new();
//!     while let Some(cmd) = pool.poll_command() {
//!         match cmd {
//!             Command::Open(ticket) => {
//!                 next_conn += 1; // "connect"
//!                 pool.handle_opened(now, ticket, next_conn).unwrap();
//!             }
//!             Command::Close { ticket, conn: _ } => pool.handle_closed(now, ticket).unwrap(),
//!             Command::Reset { ticket, conn } | Command::Check { ticket, conn } => {
//!                 pool.handle_reset(now, ticket, conn, true).unwrap() // "ROLLBACK" worked
//!             }
//!             Command::Grant { waiter, lease, conn } => granted.push((waiter, lease, conn)),
//!             Command::Fail { waiter, error } => panic!("{waiter:?} failed: {error}"),
//!             Command::Ready => {} // min connections are open: a warm-up wait ends here
//!         }
//!     }
//!     granted
//! };
//!
//! let t0 = Time::ZERO;
//! drive(&mut pool, t0); // opens the `min` connection
//! assert_eq!(pool.stats().idle, 1);
//!
//! // psycopg2's getconn(key="a"): the idle connection.
//! let Ok(Checkout::Ready { lease, conn }) = pool.handle_checkout(t0, Some("a"), Wait::No) else {
//!     panic!()
//! };
//! // The same key gets the same connection again.
//! assert_eq!(pool.handle_checkout(t0, Some("a"), Wait::No), Ok(Checkout::Held(lease)));
//!
//! // Another checkout finds nothing idle: it queues, the pool orders an open, the driver serves it.
//! let Ok(Checkout::Waiting(w)) = pool.handle_checkout(t0, None, Wait::Forever) else { panic!() };
//! let granted = drive(&mut pool, t0);
//! assert_eq!(granted[0].0, w);
//!
//! // A third would exceed max = 2: psycopg2's error.
//! let exhausted = pool.handle_checkout(t0, None, Wait::No).unwrap_err();
//! assert_eq!(exhausted.to_string(), "connection pool exhausted");
//!
//! // putconn: a connection left inside a transaction is reset before it is reused.
//! pool.handle_checkin(t0, lease, Some(&"a"), conn, Returned::Dirty).unwrap();
//! drive(&mut pool, t0);
//! assert_eq!(pool.stats().idle, 1);
//!
//! // closeall: idle connections close now, the borrowed one when it comes back.
//! pool.close(t0).unwrap();
//! drive(&mut pool, t0);
//! let (_, lease, conn) = granted.into_iter().next().unwrap();
//! let late = pool.handle_checkin(t0, lease, None, conn, Returned::Clean).unwrap_err();
//! assert_eq!(late.error.to_string(), "connection pool is closed");
//! drive(&mut pool, t0);
//! assert!(pool.is_empty());
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod config;
mod error;
mod handle;
mod pool;
mod slot;
mod stats;
pub mod storage;
mod time;

pub use command::{Checkout, Command, Returned, Wait};
pub use config::{Config, IdleOrder, KeepIdle};
pub use error::{Error, Rejected};
pub use handle::{Lease, Ticket, WaiterId};
pub use pool::Pool;
pub use slot::{Slot, State, Waiter};
pub use stats::Stats;
#[cfg(feature = "alloc")]
pub use storage::Alloc;
pub use storage::Fixed;
pub use time::Time;

/// A pool with growable storage (hashbrown keys).
#[cfg(feature = "alloc")]
pub type AllocPool<C, K = u64> = Pool<C, K, Alloc>;

/// A pool with fixed, allocation-free storage for `SLOTS` connections and `WAITERS` queued checkouts.
pub type FixedPool<C, K, const SLOTS: usize, const WAITERS: usize> =
    Pool<C, K, Fixed<SLOTS, WAITERS>>;
