//! The driver kit: what every std driver of the `sanspool-core` state machine needs besides how
//! it waits and where its I/O runs — so that the blocking pools (`sanspool`, on threads) and the
//! async pool (`sanspool-tokio`, on tasks) keep only that, as quinn keeps each runtime to its
//! `Runtime` seam.
//!
//! - [`Connector`]: the connection-maker trait as a driver sees it (async; the blocking driver
//!   adapts its synchronous one, and runs the kit's futures with [`run_ready`]), and [`Hook`]s;
//! - [`Settings`]: the connector, hooks, timeout and [`Clock`], and the I/O of one
//!   [`Io`](sanspool_core::Io) ([`Settings::perform`]), every call guarded against panics;
//! - [`Engine`]: the core beside the last open failure; the drain that sorts the core's outputs
//!   (I/O to start, [`Delivery`]s for queued checkouts, reports to log) and the report of a
//!   performed I/O;
//! - [`GetError`], [`BuildError`]: the errors, the same in every driver;
//! - [`Event`], [`Events`]: the event hook (r2d2's `HandleEvent`), fed from the [`Engine`]
//!   ([`Observed`]); [`LogEvents`] logs them (and, with feature `tracing`, `TracingEvents`
//!   emits them as `tracing` events);
//! - [`Draft`]: what a builder holds until `build`, and `builder_settings!`, the settings every
//!   driver's builder offers, written once;
//! - [`Waiters`]: the table of queued checkouts; [`tagged`]: each pool's tag, unique in the
//!   process whichever driver built it;
//! - feature `conformance`: the suite every driver runs (`conformance` module).
//!
//! The driver loop itself is stated once, on [`sanspool_core::Pool`] ("Driving it").

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod connector;
mod draft;
mod engine;
mod error;
mod events;
mod ready;
mod settings;
mod tag;
mod waiters;

pub use clock::{sooner, Clock};
pub use connector::{AsyncHook, Connector, Hook, SyncHook};
pub use draft::Draft;
pub use engine::{Delivery, Engine, Granted, Outcome, Outputs};
pub use error::{BuildError, Failure, GetError, Panic};
#[cfg(feature = "tracing")]
pub use events::TracingEvents;
pub use events::{Event, Events, LogEvents, Observed};
pub use ready::run_ready;
pub use settings::{guarded, AtOnce, Done, Settings};
pub use tag::tagged;
pub use waiters::Waiters;

/// The core, for [`builder_settings!`]'s expansions in the drivers' crates.
#[doc(hidden)]
pub use sanspool_core as __core;

// The README's examples, compiled (and run where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
