//! A tracked `postgres::Client` without a pool: the transaction status read off the wire.
//!
//! The server states its transaction status in every ReadyForQuery message; libpq keeps the last
//! one (`PQtransactionStatus`), `postgres::Client` does not. A client opened by [`connect`] or
//! [`connect_tls`] talks through a transparent observer of the protocol, and its
//! [`StatusCell::get`](crate::StatusCell::get) is one atomic load. The observer's rule and limits are those of
//! `sanspool-pgconn` (its `tracker` module); how it gets into a stock `postgres::Client`, its
//! `handshake` module.
//!
//! `postgres::Client::cancel_token` of a client opened this way cannot cancel (the client was
//! told `sslmode=require` with direct TLS and a loopback stand-in's address): use
//! [`PgConn::cancel_token`](crate::PgConn::cancel_token).

use std::time::Duration;

use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{Client, Config};
use sanspool_pgconn::{Error, Opener, PgSocket, StatusCell};

/// Opens a tracked connection without TLS: plaintext unless `sslmode=require`, which then fails
/// as libpq built without TLS would. Within [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT)
/// per address unless the configuration sets `connect_timeout`.
pub fn connect(config: &Config) -> Result<(Client, StatusCell), Error> {
    connect_tls(config, postgres::NoTls)
}

/// Opens a tracked connection through the TLS connector `tls`, following the configuration's
/// `sslmode` as libpq does (`prefer` tries TLS and falls back to plaintext).
pub fn connect_tls<T>(config: &Config, tls: T) -> Result<(Client, StatusCell), Error>
where
    T: MakeTlsConnect<PgSocket> + Clone + Send + Sync + 'static,
    T::TlsConnect: Send + 'static,
    T::Stream: Send + 'static,
    T::Error: 'static,
    <T::TlsConnect as TlsConnect<PgSocket>>::Future: Send + 'static,
{
    let opener = Opener::with_tls(crate::config::to_tokio(config), tls);
    let bound: Duration = crate::DEFAULT_CONNECT_TIMEOUT;
    crate::open::open(&opener, bound, None).map(|o| (o.client, o.cell))
}
