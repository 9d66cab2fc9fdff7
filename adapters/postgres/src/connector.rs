//! [`PgConnector`]: opens tracked `postgres::Client`s and judges them without a round trip.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{Client, Config};
use sanspool::{Connector, Returned};

use crate::connect::{self, CancelTarget, Tls};
use crate::tracked::{PgSocket, StatusCell, TxStatus};
use crate::{Bounds, Session};
// What the bound setters' docs link to.
#[cfg(doc)]
use crate::{
    DEFAULT_CHECK_TIMEOUT, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESET_TIMEOUT,
};

/// Why a [`PgConnector`] could not be built or a connection could not be opened, reset, checked or
/// cancelled.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The connection string could not be parsed ([`PgConnector::new`]).
    Config(postgres::Error),
    /// The configuration cannot be used as it is (no host, `sslmode=require` without TLS, ...).
    InvalidConfig(String),
    /// The server could not be reached: DNS, TCP or the Unix socket.
    Connect(std::io::Error),
    /// The TLS connector could not be set up for the server's name.
    Tls(Box<dyn std::error::Error + Send + Sync>),
    /// The client failed: the protocol, TLS, authentication, or the query of a reset or check.
    Postgres(postgres::Error),
    /// The operation did not finish within its bound; the connection is closed.
    TimedOut(Op),
    /// The connection closed while being opened.
    Closed,
    /// After `ROLLBACK` (or a check) the session is still not known to be idle — the tracker lost
    /// the thread of the protocol, say — so it must not be reused.
    NotIdle(TxStatus),
}

/// The bounded network operations of a connection ([`Error::TimedOut`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening: DNS, TCP, TLS, startup and authentication, per host address.
    Connect,
    /// The reset of a returned connection (`ROLLBACK`, or the session reset).
    Reset,
    /// The pool's check query.
    Check,
    /// Terminate, and waiting for the server to close the socket.
    Close,
    /// A cancel request.
    Cancel,
}

impl Error {
    /// The client's error, if this is one.
    pub fn as_postgres(&self) -> Option<&postgres::Error> {
        match self {
            Error::Config(e) | Error::Postgres(e) => Some(e),
            _ => None,
        }
    }

