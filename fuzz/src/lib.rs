//! The driver every fuzz target shares: bytes become a pool configuration and a sequence of inputs
//! (through `arbitrary`), a simulated driver feeds them to a [`Pool`] and performs what it is told,
//! and after every step it checks what must always hold:
//!
//! - `assert_invariants()`;
//! - conservation: every connection the pool ever received is, at every moment, exactly one of:
//!   idle inside it, handed out (held by this driver), or inside a command it emitted and nobody
//!   reported back yet (close, reset, check, grant) — counted against the stats, so a connection
//!   lost or duplicated inside the pool shows;
//! - a connection leaves at most once, and never comes back after its close was reported or it was
//!   detached; every handle the pool issues is new (never an alias of an older one);
//! - never more than `max` occupied (a shrinking `resize` may leave more, never add);
//! - handles the driver legitimately holds are accepted; forged, stale and foreign ones are refused
//!   with a typed error and the connection handed back; after `close` no `Open` ever drains;
//! - `handle_timeout(t)` leaves no deadline at or before `t` (no busy loop for the driver);
//! - at the end (closing the pool if needed and serving every command): the pool is empty and every
//!   connection ever opened ended in a close command or was detached.
//!
//! Any violation panics: libFuzzer reports it as a crash.

use arbitrary::Arbitrary;
use sanspool_core::storage::Storage;
use sanspool_core::{
    Checkout, Command, Config, Error, IdleOrder, KeepIdle, Lease, Pool, Rejected, Returned, Ticket,
    Time, Wait, WaiterId,
};
use std::collections::HashSet;
use std::time::Duration;

/// A connection: the driver numbers every one it opens.
pub type Conn = u64;
/// A checkout key.
pub type Key = u8;

const MS: u64 = 1_000_000;
const TAG: u32 = 0x5a5a;
/// Connections the driver makes up for inputs that must be refused.
const BOGUS: Conn = 1 << 48;

/// One fuzz case: the pool's configuration, then the inputs.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub setup: Setup,
    pub ops: Vec<Op>,
}

/// The configuration, in raw form (see [`Setup::config`]).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// `% 6`.
    pub min: u8,
    /// `% 7` (0 is refused: `MaxZero`).
    pub max: u8,
    /// 0..=7 as is, above: 64.
    pub max_waiting: u8,
    pub fifo: bool,
    pub up_to_min: bool,
    pub max_lifetime_ms: Option<u16>,
    /// Taken modulo the lifetime (a jitter not below it is refused: `InvalidTiming`).
    pub jitter_ms: u16,
    pub max_idle_ms: Option<u16>,
    /// 0 is refused (`InvalidTiming`).
    pub backoff_initial_ms: u16,
    pub backoff_max_ms: u16,
    /// Bit 0: lifetime `Duration::MAX`; 1: jitter the largest accepted (lifetime - 1 ns; without a
    /// lifetime, `Duration::MAX`); 2: backoff_initial MAX; 3: backoff_max MAX; 4: max_idle MAX.
    pub huge: u8,
    pub seed: u64,
}

impl Setup {
    pub fn config(&self) -> Config {
        let ms = |v: u16| Duration::from_millis(u64::from(v));
        let huge = |bit: u8, d: Duration| {
            if self.huge & (1 << bit) != 0 {
                Duration::MAX
            } else {
                d
            }
        };
        let max_lifetime = self.max_lifetime_ms.map(|v| huge(0, ms(v)));
        let jitter = match max_lifetime {
            _ if self.huge & 2 == 0 => match self.max_lifetime_ms {
                Some(life) if life > 0 => ms(self.jitter_ms % life),
                _ => ms(self.jitter_ms),
            },
            Some(life) => life.saturating_sub(Duration::from_nanos(1)),
            None => Duration::MAX,
        };
        Config {
            max_waiting: match self.max_waiting {
                n @ 0..=7 => usize::from(n),
                _ => 64,
            },
            keep_idle: if self.up_to_min {
                KeepIdle::UpToMin
            } else {
                KeepIdle::UpToMax
            },
            idle_order: if self.fifo {
                IdleOrder::Fifo
            } else {
                IdleOrder::Lifo
            },
            max_lifetime,
            lifetime_jitter: jitter,
            max_idle: self.max_idle_ms.map(|v| huge(4, ms(v))),
            backoff_initial: huge(2, ms(self.backoff_initial_ms)),
            backoff_max: huge(3, ms(self.backoff_max_ms)),
            seed: self.seed,
            tag: TAG,
            ..Config::new(usize::from(self.min % 6), usize::from(self.max % 7))
        }
    }
}

/// Which handle an input gives back.
#[derive(Arbitrary, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    /// One the driver holds for this input, by index.
    Live(u8),
    /// Any handle ever seen, by index.
    Old(u8),
    /// An old handle's parts with another tag.
    Foreign(u8),
    /// A slot that does not exist.
    NoSlot,
    /// An old handle's slot, a generation never issued.
    FutureGen(u8),
    /// Anything.
    Raw(u32, u16, u32),
}

#[derive(Arbitrary, Copy, Clone, Debug, PartialEq, Eq)]
pub enum KeyArg {
    NoKey,
    /// The key the connection was checked out with.
    Own,
    Key(u8),
}

#[derive(Arbitrary, Copy, Clone, Debug, PartialEq, Eq)]
pub enum WPick {
    Waiting(u8),
    Any(u8),
    Raw(u64),
}

