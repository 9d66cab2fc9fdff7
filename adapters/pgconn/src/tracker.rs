//! The protocol observer: [`Tracker`] follows both directions of a session's messages and keeps
//! the transaction status the server last stated in a [`StatusCell`]; [`Tracked`] puts one
//! above a TLS stream.
//!
//! The server states its transaction status in every ReadyForQuery message; libpq keeps the last
//! one (`PQtransactionStatus`), the Rust clients do not. A connection opened by this crate talks
//! through a transparent stream that frames both directions of the protocol, counts the requests
//! still waiting for their ReadyForQuery and keeps the last status byte. [`StatusCell::get`] is
//! one atomic load.
//!
//! # Where the tracker sits
//! In the [`PgSocket`](crate::PgSocket) for as long as the bytes are plaintext: the whole session
//! without TLS, or only the SSLRequest and its one-byte answer when the server accepts TLS. When
//! TLS starts, the socket's tracker stands aside (it would see encrypted bytes) and the TLS
//! stream is wrapped in [`Tracked`], which observes the plaintext above the encryption. One
//! [`StatusCell`] follows the session either way. How the stream gets into a client is the
//! `handshake` module's business.
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
//! A blocking client reads and writes only inside its own calls, and some calls return before
//! their ReadyForQuery is read (a failed call returns on the ErrorResponse,
//! `CopyInWriter::finish` on CommandComplete) or leave a request queued (the Close of a dropped
//! statement, the CopyFail of a dropped `CopyInWriter`). The status then says `Unknown` where the
//! server may already be idle, and a server that closed the connection between calls is seen as
//! closed only once a call fails. The queued CopyFail after a COPY rejected at Execute goes out at
//! the next call: until then the status may say `Idle`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsStream};

use crate::status::StatusCell;
#[cfg(doc)]
use crate::status::TxStatus;
use crate::wire::{Framer, KeyCatcher, Session, State};

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
pub(crate) struct Tracker {
    session: Session,
    front: Framer,
    back: Framer,
    phase: Phase,
    cell: StatusCell,
    /// Until the startup is over: the backend's key, for cancel requests.
    key: Option<KeyCatcher>,
}

impl Tracker {
    pub(crate) fn new(cell: StatusCell) -> Self {
        let session = Session::new();
        cell.start_tracking();
        cell.publish(session.state());
        Tracker {
            session,
            front: Framer::startup(),
            back: Framer::typed(),
            phase: Phase::Messages,
            cell,
            key: Some(KeyCatcher::new()),
        }
    }

    pub(crate) fn wrote(&mut self, data: &[u8]) {
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

    pub(crate) fn read(&mut self, mut data: &[u8]) {
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
        if let Some(catcher) = &mut self.key {
            if let Some(key) = catcher.feed(data) {
                self.cell.set_backend_key(key);
            }
            if catcher.done() {
                self.key = None;
            }
        }
        let session = &mut self.session;
        if !self.back.feed(data, |ty, first| session.backend(ty, first)) {
            session.lose();
        }
        self.cell.publish(self.session.state());
    }

    /// TLS starts over this stream (direct negotiation, or after an accepted SSLRequest).
    pub(crate) fn encrypted(&mut self) {
        self.phase = Phase::Encrypted;
    }

    pub(crate) fn close(&mut self) {
        self.session.close();
        self.cell.publish(State::Closed);
    }
}

/// A TLS stream with the tracker above the encryption.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
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
        // The probe waits for the whole read: the raw bytes and the status they lead to.
        this.tracker.cell.read_begin();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Pending => {}
            Poll::Ready(Ok(())) if !room || buf.filled().len() > before => {
                this.tracker.read(&buf.filled()[before..]);
            }
            Poll::Ready(_) => this.tracker.close(),
        }
        this.tracker.cell.read_end();
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
    /// Puts a tracker following `cell` above `inner`, a TLS stream (whose socket's own tracker
    /// must stand aside: it sees only encrypted bytes from then on).
    pub(crate) fn new(inner: S, cell: StatusCell) -> Self {
        Tracked {
            inner,
            tracker: Tracker::new(cell),
        }
    }

    pub(crate) fn inner(&self) -> &S {
        &self.inner
    }
}
