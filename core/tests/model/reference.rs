//! The reference model: psycopg2's pool plus waiting, written from the outside.
//!
//! It knows what a user and a driver can observe and nothing of how the core keeps it: which
//! connections exist (by the ids the simulated driver gives them: 1, 2, 3... in open order),
//! which are idle and in which order, which are lent to whom under which key, who waits in line
//! and until when, how many opens are on their way, the backoff after failed opens, and what the
//! driver has been told but not yet read. No slots, generations or sequence numbers: a handle the
//! user gives back is judged by what it named when it was handed out.
//!
//! The rules come from the `Pool` docs (core/src/pool/mod.rs) and psycopg2's
//! `AbstractConnectionPool`: `getconn` takes an idle connection or opens one, up to `max`, else
//! "connection pool exhausted"; `putconn` keeps a connection (up to `min` idle in psycopg2's
//! mode) or closes it; `closeall` closes everything. Waiting adds a line served oldest first —
//! strictly, or (a fairness bound) by waking waiters to claim a returned connection that a
//! running checkout may take first, until the oldest has waited the bound — and then strictly
//! until the line drains or a waiter is served in under half the bound (Go's mutex modes).
//!
//! The model also plays the simulated driver's part of each op (which handle a pick names, in
//! which order `Serve` performs its work), since that decides the input the pool gets.

use sanspool_core::testkit::{
    forge, Back, Cmd, Conn, Got, KeyArg, Op, Outcome, Pick, Reply, WPick, WaitArg,
};
use sanspool_core::{Config, Error, Fairness, IdleOrder, KeepIdle, Stats, Time};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

const MS: u64 = 1_000_000;

/// What the model expects an op to get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this reply.
    Is(Reply),
    /// Refused, nothing changed, the connection handed back, with one of these errors: used where
    /// the kind depends on the core's handle bookkeeping rather than on anything a user saw.
    RefusedWith(&'static [Error]),
}

impl Expect {
    pub fn admits(&self, got: &Reply) -> bool {
        match self {
            Expect::Is(r) => r == got,
            Expect::RefusedWith(kinds) => {
                matches!(got, Reply::Done(Err(e)) if kinds.contains(e))
            }
        }
    }
}

/// A handle the driver was given, as the user knows it: the lease of one loan, or the ticket of
/// one operation the driver was asked to perform.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Handle {
    Loan(u64),
    Ticket(u64),
}

/// Where an existing connection is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    Idle,
    /// With a borrower; `told`: the borrower has it (answered `Ready`, or its grant was read).
    Lent {
        key: Option<u8>,
        loan: u64,
        told: bool,
    },
    /// Out for a reset after a dirty return.
    Resetting,
    /// Out for a check asked by `check_idle`, or for a vet before a checkout gets it.
    Checking,
    /// Being closed: it still counts against `max` until the driver reports it gone.
    Closing,
    /// Just opened or back from the driver, not yet placed (only inside one input).
    Arriving,
}

#[derive(Clone, Debug)]
struct Connection {
    place: Place,
    /// When its lifetime ends (`None`: never).
    expires: Option<Time>,
    /// When it was last made idle after a use (a check is not a use).
    idle_since: Time,
    /// Its rank in the idle order: the order in which connections were made idle after a use.
    returned: u64,
    /// How many drains had happened when it was opened: one after that retires it.
    drains_at_open: u32,
    /// When it was last lent, and whether that borrower was reported past `leak_after`.
    lent_at: Time,
    leak_told: bool,
}

#[derive(Clone, Debug)]
struct Waiter {
    id: u64,
    key: Option<u8>,
    deadline: Option<Time>,
    /// `Wait::No`: psycopg2's getconn, queued only for the open it triggered.
    no_wait: bool,
    since: Time,
    /// Told to claim an idle connection, and has not claimed since.
    woken: bool,
    /// An idle connection is out for a vet on its behalf.
    vetting: bool,
}

/// What the pool has decided and the driver has not read yet, in the order it was decided.
#[derive(Clone, Debug)]
enum Out {
    Open(u64),
    Close(u64, Conn),
    Reset(u64, Conn),
    Check(u64, Conn),
    Vet(u64, Conn),
    Grant(u64, Conn, u64),
    Fail(u64, Error),
    Wake(u64),
    Leak(Conn),
}

/// The model: the pool as seen from outside, and the simulated driver's hands.
#[derive(Clone, Debug)]
pub struct Model {
    // ---- what the user configured
    min: usize,
    /// Spare idle connections wanted beyond the waiters (when the pool refills).
    min_idle: usize,
    /// Whether `min` is kept open after the start (psycopg2's pool does not).
    refill: bool,
    max: usize,
    max_waiting: usize,
    keep_idle: KeepIdle,
    idle_order: IdleOrder,
    /// The fairness bound; `None`: strict.
    bound: Option<Duration>,
    leak_after: Option<Duration>,
    lifetime: Option<Duration>,
    max_idle: Option<Duration>,
    backoff_initial: Duration,
    backoff_max: Duration,
    /// Idle connections are vetted before a checkout gets them.
    vet: bool,
    /// Connections out for a vet, with the checkout each is vetted for.
    vets: BTreeMap<Conn, u64>,
    /// The storage's room: connections and queued checkouts.
    slot_room: usize,
    waiter_room: usize,

    // ---- the pool, as observed
    /// The pool's clock: the latest time given with an accepted input.
    now: Time,
    closed: bool,
    conns: BTreeMap<Conn, Connection>,
    /// Idle connections, least recently returned first.
    idle: Vec<Conn>,
    line: VecDeque<Waiter>,
    /// Under a fairness bound: a waiter was served after waiting the bound, none since in under
    /// half of it, and the line has not drained since — the line is served strictly.
    strict: bool,
    /// Opens ordered and not reported yet (read by the driver or not).
    opening: usize,
    outbox: VecDeque<Out>,
    /// Rounds of failed opens in a row, and when the next open may be tried.
    failed_opens: u32,
    retry_at: Option<Time>,
    /// The backoff round now (each backoff starts the next), and the round each open in flight
    /// was ordered in, by ticket: opens that were under way together fail as one round.
    round: u32,
    open_rounds: BTreeMap<u64, u32>,
    drains: u32,
    next_waiter: u64,
    next_loan: u64,
    next_ticket: u64,
    next_returned: u64,
    stats: Stats,

