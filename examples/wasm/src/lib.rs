//! sanspool-core embedded in a custom runtime: the pool compiled to `wasm32-unknown-unknown` (no
//! WASI, no std, no allocator) behind a small C-ABI API, driven by a JavaScript host
//! (`host.mjs`) that does the I/O, keeps the clock and runs the driver loop.
//!
//! Everything crossing the boundary is a number: times are milliseconds (`f64`, JavaScript's
//! number), connections are the host's `u32` ids, keys are `u32` (0: no key), and results are
//! `i32` codes (negative: an [`Error`], see [`error_code`]). The operands of the last checkout or
//! command are read with the `out_*` getters. The API is listed in README.md.
//!
//! Handles: the core's [`Lease`] and [`Ticket`] cannot be made outside it, so this glue keeps the
//! latest one of each per slot and gives the host a code, `issue << 8 | slot`. A code whose issue is
//! not the slot's latest is refused here as stale; the latest one is passed to the core, which
//! checks it as always (a double checkin with it is the core's `AlreadyReturned`).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
compile_error!("build this example for wasm32-unknown-unknown (single-threaded WebAssembly)");

use core::cell::RefCell;
use core::time::Duration;
use sanspool_core::{
    Checkout, Completion, Config, Error, Finished, Fixed, Handoff, Io, Lease, Pool, Rejected,
    Report, Returned, Ticket, Time, Wait, WaiterId,
};

/// Connections the module can hold (`max` is at most this).
const SLOTS: usize = 8;
/// Queued checkouts the module can hold.
const WAITERS: usize = 16;

type HostPool = Pool<u32, u32, Fixed<SLOTS, WAITERS>>;

// ------------------------------------------------------------------------------ the state

/// The latest handle issued for each slot, and its issue number.
struct Handles<H> {
    latest: [Option<(u32, H)>; SLOTS],
    issued: u32,
}

impl<H: Copy + PartialEq> Handles<H> {
    const fn new() -> Self {
        Handles {
            latest: [None; SLOTS],
            issued: 0,
        }
    }

    /// The host's code for `handle`, kept as its slot's latest (the same code again if it is
    /// already).
    fn issue(&mut self, slot: usize, handle: H) -> u32 {
        let issue = match self.latest[slot] {
            Some((issue, h)) if h == handle => issue,
            _ => {
                self.issued = (self.issued + 1) & 0x00ff_ffff;
                self.latest[slot] = Some((self.issued, handle));
                self.issued
            }
        };
        issue << 8 | slot as u32
    }

    /// Forgets every handle (a new pool): the codes issued so far become unknown.
    fn forget(&mut self) {
        self.latest = [None; SLOTS];
    }

    /// The handle a host code names, if it is its slot's latest; else `stale` (an older handle of
    /// the slot) or `unknown`.
    fn get(&self, code: u32, stale: Error, unknown: Error) -> Result<H, Error> {
        match self.latest.get((code & 0xff) as usize) {
            Some(Some((issue, h))) if *issue == code >> 8 => Ok(*h),
            Some(Some((issue, _))) if code >> 8 != 0 && code >> 8 < *issue => Err(stale),
            _ => Err(unknown),
        }
    }
}

/// The operands of the last checkout or command, read with the `out_*` getters.
#[derive(Copy, Clone)]
struct Out {
    handle: u32,
    conn: u32,
    waiter: f64,
    flag: u32,
}

struct Host {
    pool: Option<HostPool>,
    glue: Glue,
}

/// What the glue keeps beside the pool.
struct Glue {
    leases: Handles<Lease>,
    tickets: Handles<Ticket>,
    out: Out,
    /// Checkouts woken to claim a connection (at most one per slot), by id for [`claim`].
    woken: [Option<WaiterId>; SLOTS],
    /// Pools made so far: each one's tag, so that the core refuses another pool's handles too.
    pools: u32,
}

/// The module's one pool.
struct Global(RefCell<Host>);

// SAFETY: the module is built for single-threaded WebAssembly only (the `compile_error!` above
// refuses `atomics`): no other thread can ever see the cell.
unsafe impl Sync for Global {}

