//! The core state machine beside what the driver remembers, and the I/O its commands ask for.
//!
//! A pool feeds an input to [`Engine::core`], then [`drains`](Engine::drain) the commands in the
//! same critical section: outcomes for queued checkouts (grants, failures) are delivered there —
//! they are only hand-offs — and the I/O commands (open, close, reset, check) are collected. The
//! lock is released, the commands are [`performed`](Settings::perform), and each
//! [`Completion`] is [`reported`](Engine::report) back under the lock, with a new drain. So no
//! command is ever left queued between critical sections, and no I/O ever runs under the lock.

use crate::error::Failure;
use crate::{BuildError, Connector, GetError};
use sanspool_core::{
    AllocPool, Completion, Config, Finished, Handoff, Io, Lease, Rejected, Returned, Time, Wait,
};
use std::collections::VecDeque;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A hook run on a connection: after it is opened, or before it is reused.
pub(crate) type Hook<M> =
    Box<dyn Fn(&mut <M as Connector>::Conn) -> Result<(), <M as Connector>::Error> + Send + Sync>;

/// What a pool does I/O with, fixed at build: the connector, hooks, checkout timeout, clock origin.
pub(crate) struct Settings<M: Connector> {
    pub(crate) connector: M,
    pub(crate) after_connect: Option<Hook<M>>,
    pub(crate) before_reuse: Option<Hook<M>>,
    pub(crate) check_on_checkout: bool,
    /// How long a checkout waits; `None`: it does not (psycopg2).
    pub(crate) timeout: Option<Duration>,
    origin: Instant,
    /// The coarse clock's reading (in its 32.32 fixed-point seconds) that is [`recent`]'s zero:
    /// when the pool was built, plus [`COARSE_LAG`].
    ///
    /// [`recent`]: Settings::recent
    coarse_zero: u64,
}

/// How far behind the precise clock [`Settings::recent`] is taken: more than the kernel's coarse
/// clock's tick (1 to 10 ms), so that it never runs ahead of [`Settings::now`].
const COARSE_LAG: Duration = Duration::from_millis(20);

/// What a queued checkout receives: the lease, the connection and whether it was opened for this
/// very checkout (then it needs no vetting), or why it failed.
pub(crate) type Outcome<C, E> = Result<(Lease, C, bool), GetError<E>>;

/// What drains for queued checkouts: an outcome, or (`None`) a wake-up to claim an idle
/// connection.
pub(crate) type Outcomes<M> = Vec<(
    sanspool_core::WaiterId,
    Option<Outcome<<M as Connector>::Conn, <M as Connector>::Error>>,
)>;

/// A performed command's completion, and for a failed open why it failed (`None` inside: the
/// connector panicked).
pub(crate) type Done<C, E> = (Completion<C>, Option<Option<E>>);

/// Runs `f`, turning a panic into `None` (the panic hook has printed it already).
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

impl<M: Connector> Settings<M> {
    pub(crate) fn new(
        connector: M,
        after_connect: Option<Hook<M>>,
        before_reuse: Option<Hook<M>>,
        check_on_checkout: bool,
        timeout: Option<Duration>,
    ) -> Self {
        Settings {
            connector,
            after_connect,
            before_reuse,
            check_on_checkout,
            timeout,
            origin: Instant::now(),
            coarse_zero: coarsetime::Instant::now_without_cache_update()
                .as_u64()
                .saturating_add(coarsetime::Duration::from(COARSE_LAG).as_u64()),
        }
    }

