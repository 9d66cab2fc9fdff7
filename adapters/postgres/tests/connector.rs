//! The connector without a server: connection strings, errors, debug output. Its behaviour against a
//! real server (state, reset, check, pools) is tested in the workspace's `tests/` crate.

use std::error::Error as _;
use std::time::Duration;

use sanspool_postgres::{postgres, Connector, Error, PgConnector};

#[test]
fn a_key_value_dsn_is_parsed() {
    let connector =
        PgConnector::new("host=db.example port=5433 user=app dbname=shop application_name=t")
            .unwrap();
    let config = connector.config();
    assert_eq!(config.get_user(), Some("app"));
    assert_eq!(config.get_dbname(), Some("shop"));
    assert_eq!(config.get_ports(), &[5433]);
    assert_eq!(config.get_application_name(), Some("t"));
}

#[test]
fn a_url_dsn_is_parsed() {
    let connector: PgConnector = "postgresql://app@db.example:5433/shop".parse().unwrap();
    assert_eq!(connector.config().get_user(), Some("app"));
    assert_eq!(connector.config().get_dbname(), Some("shop"));
}

#[test]
fn a_bad_dsn_is_a_typed_config_error() {
    for dsn in [
        "host=",
        "port=notanumber",
        "nosuchoption=1",
        "postgresql://localhost:notaport/db",
        "user='unterminated",
    ] {
        let err = PgConnector::new(dsn).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{dsn}: {err:?}");
        // The text says what is wrong: the parser's error, which is also the source.
        let text = err.to_string();
        let cause = err.source().expect("the parser's error is the source");
        assert!(
            text.starts_with("invalid connection string: "),
            "{dsn}: {text}"
        );
        assert!(text.contains(&cause.to_string()), "{dsn}: {text}");
        assert!(err.as_postgres().is_some());
    }
}

#[test]
fn a_postgres_config_is_taken_as_is() {
    let mut config = postgres::Config::new();
    config.host("localhost").user("postgres").password("secret");
    let connector = PgConnector::from_config(config.clone());
    assert_eq!(connector.config().get_password(), Some(&b"secret"[..]));
    let from: PgConnector = config.into();
    assert_eq!(from.config().get_user(), Some("postgres"));
}

#[test]
fn debug_output_redacts_the_password() {
    let connector = PgConnector::new("host=localhost user=u password=hunter2")
        .unwrap()
        .check_timeout(Duration::from_millis(250));
    let debug = format!("{connector:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("250ms"), "{debug}");
}

#[test]
fn connecting_to_nothing_is_a_connect_error() {
    // A port of 127.0.0.1 that nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let connector = PgConnector::new(&format!(
        "host=127.0.0.1 port={port} user=postgres connect_timeout=5"
    ))
    .unwrap();
    let err = connector.connect().unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
}

#[test]
fn the_connector_is_shareable() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<PgConnector>();
    fn sendable<T: Send + 'static>() {}
    sendable::<sanspool_postgres::PgConn>();
    sendable::<Error>();
    // What TLS crates ask of the stream they wrap (postgres-native-tls, postgres-openssl).
    fn wrappable<T: Send + Sync + Unpin + std::fmt::Debug + 'static>() {}
    wrappable::<sanspool_postgres::PgSocket>();
    shareable::<sanspool_postgres::CancelToken>();
}

#[test]
fn libpq_sslmodes_are_parsed() {
    use sanspool_postgres::SslMode;
    for (dsn, mode) in [
        ("host=h", SslMode::Prefer),
        ("host=h sslmode=disable", SslMode::Disable),
        ("host=h sslmode=prefer", SslMode::Prefer),
        ("host=h sslmode=require", SslMode::Require),
        (
            "host=h sslmode=verify-ca sslrootcert=system",
            SslMode::VerifyCa,
        ),
        ("host=h sslmode=verify-full", SslMode::VerifyFull),
        ("postgresql://h/db?sslmode=verify-full", SslMode::VerifyFull),
    ] {
        let connector = PgConnector::new(dsn).unwrap();
        assert_eq!(connector.ssl_mode(), mode, "{dsn}");
    }
    // `allow` would need a plaintext-first retry that the client cannot make: refused, typed.
    let err = PgConnector::new("host=h sslmode=allow").unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    // A root file that does not exist is an error at once, not a silent downgrade.
    let err =
        PgConnector::new("host=h sslmode=verify-full sslrootcert=/nonexistent.crt").unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
}
