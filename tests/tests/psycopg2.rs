//! psycopg2's pool behaviours, on the three pools, against a real server.
//!
//! What the server sees is read from `pg_stat_activity`, filtered by each test's application name:
//! "the constructor opens minconn" is `minconn` backends, "putconn(close=True) closes it" is its
//! backend gone.

mod common;

use std::thread;

use common::{backend_pid, connector, eventually, monitor};
use sanspool_postgres::psycopg2::PutError;
use sanspool_postgres::psycopg2::{
    Conn, LocalConn, PersistentConnectionPool, SimpleConnectionPool, ThreadedConnectionPool,
};
use sanspool_postgres::{Builder, CoreError, Error, GetError, PgConnector};

/// psycopg2's `getconn` / `putconn` / `closeall`, over the simple and the threaded pool alike.
trait Psycopg2: Sized {
    type Conn: std::fmt::Debug;
    fn build(builder: Builder<PgConnector>) -> Self;
    fn getconn(&self, key: Option<u64>) -> Result<Self::Conn, GetError<Error>>;
    fn putconn(&self, conn: Self::Conn, key: Option<&u64>, close: bool) -> Result<(), PutError>;
    fn closeall(&self) -> Result<(), CoreError>;
    /// The connection's backend pid (a query through the handle).
    fn pid(conn: &Self::Conn) -> i32;
    /// psycopg2's `conn1 is conn2`.
    fn same(a: &Self::Conn, b: &Self::Conn) -> bool;
}

impl Psycopg2 for SimpleConnectionPool<PgConnector> {
    type Conn = LocalConn<PgConnector>;
    fn build(builder: Builder<PgConnector>) -> Self {
        builder.build_simple().expect("build a simple pool")
    }
    fn getconn(&self, key: Option<u64>) -> Result<Self::Conn, GetError<Error>> {
        SimpleConnectionPool::getconn(self, key)
    }
    fn putconn(&self, conn: Self::Conn, key: Option<&u64>, close: bool) -> Result<(), PutError> {
        SimpleConnectionPool::putconn(self, conn, key, close)
    }
    fn closeall(&self) -> Result<(), CoreError> {
        SimpleConnectionPool::closeall(self)
    }
    fn pid(conn: &Self::Conn) -> i32 {
        backend_pid(&mut conn.borrow_mut().expect("not returned"))
    }
    fn same(a: &Self::Conn, b: &Self::Conn) -> bool {
        a.ptr_eq(b)
    }
}

impl Psycopg2 for ThreadedConnectionPool<PgConnector> {
    type Conn = Conn<PgConnector>;
    fn build(builder: Builder<PgConnector>) -> Self {
        builder.build_threaded().expect("build a threaded pool")
    }
    fn getconn(&self, key: Option<u64>) -> Result<Self::Conn, GetError<Error>> {
        ThreadedConnectionPool::getconn(self, key)
    }
    fn putconn(&self, conn: Self::Conn, key: Option<&u64>, close: bool) -> Result<(), PutError> {
        ThreadedConnectionPool::putconn(self, conn, key, close)
    }
    fn closeall(&self) -> Result<(), CoreError> {
        ThreadedConnectionPool::closeall(self)
    }
    fn pid(conn: &Self::Conn) -> i32 {
        backend_pid(&mut conn.lock().expect("not returned"))
    }
    fn same(a: &Self::Conn, b: &Self::Conn) -> bool {
        a.ptr_eq(b)
    }
}

/// A pool in psycopg2's mode (no waiting; returned connections kept only up to `min` idle).
fn psycopg2<P: Psycopg2>(name: &str, min: usize, max: usize) -> P {
    P::build(Builder::new(connector(name)).min(min).max(max).psycopg2())
}

fn constructor_opens_minconn<P: Psycopg2>(name: &str) {
    let mut mon = monitor(name);
    let pool: P = psycopg2(name, 3, 5);
    assert_eq!(mon.count(), 3, "the constructor opened minconn connections");
    drop(pool);
    eventually("the dropped pool's connections to close", || {
        mon.count() == 0
    });
}

