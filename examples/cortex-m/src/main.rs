//! sanspool on a microcontroller: a `no_std`, no-heap firmware whose main loop drives a
//! [`Fixed`] pool of simulated connections through a scripted day — warm-up, keyed checkouts,
//! dirty and broken returns, open failures with backoff, waiters that time out, a resize, a
//! drain, an idle check that hangs (abandoned at its bound), and a close that drains everything — asserting the exact outcome
//! of every step (which connection, which waiter, which error) and the pool's invariants after
//! every step, then printing the stats over semihosting and exiting with success.
//!
//! A failed assertion panics; `panic-semihosting` (feature `exit`) prints it and exits QEMU with
//! a failure code. There is no allocator: the pool lives in a static (`.bss`), every buffer is a
//! `heapless` one of fixed size.
//!
//! Run: `cargo run --release` here (QEMU `mps2-an386`), or `bash scripts/cortex-m.sh` at the root.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::cmp::{max, min};
use core::time::Duration;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use panic_semihosting as _;
use sanspool_core::{
    Checkout, Completion, Config, Error, Finished, Fixed, Handoff, Io, Lease, Pool, Returned,
    Stats, Time, Wait, WaiterId,
};

/// Connection slots and queued checkouts the pool's storage holds: `max` may grow up to `SLOTS`.
const SLOTS: usize = 6;
const WAITERS: usize = 4;

/// Checkout keys, psycopg2's `getconn(key)`.
type Key = &'static str;
type FwPool = Pool<Conn, Key, Fixed<SLOTS, WAITERS>>;

/// A simulated connection: just its number. Not `Clone`: ownership shows where each one is.
#[derive(Debug, PartialEq, Eq)]
struct Conn {
    id: u32,
}

/// What the driver saw while draining commands: the script compares these exactly.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Event {
    /// An `Open` succeeded with this connection.
    Opened(u32),
    /// An `Open` failed (the simulated server is down).
    OpenFailed,
    /// A `Reset` of this connection, and whether it worked.
    Reset(u32, bool),
    /// A `Check` of this idle connection, and whether it passed.
    Checked(u32, bool),
    /// This connection was closed.
    Closed(u32),
    /// A queued checkout received this connection.
    Granted { waiter: u64, conn: u32 },
    /// A queued checkout failed.
    Failed { waiter: u64, error: Error },
    /// A queued checkout was woken and claimed this connection (`None`: someone took it first).
    Claimed { waiter: u64, conn: Option<u32> },
}
use Event::*;

/// The answer to a checkout, by connection id.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Got {
    Ready(u32),
    Held(u32),
    Waiting(u64),
}
use Got::*;

/// A checked-out connection, held by the firmware's "application".
struct Borrowed {
    lease: Lease,
    key: Option<Key>,
    conn: Conn,
}

/// The firmware's driver: performs every command at once against a simulated server whose
/// failures the script sets, and keeps its own books to check the pool's against.
///
/// The main loop's three steps: feed one input (the methods under "inputs"), drain and perform
/// every command ([`Driver::drain_commands`]), sleep until `poll_timeout` and report it
/// ([`Driver::sleep_until_timeout`]: the clock is simulated, so sleeping is setting it).
struct Driver {
    pool: &'static mut FwPool,
    now_ms: u64,
    next_id: u32,
    /// The next this many opens fail.
    fail_opens: u32,
    /// The reset of this connection fails.
    fail_reset: Option<u32>,
    /// The check of this connection hangs: the firmware gives up at its bound and reports it
    /// abandoned.
    hang_check: Option<u32>,
    borrowed: heapless::Vec<Borrowed, SLOTS>,
    waiting: heapless::Vec<(WaiterId, Option<Key>), WAITERS>,
    /// Every waiter id the pool gave, by number.
    issued: heapless::Vec<WaiterId, 16>,
    events: heapless::Vec<Event, 16>,
    /// The firmware's own connection books.
    opened: u64,
    closed: u64,
    detached: u64,
    open_failures: u64,
    /// `max`, or more right after a shrinking resize; comes down as connections leave.
    ceiling: usize,
    steps: u32,
}

fn at_ms(ms: u64) -> Time {
    Time::from_nanos(ms * 1_000_000)
}