    /// A client error caused by the connection's deadline becomes [`Error::TimedOut`].
    fn during(op: Op) -> impl FnOnce(postgres::Error) -> Error {
        move |e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(cause) = source {
                if cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
                {
                    return Error::TimedOut(op);
                }
                source = cause.source();
            }
            Error::Postgres(e)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(_) => f.write_str("invalid connection string"),
            Error::InvalidConfig(why) => write!(f, "unusable configuration: {why}"),
            Error::Connect(e) => write!(f, "cannot reach the server: {e}"),
            Error::Tls(e) => write!(f, "TLS setup failed: {e}"),
            Error::Postgres(e) => fmt::Display::fmt(e, f),
            Error::TimedOut(op) => write!(f, "{op:?} timed out"),
            Error::Closed => f.write_str("the connection closed"),
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
            Error::Connect(e) => Some(e),
            Error::Tls(e) => Some(&**e),
            // The client's error is displayed, not chained: its own source follows.
            Error::Postgres(e) => std::error::Error::source(e),
            _ => None,
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
pub struct PgConn(Box<Parts>);

/// A connection's parts, boxed: the pool moves a connection on every checkout and return, and a
/// pointer is cheaper to move than the parts (over 500 bytes).
struct Parts {
    /// `None` only once taken by `into_inner` or `close`.
    client: Option<Client>,
    session: Session,
    cancel: CancelTarget,
    /// Bounds the close when the connection is dropped (outside the pool's own close too).
    close_timeout: Duration,
}

impl PgConn {
    /// The session's transaction status as of the client's last exchange with the server: no I/O.
    pub fn status(&self) -> TxStatus {
        self.0.session.status()
    }

    /// The status cell (clones share it): [`StatusCell::is_tracked`], [`StatusCell::bytes_written`].
    pub fn status_cell(&self) -> &StatusCell {
        self.0.session.cell()
    }

    /// A token that cancels the query this connection is running, from any thread. Use it rather
    /// than `postgres::Client::cancel_token`, which cannot reach the server for a connection this
    /// crate opened (tokio-postgres keeps no address for it).
    pub fn cancel_token(&self) -> CancelToken {
        CancelToken(self.0.cancel.clone())
    }

    /// The client and its status cell, for good.
    pub fn into_inner(mut self) -> (Client, StatusCell) {
        let client = self.0.client.take().expect("present until taken");
        (client, self.0.session.cell().clone())
    }

    fn client(&self) -> &Client {
        self.0.client.as_ref().expect("present until taken")
    }

    /// Whether the client wrote anything since the session was last opened, reset or checked.
    pub fn used_since_reset(&self) -> bool {
        self.0.session.used_since_reset()
    }

    /// The state the pool should see (see [`Session::judge`]).
    fn judge(&self, reset: &SessionReset) -> Returned {
        let closed = self.client().is_closed();
        self.0.session.judge(closed, reset.resets_sessions())
    }

    /// Runs `f` on the client with the connection's I/O bounded by `bound`.
    fn bounded<T>(
        &mut self,
        bound: Duration,
        op: Op,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, Error> {
        self.0.session.cell().set_deadline(Some(bound));
        let result = f(self.0.client.as_mut().expect("present until taken"));
        self.0.session.cell().set_deadline(None);
        result.map_err(Error::during(op))
    }
}

impl Drop for PgConn {
    /// Dropping the client sends Terminate and waits for the server to close: within the close
    /// timeout.
    fn drop(&mut self) {
        if let Some(client) = self.0.client.take() {
            self.0
                .session
                .cell()
                .set_deadline(Some(self.0.close_timeout));
            drop(client);
        }
    }
}

/// Cancels the query running on one connection ([`PgConn::cancel_token`]); `Send + Sync + Clone`.
#[derive(Clone)]
pub struct CancelToken(CancelTarget);

impl CancelToken {
    /// Sends the cancel request: a new connection to the address the connection went to, with
    /// TLS as its `sslmode` says, bounded by the connect timeout. As with libpq, success means
    /// the request was delivered; the query may have finished first.
    pub fn cancel_query(&self) -> Result<(), Error> {
        self.0.cancel()
    }
}

impl CancelToken {
    /// [`cancel_query`](Self::cancel_query) on the caller's tokio runtime (`cancel_query` runs a
    /// runtime of its own, which a task cannot block on).
    pub async fn cancel_query_async(&self) -> Result<(), Error> {
        self.0.cancel_async().await
    }
}

/// Opens connections for an async client (`sanspool-tokio`) through the same path as
/// [`PgConnector::connect`]: its DNS, socket, `sslmode` and TLS, status tracking and connect
/// bound (given to [`open`](Self::open)) — but hands out the `tokio_postgres::Client` and the connection future, for the caller's
/// runtime to drive. Made by [`PgConnector::async_opener`].
#[derive(Clone)]
pub struct AsyncOpener {
    config: tokio_postgres::Config,
    tls: Tls,
}

/// A connection opened by [`AsyncOpener::open`].
pub struct AsyncOpened {
    /// The client.
    pub client: tokio_postgres::Client,
    /// Drives the client's socket: spawn it; it ends when the connection closes.
    pub connection: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send>,
    >,
    /// The session's transaction status, as the server last sent it.
    pub cell: StatusCell,
    /// Cancels the query running on this connection.
    pub cancel: CancelToken,
}

impl fmt::Debug for AsyncOpened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncOpened")
            .field("status", &self.cell.get())
            .finish_non_exhaustive()
    }
}

impl AsyncOpener {
    /// Opens one connection, within `connect_timeout` per host address when the configuration
    /// sets no `connect_timeout` (the async connector's [`Bounds::connect`]).
    pub async fn open(&self, connect_timeout: Duration) -> Result<AsyncOpened, Error> {
        let (client, connection, cell, cancel) =
            connect::open_async(&self.config, &self.tls, Some(connect_timeout)).await?;
        Ok(AsyncOpened {
            client,
            connection: Box::pin(connection),
            cell,
            cancel: CancelToken(cancel),
        })
    }
}

impl fmt::Debug for AsyncOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncOpener")
            .field("config", &self.config)
            .field("tls", &!self.tls.is_none())
            .finish()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken").finish_non_exhaustive()
    }
}

impl Deref for PgConn {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client()
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.client.as_mut().expect("present until taken")
    }
}

impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConn")
            .field("status", &self.0.session.status())
            .field("tracked", &self.0.session.cell().is_tracked())
            .field("closed", &self.client().is_closed())
            .finish_non_exhaustive()
    }
}

