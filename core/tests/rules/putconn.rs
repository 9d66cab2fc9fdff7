//! psycopg2's `putconn` and `detach`: what happens to a connection given back, or kept for good.

use crate::refused;
use sanspool_core::testkit::{Cmd, Conn, Sim};
use sanspool_core::{Checkout, Config, Error, Returned, Storage, Wait};

on_both_backends! {
    putconn_broken_is_closed,
    putconn_dirty_is_reset_then_idle,
    putconn_dirty_failed_reset_is_closed,
    putconn_close_flag_closes,
    putconn_psycopg2_keeps_only_up_to_min_idle,
    putconn_releases_the_key,
    detach_frees_the_slot_and_refills_min,
    detach_after_close_hands_the_connection_over,
    psycopg2_opens_min_only_when_made,
}

/// `Returned::Broken`: the connection is closed and counted; `min` is refilled.
fn putconn_broken_is_closed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 2));
    let (_, conn) = sim.get(None);
    sim.take_log();
    sim.put(conn, Returned::Broken);
    assert_eq!(sim.take_log(), [Cmd::Close(conn), Cmd::Open]);
    let s = sim.stats();
    assert_eq!((s.broken_returns, s.closes, s.idle), (1, 1, 1));
}

/// `Returned::Dirty`: a `Reset` command; a successful reset makes the connection idle.
fn putconn_dirty_is_reset_then_idle<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 2));
    sim.auto_reset = false;
    let (_, conn) = sim.get(None);
    sim.take_log();
    sim.put(conn, Returned::Dirty);
    assert_eq!(sim.take_log(), [Cmd::Reset(conn)]);
    let s = sim.stats();
    assert_eq!((s.resets, s.resetting, s.in_use, s.idle), (1, 1, 0, 0));
    sim.reset_next();
    assert_eq!(sim.take_log(), []);
    assert_eq!((sim.stats().resetting, sim.stats().idle), (0, 1));
    assert_eq!(sim.get(None).1, conn);
}

/// `Returned::Dirty` whose reset fails: the connection is closed.
fn putconn_dirty_failed_reset_is_closed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 2));
    sim.auto_reset = false;
    let (_, conn) = sim.get(None);
    sim.put(conn, Returned::Dirty);
    sim.take_log();
    sim.fail_resets = 1;
    sim.reset_next();
    assert_eq!(sim.take_log(), [Cmd::Close(conn)]);
    assert_eq!(sim.stats().size, 0);
}

/// `Returned::Close` (psycopg2's `putconn(close=True)`): closed, not counted as broken.
fn putconn_close_flag_closes<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(0, 2));
    let (_, conn) = sim.get(None);
    sim.take_log();
    sim.put(conn, Returned::Close);
    assert_eq!(sim.take_log(), [Cmd::Close(conn)]);
    let s = sim.stats();
    assert_eq!((s.closes, s.broken_returns, s.size), (1, 0, 0));
}

/// `KeepIdle::UpToMin` (`Config::psycopg2`): a returned connection is kept only while fewer than
/// `min` are idle, else closed (a dirty one too, without a reset).
fn putconn_psycopg2_keeps_only_up_to_min_idle<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 3));
    let (_, a) = sim.get(None);
    let (_, b) = sim.get(None);
    let (_, c) = sim.get(None);
    sim.take_log();
    sim.put(a, Returned::Clean);
    assert_eq!(sim.take_log(), []);
    sim.put(b, Returned::Clean);
    assert_eq!(sim.take_log(), [Cmd::Close(b)]);
    sim.put(c, Returned::Dirty);
    assert_eq!(sim.take_log(), [Cmd::Close(c)]);
    let s = sim.stats();
    assert_eq!((s.idle, s.size, s.resets), (1, 1, 0));
}

/// Checkin releases the key: the next checkout with it gets a new lease.
fn putconn_releases_the_key<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (first, conn) = sim.get(Some(5));
    sim.put(conn, Returned::Clean);
    let (second, again) = sim.get(Some(5));
    assert_eq!(again, conn);
    assert_ne!(second, first);
    assert_eq!(sim.checkout(Some(5), Wait::No), Ok(Checkout::Held(second)));
}

/// `detach`: the connection leaves the pool without a close, its slot is refilled for `min`,
/// `detached` counts it, and its lease is spent.
fn detach_frees_the_slot_and_refills_min<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (lease, conn) = sim.get(Some(2));
    sim.take_log();
    sim.detach(conn).unwrap();
    assert_eq!(sim.take_log(), [Cmd::Open]);
    let s = sim.stats();
    assert_eq!((s.detached, s.closes, s.idle), (1, 0, 1));
    let out = sim.unchanged(|s| s.with(|p, now| p.detach(now, lease)));
    assert_eq!(out, Err(Error::AlreadyReturned));
    let out = sim.unchanged(|s| s.checkin(lease, None, conn, Returned::Clean));
    assert_eq!(refused(out), (Error::AlreadyReturned, Some(conn)));
    assert_eq!(sim.get(Some(2)).1, 2);
}

/// After close a detach is still accepted: the connection becomes the borrower's, so it is no
/// longer the pool's to close, and the closed pool ends empty.
fn detach_after_close_hands_the_connection_over<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(1, 1));
    let (_, conn) = sim.get(None);
    sim.close().unwrap();
    sim.take_log();
    assert_eq!(sim.detach(conn), Ok(()));
    assert_eq!(sim.take_log(), []);
    assert_eq!(sim.stats().detached, 1);
    assert!(sim.pool().is_empty());
}

/// psycopg2's pool (`Config::psycopg2`, `refill: false`) opens `min` when it is made and never
/// again on its own: a broken return, a close, a drain or expiry leave fewer open; a checkout
/// opens what it needs.
fn psycopg2_opens_min_only_when_made<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(2, 3));
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Open]);
    assert!(sim.pool().is_warm());
    let (_, a) = sim.get(None);
    sim.put(a, Returned::Broken);
    assert_eq!(sim.take_log(), [Cmd::Close(a)], "no refill");
    assert_eq!(sim.stats().idle, 1);
    assert!(!sim.pool().is_warm());
    sim.drain().unwrap();
    assert_eq!(sim.stats().size, 0, "drained and not refilled");
    assert_eq!(sim.pool().poll_timeout(), None, "nothing to wake up for");
    // A checkout opens on demand, as psycopg2's getconn does.
    let (_, b) = sim.get(None);
    assert!(sim.take_log().contains(&Cmd::Open));
    sim.put(b, Returned::Clean);
    assert_eq!(sim.stats().idle, 1, "kept: fewer than min idle");
}