#[derive(Arbitrary, Copy, Clone, Debug, PartialEq, Eq)]
pub enum WaitArg {
    No,
    /// Milliseconds from now.
    Until(u16),
    Forever,
    /// A deadline already past.
    Past,
    /// `Time::from_nanos(u64::MAX)`.
    End,
}

#[derive(Arbitrary, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Back {
    Clean,
    Dirty,
    Broken,
    Close,
}

/// One input (times in milliseconds).
#[derive(Arbitrary, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Key `% 4`.
    Checkout {
        key: Option<u8>,
        wait: WaitArg,
    },
    Checkin {
        lease: Pick,
        key: KeyArg,
        back: Back,
    },
    Detach {
        lease: Pick,
    },
    Cancel {
        waiter: WPick,
    },
    /// Drain up to `n` commands (0: all).
    Poll {
        n: u8,
    },
    /// Drain everything, report every open, reset and close as done, drain again.
    Serve,
    Opened {
        ticket: Pick,
    },
    OpenFailed {
        ticket: Pick,
    },
    ResetDone {
        ticket: Pick,
        ok: bool,
    },
    CloseDone {
        ticket: Pick,
    },
    /// The clock moves, no input.
    Tick {
        ms: u16,
    },
    /// The clock moves and `handle_timeout` runs.
    Timeout {
        ms: u16,
    },
    /// `handle_timeout` at `poll_timeout()`.
    ToDeadline,
    /// `handle_timeout` in the past.
    Backwards {
        ms: u16,
    },
    /// The clock jumps to a few ms before the end of time.
    FarFuture,
    /// `min % 6`, `max % 8`.
    Resize {
        min: u8,
        max: u8,
    },
    Drain,
    CheckIdle,
    Close,
}

type Parts = (u32, u16, u32);

fn lease_parts(l: Lease) -> Parts {
    (l.pool_tag(), l.slot() as u16, l.generation())
}
fn ticket_parts(t: Ticket) -> Parts {
    (t.pool_tag(), t.slot() as u16, t.generation())
}

fn pick<T>(list: &[T], i: u8) -> Option<&T> {
    if list.is_empty() {
        None
    } else {
        list.get(usize::from(i) % list.len())
    }
}

/// What `Config::check_sizes` must answer, for a storage of `capacity` slots.
fn size_error(min: usize, max: usize, capacity: usize) -> Option<Error> {
    if max == 0 {
        Some(Error::MaxZero)
    } else if min > max {
        Some(Error::MinAboveMax)
    } else if max > capacity {
        Some(Error::CapacityExceeded)
    } else {
        None
    }
}

/// What `Config::check_timing` must answer.
fn timing_error(config: &Config) -> Option<Error> {
    let churns = config
        .max_lifetime
        .is_some_and(|d| d.is_zero() || config.lifetime_jitter >= d);
    (churns || config.backoff_initial.is_zero()).then_some(Error::InvalidTiming)
}

struct Held {
    lease: Lease,
    conn: Conn,
    key: Option<Key>,
}

/// The simulated driver.
struct Driver<S: Storage<Conn, Key>> {
    pool: Pool<Conn, Key, S>,
    capacity: usize,
    clock: u64,
    next_conn: Conn,
    next_bogus: Conn,
    held: Vec<Held>,
    opens: Vec<Ticket>,
    resets: Vec<(Ticket, Conn)>,
    closes: Vec<(Ticket, Conn)>,
    waiting: Vec<(WaiterId, Option<Key>)>,
    /// Every handle and waiter id ever issued: a new one must be new.
    seen: HashSet<Parts>,
    history: Vec<Parts>,
    waiters_seen: HashSet<u64>,
    waiter_history: Vec<WaiterId>,
    /// Connections the pool holds (idle, or in a command not drained yet).
    inside: HashSet<Conn>,
    /// Connections closed or detached: they never come back.
    gone: HashSet<Conn>,
    closed: bool,
    ready_seen: bool,
}

/// Runs one case on a pool with storage `S` of `capacity` slots.
pub fn run<S: Storage<Conn, Key>>(input: &Input, capacity: usize) {
    let config = input.setup.config();
    let expected =
        size_error(config.min, config.max, capacity.min(65_535)).or(timing_error(&config));
    let pool = match Pool::<Conn, Key, S>::new(config) {
        Ok(pool) => {
            assert_eq!(expected, None, "a bad configuration was accepted");
            pool
        }
        Err(e) => {
            assert_eq!(
                Some(e),
                expected,
                "configuration refused for the wrong reason"
            );
            return;
        }
    };
    let mut d = Driver {
        pool,
        capacity,
        clock: 0,
        next_conn: 0,
        next_bogus: BOGUS,
        held: Vec::new(),
        opens: Vec::new(),
        resets: Vec::new(),
        closes: Vec::new(),
        waiting: Vec::new(),
        seen: HashSet::new(),
        history: Vec::new(),
        waiters_seen: HashSet::new(),
        waiter_history: Vec::new(),
        inside: HashSet::new(),
        gone: HashSet::new(),
        closed: false,
        ready_seen: false,
    };
    d.check(0);
    for op in &input.ops {
        let before = d.pool.stats().size;
        d.step(*op);
        d.check(before);
    }
    d.finish();
}

impl<S: Storage<Conn, Key>> Driver<S> {
    fn now(&self) -> Time {
        Time::from_nanos(self.clock)
    }

