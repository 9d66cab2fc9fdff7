//! Opening a connection: DNS, TCP or Unix socket, TLS and authentication, under one bound per
//! host address; and cancelling a query on it.
//!
//! tokio-postgres's own connect bounds only the TCP connect, so this one does the part before the
//! protocol itself (following tokio-postgres's rules for `host`, `hostaddr`, `port`,
//! `load_balance_hosts` and `target_session_attrs`) and gives the socket to
//! `tokio_postgres::Config::connect_raw` with the user's configuration.

use std::collections::hash_map::RandomState;
use std::future::{poll_fn, Future};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use postgres::config::{Host, LoadBalanceHosts, SslMode, TargetSessionAttrs};
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::{Client, Config, SimpleQueryMessage};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::connector::{Error, Op};
use crate::tracked::{PgSocket, StatusCell, Tracked};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A TLS stream of any connector.
pub(crate) trait TlsIo: AsyncRead + AsyncWrite + Unpin + Send {
    fn binding(&self) -> ChannelBinding;
}

impl<S: TlsStream + Unpin + Send> TlsIo for S {
    fn binding(&self) -> ChannelBinding {
        self.channel_binding()
    }
}

impl TlsStream for Box<dyn TlsIo> {
    fn channel_binding(&self) -> ChannelBinding {
        (**self).binding()
    }
}

type Handshake = Box<dyn FnOnce(PgSocket) -> BoxFuture<Result<Box<dyn TlsIo>, BoxError>> + Send>;
type MakeHandshake = dyn Fn(&str) -> Result<Handshake, BoxError> + Send + Sync;

/// The TLS connector of a [`PgConnector`](crate::PgConnector), its type erased; or none.
#[derive(Clone)]
pub(crate) struct Tls(Option<Arc<MakeHandshake>>);

impl Tls {
    pub(crate) fn none() -> Tls {
        Tls(None)
    }

    pub(crate) fn new<T>(tls: T) -> Tls
    where
        T: MakeTlsConnect<PgSocket> + Clone + Send + Sync + 'static,
        T::TlsConnect: Send + 'static,
        T::Stream: Send + 'static,
        T::Error: 'static,
        <T::TlsConnect as TlsConnect<PgSocket>>::Future: Send + 'static,
    {
        // `NoTls` refuses TLS through a method only tokio-postgres may call; seen here, it means
        // what `Tls::none` means, so that `prefer` falls back as it does with plain `NoTls`.
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<postgres::NoTls>() {
            return Tls::none();
        }
        Tls(Some(Arc::new(move |domain: &str| {
            let connect = tls.clone().make_tls_connect(domain).map_err(Into::into)?;
            let handshake: Handshake = Box::new(move |socket| {
                Box::pin(async move {
                    let stream = connect.connect(socket).await.map_err(Into::into)?;
                    Ok(Box::new(stream) as Box<dyn TlsIo>)
                })
            });
            Ok(handshake)
        })))
    }

    /// A TLS stack that could not be set up: every handshake fails with `why`.
    pub(crate) fn broken(why: String) -> Tls {
        Tls(Some(Arc::new(
            move |_: &str| -> Result<Handshake, BoxError> { Err(why.clone().into()) },
        )))
    }

    pub(crate) fn is_none(&self) -> bool {
        self.0.is_none()
    }

    fn layer(&self, addr: &Addr, domain: &str, cell: StatusCell) -> Result<Layer, BoxError> {
        let handshake = match (&self.0, addr) {
            // No TLS over a Unix socket (and no name to verify).
            (Some(make), Addr::Tcp(_)) => Some(make(domain)?),
            _ => None,
        };
        Ok(Layer {
            handshake,
            cell,
            failed: Arc::default(),
        })
    }
}

/// The `TlsConnect` given to tokio-postgres: the user's handshake, with the tracker above it.
struct Layer {
    handshake: Option<Handshake>,
    cell: StatusCell,
    /// Set when the handshake fails (for `prefer`'s retry without TLS).
    failed: Arc<AtomicBool>,
}