impl Driver {
    fn new(pool: &'static mut FwPool) -> Driver {
        let ceiling = pool.config().max;
        let mut d = Driver {
            pool,
            now_ms: 0,
            next_id: 0,
            fail_opens: 0,
            fail_reset: None,
            hang_check: None,
            borrowed: heapless::Vec::new(),
            waiting: heapless::Vec::new(),
            issued: heapless::Vec::new(),
            events: heapless::Vec::new(),
            opened: 0,
            closed: 0,
            detached: 0,
            open_failures: 0,
            ceiling,
            steps: 0,
        };
        d.settle();
        d
    }

    fn now(&self) -> Time {
        at_ms(self.now_ms)
    }

    /// The clock moves on (the main loop slept, or the next input came).
    fn at(&mut self, ms: u64) {
        assert!(ms >= self.now_ms, "the clock goes forward");
        self.now_ms = ms;
    }

    fn event(&mut self, e: Event) {
        self.events.push(e).expect("event log full");
    }

    /// Step 2 of the loop: drain every output — perform each I/O and report its completion,
    /// deliver each hand-off.
    fn drain_commands(&mut self) {
        loop {
            if let Some(io) = self.pool.poll_io() {
                self.perform(io);
            } else if let Some(handoff) = self.pool.poll_handoff() {
                self.deliver(handoff);
            } else if self.pool.poll_report().is_none() {
                // (No `leak_after` here: there are no reports.)
                return;
            }
        }
    }

    fn perform(&mut self, io: Io<Conn>) {
        let now = self.now();
        let done = match io {
            Io::Open(ticket) => {
                if self.fail_opens > 0 {
                    self.fail_opens -= 1;
                    self.open_failures += 1;
                    self.event(OpenFailed);
                    Completion::OpenFailed {
                        ticket,
                        permanent: false,
                    }
                } else {
                    self.next_id += 1;
                    self.opened += 1;
                    self.event(Opened(self.next_id));
                    let conn = Conn { id: self.next_id };
                    Completion::Opened { ticket, conn }
                }
            }
            Io::Close { ticket, conn } => {
                self.closed += 1;
                self.event(Closed(conn.id));
                let outcome = Finished::Ok;
                Completion::Closed { ticket, outcome }
            }
            Io::Reset { ticket, conn } => {
                let ok = self.fail_reset != Some(conn.id);
                self.event(Reset(conn.id, ok));
                let outcome = Finished::from_ok(ok);
                Completion::Reset {
                    ticket,
                    conn,
                    outcome,
                }
            }
            // (This firmware's pool does not vet: a vet would be a check here.)
            Io::Check { ticket, conn } | Io::Vet { ticket, conn } => {
                let ok = self.hang_check != Some(conn.id);
                self.event(Checked(conn.id, ok));
                // A check that hangs is cut off at the firmware's bound (the socket torn
                // down): abandoned, closed as a failed one is, and counted.
                let outcome = if ok {
                    Finished::Ok
                } else {
                    Finished::Abandoned
                };
                Completion::Checked {
                    ticket,
                    conn,
                    outcome,
                }
            }
        };
        if let Err(rejected) = self.pool.handle(now, done) {
            panic!("completion refused: {}", rejected.error);
        }
    }

    fn deliver(&mut self, handoff: Handoff<Conn>) {
        let now = self.now();
        match handoff {
            Handoff::Grant {
                waiter,
                lease,
                conn,
            } => {
                let key = self.unqueue(waiter.get());
                self.event(Granted {
                    waiter: waiter.get(),
                    conn: conn.id,
                });
                self.hold(Borrowed { lease, key, conn });
            }
            Handoff::Wake { waiter } => {
                // A connection came back: the woken checkout claims it (here at once).
                let claimed = match self.pool.claim(now, waiter) {
                    Ok(Checkout::Ready { lease, conn }) => Some((lease, conn)),
                    _ => None,
                };
                let conn = claimed.as_ref().map(|(_, c)| c.id);
                self.event(Claimed {
                    waiter: waiter.get(),
                    conn,
                });
                if let Some((lease, conn)) = claimed {
                    let key = self.unqueue(waiter.get());
                    self.hold(Borrowed { lease, key, conn });
                }
            }
            Handoff::Fail { waiter, error } => {
                self.unqueue(waiter.get());
                self.event(Failed {
                    waiter: waiter.get(),
                    error,
                });
            }
        }
    }

