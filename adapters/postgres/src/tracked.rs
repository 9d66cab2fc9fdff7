//! The transaction status of a `postgres::Client`, read without a round trip.
//!
//! The server states its transaction status in every ReadyForQuery message; libpq keeps the last
//! one (`PQtransactionStatus`), `postgres::Client` does not. A client opened by [`connect`] or
//! [`connect_tls`] talks through a transparent stream that frames both directions of the protocol,
//! counts the requests still waiting for their ReadyForQuery and keeps the last status byte.
//! [`StatusCell::get`] is one atomic load.
//!
//! # How the stream gets in
//! tokio-postgres gives the raw socket to the TLS connector, with no SSLRequest first, when
//! `sslmode=require` and `sslnegotiation=direct`. [`connect`] sets both and passes a connector that
//! does no TLS: the "TLS stream" is the socket itself seen through the tracker, and the server
//! receives an ordinary startup packet. [`connect_tls`] keeps the configuration and wraps the
//! stream that a real TLS connector returns, above the encryption, where the messages are
//! plaintext.
//!
//! # The rule
//! Every simple Query, FunctionCall and Sync written owes one ReadyForQuery, and so does the
//! startup message. The exception is COPY IN: the server ignores Sync while it reads copy data, so
//! when the client ends the copy (CopyDone or CopyFail) the count restarts from what is still owed:
//! one ReadyForQuery if the COPY came from a simple Query, none if from Execute. The status is
//! [`TxStatus::Idle`] only when nothing is owed, no COPY is open and the last ReadyForQuery said
//! `I`. Anything the model does not follow (COPY BOTH, a command sent during COPY IN, an unasked
//! ReadyForQuery, a malformed length) makes the status [`TxStatus::Unknown`] for the rest of the
//! session: a wrong guess can cost a reset, never a false `Idle`. [`TxStatus::Closed`] follows end
//! of stream, an I/O error, Terminate, an ErrorResponse while nothing is owed (a FATAL one), and a
//! CopyDone or CopyFail for a COPY the server never started: tokio-postgres 0.7 sends one after a
//! COPY IN rejected at Execute, and then misroutes replies (rust-postgres issue 789).
//!
//! # Limitations
//! - Unix-domain sockets, and `hostaddr` without `host`: tokio-postgres refuses the TLS path when
//!   it has no host name, so [`connect`] then connects without the tracker (as
//!   `postgres::Config::connect(NoTls)` would) and the cell stays untracked: [`TxStatus::Unknown`]
//!   always. So does `sslmode=require` given to [`connect`], which fails as it would without
//!   tracking; a server that accepts only TLS needs [`connect_tls`].
//! - [`connect_tls`] tracks only sessions that are really encrypted; one that falls back to
//!   plaintext (`sslmode=prefer` and a server without TLS) is untracked. `sslmode=disable` goes
//!   through [`connect`].
//! - The blocking client reads and writes only inside its own calls, and some calls return before
//!   their ReadyForQuery is read (a failed call returns on the ErrorResponse,
//!   `CopyInWriter::finish` on CommandComplete) or leave a request queued (the Close of a dropped
//!   statement, the CopyFail of a dropped `CopyInWriter`). The status then says `Unknown` where the
//!   server may already be idle, and a server that closed the connection between calls is seen as
//!   closed only once a call fails. The queued CopyFail after a COPY rejected at Execute goes out
//!   at the next call: until then the status may say `Idle`.

use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use postgres::config::{Host, SslMode, SslNegotiation};
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::{Client, Config, Error, NoTls, Socket};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::wire::{Framer, Session, State};

/// The state of a session, as of the last bytes the client exchanged with the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// Not in a transaction block, every request answered: clean, nothing to reset.
    Idle,
    /// Inside a transaction block (`BEGIN` without its end): needs `ROLLBACK`.
    InTransaction,
    /// Inside a failed transaction block: needs `ROLLBACK`.
    InError,
    /// A request is not fully answered (unread results, a COPY left half done), the stream could
    /// not be followed, or the connection is not tracked: only a round trip can tell.
    Unknown,
    /// The stream ended or failed, the client sent Terminate, the server sent an unasked (FATAL)
    /// error, or the client got out of step with the server: discard the connection.
    Closed,
}

/// A handle on the status of one connection; clones share it. Reading costs no I/O.
#[derive(Clone, Debug, Default)]
pub struct StatusCell(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    /// A [`TxStatus`] as `u8`; 0 is `Unknown`.
    status: AtomicU8,
    tracked: AtomicBool,
    bytes_written: AtomicU64,
}

impl StatusCell {
    /// The status as of the client's last exchange with the server.
    pub fn get(&self) -> TxStatus {
        match self.0.status.load(Ordering::Acquire) {
            1 => TxStatus::Idle,
            2 => TxStatus::InTransaction,
            3 => TxStatus::InError,
            4 => TxStatus::Closed,
            _ => TxStatus::Unknown,
        }
    }

    /// Whether the tracker sits in the connection's stream; if not, [`get`](Self::get) is always
    /// `Unknown`.
    pub fn is_tracked(&self) -> bool {
        self.0.tracked.load(Ordering::Acquire)
    }

    /// Bytes the client has written to the server since the session started (startup included).
    pub fn bytes_written(&self) -> u64 {
        self.0.bytes_written.load(Ordering::Relaxed)
    }

    fn publish(&self, state: State) {
        let status = match state {
            State::Ready(b'I') => 1,
            State::Ready(b'T') => 2,
            State::Ready(b'E') => 3,
            State::Closed => 4,
            _ => 0,
        };
        self.0.status.store(status, Ordering::Release);
    }
}

