//! [`Opener`]: what a connector opens connections with — the user's configuration, libpq's
//! `sslmode` and a TLS connector — and how: [`Opener::open`] for the async client, which is
//! built over a socket of ours; [`Opener::plan`] and [`Attempt`] for the blocking client, which
//! only tokio-postgres's own connect can build (see the `handshake` module for how the tracker
//! gets into it).

use std::fmt;
use std::future::{poll_fn, Future};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::pin::{pin, Pin};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio_postgres::config::{SslNegotiation, TargetSessionAttrs};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::cancel::CancelToken;
use crate::error::{Error, Op};
use crate::handshake::{Negotiated, Negotiation, Negotiator, Outcome, Source, Tls};
use crate::plan::{socket, Addr, Failure, Plan, Step, Target};
use crate::socket::PgSocket;
use crate::ssl::SslMode;
use crate::status::StatusCell;

/// What a connector opens connections with: a tokio-postgres configuration (hosts, user,
/// database, timeouts, ...), libpq's `sslmode`, and the TLS connector that follows it. Cheap to
/// clone.
#[derive(Clone)]
pub struct Opener {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    tls: Tls,
}

impl Opener {
    /// An opener for a libpq-style connection string (`"host=localhost user=postgres"`) or URL
    /// (`"postgresql://postgres@localhost/db"`), with libpq's `sslmode` (all five; `prefer` by
    /// default) and `sslrootcert` through the default TLS stack.
    ///
    /// The string is read by libpq's rules: an option given twice counts once, the last one;
    /// `connect_timeout` of zero or below means no bound. It fails with [`Error::Config`] (the
    /// parser's error) or [`Error::InvalidConfig`] (naming the option) for what libpq refuses:
    /// an unknown option, a value that is not the option's, a value with no option name
    /// (`"... =x user=u"`), and settings no socket would take (`keepalives_idle` beyond the
    /// kernel's limit, port 0).
    pub fn new(dsn: &str) -> Result<Opener, Error> {
        dsn.parse()
    }

    /// An opener for `config`, following its `sslmode` (`disable`, `prefer`, `require`) through
    /// the default TLS stack; [`ssl`](Self::ssl) sets `verify-ca` or `verify-full`.
    pub fn from_config(config: tokio_postgres::Config) -> Opener {
        let mode = SslMode::of(&config);
        let plain = Opener::bare(config, mode);
        match default_tls(mode, None) {
            Ok(tls) => Opener { tls, ..plain },
            // Only the root certificates can fail to load (libpq's default file, unreadable):
            // every TLS handshake then fails with that error, as libpq's would.
            Err(e) => Opener {
                tls: Tls::broken(e.to_string()),
                ..plain
            },
        }
    }

    /// Sets libpq's `sslmode` and `sslrootcert` (a PEM file, `"system"` for the system store,
    /// `None` for libpq's default) for the default TLS stack.
    pub fn ssl(self, mode: SslMode, root_cert: Option<&str>) -> Result<Opener, Error> {
        let tls = default_tls(mode, root_cert)?;
        let mut config = self.config;
        config.ssl_mode(mode.negotiation());
        Ok(Opener {
            config,
            ssl_mode: mode,
            tls,
        })
    }

    /// An opener for `config` through the TLS connector `tls` (any `MakeTlsConnect` generic
    /// over the stream, such as `postgres_native_tls::MakeTlsConnector`), cloned for every
    /// connection; `sslmode` is followed as libpq follows it.
    pub fn with_tls<T>(config: tokio_postgres::Config, tls: T) -> Opener
    where
        T: MakeTlsConnect<PgSocket> + Clone + Send + Sync + 'static,
        T::TlsConnect: Send + 'static,
        T::Stream: Send + 'static,
        T::Error: 'static,
        <T::TlsConnect as TlsConnect<PgSocket>>::Future: Send + 'static,
    {
        let mode = SslMode::of(&config);
        Opener {
            tls: Tls::new(tls),
            ..Opener::bare(config, mode)
        }
    }

    fn bare(config: tokio_postgres::Config, ssl_mode: SslMode) -> Opener {
        Opener {
            config,
            ssl_mode,
            tls: Tls::none(),
        }
    }

