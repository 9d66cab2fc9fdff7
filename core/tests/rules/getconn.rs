//! psycopg2's `getconn`: checkouts that do not wait, keys, idle order.

use sanspool_core::testkit::{Cmd, Conn, Sim};
use sanspool_core::{Checkout, Config, Error, IdleOrder, Lease, Returned, Storage, Wait};
use std::collections::BTreeSet;
use std::time::Duration;

on_both_backends! {
    getconn_on_closed_pool_is_closed,
    getconn_without_key_gives_distinct_connections,
    getconn_same_key_gives_same_lease,
    getconn_lifo_hands_out_most_recently_returned,
    getconn_fifo_hands_out_least_recently_returned,
    getconn_opens_new_connection_below_max,
    getconn_at_max_without_waiting_is_exhausted,
    key_zero_is_a_key,
}

/// `getconn` on a closed pool: "connection pool is closed", whatever the key or wait.
fn getconn_on_closed_pool_is_closed<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 2));
    sim.close().unwrap();
    let err = sim.checkout(None, Wait::No).unwrap_err();
    assert_eq!(err, Error::Closed);
    assert_eq!(err.to_string(), "connection pool is closed");
    assert_eq!(sim.checkout(Some(1), Wait::No), Err(Error::Closed));
    assert_eq!(sim.checkout(None, Wait::Forever), Err(Error::Closed));
}

/// `getconn()` without a key: every call gets a connection of its own.
fn getconn_without_key_gives_distinct_connections<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(2, 3));
    let got: Vec<(Lease, Conn)> = (0..3).map(|_| sim.get(None)).collect();
    let conns: BTreeSet<Conn> = got.iter().map(|g| g.1).collect();
    let leases: BTreeSet<usize> = got.iter().map(|g| g.0.slot()).collect();
    assert_eq!(conns.len(), 3);
    assert_eq!(leases.len(), 3);
    assert_eq!(sim.stats().in_use, 3);
}

/// `getconn(key)` twice: the second call gets the same lease (and connection), nothing else moves.
fn getconn_same_key_gives_same_lease<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 2));
    let (lease, _) = sim.get(Some(7));
    sim.take_log();
    let stats = sim.stats();
    assert_eq!(sim.checkout(Some(7), Wait::No), Ok(Checkout::Held(lease)));
    assert_eq!(
        sim.checkout(Some(7), Wait::Forever),
        Ok(Checkout::Held(lease))
    );
    assert_eq!(sim.stats(), stats);
    assert_eq!(sim.take_log(), []);
}

/// LIFO (the default, psycopg2): the most recently returned idle connection goes out first.
fn getconn_lifo_hands_out_most_recently_returned<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(3, 3));
    let conns: Vec<Conn> = (0..3).map(|_| sim.get(None).1).collect();
    for c in [conns[0], conns[2], conns[1]] {
        sim.put(c, Returned::Clean);
        sim.advance(Duration::from_secs(1));
    }
    assert_eq!(sim.get(None).1, conns[1]);
    assert_eq!(sim.get(None).1, conns[2]);
    assert_eq!(sim.get(None).1, conns[0]);
}

/// `IdleOrder::Fifo`: the least recently returned idle connection goes out first.
fn getconn_fifo_hands_out_least_recently_returned<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config {
        idle_order: IdleOrder::Fifo,
        ..Config::new(3, 3)
    });
    let conns: Vec<Conn> = (0..3).map(|_| sim.get(None).1).collect();
    for c in [conns[0], conns[2], conns[1]] {
        sim.put(c, Returned::Clean);
        sim.advance(Duration::from_secs(1));
    }
    assert_eq!(sim.get(None).1, conns[0]);
    assert_eq!(sim.get(None).1, conns[2]);
    assert_eq!(sim.get(None).1, conns[1]);
}

/// Nothing idle and fewer than `max` in use: `getconn` opens a new connection for the caller.
fn getconn_opens_new_connection_below_max<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 2));
    assert_eq!(sim.get(None).1, 1);
    sim.take_log();
    let Ok(Checkout::Waiting(w)) = sim.checkout(None, Wait::No) else {
        panic!("a new connection is opened for the checkout")
    };
    assert_eq!(sim.take_log(), [Cmd::Open, Cmd::Grant(w, 2)]);
    assert_eq!(sim.stats().opens, 2);
    assert_eq!(sim.stats().in_use, 2);
}

/// `max` in use and `Wait::No`: "connection pool exhausted", and nothing changes.
fn getconn_at_max_without_waiting_is_exhausted<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::psycopg2(1, 2));
    sim.get(None);
    sim.get(None);
    let err = sim.unchanged(|s| s.checkout(None, Wait::No)).unwrap_err();
    assert_eq!(err, Error::Exhausted);
    assert_eq!(err.to_string(), "connection pool exhausted");
    let err = sim.unchanged(|s| s.checkout(Some(3), Wait::No));
    assert_eq!(err, Err(Error::Exhausted));
}

/// A key equal to 0 is a key like any other (psycopg2 treats it as "no key").
fn key_zero_is_a_key<S: Storage<Conn, u64>>() {
    let mut sim = Sim::<S>::new(Config::new(2, 2));
    let (lease, conn) = sim.get(Some(0));
    assert_eq!(sim.checkout(Some(0), Wait::No), Ok(Checkout::Held(lease)));
    let (_, other) = sim.get(None);
    assert_ne!(other, conn);
    assert_eq!(
        sim.checkin(lease, Some(&1), conn, Returned::Clean)
            .map_err(|r| r.error),
        Err(Error::WrongKey)
    );
    sim.checkin(lease, Some(&0), conn, Returned::Clean).unwrap();
    let (again, _) = sim.get(Some(0));
    assert_ne!(again, lease);
}