/// What [`SessionReset::discard`] sends: `DISCARD ALL` but for its `DEALLOCATE ALL`, which would
/// deallocate the statements the client caches for its type lookups (tokio-postgres can clear
/// its cache of types, not of those statements); statements prepared with SQL `PREPARE` are
/// deallocated one by one. One simple query, one round trip.
pub const DISCARD_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
    UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES; \
    DO $$DECLARE s text; BEGIN FOR s IN SELECT name FROM pg_prepared_statements WHERE from_sql \
    LOOP EXECUTE format('DEALLOCATE %I', s); END LOOP; END$$";

/// What a connection's session is reset with before the next borrower gets it
/// ([`PgConnector::session_reset`]).
///
/// | left by a borrower | `rollback` | `discard` |
/// |---|---|---|
/// | an open or failed transaction, unread results, a COPY | reset | reset |
/// | `SET ROLE`, `SET SESSION AUTHORIZATION` | **leaks** | reset |
/// | `set_config(.., false)` (row-level-security tenants), `SET` of any setting | **leaks** | reset |
/// | temporary tables, `PREPARE`, `WITH HOLD` cursors | **leaks** | reset |
/// | session advisory locks | **leaks** | reset |
/// | `LISTEN`, and notifications already received | **leaks** | reset, and dropped |
///
/// (Settings changed inside a transaction that was rolled back are undone by the server under
/// every policy.) See the README for the measured cost.
#[derive(Clone)]
pub struct SessionReset(Policy);

#[derive(Clone)]
enum Policy {
    Rollback,
    Statement(Arc<str>),
    Callback(Arc<ResetFn>),
}

type ResetFn = dyn Fn(&mut Client) -> Result<(), postgres::Error> + Send + Sync;

impl SessionReset {
    /// `ROLLBACK` when the session is not idle, nothing otherwise: a clean return costs no round
    /// trip, and session state (settings, role, temporary tables, ...) passes to the next
    /// borrower. The default, as in psycopg2's pool.
    pub fn rollback() -> SessionReset {
        SessionReset(Policy::Rollback)
    }

    /// [`DISCARD_SESSION`] after every checkout that sent anything (one round trip; nothing for
    /// a checkout that sent nothing), after a `ROLLBACK` when the session is not idle; then the
    /// client's type cache is cleared and notifications already received are dropped.
    pub fn discard() -> SessionReset {
        SessionReset::statement(DISCARD_SESSION)
    }

    /// As [`discard`](Self::discard), with `sql` (one or more statements, sent as a simple query)
    /// instead of [`DISCARD_SESSION`]. Not `DISCARD ALL` nor `DEALLOCATE ALL`: they deallocate
    /// the statements the client prepared and caches for its type lookups, and the client's next
    /// lookup of a new type fails (`prepared statement "s8" does not exist`).
    pub fn statement(sql: impl Into<String>) -> SessionReset {
        SessionReset(Policy::Statement(Arc::from(sql.into())))
    }

    /// As [`discard`](Self::discard), with `reset` run on the client instead of `DISCARD ALL`.
    pub fn callback<F>(reset: F) -> SessionReset
    where
        F: Fn(&mut Client) -> Result<(), postgres::Error> + Send + Sync + 'static,
    {
        SessionReset(Policy::Callback(Arc::new(reset)))
    }

    fn resets_sessions(&self) -> bool {
        !matches!(self.0, Policy::Rollback)
    }

    fn run(&self, client: &mut Client, status: TxStatus) -> Result<(), postgres::Error> {
        let sql = match &self.0 {
            Policy::Rollback => return client.batch_execute("ROLLBACK"),
            Policy::Statement(sql) => Some(sql),
            Policy::Callback(_) => None,
        };
        if status != TxStatus::Idle {
            // DISCARD ALL refuses to run in a transaction block.
            client.batch_execute("ROLLBACK")?;
        }
        match (sql, &self.0) {
            (Some(sql), _) => client.batch_execute(sql)?,
            (None, Policy::Callback(reset)) => reset(client)?,
            (None, _) => {}
        }
        client.clear_type_cache();
        let mut notifications = client.notifications();
        let mut pending = notifications.iter();
        while postgres::fallible_iterator::FallibleIterator::next(&mut pending)?.is_some() {}
        Ok(())
    }
}