    /// The `sslmode` connections follow.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The configuration connections are opened with.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The bound of one host address's try: the configuration's `connect_timeout`, else
    /// `default`. A `connect_timeout` of zero means no bound, as in libpq (a connection string's
    /// `connect_timeout=0` or below): then `Duration::MAX`, which every bound of this crate and
    /// tokio's timers take as "never".
    pub fn connect_bound(&self, default: Duration) -> Duration {
        match self.config.get_connect_timeout() {
            Some(timeout) if timeout.is_zero() => Duration::MAX,
            Some(timeout) => *timeout,
            None => default,
        }
    }

    /// The addresses to try, in order; [`Error::InvalidConfig`] for a setting no socket would
    /// take (see [`Opener::new`]).
    pub fn plan(&self) -> Result<Plan, Error> {
        crate::dsn::check_ranges(&self.config)?;
        Plan::new(&self.config, self.ssl_mode == SslMode::Prefer)
    }

    fn negotiation(&self, target: &Target) -> Negotiation {
        Negotiation {
            mode: self.ssl_mode,
            direct: self.config.get_ssl_negotiation() == SslNegotiation::Direct,
            tls: self.tls.clone(),
            domain: target.domain.clone(),
        }
    }

    /// A try of `target` through a client's own connect (the blocking client's
    /// `postgres::Config::connect`), all of it within `bound`: hand the client
    /// [`Attempt::handed`] and [`Attempt::negotiator`].
    ///
    /// The client is pointed at a loopback stand-in, whose socket the hook drops for one it
    /// opens to `target` itself: a Unix socket (the client would not call the hook for one), and
    /// a TCP socket too, whose descriptor the client's own would not give for the probe
    /// ([`StatusCell::probe`]).
    pub fn attempt(&self, target: Target, bound: Duration) -> Result<Attempt, Error> {
        let listener = stand_in()?;
        let handed_to = listener.local_addr().map_err(Error::Connect)?;
        let source = Source::Open(target.addr.clone());
        Ok(self.make_attempt(target, bound, source, Some(handed_to), Some(listener)))
    }

    fn make_attempt(
        &self,
        target: Target,
        bound: Duration,
        source: Source,
        handed_to: Option<std::net::SocketAddr>,
        stand_in: Option<TcpListener>,
    ) -> Attempt {
        let mut handed = tokio_postgres::Config::new();
        crate::copy_settings!(&self.config, &mut handed);
        // The hook is called with the raw socket before a byte is written (see `handshake`).
        handed
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .ssl_negotiation(SslNegotiation::Direct)
            .connect_timeout(bound)
            .target_session_attrs(TargetSessionAttrs::Any)
            .load_balance_hosts(tokio_postgres::config::LoadBalanceHosts::Disable);
        if let Some(addr) = handed_to {
            let name = match (&stand_in, target.domain.as_str()) {
                (Some(_), _) | (None, "") => "localhost",
                (None, domain) => domain,
            };
            handed.host(name).hostaddr(addr.ip()).port(addr.port());
        }
        let cell = StatusCell::default();
        // Bounds the negotiation, TLS, startup and authentication (the client's connect bounds
        // its TCP connect with `connect_timeout`), from now.
        cell.set_deadline(Some(bound));
        let negotiator = Negotiator {
            negotiation: self.negotiation(&target),
            source,
            plaintext: target.plaintext,
            cell,
            config: self.config.clone(),
            outcome: Arc::new(Mutex::new(Outcome::default())),
        };
        Attempt {
            read_only: wanted_read_only(self.config.get_target_session_attrs()),
            target,
            negotiator,
            handed,
            bound,
            _stand_in: stand_in,
        }
    }

    /// Opens a connection for an async client: each address in turn, each try within `bound`
    /// (or the configuration's `connect_timeout`) — DNS, TCP or Unix socket, TLS as `sslmode`
    /// says, startup, authentication and `target_session_attrs` — over a socket of this crate's
    /// with the tracker in it. The caller's runtime drives [`Opened::connection`].
    pub async fn open(&self, bound: Duration) -> Result<Opened, Error> {
        let bound = self.connect_bound(bound);
        let mut plan = self.plan()?;
        loop {
            let target = match plan.step() {
                Step::Resolve(lookup) => {
                    plan.resolved(lookup.resolve(bound).await);
                    continue;
                }
                Step::Connect(target) => target,
                Step::Failed(e) => return Err(e),
            };
            let unix = matches!(target.addr, Addr::Unix(_));
            let attempt = self.make_attempt(target, bound, Source::Given { unix }, None, None);
            let opened = tokio::time::timeout(bound, self.connect_raw(&attempt))
                .await
                .unwrap_or(Err(Error::TimedOut(Op::Connect)));
            match opened {
                Ok((client, connection)) => {
                    let (cell, cancel) = attempt.finish();
                    return Ok(Opened {
                        client,
                        connection: Box::pin(connection),
                        cell,
                        cancel,
                    });
                }
                Err(e) => plan.failed(attempt.failure(e)),
            }
        }
    }

