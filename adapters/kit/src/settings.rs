//! [`Settings`]: what a pool does I/O with, fixed at build — the connector, the hooks, the
//! checkout timeout, the clock — and the I/O itself: [`Settings::perform`] turns one [`Io`] into
//! its [`Completion`]. Every call into the connector or a hook is guarded: a panic counts as a
//! failure (the connection is closed, or the open reported failed), so the pool's bookkeeping
//! stays whole.

use crate::{Clock, Connector, Hook, Panic};
use futures_util::FutureExt;
use sanspool_core::{Completion, Config, Finished, Io, Liveness, Returned};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// What a pool does I/O with.
pub struct Settings<M: Connector> {
    /// The connector.
    pub connector: M,
    /// Runs on every new connection; an error fails the open.
    pub after_connect: Option<Hook<M::Conn, M::Error>>,
    /// Runs on a connection taken from the idle set before it is handed out (in its vet); an
    /// error closes it.
    pub before_reuse: Option<Hook<M::Conn, M::Error>>,
    /// Whether a connection taken from the idle set is checked ([`Connector::check`]) in its
    /// vet.
    pub check_on_checkout: bool,
    /// How long a checkout waits; `None`: it does not (psycopg2).
    pub timeout: Option<Duration>,
    /// The pool's clock.
    pub clock: Clock,
}

/// A performed I/O's completion and, for a failed open, why it failed (the connector's error, or
/// what it said when it panicked).
pub type Done<C, E> = (Completion<C>, Option<Result<E, Panic>>);

/// [`Settings::perform_at_once`]'s answer: the I/O done on the spot, or handed back.
pub type AtOnce<C, E> = Result<Done<C, E>, Io<C>>;

/// `f`'s result, or `None` if it panicked (the panic hook has printed it already).
pub fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

/// `fut`'s output, or `None` if polling it panicked.
async fn guarded_async<T>(fut: impl Future<Output = T>) -> Option<T> {
    AssertUnwindSafe(fut).catch_unwind().await.ok()
}

impl<M: Connector> Settings<M> {
    /// Settings with no hooks, no check on checkout, checkouts waiting up to `timeout`; the
    /// clock starts now.
    pub fn new(connector: M, timeout: Option<Duration>) -> Self {
        Settings {
            connector,
            after_connect: None,
            before_reuse: None,
            check_on_checkout: false,
            timeout,
            clock: Clock::start(),
        }
    }

    /// Connect and run `after_connect`; `Err(Err(_))`: it panicked.
    async fn open(&self) -> Result<M::Conn, Result<M::Error, Panic>> {
        let opened = AssertUnwindSafe(async {
            let mut conn = self.connector.connect().await?;
            if let Some(hook) = &self.after_connect {
                if let Err(e) = hook.run(&mut conn).await {
                    self.close(conn).await;
                    return Err(e);
                }
            }
            Ok(conn)
        })
        .catch_unwind()
        .await;
        match opened {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(Ok(e)),
            Err(payload) => Err(Err(Panic::of(&*payload))),
        }
    }

    /// The core's configuration for these settings: `config` with a tag of its own (see
    /// [`tagged`](crate::tagged)), vetting idle connections if there is anything to vet them
    /// with (a probe, a hook, a check on checkout).
    pub fn config(&self, config: Config) -> Config {
        Config {
            vet: self.vets(),
            ..crate::tagged(config)
        }
    }

    fn vets(&self) -> bool {
        self.connector.probes() || self.before_reuse.is_some() || self.check_on_checkout
    }

    /// The connector's probe, guarded (a panic says dead); `Alive` for a connector without one.
    fn probe(&self, conn: &mut M::Conn) -> Liveness {
        if !self.connector.probes() {
            return Liveness::Alive;
        }
        guarded(|| self.connector.probe(conn)).unwrap_or(Liveness::Dead)
    }