    /// The pool's clock, cheaply (the kernel's coarse clock: a few ns against ~20 for the precise
    /// one) and a little behind: for inputs whose time no waiter depends on — a checkout served
    /// at once, a checkin nobody waits for. Idle times and lifetimes are minutes; the pool's
    /// clock never goes back, so a reading behind it is simply its latest time.
    #[inline]
    pub(crate) fn recent(&self) -> Time {
        let now = coarsetime::Instant::now_without_cache_update().as_u64();
        let since = now.saturating_sub(self.coarse_zero);
        // Fixed-point seconds to nanoseconds: whole seconds, then the fraction.
        let (secs, frac) = (since >> 32, since & 0xFFFF_FFFF);
        Time::from_nanos(secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32))
    }

    /// The pool's clock: time since the pool was built.
    pub(crate) fn now(&self) -> Time {
        self.time(Instant::now())
    }

    pub(crate) fn time(&self, at: Instant) -> Time {
        Time::from_nanos(nanos(at.saturating_duration_since(self.origin)))
    }

    /// The instant of a core time; `None` if it is beyond what `Instant` holds.
    pub(crate) fn instant(&self, t: Time) -> Option<Instant> {
        self.origin.checked_add(Duration::from_nanos(t.as_nanos()))
    }

    /// Until when a checkout that waits `wait` sleeps (found only if it parks: most checkouts are
    /// served at once); `None`: until woken (also for a deadline
    /// beyond what `Instant` holds, which nobody lives to see).
    pub(crate) fn deadline(&self, wait: Wait) -> Option<Instant> {
        match wait {
            Wait::Until(t) => self.instant(t),
            Wait::No | Wait::Forever => None,
        }
    }

    /// Connect and run the `after_connect` hook.
    fn open(&self) -> Result<M::Conn, Option<M::Error>> {
        let opened = guarded(|| {
            let mut conn = self.connector.connect()?;
            if let Some(hook) = &self.after_connect {
                if let Err(e) = hook(&mut conn) {
                    self.close(conn);
                    return Err(e);
                }
            }
            Ok(conn)
        });
        match opened {
            Some(Ok(conn)) => Ok(conn),
            Some(Err(e)) => Err(Some(e)),
            None => Err(None),
        }
    }

    /// Whether a connection taken from the pool may be handed out: `before_reuse`, then `check`
    /// when `check_on_checkout` is set.
    pub(crate) fn vet(&self, conn: &mut M::Conn) -> bool {
        guarded(|| {
            self.before_reuse.as_ref().is_none_or(|h| h(conn).is_ok())
                && (!self.check_on_checkout || self.connector.check(conn).is_ok())
        })
        .unwrap_or(false)
    }

    /// The state of a connection given back; a borrower unwinding from a panic may have left it
    /// mid-work, so it is at least reset.
    pub(crate) fn judge(&self, conn: &mut M::Conn, close: bool) -> Returned {
        if close {
            return Returned::Close;
        }
        match guarded(|| self.connector.state(conn)) {
            Some(Returned::Clean) if std::thread::panicking() => Returned::Dirty,
            Some(state) => state,
            None => Returned::Broken,
        }
    }

    pub(crate) fn close(&self, conn: M::Conn) {
        let _ = guarded(|| self.connector.close(conn));
    }

    /// How a reset, check or close ended: an error the connector says was cut off at its bound
    /// is [`Finished::Abandoned`]; any other error, or a panic (`None`), is a failure.
    fn finished(&self, result: Option<Result<(), M::Error>>) -> Finished {
        match result {
            Some(Ok(())) => Finished::Ok,
            Some(Err(e)) if guarded(|| self.connector.is_abandoned(&e)) == Some(true) => {
                Finished::Abandoned
            }
            Some(Err(_)) | None => Finished::Failed,
        }
    }

    /// Does the I/O of an open, close, reset or check.
    pub(crate) fn perform(&self, io: Io<M::Conn>) -> Done<M::Conn, M::Error> {
        let done = match io {
            Io::Open(ticket) => match self.open() {
                Ok(conn) => Completion::Opened { ticket, conn },
                Err(e) => {
                    let permanent = e
                        .as_ref()
                        .is_some_and(|e| guarded(|| self.connector.is_permanent(e)) == Some(true));
                    return (Completion::OpenFailed { ticket, permanent }, Some(e));
                }
            },
            Io::Close { ticket, conn } => {
                let outcome = self.finished(guarded(|| self.connector.close(conn)));
                Completion::Closed { ticket, outcome }
            }
            Io::Reset { ticket, mut conn } => {
                let outcome = self.finished(guarded(|| self.connector.reset(&mut conn)));
                Completion::Reset {
                    ticket,
                    conn,
                    outcome,
                }
            }
            Io::Check { ticket, mut conn } => {
                let outcome = self.finished(guarded(|| self.connector.check(&mut conn)));
                Completion::Checked {
                    ticket,
                    conn,
                    outcome,
                }
            }
        };
        (done, None)
    }
}

/// The core and what the driver remembers beside it.
pub(crate) struct Engine<M: Connector, K: Hash + Eq + Clone> {
    pub(crate) core: AllocPool<M::Conn, K>,
    /// Why the last open failed; cleared by a successful open.
    last: Option<Failure<M::Error>>,
}

impl<M: Connector, K: Hash + Eq + Clone> Engine<M, K> {
    pub(crate) fn new(config: Config) -> Result<Self, BuildError<M::Error>> {
        Ok(Engine {
            core: AllocPool::new(config).map_err(BuildError::Config)?,
            last: None,
        })
    }

