//! The pool's settings, and its construction.

use crate::{BuildError, Connector, Events, Pool};
use futures_util::future::BoxFuture;
use sanspool_core::{Config, Fairness, IdleOrder};
use sanspool_kit::{Hook, Settings};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

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
    connector: M,
    config: Config,
    timeout: Option<Duration>,
    check_on_checkout: bool,
    after_connect: Option<Hook<M::Conn, M::Error>>,
    before_reuse: Option<Hook<M::Conn, M::Error>>,
    events: Option<Arc<dyn Events>>,
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
        Builder {
            connector,
            config: Config {
                idle_order: IdleOrder::Fifo,
                fairness: Fairness::Strict,
                ..Config::new(1, 10)
            },
            timeout: Some(Duration::from_secs(30)),
            check_on_checkout: false,
            after_connect: None,
            before_reuse: None,
            events: None,
        }
    }

    sanspool_core::builder_settings!();

    /// Runs on every new connection; an error makes the open fail (and the connection is
    /// closed). Write it as `|conn| Box::pin(async move { ... })`.
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(&'a mut M::Conn) -> BoxFuture<'a, Result<(), M::Error>>
            + Send
            + Sync
            + 'static,
    {
        self.after_connect = Some(Hook::Async(Box::new(hook)));
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
        self.before_reuse = Some(Hook::Async(Box::new(hook)));
        self
    }

    /// Gives every [`Event`](crate::Event) of the pool to `events` (r2d2's `event_handler`): a
    /// connection's acquire and release, each checkout and checkin, each checkout's timeout.
    /// [`LogEvents`](crate::LogEvents) logs them. See [`Events`] for where it runs.
    pub fn events(mut self, events: impl Events) -> Self {
        self.events = Some(Arc::new(events));
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
        let settings = Settings {
            after_connect: self.after_connect,
            before_reuse: self.before_reuse,
            check_on_checkout: self.check_on_checkout,
            ..Settings::new(self.connector, self.timeout)
        };
        let config = settings.config(self.config);
        Pool::build(settings, config, self.events).await
    }
}

impl<M: Connector + fmt::Debug> fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("connector", &self.connector)
            .field("config", &self.config)
            .field("timeout", &self.timeout)
            .field("check_on_checkout", &self.check_on_checkout)
            .field("after_connect", &self.after_connect.is_some())
            .field("before_reuse", &self.before_reuse.is_some())
            .field("events", &self.events.is_some())
            .finish()
    }
}
