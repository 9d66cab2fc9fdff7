//! [`Liveness`]: whether an idle connection is still there, told without a round trip.
//!
//! When a server restarts (`pg_ctl restart -m fast`) or a backend is terminated
//! (`pg_terminate_backend`), the server sends each idle session a FATAL ErrorResponse (57P01)
//! and closes the socket; an immediate shutdown sends a WARNING notice (57P01, 57P02 after a
//! crash) and closes; a network reset leaves the socket with an error. All of that sits in the
//! socket's receive queue until the client next reads — the next borrower's query, which then
//! fails. A probe looks at that queue instead, as go-sql-driver/mysql's `conncheck.go` does: one
//! `poll` and, when bytes are waiting, a `recv` with `MSG_PEEK | MSG_DONTWAIT`. It sends nothing
//! and consumes nothing: whatever the server sent stays for the client to read.
//!
//! The probe works on a duplicate of the socket's descriptor, taken when the tracker is put in
//! ([`PgSocket`](crate::PgSocket)) and closed when the socket is dropped, so that the descriptor
//! never outlives the connection (a duplicate kept open would keep the TCP connection open too).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{recv, RecvFlags};

/// What a probe of an idle connection found, without a round trip
/// ([`StatusCell::probe`](crate::StatusCell::probe), and the connectors' `PgConn::probe`): the
/// pools' vocabulary, from `sanspool-core`. [`Alive`](Liveness::Alive) says nothing of the
/// transaction status (read [`StatusCell::get`](crate::StatusCell::get) for that): notifications,
/// notices and parameter changes the server sent unasked are left for the client to read.
/// [`Dead`](Liveness::Dead): the server closed its end (a terminated backend, a server shut down
/// or restarted: its FATAL error or shutdown notice is waiting, or the end of stream), the
/// connection was reset, or the client already knows it is closed. [`Unsure`](Liveness::Unsure):
/// bytes are waiting that cannot be read here (encrypted under TLS, or a message the session's
/// state does not explain), or the socket is not one this crate opened.
pub use sanspool_core::Liveness;

/// The probe of one connection: a duplicate of its socket's descriptor.
#[derive(Debug)]
pub(crate) struct Probe {
    fd: OwnedFd,
    /// TLS started over the socket: its bytes cannot be read here.
    encrypted: bool,
}

/// How many waiting bytes a probe reads (peeks): the messages a server sends unasked are short,
/// but a notification's payload may be up to 8000 bytes.
const PEEK: usize = 8192;

impl Probe {
    /// A probe of the socket `fd`; `None` if the descriptor cannot be duplicated (out of
    /// descriptors): such a connection probes [`Liveness::Unsure`].
    pub(crate) fn new(fd: BorrowedFd<'_>) -> Option<Probe> {
        fd.try_clone_to_owned().ok().map(|fd| Probe {
            fd,
            encrypted: false,
        })
    }

    /// TLS started: from now on waiting bytes cannot be read.
    pub(crate) fn encrypted(&mut self) {
        self.encrypted = true;
    }

    /// Looks at the socket without blocking; `idle`: the session is idle (every request
    /// answered and read), so that any waiting byte was sent unasked.
    pub(crate) fn look(&self, idle: bool) -> Liveness {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN | hang_up())];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if poll(&mut fds, Some(&now)).is_err() {
            return Liveness::Unsure;
        }
        let got = fds[0].revents();
        if got.intersects(PollFlags::ERR | PollFlags::HUP | hang_up()) {
            return Liveness::Dead;
        }
        if got.contains(PollFlags::NVAL) {
            return Liveness::Unsure;
        }
        if !got.contains(PollFlags::IN) {
            return Liveness::Alive;
        }
        let mut buf = [0u8; PEEK];
        match recv(
            &self.fd,
            &mut buf[..],
            RecvFlags::PEEK | RecvFlags::DONTWAIT,
        ) {
            Ok((0, _)) => Liveness::Dead,
            Ok(_) if self.encrypted || !idle => Liveness::Unsure,
            Ok((n, _)) => unasked(&buf[..n.min(PEEK)]),
            Err(e) => match io::Error::from(e).kind() {
                io::ErrorKind::WouldBlock => Liveness::Alive,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::NotConnected
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::TimedOut
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable => Liveness::Dead,
                _ => Liveness::Unsure,
            },
        }
    }
}

