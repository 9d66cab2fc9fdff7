//! What r2d2's and bb8's users rely on, on a real PostgreSQL, through both drivers: a build that
//! waits for its connections while the database starts (and gives up at once when it never
//! can), a line of 25 000 waiting checkouts, the event hook, and errors that say their cause.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::{monitor_for, named, runtime};
use sanspool_postgres::{BuildError, Event, GetError, LogEvents, PgConnector, Pool};
use sanspool_tests::{shared_dsn, PgServer};
use sanspool_tokio::postgres as tpg;

/// Room for a busy machine past a bound the pool keeps.
const MARGIN: Duration = Duration::from_millis(300);

// ------------------------------------------------------------------------ build

/// r2d2's build retries until `connection_timeout`: an application started while its database
/// restarts comes up once the database does. The server is down when the build starts and is
/// started a second later: both drivers' builds return with `min` connections open.
#[test]
fn the_build_waits_for_a_database_that_starts_a_second_later() {
    let mut server = PgServer::start().expect("a server of our own");
    let dsn = server.dsn();
    server.stop().expect("stop the server");
    let up = Arc::new(Mutex::new(None::<Instant>));
    let starter = {
        let up = Arc::clone(&up);
        move |mut server: PgServer| {
            let up = Arc::clone(&up);
            thread::spawn(move || {
                thread::sleep(Duration::from_secs(1));
                server.start_again().expect("start the server again");
                *up.lock().unwrap() = Some(Instant::now());
                server
            })
        }
    };

    let started = Instant::now();
    let starting = starter(server);
    let pool = Pool::builder(PgConnector::new(&named(&dsn, "build-wait")).expect("a DSN"))
        .min(2)
        .max(4)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| panic!("the build gave up: {e}"));
    let built = Instant::now();
    let server = starting.join().expect("the starter");
    let ready = up.lock().unwrap().take().expect("the server started");
    let stats = pool.stats();
    assert!(stats.open_failures >= 1, "no open failed: {stats:?}");
    assert!(stats.idle + stats.in_use >= 2, "{stats:?}");
    let mut conn = pool.get().expect("a connection");
    conn.simple_query("SELECT 1").expect("a query");
    drop(conn);
    pool.close().expect("close");
    eprintln!(
        "blocking: the build returned {:?} after it started, {:?} after the server was up",
        built - started,
        built.saturating_duration_since(ready)
    );

    // The same through the async pool.
    let mut server = server;
    server.stop().expect("stop the server");
    let rt = runtime(2);
    let started = Instant::now();
    let starting = starter(server);
    let connector = tpg::PgConnector::new(&named(&dsn, "build-wait-async")).expect("a DSN");
    let pool = rt
        .block_on(
            sanspool_tokio::Pool::builder(connector)
                .min(2)
                .max(4)
                .timeout(Duration::from_secs(30))
                .build(),
        )
        .unwrap_or_else(|e| panic!("the async build gave up: {e}"));
    let built = Instant::now();
    let _server = starting.join().expect("the starter");
    let ready = up.lock().unwrap().take().expect("the server started");
    assert!(pool.stats().open_failures >= 1);
    rt.block_on(async {
        let conn = pool.get().await.expect("a connection");
        conn.simple_query("SELECT 1").await.expect("a query");
    });
    rt.block_on(pool.close()).expect("close");
    eprintln!(
        "async: the build returned {:?} after it started, {:?} after the server was up",
        built - started,
        built.saturating_duration_since(ready)
    );
}

/// A server with a role `app` whose password is `right`, checked by SCRAM.
fn server_with_a_password() -> PgServer {
    let server = PgServer::start().expect("a server of our own");
    server
        .prepend_hba("host all app 127.0.0.1/32 scram-sha-256")
        .expect("pg_hba.conf");
    let mut admin = sanspool_postgres::postgres::Client::connect(
        &server.dsn(),
        sanspool_postgres::postgres::NoTls,
    )
    .expect("an admin connection");
    admin
        .batch_execute("CREATE ROLE app LOGIN PASSWORD 'right'; SELECT pg_reload_conf()")
        .expect("the role");
    server
}