fn same_key_same_connection<P: Psycopg2>(name: &str) {
    let pool: P = psycopg2(name, 1, 4);
    let a = pool.getconn(Some(7)).unwrap();
    let b = pool.getconn(Some(7)).unwrap();
    assert!(P::same(&a, &b), "getconn(key) twice is the same connection");
    assert_eq!(P::pid(&a), P::pid(&b), "the same backend");
    pool.putconn(a, Some(&7), false).unwrap();
    // The key is free again: a new getconn of it is a new checkout.
    let c = pool.getconn(Some(7)).unwrap();
    assert!(!P::same(&b, &c));
}

fn different_keys_different_connections<P: Psycopg2>(name: &str) {
    let mut mon = monitor(name);
    let pool: P = psycopg2(name, 1, 4);
    let conns = [
        pool.getconn(Some(1)).unwrap(),
        pool.getconn(Some(2)).unwrap(),
        pool.getconn(None).unwrap(),
        pool.getconn(None).unwrap(),
    ];
    let mut pids: Vec<i32> = conns.iter().map(P::pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(
        pids.len(),
        4,
        "two keys and two unkeyed checkouts: four backends"
    );
    assert_eq!(mon.pids(), pids);
}

fn lifo_reuses_the_last_returned<P: Psycopg2>(name: &str) {
    let pool: P = psycopg2(name, 3, 3);
    let a = pool.getconn(None).unwrap();
    let b = pool.getconn(None).unwrap();
    let c = pool.getconn(None).unwrap();
    let (pid_a, pid_c) = (P::pid(&a), P::pid(&c));
    pool.putconn(c, None, false).unwrap();
    pool.putconn(a, None, false).unwrap();
    let next = pool.getconn(None).unwrap();
    assert_eq!(
        P::pid(&next),
        pid_a,
        "the most recently returned comes first"
    );
    pool.putconn(next, None, false).unwrap();
    pool.putconn(b, None, false).unwrap();
    let b2 = pool.getconn(None).unwrap();
    let a2 = pool.getconn(None).unwrap();
    let c2 = pool.getconn(None).unwrap();
    assert_eq!((P::pid(&a2), P::pid(&c2)), (pid_a, pid_c));
    drop(b2);
}

fn exhausted<P: Psycopg2>(name: &str) {
    let pool: P = psycopg2(name, 1, 2);
    let _a = pool.getconn(None).unwrap();
    let _b = pool.getconn(Some(1)).unwrap();
    let err = pool.getconn(None).unwrap_err();
    assert!(matches!(err, GetError::Exhausted), "{err:?}");
    assert_eq!(err.to_string(), "connection pool exhausted");
    // A key already held is still served: it needs no new connection.
    assert!(pool.getconn(Some(1)).is_ok());
}

fn putconn_unknown_connection<P: Psycopg2>(name: &str) {
    let pool: P = psycopg2(name, 1, 2);
    let other: P = psycopg2(&format!("{name}-other"), 1, 2);
    let stranger = other.getconn(None).unwrap();
    let err = pool.putconn(stranger, None, false).unwrap_err();
    assert!(matches!(err, PutError::Foreign), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("trying to put unkeyed connection"),
        "{err}"
    );
    // The same connection given back twice: the second is refused.
    let a = pool.getconn(Some(9)).unwrap();
    let again = pool.getconn(Some(9)).unwrap();
    pool.putconn(a, Some(&9), false).unwrap();
    let err = pool.putconn(again, Some(&9), false).unwrap_err();
    assert!(matches!(err, PutError::AlreadyReturned), "{err:?}");
}

fn putconn_close_closes_the_backend<P: Psycopg2>(name: &str) {
    let mut mon = monitor(name);
    let pool: P = psycopg2(name, 1, 3);
    let conn = pool.getconn(None).unwrap();
    let pid = P::pid(&conn);
    pool.putconn(conn, None, true).unwrap();
    eventually("the closed backend to go", || !mon.alive(pid));
    // psycopg2 does not refill minconn on its own: nothing is open until a getconn needs it.
    assert_eq!(mon.count(), 0);
    let again = pool.getconn(None).unwrap();
    assert_ne!(P::pid(&again), pid);
    assert_eq!(mon.count(), 1);
    pool.putconn(again, None, false).unwrap();
}

fn closeall_closes_everything<P: Psycopg2>(name: &str) {
    let mut mon = monitor(name);
    let pool: P = psycopg2(name, 3, 4);
    let held = pool.getconn(Some(3)).unwrap();
    let spare = pool.getconn(None).unwrap();
    let mut lent = vec![P::pid(&held), P::pid(&spare)];
    lent.sort_unstable();
    assert_eq!(mon.count(), 3);
    pool.closeall().unwrap();
    // The idle one closes at once; lent ones when they come back (psycopg2 closes them under
    // their borrowers; here a borrower's connection is never closed under it).
    eventually("the idle connection to close", || mon.pids() == lent);
    let err = pool.getconn(None).unwrap_err();
    assert_eq!(err.to_string(), "connection pool is closed");
    // Given back after closeall: taken, closed, and reported as psycopg2 does.
    let err = pool.putconn(held, Some(&3), false).unwrap_err();
    assert_eq!(err.to_string(), "connection pool is closed");
    assert!(matches!(pool.closeall(), Err(CoreError::Closed)));
    drop(spare);
    eventually("every connection to close", || mon.count() == 0);
}

fn returned_beyond_minconn_are_closed<P: Psycopg2>(name: &str) {
    let mut mon = monitor(name);
    let pool: P = psycopg2(name, 1, 3);
    let conns: Vec<_> = (0..3).map(|_| pool.getconn(None).unwrap()).collect();
    let pids: Vec<i32> = conns.iter().map(P::pid).collect();
    assert_eq!(mon.count(), 3);
    for conn in conns {
        pool.putconn(conn, None, false).unwrap();
    }
    // psycopg2 keeps a returned connection only while fewer than minconn are idle.
    eventually("returned connections beyond minconn to close", || {
        mon.count() == 1
    });
    let kept = mon.pids()[0];
    assert!(pids.contains(&kept), "the kept one is one of ours");
}

/// Each behaviour, as one test per pool.
macro_rules! psycopg2_tests {
    ($pool:ty, $prefix:literal, $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                super::$test::<$pool>(concat!($prefix, "-", stringify!($test)));
            }
        )*
    };
}