    fn hold(&mut self, b: Borrowed) {
        if self.borrowed.push(b).is_err() {
            panic!("more borrowed connections than slots");
        }
    }

    fn unqueue(&mut self, waiter: u64) -> Option<Key> {
        let pos = self.waiting.iter().position(|w| w.0.get() == waiter);
        let pos = pos.expect("an outcome for a waiter that is not waiting");
        self.waiting.swap_remove(pos).1
    }

    /// After every input: drain, then check the invariants.
    fn settle(&mut self) {
        self.drain_commands();
        self.check();
        self.steps += 1;
    }

    /// The firmware's invariants, from `stats()` and its own books.
    fn check(&mut self) {
        let s = self.pool.stats();
        let cfg_max = self.pool.config().max;
        let cfg_min = self.pool.config().min;
        // Every occupied slot is in exactly one state.
        assert_eq!(
            s.size,
            s.idle + s.in_use + s.opening + s.resetting + s.closing
        );
        // At most `max`, except connections left over from a shrinking resize, as they leave.
        self.ceiling = max(cfg_max, min(self.ceiling, s.size));
        assert!(
            s.size <= self.ceiling,
            "size {} over {}",
            s.size,
            self.ceiling
        );
        // This driver completes every command at once: nothing is in flight between inputs.
        assert_eq!((s.opening, s.resetting, s.closing), (0, 0, 0));
        // Conservation: every connection opened is closed, detached, idle or borrowed.
        let live = self.opened - self.closed - self.detached;
        assert_eq!(
            live,
            (s.idle + s.in_use) as u64,
            "a connection went missing"
        );
        assert_eq!(s.in_use, self.borrowed.len());
        assert_eq!(s.waiting, self.waiting.len());
        // The counters agree with the firmware's books.
        assert_eq!(s.opens, self.opened);
        assert_eq!(s.closes, self.closed);
        assert_eq!(s.open_failures, self.open_failures);
        assert_eq!(s.detached, self.detached);
        // No checkout waits while a connection is idle.
        assert!(s.waiting == 0 || s.idle == 0);
        // Warm means `min` open; a closed pool holds nothing idle, waiting or opening.
        assert_eq!(
            self.pool.is_warm(),
            !self.pool.is_closed() && s.idle + s.in_use + s.resetting >= cfg_min
        );
        if self.pool.is_closed() {
            assert_eq!((s.idle, s.waiting, s.opening), (0, 0, 0));
        }
        // Nothing is overdue after an input: the next deadline is in the future.
        if let Some(t) = self.pool.poll_timeout() {
            assert!(t > self.now(), "a deadline was left behind");
        }
    }

    /// The events of the last inputs, exactly; then the log starts afresh.
    fn expect(&mut self, events: &[Event]) {
        assert_eq!(self.events.as_slice(), events);
        self.events.clear();
    }

    // ------------------------------------------------------------ inputs, each followed by a drain

    fn checkout(&mut self, key: Option<Key>, wait: Wait) -> Result<Got, Error> {
        let out = self.pool.checkout(self.now(), key, wait);
        let got = match out {
            Ok(Checkout::Ready { lease, conn }) => {
                let id = conn.id;
                self.hold(Borrowed { lease, key, conn });
                Ok(Ready(id))
            }
            Ok(Checkout::Held(lease)) => {
                let b = self.borrowed.iter().find(|b| b.lease == lease);
                let b = b.expect("a held lease is borrowed");
                assert_eq!(b.key, key, "held under the key asked for");
                Ok(Held(b.conn.id))
            }
            Ok(Checkout::Waiting(w)) => {
                self.issued.push(w).expect("waiter id log full");
                assert_eq!(w.get() as usize, self.issued.len() - 1, "numbered from 0");
                if self.waiting.push((w, key)).is_err() {
                    panic!("more waiters than the storage holds");
                }
                Ok(Waiting(w.get()))
            }
            Err(e) => Err(e),
        };
        self.settle();
        got
    }

