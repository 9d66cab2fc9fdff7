//! The engine the three pools share: the core state machine, and the I/O its commands ask for.
//!
//! A pool feeds an input to [`Engine::core`], then [`drains`](Engine::drain) the commands in the
//! same critical section: outcomes for queued checkouts (grants, failures) are delivered there —
//! they are only hand-offs — and the I/O ([`Task`]) is collected. The lock is released, the tasks
//! are [`performed`](Settings::perform), and each result is [`reported`](Engine::report) back
//! under the lock, with a new drain. So no command is ever left queued between critical sections,
//! and no I/O ever runs under the lock.

use crate::error::Failure;
use crate::{Connector, PoolError};
use sanspool_core::{
    AllocPool, Command, Config, Lease, Rejected, Returned, Ticket, Time, Wait, WaiterId,
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
}

/// I/O the core asked for.
pub(crate) enum Task<C> {
    Open(Ticket),
    Close(Ticket, C),
    Reset(Ticket, C),
    Check(Ticket, C),
}

/// The result of a [`Task`], to report to the core.
pub(crate) enum Done<C, E> {
    Opened(Ticket, C),
    /// `None`: the connector panicked.
    OpenFailed(Ticket, Option<E>),
    Closed(Ticket),
    /// A reset or a check: whether the connection is fit for service.
    Reset(Ticket, C, bool),
    /// A check (counted apart by `check()`).
    Checked(Ticket, C, bool),
}

/// What a queued checkout receives.
pub(crate) enum Outcome<C, E> {
    Granted {
        lease: Lease,
        conn: C,
        /// Opened for this very checkout: no need to vet it.
        fresh: bool,
    },
    Failed(PoolError<E>),
}

