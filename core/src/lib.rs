//! A sans-IO connection pool: psycopg2's `pool` module as a `no_std` state machine.
//!
//! The pool here does no I/O, reads no clock and starts no thread (str0m's and quinn-proto's
//! manner). What happens is given to it as inputs; what to do next is drained from it as outputs:
//!
//! | inputs | outputs |
//! |---|---|
//! | user actions: [`checkout`](Pool::checkout), [`checkin`](Pool::checkin), [`detach`](Pool::detach), [`cancel`](Pool::cancel), [`claim`](Pool::claim), [`resize`](Pool::resize), [`drain`](Pool::drain), [`check_idle`](Pool::check_idle), [`close`](Pool::close) | [`poll_io`](Pool::poll_io): an [`Io`] to start — open a connection, close / reset / check / vet this one |
//! | driver reports: [`handle`](Pool::handle) with a [`Completion`] (one per kind of [`Io`]), [`handle_timeout`](Pool::handle_timeout) | [`poll_handoff`](Pool::poll_handoff): a [`Handoff`] for a queued checkout — grant it this connection, fail it, wake it to claim one |
//! | | [`poll_report`](Pool::poll_report): a [`Report`] for the application (a leaked checkout) |
//! | | [`poll_timeout`](Pool::poll_timeout): when to call `handle_timeout` next (O(1)) |
//!
//! Getters ([`stats`](Pool::stats), [`is_warm`](Pool::is_warm), ...) read at any moment.
//!
//! **Mutate, then drain.** A driver — the blocking pools of the `sanspool` crate, an async runtime,
//! a microcontroller's main loop — runs one loop, stated once on [`Pool`] ("Driving it"): feed an
//! input; drain every output and deliver or start it; report each I/O's outcome as a
//! [`Completion`] when it is known (now or later; a driver that bounds a reset, check or close and
//! gives up on it says so, [`Finished::Abandoned`], and the pool counts it in [`Stats`]); sleep
//! until [`poll_timeout`](Pool::poll_timeout) or the next input. Time is a plain [`Time`] value
//! given with every input, so a test drives hours of pool life in microseconds.
//!
//! The pool owns idle connections (any type `C`): an [`Io`] that closes, resets or checks one, and
//! a [`Handoff`] that grants one, carries it out, a checkin or a completion carries it back, so ownership shows where every
//! connection is. Checked-out connections are named by a [`Lease`], operations in flight by a
//! [`Ticket`]; both carry a slot generation, so a stale or foreign handle is a typed [`Error`],
//! never an alias, and the refused connection is handed back in [`Rejected`].
//!
//! Storage is the caller's (smoltcp's manner): [`Alloc`] (feature `alloc`, the default: hashbrown
//! keys, grows with `max`) or [`Fixed`] (heapless, no allocation at all). Feature `testkit` adds
//! the `testkit` module: the input vocabulary, the checking simulated driver and handle forgers
//! that the tests, the fuzzers and the benchmarks share.
//!
//! # A driver loop
//!
//! Here the "connections" are numbers and the I/O is done on the spot; a real driver opens
//! sockets, and may report completions later, from other threads or tasks.
//!
//! ```
//! use sanspool_core::{
//!     Checkout, Completion, Config, Finished, Fixed, Handoff, Io, Pool, Returned, Time, Wait,
//! };
//! use sanspool_core::{Lease, WaiterId};
//!
//! // At most 2 connections, 1 kept open; up to 4 queued checkouts; no heap.
//! type MyPool = Pool<u32, &'static str, Fixed<2, 4>>;
//!
//! /// Drain every output: perform the I/O and report it, keep what queued checkouts received.
//! fn drive(pool: &mut MyPool, now: Time, next_conn: &mut u32) -> Vec<(WaiterId, Lease, u32)> {
//!     let mut granted = Vec::new();
//!     loop {
//!         if let Some(io) = pool.poll_io() {
//!             let done = match io {
//!                 Io::Open(ticket) => {
//!                     *next_conn += 1; // "connect"
//!                     Completion::Opened { ticket, conn: *next_conn }
//!                 }
//!                 // Each works here; a driver that gives up at a bound says `Finished::Abandoned`.
//!                 Io::Close { ticket, conn: _ } => Completion::Closed { ticket, outcome: Finished::Ok },
//!                 Io::Reset { ticket, conn } => {
//!                     Completion::Reset { ticket, conn, outcome: Finished::Ok }
//!                 }
//!                 Io::Check { ticket, conn } | Io::Vet { ticket, conn } => {
//!                     Completion::Checked { ticket, conn, outcome: Finished::Ok }
//!                 }
//!             };
//!             pool.handle(now, done).expect("a drained I/O's completion is accepted");
//!         } else if let Some(handoff) = pool.poll_handoff() {
//!             match handoff {
//!                 Handoff::Grant { waiter, lease, conn } => granted.push((waiter, lease, conn)),
//!                 Handoff::Fail { waiter, error } => panic!("{waiter:?} failed: {error}"),
//!                 // A connection came back while checkouts wait: the woken one claims it (a
//!                 // real driver wakes its thread or task, which claims when it runs).
//!                 Handoff::Wake { waiter } => {
//!                     if let Ok(Checkout::Ready { lease, conn }) = pool.claim(now, waiter) {
//!                         granted.push((waiter, lease, conn));
//!                     }
//!                 }
//!             }
//!         } else if pool.poll_report().is_none() {
//!             // (No `leak_after` here; a real driver logs each report.)
//!             return granted;
//!         }
//!     }
//! }
//!
//! let mut pool = MyPool::new(Config::new(1, 2)).unwrap();
//! let mut next_conn = 100;
//! let t0 = Time::ZERO;
//! drive(&mut pool, t0, &mut next_conn); // opens the `min` connection
//! assert!(pool.is_warm());
//! assert_eq!(pool.stats().idle, 1);
//!
//! // psycopg2's getconn(key="a"): the idle connection.
//! let Ok(Checkout::Ready { lease, conn }) = pool.checkout(t0, Some("a"), Wait::No) else {
//!     panic!()
//! };
//! // The same key gets the same connection again.
//! assert_eq!(pool.checkout(t0, Some("a"), Wait::No), Ok(Checkout::Held(lease)));
//!
//! // Another checkout finds nothing idle: it queues, the pool orders an open, the driver serves it.
//! let Ok(Checkout::Waiting(w)) = pool.checkout(t0, None, Wait::Forever) else { panic!() };
//! let granted = drive(&mut pool, t0, &mut next_conn);
//! assert_eq!(granted[0].0, w);
//!
//! // A third would exceed max = 2: psycopg2's error.
//! let exhausted = pool.checkout(t0, None, Wait::No).unwrap_err();
//! assert_eq!(exhausted.to_string(), "connection pool exhausted");
//!
//! // Nothing is due until an input comes: no lifetimes, no waiter deadlines here.
//! assert_eq!(pool.poll_timeout(), None);
//!
//! // putconn: a connection left inside a transaction is reset before it is reused.
//! pool.checkin(t0, lease, Some(&"a"), conn, Returned::Dirty).unwrap();
//! drive(&mut pool, t0, &mut next_conn);
//! assert_eq!(pool.stats().idle, 1);
//!
//! // closeall: idle connections close now, the borrowed one when it comes back.
//! pool.close(t0).unwrap();
//! drive(&mut pool, t0, &mut next_conn);
//! let (_, lease, conn) = granted.into_iter().next().unwrap();
//! let late = pool.checkin(t0, lease, None, conn, Returned::Clean).unwrap_err();
//! assert_eq!(late.error.to_string(), "connection pool is closed");
//! drive(&mut pool, t0, &mut next_conn);
//! assert!(pool.is_empty());
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "testkit")]
extern crate std;

mod command;
mod config;
mod error;
mod handle;
mod pool;
mod slot;
mod stats;
mod storage;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
mod time;
mod timer;

pub use command::{Checkout, Completion, Finished, Handoff, Io, Liveness, Report, Returned, Wait};
pub use config::{Config, Fairness, IdleOrder, KeepIdle};
pub use error::{Error, Rejected};
pub use handle::{Lease, Ticket, WaiterId};
pub use pool::Pool;
pub use stats::Stats;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub use storage::Alloc;
pub use storage::{Fixed, Storage};
pub use time::Time;

/// A pool with growable storage (hashbrown keys).
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub type AllocPool<C, K = u64> = Pool<C, K, Alloc>;

/// A pool with fixed, allocation-free storage for `SLOTS` connections and `WAITERS` queued checkouts.
pub type FixedPool<C, K, const SLOTS: usize, const WAITERS: usize> =
    Pool<C, K, Fixed<SLOTS, WAITERS>>;

// The README's examples, compiled (and run where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
