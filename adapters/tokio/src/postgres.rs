//! The [`Connector`] for `tokio_postgres::Client`: connections opened by `sanspool-pgconn` (DNS,
//! socket, libpq `sslmode` with rustls, the connect bound) over its tracked socket, so a returned
//! connection is judged from the last ReadyForQuery the server sent — a clean return costs no
//! round trip, as with the blocking connector, which shares all of this.
//!
//! Each connection's protocol driver (`tokio_postgres::Connection`) runs as a task of its own on
//! the pool's runtime; closing a connection drops the client and waits, within the close bound,
//! for that task to send Terminate and see the server close its end (so that when the close
//! returns, the server's session is over). A connection dropped without the pool's close does
//! the same on its own, within the close bound.
//!
//! [`PgConn::probe`] tells whether an idle connection is still there without a round trip.
//!
//! A statement prepared on the fly by `query(&str)`/`query_one(&str)`/`execute(&str)` is closed
//! by tokio-postgres when the call ends (a Close and a Sync written by the connection's task); a
//! guard dropped before the server answers still judges clean, because the tracker knows that a
//! request of nothing but Close cannot change the transaction status.
//!
//! ```no_run
//! use sanspool_tokio::postgres::PgConnector;
//! use sanspool_tokio::{Builder, Pool};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool: Pool<PgConnector> = Builder::new(PgConnector::new("host=localhost user=postgres")?)
//!     .max(8)
//!     .timeout(Duration::from_secs(5))
//!     .build()
//!     .await?;
//! let conn = pool.get().await?;
//! let row = conn.query_one("SELECT $1::text", &[&"hello"]).await?;
//! assert_eq!(row.get::<_, &str>(0), "hello");
//! # Ok(())
//! # }
//! ```

use crate::{Connector, Returned};
use sanspool_pgconn::{Opener, Session};
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

pub use sanspool_pgconn::{
    Bounds, CancelToken, Error, Liveness, Op, PgSocket, SessionReset, SslMode, StatusCell,
    TxStatus, DEFAULT_CHECK_TIMEOUT, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RESET_TIMEOUT, DISCARD_SESSION,
};
pub use tokio_postgres;

/// The [`Connector`] for `tokio_postgres::Client`. Every network operation is bounded
/// ([`Bounds`]: the same as the blocking connector's): opening (the connect timeout, or the
/// configuration's), the reset, the check and the close; a connection that exceeds a bound is
/// closed.
#[derive(Clone)]
pub struct PgConnector {
    opener: Opener,
    session_reset: SessionReset,
    bounds: Bounds,
}

impl PgConnector {
    /// A connector for a libpq-style connection string (`"host=localhost user=postgres"`) or URL
    /// (`"postgresql://postgres@localhost/db"`), with libpq's `sslmode` (all five; `prefer` by
    /// default) and `sslrootcert` through the default TLS stack.
    pub fn new(dsn: &str) -> Result<PgConnector, Error> {
        dsn.parse()
    }

    /// A connector for `config`, following its `sslmode` (`disable`, `prefer`, `require`) through
    /// the default TLS stack; [`ssl`](Self::ssl) sets `verify-ca` or `verify-full`.
    pub fn from_config(config: tokio_postgres::Config) -> PgConnector {
        PgConnector::of(Opener::from_config(config))
    }

    /// A connector for `config` through the TLS connector `tls` (any `MakeTlsConnect` generic
    /// over the stream), cloned for every connection; `sslmode` is followed as libpq follows it.
    pub fn with_tls<T>(config: tokio_postgres::Config, tls: T) -> PgConnector
    where
        T: MakeTlsConnect<PgSocket> + Clone + Send + Sync + 'static,
        T::TlsConnect: Send + 'static,
        T::Stream: Send + 'static,
        T::Error: 'static,
        <T::TlsConnect as TlsConnect<PgSocket>>::Future: Send + 'static,
    {
        PgConnector::of(Opener::with_tls(config, tls))
    }

    fn of(opener: Opener) -> PgConnector {
        PgConnector {
            opener,
            session_reset: SessionReset::rollback(),
            bounds: Bounds::default(),
        }
    }

    /// Sets libpq's `sslmode` and `sslrootcert` (a PEM file, `"system"` for the system store,
    /// `None` for libpq's default) for the default TLS stack.
    pub fn ssl(self, mode: SslMode, root_cert: Option<&str>) -> Result<PgConnector, Error> {
        Ok(PgConnector {
            opener: self.opener.ssl(mode, root_cert)?,
            ..self
        })
    }