/// Outcomes drained for queued checkouts.
pub(crate) type Outcomes<M> = Vec<(
    WaiterId,
    Outcome<<M as Connector>::Conn, <M as Connector>::Error>,
)>;

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
        }
    }

    /// The pool's clock: time since the pool was built.
    pub(crate) fn now(&self) -> Time {
        self.time(Instant::now())
    }

    pub(crate) fn time(&self, at: Instant) -> Time {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        Time::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The instant of a core time; `None` if it is beyond what `Instant` holds.
    pub(crate) fn instant(&self, t: Time) -> Option<Instant> {
        self.origin.checked_add(Duration::from_nanos(t.as_nanos()))
    }

    /// How a checkout starting now may wait, and until when.
    pub(crate) fn wait(&self) -> (Wait, Option<Instant>) {
        match self.timeout {
            None => (Wait::No, None),
            Some(d) => match Instant::now().checked_add(d) {
                Some(deadline) => (Wait::Until(self.time(deadline)), Some(deadline)),
                None => (Wait::Forever, None),
            },
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

    /// Does the I/O of a task.
    pub(crate) fn perform(&self, task: Task<M::Conn>) -> Done<M::Conn, M::Error> {
        match task {
            Task::Open(t) => match self.open() {
                Ok(conn) => Done::Opened(t, conn),
                Err(e) => Done::OpenFailed(t, e),
            },
            Task::Close(t, conn) => {
                self.close(conn);
                Done::Closed(t)
            }
            Task::Reset(t, mut conn) => {
                let ok = guarded(|| {
                    self.connector.reset(&mut conn).is_ok()
                        && self.connector.state(&mut conn) == Returned::Clean
                });
                Done::Reset(t, conn, ok == Some(true))
            }
            Task::Check(t, mut conn) => {
                let ok = guarded(|| self.connector.check(&mut conn).is_ok());
                Done::Checked(t, conn, ok == Some(true))
            }
        }
    }
}

/// The core and what the driver remembers beside it.
pub(crate) struct Engine<M: Connector, K: Hash + Eq + Clone> {
    pub(crate) core: AllocPool<M::Conn, K>,
    /// Why the last open failed; cleared by a successful open.
    last: Option<Failure<M::Error>>,
    /// The slot just opened: a grant of it in the next drain is of a fresh connection.
    fresh: Option<usize>,
}

impl<M: Connector, K: Hash + Eq + Clone> Engine<M, K> {
    pub(crate) fn new(config: Config) -> Result<Self, PoolError<M::Error>> {
        Ok(Engine {
            core: AllocPool::new(config).map_err(PoolError::Config)?,
            last: None,
            fresh: None,
        })
    }

    /// The pool's error for a core error.
    pub(crate) fn error(&self, error: sanspool_core::Error) -> PoolError<M::Error> {
        PoolError::from_core(error, self.last.as_ref())
    }

    /// Takes every queued command: I/O into `tasks`, checkout outcomes into `outcomes`.
    pub(crate) fn drain(
        &mut self,
        tasks: &mut impl Extend<Task<M::Conn>>,
        outcomes: &mut Outcomes<M>,
    ) {
        while let Some(cmd) = self.core.poll_command() {
            match cmd {
                Command::Open(t) => tasks.extend([Task::Open(t)]),
                Command::Close { ticket, conn } => tasks.extend([Task::Close(ticket, conn)]),
                Command::Reset { ticket, conn } => tasks.extend([Task::Reset(ticket, conn)]),
                Command::Check { ticket, conn } => tasks.extend([Task::Check(ticket, conn)]),
                Command::Grant {
                    waiter,
                    lease,
                    conn,
                } => {
                    let fresh = self.fresh == Some(lease.slot());
                    outcomes.push((waiter, Outcome::Granted { lease, conn, fresh }));
                }
                Command::Fail { waiter, error } => {
                    outcomes.push((waiter, Outcome::Failed(self.error(error))));
                }
                Command::Ready => {}
            }
        }
        self.fresh = None;
    }

    /// Reports a task's result. Returns a connection the core refused (a driver bug): close it.
    #[must_use]
    pub(crate) fn report(&mut self, now: Time, done: Done<M::Conn, M::Error>) -> Option<M::Conn> {
        let refused = match done {
            Done::Opened(t, conn) => {
                self.last = None;
                self.fresh = Some(t.slot());
                self.core.handle_opened(now, t, conn).err()
            }
            Done::OpenFailed(t, e) => {
                self.last = Some(match e {
                    Some(e) => Failure::Error(Arc::new(e)),
                    None => Failure::Panic,
                });
                let reported = self.core.handle_open_failed(now, t);
                debug_assert!(reported.is_ok(), "open report refused: {reported:?}");
                None
            }
            Done::Closed(t) => {
                let reported = self.core.handle_closed(now, t);
                debug_assert!(reported.is_ok(), "close report refused: {reported:?}");
                None
            }
            Done::Reset(t, conn, ok) | Done::Checked(t, conn, ok) => {
                self.core.handle_reset(now, t, conn, ok).err()
            }
        };
        let refused = refused?;
        debug_assert!(false, "report refused: {}", refused.error);
        refused.conn
    }

    /// Opens `min` connections at build, psycopg2's way: the first failure is the build's error
    /// (and the pool is closed). The engine is not shared yet, so the I/O runs here.
    pub(crate) fn warm_up(&mut self, settings: &Settings<M>) -> Result<(), PoolError<M::Error>> {
        self.run_exclusive(settings).map_or(Ok(()), Err)
    }

    /// Closes the pool and every connection it holds, with exclusive access (at drop).
    /// `held`: connections still checked out that the pool can reach (psycopg2 handles it holds).
    pub(crate) fn shut_down(
        &mut self,
        settings: &Settings<M>,
        held: impl IntoIterator<Item = (Lease, M::Conn)>,
    ) {
        let now = settings.now();
        let _ = self.core.close(now);
        for (lease, conn) in held {
            let back = self
                .core
                .handle_checkin(now, lease, None, conn, Returned::Close);
            if let Err(Rejected { conn: Some(c), .. }) = back {
                settings.close(c);
            }
        }
        self.run_exclusive(settings);
    }

    /// Runs queued tasks to the end with exclusive access. A failed open closes the pool and is
    /// returned; opens still pending after a close are cancelled.
    fn run_exclusive(&mut self, settings: &Settings<M>) -> Option<PoolError<M::Error>> {
        let mut tasks = VecDeque::new();
        let mut error = None;
        loop {
            self.drain(&mut tasks, &mut Vec::new());
            let Some(task) = tasks.pop_front() else {
                return error;
            };
            let now = settings.now();
            if let (Task::Open(t), true) = (&task, self.core.is_closed()) {
                let _ = self.core.handle_open_failed(now, *t);
                continue;
            }
            let done = settings.perform(task);
            let failed = matches!(done, Done::OpenFailed(..));
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