/// A failure that will not go away (a wrong password, a database that does not exist) fails the
/// build at once, well within its 10 s bound, and its text says why.
#[test]
fn a_build_that_cannot_succeed_fails_at_once_naming_the_cause() {
    let server = server_with_a_password();
    let timeout = Duration::from_secs(10);
    let cases = [
        (
            format!("{} user=app password=wrong", server.dsn()),
            "password authentication failed for user \"app\"",
        ),
        (
            format!("{} dbname=sp_no_such_database", shared_dsn()),
            "database \"sp_no_such_database\" does not exist",
        ),
    ];
    let rt = runtime(1);
    for (dsn, cause) in cases {
        let started = Instant::now();
        let err = Pool::builder(PgConnector::new(&dsn).expect("a DSN"))
            .min(1)
            .timeout(timeout)
            .build()
            .map(drop)
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, BuildError::Connect(_)), "{err:?}");
        assert!(err.to_string().contains(cause), "{err}");
        assert!(took < timeout / 2, "took {took:?}");

        let started = Instant::now();
        let connector = tpg::PgConnector::new(&dsn).expect("a DSN");
        let err = rt
            .block_on(
                sanspool_tokio::Pool::builder(connector)
                    .min(1)
                    .timeout(timeout)
                    .build(),
            )
            .map(drop)
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, BuildError::Connect(_)), "{err:?}");
        assert!(err.to_string().contains(cause), "{err}");
        assert!(took < timeout / 2, "took {took:?}");
        eprintln!("failed at once ({took:?}): {err}");
    }
}

/// psycopg2's module keeps psycopg2's build: the first failed open is the error, even one that
/// could succeed later (the server is down).
#[test]
fn psycopg2_pools_fail_on_the_first_failed_open() {
    use sanspool_postgres::psycopg2::ThreadedConnectionPool;
    let mut server = PgServer::start().expect("a server of our own");
    let dsn = server.dsn();
    server.stop().expect("stop the server");
    let started = Instant::now();
    let err = ThreadedConnectionPool::new(1, 2, PgConnector::new(&dsn).expect("a DSN"))
        .map(drop)
        .unwrap_err();
    assert!(matches!(err, BuildError::Connect(_)), "{err:?}");
    assert!(err.to_string().contains("Connection refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// With the server down for good, the build gives up at its bound (the timeout, 1 s at least)
/// and names the last failure.
#[test]
fn a_build_out_of_time_names_the_last_cause() {
    let mut server = PgServer::start().expect("a server of our own");
    let dsn = server.dsn();
    server.stop().expect("stop the server");
    let bound = Duration::from_secs(1);

    let started = Instant::now();
    let err = Pool::builder(PgConnector::new(&dsn).expect("a DSN"))
        .min(1)
        .timeout(bound)
        .build()
        .map(drop)
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, BuildError::Timeout(Some(_))), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("timed out waiting for a connection: cannot reach the server: "),
        "{text}"
    );
    assert!(text.contains("Connection refused"), "{text}");
    assert!(took >= bound && took < bound + MARGIN, "took {took:?}");

    let rt = runtime(1);
    let started = Instant::now();
    let connector = tpg::PgConnector::new(&dsn).expect("a DSN");
    let err = rt
        .block_on(
            sanspool_tokio::Pool::builder(connector)
                .min(1)
                .timeout(bound)
                .build(),
        )
        .map(drop)
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, BuildError::Timeout(Some(_))), "{err:?}");
    assert!(err.to_string().contains("Connection refused"), "{err}");
    assert!(took >= bound && took < bound + MARGIN, "took {took:?}");
}

// ------------------------------------------------------------------------ waiters

