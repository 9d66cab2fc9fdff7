//! [`TxStatus`], a session's state as the server last stated it, and [`StatusCell`], where a
//! connection's tracker keeps it for its pool to read without I/O, beside the probe that tells
//! whether an idle connection is still there ([`StatusCell::probe`]).

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::probe::{Liveness, Probe};
use crate::wire::State;

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
    /// The backend's process id and secret key, as its BackendKeyData said.
    key: OnceLock<[u8; 8]>,
    /// The socket's probe, while the socket lives (its socket puts it in and takes it out).
    probe: Mutex<Option<Probe>>,
    /// Reads of the stream in progress, and reads done: a probe trusts what it saw of the
    /// socket only if no read of the client's took bytes from it meanwhile (an async client's
    /// driver reads on its own task; see [`StatusCell::probe`]).
    reading: AtomicU32,
    reads: AtomicU64,
}

impl Default for StatusCell {
    fn default() -> Self {
        StatusCell(Arc::new(Shared {
            status: AtomicU8::new(0),
            tracked: AtomicBool::new(false),
            bytes_written: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            epoch: Instant::now(),
            key: OnceLock::new(),
            probe: Mutex::new(None),
            reading: AtomicU32::new(0),
            reads: AtomicU64::new(0),
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

    /// The deadline as an instant, if one is set.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.deadline_raw() {
            0 => None,
            n => self.0.epoch.checked_add(Duration::from_nanos(n - 1)),
        }
    }

    /// The deadline's raw value (0: none): cheap to compare, to see whether it moved.
    #[inline]
    pub(crate) fn deadline_raw(&self) -> u64 {
        self.0.deadline.load(Ordering::Acquire)
    }

    /// A tracker now sits in the stream; the byte count starts again.
    pub(crate) fn start_tracking(&self) {
        self.0.bytes_written.store(0, Ordering::Relaxed);
        self.0.tracked.store(true, Ordering::Release);
    }

    /// `n` more bytes were written. The connection's socket is the counter's only writer: no
    /// read-modify-write needed.
    #[inline]
    pub(crate) fn wrote(&self, n: usize) {
        let written = &self.0.bytes_written;
        written.store(
            written.load(Ordering::Relaxed).wrapping_add(n as u64),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn set_backend_key(&self, key: [u8; 8]) {
        let _ = self.0.key.set(key);
    }

    /// The backend's process id and secret key, once the startup sent them.
    pub(crate) fn backend_key(&self) -> Option<[u8; 8]> {
        self.0.key.get().copied()
    }

    /// Whether the connection is still there, told without a round trip and without consuming
    /// anything: one `poll` of the socket and, when the server sent something, a peek at it (see
    /// [`Liveness`]). Meant for an idle connection about to be handed out, on whatever thread
    /// hands it out: it never blocks (a few microseconds).
    ///
    /// [`Liveness::Dead`] when the tracker already saw the stream end or a FATAL error, when the
    /// server closed its end or sent a FATAL error or a shutdown notice since, or when the
    /// connection was reset. [`Liveness::Unsure`] when bytes are waiting that cannot be read here
    /// (under TLS; or the session is not idle, so they may be a reply), and for a socket without
    /// a probe (not opened by this crate, or its socket already dropped).
    pub fn probe(&self) -> Liveness {
        // A client's read may take the server's bytes off the socket between this look at the
        // status and the look at the socket (an async client's driver reads on its own task):
        // an `Alive` counts only if no read overlapped it. Reads never block, so they end soon.
        for _ in 0..1000 {
            if self.0.reading.load(Ordering::SeqCst) > 0 {
                std::thread::yield_now();
                continue;
            }
            let reads = self.0.reads.load(Ordering::SeqCst);
            let found = self.probe_once();
            if found != Liveness::Alive
                || (self.0.reading.load(Ordering::SeqCst) == 0
                    && self.0.reads.load(Ordering::SeqCst) == reads)
            {
                return found;
            }
        }
        Liveness::Unsure
    }

    fn probe_once(&self) -> Liveness {
        let status = self.get();
        if status == TxStatus::Closed {
            return Liveness::Dead;
        }
        let probe = self.0.probe.lock().unwrap_or_else(|p| p.into_inner());
        match &*probe {
            Some(probe) => probe.look(status == TxStatus::Idle),
            None => Liveness::Unsure,
        }
    }

    /// A read of the stream starts: until [`read_end`](Self::read_end), and the status it
    /// leads to published, probes wait.
    #[inline]
    pub(crate) fn read_begin(&self) {
        self.0.reading.fetch_add(1, Ordering::SeqCst);
    }

    /// The read started by [`read_begin`](Self::read_begin) is over, its bytes followed.
    #[inline]
    pub(crate) fn read_end(&self) {
        self.0.reads.fetch_add(1, Ordering::SeqCst);
        self.0.reading.fetch_sub(1, Ordering::SeqCst);
    }

    /// The connection's socket is `fd`: probes look at a duplicate of it, until
    /// [`unplug`](Self::unplug).
    pub(crate) fn plug(&self, fd: BorrowedFd<'_>) {
        *self.0.probe.lock().unwrap_or_else(|p| p.into_inner()) = Probe::new(fd);
    }

    /// TLS started over the socket: waiting bytes can no longer be read by a probe.
    pub(crate) fn plug_encrypted(&self) {
        if let Some(probe) = &mut *self.0.probe.lock().unwrap_or_else(|p| p.into_inner()) {
            probe.encrypted();
        }
    }

    /// The socket is going: the duplicate closes with it (kept, it would keep the TCP
    /// connection open for as long as any clone of the cell lives).
    pub(crate) fn unplug(&self) {
        drop(
            self.0
                .probe
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }

    pub(crate) fn publish(&self, state: State) {
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
