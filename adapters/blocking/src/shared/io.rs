//! How the running pool's I/O runs — the one difference between the pools:
//! - on threads (the threaded and persistent pools): each open, reset, check and close on an I/O
//!   thread of its own, so neither a checkout an idle connection can serve, a borrower giving a
//!   connection back, nor the maintenance thread waits on it;
//! - deferred, on a thread that is exiting (a persistent pool's give-back at a thread's end): no
//!   thread may be spawned and no connection used or dropped there (a blocking client's runtime
//!   is gone, and a panic in a thread-local destructor aborts the process), so the maintenance
//!   thread takes the work;
//! - inline (the simple pool): on the caller's thread, at once, with no background thread; a
//!   checkout never waits (nobody else could give a connection back), and time-driven upkeep
//!   runs on each use or at `maintain`.

use super::{Shared, State};
use crate::driver;
use crate::{thread_exit, Connector, Key};
use parking_lot::Mutex;
use sanspool_core::{Completion, Io, Ticket, Time};
use sanspool_kit::Done;
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread;

impl<M: Connector, K: Key> Shared<M, K> {
    /// Whether I/O must not start on this thread: it is exiting, and the maintenance thread can
    /// take the work. Without one (inline I/O) the work is done here, as it always is.
    pub(super) fn hand_over(&self) -> bool {
        self.maintenance.is_some() && thread_exit::exiting()
    }

    /// Starts the I/O of `tasks`: inline, or each on a thread of its own, so that no caller — a
    /// borrower giving a connection back, a checkout, the maintenance thread that must keep
    /// refilling — waits for a connect, a reset, a check or a close it does not need. On an
    /// exiting thread nothing starts: the maintenance thread gets the tasks.
    #[inline]
    pub(super) fn run(self: &Arc<Self>, tasks: VecDeque<Io<M::Conn>>) {
        if !tasks.is_empty() {
            self.start_io(tasks);
        }
    }

    #[inline(never)]
    pub(super) fn start_io(self: &Arc<Self>, tasks: VecDeque<Io<M::Conn>>) {
        if self.maintenance.is_none() {
            self.run_inline(tasks);
        } else if thread_exit::exiting() {
            self.defer(tasks, None);
        } else {
            for task in tasks {
                // A vet the probe decides costs a look at a socket: here, not on a thread.
                match self.settings.perform_at_once(task) {
                    Ok(done) => {
                        let next = self.report(done);
                        self.run(next);
                    }
                    Err(task) => {
                        if matches!(task, Io::Vet { .. }) {
                            // The drain left the alarm for this vet's report: it comes later.
                            self.rearm(&mut self.state.lock());
                        }
                        self.spawn_io(task)
                    }
                }
            }
        }
    }

    /// Performs `tasks` and all that follows them on this thread; returns how many checks failed.
    pub(super) fn run_inline(&self, mut tasks: VecDeque<Io<M::Conn>>) -> usize {
        let mut failed_checks = 0;
        while let Some(task) = tasks.pop_front() {
            let done = driver::perform(&self.settings, task);
            if matches!(done.0, Completion::Checked { outcome, .. } if !outcome.is_ok()) {
                failed_checks += 1;
            }
            tasks.extend(self.report(done));
        }
        failed_checks
    }

    /// Performs `tasks` on this thread (what follows them is started as [`run`](Self::run) does);
    /// returns how many checks failed. For `check()`, whose caller asked for the answers.
    pub(super) fn run_here(self: &Arc<Self>, tasks: VecDeque<Io<M::Conn>>) -> usize {
        if self.maintenance.is_none() {
            return self.run_inline(tasks);
        }
        let mut failed_checks = 0;
        for task in tasks {
            if let Io::Open(_) = task {
                self.spawn_io(task);
                continue;
            }
            let done = driver::perform(&self.settings, task);
            if matches!(done.0, Completion::Checked { outcome, .. } if !outcome.is_ok()) {
                failed_checks += 1;
            }
            let next = self.report(done);
            self.run(next);
        }
        failed_checks
    }

    pub(super) fn report(&self, done: Done<M::Conn, M::Error>) -> VecDeque<Io<M::Conn>> {
        let mut st = self.state.lock();
        let stray = st.engine.report(self.settings.clock.now(), done);
        let tasks = self.drain(&mut st);
        drop(st);
        if let Some(conn) = stray {
            self.discard(conn);
        }
        tasks
    }

    /// Closes a connection the pool does not take — on the maintenance thread if this one is
    /// exiting.
    pub(super) fn discard(&self, conn: M::Conn) {
        if self.hand_over() {
            self.defer([], Some(conn));
        } else {
            driver::close(&self.settings, conn);
        }
    }

    /// Hands I/O (and a connection to close) to the maintenance thread, waking it now.
    pub(super) fn defer(&self, io: impl IntoIterator<Item = Io<M::Conn>>, stray: Option<M::Conn>) {
        let mut st = self.state.lock();
        st.deferred.extend(io);
        st.strays.extend(stray);
        st.alarm = None;
        if let Some(m) = &self.maintenance {
            m.rearm(&mut st.alarm, Some(self.settings.clock.now()));
        }
        // A close waiting for the pool's connections runs it (the maintenance thread is stopped).
        if st.ready_waiters > 0 {
            self.changed.notify_all();
        }
    }

    /// Deferred work split into opens (tickets) and the rest.
    pub(super) fn split_deferred(st: &mut State<M, K>) -> (Vec<Ticket>, VecDeque<Io<M::Conn>>) {
        let mut opens = Vec::new();
        let mut io = VecDeque::new();
        for cmd in std::mem::take(&mut st.deferred) {
            match cmd {
                Io::Open(ticket) => opens.push(ticket),
                other => io.push_back(other),
            }
        }
        (opens, io)
    }

    /// After a close: deferred opens are reported failed without running (the core withdraws
    /// them); the rest of the deferred I/O is returned.
    pub(super) fn cancel_deferred_opens(st: &mut State<M, K>, now: Time) -> VecDeque<Io<M::Conn>> {
        let (opens, io) = Self::split_deferred(st);
        for ticket in opens {
            let permanent = false;
            let _ = st
                .engine
                .core
                .handle(now, Completion::OpenFailed { ticket, permanent });
        }
        io
    }

    /// Performs one command's I/O on a thread of its own (inline if the OS refuses a thread),
    /// reports it, and starts what follows.
    pub(super) fn spawn_io(self: &Arc<Self>, task: Io<M::Conn>) {
        if self.hand_over() {
            return self.defer([task], None);
        }
        let shared = Arc::clone(self);
        let slot = Arc::new(Mutex::new(Some(task)));
        let mine = Arc::clone(&slot);
        let spawned = thread::Builder::new()
            .name("sanspool-io".into())
            .spawn(move || shared.perform(&mine));
        if spawned.is_err() {
            self.perform(&slot);
        }
    }

    pub(super) fn perform(self: &Arc<Self>, task: &Mutex<Option<Io<M::Conn>>>) {
        if let Some(task) = task.lock().take() {
            let done = driver::perform(&self.settings, task);
            let next = self.report(done);
            self.run(next);
        }
    }
}
