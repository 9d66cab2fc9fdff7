//! [`Engine`]: the core beside what a driver remembers (why the last open failed), and the two
//! moves every driver makes around it under its lock: [`drain`](Engine::drain) the outputs
//! (I/O to start, hand-offs to deliver, reports to log) and [`report`](Engine::report) a
//! performed I/O back. Both feed the event hook, if one is set ([`Observed`]).

use crate::{BuildError, Clock, Done, Events, Failure, GetError, Observed};
use sanspool_core::{AllocPool, Completion, Config, Handoff, Io, Lease, Returned, WaiterId};
use std::hash::Hash;
use std::sync::Arc;

/// A connection granted to a queued checkout.
#[derive(Debug)]
pub struct Granted<C> {
    /// Check the connection in with this.
    pub lease: Lease,
    /// The connection.
    pub conn: C,
}

/// What a queued checkout receives: its connection, or why it failed.
pub type Outcome<C, E> = Result<Granted<C>, GetError<E>>;

/// A hand-off as a driver delivers it.
#[derive(Debug)]
pub enum Delivery<C, E> {
    /// The checkout's outcome.
    Outcome(Outcome<C, E>),
    /// A connection came back idle: the checkout should claim it when it runs (a running one
    /// may take it first).
    Wake,
}

/// Where [`Engine::drain`] puts what it takes: the driver's side of a drain.
pub trait Outputs<C, E> {
    /// An I/O to start (once the driver's lock is released).
    fn io(&mut self, io: Io<C>);
    /// A hand-off for the queued checkout `waiter`; a grant it cannot deliver is given back.
    fn deliver(&mut self, waiter: WaiterId, delivery: Delivery<C, E>) -> Option<Granted<C>>;
}

/// The core and the last open failure.
pub struct Engine<C, E, K: Hash + Eq + Clone> {
    /// The state machine, watched for the event hook.
    pub core: Observed<C, K>,
    /// Why the last open failed; cleared by a successful open.
    last: Option<Failure<E>>,
    /// Whether the connector said the last failed open would fail again
    /// ([`Connector::is_permanent`](crate::Connector::is_permanent)).
    permanent: bool,
}

impl<C, E, K: Hash + Eq + Clone> Engine<C, E, K> {
    /// The engine for `config`.
    pub fn new(config: Config) -> Result<Self, BuildError<E>> {
        Ok(Engine {
            core: Observed::new(AllocPool::new(config).map_err(BuildError::Config)?),
            last: None,
            permanent: false,
        })
    }

    /// Gives every event from now on to `events`, timed by `clock` (the driver's).
    pub fn observe(&mut self, events: Arc<dyn Events>, clock: Clock) {
        self.core.watch(events, clock);
    }

    /// The checkout's error for a core refusal, with the last open failure as its cause.
    pub fn error(&self, error: sanspool_core::Error) -> GetError<E> {
        GetError::from_core(error, self.last.as_ref())
    }

    /// The error of the last failed open, if the last open failed.
    pub fn open_failure(&self) -> Option<GetError<E>> {
        self.last
            .as_ref()
            .map(|_| self.error(sanspool_core::Error::OpenFailed))
    }

    /// The error of the last failed open if it will fail again until someone fixes something
    /// (the connector said so), or if it panicked: what a build that retries gives up on at once.
    pub fn hopeless_failure(&self) -> Option<GetError<E>> {
        match &self.last {
            Some(Failure::Error(_)) if !self.permanent => None,
            Some(_) => self.open_failure(),
            None => None,
        }
    }

