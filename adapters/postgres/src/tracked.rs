//! The transaction status of a `postgres::Client`, read without a round trip.
//!
//! The server states its transaction status in every ReadyForQuery message; libpq keeps the last
//! one (`PQtransactionStatus`), `postgres::Client` does not. A client opened by [`connect`] or
//! [`connect_tls`] talks through a transparent stream that frames both directions of the protocol,
//! counts the requests still waiting for their ReadyForQuery and keeps the last status byte.
//! [`StatusCell::get`] is one atomic load.
//!
//! # How the stream gets in
//! This crate opens the socket itself ([`PgSocket`]: DNS, TCP or a Unix-domain socket, under the
//! connect timeout) and hands it to `tokio_postgres::Config::connect_raw` with the configuration
//! exactly as the user gave it; a blocking `postgres::Client` is built over that connection
//! (`postgres::Config::connect_with`, see `patch/postgres/PATCH.md`). tokio-postgres then runs its
//! own TLS negotiation over the socket. The observer sits in [`PgSocket`] for as long as the bytes
//! are plaintext: the whole session without TLS, or only the SSLRequest and its one-byte answer
//! when the server accepts TLS. When TLS starts, [`PgSocket`] stops reading the (encrypted) bytes
//! and the TLS connector's stream is wrapped in [`Tracked`], which observes the plaintext above
//! the encryption. One [`StatusCell`] follows the session either way.
//!
//! [`PgSocket`] also carries the connection's deadline ([`StatusCell::set_deadline`]): a read or
//! write still pending when it passes fails with `TimedOut`, which closes the connection. That is
//! how a `ROLLBACK`, a check or a close of the blocking client gets a bound.
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
//! - The blocking client reads and writes only inside its own calls, and some calls return before
//!   their ReadyForQuery is read (a failed call returns on the ErrorResponse,
//!   `CopyInWriter::finish` on CommandComplete) or leave a request queued (the Close of a dropped
//!   statement, the CopyFail of a dropped `CopyInWriter`). The status then says `Unknown` where the
//!   server may already be idle, and a server that closed the connection between calls is seen as
//!   closed only once a call fails. The queued CopyFail after a COPY rejected at Execute goes out
//!   at the next call: until then the status may say `Idle`.
//! - `postgres::Client::cancel_token` of a client opened this way cannot cancel (tokio-postgres
//!   keeps no socket address for a `connect_raw` connection): use
//!   [`PgConn::cancel_token`](crate::PgConn::cancel_token), which the pooled guards reach first.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::{Client, Config};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Sleep;

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
#[derive(Clone, Debug)]
pub struct StatusCell(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// A [`TxStatus`] as `u8`; 0 is `Unknown`.
    status: AtomicU8,
    tracked: AtomicBool,
    bytes_written: AtomicU64,
    /// Nanoseconds after `epoch` (plus one, so that 0 means no deadline).
    deadline: AtomicU64,
    epoch: Instant,
}

impl Default for StatusCell {
    fn default() -> Self {
        StatusCell(Arc::new(Shared {
            status: AtomicU8::new(0),
            tracked: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            epoch: Instant::now(),
        }))
    }
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

    /// Bytes the client has written to the server since the session started (startup included,
    /// TLS records counted as sent).
    pub fn bytes_written(&self) -> u64 {
        self.0.bytes_written.load(Ordering::Relaxed)
    }

    /// Bounds the connection's I/O: a read or write still pending `after` from now fails with
    /// `TimedOut` (and the client's connection closes). `None` lifts the bound.
    pub fn set_deadline(&self, after: Option<Duration>) {
        let nanos = after.map_or(0, |after| {
            let at = self.0.epoch.elapsed().saturating_add(after);
            u64::try_from(at.as_nanos())
                .unwrap_or(u64::MAX - 1)
                .saturating_add(1)
        });
        self.0.deadline.store(nanos, Ordering::Release);
    }