    // ---- the simulated driver
    /// The driver's clock.
    clock: Time,
    last_conn: Conn,
    /// Connections the borrowers hold, by id, with their loan.
    held: BTreeMap<Conn, u64>,
    opens: Vec<u64>,
    closes: Vec<(u64, Conn)>,
    resets: Vec<(u64, Conn)>,
    checks: Vec<(u64, Conn)>,
    handles: Vec<Handle>,
    waiting: BTreeSet<u64>,
    waiter_history: Vec<u64>,
}

/// Why a configuration is refused, by the documented rules.
fn refusal(config: &Config, slot_room: usize) -> Option<Error> {
    let sizes = sizes(config.min, config.max, slot_room).and_then(|()| {
        (config.min_idle <= config.max)
            .then_some(())
            .ok_or(Error::MinAboveMax)
    });
    sizes.err().or_else(|| {
        let churns = match config.max_lifetime {
            Some(life) => life.is_zero() || config.lifetime_jitter >= life,
            None => false,
        };
        (churns || config.backoff_initial.is_zero()).then_some(Error::InvalidTiming)
    })
}

fn sizes(min: usize, max: usize, slot_room: usize) -> Result<(), Error> {
    if max == 0 {
        Err(Error::MaxZero)
    } else if min > max {
        Err(Error::MinAboveMax)
    } else if max > slot_room.min(65_535) {
        Err(Error::CapacityExceeded)
    } else {
        Ok(())
    }
}

fn after(t: Time, d: Duration) -> Time {
    t.saturating_add(d)
}

impl Model {
    /// The pool right after `Pool::new`: the opens for `min` are ordered at once.
    pub fn new(config: &Config, slot_room: usize, waiter_room: usize) -> Result<Model, Error> {
        if let Some(e) = refusal(config, slot_room) {
            return Err(e);
        }
        // The model has no random numbers: it is only run with no lifetime jitter.
        assert!(config.lifetime_jitter.is_zero(), "the model needs jitter 0");
        assert!(!config.backoff_jitter, "the model needs no backoff jitter");
        let mut m = Model {
            min: config.min,
            min_idle: config.min_idle,
            refill: config.refill,
            max: config.max,
            max_waiting: config.max_waiting,
            keep_idle: config.keep_idle,
            idle_order: config.idle_order,
            leak_after: config.leak_after,
            bound: match config.fairness {
                Fairness::Strict => None,
                Fairness::Bounded(b) => Some(b),
            },
            strict: false,
            lifetime: config.max_lifetime,
            max_idle: config.max_idle,
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max,
            vet: config.vet,
            vets: BTreeMap::new(),
            slot_room,
            waiter_room,
            now: Time::ZERO,
            closed: false,
            conns: BTreeMap::new(),
            idle: Vec::new(),
            line: VecDeque::new(),
            opening: 0,
            outbox: VecDeque::new(),
            failed_opens: 0,
            retry_at: None,
            round: 0,
            open_rounds: BTreeMap::new(),
            drains: 0,
            next_waiter: 0,
            next_loan: 0,
            next_ticket: 0,
            next_returned: 0,
            stats: Stats::default(),
            clock: Time::ZERO,
            last_conn: 0,
            held: BTreeMap::new(),
            opens: Vec::new(),
            closes: Vec::new(),
            resets: Vec::new(),
            checks: Vec::new(),
            handles: Vec::new(),
            waiting: BTreeSet::new(),
            waiter_history: Vec::new(),
        };
        // `min` is opened when the pool is made, refilled later or not.
        for _ in 0..m.min {
            m.order_open();
        }
        m.top_up();
        Ok(m)
    }

    // ================================================================== what a user reads

    fn count(&self, f: impl Fn(&Place) -> bool) -> usize {
        self.conns.values().filter(|c| f(&c.place)).count()
    }

    /// Every connection that exists or is on its way: what `max` bounds.
    fn size(&self) -> usize {
        self.opening + self.conns.len()
    }

    /// Connections that exist and are not being closed: what `min` asks for.
    fn open(&self) -> usize {
        self.count(|p| *p != Place::Closing)
    }

    fn room(&self) -> bool {
        self.size() < self.max
    }

    pub fn stats(&self) -> Stats {
        Stats {
            size: self.size(),
            idle: self.idle.len(),
            in_use: self.count(|p| matches!(p, Place::Lent { .. })),
            waiting: self.line.len(),
            opening: self.opening,
            resetting: self.count(|p| matches!(p, Place::Resetting | Place::Checking)),
            closing: self.count(|p| *p == Place::Closing),
            ..self.stats
        }
    }