    /// Check in borrowed connection `id`, naming `key` (psycopg2's `putconn(conn, key)`).
    fn checkin(&mut self, id: u32, key: Option<Key>, returned: Returned) -> Result<(), Error> {
        let pos = self.borrowed.iter().position(|b| b.conn.id == id);
        let b = self
            .borrowed
            .swap_remove(pos.expect("checkin of a connection not borrowed"));
        let out = self
            .pool
            .checkin(self.now(), b.lease, key.as_ref(), b.conn, returned);
        let out = match out {
            Ok(()) => Ok(()),
            Err(rejected) => {
                // Refused with the connection handed back: the borrower still has it.
                if let Some(conn) = rejected.conn {
                    self.hold(Borrowed { conn, ..b });
                }
                Err(rejected.error)
            }
        };
        self.settle();
        out
    }

    /// The lease of borrowed connection `id`.
    fn lease(&self, id: u32) -> Lease {
        let b = self.borrowed.iter().find(|b| b.conn.id == id);
        b.expect("not borrowed").lease
    }

    fn detach(&mut self, id: u32) -> Result<(), Error> {
        let pos = self.borrowed.iter().position(|b| b.conn.id == id);
        let b = self
            .borrowed
            .swap_remove(pos.expect("detach of a connection not borrowed"));
        let out = self.pool.detach(self.now(), b.lease);
        if out.is_ok() {
            self.detached += 1;
        } else {
            self.hold(b);
        }
        self.settle();
        out
    }

    fn cancel(&mut self, waiter: u64) -> Result<(), Error> {
        // Waiter ids are made by the pool only: use the one it gave.
        let id = self.issued[waiter as usize];
        let out = self.pool.cancel(self.now(), id);
        if out.is_ok() {
            self.unqueue(waiter);
        }
        self.settle();
        out
    }

    /// Step 3 of the loop: sleep until `poll_timeout`, which must be `expected_ms`, and report it.
    fn sleep_until_timeout(&mut self, expected_ms: u64) {
        assert_eq!(self.pool.poll_timeout(), Some(at_ms(expected_ms)));
        self.at(expected_ms);
        self.pool.handle_timeout(self.now());
        self.settle();
    }

    fn resize(&mut self, min: usize, max: usize) -> Result<(), Error> {
        let size = self.pool.stats().size;
        let out = self.pool.resize(self.now(), min, max);
        if out.is_ok() {
            self.ceiling = core::cmp::max(max, size);
        }
        self.settle();
        out
    }

    fn drain(&mut self) -> Result<(), Error> {
        let out = self.pool.drain(self.now());
        self.settle();
        out
    }

    fn check_idle(&mut self) -> Result<usize, Error> {
        let out = self.pool.check_idle(self.now());
        self.settle();
        out
    }

    fn close(&mut self) -> Result<(), Error> {
        let out = self.pool.close(self.now());
        self.settle();
        out
    }
}

/// Prints one line per part of the day.
macro_rules! part {
    ($d:expr, $what:expr) => {{
        let s = $d.pool.stats();
        hprintln!(
            "[{:>5} ms] {:<48} size {} idle {} in use {} waiting {}",
            $d.now_ms,
            $what,
            s.size,
            s.idle,
            s.in_use,
            s.waiting
        );
    }};
}

/// What the unused stack is painted with, so that the peak use can be read at the end.
const PAINT: u32 = 0xC0DE_CAFE;
/// How much stack below `main`'s frame is painted: far more than the firmware uses.
const PAINT_SPAN: usize = 32 * 1024;

extern "C" {
    /// The top of the stack (cortex-m-rt's `link.x`: the end of RAM).
    static _stack_start: u32;
}