    fn deadline(&self) -> Option<Instant> {
        match self.0.deadline.load(Ordering::Acquire) {
            0 => None,
            n => self.0.epoch.checked_add(Duration::from_nanos(n - 1)),
        }
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

/// Opens a tracked connection without TLS: plaintext unless `sslmode=require`, which then fails
/// as libpq built without TLS would.
pub fn connect(config: &Config) -> Result<(Client, StatusCell), crate::Error> {
    crate::connect::open(config, &crate::connect::Tls::none(), None).map(|o| (o.client, o.cell))
}

/// Opens a tracked connection through the TLS connector `tls`, following the configuration's
/// `sslmode` as tokio-postgres does (`prefer` tries TLS and falls back to plaintext).
pub fn connect_tls<T>(config: &Config, tls: T) -> Result<(Client, StatusCell), crate::Error>
where
    T: MakeTlsConnect<PgSocket> + Clone + Send + Sync + 'static,
    T::TlsConnect: Send + 'static,
    T::Stream: Send + 'static,
    T::Error: 'static,
    <T::TlsConnect as TlsConnect<PgSocket>>::Future: Send + 'static,
{
    crate::connect::open(config, &crate::connect::Tls::new(tls), None).map(|o| (o.client, o.cell))
}

/// What a tracker is reading.
#[derive(Debug)]
enum Phase {
    /// Protocol messages (after any SSLRequest was declined, or above TLS).
    Messages,
    /// An SSLRequest (or GSSENCRequest) was written: the next backend byte is the bare answer.
    Answer,
    /// The server accepted TLS: the bytes here are encrypted, the tracker above them follows.
    Encrypted,
}

/// The protocol observer of one stream.
#[derive(Debug)]
struct Tracker {
    session: Session,
    front: Framer,
    back: Framer,
    phase: Phase,
    cell: StatusCell,
}

impl Tracker {
    fn new(cell: StatusCell) -> Self {
        let session = Session::new();
        cell.0.tracked.store(true, Ordering::Release);
        cell.publish(session.state());
        Tracker {
            session,
            front: Framer::startup(),
            back: Framer::typed(),
            phase: Phase::Messages,
            cell,
        }
    }

    fn wrote(&mut self, data: &[u8]) {
        if matches!(self.phase, Phase::Encrypted) {
            return;
        }
        let (session, mut request) = (&mut self.session, false);
        let followed = self.front.feed(data, |ty, first| match ty {
            // An untyped message whose code starts with 0x04 is a negotiation request (SSL or
            // GSSENC, 80877103/4), not the startup message (protocol 3.0 starts with 0x00).
            0 if first == Some(0x04) => request = true,
            _ => session.frontend(ty),
        });
        if !followed {
            session.lose();
        }
        if request {
            self.phase = Phase::Answer;
        }
        self.cell.publish(self.session.state());
    }

    fn read(&mut self, mut data: &[u8]) {
        if let Phase::Answer = self.phase {
            let Some((&answer, rest)) = data.split_first() else {
                return;
            };
            if answer == b'S' || answer == b'G' {
                self.phase = Phase::Encrypted;
                return;
            }
            // Declined: the startup message follows in plaintext.
            (self.phase, self.front, data) = (Phase::Messages, Framer::startup(), rest);
        }
        if matches!(self.phase, Phase::Encrypted) {
            return;
        }
        let session = &mut self.session;
        if !self.back.feed(data, |ty, first| session.backend(ty, first)) {
            session.lose();
        }
        self.cell.publish(self.session.state());
    }

    /// TLS starts over this stream (direct negotiation, or after an accepted SSLRequest).
    fn encrypted(&mut self) {
        self.phase = Phase::Encrypted;
    }

    fn close(&mut self) {
        self.session.close();
        self.cell.publish(State::Closed);
    }
}

#[derive(Debug)]
enum Raw {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The socket of a connection opened by this crate: TCP or a Unix-domain socket, with the
/// tracker in it while the session is plaintext and the connection's deadline. It is what TLS
/// connectors given to [`PgConnector::with_tls`](crate::PgConnector::with_tls) wrap.
#[derive(Debug)]
pub struct PgSocket {
    raw: Raw,
    tracker: Option<Tracker>,
    cell: Option<StatusCell>,
    /// The timer of the deadline it was armed for (the cell's raw value).
    timer: Option<(u64, Pin<Box<Sleep>>)>,
    /// A cancel request's socket: shutting down does not close our half but waits for the
    /// server to close, as libpq does, so the request is processed before the caller goes on.
    /// (PgBouncer 1.18 drops a cancel request whose client closes first, and may then crash.)
    linger: bool,
}

impl PgSocket {
    pub(crate) fn tcp(stream: TcpStream) -> Self {
        Self::new(Raw::Tcp(stream))
    }

    pub(crate) fn unix(stream: UnixStream) -> Self {
        Self::new(Raw::Unix(stream))
    }

    fn new(raw: Raw) -> Self {
        PgSocket {
            raw,
            tracker: None,
            cell: None,
            timer: None,
            linger: false,
        }
    }

    /// Makes shutting down wait for the peer's end of stream (a cancel request's socket).
    pub(crate) fn lingering(mut self) -> Self {
        self.linger = true;
        self
    }

    /// Puts the tracker in (the connection's socket; not for a cancel request's).
    pub(crate) fn track(&mut self, cell: StatusCell) {
        cell.0.bytes_written.store(0, Ordering::Relaxed);
        self.tracker = Some(Tracker::new(cell.clone()));
        self.cell = Some(cell);
    }

    /// Whether the connection's deadline has passed; arms the timer (and so a wake-up) if not.
    #[inline]
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        // No deadline and no timer (the usual case): nothing to look at.
        match &self.cell {
            None => false,
            Some(cell) if self.timer.is_none() && cell.0.deadline.load(Ordering::Acquire) == 0 => {
                false
            }
            Some(_) => self.expired_slow(cx),
        }
    }

    #[cold]
    #[inline(never)]
    fn expired_slow(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(cell) = &self.cell else { return false };
        let raw = cell.0.deadline.load(Ordering::Acquire);
        let Some(at) = cell.deadline() else {
            if self.timer.is_some() {
                self.timer = None;
            }
            return false;
        };
        if self.timer.as_ref().is_none_or(|(armed, _)| *armed != raw) {
            let sleep = tokio::time::sleep_until(at.into());
            self.timer = Some((raw, Box::pin(sleep)));
        }
        let (_, timer) = self.timer.as_mut().expect("armed above");
        timer.as_mut().poll(cx).is_ready()
    }

    fn timed_out(&mut self) -> io::Error {
        if let Some(tracker) = &mut self.tracker {
            tracker.close();
        } else if let Some(cell) = &self.cell {
            cell.publish(State::Closed);
        }
        io::Error::new(io::ErrorKind::TimedOut, "the connection's deadline passed")
    }
}

impl AsyncRead for PgSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let polled = match &mut this.raw {
            Raw::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Raw::Unix(s) => Pin::new(s).poll_read(cx, buf),
        };
        if polled.is_pending() && this.expired(cx) {
            return Poll::Ready(Err(this.timed_out()));
        }
        match (&polled, &mut this.tracker) {
            (Poll::Pending, _) | (_, None) => {}
            (Poll::Ready(Ok(())), Some(t)) if !room || buf.filled().len() > before => {
                t.read(&buf.filled()[before..]);
            }
            (Poll::Ready(_), Some(t)) => t.close(), // end of stream or error
        }
        polled
    }
}

