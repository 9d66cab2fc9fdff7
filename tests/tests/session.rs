//! Session state left by a borrower, and what the next borrower of the same backend sees, under
//! each [`SessionReset`] policy. One borrower leaves every kind of state the README lists; the
//! next one (same backend pid, a pool of one) probes each. The expected table below is the
//! README's: a change in what leaks fails here.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{backend_pid, config, monitor, simple_row, table};
use sanspool_postgres::postgres;
use sanspool_postgres::postgres::fallible_iterator::FallibleIterator;
use sanspool_postgres::{Builder, PgConn, PgConnector, Pool, SessionReset, DISCARD_SESSION};

/// Roles and tables shared by the tests of this process: `sp_app` (the pool's user), a member of
/// `sp_admin`, which alone may read the secret table; a row-level-security table whose rows show
/// only to `app.tenant = 'a'`.
struct Fixture {
    secret: String,
    tenants: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (secret, tenants) = (table("secret"), table("tenants"));
        let mut mon = monitor("session-setup");
        mon.execute(
            "DO $$ BEGIN CREATE ROLE sp_admin NOLOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             DO $$ BEGIN CREATE ROLE sp_app LOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             ALTER ROLE sp_app NOINHERIT; GRANT sp_admin TO sp_app",
        );
        mon.execute(&format!(
            "DROP TABLE IF EXISTS {secret}, {tenants}; \
             CREATE TABLE {secret} (x int); INSERT INTO {secret} VALUES (1); \
             REVOKE ALL ON {secret} FROM PUBLIC; GRANT SELECT ON {secret} TO sp_admin; \
             CREATE TABLE {tenants} (tenant text, v text); \
             INSERT INTO {tenants} VALUES ('a', 'a''s row'); \
             ALTER TABLE {tenants} ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY by_tenant ON {tenants} \
               USING (tenant = current_setting('app.tenant', true)); \
             GRANT SELECT ON {tenants} TO PUBLIC"
        ));
        Fixture { secret, tenants }
    })
}

/// What the first borrower does, in order (settings that forbid later steps come last).
fn leave(conn: &mut PgConn) {
    for sql in [
        "SET ROLE sp_admin",
        "SELECT set_config('app.tenant', 'a', false)",
        "SET search_path = sp_nowhere",
        "SET statement_timeout = '4711s'",
        "CREATE TEMP TABLE sp_scratch (x int)",
        "PREPARE sp_prepared AS SELECT 1",
        "BEGIN; DECLARE sp_held CURSOR WITH HOLD FOR SELECT 1; COMMIT",
        "SELECT pg_advisory_lock(4711)",
        "LISTEN sp_channel",
        // A notification to itself arrives before the ReadyForQuery: the client has it buffered.
        "SELECT pg_notify('sp_channel', 'from the previous borrower')",
        "SET default_transaction_read_only = on",
    ] {
        conn.batch_execute(sql).expect(sql);
    }
}

fn text(conn: &mut PgConn, sql: &str) -> String {
    simple_row(conn, sql)[0].clone().unwrap_or_default()
}

