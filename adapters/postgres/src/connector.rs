//! [`PgConnector`]: opens tracked `postgres::Client`s and judges them without a round trip.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::error::DbError;
use postgres::fallible_iterator::FallibleIterator;
use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::Client;
use sanspool::{Connector, Returned};
use sanspool_pgconn::{
    Bounds, CancelToken, Error, Liveness, Op, Opener, PgSocket, Session, SessionReset, SslMode,
    StatusCell, TxStatus,
};
// What the bound setters' docs link to.
#[cfg(doc)]
use sanspool_pgconn::{
    DEFAULT_CHECK_TIMEOUT, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESET_TIMEOUT,
};

use crate::open::{self, Notices};

/// A pooled PostgreSQL connection: a `postgres::Client` and the [`StatusCell`] that follows its
/// transaction status. Derefs to the client.
pub struct PgConn(Box<Parts>);

/// A connection's parts, boxed: the pool moves a connection on every checkout and return, and a
/// pointer is cheaper to move than the parts (over 500 bytes).
struct Parts {
    /// `None` only once taken by `into_inner` or `close`.
    client: Option<Client>,
    session: Session,
    cancel: CancelToken,
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

    /// Whether this idle connection is still there, without a round trip: nothing is sent and
    /// nothing read (a `poll` of its socket and, if the server sent something, a peek at it).
    ///
    /// For a pool about to hand out an idle connection, on the thread that hands it out (it
    /// never blocks; a few microseconds):
    ///
    /// - [`Liveness::Alive`]: hand it out. Notifications and notices the server sent meanwhile
    ///   are still there for the client to read.
    /// - [`Liveness::Dead`]: the server closed it (a terminated backend, a restart: its FATAL
    ///   error or end of stream is waiting), or the connection was reset: close it and open
    ///   another; a query would fail.
    /// - [`Liveness::Unsure`]: something is waiting that cannot be read here (under TLS, the
    ///   bytes are encrypted): [`Connector::check`] it (a round trip) before handing it out.
    ///
    /// `Alive` says nothing of the transaction status ([`status`](Self::status)).
    pub fn probe(&self) -> Liveness {
        if self.client().is_closed() {
            return Liveness::Dead;
        }
        self.0.session.probe()
    }