static HOST: Global = Global(RefCell::new(Host {
    pool: None,
    glue: Glue {
        leases: Handles::new(),
        tickets: Handles::new(),
        out: Out {
            handle: 0,
            conn: 0,
            waiter: 0.0,
            flag: 0,
        },
        woken: [None; SLOTS],
        pools: 0,
    },
}));

/// Runs `f` on the pool and the glue; `on_none` if `pool_new` was not called (or failed).
fn with<R>(on_none: R, f: impl FnOnce(&mut HostPool, &mut Glue) -> R) -> R {
    let mut host = HOST.0.borrow_mut();
    let Host { pool, glue } = &mut *host;
    match pool {
        Some(pool) => f(pool, glue),
        None => on_none,
    }
}

/// The operands of the last answer.
fn out() -> Out {
    HOST.0.borrow().glue.out
}

// ------------------------------------------------------------------------------ conversions

/// The `i32` code of an error (returned negated). Listed in README.md and host.mjs.
pub fn error_code(e: Error) -> i32 {
    match e {
        Error::Closed => 1,
        Error::Exhausted => 2,
        Error::Unkeyed => 3,
        Error::Foreign => 4,
        Error::AlreadyReturned => 5,
        Error::WrongKey => 6,
        Error::KeyBusy => 7,
        Error::TooManyWaiters => 8,
        Error::UnknownTicket => 9,
        Error::UnknownWaiter => 10,
        Error::Timeout => 11,
        Error::OpenFailed => 12,
        Error::MinAboveMax => 13,
        Error::MaxZero => 14,
        Error::CapacityExceeded => 15,
        Error::InvalidTiming => 16,
    }
}

/// A "no pool" answer: `pool_new` was not called (or failed).
const NO_POOL: i32 = -100;

fn time(ms: f64) -> Time {
    // `as` saturates: negative and NaN give 0, the far future the end of time.
    Time::from_nanos((ms * 1e6) as u64)
}

fn millis(t: Time) -> f64 {
    // Rounded up, so that `handle_timeout` at that millisecond acts.
    t.as_nanos().div_ceil(1_000_000) as f64
}

fn duration(ms: f64) -> Option<Duration> {
    (ms > 0.0).then(|| Duration::from_nanos((ms * 1e6) as u64))
}

fn key(k: u32) -> Option<u32> {
    (k != 0).then_some(k)
}

/// 0, or the error's negated code; `flag` says whether the connection was handed back.
fn rejected(glue: &mut Glue, r: Result<(), Rejected<u32>>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(Rejected { error, conn }) => {
            glue.out.flag = u32::from(conn.is_some());
            glue.out.conn = conn.unwrap_or(0);
            -error_code(error)
        }
    }
}

fn unit(r: Result<(), Error>) -> i32 {
    r.map_or_else(|e| -error_code(e), |()| 0)
}

// ------------------------------------------------------------------------------ the API

/// A new pool (replacing any previous one): `min..=max` connections (`max` at most 8); idle ones
/// beyond `min` closed after `max_idle_ms`, every one after `max_lifetime_ms` (0: never). 0, or a
/// negated error code.
#[no_mangle]
pub extern "C" fn pool_new(min: u32, max: u32, max_idle_ms: f64, max_lifetime_ms: f64) -> i32 {
    let mut host = HOST.0.borrow_mut();
    let glue = &mut host.glue;
    glue.leases.forget();
    glue.tickets.forget();
    glue.pools = glue.pools.wrapping_add(1);
    let config = Config {
        max_idle: duration(max_idle_ms),
        max_lifetime: duration(max_lifetime_ms),
        tag: glue.pools,
        ..Config::new(min as usize, max as usize)
    };
    match HostPool::new(config) {
        Ok(pool) => {
            host.pool = Some(pool);
            0
        }
        Err(e) => {
            host.pool = None;
            -error_code(e)
        }
    }
}

