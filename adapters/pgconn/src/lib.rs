//! PostgreSQL connections for sanspool's connectors — the part the blocking connector
//! (`sanspool-postgres`, over `postgres::Client`) and the async one (`sanspool-tokio`, over
//! `tokio_postgres::Client`) share, so that both open, judge, reset and cancel connections the
//! same way:
//!
//! - **Opening** ([`Opener`]): a libpq-style connection string or a tokio-postgres
//!   configuration; libpq's rules for host lists, `hostaddr`, `load_balance_hosts` and
//!   `target_session_attrs` ([`Plan`]); libpq's `sslmode` (all five, [`SslMode`]) and
//!   `sslrootcert` over rustls (feature `rustls`, on by default; see [`tls`]) or any TLS
//!   connector; every try of an address within one bound.
//! - **The transaction status, read off the wire** ([`StatusCell`], [`TxStatus`]): each
//!   connection's stream has a transparent observer of the protocol in it (see the `tracker`
//!   module), so a pool knows without a round trip whether a returned connection is idle,
//!   inside a transaction, or gone; and whether an idle connection is still there, from a look
//!   at its socket ([`StatusCell::probe`], [`Liveness`]).
//! - **Judging and resetting** ([`Session`], [`SessionReset`]) and the bounds of each network
//!   operation ([`Bounds`]).
//! - **Cancelling** ([`CancelToken`]) over the way the connection went: TCP, Unix socket, TLS,
//!   through PgBouncer.
//!
//! The stream gets into the clients through their own public API: tokio-postgres's TLS hook,
//! which it calls with the raw socket ([`Negotiator`]; the `handshake` module says how). The
//! crate compiles no pool and no blocking client.
//!
//! Errors, whichever the runtime: [`Error`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bounds;
mod cancel;
mod dsn;
mod error;
mod handshake;
mod opener;
mod plan;
mod probe;
mod session;
mod socket;
mod ssl;
mod status;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
mod tracker;
mod wire;

pub use bounds::{
    Bounds, DEFAULT_CHECK_TIMEOUT, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RESET_TIMEOUT,
};
pub use cancel::CancelToken;
pub use error::{Error, Op};
pub use handshake::{Negotiated, Negotiator};
pub use opener::{Attempt, Opened, Opener};
pub use plan::{Addr, Failure, Lookup, Plan, Step, Target};
pub use probe::Liveness;
pub use session::{Session, SessionReset, DISCARD_SESSION};
pub use socket::PgSocket;
pub use ssl::SslMode;
pub use status::{StatusCell, TxStatus};

pub use tokio_postgres;

// The README's examples, compiled (and run where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