impl TlsConnect<PgSocket> for Layer {
    type Stream = Tracked<Box<dyn TlsIo>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Stream, BoxError>>;

    fn connect(self, mut socket: PgSocket) -> Self::Future {
        let Some(handshake) = self.handshake else {
            // Only reached when the configuration demands TLS and there is none: the config
            // check in `open` reports that first.
            return Box::pin(async { Err("no TLS connector".into()) });
        };
        let wrap = Tracked::above(&mut socket, self.cell);
        let (handshake, failed) = (handshake(socket), self.failed);
        Box::pin(async move {
            let stream = handshake
                .await
                .inspect_err(|_| failed.store(true, Ordering::Release))?;
            Ok(wrap(stream))
        })
    }
}

/// Where a connection went: where its cancel requests go.
#[derive(Clone, Debug)]
pub(crate) enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// What a cancel request needs; kept by each connection.
#[derive(Clone)]
pub(crate) struct CancelTarget {
    token: tokio_postgres::CancelToken,
    addr: Addr,
    domain: String,
    tls: Tls,
    timeout: Duration,
}

pub(crate) struct Opened {
    pub(crate) client: Client,
    pub(crate) cell: StatusCell,
    pub(crate) cancel: CancelTarget,
}

type Connection = tokio_postgres::Connection<PgSocket, Tracked<Box<dyn TlsIo>>>;
type RawClient = tokio_postgres::Client;
type TokioConfig = tokio_postgres::Config;

/// Opens a connection; `timeout` bounds each host address's attempt (DNS, TCP, TLS, startup and
/// authentication) when the configuration sets no `connect_timeout`.
pub(crate) fn open(config: &Config, tls: &Tls, timeout: Option<Duration>) -> Result<Opened, Error> {
    let cell = StatusCell::default();
    let mut target = None;
    let client = config.connect_with(|config| {
        let (cell, target) = (cell.clone(), &mut target);
        async move {
            let bound = config.get_connect_timeout().copied().or(timeout);
            let (client, connection, addr, domain) = open_any(&config, tls, cell, bound).await?;
            *target = Some(CancelTarget {
                token: client.cancel_token(),
                addr,
                domain,
                tls: tls.clone(),
                timeout: bound.unwrap_or(crate::DEFAULT_CONNECT_TIMEOUT),
            });
            Ok::<_, Error>((client, connection))
        }
    })?;
    let cancel = target.expect("set by a successful connect");
    Ok(Opened {
        client,
        cell,
        cancel,
    })
}

/// A connection for an async client (`sanspool-tokio`): the same DNS, socket, TLS, tracking and
/// bound as [`open`], but the `tokio_postgres` client and its connection are handed out, for the
/// caller's runtime to drive.
pub(crate) async fn open_async(
    config: &TokioConfig,
    tls: &Tls,
    timeout: Option<Duration>,
) -> Result<(RawClient, Connection, StatusCell, CancelTarget), Error> {
    let cell = StatusCell::default();
    let bound = config.get_connect_timeout().copied().or(timeout);
    let (client, connection, addr, domain) = open_any(config, tls, cell.clone(), bound).await?;
    let cancel = CancelTarget {
        token: client.cancel_token(),
        addr,
        domain,
        tls: tls.clone(),
        timeout: bound.unwrap_or(crate::DEFAULT_CONNECT_TIMEOUT),
    };
    Ok((client, connection, cell, cancel))
}

