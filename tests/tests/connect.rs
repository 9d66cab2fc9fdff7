//! The connector opens sockets itself: the libpq options that say where and to what it connects
//! (several hosts, `hostaddr`, names that resolve to several addresses, `target_session_attrs`)
//! keep their meaning.

mod common;

use common::{monitor, simple_row};
use sanspool_postgres::{Connector, Error, PgConnector};
use sanspool_tests::shared_dsn;

/// The shared server's port (the harness's DSN is `host=127.0.0.1 port=N ...`).
fn port() -> u16 {
    let dsn = shared_dsn();
    let config: sanspool_postgres::postgres::Config = dsn.parse().unwrap();
    config.get_ports()[0]
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connects(dsn: &str) -> Result<(), Error> {
    let mut conn = PgConnector::new(dsn)?.connect()?;
    assert_eq!(simple_row(&mut conn, "SELECT 1")[0].as_deref(), Some("1"));
    Ok(())
}

#[test]
fn the_next_host_is_tried_when_one_fails() {
    let dsn = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres",
        closed_port(),
        port()
    );
    connects(&dsn).unwrap();
    let dsn = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        closed_port()
    );
    assert!(matches!(connects(&dsn), Err(Error::Connect(_))));
}

#[test]
fn hostaddr_and_resolved_names_connect() {
    let p = port();
    connects(&format!(
        "hostaddr=127.0.0.1 port={p} user=postgres dbname=postgres"
    ))
    .unwrap();
    // The name, for TLS, with the address to connect to.
    connects(&format!(
        "host=db.invalid hostaddr=127.0.0.1 port={p} user=postgres dbname=postgres"
    ))
    .unwrap();
    // localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    connects(&format!(
        "host=localhost port={p} user=postgres dbname=postgres"
    ))
    .unwrap();
    let err = connects(&format!(
        "host=db.invalid port={p} user=postgres dbname=postgres connect_timeout=5"
    ))
    .unwrap_err();
    assert!(
        matches!(err, Error::Connect(_) | Error::TimedOut(_)),
        "{err:?}"
    );
}

#[test]
fn target_session_attrs_are_checked() {
    let mut mon = monitor("attrs");
    mon.execute(
        "DO $$ BEGIN CREATE ROLE sp_reader LOGIN; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
         ALTER ROLE sp_reader SET default_transaction_read_only = on",
    );
    let p = port();
    let dsn = |user: &str, attrs: &str| {
        format!("host=127.0.0.1 port={p} user={user} dbname=postgres target_session_attrs={attrs}")
    };
    connects(&dsn("postgres", "read-write")).unwrap();
    connects(&dsn("sp_reader", "read-only")).unwrap();
    for (user, attrs) in [("sp_reader", "read-write"), ("postgres", "read-only")] {
        let err = connects(&dsn(user, attrs)).unwrap_err();
        assert!(
            err.to_string().contains("target_session_attrs"),
            "{user} {attrs}: {err:?}"
        );
    }
}
