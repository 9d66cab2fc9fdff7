//! The event hook (r2d2's `HandleEvent`): what happens to each connection and checkout, as
//! [`Event`]s given to an [`Events`] hook set on a pool's builder.
//!
//! The events are taken where every driver's inputs and outputs pass, once, for both drivers:
//! [`Observed`] is the core as the [`Engine`](crate::Engine) holds it, its checkouts, claims,
//! check-ins and cancels watched; the engine's drain sees the opens it orders, the grants and the
//! timeouts, its report the opens and closes that completed. Without a hook each of these costs
//! one branch.

use crate::{guarded, Clock, Waiters};
use sanspool_core::{
    AllocPool, Checkout, Error, Lease, Rejected, Returned, Ticket, Time, Wait, WaiterId,
};
use std::fmt;
use std::hash::Hash;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

/// Something that happened to one of a pool's connections, or to a checkout. `conn` numbers the
/// pool's connections in the order they were opened, from 1, never reused: the same number in
/// every event of one connection, from its [`Acquire`](Event::Acquire) to its
/// [`Release`](Event::Release).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection was opened (its connect and `after_connect` hook took `took`).
    Acquire {
        /// The connection's number.
        conn: u64,
        /// From the open's start to its end.
        took: Duration,
    },
    /// A connection was closed (its close finished, whatever its outcome), `age` after it was
    /// opened.
    Release {
        /// The connection's number.
        conn: u64,
        /// Since its acquire.
        age: Duration,
    },
    /// A connection was handed to a checkout that waited `waited` for it (zero if it was idle).
    /// When the pool vets idle connections, after its vet passed: one that fails is closed, a
    /// [`Release`](Event::Release) with no checkout.
    Checkout {
        /// The connection's number.
        conn: u64,
        /// How long the checkout was in line.
        waited: Duration,
    },
    /// A borrower gave the connection back, `held` after its checkout.
    Checkin {
        /// The connection's number.
        conn: u64,
        /// Since its checkout.
        held: Duration,
    },
    /// A queued checkout waited its whole timeout, `waited`, without a connection.
    Timeout {
        /// How long it was in line.
        waited: Duration,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Acquire { conn, took } => write!(f, "acquire: connection {conn}, took {took:?}"),
            Event::Release { conn, age } => write!(f, "release: connection {conn}, age {age:?}"),
            Event::Checkout { conn, waited } => {
                write!(f, "checkout: connection {conn}, waited {waited:?}")
            }
            Event::Checkin { conn, held } => write!(f, "checkin: connection {conn}, held {held:?}"),
            Event::Timeout { waited } => write!(f, "timeout: waited {waited:?}"),
        }
    }
}

/// A pool's event hook, set with the builder's `events` (any `Fn(&Event)` is one).
///
/// It is called on the thread or task that caused the event, while the pool's lock is held, so
/// that events come in the order the pool decided them (a connection's acquire before its
/// checkout, its checkin before its release). Keep it short (a log line, a counter, a channel's
/// send), and do not call the pool from it: that would deadlock. A hook that panics loses that
/// event only.
pub trait Events: Send + Sync + 'static {
    /// Takes one event.
    fn event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync + 'static> Events for F {
    fn event(&self, event: &Event) {
        self(event)
    }
}

/// The [`Events`] hook that logs every event through `log`, target `sanspool::events`: acquire
/// and release at `debug`, checkout and checkin at `trace`, timeout at `warn`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogEvents;

impl Events for LogEvents {
    fn event(&self, event: &Event) {
        let level = match event {
            Event::Acquire { .. } | Event::Release { .. } => log::Level::Debug,
            Event::Checkout { .. } | Event::Checkin { .. } => log::Level::Trace,
            Event::Timeout { .. } => log::Level::Warn,
        };
        log::log!(target: "sanspool::events", level, "{event}");
    }
}

/// The [`Events`] hook that emits every event as a `tracing` event, target `sanspool::events`,
/// with the connection's number and the duration as fields: acquire and release at `DEBUG`,
/// checkout and checkin at `TRACE`, timeout at `WARN`.
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingEvents;