impl Default for SessionReset {
    fn default() -> Self {
        SessionReset::rollback()
    }
}

impl fmt::Debug for SessionReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Policy::Rollback => f.write_str("SessionReset::Rollback"),
            Policy::Statement(sql) => write!(f, "SessionReset::Statement({sql:?})"),
            Policy::Callback(_) => f.write_str("SessionReset::Callback"),
        }
    }
}

/// libpq's `sslmode`: what the connection asks of TLS.
///
/// Followed by the default TLS stack (feature `rustls`); a connector given to
/// [`PgConnector::with_tls`] is told only whether TLS is off, tried or required, and verifies as
/// it was built to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS if the server offers it, else plaintext; the certificate is not verified. libpq's
    /// default.
    Prefer,
    /// TLS or no connection; the certificate is verified only if a root certificate file is
    /// given (as libpq does).
    Require,
    /// TLS, the certificate's chain verified against the roots.
    VerifyCa,
    /// TLS, the chain verified and the certificate naming the host.
    VerifyFull,
}

impl SslMode {
    /// What tokio-postgres negotiates for this mode (verification is the TLS connector's).
    fn negotiation(self) -> postgres::config::SslMode {
        use postgres::config::SslMode as Tokio;
        match self {
            SslMode::Disable => Tokio::Disable,
            SslMode::Prefer => Tokio::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Tokio::Require,
        }
    }

    fn of(config: &Config) -> SslMode {
        use postgres::config::SslMode as Tokio;
        match config.get_ssl_mode() {
            Tokio::Disable => SslMode::Disable,
            Tokio::Require => SslMode::Require,
            _ => SslMode::Prefer,
        }
    }
}

/// The [`Connector`] for `postgres::Client`.
///
/// Connections are opened by this crate (see [`tracked`](crate::tracked)), so a returned
/// connection is judged from the last ReadyForQuery the server sent, without a round trip: idle
/// is clean; inside a transaction, in a failed one, or mid-request (a COPY left half done, unread
/// results) is dirty and gets a `ROLLBACK`; closed is broken and replaced. Every network
/// operation is bounded: opening ([`connect_timeout`](Self::connect_timeout), or the
/// configuration's own), the reset, the check and the close; a connection that exceeds a bound
/// is closed, never waited on.
#[derive(Clone)]
pub struct PgConnector {
    config: Config,
    ssl_mode: SslMode,
    tls: Tls,
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
    pub fn from_config(config: Config) -> PgConnector {
        let mode = SslMode::of(&config);
        let plain = PgConnector::bare(config, mode);
        match default_tls(mode, None) {
            Ok(tls) => PgConnector { tls, ..plain },
            // Only the root certificates can fail to load (libpq's default file, unreadable):
            // every TLS handshake then fails with that error, as libpq's would.
            Err(e) => PgConnector {
                tls: Tls::broken(e.to_string()),
                ..plain
            },
        }
    }

    /// Sets libpq's `sslmode` and `sslrootcert` (a PEM file, `"system"` for the system store,
    /// `None` for libpq's default) for the default TLS stack.
    pub fn ssl(self, mode: SslMode, root_cert: Option<&str>) -> Result<PgConnector, Error> {
        let tls = default_tls(mode, root_cert)?;
        let mut config = self.config;
        config.ssl_mode(mode.negotiation());
        Ok(PgConnector {
            config,
            ssl_mode: mode,
            tls,
            ..self
        })
    }

    /// The `sslmode` connections follow.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    fn bare(config: Config, ssl_mode: SslMode) -> PgConnector {
        PgConnector {
            config,
            ssl_mode,
            tls: Tls::none(),
            session_reset: SessionReset::rollback(),
            bounds: Bounds::default(),
        }
    }

    /// A connector for `config` through the TLS connector `tls` (any `MakeTlsConnect` generic
    /// over the stream, such as `postgres_native_tls::MakeTlsConnector`), cloned for every
    /// connection; `sslmode` is followed as tokio-postgres follows it.
    pub fn with_tls<T>(config: Config, tls: T) -> PgConnector
    where
        T: MakeTlsConnect<PgSocket> + Clone + Send + Sync + 'static,
        T::TlsConnect: Send + 'static,
        T::Stream: Send + 'static,
        T::Error: 'static,
        <T::TlsConnect as TlsConnect<PgSocket>>::Future: Send + 'static,
    {
        let mode = SslMode::of(&config);
        PgConnector {
            tls: Tls::new(tls),
            ..PgConnector::bare(config, mode)
        }
    }

    /// How returned sessions are reset ([`SessionReset::rollback`] unless set).
    pub fn session_reset(mut self, reset: SessionReset) -> PgConnector {
        self.session_reset = reset;
        self
    }

    crate::bound_setters!();

    /// The configuration connections are opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// An opener of async connections with this connector's configuration and TLS (see
    /// [`AsyncOpener`]).
    pub fn async_opener(&self) -> AsyncOpener {
        AsyncOpener {
            config: self.config.as_tokio().clone(),
            tls: self.tls.clone(),
        }
    }
}