    fn bogus(&mut self) -> Conn {
        self.next_bogus += 1;
        self.next_bogus
    }

    fn issued(&mut self, parts: Parts) {
        assert!(self.seen.insert(parts), "handle {parts:?} issued twice");
        self.history.push(parts);
    }

    fn resolve(&self, p: Pick, live: &[Parts]) -> Option<Parts> {
        let old = |i: u8| pick(&self.history, i).copied().unwrap_or((TAG, 0, 1));
        Some(match p {
            Pick::Live(i) => *pick(live, i)?,
            Pick::Old(i) => *pick(&self.history, i)?,
            Pick::Foreign(i) => {
                let (tag, slot, gen) = old(i);
                (tag ^ 1, slot, gen)
            }
            Pick::NoSlot => (TAG, u16::MAX, 1),
            Pick::FutureGen(i) => (TAG, old(i).1, u32::MAX),
            Pick::Raw(t, s, g) => (t, s, g),
        })
    }

    /// A connection comes out of the pool: it must have been inside, once.
    fn comes_out(&mut self, conn: Conn) {
        assert!(
            self.inside.remove(&conn),
            "connection {conn} came out of the pool but was not in it (lost, duplicated or invented)"
        );
    }

    /// A connection goes into the pool.
    fn goes_in(&mut self, conn: Conn) {
        assert!(!self.gone.contains(&conn));
        assert!(self.inside.insert(conn), "connection {conn} given twice");
    }

