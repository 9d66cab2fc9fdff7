//! [`PgConnector`]: opens tracked `postgres::Client`s and judges them without a round trip.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{Client, Config, Socket};
use sanspool::{Connector, Returned};

use crate::tracked::{self, StatusCell, TxStatus};

/// How long [`Connector::check`] waits for the server's answer by default.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a [`PgConnector`] could not be built or a connection could not be opened, reset or checked.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The connection string could not be parsed ([`PgConnector::new`]).
    Config(postgres::Error),
    /// The client failed: connecting, or the query of a reset or a check.
    Postgres(postgres::Error),
    /// After `ROLLBACK` (or a check) the session is still not known to be idle — the tracker lost
    /// the thread of the protocol, say — so it must not be reused.
    NotIdle(TxStatus),
}

impl Error {
    /// The client's error, if this is one.
    pub fn as_postgres(&self) -> Option<&postgres::Error> {
        match self {
            Error::Config(e) | Error::Postgres(e) => Some(e),
            Error::NotIdle(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(_) => f.write_str("invalid connection string"),
            Error::Postgres(e) => fmt::Display::fmt(e, f),
            Error::NotIdle(status) => {
                write!(f, "session not idle after a reset or check ({status:?})")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            // The client's error is displayed, not chained: its own source follows.
            Error::Postgres(e) => std::error::Error::source(e),
            Error::NotIdle(_) => None,
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Postgres(e)
    }
}

/// A pooled PostgreSQL connection: a `postgres::Client` and the [`StatusCell`] that follows its
/// transaction status. Derefs to the client.
pub struct PgConn {
    client: Client,
    cell: StatusCell,
    /// Set by every mutable access to the client (every query takes `&mut Client`); cleared by a
    /// reset. An untracked connection (see [`tracked`](crate::tracked)) is clean only if untouched
    /// since its last reset.
    touched: bool,
}

impl PgConn {
    /// Wraps a client opened by [`tracked::connect`] or [`tracked::connect_tls`].
    pub fn new(client: Client, cell: StatusCell) -> Self {
        PgConn {
            client,
            cell,
            touched: true,
        }
    }

    /// The session's transaction status as of the client's last exchange with the server: no I/O.
    pub fn status(&self) -> TxStatus {
        self.cell.get()
    }

    /// The status cell (clones share it): [`StatusCell::is_tracked`], [`StatusCell::bytes_written`].
    pub fn status_cell(&self) -> &StatusCell {
        &self.cell
    }

    /// The client and its status cell, for good.
    pub fn into_inner(self) -> (Client, StatusCell) {
        (self.client, self.cell)
    }

    /// The state the pool should see: [`Returned::Clean`] only when the session is idle.
    fn judge(&self) -> Returned {
        if self.client.is_closed() {
            return Returned::Broken;
        }
        match self.cell.get() {
            TxStatus::Idle => Returned::Clean,
            TxStatus::Closed => Returned::Broken,
            TxStatus::Unknown if !self.cell.is_tracked() && !self.touched => Returned::Clean,
            TxStatus::InTransaction | TxStatus::InError | TxStatus::Unknown => Returned::Dirty,
        }
    }

    /// Whether the session is known to be idle after a query of ours.
    fn settled(&mut self) -> Result<(), Error> {
        if !self.cell.is_tracked() {
            self.touched = false;
            return Ok(());
        }
        match self.cell.get() {
            TxStatus::Idle => Ok(()),
            status => Err(Error::NotIdle(status)),
        }
    }
}

impl Deref for PgConn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        self.touched = true;
        &mut self.client
    }
}

impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConn")
            .field("status", &self.cell.get())
            .field("tracked", &self.cell.is_tracked())
            .field("closed", &self.client.is_closed())
            .finish_non_exhaustive()
    }
}

type Connect = dyn Fn(&Config) -> Result<(Client, StatusCell), postgres::Error> + Send + Sync;

/// The [`Connector`] for `postgres::Client`.
///
/// Connections are opened through [`tracked`], so a returned connection is judged from the last
/// ReadyForQuery the server sent, without a round trip: idle is clean; inside a transaction, in a
/// failed one, or mid-request (a COPY left half done, unread results) is dirty and gets a
/// `ROLLBACK`; closed is broken and replaced. A session the tracker cannot follow (Unix-domain
/// sockets, see [`tracked`]'s limitations) is rolled back after every use that touched it.
#[derive(Clone)]
pub struct PgConnector {
    config: Config,
    connect: Arc<Connect>,
    check_timeout: Duration,
}

impl PgConnector {
    /// A connector for a libpq-style connection string (`"host=localhost user=postgres"`) or URL
    /// (`"postgresql://postgres@localhost/db"`), without TLS.
    pub fn new(dsn: &str) -> Result<PgConnector, Error> {
        dsn.parse()
    }

    /// A connector for `config`, without TLS.
    pub fn from_config(config: Config) -> PgConnector {
        PgConnector {
            config,
            connect: Arc::new(tracked::connect),
            check_timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }

    /// A connector for `config` through the TLS connector `tls` (for example
    /// `postgres_native_tls::MakeTlsConnector` or `postgres_openssl::MakeTlsConnector`), cloned
    /// for every connection.
    pub fn with_tls<T>(config: Config, tls: T) -> PgConnector
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::TlsConnect: Send + 'static,
        T::Stream: Send + 'static,
        T::Error: 'static,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send + 'static,
    {
        PgConnector {
            config,
            connect: Arc::new(move |config: &Config| tracked::connect_tls(config, tls.clone())),
            check_timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }

    /// How long [`Connector::check`] waits for the server ([`DEFAULT_CHECK_TIMEOUT`] unless set).
    pub fn check_timeout(mut self, timeout: Duration) -> PgConnector {
        self.check_timeout = timeout;
        self
    }

    /// The configuration connections are opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl FromStr for PgConnector {
    type Err = Error;

    fn from_str(dsn: &str) -> Result<PgConnector, Error> {
        dsn.parse::<Config>()
            .map(PgConnector::from_config)
            .map_err(Error::Config)
    }
}

impl From<Config> for PgConnector {
    fn from(config: Config) -> PgConnector {
        PgConnector::from_config(config)
    }
}

impl fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // postgres::Config's Debug redacts the password.
        f.debug_struct("PgConnector")
            .field("config", &self.config)
            .field("check_timeout", &self.check_timeout)
            .finish_non_exhaustive()
    }
}

impl Connector for PgConnector {
    type Conn = PgConn;
    type Error = Error;

    fn connect(&self) -> Result<PgConn, Error> {
        let (client, cell) = (self.connect)(&self.config)?;
        Ok(PgConn {
            client,
            cell,
            touched: false,
        })
    }

    /// No I/O: reads the status the server sent last.
    fn state(&self, conn: &mut PgConn) -> Returned {
        conn.judge()
    }

    /// `ROLLBACK`; an error unless the server then says the session is idle.
    fn reset(&self, conn: &mut PgConn) -> Result<(), Error> {
        conn.client.batch_execute("ROLLBACK")?;
        conn.settled()
    }

    /// An empty query, answered within the check timeout; an error unless the session is idle.
    fn check(&self, conn: &mut PgConn) -> Result<(), Error> {
        conn.client.is_valid(self.check_timeout)?;
        conn.settled()
    }

    /// Sends Terminate and waits for the server to close the socket.
    fn close(&self, conn: PgConn) {
        let _ = conn.client.close();
    }
}
