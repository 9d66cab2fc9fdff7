//! [`Settings`]: what a pool does I/O with, fixed at build — the connector, the hooks, the
//! checkout timeout, the clock — and the I/O itself: [`Settings::perform`] turns one [`Io`] into
//! its [`Completion`]. Every call into the connector or a hook is guarded: a panic counts as a
//! failure (the connection is closed, or the open reported failed), so the pool's bookkeeping
//! stays whole.

use crate::{Clock, Connector, Hook};
use futures_util::FutureExt;
use sanspool_core::{Completion, Finished, Io, Returned};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// What a pool does I/O with.
pub struct Settings<M: Connector> {
    /// The connector.
    pub connector: M,
    /// Runs on every new connection; an error fails the open.
    pub after_connect: Option<Hook<M::Conn, M::Error>>,
    /// Runs on a connection taken from the idle set before it is handed out; an error closes it.
    pub before_reuse: Option<Hook<M::Conn, M::Error>>,
    /// Whether a connection taken from the idle set is checked ([`Connector::check`]) first.
    pub check_on_checkout: bool,
    /// How long a checkout waits; `None`: it does not (psycopg2).
    pub timeout: Option<Duration>,
    /// The pool's clock.
    pub clock: Clock,
}

/// A performed I/O's completion and, for a failed open, why it failed (`Some(None)`: it panicked).
pub type Done<C, E> = (Completion<C>, Option<Option<E>>);

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

    /// Connect and run `after_connect`; `Err(None)`: it panicked.
    async fn open(&self) -> Result<M::Conn, Option<M::Error>> {
        let opened = guarded_async(async {
            let mut conn = self.connector.connect().await?;
            if let Some(hook) = &self.after_connect {
                if let Err(e) = hook.run(&mut conn).await {
                    self.close(conn).await;
                    return Err(e);
                }
            }
            Ok(conn)
        })
        .await;
        match opened {
            Some(Ok(conn)) => Ok(conn),
            Some(Err(e)) => Err(Some(e)),
            None => Err(None),
        }
    }

    /// Whether connections taken from the idle set are vetted at all.
    pub fn vets(&self) -> bool {
        self.before_reuse.is_some() || self.check_on_checkout
    }

    /// Whether a connection taken from the idle set may be handed out: `before_reuse`, then the
    /// check when `check_on_checkout` is set.
    pub async fn vet(&self, conn: &mut M::Conn) -> bool {
        guarded_async(async {
            if let Some(hook) = &self.before_reuse {
                if hook.run(conn).await.is_err() {
                    return false;
                }
            }
            !self.check_on_checkout || self.connector.check(conn).await.is_ok()
        })
        .await
        .unwrap_or(false)
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
                        .is_some_and(|e| guarded(|| self.connector.is_permanent(e)) == Some(true));
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
