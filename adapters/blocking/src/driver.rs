//! The kit's settings and engine over a blocking connector, and the I/O a pool runs to the end
//! with exclusive access: the inline build's warm-up and the shutdown at drop.

use crate::connector::Blocking;
use crate::{BuildError, Connector, GetError};
use sanspool_core::{Completion, Io};
use sanspool_kit::{run_ready, Delivery, Done, Granted, Outputs};
use std::collections::VecDeque;
use std::hash::Hash;

/// What a pool does I/O with.
pub(crate) type Settings<M> = sanspool_kit::Settings<Blocking<M>>;

/// The core beside the last open failure.
pub(crate) type Engine<M, K> =
    sanspool_kit::Engine<<M as Connector>::Conn, <M as Connector>::Error, K>;

/// What a queued checkout receives.
pub(crate) type Outcome<C, E> = sanspool_kit::Outcome<C, E>;

/// Does one I/O on this thread.
pub(crate) fn perform<M: Connector>(
    settings: &Settings<M>,
    io: Io<M::Conn>,
) -> Done<M::Conn, M::Error> {
    run_ready(settings.perform(io))
}

/// Closes a connection the pool does not take, on this thread.
pub(crate) fn close<M: Connector>(settings: &Settings<M>, conn: M::Conn) {
    run_ready(settings.close(conn));
}

/// A drain with nobody waiting: the I/O is kept, nothing is delivered.
struct IoOnly<'a, C>(&'a mut VecDeque<Io<C>>);

impl<C, E> Outputs<C, E> for IoOnly<'_, C> {
    fn io(&mut self, io: Io<C>) {
        self.0.push_back(io);
    }

    fn deliver(
        &mut self,
        _: sanspool_core::WaiterId,
        delivery: Delivery<C, E>,
    ) -> Option<Granted<C>> {
        match delivery {
            Delivery::Outcome(Ok(granted)) => Some(granted),
            _ => None,
        }
    }
}

/// Opens `min` connections at build, psycopg2's way: the first failure is the build's error (and
/// the pool is closed). The engine is not shared yet, so the I/O runs here.
pub(crate) fn warm_up<M: Connector, K: Hash + Eq + Clone>(
    engine: &mut Engine<M, K>,
    settings: &Settings<M>,
) -> Result<(), BuildError<M::Error>> {
    run_exclusive(engine, settings, VecDeque::new())
        .map_or(Ok(()), |e| Err(BuildError::from_open(e)))
}

/// Closes the pool and every connection it holds, with exclusive access (at drop).
pub(crate) fn shut_down<M: Connector, K: Hash + Eq + Clone>(
    engine: &mut Engine<M, K>,
    settings: &Settings<M>,
    pending: VecDeque<Io<M::Conn>>,
) {
    let _ = engine.core.close(settings.clock.now());
    run_exclusive(engine, settings, pending);
}

/// Runs `tasks` and every queued I/O to the end with exclusive access. A failed open closes the
/// pool and is returned; opens still pending after a close are cancelled.
fn run_exclusive<M: Connector, K: Hash + Eq + Clone>(
    engine: &mut Engine<M, K>,
    settings: &Settings<M>,
    mut tasks: VecDeque<Io<M::Conn>>,
) -> Option<GetError<M::Error>> {
    let mut error = None;
    loop {
        engine.drain(&mut IoOnly(&mut tasks));
        let Some(task) = tasks.pop_front() else {
            return error;
        };
        let now = settings.clock.now();
        if let (Io::Open(ticket), true) = (&task, engine.core.is_closed()) {
            let ticket = *ticket;
            let permanent = false;
            let _ = engine
                .core
                .handle(now, Completion::OpenFailed { ticket, permanent });
            continue;
        }
        let done = perform(settings, task);
        let failed = matches!(done.0, Completion::OpenFailed { .. });
        if let Some(conn) = engine.report(now, done) {
            close(settings, conn);
        }
        if failed && error.is_none() {
            error = Some(engine.error(sanspool_core::Error::OpenFailed));
            let _ = engine.core.close(now);
        }
    }
}