impl FromStr for PgConnector {
    type Err = Error;

    fn from_str(dsn: &str) -> Result<PgConnector, Error> {
        let (taken, rest) = crate::dsn::take(dsn)
            .map_err(|option| Error::InvalidConfig(format!("unsupported {option}")))?;
        let config: Config = rest.parse().map_err(Error::Config)?;
        let mode = taken.ssl_mode.unwrap_or(SslMode::of(&config));
        PgConnector::bare(config, mode).ssl(mode, taken.root_cert.as_deref())
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
            .field("ssl_mode", &self.ssl_mode)
            .field("tls", &!self.tls.is_none())
            .field("session_reset", &self.session_reset)
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl Connector for PgConnector {
    type Conn = PgConn;
    type Error = Error;

    fn connect(&self) -> Result<PgConn, Error> {
        let opened = connect::open(&self.config, &self.tls, Some(self.bounds.connect))?;
        Ok(PgConn(Box::new(Parts {
            client: Some(opened.client),
            session: Session::new(opened.cell),
            cancel: opened.cancel,
            close_timeout: self.bounds.close,
        })))
    }

    /// No I/O: reads the status the server sent last (and, for a session-resetting policy,
    /// whether the borrower sent anything).
    fn state(&self, conn: &mut PgConn) -> Returned {
        conn.judge(&self.session_reset)
    }

    /// The [`SessionReset`] policy within the reset timeout; an error unless the server then says
    /// the session is idle.
    fn reset(&self, conn: &mut PgConn) -> Result<(), Error> {
        let (policy, status) = (&self.session_reset, conn.status());
        conn.bounded(self.bounds.reset, Op::Reset, |c| policy.run(c, status))?;
        conn.0.session.settled()
    }

    /// An empty query, answered within the check timeout; an error unless the session is idle.
    fn check(&self, conn: &mut PgConn) -> Result<(), Error> {
        let (bound, unused) = (self.bounds.check, !conn.used_since_reset());
        // An empty query under the socket's deadline (not `is_valid`'s own timer, which leaves
        // the connection open and its error untyped).
        conn.bounded(bound, Op::Check, |c| c.simple_query("").map(drop))?;
        conn.0.session.checked(unused)
    }

    /// A reset, check or close cut off at its bound ([`Error::TimedOut`]): counted by the pool
    /// in `abandoned_resets`, `abandoned_checks` or `abandoned_closes`.
    fn is_abandoned(&self, error: &Error) -> bool {
        matches!(error, Error::TimedOut(_))
    }

    /// Sends Terminate and waits for the server to close the socket, within the close timeout:
    /// [`Error::TimedOut`] if it passes (the socket is dropped all the same).
    fn close(&self, mut conn: PgConn) -> Result<(), Error> {
        conn.0.session.cell().set_deadline(Some(self.bounds.close));
        match conn.0.client.take() {
            Some(client) => client.close().map_err(Error::during(Op::Close)),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "rustls")]
fn default_tls(mode: SslMode, root_cert: Option<&str>) -> Result<Tls, Error> {
    if mode == SslMode::Disable {
        return Ok(Tls::none());
    }
    crate::tls::RustlsConnect::new(mode, root_cert).map(Tls::new)
}

#[cfg(not(feature = "rustls"))]
fn default_tls(mode: SslMode, _root_cert: Option<&str>) -> Result<Tls, Error> {
    match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => Err(Error::InvalidConfig(
            "certificate verification needs a TLS connector (feature `rustls`, or with_tls)".into(),
        )),
        _ => Ok(Tls::none()),
    }
}
