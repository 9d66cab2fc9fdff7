//! Leases and tickets: forged, foreign, stale, undrained, or of the wrong kind, they are refused,
//! nothing changes, and the connection they came with is handed back.

use crate::refused;
use sanspool_core::testkit::{forge, Conn, Sim};
use sanspool_core::{Completion, Config, Error, Finished, Returned, Storage};

on_both_backends! {
    putconn_forged_lease_is_unkeyed,
    putconn_foreign_lease_is_foreign,
    putconn_twice_is_already_returned,
    putconn_wrong_key_is_wrong_key,
    open_ticket_stale_forged_or_undrained_is_unknown,
    reset_and_close_tickets_stale_or_undrained_are_unknown,
    completions_of_another_kind_for_a_reset_ticket_are_unknown,
    completions_of_another_kind_for_a_check_ticket_are_unknown,
}

/// Reports `done`, which the pool must refuse without changing anything; returns the refusal.
fn refuse<S: Storage<Conn, u64>>(
    sim: &mut Sim<S>,
    done: Completion<Conn>,
) -> (Error, Option<Conn>) {
    refused(sim.unchanged(|s| s.with(|p, now| p.handle(now, done))))
}

/// A lease the pool never issued: "trying to put unkeyed connection", connection handed back.
fn putconn_forged_lease_is_unkeyed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 2));
    let (lease, conn) = sim.get(None);
    let slot = u16::try_from(lease.slot()).unwrap();
    let idle_slot = 1 - slot;
    let forged = [
        forge::lease(0, 9, 0),
        forge::lease(0, idle_slot, 2),
        forge::lease(0, idle_slot, 0x7fff_ffff),
        forge::lease(0, slot, forge::lease_parts(lease).2 + 1),
    ];
    for f in forged {
        let out = sim.unchanged(|s| s.checkin(f, None, conn, Returned::Clean));
        let (error, back) = refused(out);
        assert_eq!(error, Error::Unkeyed, "{f:?}");
        assert_eq!(error.to_string(), "trying to put unkeyed connection");
        assert_eq!(back, Some(conn));
    }
    sim.put(conn, Returned::Clean);
    assert_eq!(sim.stats().idle, 2);
}

/// A lease from another pool (another `Config::tag`) is `Foreign`, connection handed back.
fn putconn_foreign_lease_is_foreign<S: Storage<Conn, u64>>() {
    let mut a = Sim::<S>::new(Config {
        tag: 1,
        ..Config::new(1, 1)
    });
    let mut b = Sim::<S>::new(Config {
        tag: 2,
        ..Config::new(1, 1)
    });
    let (_, ca) = a.get(None);
    let (lb, cb) = b.get(None);
    assert_eq!(forge::lease_parts(lb).0, 2);
    let out = a.unchanged(|s| s.checkin(lb, None, ca, Returned::Clean));
    assert_eq!(refused(out), (Error::Foreign, Some(ca)));
    a.put(ca, Returned::Clean);
    b.put(cb, Returned::Clean);
}

/// A second checkin with the same lease is `AlreadyReturned`, also once the connection is reused.
fn putconn_twice_is_already_returned<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (lease, conn) = sim.get(None);
    sim.put(conn, Returned::Clean);
    let out = sim.unchanged(|s| s.checkin(lease, None, conn, Returned::Clean));
    let (error, back) = refused(out);
    assert_eq!(error, Error::AlreadyReturned);
    // psycopg2's text for a second putconn, with the detail after a colon.
    assert_eq!(
        error.to_string(),
        "trying to put unkeyed connection: it was already returned"
    );
    assert_eq!(back, Some(conn));

    let (lease2, conn2) = sim.get(None);
    assert_eq!(conn2, conn);
    let out = sim.unchanged(|s| s.checkin(lease, None, conn, Returned::Broken));
    assert_eq!(refused(out), (Error::AlreadyReturned, Some(conn)));
    assert_eq!(sim.lease(conn), lease2);
    sim.put(conn, Returned::Clean);
}

/// A checkin naming a key the connection is not held under is `WrongKey`.
fn putconn_wrong_key_is_wrong_key<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 2));
    let (keyed, kc) = sim.get(Some(1));
    let (plain, pc) = sim.get(None);
    let out = sim.unchanged(|s| s.checkin(keyed, Some(&2), kc, Returned::Clean));
    let (error, back) = refused(out);
    assert_eq!((error, back), (Error::WrongKey, Some(kc)));
    assert_eq!(error.to_string(), "connection is not held under this key");
    let out = sim.unchanged(|s| s.checkin(plain, Some(&1), pc, Returned::Clean));
    assert_eq!(refused(out), (Error::WrongKey, Some(pc)));
    sim.checkin(keyed, Some(&1), kc, Returned::Clean).unwrap();
    sim.checkin(plain, None, pc, Returned::Clean).unwrap();
}