    /// An idle connection's vet ([`Io::Vet`]): the probe (a dead one fails), `before_reuse`,
    /// then a check (a round trip) when `check_on_checkout` is set or the probe was unsure.
    async fn vet(&self, conn: &mut M::Conn) -> Finished {
        let probed = self.probe(conn);
        if probed == Liveness::Dead {
            return Finished::Failed;
        }
        if let Some(hook) = &self.before_reuse {
            if guarded_async(hook.run(conn))
                .await
                .is_none_or(|r| r.is_err())
            {
                return Finished::Failed;
            }
        }
        if probed == Liveness::Unsure || self.check_on_checkout {
            return self.finished(guarded_async(self.connector.check(conn)).await);
        }
        Finished::Ok
    }

    /// Whether [`perform_at_once`](Self::perform_at_once) tries a vet on the spot: when only
    /// the probe decides it (no hook, no check). Unless the probe is unsure, its report follows
    /// at once.
    pub fn vets_at_once(&self) -> bool {
        self.before_reuse.is_none() && !self.check_on_checkout
    }

    /// Performs `io` on the spot if it needs no waiting at all — a vet that the probe decides
    /// (no hook, no check) — else hands it back to be performed where I/O runs. A vet decided
    /// here costs a look at a socket, not a task or a thread.
    pub fn perform_at_once(&self, io: Io<M::Conn>) -> AtOnce<M::Conn, M::Error> {
        match io {
            Io::Vet { ticket, mut conn } if self.vets_at_once() => {
                let outcome = match self.probe(&mut conn) {
                    Liveness::Alive => Finished::Ok,
                    Liveness::Dead => Finished::Failed,
                    Liveness::Unsure => return Err(Io::Vet { ticket, conn }),
                };
                let done = Completion::Checked {
                    ticket,
                    conn,
                    outcome,
                };
                Ok((done, None))
            }
            io => Err(io),
        }
    }

    /// The state of a connection given back, without I/O; `close`: its borrower asks for it to
    /// be closed. A borrower unwinding from a panic may have left it mid-work, so it is at least
    /// reset; a judgment that panics says broken.
    pub fn judge(&self, conn: &mut M::Conn, close: bool) -> Returned {
        if close {
            return Returned::Close;
        }
        match guarded(|| self.connector.state(conn)) {
            Some(Returned::Clean) if std::thread::panicking() => Returned::Dirty,
            Some(state) => state,
            None => Returned::Broken,
        }
    }

    /// Closes a connection the pool does not take, whatever happens.
    pub async fn close(&self, conn: M::Conn) {
        let _ = guarded_async(self.connector.close(conn)).await;
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

    /// Does one I/O: its completion, and for a failed open why it failed.
    pub async fn perform(&self, io: Io<M::Conn>) -> Done<M::Conn, M::Error> {
        let done = match io {
            Io::Open(ticket) => match self.open().await {
                Ok(conn) => Completion::Opened { ticket, conn },
                Err(e) => {
                    let permanent = e
                        .as_ref()
                        .is_ok_and(|e| guarded(|| self.connector.is_permanent(e)) == Some(true));
                    return (Completion::OpenFailed { ticket, permanent }, Some(e));
                }
            },
            Io::Close { ticket, conn } => {
                let outcome = self.finished(guarded_async(self.connector.close(conn)).await);
                Completion::Closed { ticket, outcome }
            }
            Io::Reset { ticket, mut conn } => {
                let outcome = self.finished(guarded_async(self.connector.reset(&mut conn)).await);
                Completion::Reset {
                    ticket,
                    conn,
                    outcome,
                }
            }
            Io::Check { ticket, mut conn } => {
                let outcome = self.finished(guarded_async(self.connector.check(&mut conn)).await);
                Completion::Checked {
                    ticket,
                    conn,
                    outcome,
                }
            }
            Io::Vet { ticket, mut conn } => {
                let outcome = self.vet(&mut conn).await;
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

impl<M: Connector + std::fmt::Debug> std::fmt::Debug for Settings<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("connector", &self.connector)
            .field("timeout", &self.timeout)
            .field("check_on_checkout", &self.check_on_checkout)
            .field("after_connect", &self.after_connect.is_some())
            .field("before_reuse", &self.before_reuse.is_some())
            .finish_non_exhaustive()
    }
}