/// Tries the hosts in turn, as tokio-postgres does; the last failure is returned.
async fn open_any(
    config: &TokioConfig,
    tls: &Tls,
    cell: StatusCell,
    bound: Option<Duration>,
) -> Result<(RawClient, Connection, Addr, String), Error> {
    let (hosts, hostaddrs) = (config.get_hosts(), config.get_hostaddrs());
    if hosts.is_empty() && hostaddrs.is_empty() {
        return Err(Error::InvalidConfig(
            "both host and hostaddr are missing".into(),
        ));
    }
    if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
        return Err(Error::InvalidConfig(
            "the numbers of hosts and hostaddrs differ".into(),
        ));
    }
    let count = hosts.len().max(hostaddrs.len());
    let ports = config.get_ports();
    if ports.len() > 1 && ports.len() != count {
        return Err(Error::InvalidConfig("invalid number of ports".into()));
    }
    let mut order: Vec<usize> = (0..count).collect();
    let random = config.get_load_balance_hosts() == LoadBalanceHosts::Random;
    if random {
        shuffle(&mut order);
    }
    let mut last = None;
    for i in order {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        // As libpq: the host names the server (for TLS), hostaddr says where to connect.
        let (addrs, domain) = match (hosts.get(i), hostaddrs.get(i)) {
            (Some(Host::Unix(dir)), _) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                (Ok(vec![Addr::Unix(path)]), String::new())
            }
            (host, Some(ip)) => (
                Ok(vec![Addr::Tcp(SocketAddr::new(*ip, port))]),
                host.map_or_else(|| ip.to_string(), host_name),
            ),
            (Some(Host::Tcp(name)), None) => (
                within(bound, Op::Connect, resolve(name, port, random)).await,
                name.clone(),
            ),
            (None, None) => unreachable!("count is the larger length"),
        };
        let addrs = match addrs {
            Ok(addrs) => addrs,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        for addr in addrs {
            let attempt = open_one(config, tls, &addr, &domain, cell.clone());
            match within(bound, Op::Connect, attempt).await {
                Ok((client, connection)) => return Ok((client, connection, addr, domain)),
                Err(e) => last = Some(e),
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::Connect(io::Error::new(
            io::ErrorKind::NotFound,
            "no address to connect to",
        ))
    }))
}

fn host_name(host: &Host) -> String {
    match host {
        Host::Tcp(name) => name.clone(),
        Host::Unix(_) => String::new(),
    }
}

async fn resolve(name: &str, port: u16, random: bool) -> Result<Vec<Addr>, Error> {
    let found = tokio::net::lookup_host((name, port))
        .await
        .map_err(Error::Connect)?;
    let mut addrs: Vec<Addr> = found.map(Addr::Tcp).collect();
    if random {
        shuffle(&mut addrs);
    }
    Ok(addrs)
}

fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        items.swap(i, (h.finish() % (i as u64 + 1)) as usize);
    }
}

async fn within<T>(
    bound: Option<Duration>,
    op: Op,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match bound {
        Some(after) => tokio::time::timeout(after, fut)
            .await
            .unwrap_or(Err(Error::TimedOut(op))),
        None => fut.await,
    }
}

async fn socket(addr: &Addr, config: &TokioConfig) -> Result<PgSocket, Error> {
    match addr {
        Addr::Tcp(addr) => {
            let stream = TcpStream::connect(addr).await.map_err(Error::Connect)?;
            stream.set_nodelay(true).map_err(Error::Connect)?;
            keepalive(&stream, config).map_err(Error::Connect)?;
            Ok(PgSocket::tcp(stream))
        }
        Addr::Unix(path) => UnixStream::connect(path)
            .await
            .map(PgSocket::unix)
            .map_err(Error::Connect),
    }
}

/// TCP keepalive and user timeout as the configuration asks (as tokio-postgres sets them).
fn keepalive(stream: &TcpStream, config: &TokioConfig) -> io::Result<()> {
    let sock = socket2::SockRef::from(stream);
    #[cfg(target_os = "linux")]
    sock.set_tcp_user_timeout(config.get_tcp_user_timeout().copied())?;
    if config.get_keepalives() {
        let mut ka = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
        if let Some(interval) = config.get_keepalives_interval() {
            ka = ka.with_interval(interval);
        }
        if let Some(retries) = config.get_keepalives_retries() {
            ka = ka.with_retries(retries);
        }
        sock.set_tcp_keepalive(&ka)?;
    }
    Ok(())
}

