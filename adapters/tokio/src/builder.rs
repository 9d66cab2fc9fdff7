//! The pool's settings, and its construction.

use crate::{BuildError, Connector, Pool};
use futures_util::future::BoxFuture;
use sanspool_core::{Config, Fairness, IdleOrder};
use sanspool_kit::{Draft, Hook};
use std::fmt;

/// Settings for a pool of `M`'s connections: the blocking pool's settings, with async hooks.
///
/// Defaults: `min` 1, `max` 10, checkouts wait up to 30 s, no bound on how many wait
/// (`max_waiting`), every returned connection kept, no lifetime limits, open retries backing off
/// from 100 ms to 1 s, no check on
/// checkout; and two that differ from the blocking pool's, each measured (`docs/tuning.md`):
/// - [`IdleOrder::Fifo`]: the least recently returned connection first, as deadpool and bb8 do:
///   consecutive checkouts of one task go to different server processes. The price: a steadily
///   used pool never has a connection idle for `max_idle`, so it does not shrink back to `min`;
///   choose [`IdleOrder::Lifo`] for that.
/// - [`Fairness::Strict`]: every returned connection goes to the oldest waiter. Barging saves a
///   blocked thread a context switch; a waiting task costs only a cheap task switch, while every
///   wake that loses the race costs a poll, a lock and a wake-up.
///
/// [`IdleOrder::Fifo`]: sanspool_core::IdleOrder::Fifo
/// [`IdleOrder::Lifo`]: sanspool_core::IdleOrder::Lifo
/// [`Fairness::Strict`]: sanspool_core::Fairness::Strict
pub struct Builder<M: Connector> {
    draft: Draft<M>,
}

impl<M: Connector> Pool<M> {
    /// Settings for a pool of `connector`'s connections ([`Builder::new`]).
    pub fn builder(connector: M) -> Builder<M> {
        Builder::new(connector)
    }
}

impl<M: Connector> Builder<M> {
    /// Settings for a pool of `connector`'s connections, with the defaults.
    pub fn new(connector: M) -> Self {
        let config = Config {
            idle_order: IdleOrder::Fifo,
            fairness: Fairness::Strict,
            ..Config::new(1, 10)
        };
        Builder {
            draft: Draft::new(connector, config),
        }
    }

    sanspool_kit::builder_settings!();

    /// Runs on every new connection; an error makes the open fail (and the connection is
    /// closed). Write it as `|conn| Box::pin(async move { ... })`.
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(&'a mut M::Conn) -> BoxFuture<'a, Result<(), M::Error>>
            + Send
            + Sync
            + 'static,
    {
        self.draft.settings.after_connect = Some(Hook::Async(Box::new(hook)));
        self
    }

    /// Runs on a connection taken from the idle set before it is handed out; an error closes it
    /// and the next is tried.
    pub fn before_reuse<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(&'a mut M::Conn) -> BoxFuture<'a, Result<(), M::Error>>
            + Send
            + Sync
            + 'static,
    {
        self.draft.settings.before_reuse = Some(Hook::Async(Box::new(hook)));
        self
    }

    /// The pool, once `min` connections are open (r2d2's and bb8's build), on the current tokio
    /// runtime: its tasks (opens, resets, closes, maintenance) are spawned there.
    ///
    /// A failed open is retried with backoff until the build's bound — the checkout timeout, at
    /// least 1 s; 30 s without one — and the error then is [`BuildError::Timeout`] with the last
    /// open's error; an open that fails for good ([`Connector::is_permanent`]: a bad password,
    /// no such database) or panics is the error at once. Without refills
    /// ([`psycopg2`](Builder::psycopg2)) nothing would retry: the first failed open is the error.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn build(self) -> Result<Pool<M>, BuildError<M::Error>> {
        let (settings, config, events) = self.draft.finish();
        Pool::build(settings, config, events).await
    }
}

impl<M: Connector + fmt::Debug> fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.draft.fmt(f)
    }
}