    async fn connect_raw(&self, attempt: &Attempt) -> Result<(Client, Connection), Error> {
        let socket = socket(&attempt.target.addr, &self.config, None).await?;
        let (client, mut connection) = attempt
            .handed
            .connect_raw(socket, attempt.negotiator())
            .await
            .map_err(|e| attempt.error(e))?;
        if attempt.wants_read_only().is_some() {
            let value = read_only(&client, &mut connection).await?;
            attempt.check_read_only(value.as_deref())?;
        }
        Ok((client, connection))
    }
}

type Connection = tokio_postgres::Connection<PgSocket, Negotiated>;

/// `SHOW transaction_read_only` while driving the connection (it is not spawned yet).
async fn read_only(client: &Client, connection: &mut Connection) -> Result<Option<String>, Error> {
    let mut query = pin!(client.simple_query(Attempt::READ_ONLY_QUERY));
    let messages = poll_fn(|cx| {
        if let Poll::Ready(done) = Pin::new(&mut *connection).poll(cx) {
            return Poll::Ready(Err(done.err().map_or(Error::Closed, Error::Postgres)));
        }
        query.as_mut().poll(cx).map_err(Error::Postgres)
    })
    .await?;
    Ok(messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    }))
}

/// A loopback listener for the blocking client to connect to in place of the server (the hook
/// drops that connection and opens the real one): it lives as long as the attempt.
fn stand_in() -> Result<TcpListener, Error> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .or_else(|_| TcpListener::bind((Ipv6Addr::LOCALHOST, 0)))
        .map_err(|e| {
            Error::Connect(std::io::Error::new(
                e.kind(),
                format!("no loopback stand-in for the client to connect to: {e}"),
            ))
        })
}

fn wanted_read_only(attrs: TargetSessionAttrs) -> Option<bool> {
    match attrs {
        TargetSessionAttrs::ReadWrite => Some(false),
        TargetSessionAttrs::ReadOnly => Some(true),
        _ => None,
    }
}

/// A connection opened by [`Opener::open`].
pub struct Opened {
    /// The client.
    pub client: Client,
    /// Drives the client's socket: spawn it; it ends when the connection closes.
    pub connection:
        Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static>>,
    /// The session's transaction status, as the server last sent it.
    pub cell: StatusCell,
    /// Cancels the query running on this connection.
    pub cancel: CancelToken,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("status", &self.cell.get())
            .finish_non_exhaustive()
    }
}

/// One try of one address through a client's own connect ([`Opener::attempt`]): the
/// configuration to hand the client, the hook to give it, and afterwards the typed error or the
/// connection's status cell and cancel token.
pub struct Attempt {
    target: Target,
    negotiator: Negotiator,
    handed: tokio_postgres::Config,
    read_only: Option<bool>,
    bound: Duration,
    /// Keeps the loopback stand-in listening until the client has connected.
    _stand_in: Option<TcpListener>,
}

impl Attempt {
    /// What a client asks to learn whether the server takes writes (`target_session_attrs`).
    pub const READ_ONLY_QUERY: &'static str = "SHOW transaction_read_only";

    /// The configuration for the client's connect: the user's settings, one host (the target,
    /// or its loopback stand-in), `sslmode=require` with `sslnegotiation=direct` (so that the
    /// client calls the hook with the raw socket; the user's own `sslmode` is the hook's), the
    /// try's bound as `connect_timeout`, and no `target_session_attrs` (the caller checks them,
    /// [`check_read_only`](Self::check_read_only)).
    pub fn handed(&self) -> &tokio_postgres::Config {
        &self.handed
    }

    /// The hook to give the client's connect.
    pub fn negotiator(&self) -> Negotiator {
        self.negotiator.clone()
    }