    fn step(&mut self, op: Op) {
        let now = self.now();
        match op {
            Op::Checkout { key, wait } => {
                let key = key.map(|k| k % 4);
                let wait = match wait {
                    WaitArg::No => Wait::No,
                    WaitArg::Until(ms) => Wait::Until(Time::from_nanos(
                        self.clock.saturating_add(u64::from(ms) * MS),
                    )),
                    WaitArg::Forever => Wait::Forever,
                    WaitArg::Past => Wait::Until(Time::ZERO),
                    WaitArg::End => Wait::Until(Time::from_nanos(u64::MAX)),
                };
                match self.pool.handle_checkout(now, key, wait) {
                    Ok(Checkout::Ready { lease, conn }) => {
                        self.issued(lease_parts(lease));
                        self.comes_out(conn);
                        self.held.push(Held { lease, conn, key });
                    }
                    Ok(Checkout::Held(lease)) => {
                        assert!(key.is_some(), "Held without a key");
                        assert!(
                            self.held.iter().any(|h| h.lease == lease && h.key == key),
                            "Held names a lease the driver does not hold under that key"
                        );
                    }
                    Ok(Checkout::Waiting(id)) => {
                        assert!(self.waiters_seen.insert(id.get()), "waiter id reused");
                        self.waiter_history.push(id);
                        self.waiting.push((id, key));
                    }
                    Err(e) => {
                        assert_eq!(e == Error::Closed, self.closed, "checkout: {e:?}");
                        assert!(
                            matches!(
                                e,
                                Error::Closed
                                    | Error::Exhausted
                                    | Error::KeyBusy
                                    | Error::TooManyWaiters
                            ),
                            "checkout refused with {e:?}"
                        );
                        if e == Error::KeyBusy {
                            assert!(key.is_some());
                        }
                    }
                }
            }
            Op::Checkin { lease, key, back } => {
                let live: Vec<Parts> = self.held.iter().map(|h| lease_parts(h.lease)).collect();
                let Some(parts) = self.resolve(lease, &live) else {
                    return;
                };
                let held = live.iter().position(|&p| p == parts);
                let conn = match held {
                    Some(i) => self.held[i].conn,
                    None => self.bogus(),
                };
                let (key, right_key) = match key {
                    KeyArg::NoKey => (None, true),
                    KeyArg::Own => (held.and_then(|i| self.held[i].key), true),
                    KeyArg::Key(k) => {
                        let k = k % 4;
                        (Some(k), held.is_some_and(|i| self.held[i].key == Some(k)))
                    }
                };
                let returned = match back {
                    Back::Clean => Returned::Clean,
                    Back::Dirty => Returned::Dirty,
                    Back::Broken => Returned::Broken,
                    Back::Close => Returned::Close,
                };
                let (t, s, g) = parts;
                let r = self.pool.handle_checkin(
                    now,
                    Lease::from_parts(t, s, g),
                    key.as_ref(),
                    conn,
                    returned,
                );
                match r {
                    Ok(()) | Err(Rejected { conn: None, .. }) => {
                        if let Err(Rejected { error, .. }) = r {
                            assert_eq!(
                                error,
                                Error::Closed,
                                "took the connection and said {error:?}"
                            );
                            assert!(self.closed);
                        } else {
                            assert!(!self.closed, "checkin accepted after close");
                        }
                        let i = held.expect("checkin accepted a lease the driver does not hold");
                        self.held.remove(i);
                        self.goes_in(conn);
                    }
                    Err(Rejected {
                        error,
                        conn: Some(back),
                    }) => {
                        assert_eq!(back, conn, "checkin handed back another connection");
                        assert!(
                            matches!(
                                error,
                                Error::Unkeyed
                                    | Error::Foreign
                                    | Error::AlreadyReturned
                                    | Error::WrongKey
                            ),
                            "checkin refused with {error:?}"
                        );
                        if error == Error::Foreign {
                            assert_ne!(t, TAG);
                        }
                        assert!(
                            held.is_none() || !right_key,
                            "a held lease with its key was refused: {error:?}"
                        );
                    }
                }
            }
            Op::Detach { lease } => {
                let live: Vec<Parts> = self.held.iter().map(|h| lease_parts(h.lease)).collect();
                let Some(parts) = self.resolve(lease, &live) else {
                    return;
                };
                let held = live.iter().position(|&p| p == parts);
                let (t, s, g) = parts;
                match self.pool.handle_detach(now, Lease::from_parts(t, s, g)) {
                    Ok(()) => {
                        let i = held.expect("detach accepted a lease the driver does not hold");
                        let h = self.held.remove(i);
                        self.gone.insert(h.conn);
                    }
                    Err(e) => {
                        assert!(held.is_none(), "a held lease could not detach: {e:?}");
                        assert!(matches!(
                            e,
                            Error::Unkeyed | Error::Foreign | Error::AlreadyReturned
                        ));
                    }
                }
            }
            Op::Cancel { waiter } => {
                let id = match waiter {
                    WPick::Waiting(i) => match pick(&self.waiting, i) {
                        Some(&(id, _)) => id,
                        None => return,
                    },
                    WPick::Any(i) => match pick(&self.waiter_history, i) {
                        Some(&id) => id,
                        None => return,
                    },
                    WPick::Raw(n) => WaiterId::from_raw(n),
                };
                match self.pool.handle_cancel(now, id) {
                    Ok(()) => {
                        let i = self
                            .waiting
                            .iter()
                            .position(|w| w.0 == id)
                            .expect("cancelled a waiter the driver does not wait on");
                        self.waiting.remove(i);
                    }
                    Err(e) => assert_eq!(e, Error::UnknownWaiter),
                }
            }
            Op::Poll { n } => {
                let mut left = if n == 0 { usize::MAX } else { usize::from(n) };
                while left > 0 && self.poll_one() {
                    left -= 1;
                }
            }
            Op::Serve => self.serve(),
            Op::Opened { ticket } | Op::OpenFailed { ticket } => {
                let live: Vec<Parts> = self.opens.iter().map(|&t| ticket_parts(t)).collect();
                let Some(parts) = self.resolve(ticket, &live) else {
                    return;
                };
                let pending = live.iter().position(|&p| p == parts);
                let (t, s, g) = parts;
                let ticket = Ticket::from_parts(t, s, g);
                let accepted = if let Op::Opened { .. } = op {
                    self.next_conn += 1;
                    let conn = self.next_conn;
                    match self.pool.handle_opened(now, ticket, conn) {
                        Ok(()) => {
                            self.goes_in(conn);
                            true
                        }
                        Err(r) => {
                            assert_eq!(r.conn, Some(conn), "refused open kept the connection");
                            assert_eq!(r.error, Error::UnknownTicket);
                            false
                        }
                    }
                } else {
                    match self.pool.handle_open_failed(now, ticket) {
                        Ok(()) => true,
                        Err(e) => {
                            assert_eq!(e, Error::UnknownTicket);
                            false
                        }
                    }
                };
                match (accepted, pending) {
                    (true, Some(i)) => {
                        self.opens.remove(i);
                    }
                    (true, None) => panic!("an open the driver was not asked for was accepted"),
                    (false, Some(_)) => panic!("a pending open's report was refused"),
                    (false, None) => {}
                }
            }
            Op::ResetDone { ticket, ok } => {
                let live: Vec<Parts> = self.resets.iter().map(|r| ticket_parts(r.0)).collect();
                let Some(parts) = self.resolve(ticket, &live) else {
                    return;
                };
                let pending = live.iter().position(|&p| p == parts);
                let conn = match pending {
                    Some(i) => self.resets[i].1,
                    None => self.bogus(),
                };
                let (t, s, g) = parts;
                match self
                    .pool
                    .handle_reset(now, Ticket::from_parts(t, s, g), conn, ok)
                {
                    Ok(()) => {
                        let i = pending.expect("a reset the driver was not asked for was accepted");
                        self.resets.remove(i);
                        self.goes_in(conn);
                    }
                    Err(r) => {
                        assert!(pending.is_none(), "a pending reset's report was refused");
                        assert_eq!(r.conn, Some(conn));
                        assert_eq!(r.error, Error::UnknownTicket);
                    }
                }
            }
            Op::CloseDone { ticket } => {
                let live: Vec<Parts> = self.closes.iter().map(|c| ticket_parts(c.0)).collect();
                let Some(parts) = self.resolve(ticket, &live) else {
                    return;
                };
                let pending = live.iter().position(|&p| p == parts);
                let (t, s, g) = parts;
                match self.pool.handle_closed(now, Ticket::from_parts(t, s, g)) {
                    Ok(()) => {
                        let i = pending.expect("a close the driver was not asked for was accepted");
                        let (_, conn) = self.closes.remove(i);
                        self.gone.insert(conn);
                    }
                    Err(e) => {
                        assert!(pending.is_none(), "a pending close's report was refused");
                        assert_eq!(e, Error::UnknownTicket);
                    }
                }
            }
            Op::Tick { ms } => self.clock = self.clock.saturating_add(u64::from(ms) * MS),
            Op::Timeout { ms } => {
                self.clock = self.clock.saturating_add(u64::from(ms) * MS);
                self.timeout(self.now());
            }
            Op::ToDeadline => {
                if let Some(t) = self.pool.poll_timeout() {
                    self.clock = self.clock.max(t.as_nanos());
                    self.timeout(self.now());
                }
            }
            Op::Backwards { ms } => {
                let then = self.clock.saturating_sub(u64::from(ms) * MS);
                self.timeout(Time::from_nanos(then));
            }
            Op::FarFuture => self.clock = self.clock.max(u64::MAX - 10 * MS),
            Op::Resize { min, max } => {
                let (min, max) = (usize::from(min % 6), usize::from(max % 8));
                let expected =
                    size_error(min, max, self.capacity).or(self.closed.then_some(Error::Closed));
                assert_eq!(self.pool.resize(now, min, max).err(), expected, "resize");
            }
            Op::Drain => {
                let expected = self.closed.then_some(Error::Closed);
                assert_eq!(self.pool.drain(now).err(), expected, "drain");
            }
            Op::CheckIdle => {
                let idle = self.pool.stats().idle;
                match self.pool.check_idle(now) {
                    Ok(n) => assert_eq!(n, idle, "check_idle sent another count than idle"),
                    Err(e) => assert!(e == Error::Closed && self.closed),
                }
            }
            Op::Close => match self.pool.close(now) {
                Ok(()) => {
                    assert!(!self.closed);
                    self.closed = true;
                }
                Err(e) => assert!(e == Error::Closed && self.closed),
            },
        }
    }

