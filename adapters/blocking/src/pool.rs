//! [`Pool`]: the thread-safe pool, r2d2's shape.

use crate::driver::{Engine, Settings};
use crate::shared::Shared;
use crate::{BuildError, Connector, CoreError, Events, GetError, Key, Stats};
use sanspool_core::Config;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How a pool starts: where its I/O runs, and what its build does with a failed open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// I/O inline, no thread (psycopg2's simple pool): the first failed open is the error.
    Inline,
    /// Threads; the first failed open is the error (psycopg2's threaded and persistent pools).
    FirstFailure,
    /// Threads; the build waits for `min` while the core retries failed opens, and gives up at
    /// once only on a permanent failure or a panic (r2d2's build).
    Retrying,
}

/// How long the build waits for `min` connections when the pool has no checkout timeout
/// (psycopg2 mode): long enough for a slow server, short of hanging on an unreachable one.
const WARM_UP_BOUND: Duration = Duration::from_secs(30);

/// The least the build waits for `min` connections: a checkout timeout of a few milliseconds
/// says how long a borrower may queue, not how long a server may take to accept a connection.
const WARM_UP_LEAST: Duration = Duration::from_secs(1);

/// A thread-safe connection pool: `Send + Sync`, a cloneable handle; [`get`](Pool::get) waits
/// (FIFO fair) up to the builder's timeout and returns a [`PooledConn`](crate::PooledConn) that
/// goes back on drop.
/// The pool closes when the last handle (and [`OwnedConn`](crate::OwnedConn)) is dropped, or at
/// [`close`](Pool::close).
///
/// How it runs:
/// - the pool's state sits behind one mutex, and no connect, close, reset, check or query ever runs
///   while it is held: each input and the drain of the commands it caused share one critical
///   section, and the I/O runs after it;
/// - opens run on opener threads (one per open, so at most `max` at once): a slow connect delays
///   no checkout that an idle connection can serve;
/// - a checkout that finds nothing idle parks on its own slot; a returned connection is handed to
///   the oldest waiter directly (FIFO). At its deadline a waiter fails with
///   [`GetError::Timeout`] — or takes the connection granted to it just before;
/// - a maintenance thread sleeps until the next deadline (lifetime, idle expiry, open retry after a
///   failure) and acts on it. It holds only a weak reference, and the close or drop of the pool
///   joins it.
///
/// Keys (`K`, default `u64`) name checkouts ([`get_keyed`](Pool::get_keyed)): a key holds at most
/// one connection. psycopg2's API over the same pool is
/// [`ThreadedConnectionPool`](crate::psycopg2::ThreadedConnectionPool).
///
/// ```
/// # use sanspool::{Connector, Returned};
/// # use std::convert::Infallible;
/// # struct Server;
/// # impl Connector for Server {
/// #     type Conn = Vec<String>;
/// #     type Error = Infallible;
/// #     fn connect(&self) -> Result<Vec<String>, Infallible> { Ok(Vec::new()) }
/// #     fn state(&self, _: &mut Vec<String>) -> Returned { Returned::Clean }
/// #     fn reset(&self, _: &mut Vec<String>) -> Result<(), Infallible> { Ok(()) }
/// #     fn check(&self, _: &mut Vec<String>) -> Result<(), Infallible> { Ok(()) }
/// # }
/// use sanspool::Pool;
/// use std::time::Duration;
///
/// let pool = Pool::builder(Server)
///     .min(2)
///     .max(4)
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// std::thread::scope(|s| {
///     for _ in 0..8 {
///         s.spawn(|| pool.get().unwrap().push("SELECT 1".into()));
///     }
/// });
/// assert_eq!(pool.stats().checkouts, 8);
/// assert!(pool.stats().size <= 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pool<M: Connector, K: Key = u64> {
    owner: Arc<Owner<M, K>>,
}

/// What the pool's handles and owned guards share: its drop (the last handle's) closes the pool
/// and joins the maintenance thread. I/O threads and the maintenance thread hold the [`Shared`]
/// state only, so the pool never outlives its users' handles.
struct Owner<M: Connector, K: Key> {
    shared: Arc<Shared<M, K>>,
}