    /// The status cell of the connection being opened.
    pub fn cell(&self) -> &StatusCell {
        &self.negotiator.cell
    }

    /// Whether the server must be read-only (`Some(true)`) or take writes (`Some(false)`): then
    /// ask [`READ_ONLY_QUERY`](Self::READ_ONLY_QUERY) and [`check_read_only`](Self::check_read_only).
    pub fn wants_read_only(&self) -> Option<bool> {
        self.read_only
    }

    /// Whether the answer to [`READ_ONLY_QUERY`](Self::READ_ONLY_QUERY) meets
    /// `target_session_attrs`.
    pub fn check_read_only(&self, value: Option<&str>) -> Result<(), Error> {
        match (self.read_only, value) {
            (Some(want), Some(got)) if want != (got == "on") => {
                Err(Error::Connect(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    if want {
                        "the server allows writes (target_session_attrs=read-only)"
                    } else {
                        "the server does not allow writes (target_session_attrs=read-write)"
                    },
                )))
            }
            _ => Ok(()),
        }
    }

    /// The typed error of a failed client connect: the hook's own, or the client's mapped.
    pub fn error(&self, e: tokio_postgres::Error) -> Error {
        let mut outcome = self
            .negotiator
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match outcome.error.take() {
            Some(error) => error,
            None if !outcome.reached => Error::of_connect(e),
            None => Error::during(Op::Connect)(e),
        }
    }

    /// This try failed with `error`: for [`Plan::failed`].
    pub fn failure(self, error: Error) -> Failure {
        let outcome = self
            .negotiator
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Failure {
            handshake: outcome.handshake_failed,
            ..Failure::after_connect(self.target.clone(), error)
        }
    }

    /// This try succeeded: the connection's status cell (its deadline lifted) and cancel token.
    pub fn finish(self) -> (StatusCell, CancelToken) {
        let Negotiator {
            negotiation,
            cell,
            config,
            ..
        } = self.negotiator;
        cell.set_deadline(None);
        let cancel = CancelToken::new(
            cell.clone(),
            self.target.addr,
            negotiation,
            config,
            self.bound,
        );
        (cell, cancel)
    }
}

impl FromStr for Opener {
    type Err = Error;

    fn from_str(dsn: &str) -> Result<Opener, Error> {
        let (taken, rest) = crate::dsn::take(dsn)?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(Error::Config)?;
        if let Some(timeout) = taken.connect_timeout {
            config.connect_timeout(timeout);
        }
        crate::dsn::check_ranges(&config)?;
        let mode = taken.ssl_mode.unwrap_or(SslMode::of(&config));
        Opener::bare(config, mode).ssl(mode, taken.root_cert.as_deref())
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("Opener")
            .field("config", &self.config)
            .field("ssl_mode", &self.ssl_mode)
            .field("tls", &!self.tls.is_none())
            .finish()
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

/// Copies every setting of a tokio-postgres or postgres configuration `$from` but its hosts,
/// host addresses, ports, `sslmode` and `sslnegotiation` into `$to`, through their getters and
/// setters (the types share their names). Not part of the API: for this crate's connectors.
#[doc(hidden)]
#[macro_export]
macro_rules! copy_settings {
    ($from:expr, $to:expr) => {{
        let (from, to) = ($from, $to);
        if let Some(user) = from.get_user() {
            to.user(user);
        }
        if let Some(password) = from.get_password() {
            to.password(password);
        }
        if let Some(dbname) = from.get_dbname() {
            to.dbname(dbname);
        }
        if let Some(options) = from.get_options() {
            to.options(options);
        }
        if let Some(name) = from.get_application_name() {
            to.application_name(name);
        }
        if let Some(timeout) = from.get_connect_timeout() {
            to.connect_timeout(*timeout);
        }
        if let Some(timeout) = from.get_tcp_user_timeout() {
            to.tcp_user_timeout(*timeout);
        }
        to.keepalives(from.get_keepalives())
            .keepalives_idle(from.get_keepalives_idle());
        if let Some(interval) = from.get_keepalives_interval() {
            to.keepalives_interval(interval);
        }
        if let Some(retries) = from.get_keepalives_retries() {
            to.keepalives_retries(retries);
        }
        to.target_session_attrs(from.get_target_session_attrs())
            .channel_binding(from.get_channel_binding())
            .load_balance_hosts(from.get_load_balance_hosts());
    }};
}
