//! [`PgSocket`]: a connection's socket, with the tracker in it while the session is plaintext,
//! the connection's deadline, and the descriptor its probe looks at.
//!
//! The deadline ([`StatusCell::set_deadline`]) is how every operation of a client gets a bound
//! without a timer of the client's: a read or write still pending when it passes fails with
//! `TimedOut`, which closes the connection. That is how a `ROLLBACK`, a check or a close of the
//! blocking client, and the startup and authentication of either, are bounded.
//!
//! Shutting the socket down (what a client does after writing Terminate, and a cancel request
//! after its request) waits for the server to close its end, as libpq does for a cancel
//! request: a close that returns has seen the session end, and the server has read the request.
//! That wait is bounded by the deadline, [`DEFAULT_CLOSE_TIMEOUT`] when none is set.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Sleep;

use crate::bounds::DEFAULT_CLOSE_TIMEOUT;
use crate::status::StatusCell;
use crate::tracker::Tracker;
use crate::wire::State;

#[derive(Debug)]
enum Raw {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// The socket tokio-postgres opened itself (the blocking client's TCP connections).
    Client(tokio_postgres::Socket),
}

/// `$body` on the raw stream, whichever it is, pinned as `$s`.
macro_rules! on_raw {
    ($raw:expr, $s:ident => $body:expr) => {
        match $raw {
            Raw::Tcp(s) => {
                let $s = Pin::new(s);
                $body
            }
            Raw::Unix(s) => {
                let $s = Pin::new(s);
                $body
            }
            Raw::Client(s) => {
                let $s = Pin::new(s);
                $body
            }
        }
    };
}

/// The socket of a connection opened by this crate: TCP or a Unix-domain socket, with the
/// tracker in it while the session is plaintext, the connection's deadline, and the descriptor
/// its probe looks at ([`StatusCell::probe`]). It is what TLS connectors given to a connector's
/// `with_tls` wrap.
///
/// Shutting it down does not close our half but waits for the server to close, within the
/// connection's deadline (else [`DEFAULT_CLOSE_TIMEOUT`]): after Terminate, so that a close
/// that returns has seen the session end; after a cancel request, as libpq does, so that the
/// request was read (PgBouncer 1.18 drops a cancel request whose client closes first, and may
/// then crash).
#[derive(Debug)]
pub struct PgSocket {
    raw: Raw,
    tracker: Option<Tracker>,
    cell: Option<StatusCell>,
    /// The timer of the deadline it was armed for (the cell's raw value).
    timer: Option<(u64, Pin<Box<Sleep>>)>,
    /// Shutting down: waiting for the server's end of stream.
    lingering: bool,
}

impl PgSocket {
    pub(crate) fn tcp(stream: TcpStream) -> Self {
        Self::new(Raw::Tcp(stream))
    }

    pub(crate) fn unix(stream: UnixStream) -> Self {
        Self::new(Raw::Unix(stream))
    }

    pub(crate) fn client(stream: tokio_postgres::Socket) -> Self {
        Self::new(Raw::Client(stream))
    }

    fn new(raw: Raw) -> Self {
        PgSocket {
            raw,
            tracker: None,
            cell: None,
            timer: None,
            lingering: false,
        }
    }

    /// Puts the tracker in, and the socket's descriptor in reach of the cell's probe (the
    /// connection's socket; not for a cancel request's).
    pub(crate) fn track(&mut self, cell: StatusCell) {
        match &self.raw {
            Raw::Tcp(s) => cell.plug(s.as_fd()),
            Raw::Unix(s) => cell.plug(s.as_fd()),
            // tokio-postgres gives no access to its socket's descriptor: never probed.
            Raw::Client(_) => {}
        }
        self.tracker = Some(Tracker::new(cell.clone()));
        self.cell = Some(cell);
    }

    /// TLS starts over this socket: its tracker stands aside (the tracker above the encryption
    /// follows the session from here), and the probe can no longer read what waits.
    pub(crate) fn encrypted(&mut self) {
        if let Some(t) = &mut self.tracker {
            t.encrypted();
        }
        if let Some(cell) = &self.cell {
            cell.plug_encrypted();
        }
    }

    /// Whether the deadline has passed, without arming anything.
    fn past_deadline(&self) -> bool {
        let at = self.cell.as_ref().and_then(StatusCell::deadline);
        at.is_some_and(|at| Instant::now() >= at)
    }

    /// Whether the connection's deadline has passed; arms the timer (and so a wake-up) if not.
    #[inline]
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        // No deadline and no timer (the usual case): nothing to look at.
        match &self.cell {
            None => false,
            Some(cell) if self.timer.is_none() && cell.deadline_raw() == 0 => false,
            Some(_) => self.expired_slow(cx),
        }
    }

    #[cold]
    #[inline(never)]
    fn expired_slow(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(cell) = &self.cell else { return false };
        let raw = cell.deadline_raw();
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

impl From<tokio_postgres::Socket> for PgSocket {
    /// The socket tokio-postgres opened (the blocking client's), untracked until the
    /// negotiation puts a tracker in.
    fn from(socket: tokio_postgres::Socket) -> Self {
        PgSocket::client(socket)
    }
}

impl PgSocket {
    fn read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let polled = on_raw!(&mut self.raw, s => s.poll_read(cx, buf));
        if polled.is_pending() && self.expired(cx) {
            return Poll::Ready(Err(self.timed_out()));
        }
        match (&polled, &mut self.tracker) {
            (Poll::Pending, _) | (_, None) => {}
            (Poll::Ready(Ok(())), Some(t)) if !room || buf.filled().len() > before => {
                t.read(&buf.filled()[before..]);
            }
            (Poll::Ready(_), Some(t)) => t.close(), // end of stream or error
        }
        polled
    }
}

impl AsyncRead for PgSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The probe's view of the socket is valid only between reads (see `StatusCell::probe`).
        if let Some(cell) = &this.cell {
            cell.read_begin();
        }
        let polled = this.read(cx, buf);
        if let Some(cell) = &this.cell {
            cell.read_end();
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
        let polled = on_raw!(&mut this.raw, s => s.poll_write(cx, data));
        match &polled {
            Poll::Pending if this.expired(cx) => return Poll::Ready(Err(this.timed_out())),
            Poll::Pending => {}
            Poll::Ready(Ok(n)) => {
                if let Some(cell) = &this.cell {
                    cell.wrote(*n);
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
        let polled = on_raw!(&mut this.raw, s => s.poll_flush(cx));
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
        if !this.lingering {
            this.lingering = true;
            // A client dropped outside any bound of ours (a tracked client without a pool).
            if let Some(cell) = this.cell.as_ref().filter(|c| c.deadline_raw() == 0) {
                cell.set_deadline(Some(DEFAULT_CLOSE_TIMEOUT));
            }
        }
        // Read (and drop) until the peer closes: what the server sends after Terminate is of no
        // use, but its end of stream says the session is over.
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            let polled = on_raw!(&mut this.raw, s => s.poll_read(cx, &mut buf));
            match polled {
                // A server still sending (the rest of a result) must not outlast the bound.
                Poll::Ready(Ok(())) if !buf.filled().is_empty() && this.past_deadline() => {
                    return Poll::Ready(Err(this.timed_out()));
                }
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                // End of stream, or the connection reset: either way the server is done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending if this.expired(cx) => return Poll::Ready(Err(this.timed_out())),
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
        if let Some(cell) = &self.cell {
            cell.unplug();
        }
    }
}