/// Each kind of state, and whether the next borrower sees it.
fn probe(conn: &mut PgConn, fx: &Fixture) -> Vec<(&'static str, bool)> {
    // First, before any query reads more from the socket.
    let received = conn.notifications().iter().count().unwrap() > 0;
    let role = text(conn, "SELECT current_user") == "sp_admin";
    let secret = conn
        .simple_query(&format!("SELECT count(*) FROM public.{}", fx.secret))
        .is_ok();
    assert_eq!(
        role, secret,
        "the secret table is readable exactly as admin"
    );
    vec![
        ("received notifications", received),
        ("SET ROLE (reads admin's table)", role),
        (
            "set_config tenant (RLS rows)",
            text(conn, &format!("SELECT count(*) FROM public.{}", fx.tenants)) != "0",
        ),
        ("search_path", text(conn, "SHOW search_path") == "sp_nowhere"),
        ("statement_timeout", text(conn, "SHOW statement_timeout") == "4711s"),
        ("temporary table", text(conn, "SELECT to_regclass('pg_temp.sp_scratch') IS NOT NULL") == "t"),
        (
            "PREPARE",
            text(conn, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'sp_prepared'")
                != "0",
        ),
        (
            "WITH HOLD cursor",
            text(conn, "SELECT count(*) FROM pg_cursors WHERE name = 'sp_held'") != "0",
        ),
        (
            "advisory lock",
            text(
                conn,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            ) != "0",
        ),
        ("LISTEN", text(conn, "SELECT count(*) FROM pg_listening_channels()") != "0"),
        (
            "default_transaction_read_only",
            text(conn, "SHOW default_transaction_read_only") == "on",
        ),
    ]
}

/// A policy, or a reset of one's own (`PgConnector::session_reset_with`).
enum Reset {
    Policy(SessionReset),
    With(fn(&mut postgres::Client) -> Result<(), postgres::Error>),
}

impl From<SessionReset> for Reset {
    fn from(policy: SessionReset) -> Self {
        Reset::Policy(policy)
    }
}

fn pool(name: &str, reset: impl Into<Reset>) -> Pool<PgConnector> {
    let mut config = config(name);
    config.user("sp_app");
    let connector = PgConnector::from_config(config);
    let connector = match reset.into() {
        Reset::Policy(policy) => connector.session_reset(policy),
        Reset::With(reset) => connector.session_reset_with(reset),
    };
    Builder::new(connector)
        .min(1)
        .max(1)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build the pool")
}

/// Leaves state, returns the connection, and probes it as the next borrower.
fn what_leaks(name: &str, reset: impl Into<Reset>) -> Vec<(&'static str, bool)> {
    let fx = fixture();
    let pool = pool(name, reset);
    let pid = {
        let mut conn = pool.get().unwrap();
        leave(&mut conn);
        backend_pid(&mut conn)
    };
    let mut conn = pool.get().unwrap();
    assert_eq!(
        backend_pid(&mut conn),
        pid,
        "the same session, reset, not replaced"
    );
    let leaks = probe(&mut conn, fx);
    println!("{name}: {leaks:#?}");
    leaks
}

fn assert_leaks(found: Vec<(&str, bool)>, leaking: &[&str]) {
    for (what, leaked) in found {
        assert_eq!(leaked, leaking.contains(&what), "{what}: leaked = {leaked}");
    }
}

const EVERYTHING: &[&str] = &[
    "received notifications",
    "SET ROLE (reads admin's table)",
    "set_config tenant (RLS rows)",
    "search_path",
    "statement_timeout",
    "temporary table",
    "PREPARE",
    "WITH HOLD cursor",
    "advisory lock",
    "LISTEN",
    "default_transaction_read_only",
];

#[test]
fn rollback_leaks_every_session_state() {
    assert_leaks(
        what_leaks("leak-rollback", SessionReset::rollback()),
        EVERYTHING,
    );
}

#[test]
fn discard_leaks_nothing() {
    assert_leaks(what_leaks("leak-discard", SessionReset::discard()), &[]);
}

#[test]
fn a_callback_running_discard_session_leaks_nothing() {
    let reset = Reset::With(|client| client.batch_execute(DISCARD_SESSION));
    assert_leaks(what_leaks("leak-callback", reset), &[]);
}

/// `RESET ALL` resets settings only (not the role: `role` is exempt from it); the notifications
/// the client had received are dropped by the reset, but the session still listens.
#[test]
fn reset_all_leaks_all_but_settings() {
    assert_leaks(
        what_leaks("leak-reset-all", SessionReset::statement("RESET ALL")),
        &[
            "SET ROLE (reads admin's table)",
            "temporary table",
            "PREPARE",
            "WITH HOLD cursor",
            "advisory lock",
            "LISTEN",
        ],
    );
}

/// The next borrower's first use of a new type works after a `discard` reset. The control cases
/// pin why `DISCARD ALL` is not what `discard` sends: it deallocates the statements
/// tokio-postgres caches for type lookups, and `clear_type_cache` does not forget those — in a
/// `before_reuse` hook or as the reset statement, the next new type fails. Should an upgrade
/// make `clear_type_cache` forget them, this fails and `DISCARD ALL` can come back.
#[test]
fn the_type_cache_survives_discard() {
    let mut mon = monitor("typecache");
    let (mood, color) = (table("mood"), table("color"));
    mon.execute(&format!(
        "DROP TYPE IF EXISTS {mood}, {color}; \
         CREATE TYPE {mood} AS ENUM ('happy'); CREATE TYPE {color} AS ENUM ('red')"
    ));
    let second_type_after_discard = |pool: Pool<PgConnector>| {
        let mut conn = pool.get().unwrap();
        // A column of a type the client does not know makes it prepare (and cache) its lookup.
        let rows = conn.query(&format!("SELECT 'happy'::{mood}"), &[]).unwrap();
        assert_eq!(rows.len(), 1);
        drop(conn);
        let mut conn = pool.get().unwrap();
        conn.query(&format!("SELECT 'red'::{color}"), &[])
            .map(|_| ())
    };
    for reset in [
        Reset::Policy(SessionReset::discard()),
        Reset::With(|c| c.batch_execute(DISCARD_SESSION)),
    ] {
        second_type_after_discard(pool("typecache", reset)).expect("a new type after a reset");
    }
    let hook = Builder::new(PgConnector::from_config(config("typecache")))
        .max(1)
        .before_reuse(|c: &mut PgConn| Ok(c.batch_execute("DISCARD ALL")?))
        .build()
        .unwrap();
    let err = second_type_after_discard(hook).expect_err("the cached lookup was deallocated");
    assert!(format!("{err:?}").contains("does not exist"), "{err:?}");
    let reset = SessionReset::statement("DISCARD ALL");
    let err = second_type_after_discard(pool("typecache", reset)).expect_err("the same");
    assert!(format!("{err:?}").contains("does not exist"), "{err:?}");
}

/// A checkout that sends nothing costs nothing under `discard`; one that sends anything is reset
/// (no SQL is judged harmless: any statement can call `set_config` or take a lock).
#[test]
fn discard_skips_only_checkouts_that_sent_nothing() {
    fixture();
    let pool = pool("discard-cost", SessionReset::discard());
    let before = {
        let conn = pool.get().unwrap();
        conn.status_cell().bytes_written()
    };
    let after = pool.get().unwrap().status_cell().bytes_written();
    assert_eq!(
        before, after,
        "an unused checkout wrote nothing, reset included"
    );
    assert_eq!(pool.stats().resets, 0);
    pool.get().unwrap().batch_execute("SELECT 1").unwrap();
    assert_eq!(pool.stats().resets, 1);
}

/// The figures for the README: round trips and time per checkout of one `SELECT 1`.
#[test]
#[ignore = "a measurement, not a test: cargo test --test session -- --ignored --nocapture"]
fn measure_the_cost_of_discard() {
    fixture();
    const N: u32 = 2000;
    for (name, reset) in [
        ("rollback", SessionReset::rollback()),
        ("discard", SessionReset::discard()),
    ] {
        let pool = pool(&format!("measure-{name}"), reset);
        let bytes = pool.get().unwrap().status_cell().bytes_written();
        let started = Instant::now();
        for _ in 0..N {
            pool.get().unwrap().batch_execute("SELECT 1").unwrap();
        }
        let took = started.elapsed() / N;
        let written = pool.get().unwrap().status_cell().bytes_written() - bytes;
        println!(
            "{name}: {took:?} per checkout, {} bytes written per checkout, {} resets",
            written / u64::from(N),
            pool.stats().resets
        );
    }
}

/// A session returned inside a transaction is rolled back before the discard (which a
/// transaction block would refuse), and what the transaction did is gone with it.
#[test]
fn discard_after_an_open_transaction() {
    fixture();
    let pool = pool("discard-in-tx", SessionReset::discard());
    {
        let mut conn = pool.get().unwrap();
        conn.batch_execute("BEGIN; SET ROLE sp_admin; CREATE TEMP TABLE sp_in_tx (x int)")
            .unwrap();
    }
    let mut conn = pool.get().unwrap();
    assert!(common::outside_transaction(&mut conn));
    assert_eq!(text(&mut conn, "SELECT current_user"), "sp_app");
    assert_eq!(pool.stats().resets, 1);
    assert_eq!(pool.stats().broken_returns, 0);
}