impl<M: Connector, K: Key> Pool<M, K> {
    /// The pool, with `min` connections open, started as `start` says; `events`: the event hook.
    pub(crate) fn start(
        settings: Settings<M>,
        config: Config,
        events: Option<Arc<dyn Events>>,
        start: Start,
    ) -> Result<Self, BuildError<M::Error>> {
        let mut engine = Engine::<M, K>::new(config)?;
        if let Some(events) = events {
            engine.observe(events, settings.clock);
        }
        let threads = start != Start::Inline;
        if !threads {
            // Not shared yet: the opens run here, and the first failure closes the pool.
            crate::driver::warm_up(&mut engine, &settings)?;
        }
        let bound = settings
            .timeout
            .map_or(WARM_UP_BOUND, |t| t.max(WARM_UP_LEAST));
        let shared = Shared::start(settings, engine, threads);
        let pool = Pool {
            owner: Arc::new(Owner { shared }),
        };
        if threads {
            // On an error the pool is dropped here, which closes it.
            pool.shared()
                .warm_up(bound, start == Start::Retrying)
                .map_err(BuildError::from_open)?;
        }
        Ok(pool)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<M, K>> {
        &self.owner.shared
    }

    /// Gauges and counters (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// The connector.
    pub fn connector(&self) -> &M {
        &self.shared().settings.connector.0
    }

    /// Closes the pool, and returns once its connections are closed: the idle ones and those
    /// being reset are closed now (each on a thread of its own, as ever, bounded by the
    /// connector's close), and this waits until every one of those closes has finished — so a
    /// program that exits right after it leaves no session behind. Checked-out connections are
    /// closed when they come back, and one still being opened when it opens: neither is waited
    /// for. Waiting checkouts fail with [`GetError::Closed`]; the maintenance thread is joined. A
    /// second call is [`CoreError::Closed`].
    ///
    /// Dropping the pool's last handle closes it the same way, unless it was closed already. On a
    /// thread that is exiting (a thread-local's destructor) the closes are left to the pool's
    /// last owner instead, and this does not wait.
    pub fn close(&self) -> Result<(), CoreError> {
        self.shared().close()?;
        self.shared().wait_closed();
        Ok(())
    }

    /// Retires every connection that exists now (psycopg_pool's `drain`): idle ones close at once,
    /// checked-out ones when they come back; the pool refills to `min`.
    pub fn drain(&self) -> Result<(), CoreError> {
        self.shared().input(|engine, now| engine.core.drain(now))
    }

    /// New `min` and `max`: growing opens at once, shrinking closes idle connections now and
    /// checked-out ones as they come back. Refused settings change nothing.
    pub fn resize(&self, min: usize, max: usize) -> Result<(), CoreError> {
        self.shared()
            .input(|engine, now| engine.core.resize(now, min, max))
    }

    /// Checks every idle connection ([`Connector::check`], psycopg_pool's `check`); those that fail
    /// are closed and replaced. Returns how many failed.
    pub fn check(&self) -> Result<usize, CoreError> {
        self.shared().check()
    }

    /// Waits until at least `min` connections are open (a warm-up after a `resize`, a `drain`, or
    /// failed opens). [`GetError::Timeout`] carries the last connect error, if any.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), GetError<M::Error>> {
        self.shared().wait_ready(timeout)
    }
}

impl<M: Connector, K: Key> Drop for Owner<M, K> {
    fn drop(&mut self) {
        // Already closed (closeall) or not, the maintenance thread is joined here.
        if self.shared.close().is_ok() {
            self.shared.wait_closed();
        }
        self.shared.stop_maintenance();
    }
}

impl<M: Connector, K: Key> Clone for Pool<M, K> {
    fn clone(&self) -> Self {
        Pool {
            owner: Arc::clone(&self.owner),
        }
    }
}

impl<M: Connector, K: Key> fmt::Debug for Pool<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}