mod simple {
    psycopg2_tests!(
        super::SimpleConnectionPool<super::PgConnector>,
        "s",
        constructor_opens_minconn,
        same_key_same_connection,
        different_keys_different_connections,
        lifo_reuses_the_last_returned,
        exhausted,
        putconn_unknown_connection,
        putconn_close_closes_the_backend,
        closeall_closes_everything,
        returned_beyond_minconn_are_closed,
    );
}

mod threaded {
    psycopg2_tests!(
        super::ThreadedConnectionPool<super::PgConnector>,
        "t",
        constructor_opens_minconn,
        same_key_same_connection,
        different_keys_different_connections,
        lifo_reuses_the_last_returned,
        exhausted,
        putconn_unknown_connection,
        putconn_close_closes_the_backend,
        closeall_closes_everything,
        returned_beyond_minconn_are_closed,
    );
}

/// The persistent pool's psycopg2 behaviours: the key is the thread.
mod persistent {
    use super::*;

    fn pool(name: &str, min: usize, max: usize) -> PersistentConnectionPool<PgConnector> {
        Builder::new(connector(name))
            .min(min)
            .max(max)
            .psycopg2()
            .build_persistent()
            .expect("build a persistent pool")
    }

    fn pid(conn: &Conn<PgConnector, thread::ThreadId>) -> i32 {
        backend_pid(&mut conn.lock().expect("not returned"))
    }