impl AsyncWrite for PgSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.raw {
            Raw::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Raw::Unix(s) => Pin::new(s).poll_write(cx, data),
        };
        match &polled {
            Poll::Pending if this.expired(cx) => return Poll::Ready(Err(this.timed_out())),
            Poll::Pending => {}
            Poll::Ready(Ok(n)) => {
                if let Some(cell) = &this.cell {
                    // This socket is the counter's only writer: no read-modify-write needed.
                    let written = &cell.0.bytes_written;
                    let n = *n as u64;
                    written.store(
                        written.load(Ordering::Relaxed).wrapping_add(n),
                        Ordering::Relaxed,
                    );
                }
                if let Some(t) = &mut this.tracker {
                    t.wrote(&data[..*n]);
                }
            }
            Poll::Ready(Err(_)) => {
                if let Some(t) = &mut this.tracker {
                    t.close();
                }
            }
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = match &mut this.raw {
            Raw::Tcp(s) => Pin::new(s).poll_flush(cx),
            Raw::Unix(s) => Pin::new(s).poll_flush(cx),
        };
        if polled.is_pending() && this.expired(cx) {
            return Poll::Ready(Err(this.timed_out()));
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(t) = &mut this.tracker {
            t.close();
        }
        if !this.linger {
            let polled = match &mut this.raw {
                Raw::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                Raw::Unix(s) => Pin::new(s).poll_shutdown(cx),
            };
            if polled.is_pending() && this.expired(cx) {
                return Poll::Ready(Err(this.timed_out()));
            }
            return polled;
        }
        // Read (and drop) until the peer closes.
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            let polled = match &mut this.raw {
                Raw::Tcp(s) => Pin::new(s).poll_read(cx, &mut buf),
                Raw::Unix(s) => Pin::new(s).poll_read(cx, &mut buf),
            };
            match polled {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for PgSocket {
    fn drop(&mut self) {
        if let Some(t) = &mut self.tracker {
            t.close();
        }
    }
}

/// A TLS stream with the tracker above the encryption.
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    tracker: Tracker,
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
            Poll::Pending => {}
            Poll::Ready(Ok(())) if !room || buf.filled().len() > before => {
                this.tracker.read(&buf.filled()[before..]);
            }
            Poll::Ready(_) => this.tracker.close(),
        }
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
            Poll::Pending => {}
            Poll::Ready(Ok(n)) => this.tracker.wrote(&data[..*n]),
            Poll::Ready(Err(_)) => this.tracker.close(),
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tracker.close();
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Tracked<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        self.tracker.close();
    }
}

impl<S> Tracked<S> {
    /// Puts the tracker above `inner`, a TLS stream over `socket` (whose own tracker stands
    /// aside: it sees only encrypted bytes from now on).
    pub(crate) fn above(socket: &mut PgSocket, cell: StatusCell) -> impl FnOnce(S) -> Self {
        if let Some(t) = &mut socket.tracker {
            t.encrypted();
        }
        move |inner| Tracked {
            inner,
            tracker: Tracker::new(cell),
        }
    }
}