    /// The error of the last failed open, if the last open failed.
    pub(crate) fn open_failure(&self) -> Option<GetError<M::Error>> {
        self.last
            .as_ref()
            .map(|_| self.error(sanspool_core::Error::OpenFailed))
    }

    /// The checkout's error for a core refusal.
    pub(crate) fn error(&self, error: sanspool_core::Error) -> GetError<M::Error> {
        GetError::from_core(error, self.last.as_ref())
    }

    /// Takes every output: I/O into `io`, checkout outcomes into `outcomes`; reports are logged.
    pub(crate) fn drain(&mut self, io: &mut impl Extend<Io<M::Conn>>, outcomes: &mut Outcomes<M>) {
        io.extend(std::iter::from_fn(|| self.core.poll_io()));
        while let Some(handoff) = self.core.poll_handoff() {
            let outcome = match handoff {
                Handoff::Grant {
                    waiter,
                    lease,
                    conn,
                    fresh,
                } => (waiter, Some(Ok((lease, conn, fresh)))),
                Handoff::Fail { waiter, error } => (waiter, Some(Err(self.error(error)))),
                // The woken checkout claims when it runs: meanwhile a running one may take it.
                Handoff::Wake { waiter } => (waiter, None),
            };
            outcomes.push(outcome);
        }
        while let Some(report) = self.core.poll_report() {
            log::warn!("sanspool: {}", report.describe(self.core.now()));
        }
    }

    /// Reports a performed command. Returns a connection the core refused (a driver bug): close it.
    #[must_use]
    pub(crate) fn report(&mut self, now: Time, done: Done<M::Conn, M::Error>) -> Option<M::Conn> {
        let (completion, failure) = done;
        match (&completion, failure) {
            (Completion::Opened { .. }, _) => self.last = None,
            (_, Some(e)) => {
                self.last = Some(match e {
                    Some(e) => Failure::Error(Arc::new(e)),
                    None => Failure::Panic,
                });
            }
            _ => {}
        }
        let refused = self.core.handle(now, completion).err()?;
        debug_assert!(false, "report refused: {}", refused.error);
        refused.conn
    }

    /// Opens `min` connections at build, psycopg2's way: the first failure is the build's error
    /// (and the pool is closed). The engine is not shared yet, so the I/O runs here.
    pub(crate) fn warm_up(&mut self, settings: &Settings<M>) -> Result<(), BuildError<M::Error>> {
        self.run_exclusive(settings, VecDeque::new())
            .map_or(Ok(()), |e| Err(BuildError::from_open(e)))
    }

    /// Closes the pool and every connection it holds, with exclusive access (at drop).
    /// `held`: connections still checked out that the pool can reach (psycopg2 handles it holds).
    pub(crate) fn shut_down(
        &mut self,
        settings: &Settings<M>,
        held: impl IntoIterator<Item = (Lease, M::Conn)>,
        pending: VecDeque<Io<M::Conn>>,
    ) {
        let now = settings.now();
        let _ = self.core.close(now);
        for (lease, conn) in held {
            let back = self.core.checkin(now, lease, None, conn, Returned::Close);
            if let Err(Rejected { conn: Some(c), .. }) = back {
                settings.close(c);
            }
        }
        self.run_exclusive(settings, pending);
    }

    /// Runs `tasks` and every queued command to the end with exclusive access. A failed open
    /// closes the pool and is returned; opens still pending after a close are cancelled.
    fn run_exclusive(
        &mut self,
        settings: &Settings<M>,
        mut tasks: VecDeque<Io<M::Conn>>,
    ) -> Option<GetError<M::Error>> {
        let mut error = None;
        loop {
            self.drain(&mut tasks, &mut Vec::new());
            let Some(task) = tasks.pop_front() else {
                return error;
            };
            let now = settings.now();
            if let (Io::Open(ticket), true) = (&task, self.core.is_closed()) {
                let ticket = *ticket;
                let permanent = false;
                let _ = self
                    .core
                    .handle(now, Completion::OpenFailed { ticket, permanent });
                continue;
            }
            let done = settings.perform(task);
            let failed = matches!(done.0, Completion::OpenFailed { .. });
            if let Some(conn) = self.report(now, done) {
                settings.close(conn);
            }
            if failed && error.is_none() {
                error = Some(self.error(sanspool_core::Error::OpenFailed));
                let _ = self.core.close(now);
            }
        }
    }
}

/// Whole nanoseconds, saturating (the core's `Time` is a `u64` of them).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