/// A checkout under `key` (0: none), waiting up to `wait_ms` (negative: not at all, psycopg2's
/// `getconn`; `Infinity`: forever). 1 READY (`out_handle` the lease, `out_conn`), 2 HELD
/// (`out_handle`), 3 WAITING (`out_waiter`; the outcome comes as a GRANT or FAIL command), or a
/// negated error code.
#[no_mangle]
pub extern "C" fn checkout(now_ms: f64, key_: u32, wait_ms: f64) -> i32 {
    with(NO_POOL, |pool, glue| {
        let wait = if wait_ms < 0.0 {
            Wait::No
        } else if wait_ms == f64::INFINITY {
            Wait::Forever
        } else {
            Wait::Until(time(now_ms + wait_ms))
        };
        match pool.checkout(time(now_ms), key(key_), wait) {
            Ok(Checkout::Ready { lease, conn }) => {
                glue.out.handle = glue.leases.issue(lease.slot(), lease);
                glue.out.conn = conn;
                1
            }
            Ok(Checkout::Held(lease)) => {
                // The key's lease is the slot's latest: the same code again.
                glue.out.handle = glue.leases.issue(lease.slot(), lease);
                2
            }
            Ok(Checkout::Waiting(w)) => {
                glue.out.waiter = w.get() as f64;
                3
            }
            Err(e) => -error_code(e),
        }
    })
}

/// A woken checkout claims an idle connection: 1 served (`out_handle` the lease, `out_conn`),
/// 3 still queued (someone running took it first), or a negated error code.
#[no_mangle]
pub extern "C" fn claim(now_ms: f64, waiter: f64) -> i32 {
    with(NO_POOL, |pool, glue| {
        let named = glue
            .woken
            .iter_mut()
            .find(|w| w.is_some_and(|w| w.get() as f64 == waiter));
        let Some(id) = named.and_then(Option::take) else {
            return -error_code(Error::UnknownWaiter);
        };
        match pool.claim(time(now_ms), id) {
            Ok(Checkout::Ready { lease, conn }) => {
                glue.out.handle = glue.leases.issue(lease.slot(), lease);
                glue.out.conn = conn;
                1
            }
            Ok(Checkout::Held(_)) | Ok(Checkout::Waiting(_)) => 3,
            Err(e) => -error_code(e),
        }
    })
}

/// A checkin: the lease code, the key to verify (0: none), the connection, and its state (0 clean,
/// 1 dirty: reset before reuse, 2 broken, 3 close it). 0, or a negated error code (`out_flag` 1:
/// the connection is handed back in `out_conn`, the pool did not take it).
#[no_mangle]
pub extern "C" fn checkin(now_ms: f64, lease: u32, key_: u32, conn: u32, state: u32) -> i32 {
    with(NO_POOL, |pool, glue| {
        let returned = match state {
            0 => Returned::Clean,
            1 => Returned::Dirty,
            2 => Returned::Broken,
            _ => Returned::Close,
        };
        let lease = match glue
            .leases
            .get(lease, Error::AlreadyReturned, Error::Unkeyed)
        {
            Ok(lease) => lease,
            Err(error) => {
                let conn = Some(conn);
                return rejected(glue, Err(Rejected { error, conn }));
            }
        };
        let r = pool.checkin(time(now_ms), lease, key(key_).as_ref(), conn, returned);
        rejected(glue, r)
    })
}