    /// A token that cancels the query this connection is running, from any thread. Use it rather
    /// than `postgres::Client::cancel_token`, which cannot cancel for a connection this crate
    /// opened: the client was told `sslmode=require` with direct TLS and the address of a
    /// loopback stand-in, so its token fails (see the `handshake` module of
    /// `sanspool-pgconn`).
    pub fn cancel_token(&self) -> CancelToken {
        self.0.cancel.clone()
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
    fn judge(&self, resets_sessions: bool) -> Returned {
        let closed = self.client().is_closed();
        self.0.session.judge(closed, resets_sessions)
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

/// A reset of the user's own, on the blocking client ([`PgConnector::session_reset_with`]).
type ResetFn = dyn Fn(&mut Client) -> Result<(), postgres::Error> + Send + Sync;

/// How a returned session is reset: a [`SessionReset`] policy, or a function.
#[derive(Clone)]
enum Reset {
    Policy(SessionReset),
    With(Arc<ResetFn>),
}

impl Reset {
    fn resets_sessions(&self) -> bool {
        match self {
            Reset::Policy(policy) => policy.resets_sessions(),
            Reset::With(_) => true,
        }
    }

    fn run(&self, client: &mut Client, status: TxStatus) -> Result<(), postgres::Error> {
        match self {
            Reset::Policy(policy) => {
                for sql in policy.statements(status) {
                    client.batch_execute(sql)?;
                }
            }
            Reset::With(reset) => {
                if status != TxStatus::Idle {
                    client.batch_execute("ROLLBACK")?;
                }
                reset(client)?;
            }
        }
        if self.resets_sessions() {
            client.clear_type_cache();
            let mut notifications = client.notifications();
            let mut pending = notifications.iter();
            while pending.next()?.is_some() {}
        }
        Ok(())
    }
}

impl fmt::Debug for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reset::Policy(policy) => fmt::Debug::fmt(policy, f),
            Reset::With(_) => f.write_str("SessionReset::With"),
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
    opener: Opener,
    reset: Reset,
    notices: Option<Notices>,
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
    ///
    /// A notice callback set on `config` is not taken (`postgres::Config` has no getter for it):
    /// set it with [`notice_callback`](Self::notice_callback).
    pub fn from_config(config: postgres::Config) -> PgConnector {
        PgConnector::of(Opener::from_config(crate::config::to_tokio(&config)))
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

    fn of(opener: Opener) -> PgConnector {
        PgConnector {
            opener,
            reset: Reset::Policy(SessionReset::rollback()),
            notices: None,
            bounds: Bounds::default(),
        }
    }

    /// A connector for `config` through the TLS connector `tls` (any `MakeTlsConnect` generic
    /// over the stream, such as `postgres_native_tls::MakeTlsConnector`), cloned for every
    /// connection; `sslmode` is followed as libpq follows it.
    pub fn with_tls<T>(config: postgres::Config, tls: T) -> PgConnector
    where
        T: MakeTlsConnect<PgSocket> + Clone + Send + Sync + 'static,
        T::TlsConnect: Send + 'static,
        T::Stream: Send + 'static,
        T::Error: 'static,
        <T::TlsConnect as TlsConnect<PgSocket>>::Future: Send + 'static,
    {
        PgConnector::of(Opener::with_tls(crate::config::to_tokio(&config), tls))
    }

    /// How returned sessions are reset ([`SessionReset::rollback`] unless set).
    pub fn session_reset(mut self, reset: SessionReset) -> PgConnector {
        self.reset = Reset::Policy(reset);
        self
    }

    /// Resets returned sessions with `reset` as [`SessionReset::discard`] does with its
    /// statement: after every checkout that sent anything, after a `ROLLBACK` when the session
    /// is not idle; then the client's type cache is cleared and notifications already received
    /// are dropped.
    pub fn session_reset_with<F>(mut self, reset: F) -> PgConnector
    where
        F: Fn(&mut Client) -> Result<(), postgres::Error> + Send + Sync + 'static,
    {
        self.reset = Reset::With(Arc::new(reset));
        self
    }

    /// What every connection does with the notices the server sends (`postgres::Config`'s
    /// notice callback; by default they are logged).
    pub fn notice_callback<F>(mut self, f: F) -> PgConnector
    where
        F: Fn(DbError) + Send + Sync + 'static,
    {
        self.notices = Some(Arc::new(f));
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

impl From<postgres::Config> for PgConnector {
    fn from(config: postgres::Config) -> PgConnector {
        PgConnector::from_config(config)
    }
}

impl fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The configuration's Debug redacts the password.
        f.debug_struct("PgConnector")
            .field("opener", &self.opener)
            .field("session_reset", &self.reset)
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl Connector for PgConnector {
    type Conn = PgConn;
    type Error = Error;

    fn connect(&self) -> Result<PgConn, Error> {
        let opened = open::open(&self.opener, self.bounds.connect, self.notices.as_ref())?;
        Ok(PgConn(Box::new(Parts {
            client: Some(opened.client),
            session: Session::new(opened.cell),
            cancel: opened.cancel,
            close_timeout: self.bounds.close,
        })))
    }

    /// No I/O: reads the status the server sent last (and, for a session-resetting policy,
    /// whether the borrower sent anything).
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
        conn.judge(self.reset.resets_sessions())
    }

    /// The [`SessionReset`] policy within the reset timeout; an error unless the server then says
    /// the session is idle.
    fn reset(&self, conn: &mut PgConn) -> Result<(), Error> {
        let (reset, status) = (&self.reset, conn.status());
        conn.bounded(self.bounds.reset, Op::Reset, |c| reset.run(c, status))?;
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
    /// [`Error::TimedOut`] if it passes (the socket is dropped all the same).
    fn close(&self, mut conn: PgConn) -> Result<(), Error> {
        conn.0.session.cell().set_deadline(Some(self.bounds.close));
        match conn.0.client.take() {
            Some(client) => client.close().map_err(Error::during(Op::Close)),
            None => Ok(()),
        }
    }
}