/// The configuration tokio-postgres negotiates with on `addr`: the user's, except that a Unix
/// socket ignores `sslmode` (as libpq does) and, without a TLS connector, `prefer` is plaintext
/// (as tokio-postgres does with `NoTls`).
fn negotiated(config: &TokioConfig, addr: &Addr, tls: &Tls) -> Result<TokioConfig, Error> {
    let mode = config.get_ssl_mode();
    let unix = matches!(addr, Addr::Unix(_));
    if !unix && tls.is_none() && mode == SslMode::Require {
        return Err(Error::InvalidConfig(
            "sslmode=require, and the connector has no TLS".into(),
        ));
    }
    let mut config = config.clone();
    if unix || (tls.is_none() && mode == SslMode::Prefer) {
        config.ssl_mode(SslMode::Disable);
    }
    Ok(config)
}

async fn open_one(
    config: &TokioConfig,
    tls: &Tls,
    addr: &Addr,
    domain: &str,
    cell: StatusCell,
) -> Result<(RawClient, Connection), Error> {
    let mut config = negotiated(config, addr, tls)?;
    let mut first = socket(addr, &config).await?;
    first.track(cell.clone());
    let layer = tls.layer(addr, domain, cell.clone()).map_err(Error::Tls)?;
    let failed = layer.failed.clone();
    let (client, mut connection) = match config.connect_raw(first, layer).await {
        Ok(connected) => connected,
        // libpq's `prefer`: a failed TLS handshake is retried without TLS, on a new connection.
        Err(_) if config.get_ssl_mode() == SslMode::Prefer && failed.load(Ordering::Acquire) => {
            config.ssl_mode(SslMode::Disable);
            let mut second = socket(addr, &config).await?;
            second.track(cell.clone());
            let layer = Tls::none().layer(addr, domain, cell).map_err(Error::Tls)?;
            config
                .connect_raw(second, layer)
                .await
                .map_err(Error::Postgres)?
        }
        Err(e) => return Err(Error::Postgres(e)),
    };
    if config.get_target_session_attrs() != TargetSessionAttrs::Any {
        session_attrs(&config, &client, &mut connection).await?;
    }
    Ok((client, connection))
}

/// `target_session_attrs=read-write` (or `read-only`): asks the server, as tokio-postgres does.
async fn session_attrs(
    config: &TokioConfig,
    client: &RawClient,
    connection: &mut Connection,
) -> Result<(), Error> {
    let mut query = pin!(client.simple_query("SHOW transaction_read_only"));
    let messages = poll_fn(|cx| {
        if let Poll::Ready(done) = Pin::new(&mut *connection).poll(cx) {
            return Poll::Ready(Err(done.err().map_or(Error::Closed, Error::Postgres)));
        }
        query.as_mut().poll(cx).map_err(Error::Postgres)
    })
    .await?;
    let read_only = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "on"),
        _ => None,
    });
    let wanted = match config.get_target_session_attrs() {
        TargetSessionAttrs::ReadWrite => Some(false),
        TargetSessionAttrs::ReadOnly => Some(true),
        _ => None,
    };
    match (wanted, read_only) {
        (Some(want), Some(got)) if want != got => Err(Error::Connect(io::Error::new(
            io::ErrorKind::PermissionDenied,
            if want {
                "the server allows writes (target_session_attrs=read-only)"
            } else {
                "the server does not allow writes (target_session_attrs=read-write)"
            },
        ))),
        _ => Ok(()),
    }
}

impl CancelTarget {
    /// Asks the server to cancel the connection's running query: a new connection to the address
    /// the connection went to, TLS as its `sslmode` says, within the connect bound.
    pub(crate) fn cancel(&self) -> Result<(), Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Connect)?;
        runtime.block_on(self.cancel_async())
    }

    /// [`cancel`](Self::cancel) on the caller's runtime.
    pub(crate) async fn cancel_async(&self) -> Result<(), Error> {
        within(Some(self.timeout), Op::Cancel, async {
            let config = TokioConfig::new();
            let socket = socket(&self.addr, &config).await?.lingering();
            let layer = self
                .tls
                .layer(&self.addr, &self.domain, StatusCell::default())
                .map_err(Error::Tls)?;
            self.token
                .cancel_query_raw(socket, layer)
                .await
                .map_err(Error::Postgres)
        })
        .await
    }
}