/// Opens a tracked connection without TLS (see the module docs for the configurations it cannot
/// track).
pub fn connect(config: &Config) -> Result<(Client, StatusCell), Error> {
    let cell = StatusCell::default();
    let hosts = config.get_hosts();
    let named = !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Tcp(_)));
    if !named || !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
        return Ok((config.connect(NoTls)?, cell));
    }
    let mut direct = config.clone();
    direct
        .ssl_mode(SslMode::Require)
        .ssl_negotiation(SslNegotiation::Direct);
    let client = direct.connect(Direct(cell.clone()))?;
    Ok((client, cell))
}

/// Opens a tracked connection through the TLS connector `tls` (see the module docs for when it is
/// untracked).
pub fn connect_tls<T>(config: &Config, tls: T) -> Result<(Client, StatusCell), Error>
where
    T: MakeTlsConnect<Socket> + Send + 'static,
    T::TlsConnect: Send + 'static,
    T::Stream: Send + 'static,
    T::Error: 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send + 'static,
{
    if config.get_ssl_mode() == SslMode::Disable {
        return connect(config);
    }
    let cell = StatusCell::default();
    let client = config.connect(Tracking {
        inner: tls,
        cell: cell.clone(),
    })?;
    Ok((client, cell))
}

/// A connection's stream seen through the tracker.
struct Tracked<S> {
    inner: S,
    session: Session,
    front: Framer,
    back: Framer,
    cell: StatusCell,
    binding: fn(&S) -> ChannelBinding,
}

impl<S> Tracked<S> {
    fn new(inner: S, cell: StatusCell, binding: fn(&S) -> ChannelBinding) -> Self {
        let (session, front, back) = (Session::new(), Framer::startup(), Framer::typed());
        cell.0.bytes_written.store(0, Ordering::Relaxed);
        cell.0.tracked.store(true, Ordering::Release);
        cell.publish(session.state());
        Self {
            inner,
            session,
            front,
            back,
            cell,
            binding,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Pending => return polled,
            Poll::Ready(Ok(())) if !room || buf.filled().len() > before => {
                let session = &mut this.session;
                if !this.back.feed(&buf.filled()[before..], |ty, first| {
                    session.backend(ty, first)
                }) {
                    session.lose();
                }
            }
            Poll::Ready(_) => this.session.close(), // end of stream or error
        }
        this.cell.publish(this.session.state());
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        match &polled {
            Poll::Pending => return polled,
            Poll::Ready(Ok(n)) => {
                this.cell
                    .0
                    .bytes_written
                    .fetch_add(*n as u64, Ordering::Relaxed);
                let session = &mut this.session;
                if !this.front.feed(&data[..*n], |ty, _| session.frontend(ty)) {
                    session.lose();
                }
            }
            Poll::Ready(Err(_)) => this.session.close(),
        }
        this.cell.publish(this.session.state());
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.session.close();
        self.cell.publish(State::Closed);
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Tracked<S> {
    fn channel_binding(&self) -> ChannelBinding {
        (self.binding)(&self.inner)
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.cell.publish(State::Closed);
    }
}

/// The connector of [`connect`]: no TLS, just the tracker around the socket.
struct Direct(StatusCell);

impl MakeTlsConnect<Socket> for Direct {
    type Stream = Tracked<Socket>;
    type TlsConnect = Direct;
    type Error = io::Error;

    fn make_tls_connect(&mut self, _domain: &str) -> io::Result<Direct> {
        Ok(Direct(self.0.clone()))
    }
}

impl TlsConnect<Socket> for Direct {
    type Stream = Tracked<Socket>;
    type Error = io::Error;
    type Future = Ready<io::Result<Tracked<Socket>>>;

    fn connect(self, socket: Socket) -> Self::Future {
        // No TLS, hence no channel binding: SCRAM runs without it (unless the config requires it).
        ready(Ok(Tracked::new(socket, self.0, |_| ChannelBinding::none())))
    }
}

/// The connector of [`connect_tls`]: the tracker around what the inner connector returns.
struct Tracking<T> {
    inner: T,
    cell: StatusCell,
}

impl<T: MakeTlsConnect<Socket>> MakeTlsConnect<Socket> for Tracking<T>
where
    T::TlsConnect: 'static,
    T::Stream: Send + 'static,
    T::Error: 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send + 'static,
{
    type Stream = Tracked<T::Stream>;
    type TlsConnect = Tracking<T::TlsConnect>;
    type Error = T::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, T::Error> {
        let inner = self.inner.make_tls_connect(domain)?;
        Ok(Tracking {
            inner,
            cell: self.cell.clone(),
        })
    }
}

type Connecting<S, E> = Pin<Box<dyn Future<Output = Result<Tracked<S>, E>> + Send>>;

impl<C: TlsConnect<Socket>> TlsConnect<Socket> for Tracking<C>
where
    C: 'static,
    C::Stream: Send + 'static,
    C::Error: 'static,
    C::Future: Send + 'static,
{
    type Stream = Tracked<C::Stream>;
    type Error = C::Error;
    type Future = Connecting<C::Stream, C::Error>;

    fn connect(self, socket: Socket) -> Self::Future {
        let (handshake, cell) = (self.inner.connect(socket), self.cell);
        Box::pin(async move {
            Ok(Tracked::new(
                handshake.await?,
                cell,
                C::Stream::channel_binding,
            ))
        })
    }
}
