//! The async pool as its users see it: [`Pool`] (cheap to clone; `get().await`, stats, close,
//! drain, resize, check, wait_ready) and its guard [`PooledConn`].

use crate::inner::{lock, maintain, Got, Shared, State, WARM_UP_BOUND, WARM_UP_LEAST};
use crate::internals::Slot;
use crate::{BuildError, Connector, CoreError, Events, GetError};
use parking_lot::Mutex;
use sanspool_core::{Config, Io, Lease, Returned, Stats};
use sanspool_kit::{Engine, Granted, Settings};
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::Notify;

/// An async pool. Cloning gives another handle to the same pool; it closes when the last handle
/// (and guard) is dropped, or at [`close`](Pool::close).
///
/// How it runs:
/// - the core sits behind one mutex (parking_lot's), never held across an await: an input and the drain of
///   the commands it caused share one critical section; grants and failures are left in the
///   queued checkouts' slots there, their tasks (and those of woken checkouts) are woken right
///   after it, and opens, resets, checks and closes are spawned as tasks;
/// - a checkout that finds nothing idle queues in the core and in the pool's table of queued
///   checkouts (a slot with its task's waker, then its outcome: the task takes it without the
///   pool's lock; the slot comes back to the pool with the guard, for reuse). Who gets a
///   returned connection is the core's [`Fairness`](crate::Fairness): by default (`Strict`) it is
///   granted to the oldest waiter; with a bound it goes idle and the oldest waiter is woken to
///   claim it when its task runs, while a task already running may take it first, until the
///   oldest waiter has waited the bound. At its
///   deadline the core fails a waiter with [`GetError::Timeout`] (through the maintenance task:
///   one timer for the pool, none per waiter). A `get()` future dropped while queued or woken
///   cancels its waiter through the core, and gives back a connection granted to it meanwhile;
/// - a dropped guard judges its connection without I/O ([`Connector::state`]) and checks it in:
///   a clean one is reused as it is, a dirty one is reset on a task;
/// - a maintenance task sleeps until the core's next deadline (lifetime, idle expiry, open retry,
///   waiter timeout), woken early only when that deadline moves earlier.
///
/// Its tasks run on the runtime that built it: build it on the runtime that uses it, and keep
/// that runtime running while the pool is used.
pub struct Pool<M: Connector> {
    owner: Arc<Owner<M>>,
}

/// What handles and guards share: its drop (the last handle's) closes the pool. Tasks hold the
/// [`Shared`] state only. On a cache line of its own, away from its reference counts, which
/// every checkout's guard changes (from every worker thread) while every call reads this.
#[repr(align(64))]
struct Owner<M: Connector> {
    shared: Arc<Shared<M>>,
}