    /// `min` open, and `min_idle` of them idle unless the pool is full.
    pub fn is_warm(&self) -> bool {
        !self.closed
            && self.open() >= self.min
            && (self.idle.len() >= self.min_idle || self.size() >= self.max)
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn is_empty(&self) -> bool {
        self.size() == 0 && self.outbox.is_empty()
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// The connections the borrowers hold, by id.
    pub fn held(&self) -> Vec<Conn> {
        self.held.keys().copied().collect()
    }

    /// The checkouts the driver still waits on.
    pub fn waiting(&self) -> Vec<u64> {
        self.waiting.iter().copied().collect()
    }

    /// When something falls due with nothing else happening: a waiter's deadline, an idle
    /// connection's end of life or of `max_idle` (while more than `min` are open), the end of
    /// the backoff when an open is wanted and there is room for it.
    pub fn next_deadline(&self) -> Option<Time> {
        let waits = self.line.iter().filter_map(|w| w.deadline);
        let lives = self.idle.iter().filter_map(|c| self.conns[c].expires);
        let idled = match self.max_idle {
            Some(d) if self.open() > self.min && self.idle.len() > self.min_idle => self
                .idle
                .iter()
                .map(|c| after(self.conns[c].idle_since, d))
                .min(),
            _ => None,
        };
        let retry = self
            .retry_at
            .filter(|_| self.opens_wanted() > 0 && self.room());
        let starve = match (self.bound, self.line.front()) {
            (Some(b), Some(w)) if !self.idle.is_empty() && self.vetting() < self.line.len() => {
                Some(after(w.since, b))
            }
            _ => None,
        };
        waits
            .chain(lives)
            .chain(idled)
            .chain(retry)
            .chain(starve)
            .chain(self.conns.keys().filter_map(|&c| self.leak_due(c)))
            .min()
    }

    // ================================================================== one op

    /// Plays `op` as the simulated driver does; returns the expected reply and the commands the
    /// driver reads meanwhile.
    pub fn step(&mut self, op: &Op) -> (Expect, Vec<Cmd>) {
        let mut read = Vec::new();
        let expect = self.play(op, &mut read);
        (expect, read)
    }

    fn play(&mut self, op: &Op, read: &mut Vec<Cmd>) -> Expect {
        let done = |r: Result<(), Error>| Expect::Is(Reply::Done(r));
        match *op {
            Op::Checkout { key, wait } => {
                let deadline = match wait {
                    WaitArg::No => Some(None),
                    WaitArg::Until(ms) => Some(Some(after(self.clock, ms_(ms)))),
                    WaitArg::Forever => None,
                    WaitArg::Past => Some(Some(Time::ZERO)),
                    WaitArg::End => Some(Some(Time::from_nanos(u64::MAX))),
                };
                Expect::Is(Reply::Checkout(self.checkout(key.map(|k| k % 4), deadline)))
            }
            Op::Checkin { lease, key, back } => {
                let Some(given) = self.lease_pick(lease) else {
                    return Expect::Is(Reply::Skipped);
                };
                match self.judge_lease(given) {
                    Err(refused) => refused,
                    Ok(conn) => {
                        let own = match &self.conns[&conn].place {
                            Place::Lent { key, .. } => *key,
                            _ => unreachable!("a held connection is lent"),
                        };
                        let key = match key {
                            KeyArg::NoKey => None,
                            KeyArg::Own => own,
                            KeyArg::Key(k) => Some(k % 4),
                        };
                        if key.is_some() && key != own {
                            return done(Err(Error::WrongKey));
                        }
                        done(self.checkin(conn, back))
                    }
                }
            }
            Op::Detach { lease } => {
                let Some(given) = self.lease_pick(lease) else {
                    return Expect::Is(Reply::Skipped);
                };
                match self.judge_lease(given) {
                    Err(refused) => refused,
                    Ok(conn) => done(self.accept(self.clock, |m| {
                        // The borrower keeps it: it leaves without a close.
                        m.held.remove(&conn);
                        m.conns.remove(&conn);
                        m.outbox
                            .retain(|o| !matches!(o, Out::Leak(c) if *c == conn));
                        m.stats.detached += 1;
                        Ok(())
                    })),
                }
            }
            Op::Claim { waiter } => {
                let Some(id) = self.waiter_pick(waiter) else {
                    return Expect::Is(Reply::Skipped);
                };
                Expect::Is(Reply::Checkout(self.claim(id)))
            }
            Op::Cancel { waiter } => {
                let Some(id) = self.waiter_pick(waiter) else {
                    return Expect::Is(Reply::Skipped);
                };
                // Only a checkout still in line can give up: one whose outcome is decided is not.
                let Some(pos) = self.line.iter().position(|w| w.id == id) else {
                    return done(Err(Error::UnknownWaiter));
                };
                done(self.accept(self.clock, |m| {
                    m.leave(pos);
                    m.waiting.remove(&id);
                    Ok(())
                }))
            }
            Op::Poll { n } => {
                let mut left = if n == 0 { usize::MAX } else { usize::from(n) };
                while left > 0 && self.read_one(read) {
                    left -= 1;
                }
                Expect::Is(Reply::Quiet)
            }
            Op::Serve => {
                self.serve(read);
                Expect::Is(Reply::Quiet)
            }
            Op::Opened { ticket } | Op::OpenFailed { ticket, .. } => {
                let ok = matches!(op, Op::Opened { .. });
                let permanent = matches!(
                    op,
                    Op::OpenFailed {
                        permanent: true,
                        ..
                    }
                );
                match self.ticket_pick(ticket, |m| m.opens.clone()) {
                    None => Expect::Is(Reply::Skipped),
                    Some(Some(i)) => {
                        let ticket = self.opens.remove(i);
                        self.perform_open(ticket, ok, permanent);
                        done(Ok(()))
                    }
                    Some(None) => done(Err(Error::UnknownTicket)),
                }
            }
            Op::ResetDone { ticket, outcome } | Op::CheckDone { ticket, outcome } => {
                let check = matches!(op, Op::CheckDone { .. });
                let list = |m: &Model| {
                    let l = if check { &m.checks } else { &m.resets };
                    l.iter().map(|x| x.0).collect()
                };
                match self.ticket_pick(ticket, list) {
                    None => Expect::Is(Reply::Skipped),
                    Some(Some(i)) => {
                        let (_, conn) = if check {
                            self.checks.remove(i)
                        } else {
                            self.resets.remove(i)
                        };
                        self.accept(self.clock, |m| m.back_from_driver(conn, outcome, check));
                        done(Ok(()))
                    }
                    Some(None) => done(Err(Error::UnknownTicket)),
                }
            }
            Op::CloseDone { ticket, outcome } => {
                match self.ticket_pick(ticket, |m| m.closes.iter().map(|x| x.0).collect()) {
                    None => Expect::Is(Reply::Skipped),
                    Some(Some(i)) => {
                        let (_, conn) = self.closes.remove(i);
                        // Whatever the outcome, the connection is gone; an abandoned close is
                        // counted.
                        self.accept(self.clock, |m| {
                            if outcome == Outcome::Abandoned {
                                m.stats.abandoned_closes += 1;
                            }
                            m.conns.remove(&conn)
                        });
                        done(Ok(()))
                    }
                    Some(None) => done(Err(Error::UnknownTicket)),
                }
            }
            Op::Tick { ms } => {
                self.clock = after(self.clock, ms_(ms));
                Expect::Is(Reply::Quiet)
            }
            Op::Timeout { ms } => {
                self.clock = after(self.clock, ms_(ms));
                self.time_passes(self.clock);
                Expect::Is(Reply::Quiet)
            }
            Op::ToDeadline => {
                if let Some(t) = self.next_deadline() {
                    self.clock = self.clock.max(t);
                    self.time_passes(self.clock);
                }
                Expect::Is(Reply::Quiet)
            }
            Op::Backwards { ms } => {
                let then = self.clock.as_nanos().saturating_sub(u64::from(ms) * MS);
                self.time_passes(Time::from_nanos(then));
                Expect::Is(Reply::Quiet)
            }
            Op::FarFuture => {
                self.clock = self.clock.max(Time::from_nanos(u64::MAX - 10 * MS));
                Expect::Is(Reply::Quiet)
            }
            Op::Resize { min, max } => {
                done(self.resize(usize::from(min % 6), usize::from(max % 8)))
            }
            Op::Drain => done(self.drain()),
            Op::CheckIdle => Expect::Is(Reply::Sent(self.check_idle())),
            Op::Close => done(self.close_pool()),
        }
    }

    // ================================================================== the driver's hands

    /// The waiter a pick names: `None` if it names nothing (the op is skipped).
    fn waiter_pick(&self, w: WPick) -> Option<u64> {
        match w {
            WPick::Waiting(i) => nth(&self.waiting(), i),
            WPick::Any(i) => nth(&self.waiter_history, i),
            WPick::Raw(n) => Some(n),
        }
    }

    /// The handle a lease pick names: `None` if it names nothing (the op is skipped).
    fn lease_pick(&self, p: Pick) -> Option<Given> {
        Some(match p {
            Pick::Live(i) => {
                let conn = nth(&self.held(), i)?;
                Given::Issued(Handle::Loan(self.held[&conn]))
            }
            Pick::Old(i) => Given::Issued(nth(&self.handles, i)?),
            Pick::Foreign(_) => Given::Foreign,
            Pick::NoSlot | Pick::FutureGen(_) => Given::Never,
            Pick::Raw(..) => unreachable!("raw picks are not generated"),
        })
    }

    /// A lease given back with a checkin or a detach: the connection it names, or the refusal.
    fn judge_lease(&self, given: Given) -> Result<Conn, Expect> {
        let refused = |e| Expect::Is(Reply::Done(Err(e)));
        match given {
            Given::Foreign => Err(refused(Error::Foreign)),
            // psycopg2: "trying to put unkeyed connection".
            Given::Never => Err(refused(Error::Unkeyed)),
            Given::Issued(Handle::Loan(loan)) => {
                match self.held.iter().find(|(_, l)| **l == loan) {
                    Some((conn, _)) => Ok(*conn),
                    // The loan ended: the user gave this connection back (or kept it) already.
                    None => Err(refused(Error::AlreadyReturned)),
                }
            }
            // A ticket offered as a lease was never a lease: whether the core calls it unknown
            // or stale depends on its slot generations, which the model does not keep.
            Given::Issued(Handle::Ticket(_)) => Err(Expect::RefusedWith(&[
                Error::Unkeyed,
                Error::AlreadyReturned,
            ])),
        }
    }

    /// The pending operation a ticket pick names: `None` if it names nothing, `Some(None)` if it
    /// names no operation of this kind the driver owes (the pool refuses it), else its position.
    fn ticket_pick(&self, p: Pick, list: impl Fn(&Model) -> Vec<u64>) -> Option<Option<usize>> {
        let pending = list(self);
        let named = match p {
            Pick::Live(i) => Handle::Ticket(nth(&pending, i)?),
            Pick::Old(i) => nth(&self.handles, i)?,
            Pick::Foreign(_) | Pick::NoSlot | Pick::FutureGen(_) => return Some(None),
            Pick::Raw(..) => unreachable!("raw picks are not generated"),
        };
        Some(match named {
            Handle::Ticket(t) => pending.iter().position(|&x| x == t),
            Handle::Loan(_) => None,
        })
    }

    /// The driver reads one output and acts on what it says: as the simulated driver does, the
    /// oldest I/O first, else the oldest hand-off, else the oldest report (the pool keeps one
    /// order per kind of output, not across them).
    fn read_one(&mut self, read: &mut Vec<Cmd>) -> bool {
        let kind = |o: &Out| match o {
            Out::Open(_) | Out::Close(..) | Out::Reset(..) | Out::Check(..) | Out::Vet(..) => 0,
            Out::Grant(..) | Out::Fail(..) | Out::Wake(_) => 1,
            Out::Leak(_) => 2,
        };
        let first = (0..3).find_map(|k| self.outbox.iter().position(|o| kind(o) == k));
        let Some(out) = first.and_then(|at| self.outbox.remove(at)) else {
            return false;
        };
        read.push(match out {
            Out::Open(t) => {
                self.handles.push(Handle::Ticket(t));
                self.opens.push(t);
                Cmd::Open
            }
            Out::Close(t, c) => {
                self.handles.push(Handle::Ticket(t));
                self.closes.push((t, c));
                Cmd::Close(c)
            }
            Out::Reset(t, c) => {
                self.handles.push(Handle::Ticket(t));
                self.resets.push((t, c));
                Cmd::Reset(c)
            }
            Out::Check(t, c) => {
                self.handles.push(Handle::Ticket(t));
                self.checks.push((t, c));
                Cmd::Check(c)
            }
            Out::Vet(t, c) => {
                self.handles.push(Handle::Ticket(t));
                self.checks.push((t, c));
                Cmd::Vet(c)
            }
            Out::Grant(w, c, loan) => {
                self.handles.push(Handle::Loan(loan));
                self.held.insert(c, loan);
                self.waiting.remove(&w);
                if let Some(Connection {
                    place: Place::Lent { told, .. },
                    ..
                }) = self.conns.get_mut(&c)
                {
                    *told = true;
                }
                Cmd::Grant(forge::waiter(w), c)
            }
            Out::Fail(w, e) => {
                self.waiting.remove(&w);
                Cmd::Fail(forge::waiter(w), e)
            }
            Out::Wake(w) => Cmd::Wake(forge::waiter(w)),
            Out::Leak(c) => Cmd::Leak(c),
        });
        true
    }

    fn read_all(&mut self, read: &mut Vec<Cmd>) {
        while self.read_one(read) {}
    }

    /// The simulated driver's `serve`: read everything, then complete the newest open, else the
    /// newest reset, check, close — all succeeding — reading everything after each.
    fn serve(&mut self, read: &mut Vec<Cmd>) {
        self.read_all(read);
        loop {
            if let Some(ticket) = self.opens.pop() {
                self.perform_open(ticket, true, false);
            } else if let Some((_, c)) = self.resets.pop() {
                self.accept(self.clock, |m| m.back_from_driver(c, Outcome::Ok, false));
            } else if let Some((_, c)) = self.checks.pop() {
                self.accept(self.clock, |m| m.back_from_driver(c, Outcome::Ok, true));
            } else if let Some((_, c)) = self.closes.pop() {
                self.accept(self.clock, |m| m.conns.remove(&c));
            } else {
                break;
            }
            self.read_all(read);
        }
    }

    fn perform_open(&mut self, ticket: u64, ok: bool, permanent: bool) {
        self.accept(self.clock, |m| {
            m.opening -= 1;
            let round = m.open_rounds.remove(&ticket);
            if ok {
                m.last_conn += 1;
                m.opened(m.last_conn);
            } else {
                m.open_failed(round == Some(m.round), permanent);
            }
        });
    }

    // ================================================================== the rules

    /// An accepted input: the pool's clock moves to `t` (never back), the input acts, then the
    /// pool tops up (see `top_up`). A refused input does none of this: it changes nothing, not
    /// even the clock.
    fn accept<R>(&mut self, t: Time, act: impl FnOnce(&mut Self) -> R) -> R {
        self.now = self.now.max(t);
        let out = act(self);
        self.top_up();
        out
    }

    fn expired(&self, conn: Conn) -> bool {
        self.conns[&conn].expires.is_some_and(|t| t <= self.now)
    }

    /// psycopg2's `getconn(key)`, with a line for those who wait. `deadline`: `None` waits
    /// forever, `Some(None)` does not wait.
    fn checkout(&mut self, key: Option<u8>, deadline: Option<Option<Time>>) -> Result<Got, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        if let Some(k) = key {
            let lent = self.conns.iter().find_map(|(c, x)| match x.place {
                Place::Lent { key, told, .. } if key == Some(k) => Some((*c, told)),
                _ => None,
            });
            match lent {
                // Same key, same connection.
                Some((conn, true)) => return Ok(Got::Held(conn)),
                // Granted but not yet read: for the user the key is still waiting.
                Some((_, false)) => return Err(Error::KeyBusy),
                None if self.line.iter().any(|w| w.key == Some(k)) => return Err(Error::KeyBusy),
                None => {}
            }
        }
        self.accept(self.clock, |m| {
            // One who waited past the fairness bound comes before this newcomer.
            m.serve_starving();
            m.take_idle_or_queue(key, deadline)
        })
    }

    /// A waiter claims an idle connection from its place in line (after a wake, or not): it
    /// gets one unless none is idle or an older waiter is past the fairness bound; otherwise it
    /// stays in its place, no longer woken.
    fn claim(&mut self, id: u64) -> Result<Got, Error> {
        let Some(pos) = self.line.iter().position(|w| w.id == id) else {
            return Err(Error::UnknownWaiter);
        };
        self.accept(self.clock, |m| {
            if (pos == 0 || !m.starving()) && !m.line[pos].vetting {
                if let Some(conn) = m.pop_live() {
                    if m.vet {
                        // With vetting, it goes out for a vet on this waiter's behalf.
                        m.vet_for(conn, pos);
                        return Ok(Got::Waiting(forge::waiter(id)));
                    }
                    let loan = m.serve_waiter(pos, conn, true).1;
                    m.held.insert(conn, loan);
                    m.handles.push(Handle::Loan(loan));
                    m.waiting.remove(&id);
                    return Ok(Got::Ready(conn));
                }
            }
            m.line[pos].woken = false;
            m.outbox.retain(|o| !matches!(o, Out::Wake(w) if *w == id));
            Ok(Got::Waiting(forge::waiter(id)))
        })
    }

    /// Whether the oldest waiter must be served before anyone else: always when strict, else
    /// once it has waited the bound or while the line is in its strict phase.
    fn starving(&self) -> bool {
        match (self.bound, self.line.front()) {
            (None, _) => true,
            (Some(b), Some(w)) => self.strict || after(w.since, b) <= self.now,
            (Some(_), None) => false,
        }
    }

    /// While the oldest waiter must be served first, idle connections go to the line, oldest
    /// first — with vetting, out for a vet on behalf of each, skipping those with one already.
    fn serve_starving(&mut self) {
        while !self.idle.is_empty() && self.starving() {
            let Some(pos) = self.line.iter().position(|w| !w.vetting) else {
                break;
            };
            let Some(conn) = self.pop_live() else {
                break;
            };
            if self.vet {
                self.vet_for(conn, pos);
            } else {
                self.grant(pos, conn);
            }
        }
    }

    /// The next idle connection in the idle order, closing those past their lifetime on the way.
    fn pop_live(&mut self) -> Option<Conn> {
        while let Some(conn) = self.pop_idle() {
            if !self.expired(conn) {
                return Some(conn);
            }
            self.stats.expired += 1;
            self.shut(conn);
        }
        None
    }

    /// `conn` (out of the idle set) goes out for a vet on behalf of the waiter at `pos`, whose
    /// wake, if any, is used up.
    fn vet_for(&mut self, conn: Conn, pos: usize) {
        let w = &mut self.line[pos];
        w.vetting = true;
        w.woken = false;
        let id = w.id;
        self.outbox
            .retain(|o| !matches!(o, Out::Wake(x) if *x == id));
        self.stats.vets += 1;
        self.place(conn, Place::Checking);
        self.vets.insert(conn, id);
        let t = self.ticket();
        self.outbox.push_back(Out::Vet(t, conn));
    }

    /// Waiters with a vet on their behalf.
    fn vetting(&self) -> usize {
        self.line.iter().filter(|w| w.vetting).count()
    }

    /// Wake waiters (oldest not yet woken first) until as many are woken as connections idle.
    fn wake_claimers(&mut self) {
        let want = self.idle.len().min(self.line.len() - self.vetting());
        let mut woken = self.line.iter().filter(|w| w.woken).count();
        for w in self.line.iter_mut() {
            if woken >= want {
                break;
            }
            if !w.woken && !w.vetting {
                w.woken = true;
                woken += 1;
                self.outbox.push_back(Out::Wake(w.id));
            }
        }
    }

    /// A waiter leaves the line; a wake the driver has not read goes with it.
    fn leave(&mut self, pos: usize) -> Waiter {
        let w = self.line.remove(pos).expect("in line");
        if self.line.is_empty() {
            // A line that drains starts over.
            self.strict = false;
        }
        self.outbox
            .retain(|o| !matches!(o, Out::Wake(id) if *id == w.id));
        w
    }

    fn take_idle_or_queue(
        &mut self,
        key: Option<u8>,
        deadline: Option<Option<Time>>,
    ) -> Result<Got, Error> {
        // With vetting, an idle connection serves a checkout through its vet: it waits for it.
        let for_vet = self.vet && !self.idle.is_empty();
        if let Some(conn) = if for_vet { None } else { self.pop_live() } {
            let loan = self.lend(conn, key, true);
            self.held.insert(conn, loan);
            self.handles.push(Handle::Loan(loan));
            self.stats.checkouts += 1;
            return Ok(Got::Ready(conn));
        }
        let no_wait = deadline == Some(None);
        if no_wait && !for_vet && !self.room() {
            return Err(Error::Exhausted);
        }
        // `max_waiting` bounds those who wait; a getconn is in line only for its own open, one
        // an idle connection serves only for its vet.
        let bound = if no_wait || for_vet {
            self.waiter_room
        } else {
            self.max_waiting.min(self.waiter_room)
        };
        let told_fails = self
            .outbox
            .iter()
            .filter(|o| matches!(o, Out::Fail(..)))
            .count();
        if self.line.len() + told_fails >= bound {
            return Err(Error::TooManyWaiters);
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.line.push_back(Waiter {
            id,
            key,
            deadline: deadline.flatten(),
            no_wait,
            since: self.now,
            woken: false,
            vetting: false,
        });
        self.waiting.insert(id);
        self.waiter_history.push(id);
        if for_vet {
            if let Some(conn) = self.pop_live() {
                self.vet_for(conn, self.line.len() - 1);
            }
        }
        // psycopg2 connects on demand: a getconn gets its own open at once, backoff or not.
        if no_wait && self.line.len() > self.coming() {
            self.order_open();
        }
        Ok(Got::Waiting(forge::waiter(id)))
    }

    /// The idle connection a checkout gets: the most recently returned (LIFO, psycopg2) or the
    /// least (FIFO).
    fn pop_idle(&mut self) -> Option<Conn> {
        if self.idle.is_empty() {
            return None;
        }
        Some(match self.idle_order {
            IdleOrder::Lifo => self.idle.pop()?,
            IdleOrder::Fifo => self.idle.remove(0),
        })
    }

    fn lend(&mut self, conn: Conn, key: Option<u8>, told: bool) -> u64 {
        self.next_loan += 1;
        let loan = self.next_loan;
        self.place(conn, Place::Lent { key, loan, told });
        let now = self.now;
        if let Some(c) = self.conns.get_mut(&conn) {
            (c.lent_at, c.leak_told) = (now, false);
        }
        loan
    }

    /// Every move of a connection: one leaving a borrower takes its unread leak report along.
    fn place(&mut self, conn: Conn, place: Place) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if matches!(c.place, Place::Lent { .. }) && !matches!(place, Place::Lent { .. }) {
                self.outbox
                    .retain(|o| !matches!(o, Out::Leak(x) if *x == conn));
            }
            c.place = place;
        }
    }

