//! Named scenarios, each walking one area of the pool's rules through the vocabulary. Small
//! enough for every fixed capacity the fuzzers use (max <= 3). Replayed on every backend by a
//! unit test (`core/tests/seeds.rs`); the fuzzers start from a corpus of their own.

use super::vocab::{Back, Case, KeyArg, Op, Outcome, Pick, Setup, WPick, WaitArg};
use std::{vec, vec::Vec};
use Op::*;
use Pick::*;

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

fn case(setup: Setup, ops: Vec<Op>) -> Case {
    Case { setup, ops }
}

/// Every scenario, by name.
pub fn all() -> Vec<(&'static str, Case)> {
    let setup = Setup::new;
    vec![
        (
            "psycopg2-getconn-putconn",
            case(
                Setup {
                    up_to_min: true,
                    ..setup(1, 2)
                },
                vec![
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
            ),
        ),
        (
            "waiters-and-timeouts",
            case(
                setup(0, 1),
                vec![
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
            ),
        ),
        (
            "open-failures-backoff",
            case(
                Setup {
                    backoff_max_ms: 1_000,
                    ..setup(2, 3)
                },
                vec![
                    Poll { n: 0 },
                    OpenFailed {
                        ticket: Live(0),
                        permanent: false,
                    },
                    out(None, WaitArg::No),
                    out(None, WaitArg::Until(150)),
                    Poll { n: 0 },
                    OpenFailed {
                        ticket: Live(0),
                        permanent: false,
                    },
                    OpenFailed {
                        ticket: Live(0),
                        permanent: false,
                    },
                    Poll { n: 0 },
                    Timeout { ms: 150 },
                    Poll { n: 0 },
                    OpenFailed {
                        ticket: Live(0),
                        permanent: false,
                    },
                    ToDeadline,
                    ToDeadline,
                    Serve,
                ],
            ),
        ),
        (
            "lifetime-idle-expiry",
            case(
                Setup {
                    max_lifetime_ms: Some(500),
                    jitter_ms: 100,
                    max_idle_ms: Some(300),
                    ..setup(1, 3)
                },
                vec![
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
            ),
        ),
        (
            "resize-drain-check",
            case(
                setup(2, 3),
                vec![
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
                    CheckDone {
                        ticket: Live(0),
                        outcome: Outcome::Failed,
                    },
                    Serve,
                ],
            ),
        ),
        (
            "bad-handles",
            case(
                setup(1, 2),
                vec![
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
                        outcome: Outcome::Abandoned,
                    },
                    ResetDone {
                        ticket: Old(1),
                        outcome: Outcome::Ok,
                    },
                    CheckDone {
                        ticket: Old(0),
                        outcome: Outcome::Ok,
                    },
                    Cancel {
                        waiter: WPick::Raw(7),
                    },
                ],
            ),
        ),
        (
            "close-with-everything-in-flight",
            case(
                setup(2, 3),
                vec![
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
                        outcome: Outcome::Ok,
                    },
                    Serve,
                ],
            ),
        ),
        (
            "fifo-keep-up-to-min",
            case(
                Setup {
                    fifo: true,
                    up_to_min: true,
                    ..setup(1, 3)
                },
                vec![
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
            ),
        ),
        (
            "end-of-time",
            case(
                Setup {
                    max_lifetime_ms: Some(1),
                    huge: 0b1_1111,
                    max_idle_ms: Some(1),
                    ..setup(1, 2)
                },
                vec![
                    Serve,
                    out(None, WaitArg::End),
                    out(None, WaitArg::Past),
                    Serve,
                    FarFuture,
                    Timeout { ms: 65_535 },
                    out(None, WaitArg::Until(65_535)),
                    Poll { n: 0 },
                    OpenFailed {
                        ticket: Live(0),
                        permanent: false,
                    },
                    ToDeadline,
                    Backwards { ms: 65_535 },
                    Serve,
                ],
            ),
        ),
        (
            // A checkout that will not wait, queued for the open it ordered, when a shrink takes
            // that open back before the driver saw it: exhausted after all.
            "exhausted-after-shrink",
            case(
                setup(0, 2),
                vec![
                    out(None, WaitArg::No),
                    Serve,
                    out(None, WaitArg::No),
                    Resize { min: 0, max: 1 },
                    Serve,
                ],
            ),
        ),
        (
            // Bad credentials: every queued checkout fails at once, oldest first.
            "permanent-open-failure",
            case(
                setup(1, 2),
                vec![
                    out(None, WaitArg::Forever),
                    out(Some(2), WaitArg::Until(500)),
                    Poll { n: 0 },
                    OpenFailed {
                        ticket: Live(0),
                        permanent: true,
                    },
                    Poll { n: 0 },
                    ToDeadline,
                    Serve,
                    out(Some(2), WaitArg::No),
                    Serve,
                ],
            ),
        ),
        (
            // The driver gives up at its bounds: an abandoned reset and check close their
            // connections and the pool refills; an abandoned close still frees its place.
            "abandoned-at-the-bound",
            case(
                setup(1, 2),
                vec![
                    Serve,
                    out(None, WaitArg::Forever),
                    Serve,
                    back(Back::Dirty),
                    Poll { n: 0 },
                    ResetDone {
                        ticket: Live(0),
                        outcome: Outcome::Abandoned,
                    },
                    Poll { n: 0 },
                    CloseDone {
                        ticket: Live(0),
                        outcome: Outcome::Abandoned,
                    },
                    Serve,
                    CheckIdle,
                    Poll { n: 0 },
                    CheckDone {
                        ticket: Live(0),
                        outcome: Outcome::Abandoned,
                    },
                    Poll { n: 0 },
                    CloseDone {
                        ticket: Live(0),
                        outcome: Outcome::Failed,
                    },
                    Serve,
                ],
            ),
        ),
        (
            "tiny-waiter-bound",
            case(
                Setup {
                    max_waiting: 1,
                    ..setup(0, 1)
                },
                vec![
                    out(None, WaitArg::Forever),
                    out(None, WaitArg::Forever),
                    out(Some(0), WaitArg::No),
                    Poll { n: 0 },
                    Close,
                    out(None, WaitArg::Forever),
                    Resize { min: 0, max: 2 },
                ],
            ),
        ),
        (
            // Vetting: checkouts wait for the vets of idle connections; one fails (closed, the
            // next vetted), one waiter times out during its vet (the connection goes back idle),
            // a getconn is served by a vet, a connection just used goes straight to a waiter.
            "vet-before-use",
            case(
                Setup {
                    huge: super::vocab::VET,
                    ..setup(2, 3)
                },
                vec![
                    Serve,
                    out(None, WaitArg::Forever),
                    out(Some(1), WaitArg::Until(20)),
                    Poll { n: 0 },
                    CheckDone {
                        ticket: Live(0),
                        outcome: Outcome::Failed,
                    },
                    Poll { n: 0 },
                    Timeout { ms: 30 },
                    CheckDone {
                        ticket: Live(0),
                        outcome: Outcome::Ok,
                    },
                    Serve,
                    out(None, WaitArg::No),
                    Serve,
                    out(None, WaitArg::Forever),
                    back(Back::Clean),
                    Serve,
                    Close,
                    Serve,
                ],
            ),
        ),
    ]
}