/// bb8's 25 000 waiters: every connection held, 25 000 checkouts queue at once (no bound on the
/// line by default), then every one is served; none is refused.
#[test]
fn twenty_five_thousand_waiters_are_all_served() {
    const WAITERS: usize = 25_000;
    const MAX: usize = 4;
    let rt = runtime(2);
    let connector =
        tpg::PgConnector::new(&named(&shared_dsn(), "waiters-async")).expect("a valid DSN");
    let pool = rt
        .block_on(
            sanspool_tokio::Pool::builder(connector)
                .min(MAX)
                .max(MAX)
                .timeout(Duration::from_secs(120))
                .build(),
        )
        .expect("the pool");
    let held = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..MAX {
            held.push(pool.get().await.expect("a connection"));
        }
        held
    });
    let refused = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..WAITERS)
        .map(|_| {
            let pool = pool.clone();
            let refused = Arc::clone(&refused);
            rt.spawn(async move {
                match pool.get().await {
                    Ok(conn) => drop(conn),
                    Err(GetError::TooManyWaiters) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    common::eventually("every checkout in line", || {
        pool.stats().waiting + refused.load(Ordering::Relaxed) == WAITERS
    });
    assert_eq!(refused.load(Ordering::Relaxed), 0, "TooManyWaiters");
    drop(held);
    rt.block_on(async {
        for task in tasks {
            task.await.expect("a waiter");
        }
    });
    let stats = pool.stats();
    assert_eq!(refused.load(Ordering::Relaxed), 0, "TooManyWaiters");
    assert_eq!(stats.timeouts, 0, "{stats:?}");
    // Every one of them waited (and the first four too, for their vets, where the pool vets).
    assert!(stats.waits >= WAITERS as u64, "{stats:?}");
    assert_eq!(stats.checkouts, (WAITERS + MAX) as u64, "{stats:?}");
    rt.block_on(pool.close()).expect("close");
}

/// The same on the blocking pool with 2 000 threads (twice the old bound of 1 024 waiters).
#[test]
fn two_thousand_waiting_threads_are_all_served() {
    const WAITERS: usize = 2_000;
    const MAX: usize = 4;
    let connector =
        PgConnector::new(&named(&shared_dsn(), "waiters-blocking")).expect("a valid DSN");
    let pool = Pool::builder(connector)
        .min(MAX)
        .max(MAX)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("the pool");
    let held: Vec<_> = (0..MAX)
        .map(|_| pool.get().expect("a connection"))
        .collect();
    let refused = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..WAITERS)
        .map(|_| {
            let pool = pool.clone();
            let refused = Arc::clone(&refused);
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || match pool.get() {
                    Ok(conn) => drop(conn),
                    Err(GetError::TooManyWaiters) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("{e}"),
                })
                .expect("a thread")
        })
        .collect();
    common::eventually("every thread in line", || {
        pool.stats().waiting + refused.load(Ordering::Relaxed) == WAITERS
    });
    assert_eq!(refused.load(Ordering::Relaxed), 0, "TooManyWaiters");
    drop(held);
    for t in threads {
        t.join().expect("a waiter");
    }
    let stats = pool.stats();
    assert_eq!(stats.timeouts, 0, "{stats:?}");
    assert_eq!(stats.checkouts, (WAITERS + MAX) as u64, "{stats:?}");
    pool.close().expect("close");
}

// ------------------------------------------------------------------------ events

/// Keeps every event.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl sanspool_postgres::Events for Recorder {
    fn event(&self, event: &Event) {
        self.0.lock().unwrap().push(*event);
    }
}

impl Recorder {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// What an event says, without its durations.
fn kind(e: &Event) -> (&'static str, u64) {
    match *e {
        Event::Acquire { conn, .. } => ("acquire", conn),
        Event::Release { conn, .. } => ("release", conn),
        Event::Checkout { conn, .. } => ("checkout", conn),
        Event::Checkin { conn, .. } => ("checkin", conn),
        Event::Timeout { .. } => ("timeout", 0),
        _ => ("other", 0),
    }
}

/// r2d2's `HandleEvent` on a real server, through both drivers: each connection's acquire,
/// checkouts, checkins and release, a timeout, in order; a connection's number names the same
/// server process in every event, and a new connection gets a new number.
#[test]
fn the_event_hook_follows_each_connection() {
    let dsn = shared_dsn();
    let name = "events-blocking";
    let mut mon = monitor_for(&dsn, name);
    let rec = Recorder::default();
    let pool = Pool::builder(PgConnector::new(&named(&dsn, name)).expect("a DSN"))
        .min(1)
        .max(1)
        .timeout(Duration::from_millis(200))
        .events(rec.clone())
        .build()
        .expect("the pool");
    let pid = |conn: &mut sanspool_postgres::PgConn| -> i32 {
        conn.query_one("SELECT pg_backend_pid()", &[])
            .expect("a query")
            .get(0)
    };
    let mut conn = pool.get().expect("a connection");
    let first = pid(&mut conn);
    drop(conn);
    let mut conn = pool.get().expect("the same connection");
    assert_eq!(pid(&mut conn), first);
    sanspool_postgres::PooledConn::close(conn);
    let mut conn = pool.get().expect("its replacement");
    let second = pid(&mut conn);
    assert_ne!(second, first);
    assert!(!mon.alive(first), "the first backend outlived its release");
    let err = pool.get().map(drop).unwrap_err();
    assert!(matches!(err, GetError::Timeout(None)), "{err:?}");
    drop(conn);
    pool.close().expect("close");
    let events = rec.take();
    let seen: Vec<_> = events.iter().map(kind).collect();
    let want = [
        ("acquire", 1),
        ("checkout", 1),
        ("checkin", 1),
        ("checkout", 1),
        ("checkin", 1),
        ("release", 1),
        ("acquire", 2),
        ("checkout", 2),
        ("timeout", 0),
        ("checkin", 2),
        ("release", 2),
    ];
    assert_eq!(seen, want, "{events:?}");
    assert!(
        matches!(events[8], Event::Timeout { waited } if waited >= Duration::from_millis(200)),
        "{:?}",
        events[8]
    );
    assert_eq!(mon.count(), 0);

    // The async pool: the same events, in the same order.
    let name = "events-async";
    let rt = runtime(2);
    let rec = Recorder::default();
    let connector = tpg::PgConnector::new(&named(&dsn, name)).expect("a DSN");
    let pool = rt
        .block_on(
            sanspool_tokio::Pool::builder(connector)
                .min(1)
                .max(1)
                .timeout(Duration::from_millis(200))
                .events(rec.clone())
                .build(),
        )
        .expect("the pool");
    rt.block_on(async {
        let pid = |conn: sanspool_tokio::PooledConn<tpg::PgConnector>| async move {
            let row = conn.query_one("SELECT pg_backend_pid()", &[]).await;
            (row.expect("a query").get::<_, i32>(0), conn)
        };
        let (first, conn) = pid(pool.get().await.expect("a connection")).await;
        drop(conn);
        let (again, conn) = pid(pool.get().await.expect("the same connection")).await;
        assert_eq!(again, first);
        sanspool_tokio::PooledConn::close(conn);
        let (second, conn) = pid(pool.get().await.expect("its replacement")).await;
        assert_ne!(second, first);
        let err = pool.get().await.map(drop).unwrap_err();
        assert!(matches!(err, GetError::Timeout(None)), "{err:?}");
        drop(conn);
        pool.close().await.expect("close");
    });
    let events = rec.take();
    let seen: Vec<_> = events.iter().map(kind).collect();
    assert_eq!(seen, want, "{events:?}");
}

/// The hook's `log` implementation: one line per event, under target `sanspool::events`.
#[test]
fn log_events_logs_each_event() {
    struct Capture;
    static LINES: OnceLock<Mutex<Vec<(log::Level, String)>>> = OnceLock::new();
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.target() == "sanspool::events"
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                let lines = LINES.get_or_init(Mutex::default);
                lines
                    .lock()
                    .unwrap()
                    .push((r.level(), r.args().to_string()));
            }
        }
        fn flush(&self) {}
    }
    log::set_logger(&Capture).expect("the only logger of this test binary");
    log::set_max_level(log::LevelFilter::Trace);

    let connector = PgConnector::new(&named(&shared_dsn(), "events-log")).expect("a DSN");
    let pool = Pool::builder(connector)
        .min(1)
        .max(1)
        .events(LogEvents)
        .build()
        .expect("the pool");
    drop(pool.get().expect("a connection"));
    pool.close().expect("close");
    let lines = LINES.get_or_init(Mutex::default).lock().unwrap().clone();
    let words: Vec<(log::Level, &str)> = lines
        .iter()
        .map(|(level, line)| (*level, line.split(':').next().unwrap_or("")))
        .collect();
    assert_eq!(
        words,
        [
            (log::Level::Debug, "acquire"),
            (log::Level::Trace, "checkout"),
            (log::Level::Trace, "checkin"),
            (log::Level::Debug, "release"),
        ],
        "{lines:?}"
    );
    assert!(
        lines[0].1.starts_with("acquire: connection 1, took "),
        "{lines:?}"
    );
}