    /// When the borrower of `conn` passes `leak_after`, if it is lent and not reported yet.
    fn leak_due(&self, conn: Conn) -> Option<Time> {
        let c = &self.conns[&conn];
        let lent = matches!(c.place, Place::Lent { .. }) && !c.leak_told;
        Some(after(c.lent_at, self.leak_after?)).filter(|_| lent)
    }

    /// psycopg2's `putconn`, for a lease the borrower holds.
    fn checkin(&mut self, conn: Conn, back: Back) -> Result<(), Error> {
        self.accept(self.clock, |m| {
            m.held.remove(&conn);
            // The key is free from now on.
            m.place(conn, Place::Arriving);
            if m.closed {
                // Taken and closed all the same, as closeall promised; the user is told.
                m.shut(conn);
                return Err(Error::Closed);
            }
            match back {
                Back::Clean => m.returned(conn),
                Back::Broken => {
                    m.stats.broken_returns += 1;
                    m.shut(conn);
                }
                Back::Close => m.shut(conn),
                // Reset only what would be kept afterwards.
                Back::Dirty if m.may_stay(conn) && m.putconn_keeps() => {
                    m.stats.resets += 1;
                    m.place(conn, Place::Resetting);
                    let t = m.ticket();
                    m.outbox.push_back(Out::Reset(t, conn));
                }
                Back::Dirty => m.close_unkept(conn),
            }
            Ok(())
        })
    }