#[cfg(feature = "tracing")]
impl Events for TracingEvents {
    fn event(&self, event: &Event) {
        const T: &str = "sanspool::events";
        match *event {
            Event::Acquire { conn, took } => {
                tracing::debug!(target: T, conn, ?took, "acquire");
            }
            Event::Release { conn, age } => {
                tracing::debug!(target: T, conn, ?age, "release");
            }
            Event::Checkout { conn, waited } => {
                tracing::trace!(target: T, conn, ?waited, "checkout");
            }
            Event::Checkin { conn, held } => {
                tracing::trace!(target: T, conn, ?held, "checkin");
            }
            Event::Timeout { waited } => {
                tracing::warn!(target: T, ?waited, "timeout");
            }
        }
    }
}

/// The core as the kit holds it: every getter and input of [`AllocPool`] (through `Deref`), and
/// the inputs that make events — checkout, claim, checkin, cancel — watched when a hook is set.
/// The drivers call them as they would call the core's.
pub struct Observed<C, K: Hash + Eq + Clone> {
    pool: AllocPool<C, K>,
    /// `None`: no hook (the usual case: one branch per watched input).
    watch: Option<Box<Watch>>,
}

/// What the hook needs beside the core: the pool's clock, each slot's connection, each queued
/// checkout's arrival. A connection's times are read from the clock (precisely, whatever clock
/// the driver gave the core); a queued checkout's wait is timed on the core's own clock, the one
/// its deadline is set on, so a timeout's wait is never shorter than the timeout.
struct Watch {
    events: Arc<dyn Events>,
    clock: Clock,
    /// The last connection number given.
    numbered: u64,
    /// By slot index (the core's slots are stable, reused by later connections).
    conns: Vec<Conn>,
    /// When each queued checkout queued.
    queued: Waiters<Time>,
}

/// One slot's connection, as the hook sees it.
#[derive(Clone, Copy, Default)]
struct Conn {
    number: u64,
    /// When its open was ordered, then when it opened.
    since: Time,
    /// When it was last checked out.
    taken: Time,
}

impl Watch {
    fn emit(&self, event: Event) {
        let _ = guarded(|| self.events.event(&event));
    }

    fn conn(&mut self, slot: usize) -> &mut Conn {
        if slot >= self.conns.len() {
            self.conns.resize(slot + 1, Conn::default());
        }
        &mut self.conns[slot]
    }

    /// `lease` was handed out; `waited`: how long its checkout was in line.
    fn checked_out(&mut self, lease: Lease, waited: Duration) {
        let now = self.clock.now();
        let conn = self.conn(lease.slot());
        conn.taken = now;
        let number = conn.number;
        self.emit(Event::Checkout {
            conn: number,
            waited,
        });
    }
}

/// How long a checkout that queued at `queued` (on the core's clock) has waited by `now`.
fn waited(queued: Option<Time>, now: Time) -> Duration {
    queued.map_or(Duration::ZERO, |t| now.saturating_since(t))
}

impl<C, K: Hash + Eq + Clone> Observed<C, K> {
    pub(crate) fn new(pool: AllocPool<C, K>) -> Self {
        Observed { pool, watch: None }
    }

    /// Sets the hook; `clock` times the events.
    pub(crate) fn watch(&mut self, events: Arc<dyn Events>, clock: Clock) {
        self.watch = Some(Box::new(Watch {
            events,
            clock,
            numbered: 0,
            conns: Vec::new(),
            queued: Waiters::new(),
        }));
    }

    /// The core's [`checkout`](AllocPool::checkout), watched.
    #[inline]
    pub fn checkout(
        &mut self,
        now: Time,
        key: Option<K>,
        wait: Wait,
    ) -> Result<Checkout<C>, Error> {
        let got = self.pool.checkout(now, key, wait);
        if let (Some(watch), Ok(got)) = (&mut self.watch, &got) {
            match got {
                Checkout::Ready { lease, .. } => watch.checked_out(*lease, Duration::ZERO),
                // The time its deadline counts from.
                Checkout::Waiting(id) => watch.queued.insert(*id, self.pool.now()),
                Checkout::Held(_) => {}
            }
        }
        got
    }