impl<M: Connector> Pool<M> {
    pub(crate) async fn build(
        settings: Settings<M>,
        config: Config,
        events: Option<Arc<dyn Events>>,
    ) -> Result<Self, BuildError<M::Error>> {
        // Without refills nothing would retry a failed open.
        let retry = config.refill;
        let mut engine = Engine::new(config)?;
        if let Some(events) = events {
            engine.observe(events, settings.clock);
        }
        let bound = settings
            .timeout
            .map_or(WARM_UP_BOUND, |t| t.max(WARM_UP_LEAST));
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            settings,
            state: Mutex::new(State::new(engine)),
            runtime: Handle::current(),
            wake: Arc::clone(&wake),
            stopped: AtomicBool::new(false),
            changed: Notify::new(),
        });
        shared
            .runtime
            .spawn(maintain(Arc::downgrade(&shared), wake));
        let pool = Pool {
            owner: Arc::new(Owner { shared }),
        };
        // On an error the pool is dropped here, which closes it.
        pool.warm_up(bound, retry)
            .await
            .map_err(BuildError::from_open)?;
        Ok(pool)
    }

    /// Opens `min` connections, bounded, so an unreachable server ends in a timeout. With
    /// `retry` (r2d2's and bb8's way) the core retries failed opens with backoff, and only a
    /// permanent failure or a panic ends the wait early; without, the first failed open is the
    /// build's error.
    async fn warm_up(&self, bound: Duration, retry: bool) -> Result<(), GetError<M::Error>> {
        let s = &self.owner.shared;
        let out = s.drain(&mut lock(&s.state));
        s.finish(out);
        let deadline = Instant::now().checked_add(bound);
        let ready = s
            .wait_until(deadline, |st| {
                if st.engine.core.is_warm() {
                    Some(Ok(()))
                } else if retry {
                    st.engine.hopeless_failure().map(Err)
                } else {
                    st.engine.open_failure().map(Err)
                }
            })
            .await;
        ready.unwrap_or_else(|| Err(lock(&s.state).engine.error(CoreError::Timeout)))
    }

    /// A connection, as a guard given back on drop.
    ///
    /// An idle connection is taken at once; otherwise the checkout queues up to the builder's
    /// timeout (no timeout: [`GetError::Exhausted`] at `max`), served in line as the builder's
    /// [`fairness`](crate::Builder::fairness) says. Cancellation-safe: dropping the future while
    /// it waits (or is woken) leaves no trace in the pool.
    pub async fn get(&self) -> Result<PooledConn<M>, GetError<M::Error>> {
        let s = &self.owner.shared;
        // The attempt runs in this future's poll, with its waker: a checkout that queues leaves
        // it in its slot at once, under the pool's lock, so its first wait costs no second look.
        let got = std::future::poll_fn(|cx| Poll::Ready(s.attempt(cx.waker()))).await?;
        let (lease, conn, slot) = match got {
            Got::Ready(lease, conn) => (lease, conn, None),
            Got::Waiting(pending) => {
                let (outcome, slot) = pending.await;
                let Granted { lease, conn } = outcome?;
                (lease, conn, Some(slot))
            }
        };
        Ok(PooledConn {
            pool: self.clone(),
            lease,
            conn: Some(conn),
            close: false,
            slot,
        })
    }

    /// Gauges and counters (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        lock(&self.owner.shared.state).engine.core.stats()
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.owner.shared.state).engine.core.is_closed()
    }

    /// The connector.
    pub fn connector(&self) -> &M {
        &self.owner.shared.settings.connector
    }

    /// Closes the pool at once, and returns a future that resolves once its connections are
    /// closed: the idle ones and those being reset are closed now (on tasks, each bounded by the
    /// connector's close), and the future waits until every one of those closes has finished —
    /// so a program that exits right after `pool.close().await` leaves no session behind.
    /// Checked-out connections are closed when they come back, and one still being opened when
    /// it opens: neither is waited for. Waiting checkouts fail with [`GetError::Closed`]. A second
    /// call is [`CoreError::Closed`].
    ///
    /// The close happens in this call, not in the future: a future dropped (or never awaited)
    /// leaves the pool closed, its connections closing on their tasks, as dropping the pool's
    /// last handle does.
    pub fn close(&self) -> impl Future<Output = Result<(), CoreError>> + Send + 'static {
        let s = Arc::clone(&self.owner.shared);
        let closed = s.input(|core, now| core.close(now));
        if closed.is_ok() {
            s.stopped.store(true, Ordering::Release);
            s.wake.notify_one();
        }
        async move {
            closed?;
            s.wait_until(None, |st| {
                let stats = st.engine.core.stats();
                (stats.resetting + stats.closing == 0).then_some(())
            })
            .await;
            Ok(())
        }
    }

    /// Retires every connection that exists now: idle ones close at once, checked-out ones when
    /// they come back; the pool refills to `min`.
    pub fn drain(&self) -> Result<(), CoreError> {
        self.owner.shared.input(|core, now| core.drain(now))
    }

    /// New `min` and `max`: growing opens at once, shrinking closes idle connections now and
    /// checked-out ones as they come back.
    pub fn resize(&self, min: usize, max: usize) -> Result<(), CoreError> {
        self.owner
            .shared
            .input(|core, now| core.resize(now, min, max))
    }

    /// Checks every idle connection ([`Connector::check`], psycopg_pool's `check`) on tasks, and
    /// waits for the answers; those that fail are closed and replaced. Returns how many failed.
    ///
    /// Dropping the future stops only the count: the checks run on and report to the pool.
    pub async fn check(&self) -> Result<usize, CoreError> {
        let s = &self.owner.shared;
        // A block, so the future holds no guard across its awaits (and stays `Send`).
        let mut out = {
            let mut st = lock(&s.state);
            st.engine.core.check_idle(s.settings.clock.now())?;
            s.drain(&mut st)
        };
        // Every check in this drain is one of ours: earlier inputs' commands were drained by
        // their own inputs, under the same lock.
        let io = out.take_io();
        s.finish(out);
        let mut checks = Vec::new();
        for cmd in io {
            let is_check = matches!(cmd, Io::Check { .. });
            let task = s.spawn(cmd);
            if is_check {
                checks.push(task);
            }
        }
        let mut failed = 0;
        for task in checks {
            // A task that did not finish (the runtime shutting down) lost its connection: failed.
            if task.await.unwrap_or(true) {
                failed += 1;
            }
        }
        Ok(failed)
    }

    /// Waits until at least `min` connections are open. [`GetError::Timeout`] carries the last
    /// connect error, if any.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), GetError<M::Error>> {
        let s = &self.owner.shared;
        let deadline = Instant::now().checked_add(timeout);
        let ready = s
            .wait_until(deadline, |st| {
                if st.engine.core.is_closed() {
                    Some(Err(GetError::Closed))
                } else if st.engine.core.is_warm() {
                    Some(Ok(()))
                } else {
                    None
                }
            })
            .await;
        ready.unwrap_or_else(|| Err(lock(&s.state).engine.error(CoreError::Timeout)))
    }
}