    /// A reset or check reported: back in service if it worked, else closed (an abandoned one
    /// counted, then closed as a failed one is).
    fn back_from_driver(&mut self, conn: Conn, outcome: Outcome, check: bool) {
        self.place(conn, Place::Arriving);
        match (outcome, check) {
            (Outcome::Abandoned, false) => self.stats.abandoned_resets += 1,
            (Outcome::Abandoned, true) => self.stats.abandoned_checks += 1,
            _ => {}
        }
        if check && outcome != Outcome::Ok {
            self.stats.stale += 1;
        }
        // A vet serves the checkout it was for, if that one still waits and the connection
        // passed and may stay; that checkout waits on otherwise.
        let vetted_for = self.vets.remove(&conn);
        let pos = vetted_for.and_then(|id| self.line.iter().position(|w| w.id == id));
        if let Some(p) = pos {
            self.line[p].vetting = false;
            if outcome == Outcome::Ok && self.may_stay(conn) {
                return self.grant(p, conn);
            }
        }
        match (outcome == Outcome::Ok, check) {
            (false, _) => self.shut(conn),
            // A reset connection comes back as a clean checkin would.
            (true, false) => self.returned(conn),
            (true, true) => self.checked(conn),
        }
    }

    fn opened(&mut self, conn: Conn) {
        self.stats.opens += 1;
        self.failed_opens = 0;
        self.retry_at = None;
        // A lifetime that would end past the end of time never ends.
        let expires = self.lifetime.and_then(|d| {
            let d = u64::try_from(d.as_nanos()).ok()?;
            self.now.as_nanos().checked_add(d).map(Time::from_nanos)
        });
        self.conns.insert(
            conn,
            Connection {
                place: Place::Arriving,
                expires,
                idle_since: self.now,
                returned: 0,
                drains_at_open: self.drains,
                lent_at: Time::ZERO,
                leak_told: false,
            },
        );
        if self.may_stay(conn) {
            self.ready_for_use(conn, false);
        } else {
            self.close_unkept(conn);
        }
    }