// ------------------------------------------------------------------------ errors

/// A checkout's error names its cause as a build's does: an open refused for good fails a
/// waiting checkout at once with the server's message; opens failing for a while leave a
/// timeout that names the last one.
#[test]
fn checkout_errors_name_their_cause() {
    let dsn = format!("{} dbname=sp_no_such_database", shared_dsn());
    let pool = Pool::builder(PgConnector::new(&dsn).expect("a DSN"))
        .min(0)
        .max(1)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a pool that opens on demand");
    let started = Instant::now();
    let err = pool.get().map(drop).unwrap_err();
    assert!(matches!(err, GetError::Connect(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("database \"sp_no_such_database\" does not exist"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut server = PgServer::start().expect("a server of our own");
    let down = server.dsn();
    server.stop().expect("stop the server");
    let rt = runtime(1);
    let pool = rt
        .block_on(
            sanspool_tokio::Pool::builder(tpg::PgConnector::new(&down).expect("a DSN"))
                .min(0)
                .max(1)
                .timeout(Duration::from_millis(300))
                .build(),
        )
        .expect("a pool that opens on demand");
    let err = rt.block_on(pool.get()).map(drop).unwrap_err();
    assert!(matches!(err, GetError::Timeout(Some(_))), "{err:?}");
    assert!(err.to_string().contains("Connection refused"), "{err}");
}
