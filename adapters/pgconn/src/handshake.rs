//! How a connection's stream gets into a client that opens its own: libpq's TLS negotiation done
//! here, inside the TLS hook tokio-postgres calls with the raw socket.
//!
//! Both clients take a `MakeTlsConnect` when they connect, and tokio-postgres calls it with the
//! socket before writing a byte when the configuration it is given says `sslmode=require` and
//! `sslnegotiation=direct`. So the client gets a copy of the user's configuration saying just
//! that ([`Attempt::handed`](crate::Attempt::handed)), and a [`Negotiator`] that does what the
//! user's own `sslmode` asks: nothing (plaintext), or an SSLRequest and then TLS or plaintext as
//! the server answers, or TLS at once (the user's own `sslnegotiation=direct`). Either way it
//! returns the socket with the tracker in it, or the TLS stream with a tracker above it, and the
//! TLS stream's channel binding: the client then runs startup and authentication over a stream
//! it does not know is observed.
//!
//! tokio-postgres calls the hook only for a host that has a name (a TCP host): a Unix-domain
//! socket never gets one; and the socket it gives the hook hides its descriptor, which the probe
//! of an idle connection needs ([`StatusCell::probe`](crate::StatusCell::probe)). The blocking
//! client, which only tokio-postgres can build, is therefore pointed at a loopback stand-in, and
//! the hook drops the stand-in's socket and connects the real address itself, TCP or Unix
//! ([`Source::Open`]); see `tests/handshake.rs` for the tokio-postgres behaviour this relies on.
//! (The async client is built over a socket of this crate's from the start.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::error::{Error, Op};
use crate::plan::Addr;
use crate::socket::PgSocket;
use crate::ssl::SslMode;
use crate::status::StatusCell;
use crate::tracker::Tracked;

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

type Handshake = Box<dyn FnOnce(PgSocket) -> BoxFuture<Result<Box<dyn TlsIo>, BoxError>> + Send>;
type MakeHandshake = dyn Fn(&str) -> Result<Handshake, BoxError> + Send + Sync;

/// The TLS connector of a connector, its type erased; or none.
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
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<tokio_postgres::NoTls>() {
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
}

/// libpq's TLS negotiation for one host: what the user's `sslmode` and `sslnegotiation` ask, with
/// which TLS connector, for which server name.
#[derive(Clone)]
pub(crate) struct Negotiation {
    pub(crate) mode: SslMode,
    pub(crate) direct: bool,
    pub(crate) tls: Tls,
    pub(crate) domain: String,
}

/// What the negotiation wants of TLS on a socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Off,
    Try,
    Demand,
}

/// An SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Why a negotiation failed; `Handshake` is the TLS handshake itself, after which libpq's
/// `prefer` tries again without TLS on a new connection.
pub(crate) enum Failed {
    Handshake(Error),
    Other(Error),
}

impl Failed {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Failed::Handshake(e) | Failed::Other(e) => e,
        }
    }
}

/// An I/O error of the negotiation: past the deadline, the connect's time is up.
fn io_error(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::TimedOut {
        Error::TimedOut(Op::Connect)
    } else {
        Error::Connect(e)
    }
}

impl Negotiation {
    /// TLS is off on a Unix-domain socket (as libpq does), and in `prefer` without a connector.
    fn want(&self, unix: bool) -> Want {
        match self.mode {
            _ if unix => Want::Off,
            SslMode::Disable => Want::Off,
            SslMode::Prefer if self.tls.is_none() => Want::Off,
            SslMode::Prefer => Want::Try,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Want::Demand,
        }
    }

    /// Negotiates over `socket` (already tracked, when it is a connection's), `plaintext`
    /// forcing plaintext (the second try of `prefer`).
    pub(crate) async fn run(
        &self,
        mut socket: PgSocket,
        unix: bool,
        plaintext: bool,
        cell: StatusCell,
    ) -> Result<Negotiated, Failed> {
        let want = if plaintext {
            Want::Off
        } else {
            self.want(unix)
        };
        if want == Want::Off {
            return Ok(Negotiated::plain(socket));
        }
        let Some(make) = &self.tls.0 else {
            return Err(Failed::Other(Error::InvalidConfig(
                "sslmode=require, and the connector has no TLS".into(),
            )));
        };
        if self.direct && want == Want::Try {
            // tokio-postgres's rule: direct negotiation cannot fall back.
            return Err(Failed::Other(Error::InvalidConfig(
                "sslnegotiation=direct needs sslmode=require or stronger".into(),
            )));
        }
        if !self.direct {
            socket.write_all(&SSL_REQUEST).await.map_err(fail_io)?;
            let mut answer = [0u8];
            socket.read_exact(&mut answer).await.map_err(fail_io)?;
            match (answer[0], want) {
                (b'S', _) => {}
                (b'N', Want::Try) => return Ok(Negotiated::plain(socket)),
                (b'N', _) => {
                    return Err(Failed::Other(Error::Tls(
                        "server does not support TLS".into(),
                    )))
                }
                (other, _) => {
                    return Err(Failed::Other(Error::Connect(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected answer to SSLRequest: {other:#04x}"),
                    ))))
                }
            }
        }
        let handshake = make(&self.domain).map_err(|e| Failed::Other(Error::Tls(e)))?;
        socket.encrypted();
        match handshake(socket).await {
            Ok(stream) => Ok(Negotiated(Stream::Tls(Tracked::new(stream, cell)))),
            Err(e) => Err(Failed::Handshake(match e.downcast::<io::Error>() {
                Ok(io) if io.kind() == io::ErrorKind::TimedOut => Error::TimedOut(Op::Connect),
                Ok(io) => Error::Tls(io),
                Err(e) => Error::Tls(e),
            })),
        }
    }
}