    /// A failed open: the oldest checkout that does not wait hears of it; when the failure is
    /// permanent (bad credentials), every queued checkout does, in line order. The first failure
    /// of a round (an open ordered since the last backoff began: `new_round`) starts the next
    /// backoff, doubling per round, at most `backoff_max`; the opens that were under way with it
    /// fail without another step.
    fn open_failed(&mut self, new_round: bool, permanent: bool) {
        self.stats.open_failures += 1;
        if new_round {
            self.round += 1;
            self.failed_opens += 1;
            let mut delay = self.backoff_initial;
            for _ in 1..self.failed_opens.min(80) {
                delay = delay.saturating_mul(2);
            }
            self.retry_at = Some(after(self.now, delay.min(self.backoff_max)));
        }
        if let Some(pos) = self.line.iter().position(|w| w.no_wait) {
            self.fail(pos, Error::OpenFailed);
        }
        if permanent {
            while !self.line.is_empty() {
                self.fail(0, Error::OpenFailed);
            }
        }
    }

    /// Whether a connection may stay in the pool at all: not once it is closed, not above `max`
    /// (after a shrink; counting this one and the opens on their way), not one opened before a
    /// drain, not one past its lifetime.
    fn may_stay(&self, conn: Conn) -> bool {
        !self.closed
            && self.opening + self.open() <= self.max
            && self.conns[&conn].drains_at_open == self.drains
            && !self.expired(conn)
    }

