//! The pools' settings, and their construction.

use crate::driver::{Hook, Settings};
use crate::{Connector, PersistentPool, PoolError, SimplePool, ThreadedPool};
use sanspool_core::{Config, IdleOrder, KeepIdle};
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Settings for a pool of `M`'s connections, checked out under keys of type `K` (see
/// [`keys`](Builder::keys)).
///
/// Defaults: `min` 1, `max` 10, checkouts wait up to 30 s, up to 1 024 waiters, most recently
/// returned connection first, every returned connection kept, no lifetime limits, open retries
/// backing off from 100 ms to 10 s, no check on checkout.
pub struct Builder<M: Connector, K = u64> {
    connector: M,
    config: Config,
    timeout: Option<Duration>,
    check_on_checkout: bool,
    after_connect: Option<Hook<M>>,
    before_reuse: Option<Hook<M>>,
    keys: PhantomData<fn() -> K>,
}

/// Each pool's tag, so that one pool refuses another's connections.
static NEXT_TAG: AtomicU32 = AtomicU32::new(1);

impl<M: Connector> Builder<M> {
    /// Settings for a pool of `connector`'s connections, with the defaults.
    pub fn new(connector: M) -> Self {
        Builder {
            connector,
            config: Config::new(1, 10),
            timeout: Some(Duration::from_secs(30)),
            check_on_checkout: false,
            after_connect: None,
            before_reuse: None,
            keys: PhantomData,
        }
    }
}

impl<M: Connector, K> Builder<M, K> {
    /// Connections kept open even when unused; opened by the build.
    pub fn min(mut self, n: usize) -> Self {
        self.config.min = n;
        self
    }

    /// The most connections at once (counting those being opened or closed).
    pub fn max(mut self, n: usize) -> Self {
        self.config.max = n;
        self
    }

    /// How long a checkout waits when none is idle and the pool is at `max`. `None`: it does not
    /// wait, and fails with psycopg2's "connection pool exhausted". Ignored by the
    /// [`SimplePool`], which never waits.
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into();
        self
    }

    /// The most checkouts waiting at once; more fail with [`PoolError::TooManyWaiters`].
    pub fn max_waiting(mut self, n: usize) -> Self {
        self.config.max_waiting = n;
        self
    }

    /// Connections older than this are closed (when idle or returned) and replaced.
    pub fn max_lifetime(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.config.max_lifetime = d.into();
        self
    }

    /// Each connection's lifetime is shortened by a random part of this, so that connections
    /// opened together do not expire together.
    pub fn lifetime_jitter(mut self, d: Duration) -> Self {
        self.config.lifetime_jitter = d;
        self
    }

    /// Idle connections unused for this long are closed while more than `min` are open.
    pub fn max_idle(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.config.max_idle = d.into();
        self
    }

    /// Which idle connection a checkout gets.
    pub fn idle_order(mut self, order: IdleOrder) -> Self {
        self.config.idle_order = order;
        self
    }

    /// How many returned connections stay idle.
    pub fn keep_idle(mut self, keep: KeepIdle) -> Self {
        self.config.keep_idle = keep;
        self
    }

    /// The delay before retrying after a failed open, doubling per failure from `initial` to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max;
        self
    }

    /// Whether a connection taken from the idle set is checked ([`Connector::check`], a round trip)
    /// before it is handed out. One that fails is closed and the next tried. Off by default.
    pub fn check_on_checkout(mut self, check: bool) -> Self {
        self.check_on_checkout = check;
        self
    }

    /// Runs on every new connection; an error makes the open fail (and the connection is closed).
    pub fn after_connect<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut M::Conn) -> Result<(), M::Error> + Send + Sync + 'static,
    {
        self.after_connect = Some(Box::new(hook));
        self
    }

    /// Runs on a connection taken from the idle set before it is handed out; an error closes it
    /// and the next is tried.
    pub fn before_reuse<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut M::Conn) -> Result<(), M::Error> + Send + Sync + 'static,
    {
        self.before_reuse = Some(Box::new(hook));
        self
    }

    /// psycopg2's behaviour: checkouts never wait (at `max`: "connection pool exhausted"), a
    /// returned connection is kept only while fewer than `min` are idle, and `min` is opened at
    /// build and never refilled (connections open afterwards only for checkouts).
    pub fn psycopg2(mut self) -> Self {
        self.timeout = None;
        self.config.keep_idle = KeepIdle::UpToMin;
        self.config.refill = false;
        self
    }

    /// Checkouts keyed by `K2` (psycopg2's keys may be anything hashable).
    pub fn keys<K2>(self) -> Builder<M, K2> {
        Builder {
            connector: self.connector,
            config: self.config,
            timeout: self.timeout,
            check_on_checkout: self.check_on_checkout,
            after_connect: self.after_connect,
            before_reuse: self.before_reuse,
            keys: PhantomData,
        }
    }

    fn parts(self) -> (Settings<M>, Config) {
        let mut config = self.config;
        config.tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
        config.seed = RandomState::new().hash_one(config.tag);
        let settings = Settings::new(
            self.connector,
            self.after_connect,
            self.before_reuse,
            self.check_on_checkout,
            self.timeout,
        );
        (settings, config)
    }

    /// A [`SimplePool`], with `min` connections open. The first failed open is the error.
    pub fn build_simple(self) -> Result<SimplePool<M, K>, PoolError<M::Error>>
    where
        K: Hash + Eq + Clone,
    {
        let (settings, config) = self.parts();
        SimplePool::build(settings, config)
    }

    /// A [`ThreadedPool`], with `min` connections open. The first failed open is the error.
    pub fn build_threaded(self) -> Result<ThreadedPool<M, K>, PoolError<M::Error>>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        let (settings, config) = self.parts();
        ThreadedPool::build(settings, config)
    }

    /// A [`PersistentPool`], with `min` connections open. The first failed open is the error.
    pub fn build_persistent(self) -> Result<PersistentPool<M>, PoolError<M::Error>> {
        let (settings, config) = self.parts();
        ThreadedPool::build(settings, config).map(PersistentPool::new)
    }
}

impl<M: Connector + fmt::Debug, K> fmt::Debug for Builder<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("connector", &self.connector)
            .field("config", &self.config)
            .field("timeout", &self.timeout)
            .field("check_on_checkout", &self.check_on_checkout)
            .field("after_connect", &self.after_connect.is_some())
            .field("before_reuse", &self.before_reuse.is_some())
            .finish()
    }
}