    fn timeout(&mut self, at: Time) {
        self.pool.handle_timeout(at);
        if let Some(t) = self.pool.poll_timeout() {
            assert!(
                t > self.pool.now(),
                "after handle_timeout({:?}) the next deadline is still {t:?}",
                self.pool.now()
            );
        }
    }

    /// Drains one command and acts on it as a driver would (the outcome is reported later).
    fn poll_one(&mut self) -> bool {
        let Some(cmd) = self.pool.poll_command() else {
            return false;
        };
        match cmd {
            Command::Open(t) => {
                assert!(!self.closed, "an Open drained after close");
                self.issued(ticket_parts(t));
                self.opens.push(t);
            }
            Command::Close { ticket, conn } => {
                self.issued(ticket_parts(ticket));
                self.comes_out(conn);
                self.closes.push((ticket, conn));
            }
            Command::Reset { ticket, conn } | Command::Check { ticket, conn } => {
                self.issued(ticket_parts(ticket));
                self.comes_out(conn);
                self.resets.push((ticket, conn));
            }
            Command::Grant {
                waiter,
                lease,
                conn,
            } => {
                self.issued(lease_parts(lease));
                self.comes_out(conn);
                let i = self
                    .waiting
                    .iter()
                    .position(|w| w.0 == waiter)
                    .expect("grant to a waiter nobody waits on");
                let (_, key) = self.waiting.remove(i);
                self.held.push(Held { lease, conn, key });
            }
            Command::Fail { waiter, error } => {
                let i = self
                    .waiting
                    .iter()
                    .position(|w| w.0 == waiter)
                    .expect("failure of a waiter nobody waits on");
                self.waiting.remove(i);
                assert!(
                    matches!(
                        error,
                        Error::Timeout | Error::Closed | Error::OpenFailed | Error::Exhausted
                    ),
                    "a waiter failed with {error:?}"
                );
            }
            Command::Ready => {
                assert!(!self.ready_seen, "Ready emitted twice");
                self.ready_seen = true;
            }
        }
        true
    }

    /// A well-behaved driver catches up: every command drained and every operation reported done.
    fn serve(&mut self) {
        while self.poll_one() {}
        let now = self.now();
        while let Some(t) = self.opens.pop() {
            self.next_conn += 1;
            let conn = self.next_conn;
            self.pool
                .handle_opened(now, t, conn)
                .expect("a pending open's report was refused");
            self.goes_in(conn);
        }
        while let Some((t, conn)) = self.resets.pop() {
            self.pool
                .handle_reset(now, t, conn, true)
                .expect("a pending reset's report was refused");
            self.goes_in(conn);
        }
        while let Some((t, conn)) = self.closes.pop() {
            self.pool
                .handle_closed(now, t)
                .expect("a pending close's report was refused");
            self.gone.insert(conn);
        }
        while self.poll_one() {}
    }

    /// What must hold after every step.
    fn check(&self, size_before: usize) {
        self.pool.assert_invariants();
        let st = self.pool.stats();
        assert_eq!(
            st.size,
            st.opening + st.idle + st.in_use + st.resetting + st.closing
        );
        let undrained = |total: usize, with_driver: usize, what: &str| {
            assert!(
                total >= with_driver,
                "stats count {total} {what}, the driver alone has {with_driver}"
            );
            total - with_driver
        };
        let grants = undrained(st.in_use, self.held.len(), "in use");
        let resets = undrained(st.resetting, self.resets.len(), "resetting");
        let closes = undrained(st.closing, self.closes.len(), "closing");
        undrained(st.opening, self.opens.len(), "opening");
        assert!(st.waiting <= self.waiting.len());
        assert_eq!(
            self.inside.len(),
            st.idle + grants + resets + closes,
            "conservation: connections inside the pool vs idle + undrained grants, resets, closes"
        );
        assert!(
            st.size <= self.pool.config().max.max(size_before),
            "{} occupied with max {} (was {size_before})",
            st.size,
            self.pool.config().max
        );
        if self.closed {
            assert!(self.pool.is_closed());
            assert_eq!(st.idle, 0);
            assert_eq!(st.waiting, 0);
        }
    }

