//! libpq's `sslmode`, each against a server with TLS (a certificate for `localhost` signed by a
//! throwaway CA) and one without. Whether a session is encrypted is read from `pg_stat_ssl` by a
//! monitor, never taken from the client's word; every session is also tracked (status without a
//! round trip) and cancellable.

mod common;

use std::sync::OnceLock;

use common::{backend_pid, monitor_for, Monitor};
use sanspool_postgres::postgres::error::SqlState;
use sanspool_postgres::postgres::{Config, NoTls};
use sanspool_postgres::{Connector, Error, PgConn, PgConnector, TxStatus};
use sanspool_tests::{shared_dsn, PgServer, Setup};

/// The TLS server, shared by the tests of this file (never stopped).
fn tls_server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let setup = Setup {
            tls: true,
            ..Setup::default()
        };
        PgServer::start_with(setup).expect("start a TLS server")
    })
}

fn ca(server: &PgServer) -> String {
    server.ca_cert().unwrap().display().to_string()
}

fn dsn_on(server: &PgServer, host: &str, extra: &str) -> String {
    format!(
        "host={host} port={} user=postgres dbname=postgres {extra}",
        server.port()
    )
}

/// Opens a connection of `dsn`, and says whether the server sees it encrypted.
fn open(dsn: &str, name: &str) -> Result<(PgConn, bool), Error> {
    let app = common::app_name(name);
    let dsn = if dsn.starts_with("postgresql://") {
        format!("{dsn}&application_name={app}")
    } else {
        format!("{dsn} application_name={app}")
    };
    let connector = PgConnector::new(&dsn)?;
    let mut conn = connector.connect()?;
    let ssl = encrypted_check(&mut conn, name);
    Ok((conn, ssl))
}

fn encrypted_check(conn: &mut PgConn, name: &str) -> bool {
    let mut mon = monitor(name);
    let pid = backend_pid(conn);
    ssl_of(&mut mon, pid)
}

fn monitor(name: &str) -> Monitor {
    // Over TCP without TLS, to whichever server runs the test.
    monitor_for(&shared_monitor_dsn(name), name)
}

/// Monitors connect to the TLS server (which also takes plaintext), or to the shared one.
fn shared_monitor_dsn(name: &str) -> String {
    if name.starts_with("plain-") {
        shared_dsn()
    } else {
        format!("{} sslmode=disable", tls_server().dsn())
    }
}

fn ssl_of(mon: &mut Monitor, pid: i32) -> bool {
    mon.client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
        .expect("read pg_stat_ssl")
        .get(0)
}

/// Tracked above (or without) the encryption: the status follows a transaction.
fn assert_tracked(conn: &mut PgConn) {
    assert!(conn.status_cell().is_tracked());
    assert_eq!(conn.status(), TxStatus::Idle);
    conn.batch_execute("BEGIN").unwrap();
    assert_eq!(conn.status(), TxStatus::InTransaction);
    conn.batch_execute("ROLLBACK").unwrap();
    assert_eq!(conn.status(), TxStatus::Idle);
}

fn encrypted(dsn: &str, name: &str) -> bool {
    let (mut conn, ssl) = open(dsn, name).unwrap_or_else(|e| panic!("{dsn}: {e:?}"));
    assert_tracked(&mut conn);
    ssl
}

fn refused(dsn: &str, name: &str) -> Error {
    match open(dsn, name) {
        Ok(_) => panic!("{dsn}: connected"),
        Err(e) => e,
    }
}

