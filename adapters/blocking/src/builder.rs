//! The pools' settings, and their construction.

use crate::connector::Blocking;
use crate::pool::Start;
use crate::{BuildError, Connector, Key, Pool};
use sanspool_core::Config;
use sanspool_kit::{Draft, Hook};
use std::fmt;
use std::marker::PhantomData;

/// Settings for a pool of `M`'s connections, checked out under keys of type `K` (see
/// [`keys`](Builder::keys)).
///
/// Defaults: `min` 1, `max` 10, checkouts wait up to 30 s, no bound on how many wait (`max_waiting`), most recently
/// returned connection first, every returned connection kept, no lifetime limits, open retries
/// backing off from 100 ms to 1 s, no check on checkout. The
/// [`SimpleConnectionPool`](crate::psycopg2::SimpleConnectionPool) never waits: it ignores
/// `timeout`.
///
/// [`build`](Builder::build) makes a [`Pool`], waiting for `min` connections as r2d2's build
/// does; `build_simple`, `build_threaded` and `build_persistent` make psycopg2's pools (see
/// [`psycopg2`](crate::psycopg2)), failing on the first failed open as psycopg2's do.
pub struct Builder<M: Connector, K = u64> {
    draft: Draft<Blocking<M>>,
    keys: PhantomData<fn() -> K>,
}

impl<M: Connector> Pool<M> {
    /// A pool of `connector`'s connections with the [`Builder`]'s defaults (r2d2's `Pool::new`).
    pub fn new(connector: M) -> Result<Self, BuildError<M::Error>> {
        Builder::new(connector).build()
    }

    /// Settings for a pool of `connector`'s connections.
    pub fn builder(connector: M) -> Builder<M> {
        Builder::new(connector)
    }
}

impl<M: Connector> Builder<M> {
    /// Settings for a pool of `connector`'s connections, with the defaults.
    pub fn new(connector: M) -> Self {
        Builder {
            draft: Draft::new(Blocking(connector), Config::new(1, 10)),
            keys: PhantomData,
        }
    }
}

impl<M: Connector, K> Builder<M, K> {
    sanspool_kit::builder_settings!();

    /// Runs on every new connection; an error makes the open fail (and the connection is closed).
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut M::Conn) -> Result<(), M::Error> + Send + Sync + 'static,
    {
        self.draft.settings.after_connect = Some(Hook::Sync(Box::new(hook)));
        self
    }

    /// Runs on a connection taken from the idle set before it is handed out; an error closes it
    /// and the next is tried.
    pub fn before_reuse<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut M::Conn) -> Result<(), M::Error> + Send + Sync + 'static,
    {
        self.draft.settings.before_reuse = Some(Hook::Sync(Box::new(hook)));
        self
    }

    /// Checkouts keyed by `K2` (psycopg2's keys may be anything hashable).
    pub fn keys<K2>(self) -> Builder<M, K2> {
        Builder {
            draft: self.draft,
            keys: PhantomData,
        }
    }

    /// The pool, started as `start` says.
    pub(crate) fn start(self, start: Start) -> Result<Pool<M, K>, BuildError<M::Error>>
    where
        K: Key,
    {
        let mut draft = self.draft;
        // Inline, one thread: nobody else could give a connection back, so no checkout waits.
        if start == Start::Inline {
            draft.settings.timeout = None;
        }
        let (settings, config, events) = draft.finish();
        Pool::start(settings, config, events, start)
    }

    /// A [`Pool`], once `min` connections are open (r2d2's build). A failed open is retried
    /// with backoff until the build's bound — the checkout timeout, at least 1 s; 30 s without
    /// one — and the error then is [`BuildError::Timeout`] with the last open's error; an open
    /// that fails for good ([`Connector::is_permanent`]: a bad password, no such database) or
    /// panics is the error at once. Without refills ([`psycopg2`](Builder::psycopg2)) nothing
    /// would retry: the first failed open is the error.
    pub fn build(self) -> Result<Pool<M, K>, BuildError<M::Error>>
    where
        K: Key,
    {
        let start = if self.draft.config.refill {
            Start::Retrying
        } else {
            Start::FirstFailure
        };
        self.start(start)
    }
}

impl<M: Connector + fmt::Debug, K> fmt::Debug for Builder<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.draft.fmt(f)
    }
}