/// The next output — I/O first, then hand-offs, then reports (the pool's three queues) — or 0
/// when there is none. 1 OPEN (`out_handle` the ticket), 2 CLOSE (ticket,
/// `out_conn`), 3 RESET (ticket, conn), 4 CHECK (ticket, conn; also a vet before reuse, when the
/// pool vets), 5 GRANT (`out_waiter`, the lease, conn), 6 FAIL (`out_waiter`, `out_flag` the error code), 7 WAKE
/// (`out_waiter`: a connection came back, that checkout should [`claim`] it), 8 LEAK (`out_flag`
/// the slot whose borrower held it past `leak_after`).
#[no_mangle]
pub extern "C" fn next_output() -> i32 {
    with(0, |pool, glue| {
        if let Some(io) = pool.poll_io() {
            let (kind, ticket, conn) = match io {
                Io::Open(t) => (1, t, 0),
                Io::Close { ticket, conn } => (2, ticket, conn),
                Io::Reset { ticket, conn } => (3, ticket, conn),
                Io::Check { ticket, conn } | Io::Vet { ticket, conn } => (4, ticket, conn),
            };
            glue.out.handle = glue.tickets.issue(ticket.slot(), ticket);
            glue.out.conn = conn;
            return kind;
        }
        if let Some(Report::Leak { lease, .. }) = pool.poll_report() {
            glue.out.flag = lease.slot() as u32;
            return 8;
        }
        let Some(handoff) = pool.poll_handoff() else {
            return 0;
        };
        match handoff {
            Handoff::Grant {
                waiter,
                lease,
                conn,
            } => {
                glue.out = Out {
                    handle: glue.leases.issue(lease.slot(), lease),
                    conn,
                    waiter: waiter.get() as f64,
                    flag: 0,
                };
                5
            }
            Handoff::Fail { waiter, error } => {
                glue.out.waiter = waiter.get() as f64;
                glue.out.flag = error_code(error) as u32;
                6
            }
            Handoff::Wake { waiter } => {
                if let Some(free) = glue.woken.iter_mut().find(|w| w.is_none()) {
                    *free = Some(waiter);
                }
                glue.out.waiter = waiter.get() as f64;
                7
            }
        }
    })
}

/// Reports a completion with a ticket code: the host's result for an Open, Reset, Check or Close.
/// `conn`: the connection the completion carries, handed back if the ticket is refused.
fn report(
    now_ms: f64,
    ticket: u32,
    conn: Option<u32>,
    done: impl FnOnce(Ticket) -> Completion<u32>,
) -> i32 {
    with(NO_POOL, |pool, glue| {
        let unknown = Error::UnknownTicket;
        let t = match glue.tickets.get(ticket, unknown, unknown) {
            Ok(t) => t,
            Err(error) => return rejected(glue, Err(Rejected { error, conn })),
        };
        let r = pool.handle(time(now_ms), done(t));
        rejected(glue, r)
    })
}

/// The OPEN with this ticket succeeded: `conn` is the new connection. 0 or a negated error code.
#[no_mangle]
pub extern "C" fn report_opened(now_ms: f64, ticket: u32, conn: u32) -> i32 {
    report(now_ms, ticket, Some(conn), |ticket| Completion::Opened {
        ticket,
        conn,
    })
}

/// The OPEN with this ticket failed (`permanent` 1: it will fail again until something is fixed,
/// so every queued checkout fails now). 0 or a negated error code.
#[no_mangle]
pub extern "C" fn report_open_failed(now_ms: f64, ticket: u32, permanent: u32) -> i32 {
    report(now_ms, ticket, None, |ticket| Completion::OpenFailed {
        ticket,
        permanent: permanent != 0,
    })
}

/// How a RESET, CHECK or CLOSE ended, from the host's outcome code: 1 ok, 2 abandoned (the host
/// gave up at its bound and tore the connection down), anything else (0) failed.
fn finished(outcome: u32) -> Finished {
    match outcome {
        1 => Finished::Ok,
        2 => Finished::Abandoned,
        _ => Finished::Failed,
    }
}

/// The RESET with this ticket finished (`outcome` 1: clean, back in service; 0 failed or 2
/// abandoned: it is closed).
#[no_mangle]
pub extern "C" fn report_reset(now_ms: f64, ticket: u32, conn: u32, outcome: u32) -> i32 {
    report(now_ms, ticket, Some(conn), |ticket| Completion::Reset {
        ticket,
        conn,
        outcome: finished(outcome),
    })
}

/// The CHECK with this ticket finished (`outcome` 1: it works, back among the idle; 0 failed or 2
/// abandoned: it is closed).
#[no_mangle]
pub extern "C" fn report_checked(now_ms: f64, ticket: u32, conn: u32, outcome: u32) -> i32 {
    report(now_ms, ticket, Some(conn), |ticket| Completion::Checked {
        ticket,
        conn,
        outcome: finished(outcome),
    })
}

