//! An in-memory connector for the pools' tests: counts what happens, fails on demand, and can hold
//! its connects at a gate.

#![allow(dead_code)]

use sanspool::{Builder, Connector, Returned};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous bound for "did not deadlock".
pub const LONG: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct Counters {
    pub attempts: AtomicUsize,
    pub opens: AtomicUsize,
    pub closes: AtomicUsize,
    pub resets: AtomicUsize,
    pub checks: AtomicUsize,
    /// Connections alive now, and the most alive at once.
    pub alive: AtomicUsize,
    pub peak: AtomicUsize,
    /// Threads inside `connect` right now.
    pub connecting: AtomicUsize,
    pub fail_connect: AtomicBool,
    /// Connect failures are permanent (bad credentials).
    pub permanent: AtomicBool,
    pub fail_check: AtomicBool,
    pub fail_reset: AtomicBool,
    /// Closes fail (the connection is gone all the same).
    pub fail_close: AtomicBool,
    /// Failed resets, checks and closes were cut off at their bound ([`Connector::is_abandoned`]).
    pub abandon: AtomicBool,
    gate: Mutex<bool>,
    gate_cv: Condvar,
}

impl Counters {
    pub fn live(&self) -> usize {
        self.alive.load(SeqCst)
    }

    pub fn get(&self, c: &AtomicUsize) -> usize {
        c.load(SeqCst)
    }

    /// Connects block until `open_gate`.
    pub fn close_gate(&self) {
        *self.gate.lock().unwrap() = true;
    }

    pub fn open_gate(&self) {
        *self.gate.lock().unwrap() = false;
        self.gate_cv.notify_all();
    }
}

#[derive(Clone, Default)]
pub struct Fake(pub Arc<Counters>);

#[derive(Debug)]
pub struct FakeConn {
    pub id: usize,
    pub dirty: bool,
    pub broken: bool,
    /// Shared with the counters, to count closes even when a connection is only dropped.
    counters: Arc<Counters>,
    closed: bool,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        if !self.closed {
            self.counters.closes.fetch_add(1, SeqCst);
            self.counters.alive.fetch_sub(1, SeqCst);
        }
    }
}

#[derive(Debug)]
pub struct FakeError(pub &'static str);

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for FakeError {}

impl Connector for Fake {
    type Conn = FakeConn;
    type Error = FakeError;

    fn is_permanent(&self, _: &FakeError) -> bool {
        self.0.permanent.load(SeqCst)
    }

    fn is_abandoned(&self, error: &FakeError) -> bool {
        error.0 == TIMED_OUT
    }

    fn connect(&self) -> Result<FakeConn, FakeError> {
        let c = &self.0;
        c.attempts.fetch_add(1, SeqCst);
        c.connecting.fetch_add(1, SeqCst);
        let mut gate = c.gate.lock().unwrap();
        while *gate {
            gate = c.gate_cv.wait(gate).unwrap();
        }
        drop(gate);
        c.connecting.fetch_sub(1, SeqCst);
        if c.fail_connect.load(SeqCst) {
            return Err(FakeError("server down"));
        }
        let id = c.opens.fetch_add(1, SeqCst);
        let alive = c.alive.fetch_add(1, SeqCst) + 1;
        c.peak.fetch_max(alive, SeqCst);
        Ok(FakeConn {
            id,
            dirty: false,
            broken: false,
            counters: Arc::clone(c),
            closed: false,
        })
    }

    fn state(&self, conn: &mut FakeConn) -> Returned {
        if conn.broken {
            Returned::Broken
        } else if conn.dirty {
            Returned::Dirty
        } else {
            Returned::Clean
        }
    }

    fn reset(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        self.0.resets.fetch_add(1, SeqCst);
        if self.0.fail_reset.load(SeqCst) {
            return Err(self.failure("reset failed"));
        }
        conn.dirty = false;
        Ok(())
    }

    fn check(&self, _conn: &mut FakeConn) -> Result<(), FakeError> {
        self.0.checks.fetch_add(1, SeqCst);
        if self.0.fail_check.load(SeqCst) {
            return Err(self.failure("check failed"));
        }
        Ok(())
    }

    fn close(&self, mut conn: FakeConn) -> Result<(), FakeError> {
        conn.closed = true;
        self.0.closes.fetch_add(1, SeqCst);
        self.0.alive.fetch_sub(1, SeqCst);
        if self.0.fail_close.load(SeqCst) {
            return Err(self.failure("close failed"));
        }
        Ok(())
    }
}

/// The error of an operation cut off at its bound.
pub const TIMED_OUT: &str = "timed out at its bound";

impl Fake {
    /// A failure: `why`, or cut off at its bound if `abandon` is set.
    fn failure(&self, why: &'static str) -> FakeError {
        FakeError(if self.0.abandon.load(SeqCst) {
            TIMED_OUT
        } else {
            why
        })
    }
}

/// Polls `cond` until it holds; panics after [`LONG`].
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LONG, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A builder over a fresh [`Fake`] for `min..=max` connections, and the fake's counters.
pub fn builder(min: usize, max: usize) -> (Builder<Fake>, Arc<Counters>) {
    let fake = Fake::default();
    let counters = Arc::clone(&fake.0);
    (Builder::new(fake).min(min).max(max), counters)
}