    /// The `sslmode` connections follow.
    pub fn ssl_mode(&self) -> SslMode {
        self.opener.ssl_mode()
    }

    /// How returned sessions are reset ([`SessionReset::rollback`] unless set).
    pub fn session_reset(mut self, reset: SessionReset) -> PgConnector {
        self.session_reset = reset;
        self
    }

    sanspool_pgconn::bound_setters!();

    /// The configuration connections are opened with.
    pub fn config(&self) -> &tokio_postgres::Config {
        self.opener.config()
    }
}

impl FromStr for PgConnector {
    type Err = Error;

    fn from_str(dsn: &str) -> Result<PgConnector, Error> {
        dsn.parse().map(PgConnector::of)
    }
}

impl From<tokio_postgres::Config> for PgConnector {
    fn from(config: tokio_postgres::Config) -> PgConnector {
        PgConnector::from_config(config)
    }
}

impl fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnector")
            .field("opener", &self.opener)
            .field("session_reset", &self.session_reset)
            .field("bounds", &self.bounds)
            .finish()
    }
}

/// A pooled connection: a `tokio_postgres::Client`, the [`StatusCell`] that follows its
/// transaction status, and the task driving its socket. Derefs to the client.
pub struct PgConn(Box<Parts>);

/// A connection's parts, boxed: the pool moves a connection on every checkout and return, and a
/// pointer is cheaper to move than the parts (about 400 bytes).
struct Parts {
    client: tokio_postgres::Client,
    session: Session,
    cancel: CancelToken,
    /// `None` only once taken by the close, which waits for it.
    driver: Option<Driver>,
    /// Bounds the close when the connection is dropped (outside the pool's own close too).
    close_timeout: Duration,
}

impl PgConn {
    /// The session's transaction status as of the last exchange with the server: no I/O.
    pub fn status(&self) -> TxStatus {
        self.0.session.status()
    }

    /// The status cell: [`StatusCell::is_tracked`], [`StatusCell::bytes_written`].
    pub fn status_cell(&self) -> &StatusCell {
        self.0.session.cell()
    }

    /// A token that cancels the query this connection is running
    /// ([`CancelToken::cancel_query_async`] from a task).
    pub fn cancel_token(&self) -> CancelToken {
        self.0.cancel.clone()
    }

    /// Whether the client wrote anything since the session was last opened, reset or checked.
    pub fn used_since_reset(&self) -> bool {
        self.0.session.used_since_reset()
    }

    /// Whether this idle connection is still there, without a round trip: nothing is sent and
    /// nothing read (a `poll` of its socket and, if the server sent something, a peek at it).
    /// Not async: it never blocks (a few microseconds), so a pool can call it on the task that
    /// hands the connection out.
    ///
    /// - [`Liveness::Alive`]: hand it out. Notifications the server sent meanwhile still reach
    ///   the client.
    /// - [`Liveness::Dead`]: the server closed it (a terminated backend, a restart: its FATAL
    ///   error or end of stream is waiting or already read), or the connection was reset: close
    ///   it and open another; a query would fail.
    /// - [`Liveness::Unsure`]: something is waiting that cannot be read here (under TLS, the
    ///   bytes are encrypted): [`Connector::check`] it (a round trip) before handing it out.
    ///
    /// `Alive` says nothing of the transaction status ([`status`](Self::status)).
    pub fn probe(&self) -> Liveness {
        if self.0.client.is_closed() {
            return Liveness::Dead;
        }
        self.0.session.probe()
    }
}

impl Drop for PgConn {
    /// The driver sends Terminate and waits for the server to close, on its own task: within
    /// the close timeout.
    fn drop(&mut self) {
        self.0
            .session
            .cell()
            .set_deadline(Some(self.0.close_timeout));
    }
}

impl Deref for PgConn {
    type Target = tokio_postgres::Client;

    fn deref(&self) -> &tokio_postgres::Client {
        &self.0.client
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut tokio_postgres::Client {
        &mut self.0.client
    }
}

impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConn")
            .field("status", &self.0.session.status())
            .field("tracked", &self.0.session.cell().is_tracked())
            .field("closed", &self.0.client.is_closed())
            .finish_non_exhaustive()
    }
}

/// The task driving a connection's socket (`tokio_postgres::Connection`).
type Driver = JoinHandle<Result<(), tokio_postgres::Error>>;