    /// The core's [`claim`](AllocPool::claim), watched.
    #[inline]
    pub fn claim(&mut self, now: Time, waiter: WaiterId) -> Result<Checkout<C>, Error> {
        let got = self.pool.claim(now, waiter);
        if let (Some(watch), Ok(Checkout::Ready { lease, .. })) = (&mut self.watch, &got) {
            let queued = watch.queued.remove(waiter);
            watch.checked_out(*lease, waited(queued, self.pool.now()));
        }
        got
    }

    /// The core's [`checkin`](AllocPool::checkin), watched (a connection taken after a close is
    /// checked in too).
    #[inline]
    pub fn checkin(
        &mut self,
        now: Time,
        lease: Lease,
        key: Option<&K>,
        conn: C,
        returned: Returned,
    ) -> Result<(), Rejected<C>> {
        let back = self.pool.checkin(now, lease, key, conn, returned);
        if let Some(watch) = &mut self.watch {
            if matches!(back, Ok(()) | Err(Rejected { conn: None, .. })) {
                let now = watch.clock.now();
                let conn = *watch.conn(lease.slot());
                watch.emit(Event::Checkin {
                    conn: conn.number,
                    held: now.saturating_since(conn.taken),
                });
            }
        }
        back
    }

    /// The core's [`cancel`](AllocPool::cancel), watched.
    #[inline]
    pub fn cancel(&mut self, now: Time, waiter: WaiterId) -> Result<(), Error> {
        if let Some(watch) = &mut self.watch {
            watch.queued.remove(waiter);
        }
        self.pool.cancel(now, waiter)
    }

    /// An open was ordered (drained).
    #[inline]
    pub(crate) fn opening(&mut self, ticket: Ticket) {
        if let Some(watch) = &mut self.watch {
            let now = watch.clock.now();
            watch.conn(ticket.slot()).since = now;
        }
    }

    /// An open completed.
    #[inline]
    pub(crate) fn opened(&mut self, ticket: Ticket) {
        if let Some(watch) = &mut self.watch {
            let now = watch.clock.now();
            watch.numbered += 1;
            let number = watch.numbered;
            let conn = watch.conn(ticket.slot());
            let took = now.saturating_since(conn.since);
            *conn = Conn {
                number,
                since: now,
                taken: now,
            };
            watch.emit(Event::Acquire { conn: number, took });
        }
    }

    /// A close completed.
    #[inline]
    pub(crate) fn closed(&mut self, ticket: Ticket) {
        if let Some(watch) = &mut self.watch {
            let now = watch.clock.now();
            let conn = *watch.conn(ticket.slot());
            watch.emit(Event::Release {
                conn: conn.number,
                age: now.saturating_since(conn.since),
            });
        }
    }

    /// A queued checkout was granted a connection (drained).
    #[inline]
    pub(crate) fn granted(&mut self, waiter: WaiterId, lease: Lease) {
        if let Some(watch) = &mut self.watch {
            let queued = watch.queued.remove(waiter);
            watch.checked_out(lease, waited(queued, self.pool.now()));
        }
    }

    /// A queued checkout failed with `error` (drained).
    #[inline]
    pub(crate) fn failed(&mut self, waiter: WaiterId, error: Error) {
        if let Some(watch) = &mut self.watch {
            let queued = watch.queued.remove(waiter);
            if error == Error::Timeout {
                let waited = waited(queued, self.pool.now());
                watch.emit(Event::Timeout { waited });
            }
        }
    }
}

impl<C, K: Hash + Eq + Clone> Deref for Observed<C, K> {
    type Target = AllocPool<C, K>;

    fn deref(&self) -> &AllocPool<C, K> {
        &self.pool
    }
}

impl<C, K: Hash + Eq + Clone> DerefMut for Observed<C, K> {
    fn deref_mut(&mut self) -> &mut AllocPool<C, K> {
        &mut self.pool
    }
}