impl<M: Connector> Drop for Owner<M> {
    fn drop(&mut self) {
        let s = &self.shared;
        let _ = s.input(|core, now| core.close(now));
        s.stopped.store(true, Ordering::Release);
        s.wake.notify_one();
    }
}

impl<M: Connector> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            owner: Arc::clone(&self.owner),
        }
    }
}

impl<M: Connector> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// A checked-out connection: derefs to it, given back when dropped (judged without I/O: clean is
/// reused as it is, dirty is reset on a task, broken is closed).
pub struct PooledConn<M: Connector> {
    pool: Pool<M>,
    lease: Lease,
    /// `None` once given back or detached.
    conn: Option<M::Conn>,
    close: bool,
    /// The slot the checkout queued in, if it did: back to the pool with the connection.
    slot: Option<Arc<Slot<M>>>,
}

impl<M: Connector> PooledConn<M> {
    fn conn_mut(&mut self) -> &mut M::Conn {
        self.conn.as_mut().expect("present until given back")
    }

    fn give_back(&mut self, returned: Returned) {
        if let Some(conn) = self.conn.take() {
            let slot = self.slot.take();
            self.pool
                .owner
                .shared
                .checkin(self.lease, conn, returned, slot);
        }
    }

    /// Gives the connection back to be closed rather than reused (psycopg2's
    /// `putconn(conn, close=True)`). (An associated function, as the guard's others, so that it
    /// never hides a method of the connection it derefs to.)
    pub fn close(mut this: Self) {
        this.close = true;
    }

    /// Takes the connection out of the pool for good (the core's `detach`): its place is freed
    /// (and refilled if `min` asks), and it is yours to keep or close.
    pub fn detach(mut this: Self) -> M::Conn {
        let conn = this.conn.take().expect("present until given back");
        let lease = this.lease;
        let _ = this
            .pool
            .owner
            .shared
            .input(|core, now| core.detach(now, lease));
        conn
    }
}

impl<M: Connector> Deref for PooledConn<M> {
    type Target = M::Conn;

    fn deref(&self) -> &M::Conn {
        self.conn.as_ref().expect("present until given back")
    }
}

impl<M: Connector> DerefMut for PooledConn<M> {
    fn deref_mut(&mut self) -> &mut M::Conn {
        self.conn_mut()
    }
}

impl<M: Connector> Drop for PooledConn<M> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            let returned = self.pool.owner.shared.settings.judge(conn, self.close);
            self.give_back(returned);
        }
    }
}

impl<M: Connector> fmt::Debug for PooledConn<M>
where
    M::Conn: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConn")
            .field("conn", &self.conn)
            .field("slot", &self.lease.slot())
            .finish()
    }
}