#[test]
fn against_a_tls_server() {
    let server = tls_server();
    let ca = ca(server);
    let ip = |extra: &str| dsn_on(server, "127.0.0.1", extra);
    let named = |extra: &str| dsn_on(server, "localhost", extra);

    assert!(!encrypted(&ip("sslmode=disable"), "tls-disable"));
    assert!(
        encrypted(&ip(""), "tls-default"),
        "libpq's default is prefer"
    );
    assert!(encrypted(&ip("sslmode=prefer"), "tls-prefer"));
    assert!(encrypted(&ip("sslmode=require"), "tls-require"));
    let verify_ca = format!("sslmode=verify-ca sslrootcert={ca}");
    assert!(
        encrypted(&ip(&verify_ca), "tls-verify-ca"),
        "verify-ca does not look at the name (127.0.0.1 is not in the certificate)"
    );
    let verify_full = format!("sslmode=verify-full sslrootcert={ca}");
    assert!(encrypted(&named(&verify_full), "tls-verify-full"));
    let url = format!(
        "postgresql://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}",
        server.port()
    );
    assert!(encrypted(&url, "tls-url"));
    // With a root file, require verifies the chain, as libpq does.
    let require_ca = format!("sslmode=require sslrootcert={ca}");
    assert!(encrypted(&ip(&require_ca), "tls-require-ca"));
}

#[test]
fn verification_failures_refuse_the_connection() {
    let server = tls_server();
    let ca = ca(server);
    let ip = |extra: &str| dsn_on(server, "127.0.0.1", extra);
    // The certificate names localhost only.
    let err = refused(
        &ip(&format!("sslmode=verify-full sslrootcert={ca}")),
        "tls-wrong-name",
    );
    assert!(format!("{err:?}").contains("NotValidForName"), "{err:?}");
    // The throwaway CA is in no system store.
    for mode in ["verify-ca", "verify-full"] {
        let err = refused(
            &dsn_on(
                server,
                "localhost",
                &format!("sslmode={mode} sslrootcert=system"),
            ),
            "tls-unknown-ca",
        );
        assert!(
            format!("{err:?}").contains("UnknownIssuer"),
            "{mode}: {err:?}"
        );
    }
}

#[test]
fn against_a_server_without_tls() {
    let dsn = shared_dsn();
    assert!(!encrypted(
        &format!("{dsn} sslmode=disable"),
        "plain-disable"
    ));
    assert!(!encrypted(&format!("{dsn} sslmode=prefer"), "plain-prefer"));
    assert!(!encrypted(&dsn, "plain-default"));
    for mode in ["require", "verify-ca", "verify-full"] {
        let err = refused(&format!("{dsn} sslmode={mode}"), "plain-refused");
        assert!(
            format!("{err:?}").contains("server does not support TLS"),
            "{mode}: {err:?}"
        );
    }
}

/// `NoTls` given to `with_tls` means no TLS: `prefer` falls back, as with a plain `NoTls`.
#[test]
fn with_tls_of_no_tls_falls_back() {
    let server = tls_server();
    let config: Config = dsn_on(server, "127.0.0.1", "sslmode=prefer")
        .parse()
        .unwrap();
    let mut conn = PgConnector::with_tls(config, NoTls).connect().unwrap();
    assert!(!encrypted_check(&mut conn, "tls-notls"));
    assert_tracked(&mut conn);
}