/// `fut` within `bound`, else [`Error::TimedOut`] and the connection torn down (its driver
/// stopped, the socket dropped), as the blocking connector's deadline does: the request left
/// unanswered would otherwise hold the close that follows for its whole bound too.
async fn within<T>(
    bound: Duration,
    op: Op,
    driver: Option<&Driver>,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(bound, fut).await {
        Ok(done) => done.map_err(Error::Postgres),
        Err(_) => {
            driver.map(Driver::abort);
            Err(Error::TimedOut(op))
        }
    }
}

impl Connector for PgConnector {
    type Conn = PgConn;
    type Error = Error;

    async fn connect(&self) -> Result<PgConn, Error> {
        let opened = self.opener.open(self.bounds.connect).await?;
        let connection = opened.connection;
        // Its error is the client's to report (every request then fails, `is_closed` is true),
        // but for the close, which must tell a timeout of its own.
        let driver = tokio::spawn(connection);
        Ok(PgConn(Box::new(Parts {
            client: opened.client,
            session: Session::new(opened.cell),
            cancel: opened.cancel,
            driver: Some(driver),
            close_timeout: self.bounds.close,
        })))
    }

    /// No I/O: the status the server sent last (and, for a session-resetting policy, whether the
    /// borrower sent anything).
    /// A look at the socket, no round trip ([`PgConn::probe`]): so the pool vets every idle
    /// connection before a checkout gets it, and a connection the server closed while it sat
    /// idle (a restart, a terminated backend, a network reset) is replaced, not handed out.
    fn probes(&self) -> bool {
        true
    }

    fn probe(&self, conn: &mut PgConn) -> Liveness {
        conn.probe()
    }

    fn state(&self, conn: &mut PgConn) -> Returned {
        let resets_sessions = self.session_reset.resets_sessions();
        conn.0
            .session
            .judge(conn.0.client.is_closed(), resets_sessions)
    }

    /// The [`SessionReset`] policy within the reset timeout; an error unless the server then says
    /// the session is idle.
    async fn reset(&self, conn: &mut PgConn) -> Result<(), Error> {
        let status = conn.status();
        let (client, driver) = (&conn.0.client, conn.0.driver.as_ref());
        let policy = &self.session_reset;
        within(self.bounds.reset, Op::Reset, driver, async {
            for sql in policy.statements(status) {
                client.batch_execute(sql).await?;
            }
            if policy.resets_sessions() {
                client.clear_type_cache();
            }
            Ok(())
        })
        .await?;
        conn.0.session.settled()
    }

    /// An empty query, answered within the check timeout; an error unless the session is idle.
    async fn check(&self, conn: &mut PgConn) -> Result<(), Error> {
        let unused = !conn.used_since_reset();
        let (client, driver) = (&conn.0.client, conn.0.driver.as_ref());
        within(
            self.bounds.check,
            Op::Check,
            driver,
            client.simple_query(""),
        )
        .await?;
        conn.0.session.checked(unused)
    }

    /// A login the server refused, a database that does not exist or may not be connected to,
    /// an unusable configuration ([`Error::is_permanent`]): waiting checkouts fail at once, and
    /// the pool's build gives up at once.
    fn is_permanent(&self, error: &Error) -> bool {
        error.is_permanent()
    }

    /// A reset, check or close cut off at its bound ([`Error::TimedOut`]): counted by the pool
    /// in `abandoned_resets`, `abandoned_checks` or `abandoned_closes`.
    fn is_abandoned(&self, error: &Error) -> bool {
        matches!(error, Error::TimedOut(_))
    }

    /// Sends Terminate and waits for the server to close the socket, within the close timeout:
    /// drops the client, so its driver sends Terminate, and waits for the driver to see the
    /// server's end of stream. Past the bound, stops the driver (dropping the socket) and
    /// answers [`Error::TimedOut`].
    async fn close(&self, mut conn: PgConn) -> Result<(), Error> {
        let driver = conn.0.driver.take();
        conn.0.session.cell().set_deadline(Some(self.bounds.close));
        drop(conn);
        let Some(mut driver) = driver else {
            return Ok(());
        };
        // The socket's deadline ends the driver at the bound (with a timeout error); the timer
        // here does not rely on it.
        match tokio::time::timeout(self.bounds.close, &mut driver).await {
            Err(_) => {
                driver.abort();
                Err(Error::TimedOut(Op::Close))
            }
            // A connection already gone (the server closed it) is closed all the same.
            Ok(Ok(Err(e))) => match Error::during(Op::Close)(e) {
                timed_out @ Error::TimedOut(_) => Err(timed_out),
                _ => Ok(()),
            },
            Ok(_) => Ok(()),
        }
    }
}