/// `POLLRDHUP`: the peer closed its end, seen even while bytes are still waiting (Linux).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn hang_up() -> PollFlags {
    PollFlags::RDHUP
}

/// Without `POLLRDHUP`, an end of stream is seen once nothing else is waiting.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn hang_up() -> PollFlags {
    PollFlags::empty()
}

/// What the bytes an idle session's server sent unasked say: an ErrorResponse is FATAL (the
/// server closes next), a notice of class 57P is a shutdown's (an immediate shutdown or a
/// crash: the server closes next); notifications, other notices and parameter changes are for
/// the client. Anything else, or a notice cut short, cannot be judged here.
pub(crate) fn unasked(mut bytes: &[u8]) -> Liveness {
    while let Some((&ty, rest)) = bytes.split_first() {
        match ty {
            b'E' => return Liveness::Dead,
            b'A' | b'S' | b'N' => {}
            _ => return Liveness::Unsure,
        }
        let Some(len) = rest
            .first_chunk::<4>()
            .map(|l| u32::from_be_bytes(*l) as usize)
        else {
            return cut_short(ty);
        };
        if len < 4 {
            return Liveness::Unsure;
        }
        let Some(body) = rest.get(4..len) else {
            return cut_short(ty);
        };
        if ty == b'N' && shutdown_notice(body) {
            return Liveness::Dead;
        }
        bytes = &rest[len..];
    }
    Liveness::Alive
}

/// A message whose end has not arrived: a notification or parameter change is harmless, a
/// notice's code cannot be read yet.
fn cut_short(ty: u8) -> Liveness {
    if ty == b'N' {
        Liveness::Unsure
    } else {
        Liveness::Alive
    }
}

/// Whether a NoticeResponse's fields (type byte, then a NUL-terminated value, until a NUL) carry
/// an SQLSTATE of class 57P: "operator intervention", the server going away.
fn shutdown_notice(mut fields: &[u8]) -> bool {
    while let Some((&code, rest)) = fields.split_first() {
        if code == 0 {
            break;
        }
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if code == b'C' {
            return rest[..end].starts_with(b"57P");
        }
        fields = rest.get(end + 1..).unwrap_or_default();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend(((body.len() + 4) as u32).to_be_bytes());
        m.extend(body);
        m
    }

    fn notice(code: &str) -> Vec<u8> {
        let mut body = b"SWARNING\0".to_vec();
        body.push(b'C');
        body.extend(code.as_bytes());
        body.extend(b"\0Mterminating connection\0\0");
        msg(b'N', &body)
    }

    #[test]
    fn what_an_idle_session_may_be_sent() {
        let notify = msg(b'A', b"\0\0\0\x07chan\0payload\0");
        let status = msg(b'S', b"TimeZone\0UTC\0");
        let fatal = msg(b'E', b"SFATAL\0C57P01\0\0");
        assert_eq!(unasked(&notify), Liveness::Alive);
        assert_eq!(
            unasked(&[notify.clone(), status.clone()].concat()),
            Liveness::Alive
        );
        assert_eq!(unasked(&notice("01000")), Liveness::Alive);
        assert_eq!(unasked(&fatal), Liveness::Dead);
        assert_eq!(
            unasked(&[notify.clone(), fatal.clone()].concat()),
            Liveness::Dead
        );
        // An immediate shutdown's or a crash's warning: the server closes next.
        assert_eq!(unasked(&notice("57P01")), Liveness::Dead);
        assert_eq!(unasked(&notice("57P02")), Liveness::Dead);
        // An ErrorResponse is judged by its type byte alone.
        assert_eq!(unasked(b"E"), Liveness::Dead);
        // Cut short: harmless for a notification, unknown for a notice.
        assert_eq!(unasked(&notify[..7]), Liveness::Alive);
        assert_eq!(unasked(&notice("57P01")[..9]), Liveness::Unsure);
        assert_eq!(unasked(b"N\0\0"), Liveness::Unsure);
        // Not something a server sends an idle session, or a malformed length.
        assert_eq!(unasked(&msg(b'Z', b"I")), Liveness::Unsure);
        assert_eq!(unasked(b"A\0\0\0\x02"), Liveness::Unsure);
        assert_eq!(unasked(b""), Liveness::Alive);
    }
}