fn fail_io(e: io::Error) -> Failed {
    Failed::Other(io_error(e))
}

/// A connection's stream after the negotiation: the tracked socket, or a TLS stream over it
/// with a tracker above the encryption.
pub struct Negotiated(Stream);

enum Stream {
    Plain(PgSocket),
    Tls(Tracked<Box<dyn TlsIo>>),
}

impl Negotiated {
    fn plain(socket: PgSocket) -> Self {
        Negotiated(Stream::Plain(socket))
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.0, Stream::Tls(_))
    }
}

impl std::fmt::Debug for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Stream::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            Stream::Tls(_) => f.write_str("Tls"),
        }
    }
}

impl AsyncRead for Negotiated {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Negotiated {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl TlsStream for Negotiated {
    /// The TLS stream's binding; none in plaintext, as tokio-postgres's own plaintext stream.
    fn channel_binding(&self) -> ChannelBinding {
        match &self.0 {
            Stream::Plain(_) => ChannelBinding::none(),
            Stream::Tls(s) => s.inner().binding(),
        }
    }
}

/// Where the hook's socket comes from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// The socket the client gives it.
    Given { unix: bool },
    /// A socket the hook opens itself, dropping the one it is given (a loopback stand-in).
    Open(Addr),
}

/// What an attempt's hook leaves behind for the attempt to read once the client returns.
#[derive(Default)]
pub(crate) struct Outcome {
    /// The hook ran (the client's own connect, if any, got that far).
    pub(crate) reached: bool,
    /// The TLS handshake failed (for `prefer`'s second try).
    pub(crate) handshake_failed: bool,
    /// The typed error the hook failed with (the client gets only its text).
    pub(crate) error: Option<Error>,
}

/// The `MakeTlsConnect` (and `TlsConnect`) a client is given for one attempt: libpq's
/// negotiation over the raw socket, with the tracker in the stream it returns. Made by
/// [`Attempt::negotiator`](crate::Attempt::negotiator).
#[derive(Clone)]
pub struct Negotiator {
    pub(crate) negotiation: Negotiation,
    pub(crate) source: Source,
    pub(crate) plaintext: bool,
    pub(crate) cell: StatusCell,
    pub(crate) config: tokio_postgres::Config,
    pub(crate) outcome: Arc<Mutex<Outcome>>,
}

impl std::fmt::Debug for Negotiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Negotiator")
            .field("mode", &self.negotiation.mode)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl<S> MakeTlsConnect<S> for Negotiator
where
    S: Into<PgSocket> + Send + 'static,
{
    type Stream = Negotiated;
    type TlsConnect = Negotiator;
    type Error = io::Error;

    /// The server's name is the attempt's own (the client may be told a stand-in's).
    fn make_tls_connect(&mut self, _domain: &str) -> io::Result<Negotiator> {
        Ok(self.clone())
    }
}

impl<S> TlsConnect<S> for Negotiator
where
    S: Into<PgSocket> + Send + 'static,
{
    type Stream = Negotiated;
    type Error = io::Error;
    type Future = BoxFuture<io::Result<Negotiated>>;

    fn connect(self, given: S) -> Self::Future {
        let given: PgSocket = given.into();
        Box::pin(async move {
            self.lock().reached = true;
            match self.negotiate(given).await {
                Ok(stream) => Ok(stream),
                Err(failed) => {
                    let mut outcome = self.lock();
                    outcome.handshake_failed = matches!(failed, Failed::Handshake(_));
                    let error = failed.into_error();
                    let text = error.to_string();
                    outcome.error = Some(error);
                    Err(io::Error::other(text))
                }
            }
        })
    }
}

impl Negotiator {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.outcome.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn negotiate(&self, given: PgSocket) -> Result<Negotiated, Failed> {
        let (mut socket, unix) = match &self.source {
            Source::Given { unix } => (given, *unix),
            Source::Open(addr) => {
                drop(given);
                let socket = crate::plan::socket(addr, &self.config, self.cell.deadline())
                    .await
                    .map_err(Failed::Other)?;
                (socket, matches!(addr, Addr::Unix(_)))
            }
        };
        socket.track(self.cell.clone());
        self.negotiation
            .run(socket, unix, self.plaintext, self.cell.clone())
            .await
    }
}