/// Paints `PAINT_SPAN` bytes below this function's frame; returns the lowest address painted.
/// Nothing runs in between (no interrupts are enabled), so the memory is unused until callees
/// push their frames into it.
#[inline(never)]
#[allow(unsafe_code)]
fn paint_stack() -> usize {
    let sp = cortex_m::register::msp::read() as usize;
    let bottom = (sp - PAINT_SPAN) & !3;
    let mut p = bottom;
    while p < (sp - 16) & !3 {
        // SAFETY: stack memory below the stack pointer, unused by anyone now.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
    bottom
}

/// The most stack used since `paint_stack`: from the top of RAM down to the lowest word that
/// no longer holds the paint.
#[allow(unsafe_code)]
fn stack_peak(bottom: usize) -> usize {
    // Only the symbol's address is taken, never its value.
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut p = bottom;
    // SAFETY: reads words of the painted stack region, all below the current frame.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    assert!(p > bottom + 1024, "the stack grew past the painted span");
    top - p
}

#[entry]
fn main() -> ! {
    let painted = paint_stack();
    hprintln!(
        "sanspool-core on a Cortex-M4: Fixed<{}, {}> pool, no heap",
        SLOTS,
        WAITERS
    );
    let config = Config {
        max_waiting: WAITERS,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(1600),
        // The day's script checks each deadline to the nanosecond: no jitter.
        backoff_jitter: false,
        ..Config::new(2, 4)
    };
    // The pool lives in a static (`.bss`), not on the stack: `size` counts it.
    let pool = cortex_m::singleton!(POOL: FwPool = match FwPool::new(config) {
        Ok(pool) => pool,
        Err(e) => panic!("config refused: {}", e),
    });
    let mut d = Driver::new(pool.expect("the pool is made once"));

    // t = 0 s — warm-up: `min` = 2 opens are ordered at once.
    d.expect(&[Opened(1), Opened(2)]);
    assert!(d.pool.is_warm());
    assert_eq!(d.pool.poll_timeout(), None);
    part!(d, "warm-up: 2 of min 2 open");

    // Checkouts: LIFO hands out the most recently returned; a key gets its own connection again.
    d.at(10);
    assert_eq!(d.checkout(Some("sensor"), Wait::No), Ok(Ready(2)));
    assert_eq!(d.checkout(Some("sensor"), Wait::No), Ok(Held(2)));
    assert_eq!(d.checkout(None, Wait::No), Ok(Ready(1)));
    // Nothing idle, room to grow: queued for the open it triggers, served by a fresh connection.
    assert_eq!(d.checkout(None, Wait::No), Ok(Waiting(0)));
    d.expect(&[Opened(3), Granted { waiter: 0, conn: 3 }]);
    part!(d, "checkouts: keyed, held, ready, grown");

    // Returns: a wrong key is refused with the connection handed back; a dirty one is reset.
    d.at(20);
    assert_eq!(
        d.checkin(1, Some("other"), Returned::Clean),
        Err(Error::WrongKey)
    );
    assert_eq!(d.checkin(1, None, Returned::Dirty), Ok(()));
    d.expect(&[Reset(1, true)]);
    assert_eq!(d.checkin(2, Some("sensor"), Returned::Clean), Ok(()));
    d.expect(&[]);
    // A reset that fails closes the connection; 2 idle still meet `min`.
    d.fail_reset = Some(3);
    assert_eq!(d.checkin(3, None, Returned::Dirty), Ok(()));
    d.expect(&[Reset(3, false), Closed(3)]);
    assert_eq!(d.pool.stats().resets, 2);
    part!(d, "returns: wrong key, dirty (reset), reset fails");

    // A broken return is closed and `min` refilled; its lease is stale from then on.
    d.at(30);
    assert_eq!(d.checkout(None, Wait::No), Ok(Ready(2)));
    let stale = d.lease(2);
    assert_eq!(d.checkin(2, None, Returned::Broken), Ok(()));
    d.expect(&[Closed(2), Opened(4)]);
    let again = d
        .pool
        .checkin(d.now(), stale, None, Conn { id: 2 }, Returned::Clean);
    let again = again.expect_err("a double checkin is refused");
    assert_eq!(again.error, Error::AlreadyReturned);
    assert_eq!(
        again.conn,
        Some(Conn { id: 2 }),
        "and the connection handed back"
    );
    d.check();
    part!(d, "broken return: closed, refilled, stale lease");

    // t = 1 s — the server goes down: the next 4 opens fail.
    d.at(1000);
    d.fail_opens = 4;
    assert_eq!(d.checkout(None, Wait::No), Ok(Ready(4)));
    assert_eq!(d.checkout(None, Wait::No), Ok(Ready(1)));
    // A checkout that will not wait hears of its failed open (psycopg2 connects on demand).
    assert_eq!(d.checkout(None, Wait::No), Ok(Waiting(1)));
    d.expect(&[
        OpenFailed,
        Failed {
            waiter: 1,
            error: Error::OpenFailed,
        },
    ]);
    assert_eq!(
        d.pool.poll_timeout(),
        None,
        "no open is wanted: no backoff deadline"
    );
    // One that waits until 00:02 is queued; its open waits out the backoff, doubling from 100 ms.
    assert_eq!(d.checkout(None, Wait::Until(at_ms(2000))), Ok(Waiting(2)));
    d.expect(&[]);
    d.sleep_until_timeout(1100);
    d.expect(&[OpenFailed]);
    d.sleep_until_timeout(1300);
    d.expect(&[OpenFailed]);
    d.sleep_until_timeout(1700);
    d.expect(&[OpenFailed]);
    // The next retry (1700 + 800 ms) comes after the waiter's deadline: it times out first.
    d.sleep_until_timeout(2000);
    d.expect(&[Failed {
        waiter: 2,
        error: Error::Timeout,
    }]);
    assert_eq!(d.pool.poll_timeout(), None);
    part!(d, "server down: 4 failed opens, backoff, timeout");

    // The server is back; both borrowers return.
    d.at(2100);
    assert_eq!(d.checkin(4, None, Returned::Clean), Ok(()));
    assert_eq!(d.checkin(1, None, Returned::Clean), Ok(()));
    d.expect(&[]);
    part!(d, "server back: returns");

    // t = 3 s — the lunch rush: the pool grows to `max` = 4, then checkouts queue with deadlines.
    d.at(3000);
    assert_eq!(d.checkout(Some("a"), Wait::No), Ok(Ready(1)));
    assert_eq!(d.checkout(None, Wait::No), Ok(Ready(4)));
    assert_eq!(d.checkout(None, Wait::No), Ok(Waiting(3)));
    assert_eq!(d.checkout(Some("b"), Wait::No), Ok(Waiting(4)));
    d.expect(&[
        Opened(5),
        Granted { waiter: 3, conn: 5 },
        Opened(6),
        Granted { waiter: 4, conn: 6 },
    ]);
    assert_eq!(d.checkout(None, Wait::No), Err(Error::Exhausted));
    assert_eq!(
        d.checkout(Some("c"), Wait::Until(at_ms(3500))),
        Ok(Waiting(5))
    );
    assert_eq!(d.checkout(None, Wait::Until(at_ms(3300))), Ok(Waiting(6)));
    assert_eq!(d.checkout(Some("c"), Wait::Forever), Err(Error::KeyBusy));
    assert_eq!(d.checkout(Some("a"), Wait::Forever), Ok(Held(1)));
    d.expect(&[]);
    part!(d, "rush: at max, 2 waiting with deadlines");
    d.sleep_until_timeout(3300);
    d.expect(&[Failed {
        waiter: 6,
        error: Error::Timeout,
    }]);
    // A return serves the oldest waiter before its deadline.
    d.at(3400);
    assert_eq!(d.checkin(5, None, Returned::Clean), Ok(()));
    d.expect(&[Granted { waiter: 5, conn: 5 }]);
    assert_eq!(d.pool.poll_timeout(), None);
    // A waiter whose caller went away is cancelled; only once.
    assert_eq!(d.checkout(None, Wait::Forever), Ok(Waiting(7)));
    assert_eq!(d.cancel(7), Ok(()));
    assert_eq!(d.cancel(7), Err(Error::UnknownWaiter));
    d.expect(&[]);
    part!(d, "rush: one timed out, one served, one gone");

    // t = 4 s — resize down to 1..=2 while all 4 are out: they close as they come back.
    d.at(4000);
    assert_eq!(d.resize(1, 2), Ok(()));
    d.expect(&[]);
    assert_eq!(d.checkin(4, None, Returned::Clean), Ok(()));
    d.expect(&[Closed(4)]);
    assert_eq!(d.checkin(6, Some("b"), Returned::Clean), Ok(()));
    d.expect(&[Closed(6)]);
    assert_eq!(d.checkin(5, Some("c"), Returned::Clean), Ok(()));
    d.expect(&[]);
    part!(d, "resize 1..=2: two closed on return");
    // Back up to 2..=4; a borrower detaches its connection, `min` is refilled.
    assert_eq!(d.resize(2, 4), Ok(()));
    d.expect(&[]);
    assert_eq!(d.checkout(None, Wait::No), Ok(Ready(5)));
    assert_eq!(d.detach(5), Ok(()));
    d.expect(&[Opened(7)]);
    part!(d, "resize 2..=4, detach: refilled");

    // t = 5 s — drain (say, the server's credentials rotated): idle ones close now, borrowed ones
    // when they come back; the pool refills with new connections.
    d.at(5000);
    assert_eq!(d.drain(), Ok(()));
    d.expect(&[Closed(7), Opened(8)]);
    assert_eq!(d.checkin(1, Some("a"), Returned::Clean), Ok(()));
    d.expect(&[Closed(1), Opened(9)]);
    part!(d, "drain: old connections retired");

    // t = 6 s — health check of the idle connections: one hangs, is abandoned at the bound and
    // replaced.
    d.at(6000);
    d.hang_check = Some(8);
    assert_eq!(d.check_idle(), Ok(2));
    d.expect(&[Checked(8, false), Checked(9, true), Closed(8), Opened(10)]);
    assert_eq!(d.pool.stats().abandoned_checks, 1);
    part!(d, "check_idle: one hung, abandoned, replaced");

    // t = 7 s — closing time, with a connection out and a checkout waiting on a failed open.
    d.at(7000);
    assert_eq!(d.checkout(Some("x"), Wait::No), Ok(Ready(10)));
    assert_eq!(d.checkout(None, Wait::No), Ok(Ready(9)));
    d.fail_opens = 1;
    assert_eq!(d.checkout(None, Wait::Forever), Ok(Waiting(8)));
    d.expect(&[OpenFailed]);
    assert_eq!(
        d.pool.poll_timeout(),
        Some(at_ms(7100)),
        "the retry after the backoff"
    );
    d.at(7050);
    assert_eq!(d.close(), Ok(()));
    d.expect(&[Failed {
        waiter: 8,
        error: Error::Closed,
    }]);
    assert_eq!(d.pool.poll_timeout(), None);
    assert_eq!(d.checkout(None, Wait::No), Err(Error::Closed));
    assert_eq!(d.close(), Err(Error::Closed));
    assert_eq!(d.resize(1, 1), Err(Error::Closed));
    // Late returns are taken and closed (psycopg2's answer: the pool is closed).
    assert_eq!(
        d.checkin(10, Some("x"), Returned::Clean),
        Err(Error::Closed)
    );
    d.expect(&[Closed(10)]);
    assert_eq!(d.checkin(9, None, Returned::Dirty), Err(Error::Closed));
    d.expect(&[Closed(9)]);
    assert!(d.pool.is_empty());
    assert_eq!(
        d.opened,
        d.closed + d.detached,
        "every connection accounted for"
    );
    part!(d, "close: waiter failed, everything drained");

    let s = d.pool.stats();
    assert_eq!(
        s,
        Stats {
            size: 0,
            idle: 0,
            in_use: 0,
            waiting: 0,
            opening: 0,
            resetting: 0,
            closing: 0,
            checkouts: 14,
            waits: 4,
            wait_time: Duration::from_millis(400),
            timeouts: 2,
            opens: 10,
            open_failures: 5,
            closes: 9,
            broken_returns: 1,
            resets: 2,
            abandoned_resets: 0,
            abandoned_checks: 1,
            abandoned_closes: 0,
            vets: 0,
            stale: 1,
            expired: 0,
            detached: 1,
            leaks: 0,
        }
    );
    print_stats(&s);
    let stack = stack_peak(painted);
    hprintln!(
        "memory: pool {} bytes (static), peak stack {} bytes, heap none",
        core::mem::size_of::<FwPool>(),
        stack
    );
    hprintln!(
        "ok: {} steps, {} connections opened, {} closed, {} detached, invariants held throughout",
        d.steps,
        d.opened,
        d.closed,
        d.detached
    );
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

fn print_stats(s: &Stats) {
    hprintln!(
        "stats: checkouts {} (after waiting {}, {} ms waited), timeouts {}",
        s.checkouts,
        s.waits,
        s.wait_time.as_millis(),
        s.timeouts
    );
    hprintln!(
        "stats: opens {}, open failures {}, closes {}, resets {}, broken returns {}, expired {}, detached {}",
        s.opens,
        s.open_failures,
        s.closes,
        s.resets,
        s.broken_returns,
        s.expired,
        s.detached
    );
    hprintln!(
        "stats: abandoned at their bound: resets {}, checks {}, closes {}",
        s.abandoned_resets,
        s.abandoned_checks,
        s.abandoned_closes
    );
}