    /// psycopg2's `putconn`: a returned connection is kept while fewer than `min` are idle
    /// (`KeepIdle::UpToMin`; always with `UpToMax`), or when someone waits for it.
    fn putconn_keeps(&self) -> bool {
        self.keep_idle == KeepIdle::UpToMax || !self.line.is_empty() || self.idle.len() < self.min
    }

    /// A connection back from a borrower, clean (directly or after a reset).
    fn returned(&mut self, conn: Conn) {
        if self.may_stay(conn) && self.putconn_keeps() {
            self.ready_for_use(conn, true);
        } else {
            self.close_unkept(conn);
        }
    }

    /// A connection free for use after being opened or used: the next in line gets it — one a
    /// borrower gave back only when the line is starving (else a woken waiter claims it, or a
    /// running checkout takes it first) — else it is the most recently returned idle one.
    fn ready_for_use(&mut self, conn: Conn, from_borrower: bool) {
        let next = self
            .next_in_line()
            .filter(|_| !from_borrower || self.starving());
        if let Some(pos) = next {
            self.grant(pos, conn);
        } else {
            self.next_returned += 1;
            let (now, rank) = (self.now, self.next_returned);
            let c = self.conns.get_mut(&conn).expect("exists");
            c.idle_since = now;
            c.returned = rank;
            c.place = Place::Idle;
            self.idle.push(conn);
        }
    }

    /// An idle connection that passed its check: a check is not a use, so it goes back to its
    /// old place in the idle order, unless someone waits for it.
    fn checked(&mut self, conn: Conn) {
        if !self.may_stay(conn) {
            return self.close_unkept(conn);
        }
        if let Some(pos) = self.next_in_line() {
            return self.grant(pos, conn);
        }
        let rank = self.conns[&conn].returned;
        let after_it = |c: &Connection| c.returned > rank;
        let pos = self
            .idle
            .iter()
            .position(|c| after_it(&self.conns[c]))
            .unwrap_or(self.idle.len());
        self.idle.insert(pos, conn);
        self.place(conn, Place::Idle);
    }

    fn grant(&mut self, pos: usize, conn: Conn) {
        let (id, loan) = self.serve_waiter(pos, conn, false);
        self.outbox.push_back(Out::Grant(id, conn, loan));
    }

    /// The waiter at `pos` leaves the line with `conn` (by a grant, or its own claim: `told`);
    /// its wait is counted. Its id and the loan.
    fn serve_waiter(&mut self, pos: usize, conn: Conn, told: bool) -> (u64, u64) {
        let w = self.leave(pos);
        let loan = self.lend(conn, w.key, told);
        let waited = self.now.saturating_since(w.since);
        // Go's starvation mode: served at the bound, the line that is left is served strictly
        // until a waiter is served in under half the bound, or it drains (`leave`).
        if let Some(b) = self.bound {
            if waited >= b {
                self.strict = !self.line.is_empty();
            } else if waited < b / 2 {
                self.strict = false;
            }
        }
        self.stats.checkouts += 1;
        self.stats.waits += 1;
        self.stats.wait_time += waited;
        (w.id, loan)
    }

    /// THE GRANT RULE: which queued checkout a connection that becomes free goes to: the oldest
    /// (FIFO). The fairness bound decides *whether* a returned one is granted (`starving`).
    fn next_in_line(&self) -> Option<usize> {
        (!self.line.is_empty()).then_some(0)
    }

    /// Connections out for a check or a vet (a check's goes to the oldest waiter when it passes,
    /// a vet's to the checkout it is for).
    fn checking(&self) -> usize {
        self.count(|p| *p == Place::Checking)
    }

    /// What will serve the line: opens in flight, idle connections, checks and vets.
    fn coming(&self) -> usize {
        self.opening + self.idle.len() + self.checking()
    }

    fn close_unkept(&mut self, conn: Conn) {
        if self.expired(conn) {
            self.stats.expired += 1;
        }
        self.shut(conn);
    }

    fn shut(&mut self, conn: Conn) {
        self.idle.retain(|&c| c != conn);
        self.place(conn, Place::Closing);
        self.stats.closes += 1;
        let t = self.ticket();
        self.outbox.push_back(Out::Close(t, conn));
    }

    fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    fn fail(&mut self, pos: usize, error: Error) {
        let w = self.leave(pos);
        self.outbox.push_back(Out::Fail(w.id, error));
    }

    fn order_open(&mut self) {
        if self.room() {
            self.opening += 1;
            let t = self.ticket();
            self.open_rounds.insert(t, self.round);
            self.outbox.push_back(Out::Open(t));
        }
    }

    /// Opens wanted: enough for `min`, and one for each in line without an open on its way.
    fn opens_wanted(&self) -> usize {
        if self.closed {
            return 0;
        }
        // psycopg2's pool opens `min` only when it is made.
        let for_min = if self.refill {
            self.min.saturating_sub(self.open() + self.opening)
        } else {
            0
        };
        // Beyond the line, `min_idle` spare ones (psycopg2's pool keeps none).
        let spare = if self.refill { self.min_idle } else { 0 };
        for_min.max((self.line.len() + spare).saturating_sub(self.coming()))
    }

    /// After every accepted input: open what `min` and the line want (room and backoff
    /// permitting); a getconn that no open in flight will serve, with no room for another, is
    /// "connection pool exhausted", as psycopg2 would have said at once.
    fn top_up(&mut self) {
        self.serve_starving();
        let backing_off = self.retry_at.is_some_and(|t| self.now < t);
        while !backing_off && self.opens_wanted() > 0 && self.room() {
            self.order_open();
        }
        if !self.room() {
            // A vet serves the waiter it is for; the other connections coming serve the oldest
            // of the rest.
            let mut unbound = self.coming() - self.vetting();
            let mut pos = 0;
            while pos < self.line.len() {
                let w = &self.line[pos];
                if w.vetting || unbound > 0 {
                    unbound -= usize::from(!w.vetting);
                    pos += 1;
                } else if w.no_wait {
                    self.fail(pos, Error::Exhausted);
                } else {
                    pos += 1;
                }
            }
        }
        self.wake_claimers();
    }

    /// `handle_timeout`: waiters past their deadline fail; idle connections past their lifetime,
    /// or idle past `max_idle` while more than `min` are open, close (least recently used first).
    fn time_passes(&mut self, t: Time) {
        self.accept(t, |m| {
            let now = m.now;
            while let Some(pos) = m
                .line
                .iter()
                .position(|w| w.deadline.is_some_and(|d| d <= now))
            {
                m.stats.timeouts += 1;
                m.fail(pos, Error::Timeout);
            }
            for conn in m.idle.clone() {
                let idled_out = m.max_idle.is_some_and(|d| {
                    after(m.conns[&conn].idle_since, d) <= now
                        && m.open() > m.min
                        && m.idle.len() > m.min_idle
                });
                if m.expired(conn) || idled_out {
                    m.stats.expired += 1;
                    m.shut(conn);
                }
            }
            // Those past the fairness bound are served first: a connection lent now may be due.
            m.serve_starving();
            // Borrowers past `leak_after` are reported once, in the order they were lent.
            let mut leaks: Vec<(u64, Conn)> = m
                .conns
                .iter()
                .filter(|(c, _)| m.leak_due(**c).is_some_and(|t| t <= now))
                .map(|(c, x)| match x.place {
                    Place::Lent { loan, .. } => (loan, *c),
                    _ => unreachable!("only a lent connection is due"),
                })
                .collect();
            leaks.sort();
            for (_, c) in leaks {
                m.conns.get_mut(&c).expect("exists").leak_told = true;
                m.stats.leaks += 1;
                m.outbox.push_back(Out::Leak(c));
            }
        })
    }

    fn resize(&mut self, min: usize, max: usize) -> Result<(), Error> {
        sizes(min, max, self.slot_room)?;
        if self.closed {
            return Err(Error::Closed);
        }
        self.accept(self.clock, |m| {
            (m.min, m.max) = (min, max);
            // Opens the driver has not read are taken back first (newest first): nothing is lost.
            while m.size() > max && m.withdraw_open() {}
            // Then idle connections close, least recently used first, down to `max`.
            while m.opening + m.open() > max && !m.idle.is_empty() {
                m.shut(m.idle[0]);
            }
            Ok(())
        })
    }

    fn withdraw_open(&mut self) -> bool {
        let Some(pos) = self.outbox.iter().rposition(|o| matches!(o, Out::Open(_))) else {
            return false;
        };
        if let Some(Out::Open(t)) = self.outbox.remove(pos) {
            self.open_rounds.remove(&t);
        }
        self.opening -= 1;
        true
    }

    /// Retire every connection that exists now: idle ones close at once, the others as they come
    /// back; the pool stays open and refills.
    fn drain(&mut self) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.accept(self.clock, |m| {
            m.drains += 1;
            while let Some(&c) = m.idle.first() {
                m.shut(c);
            }
            Ok(())
        })
    }

    fn check_idle(&mut self) -> Result<usize, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.accept(self.clock, |m| {
            let idle = std::mem::take(&mut m.idle);
            for &c in &idle {
                m.place(c, Place::Checking);
                let t = m.ticket();
                m.outbox.push_back(Out::Check(t, c));
            }
            Ok(idle.len())
        })
    }

    /// psycopg2's `closeall`: no more checkouts, everyone in line fails, idle connections close
    /// now and the others as they come back, opens the driver has not read are taken back.
    fn close_pool(&mut self) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.accept(self.clock, |m| {
            m.closed = true;
            while !m.line.is_empty() {
                m.fail(0, Error::Closed);
            }
            while let Some(&c) = m.idle.first() {
                m.shut(c);
            }
            while m.withdraw_open() {}
            Ok(())
        })
    }
}

/// A lease as given back to the pool.
#[derive(Copy, Clone, Debug)]
enum Given {
    Issued(Handle),
    /// Another pool's tag.
    Foreign,
    /// Never issued by any pool (a slot that does not exist, a generation never reached).
    Never,
}

fn ms_(ms: impl Into<u64>) -> Duration {
    Duration::from_millis(ms.into())
}

fn nth<T: Copy>(list: &[T], i: u8) -> Option<T> {
    (!list.is_empty()).then(|| list[usize::from(i) % list.len()])
}