/// The CLOSE with this ticket is done (`outcome` 1 ok, 0 failed, 2 abandoned: the connection is
/// gone whatever it is).
#[no_mangle]
pub extern "C" fn report_closed(now_ms: f64, ticket: u32, outcome: u32) -> i32 {
    report(now_ms, ticket, None, |ticket| Completion::Closed {
        ticket,
        outcome: finished(outcome),
    })
}

/// When to call `handle_timeout` next, in ms; -1: only inputs matter.
#[no_mangle]
pub extern "C" fn poll_timeout() -> f64 {
    with(-1.0, |pool, _| pool.poll_timeout().map_or(-1.0, millis))
}

/// Time has reached `now_ms`: waiters past their deadline fail, idle connections past their time
/// close, opens delayed by backoff are ordered.
#[no_mangle]
pub extern "C" fn handle_timeout(now_ms: f64) {
    with((), |pool, _| pool.handle_timeout(time(now_ms)));
}

/// Sends every idle connection out for a CHECK: how many, or a negated error code.
#[no_mangle]
pub extern "C" fn check_idle(now_ms: f64) -> i32 {
    with(NO_POOL, |pool, _| match pool.check_idle(time(now_ms)) {
        Ok(n) => n as i32,
        Err(e) => -error_code(e),
    })
}

/// Closes the pool (psycopg2's `closeall`). 0 or a negated error code.
#[no_mangle]
pub extern "C" fn pool_close(now_ms: f64) -> i32 {
    with(NO_POOL, |pool, _| unit(pool.close(time(now_ms))))
}

/// 1 if at least `min` connections are open.
#[no_mangle]
pub extern "C" fn is_warm() -> u32 {
    with(0, |pool, _| u32::from(pool.is_warm()))
}

/// 1 if the pool holds nothing any more (after close: the driver is done).
#[no_mangle]
pub extern "C" fn is_empty() -> u32 {
    with(1, |pool, _| u32::from(pool.is_empty()))
}

/// The lease (checkout, GRANT) or ticket (OPEN, CLOSE, RESET, CHECK) code of the last answer.
#[no_mangle]
pub extern "C" fn out_handle() -> u32 {
    out().handle
}

/// The connection of the last answer.
#[no_mangle]
pub extern "C" fn out_conn() -> u32 {
    out().conn
}

/// The waiter id of the last answer (WAITING, GRANT, FAIL).
#[no_mangle]
pub extern "C" fn out_waiter() -> f64 {
    out().waiter
}

/// FAIL: the error code; a refusal: 1 if the connection is handed back.
#[no_mangle]
pub extern "C" fn out_flag() -> u32 {
    out().flag
}

/// `stats_<name>()`: one of [`Pool::stats`](sanspool_core::Pool::stats)' fields (0 without a pool).
macro_rules! stats {
    ($($export:ident => $field:ident),* $(,)?) => {$(
        #[doc = concat!("`Stats::", stringify!($field), "`.")]
        #[no_mangle]
        pub extern "C" fn $export() -> f64 {
            with(0.0, |pool, _| pool.stats().$field as f64)
        }
    )*};
}

stats! {
    stats_size => size,
    stats_idle => idle,
    stats_in_use => in_use,
    stats_waiting => waiting,
    stats_opening => opening,
    stats_resetting => resetting,
    stats_closing => closing,
    stats_checkouts => checkouts,
    stats_waits => waits,
    stats_timeouts => timeouts,
    stats_opens => opens,
    stats_open_failures => open_failures,
    stats_closes => closes,
    stats_broken_returns => broken_returns,
    stats_resets => resets,
    stats_abandoned_resets => abandoned_resets,
    stats_abandoned_checks => abandoned_checks,
    stats_abandoned_closes => abandoned_closes,
    stats_expired => expired,
}

/// `Stats::wait_time`, in ms.
#[no_mangle]
pub extern "C" fn stats_wait_time_ms() -> f64 {
    with(0.0, |pool, _| pool.stats().wait_time.as_secs_f64() * 1e3)
}

/// A panic (none is expected: the core does not panic, and this glue neither) traps: the host's
/// call throws a `WebAssembly.RuntimeError`.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