    /// Close (if not yet) and serve until nothing is left: every connection must end closed.
    fn finish(&mut self) {
        if !self.closed {
            self.pool.close(self.now()).expect("close");
            self.closed = true;
            self.check(usize::MAX);
        }
        for _ in 0..64 {
            while self.poll_one() {}
            let now = self.now();
            while let Some(h) = self.held.pop() {
                let r = self
                    .pool
                    .handle_checkin(now, h.lease, None, h.conn, Returned::Clean);
                match r {
                    Err(Rejected {
                        error: Error::Closed,
                        conn: None,
                    }) => self.goes_in(h.conn),
                    other => panic!("checkin after close answered {other:?}"),
                }
            }
            self.serve();
            self.check(usize::MAX);
            if self.held.is_empty() && self.pool.is_empty() {
                break;
            }
        }
        assert!(self.pool.is_empty(), "closed and served, yet not empty");
        assert!(
            self.inside.is_empty(),
            "connections left inside: {:?}",
            self.inside
        );
        assert!(self.waiting.is_empty(), "waiters never told");
        let st = self.pool.stats();
        assert_eq!(
            st.opens,
            st.closes + st.detached,
            "every connection opened must end closed or detached"
        );
    }
}

/// The inverse of the `Arbitrary` decoding, to write meaningful seeds by hand (`examples/seeds`).
/// `decode(encode(x)) == x` is tested below for every seed.
pub mod encode {
    use super::*;

    /// Bytes that `arbitrary` decodes back into the value.
    pub trait Encode {
        fn encode(&self, out: &mut Vec<u8>);
    }

    macro_rules! ints {
        ($($t:ty),*) => {$(
            impl Encode for $t {
                fn encode(&self, out: &mut Vec<u8>) {
                    out.extend_from_slice(&self.to_le_bytes());
                }
            }
        )*};
    }
    ints!(u8, u16, u32, u64);

    impl Encode for bool {
        fn encode(&self, out: &mut Vec<u8>) {
            out.push(u8::from(*self));
        }
    }

    impl<T: Encode> Encode for Option<T> {
        fn encode(&self, out: &mut Vec<u8>) {
            self.is_some().encode(out);
            if let Some(v) = self {
                v.encode(out);
            }
        }
    }

    /// A derived enum reads a `u32` and takes variant `(x * count) >> 32`.
    fn variant(out: &mut Vec<u8>, index: u64, count: u64) {
        let x = (index << 32).div_ceil(count);
        (x as u32).encode(out);
    }

    impl Encode for Pick {
        fn encode(&self, out: &mut Vec<u8>) {
            match *self {
                Pick::Live(i) => (variant(out, 0, 6), i.encode(out)).1,
                Pick::Old(i) => (variant(out, 1, 6), i.encode(out)).1,
                Pick::Foreign(i) => (variant(out, 2, 6), i.encode(out)).1,
                Pick::NoSlot => variant(out, 3, 6),
                Pick::FutureGen(i) => (variant(out, 4, 6), i.encode(out)).1,
                Pick::Raw(t, s, g) => {
                    variant(out, 5, 6);
                    t.encode(out);
                    s.encode(out);
                    g.encode(out);
                }
            }
        }
    }

    impl Encode for KeyArg {
        fn encode(&self, out: &mut Vec<u8>) {
            match *self {
                KeyArg::NoKey => variant(out, 0, 3),
                KeyArg::Own => variant(out, 1, 3),
                KeyArg::Key(k) => (variant(out, 2, 3), k.encode(out)).1,
            }
        }
    }

    impl Encode for WPick {
        fn encode(&self, out: &mut Vec<u8>) {
            match *self {
                WPick::Waiting(i) => (variant(out, 0, 3), i.encode(out)).1,
                WPick::Any(i) => (variant(out, 1, 3), i.encode(out)).1,
                WPick::Raw(n) => (variant(out, 2, 3), n.encode(out)).1,
            }
        }
    }

    impl Encode for WaitArg {
        fn encode(&self, out: &mut Vec<u8>) {
            match *self {
                WaitArg::No => variant(out, 0, 5),
                WaitArg::Until(ms) => (variant(out, 1, 5), ms.encode(out)).1,
                WaitArg::Forever => variant(out, 2, 5),
                WaitArg::Past => variant(out, 3, 5),
                WaitArg::End => variant(out, 4, 5),
            }
        }
    }

    impl Encode for Back {
        fn encode(&self, out: &mut Vec<u8>) {
            let i = match self {
                Back::Clean => 0,
                Back::Dirty => 1,
                Back::Broken => 2,
                Back::Close => 3,
            };
            variant(out, i, 4);
        }
    }