/// Open tickets: one not drained yet, forged (other pool, other slot, other generation), stale,
/// or answered with a completion of another kind is `UnknownTicket`; nothing changes and the
/// connection is handed back.
fn open_ticket_stale_forged_or_undrained_is_unknown<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::undrained(Config::new(1, 1));
    let real = forge::ticket(0, 0, 1);
    let opened = |ticket| Completion::Opened { ticket, conn: 100 };
    let unknown = (Error::UnknownTicket, Some(100));
    assert_eq!(refuse(&mut sim, opened(real)), unknown);
    let failed = Completion::OpenFailed {
        ticket: real,
        permanent: false,
    };
    assert_eq!(refuse(&mut sim, failed), (Error::UnknownTicket, None));
    sim.poll();
    assert_eq!(sim.opens, [real]);
    for forged in [
        forge::ticket(9, 0, 1),
        forge::ticket(0, 1, 1),
        forge::ticket(0, 0, 2),
    ] {
        assert_eq!(refuse(&mut sim, opened(forged)), unknown);
    }
    let reset = Completion::Reset {
        ticket: real,
        conn: 100,
        outcome: Finished::Ok,
    };
    assert_eq!(refuse(&mut sim, reset), unknown);
    let checked = Completion::Checked {
        ticket: real,
        conn: 100,
        outcome: Finished::Ok,
    };
    assert_eq!(refuse(&mut sim, checked), unknown);
    let closed = Completion::Closed {
        ticket: real,
        outcome: Finished::Ok,
    };
    assert_eq!(refuse(&mut sim, closed), (Error::UnknownTicket, None));
    assert_eq!(
        Error::UnknownTicket.to_string(),
        "no such operation in progress"
    );

    sim.open_next();
    assert_eq!(refuse(&mut sim, opened(real)), unknown);
    let failed = Completion::OpenFailed {
        ticket: real,
        permanent: false,
    };
    assert_eq!(refuse(&mut sim, failed), (Error::UnknownTicket, None));
    assert_eq!(sim.stats().idle, 1);
}

/// Reset and close tickets: undrained or stale ones are `UnknownTicket`, nothing changes.
fn reset_and_close_tickets_stale_or_undrained_are_unknown<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (lease, conn) = sim.get(None);
    sim.auto_poll = false;
    sim.checkin(lease, None, conn, Returned::Dirty).unwrap();
    // A slot's generation moves on with every state change: in use -> resetting is one.
    let undrained = forge::ticket(0, 0, forge::lease_parts(lease).2 + 1);
    let reset = |ticket| Completion::Reset {
        ticket,
        conn: 100,
        outcome: Finished::Ok,
    };
    let unknown = (Error::UnknownTicket, Some(100));
    assert_eq!(refuse(&mut sim, reset(undrained)), unknown);
    (sim.auto_poll, sim.auto_reset, sim.auto_close) = (true, false, false);
    sim.poll();
    let (ticket, _) = sim.resets[0];
    assert_eq!(ticket, undrained);
    sim.fail_resets = 1;
    sim.reset_next();
    assert_eq!(refuse(&mut sim, reset(ticket)), unknown);
    let (close_ticket, _) = sim.closes[0];
    sim.close_next();
    let closed = Completion::Closed {
        ticket: close_ticket,
        outcome: Finished::Abandoned,
    };
    assert_eq!(refuse(&mut sim, closed), (Error::UnknownTicket, None));
    assert_eq!(sim.stats().idle, 1);
}

/// A reset's ticket answered as a check (or an open, or a close) is `UnknownTicket`: the
/// connection comes back to the driver, and the reset is still owed and accepted.
fn completions_of_another_kind_for_a_reset_ticket_are_unknown<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    sim.auto_reset = false;
    let (_, conn) = sim.get(None);
    sim.put(conn, Returned::Dirty);
    let (ticket, out) = sim.resets[0];
    assert_eq!(out, conn);
    // Refused whatever the outcome: an abandoned one is not counted either.
    for outcome in [Finished::Ok, Finished::Failed, Finished::Abandoned] {
        let checked = Completion::Checked {
            ticket,
            conn,
            outcome,
        };
        assert_eq!(
            refuse(&mut sim, checked),
            (Error::UnknownTicket, Some(conn))
        );
    }
    let opened = Completion::Opened { ticket, conn };
    assert_eq!(refuse(&mut sim, opened), (Error::UnknownTicket, Some(conn)));
    for outcome in [Finished::Ok, Finished::Abandoned] {
        let closed = Completion::Closed { ticket, outcome };
        assert_eq!(refuse(&mut sim, closed), (Error::UnknownTicket, None));
    }
    assert_eq!(sim.stats().resetting, 1);
    sim.reset_next();
    let s = sim.stats();
    assert_eq!((s.resetting, s.idle, s.resets, s.closes), (0, 1, 1, 0));
    assert_eq!(sim.get(None).1, conn);
}

/// A check's ticket answered as a reset (or an open, or a close) is `UnknownTicket`: the
/// connection comes back to the driver, and the check is still owed and accepted.
fn completions_of_another_kind_for_a_check_ticket_are_unknown<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    sim.auto_reset = false;
    assert_eq!(sim.check_idle(), Ok(1));
    let (ticket, conn) = sim.checks[0];
    for outcome in [Finished::Ok, Finished::Failed, Finished::Abandoned] {
        let reset = Completion::Reset {
            ticket,
            conn,
            outcome,
        };
        assert_eq!(refuse(&mut sim, reset), (Error::UnknownTicket, Some(conn)));
    }
    let opened = Completion::Opened { ticket, conn };
    assert_eq!(refuse(&mut sim, opened), (Error::UnknownTicket, Some(conn)));
    for outcome in [Finished::Ok, Finished::Abandoned] {
        let closed = Completion::Closed { ticket, outcome };
        assert_eq!(refuse(&mut sim, closed), (Error::UnknownTicket, None));
    }
    assert_eq!(sim.stats().resetting, 1);
    sim.check_next();
    let s = sim.stats();
    assert_eq!((s.resetting, s.idle, s.resets, s.closes), (0, 1, 0, 0));
    assert_eq!(sim.get(None).1, conn);
}