    /// Takes every output into `out`: the I/O, and each hand-off, which `out` may give back as a
    /// grant it could not deliver (its checkout is gone: cannot happen, a checkout leaves its
    /// driver's table only with its outcome or its cancel); the reports are logged. A grant
    /// given back never reached anyone, so it is checked in clean, and what follows from that is
    /// drained too.
    pub fn drain(&mut self, out: &mut impl Outputs<C, E>) {
        loop {
            while let Some(io) = self.core.poll_io() {
                if let Io::Open(ticket) = io {
                    self.core.opening(ticket);
                }
                out.io(io);
            }
            while let Some(report) = self.core.poll_report() {
                log::warn!("sanspool: {}", report.describe(self.core.now()));
            }
            let mut orphans = Vec::new();
            while let Some(handoff) = self.core.poll_handoff() {
                let (waiter, delivery) = match handoff {
                    Handoff::Grant {
                        waiter,
                        lease,
                        conn,
                    } => {
                        self.core.granted(waiter, lease);
                        (waiter, Delivery::Outcome(Ok(Granted { lease, conn })))
                    }
                    Handoff::Fail { waiter, error } => {
                        self.core.failed(waiter, error);
                        (waiter, Delivery::Outcome(Err(self.error(error))))
                    }
                    Handoff::Wake { waiter } => (waiter, Delivery::Wake),
                };
                orphans.extend(out.deliver(waiter, delivery));
            }
            if orphans.is_empty() {
                return;
            }
            log::warn!("sanspool: a grant for a checkout that is not waiting: taken back");
            let now = self.core.now();
            for Granted { lease, conn, .. } in orphans {
                let back = self.core.checkin(now, lease, None, conn, Returned::Clean);
                debug_assert!(back.is_ok(), "an orphaned grant was refused");
            }
        }
    }

    /// Reports a performed I/O (remembering why an open failed). Returns a connection the core
    /// refused (a driver bug): close it.
    #[must_use]
    pub fn report(&mut self, now: sanspool_core::Time, done: Done<C, E>) -> Option<C> {
        let (completion, failure) = done;
        match (&completion, failure) {
            (Completion::Opened { .. }, _) => self.last = None,
            (Completion::OpenFailed { permanent, .. }, Some(e)) => {
                self.permanent = *permanent;
                self.last = Some(match e {
                    Ok(e) => Failure::Error(Arc::new(e)),
                    Err(p) => Failure::Panic(p),
                });
            }
            _ => {}
        }
        let ticket = completion.ticket();
        let (opened, closed) = match &completion {
            Completion::Opened { .. } => (true, false),
            Completion::Closed { .. } => (false, true),
            _ => (false, false),
        };
        match self.core.handle(now, completion) {
            Ok(()) if opened => self.core.opened(ticket),
            Ok(()) if closed => self.core.closed(ticket),
            Ok(()) => {}
            Err(refused) => {
                debug_assert!(false, "report refused: {}", refused.error);
                return refused.conn;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanspool_core::{Checkout, Completion, Time, Wait};

    /// Keeps the I/O; refuses every grant (as a driver whose checkout is gone would).
    struct Refusing(Vec<Io<u32>>);

    impl Outputs<u32, std::io::Error> for Refusing {
        fn io(&mut self, io: Io<u32>) {
            self.0.push(io);
        }

        fn deliver(
            &mut self,
            _: WaiterId,
            delivery: Delivery<u32, std::io::Error>,
        ) -> Option<Granted<u32>> {
            match delivery {
                Delivery::Outcome(Ok(granted)) => Some(granted),
                _ => None,
            }
        }
    }

    /// A grant nobody takes is checked back in clean (it never reached a borrower): idle, not
    /// reset — in every driver, since every driver drains through here.
    #[test]
    fn an_orphaned_grant_comes_back_clean() {
        let mut engine: Engine<u32, std::io::Error, ()> = Engine::new(Config::new(0, 1)).unwrap();
        let t = Time::ZERO;
        let Ok(Checkout::Waiting(_)) = engine.core.checkout(t, None, Wait::Forever) else {
            panic!("the checkout did not queue")
        };
        let mut out = Refusing(Vec::new());
        engine.drain(&mut out);
        let Some(Io::Open(ticket)) = out.0.pop() else {
            panic!("no open ordered")
        };
        let opened = (Completion::Opened { ticket, conn: 7 }, None);
        assert!(engine.report(t, opened).is_none());
        engine.drain(&mut out);
        let stats = engine.core.stats();
        assert_eq!(
            (stats.idle, stats.in_use, stats.resets),
            (1, 0, 0),
            "{stats:?}"
        );
        assert!(out.0.is_empty(), "no reset, no close: {:?}", out.0);
        let Ok(Checkout::Ready { conn, .. }) = engine.core.checkout(t, None, Wait::No) else {
            panic!("not idle")
        };
        assert_eq!(conn, 7);
    }
}