    impl Encode for Op {
        fn encode(&self, out: &mut Vec<u8>) {
            const N: u64 = 19;
            match *self {
                Op::Checkout { key, wait } => {
                    variant(out, 0, N);
                    key.encode(out);
                    wait.encode(out);
                }
                Op::Checkin { lease, key, back } => {
                    variant(out, 1, N);
                    lease.encode(out);
                    key.encode(out);
                    back.encode(out);
                }
                Op::Detach { lease } => (variant(out, 2, N), lease.encode(out)).1,
                Op::Cancel { waiter } => (variant(out, 3, N), waiter.encode(out)).1,
                Op::Poll { n } => (variant(out, 4, N), n.encode(out)).1,
                Op::Serve => variant(out, 5, N),
                Op::Opened { ticket } => (variant(out, 6, N), ticket.encode(out)).1,
                Op::OpenFailed { ticket } => (variant(out, 7, N), ticket.encode(out)).1,
                Op::ResetDone { ticket, ok } => {
                    variant(out, 8, N);
                    ticket.encode(out);
                    ok.encode(out);
                }
                Op::CloseDone { ticket } => (variant(out, 9, N), ticket.encode(out)).1,
                Op::Tick { ms } => (variant(out, 10, N), ms.encode(out)).1,
                Op::Timeout { ms } => (variant(out, 11, N), ms.encode(out)).1,
                Op::ToDeadline => variant(out, 12, N),
                Op::Backwards { ms } => (variant(out, 13, N), ms.encode(out)).1,
                Op::FarFuture => variant(out, 14, N),
                Op::Resize { min, max } => {
                    variant(out, 15, N);
                    min.encode(out);
                    max.encode(out);
                }
                Op::Drain => variant(out, 16, N),
                Op::CheckIdle => variant(out, 17, N),
                Op::Close => variant(out, 18, N),
            }
        }
    }

    impl Encode for Setup {
        fn encode(&self, out: &mut Vec<u8>) {
            self.min.encode(out);
            self.max.encode(out);
            self.max_waiting.encode(out);
            self.fifo.encode(out);
            self.up_to_min.encode(out);
            self.max_lifetime_ms.encode(out);
            self.jitter_ms.encode(out);
            self.max_idle_ms.encode(out);
            self.backoff_initial_ms.encode(out);
            self.backoff_max_ms.encode(out);
            self.huge.encode(out);
            self.seed.encode(out);
        }
    }

    impl Encode for Input {
        fn encode(&self, out: &mut Vec<u8>) {
            self.setup.encode(out);
            for op in &self.ops {
                true.encode(out);
                op.encode(out);
            }
        }
    }

    /// The bytes of `input`.
    pub fn to_bytes(input: &Input) -> Vec<u8> {
        let mut out = Vec::new();
        input.encode(&mut out);
        out
    }
}

/// Hand-written seeds: each walks one area of the pool's rules.
pub mod seeds {
    use super::{Back, Input, KeyArg, Op, Pick, Setup, WPick, WaitArg};
    use Op::*;
    use Pick::*;

    fn setup(min: u8, max: u8) -> Setup {
        Setup {
            min,
            max,
            max_waiting: 255,
            fifo: false,
            up_to_min: false,
            max_lifetime_ms: None,
            jitter_ms: 0,
            max_idle_ms: None,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            huge: 0,
            seed: 0x5eed,
        }
    }

    fn out(key: Option<u8>, wait: WaitArg) -> Op {
        Checkout { key, wait }
    }

    fn back(back: Back) -> Op {
        Checkin {
            lease: Live(0),
            key: KeyArg::Own,
            back,
        }
    }

