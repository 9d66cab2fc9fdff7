//! A short outage stays short: a server that is full for 1.5 s (every slot taken), while
//! checkouts wait for new connections, is served again within about a second of having room,
//! with the builders' default settings — both drivers. (The open backoff grows one step per round
//! of failures, not per failed open, and is capped at 1 s: `core/tests/rules/opens.rs` has the
//! rule; this is the real server.)

use std::thread;
use std::time::{Duration, Instant};

use sanspool_postgres::postgres::{Client, NoTls};
use sanspool_postgres::{PgConnector, Pool};
use sanspool_tests::{PgServer, Setup};
use sanspool_tokio::postgres as tpg;

/// The server's slots; one is the pool's first connection, the rest taken by hogs.
const SLOTS: usize = 5;
const WAITERS: usize = 4;
const OUTAGE: Duration = Duration::from_millis(1500);
/// "Within a second": the backoff's cap, plus a connect and a backend's exit on a busy machine.
const RECOVERY: Duration = Duration::from_millis(1300);

fn full_server() -> PgServer {
    PgServer::start_with(Setup {
        options: format!("-c max_connections={SLOTS} -c superuser_reserved_connections=0"),
        ..Setup::default()
    })
    .expect("a server of our own")
}

/// Takes every slot the server has left.
fn hog(dsn: &str) -> Vec<Client> {
    let mut hogs = Vec::new();
    while let Ok(client) = sanspool_postgres::postgres::Client::connect(dsn, NoTls) {
        hogs.push(client);
    }
    assert_eq!(hogs.len(), SLOTS - 1, "every slot but the pool's taken");
    hogs
}

#[test]
fn a_full_server_is_served_within_a_second_of_having_room() {
    let server = full_server();
    let dsn = server.dsn();

    // Blocking: the pool's one connection held, every other slot hogged, four checkouts wait.
    let pool: Pool<PgConnector> = Pool::new(PgConnector::new(&dsn).expect("a DSN")).unwrap();
    let held = pool.get().expect("the pool's first connection");
    let hogs = hog(&dsn);
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let pool = pool.clone();
            thread::spawn(move || {
                let mut conn = pool.get().expect("served after the outage");
                conn.simple_query("SELECT 1").expect("a query");
                Instant::now()
            })
        })
        .collect();
    thread::sleep(OUTAGE);
    let failures = pool.stats().open_failures;
    assert!(failures > 0, "the pool tried during the outage");
    let room = Instant::now();
    drop(hogs);
    let last = waiters
        .into_iter()
        .map(|w| w.join().expect("a waiter"))
        .max()
        .expect("waiters");
    let took = last.saturating_duration_since(room);
    eprintln!("blocking: {failures} failed opens in {OUTAGE:?}; all served {took:?} after room");
    assert!(
        took <= RECOVERY,
        "served {took:?} after the server had room"
    );
    drop(held);
    drop(pool);

    // Async, the same.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let pool = sanspool_tokio::Pool::builder(tpg::PgConnector::new(&dsn).expect("a DSN"))
            .build()
            .await
            .unwrap();
        let held = pool.get().await.expect("the pool's first connection");
        // Blocking clients live and die outside the runtime.
        let hogs = {
            let dsn = dsn.clone();
            thread::spawn(move || hog(&dsn)).join().expect("hogs")
        };
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let conn = pool.get().await.expect("served after the outage");
                    conn.simple_query("SELECT 1").await.expect("a query");
                    Instant::now()
                })
            })
            .collect();
        tokio::time::sleep(OUTAGE).await;
        let failures = pool.stats().open_failures;
        assert!(failures > 0, "the pool tried during the outage");
        let room = Instant::now();
        thread::spawn(move || drop(hogs)).join().expect("hogs gone");
        let mut last = room;
        for w in waiters {
            last = last.max(w.await.expect("a waiter"));
        }
        let took = last.saturating_duration_since(room);
        eprintln!("async: {failures} failed opens in {OUTAGE:?}; all served {took:?} after room");
        assert!(
            took <= RECOVERY,
            "served {took:?} after the server had room"
        );
        drop(held);
    });
}