/// The cancel request follows the connection's sslmode, over TLS here.
#[test]
fn a_query_on_a_tls_connection_is_cancelled() {
    let server = tls_server();
    let ca = ca(server);
    let dsn = dsn_on(
        server,
        "localhost",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    );
    let (mut conn, ssl) = open(&dsn, "tls-cancel").unwrap();
    assert!(ssl);
    let pid = backend_pid(&mut conn);
    let token = conn.cancel_token();
    let mut mon = monitor("tls-cancel");
    let canceller = std::thread::spawn(move || {
        common::eventually("the backend to sleep", || {
            let a = mon.activity(pid);
            a.state == "active" && a.query.contains("pg_sleep")
        });
        token.cancel_query().unwrap();
    });
    let err = conn.simple_query("SELECT pg_sleep(600)").unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
    canceller.join().unwrap();
    assert_eq!(conn.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
}

/// SCRAM with `channel_binding=require` binds the session to the server's certificate
/// (`tls-server-end-point`): possible only over TLS, and refused without it.
#[test]
fn channel_binding_over_tls() {
    let server = tls_server();
    let mut mon = monitor("tls-scram");
    mon.execute(
        "DO $$ BEGIN CREATE ROLE sp_scram LOGIN PASSWORD 'scram-pw'; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    server
        .prepend_hba("host all sp_scram 127.0.0.1/32 scram-sha-256")
        .unwrap();
    mon.execute("SELECT pg_reload_conf()");
    let dsn = |extra: &str| {
        format!(
            "host=localhost port={} user=sp_scram password=scram-pw dbname=postgres {extra}",
            server.port()
        )
    };
    // The postmaster rereads pg_hba.conf on the signal, soon: until then trust applies, which
    // channel_binding=require refuses.
    let bound = dsn("sslmode=require channel_binding=require");
    common::eventually("SCRAM with channel binding", || {
        open(&bound, "tls-scram").is_ok()
    });
    assert!(encrypted(&bound, "tls-scram"));
    let err = refused(&dsn("sslmode=disable channel_binding=require"), "tls-scram");
    assert!(
        format!("{err:?}")
            .to_lowercase()
            .contains("channel binding"),
        "{err:?}"
    );
}

/// Over TLS, a pooled connection's clean return still costs nothing (the bytes written, TLS
/// records included, do not change), and a dirty one is rolled back.
#[test]
fn a_pool_over_tls_returns_clean_connections_for_free() {
    use sanspool_postgres::{Builder, PgConnector, Pool};
    let server = tls_server();
    let ca = ca(server);
    let dsn = dsn_on(
        server,
        "localhost",
        &format!(
            "sslmode=verify-full sslrootcert={ca} application_name={}",
            common::app_name("tls-pool")
        ),
    );
    let pool: Pool<PgConnector> = Builder::new(PgConnector::new(&dsn).unwrap())
        .min(1)
        .max(1)
        .build()
        .unwrap();
    let mut conn = pool.get().unwrap();
    assert!(encrypted_check(&mut conn, "tls-pool"));
    conn.batch_execute("BEGIN").unwrap();
    drop(conn);
    assert_eq!(pool.stats().resets, 1);
    let written = pool.get().unwrap().status_cell().bytes_written();
    for _ in 0..10 {
        let conn = pool.get().unwrap();
        assert_eq!(conn.status(), TxStatus::Idle);
        assert_eq!(conn.status_cell().bytes_written(), written);
    }
    assert_eq!(pool.stats().resets, 1);
}

/// libpq's `prefer` retries without TLS when the handshake fails (here: the server offers only a
/// CBC cipher suite, which rustls does not implement); `require` does not.
#[test]
fn prefer_falls_back_when_the_handshake_fails() {
    let setup = Setup {
        tls: true,
        options: "-c ssl_max_protocol_version=TLSv1.2 -c ssl_ciphers=ECDHE-ECDSA-AES128-SHA".into(),
    };
    let server = PgServer::start_with(setup).expect("start a TLS server");
    let name = "tls-handshake-fails";
    let dsn = |mode: &str| {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode={mode} \
             application_name={}",
            server.port(),
            common::app_name(name)
        )
    };
    let mut conn = PgConnector::new(&dsn("prefer")).unwrap().connect().unwrap();
    let pid = backend_pid(&mut conn);
    let mut mon = monitor_for(&format!("{} sslmode=disable", server.dsn()), name);
    assert!(
        !ssl_of(&mut mon, pid),
        "plaintext after the failed handshake"
    );
    assert_tracked(&mut conn);
    let err = PgConnector::new(&dsn("require"))
        .unwrap()
        .connect()
        .map(drop)
        .unwrap_err();
    assert!(format!("{err:?}").contains("HandshakeFailure"), "{err:?}");
}