    /// `(name, input)`, each small enough for every fixed capacity (max <= 3).
    pub fn all() -> Vec<(&'static str, Input)> {
        vec![
            (
                "psycopg2-getconn-putconn",
                Input {
                    setup: Setup {
                        up_to_min: true,
                        ..setup(1, 2)
                    },
                    ops: vec![
                        Serve,
                        out(Some(0), WaitArg::No),
                        out(Some(0), WaitArg::No),
                        out(None, WaitArg::No),
                        Serve,
                        out(None, WaitArg::No),
                        back(Back::Dirty),
                        Serve,
                        back(Back::Clean),
                        Serve,
                        Close,
                        Close,
                    ],
                },
            ),
            (
                "waiters-and-timeouts",
                Input {
                    setup: setup(0, 1),
                    ops: vec![
                        out(None, WaitArg::Forever),
                        out(Some(1), WaitArg::Until(50)),
                        out(Some(1), WaitArg::Until(500)),
                        out(None, WaitArg::Until(500)),
                        Serve,
                        Timeout { ms: 100 },
                        Poll { n: 0 },
                        back(Back::Clean),
                        Poll { n: 0 },
                        ToDeadline,
                        Serve,
                        Cancel {
                            waiter: WPick::Waiting(0),
                        },
                    ],
                },
            ),
            (
                "open-failures-backoff",
                Input {
                    setup: Setup {
                        backoff_max_ms: 1_000,
                        ..setup(2, 3)
                    },
                    ops: vec![
                        Poll { n: 0 },
                        OpenFailed { ticket: Live(0) },
                        out(None, WaitArg::No),
                        out(None, WaitArg::Until(150)),
                        Poll { n: 0 },
                        OpenFailed { ticket: Live(0) },
                        OpenFailed { ticket: Live(0) },
                        Poll { n: 0 },
                        Timeout { ms: 150 },
                        Poll { n: 0 },
                        OpenFailed { ticket: Live(0) },
                        ToDeadline,
                        ToDeadline,
                        Serve,
                    ],
                },
            ),
            (
                "lifetime-idle-expiry",
                Input {
                    setup: Setup {
                        max_lifetime_ms: Some(500),
                        jitter_ms: 100,
                        max_idle_ms: Some(300),
                        ..setup(1, 3)
                    },
                    ops: vec![
                        Serve,
                        out(None, WaitArg::Forever),
                        out(None, WaitArg::Forever),
                        out(None, WaitArg::Forever),
                        Serve,
                        back(Back::Clean),
                        back(Back::Clean),
                        Tick { ms: 350 },
                        ToDeadline,
                        Serve,
                        Tick { ms: 400 },
                        back(Back::Dirty),
                        out(None, WaitArg::No),
                        ToDeadline,
                        Serve,
                    ],
                },
            ),
            (
                "resize-drain-check",
                Input {
                    setup: setup(2, 3),
                    ops: vec![
                        Serve,
                        out(Some(2), WaitArg::Forever),
                        out(None, WaitArg::Forever),
                        out(None, WaitArg::Forever),
                        Serve,
                        back(Back::Clean),
                        Resize { min: 0, max: 1 },
                        Poll { n: 0 },
                        back(Back::Clean),
                        Serve,
                        Drain,
                        Serve,
                        Resize { min: 2, max: 3 },
                        Serve,
                        CheckIdle,
                        Poll { n: 0 },
                        ResetDone {
                            ticket: Live(0),
                            ok: false,
                        },
                        Serve,
                    ],
                },
            ),
            (
                "bad-handles",
                Input {
                    setup: setup(1, 2),
                    ops: vec![
                        Serve,
                        out(Some(3), WaitArg::No),
                        Checkin {
                            lease: Live(0),
                            key: KeyArg::Key(1),
                            back: Back::Clean,
                        },
                        Checkin {
                            lease: Foreign(0),
                            key: KeyArg::NoKey,
                            back: Back::Clean,
                        },
                        Checkin {
                            lease: NoSlot,
                            key: KeyArg::NoKey,
                            back: Back::Clean,
                        },
                        Checkin {
                            lease: FutureGen(0),
                            key: KeyArg::NoKey,
                            back: Back::Clean,
                        },
                        back(Back::Clean),
                        Checkin {
                            lease: Old(1),
                            key: KeyArg::NoKey,
                            back: Back::Clean,
                        },
                        Detach { lease: Old(1) },
                        Opened { ticket: Old(0) },
                        CloseDone {
                            ticket: Raw(0, 0, 0),
                        },
                        ResetDone {
                            ticket: Old(1),
                            ok: true,
                        },
                        Cancel {
                            waiter: WPick::Raw(7),
                        },
                    ],
                },
            ),
            (
                "close-with-everything-in-flight",
                Input {
                    setup: setup(2, 3),
                    ops: vec![
                        Poll { n: 1 },
                        Opened { ticket: Live(0) },
                        out(None, WaitArg::No),
                        out(None, WaitArg::Forever),
                        out(None, WaitArg::Forever),
                        Poll { n: 2 },
                        back(Back::Dirty),
                        Poll { n: 0 },
                        Close,
                        Poll { n: 0 },
                        Opened { ticket: Live(0) },
                        ResetDone {
                            ticket: Live(0),
                            ok: true,
                        },
                        Serve,
                    ],
                },
            ),
            (
                "fifo-keep-up-to-min",
                Input {
                    setup: Setup {
                        fifo: true,
                        up_to_min: true,
                        ..setup(1, 3)
                    },
                    ops: vec![
                        out(Some(0), WaitArg::Forever),
                        out(Some(1), WaitArg::Forever),
                        out(Some(2), WaitArg::Forever),
                        Serve,
                        back(Back::Clean),
                        back(Back::Broken),
                        back(Back::Close),
                        Serve,
                        out(Some(0), WaitArg::No),
                        Detach { lease: Live(0) },
                        Serve,
                    ],
                },
            ),
            (
                "end-of-time",
                Input {
                    setup: Setup {
                        max_lifetime_ms: Some(1),
                        huge: 0b1_1111,
                        max_idle_ms: Some(1),
                        ..setup(1, 2)
                    },
                    ops: vec![
                        Serve,
                        out(None, WaitArg::End),
                        out(None, WaitArg::Past),
                        Serve,
                        FarFuture,
                        Timeout { ms: 65_535 },
                        out(None, WaitArg::Until(65_535)),
                        Poll { n: 0 },
                        OpenFailed { ticket: Live(0) },
                        ToDeadline,
                        Backwards { ms: 65_535 },
                        Serve,
                    ],
                },
            ),
            (
                "tiny-waiter-bound",
                Input {
                    setup: Setup {
                        max_waiting: 1,
                        ..setup(0, 1)
                    },
                    ops: vec![
                        out(None, WaitArg::Forever),
                        out(None, WaitArg::Forever),
                        out(Some(0), WaitArg::No),
                        Poll { n: 0 },
                        Close,
                        out(None, WaitArg::Forever),
                        Resize { min: 0, max: 2 },
                    ],
                },
            ),
        ]
    }

    #[cfg(test)]
    mod tests {
        use super::super::encode::to_bytes;
        use super::super::run;
        use super::*;
        use arbitrary::{Arbitrary, Unstructured};

        #[test]
        fn seeds_decode_to_themselves() {
            for (name, input) in all() {
                let bytes = to_bytes(&input);
                let back = Input::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
                assert_eq!(back, input, "{name}");
            }
        }

        #[test]
        fn seeds_pass() {
            for (name, input) in all() {
                let pool = sanspool_core::AllocPool::<u64, u8>::new(input.setup.config());
                assert!(pool.is_ok(), "seed {name} builds no pool: {:?}", pool.err());
                run::<sanspool_core::Alloc>(&input, usize::MAX);
                run::<sanspool_core::Fixed<3, 2>>(&input, 3);
                run::<sanspool_core::Fixed<1, 1>>(&input, 1);
            }
        }
    }
}
