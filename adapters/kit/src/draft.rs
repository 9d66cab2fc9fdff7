//! What a driver's builder holds until `build` ([`Draft`]), and the settings every builder
//! offers, written once: [`builder_settings!`](crate::builder_settings) expands them inside a
//! builder's `impl` block.

use crate::{Connector, Events, Settings};
use sanspool_core::Config;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A pool in the making: the core's configuration, the I/O settings and the event hook, as a
/// builder sets them.
pub struct Draft<M: Connector> {
    /// The core's configuration (finished by [`Settings::config`] at build).
    pub config: Config,
    /// The connector, the hooks, the checkout timeout.
    pub settings: Settings<M>,
    /// The event hook, if any.
    pub events: Option<Arc<dyn Events>>,
}

impl<M: Connector> Draft<M> {
    /// A draft over `connector` with `config`, checkouts waiting up to 30 s, no hooks.
    pub fn new(connector: M, config: Config) -> Self {
        Draft {
            config,
            settings: Settings::new(connector, Some(Duration::from_secs(30))),
            events: None,
        }
    }

    /// What a build takes: the settings, the core's configuration for them, the event hook.
    pub fn finish(self) -> (Settings<M>, Config, Option<Arc<dyn Events>>) {
        let config = self.settings.config(self.config);
        (self.settings, config, self.events)
    }
}

impl<M: Connector + fmt::Debug> fmt::Debug for Draft<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("settings", &self.settings)
            .field("events", &self.events.is_some())
            .finish()
    }
}

/// Expands the shared builder settings (`min`, `min_idle`, `max`, `timeout`, `max_waiting`,
/// `max_lifetime`, `lifetime_jitter`, `max_idle`, `idle_order`, `keep_idle`, `fairness`,
/// `leak_after`, `backoff`, `check_on_checkout`, `psycopg2`, `events`) inside an `impl` of a
/// builder with a field `draft: sanspool_kit::Draft<_>`. The docs link to `Connector`, which
/// the driver's crate has.
#[doc(hidden)]
#[macro_export]
macro_rules! builder_settings {
    () => {
        /// Connections kept open even when unused; opened by the build.
        pub fn min(mut self, n: usize) -> Self {
            self.draft.config.min = n;
            self
        }

        /// Spare connections kept idle (r2d2's and bb8's `min_idle`), as far as `max` allows;
        /// `max_idle` does not close idle ones below it. Default 0.
        pub fn min_idle(mut self, n: usize) -> Self {
            self.draft.config.min_idle = n;
            self
        }

        /// The most connections at once (counting those being opened or closed).
        pub fn max(mut self, n: usize) -> Self {
            self.draft.config.max = n;
            self
        }

        /// How long a checkout waits when none is idle and the pool is at `max`. `None`: it
        /// does not wait, and fails with psycopg2's "connection pool exhausted".
        pub fn timeout(mut self, timeout: impl Into<Option<::core::time::Duration>>) -> Self {
            self.draft.settings.timeout = timeout.into();
            self
        }

        /// The most checkouts waiting at once; more fail with the driver's
        /// `TooManyWaiters` error. By default the line is not bounded (bb8's, deadpool's,
        /// psycopg_pool's and HikariCP's default): each waiter costs a few words.
        pub fn max_waiting(mut self, n: usize) -> Self {
            self.draft.config.max_waiting = n;
            self
        }

        /// Connections older than this are closed (when idle or returned) and replaced.
        pub fn max_lifetime(mut self, d: impl Into<Option<::core::time::Duration>>) -> Self {
            self.draft.config.max_lifetime = d.into();
            self
        }

        /// Each connection's lifetime is shortened by a random part of this, so that
        /// connections opened together do not expire together.
        pub fn lifetime_jitter(mut self, d: ::core::time::Duration) -> Self {
            self.draft.config.lifetime_jitter = d;
            self
        }

        /// Idle connections unused for this long are closed while more than `min` are open.
        pub fn max_idle(mut self, d: impl Into<Option<::core::time::Duration>>) -> Self {
            self.draft.config.max_idle = d.into();
            self
        }

        /// Who gets a connection given back while checkouts wait (default: a running checkout may
        /// take it first, until the oldest waiter has waited 0.7 ms; then strictly in turn).
        pub fn fairness(mut self, fairness: $crate::__core::Fairness) -> Self {
            self.draft.config.fairness = fairness;
            self
        }

        /// Report a borrower that holds a connection this long, once per checkout: a `log`
        /// warning and `Stats::leaks` (HikariCP's leak detection). Off by default.
        pub fn leak_after(mut self, d: impl Into<Option<::core::time::Duration>>) -> Self {
            self.draft.config.leak_after = d.into();
            self
        }

        /// Which idle connection a checkout gets.
        pub fn idle_order(mut self, order: $crate::__core::IdleOrder) -> Self {
            self.draft.config.idle_order = order;
            self
        }

        /// How many returned connections stay idle.
        pub fn keep_idle(mut self, keep: $crate::__core::KeepIdle) -> Self {
            self.draft.config.keep_idle = keep;
            self
        }

        /// The delay before retrying after failed opens, doubling per round of failures (the
        /// opens under way together count once) from `initial` to `max`, each shortened by a
        /// random part of up to a fifth (default: 100 ms to 1 s). Once the server has room
        /// again, the pool serves within `max` plus a connect.
        pub fn backoff(
            mut self,
            initial: ::core::time::Duration,
            max: ::core::time::Duration,
        ) -> Self {
            self.draft.config.backoff_initial = initial;
            self.draft.config.backoff_max = max;
            self
        }

        /// Whether a connection taken from the idle set is checked ([`Connector::check`], a
        /// round trip) in its vet before it is handed out. The checkout waits for the vet, up to
        /// its own timeout (a check that hangs delays nobody past it); a connection that fails,
        /// or is cut off at its bound, is closed (`Stats::stale`; `Stats::abandoned_checks`
        /// counts those cut off) and the next idle one vetted. Off by default: a connector that
        /// probes its connections ([`Connector::probes`]) has them vetted without a round trip.
        pub fn check_on_checkout(mut self, check: bool) -> Self {
            self.draft.settings.check_on_checkout = check;
            self
        }

        /// Gives every [`Event`](crate::Event) of the pool to `events` (r2d2's `event_handler`):
        /// a connection's acquire and release, each checkout and checkin, each checkout's
        /// timeout. [`LogEvents`](crate::LogEvents) logs them. See [`Events`](crate::Events) for
        /// where it runs.
        pub fn events(mut self, events: impl $crate::Events) -> Self {
            self.draft.events = Some(::std::sync::Arc::new(events));
            self
        }

        /// psycopg2's behaviour: checkouts never wait (at `max`: "connection pool exhausted"),
        /// a returned connection is kept only while fewer than `min` are idle, and `min` is
        /// opened at build and never refilled (connections open afterwards only for checkouts).
        pub fn psycopg2(mut self) -> Self {
            self.draft.settings.timeout = None;
            self.draft.config.keep_idle = $crate::__core::KeepIdle::UpToMin;
            self.draft.config.refill = false;
            self
        }
    };
}