    #[test]
    fn constructor_opens_minconn() {
        let mut mon = monitor("p-min");
        let _pool = pool("p-min", 2, 4);
        assert_eq!(mon.count(), 2);
    }

    #[test]
    fn same_thread_same_connection_other_threads_others() {
        let pool = pool("p-same", 1, 4);
        let a = pool.getconn().unwrap();
        let b = pool.getconn().unwrap();
        assert!(a.ptr_eq(&b));
        let mine = pid(&a);
        assert_eq!(pid(&b), mine);
        let theirs: Vec<i32> = (0..2)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let conn = pool.getconn().unwrap();
                    let again = pool.getconn().unwrap();
                    assert!(conn.ptr_eq(&again));
                    let pid = pid(&conn);
                    pool.putconn(Some(conn), false).unwrap();
                    pid
                })
                .join()
                .unwrap()
            })
            .collect();
        assert!(
            !theirs.contains(&mine),
            "another thread never gets this thread's connection"
        );
    }

    #[test]
    fn exhausted() {
        let pool = pool("p-exh", 1, 1);
        let _mine = pool.getconn().unwrap();
        let pool2 = pool.clone();
        let err = thread::spawn(move || pool2.getconn().map(|_| ()).unwrap_err())
            .join()
            .unwrap();
        assert_eq!(err.to_string(), "connection pool exhausted");
    }

    #[test]
    fn putconn_unkeyed() {
        let pool = pool("p-unkeyed", 1, 2);
        let err = pool.putconn(None, false).unwrap_err();
        assert!(matches!(err, PutError::Unkeyed), "{err:?}");
        assert_eq!(err.to_string(), "trying to put unkeyed connection");
    }

    #[test]
    fn putconn_close_closes_the_backend() {
        let mut mon = monitor("p-close");
        let pool = pool("p-close", 1, 2);
        let conn = pool.getconn().unwrap();
        let pid = pid(&conn);
        pool.putconn(Some(conn), true).unwrap();
        eventually("the closed backend to go", || !mon.alive(pid));
        // The next getconn of this thread is a new connection.
        let conn = pool.getconn().unwrap();
        assert_ne!(super::persistent::pid(&conn), pid);
    }

    #[test]
    fn returned_beyond_minconn_are_closed() {
        let name = "p-keep";
        let mut mon = monitor(name);
        let pool = pool(name, 1, 3);
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (pool, barrier) = (pool.clone(), barrier.clone());
                thread::spawn(move || {
                    let conn = pool.getconn().unwrap();
                    let pid = pid(&conn);
                    barrier.wait(); // all three held at once
                    pool.putconn(Some(conn), false).unwrap();
                    pid
                })
            })
            .collect();
        let pids: Vec<i32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        eventually("returned connections beyond minconn to close", || {
            mon.count() == 1
        });
        assert!(pids.contains(&mon.pids()[0]));
    }

    #[test]
    fn closeall_closes_everything() {
        let mut mon = monitor("p-closeall");
        let pool = pool("p-closeall", 2, 3);
        let conn = pool.getconn().unwrap();
        pool.putconn(Some(conn), false).unwrap();
        let held = pool.getconn().unwrap();
        let held_pid = pid(&held);
        pool.closeall().unwrap();
        eventually("the idle connection to close", || mon.pids() == [held_pid]);
        assert_eq!(
            pool.getconn().unwrap_err().to_string(),
            "connection pool is closed"
        );
        let err = pool.putconn(Some(held), false).unwrap_err();
        assert_eq!(err.to_string(), "connection pool is closed");
        eventually("every connection to close", || mon.count() == 0);
        assert!(matches!(pool.closeall(), Err(CoreError::Closed)));
    }
}
