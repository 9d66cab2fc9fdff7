//! The liveness probe of idle connections (`PgConn::probe`, in both connectors): a connection
//! whose server went away — its backend terminated, the server restarted, the network reset —
//! probes dead with nothing sent; a healthy one, and one with a notification waiting, probe alive
//! (and the notification still reaches its client); over TLS a dead one may probe unsure (its
//! bytes are encrypted), never alive.

mod common;

use common::{eventually, monitor, monitor_for, named, server_addr, PATIENCE};
use sanspool_postgres::postgres::fallible_iterator::FallibleIterator;
use sanspool_postgres::Liveness;
use sanspool_postgres::{Connector, PgConn, PgConnector};
use sanspool_tests::harness::Proxy;
use sanspool_tests::{shared_dsn, PgServer, Setup};
use sanspool_tokio::postgres as tpg;
use sanspool_tokio::Connector as _;

/// Connections of each connector in a test.
const EACH: usize = 4;

/// Idle connections of both connectors, each having answered a query.
struct Idle {
    blocking: Vec<PgConn>,
    /// Before the runtime: dropped while their driver tasks still run.
    tokio: Vec<tpg::PgConn>,
    _runtime: tokio::runtime::Runtime,
}

impl Idle {
    fn open(dsn: &str, name: &str) -> Idle {
        let dsn = named(dsn, name);
        let connector = PgConnector::new(&dsn).expect("a valid DSN");
        let blocking = (0..EACH)
            .map(|_| {
                let mut conn = connector.connect().expect("connect (blocking)");
                conn.simple_query("SELECT 1").expect("a query");
                conn
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let connector = tpg::PgConnector::new(&dsn).expect("a valid DSN");
        let tokio = runtime.block_on(async {
            let mut conns = Vec::new();
            for _ in 0..EACH {
                let conn = connector.connect().await.expect("connect (tokio)");
                conn.simple_query("SELECT 1").await.expect("a query");
                conns.push(conn);
            }
            conns
        });
        Idle {
            blocking,
            tokio,
            _runtime: runtime,
        }
    }

    /// Every connection's probe (its status cell's), blocking ones first; each checked to have
    /// sent nothing.
    fn probes(&self) -> Vec<Liveness> {
        let blocking = self.blocking.iter().map(PgConn::status_cell);
        let tokio = self.tokio.iter().map(tpg::PgConn::status_cell);
        blocking
            .chain(tokio)
            .map(|cell| {
                let before = cell.bytes_written();
                let found = cell.probe();
                assert_eq!(cell.bytes_written(), before, "the probe sent nothing");
                found
            })
            .collect()
    }

    /// The probes of the connections themselves (which also ask their clients).
    fn conn_probes(&self) -> Vec<Liveness> {
        let blocking = self.blocking.iter().map(PgConn::probe);
        blocking
            .chain(self.tokio.iter().map(tpg::PgConn::probe))
            .collect()
    }
}

fn count(found: &[Liveness], which: Liveness) -> usize {
    found.iter().filter(|&&l| l == which).count()
}

#[test]
fn healthy_idle_connections_probe_alive() {
    let idle = Idle::open(&shared_dsn(), "probe-healthy");
    let found = idle.probes();
    assert_eq!(found, vec![Liveness::Alive; 2 * EACH]);
    assert_eq!(idle.conn_probes(), found);
    // Still usable: the probe consumed nothing.
    let mut idle = idle;
    for conn in &mut idle.blocking {
        conn.simple_query("SELECT 1")
            .expect("a query after the probe");
    }
}

#[test]
fn terminated_backends_probe_dead_with_nothing_sent() {
    let name = "probe-terminated";
    let idle = Idle::open(&shared_dsn(), name);
    let mut mon = monitor(name);
    let pids = mon.pids();
    assert_eq!(pids.len(), 2 * EACH);
    for pid in pids {
        mon.terminate(pid);
    }
    // The blocking clients read nothing since: their trackers still say idle, and only the
    // probe can tell.
    for conn in &idle.blocking {
        assert_eq!(conn.status(), sanspool_postgres::TxStatus::Idle);
    }
    let found = idle.probes();
    eprintln!("after pg_terminate_backend: {found:?}");
    assert_eq!(found, vec![Liveness::Dead; 2 * EACH]);
    assert_eq!(idle.conn_probes(), found);
}

#[test]
fn after_a_restart_every_idle_connection_probes_dead() {
    let mut server = PgServer::start().expect("a server of our own");
    let idle = Idle::open(&server.dsn(), "probe-restart-fast");
    assert_eq!(idle.probes(), vec![Liveness::Alive; 2 * EACH]);
    server.restart_fast().expect("pg_ctl restart -m fast");
    let found = idle.probes();
    eprintln!("after a fast restart: {found:?}");
    assert_eq!(found, vec![Liveness::Dead; 2 * EACH]);
    assert_eq!(idle.conn_probes(), found);
    drop(idle);

    // An immediate shutdown sends a WARNING, not an error, before closing.
    let idle = Idle::open(&server.dsn(), "probe-restart-immediate");
    server.restart().expect("pg_ctl restart -m immediate");
    let found = idle.probes();
    eprintln!("after an immediate restart: {found:?}");
    assert_eq!(found, vec![Liveness::Dead; 2 * EACH]);
}

#[test]
fn connections_reset_on_the_network_probe_dead() {
    let dsn = shared_dsn();
    let proxy = Proxy::start(server_addr(&dsn)).expect("a proxy");
    let idle = Idle::open(&proxy.dsn(&dsn), "probe-reset");
    assert_eq!(proxy.connections(), 2 * EACH);

    // A link that stopped passing packets cannot be told from an idle one without a round trip.
    proxy.freeze();
    assert_eq!(idle.probes(), vec![Liveness::Alive; 2 * EACH]);
    proxy.thaw();

    assert_eq!(proxy.reset().expect("reset"), 2 * EACH);
    let found = idle.probes();
    eprintln!("after a network reset: {found:?}");
    assert_eq!(found, vec![Liveness::Dead; 2 * EACH]);
    assert_eq!(idle.conn_probes(), found);
}

/// A notification waiting in an idle connection's socket: alive, and still the client's.
#[test]
fn a_pending_notification_probes_alive_and_reaches_its_client() {
    let name = "probe-notify";
    let dsn = shared_dsn();
    // Through a proxy, to know when the notification has reached the client's socket.
    let proxy = Proxy::start(server_addr(&dsn)).expect("a proxy");
    let connector = PgConnector::new(&named(&proxy.dsn(&dsn), name)).expect("a valid DSN");
    let mut conn = connector.connect().expect("connect");
    let channel = format!("sp_probe_{}", std::process::id());
    conn.batch_execute(&format!("LISTEN {channel}"))
        .expect("LISTEN");
    let (before, written) = (proxy.bytes_to_clients(), conn.status_cell().bytes_written());

    let mut notifier = monitor_for(&dsn, &format!("{name}-notifier"));
    notifier.execute(&format!("NOTIFY {channel}, 'hello'"));
    eventually("the notification to reach the client's socket", || {
        proxy.bytes_to_clients() > before
    });

    assert_eq!(conn.probe(), Liveness::Alive);
    assert_eq!(
        conn.probe(),
        Liveness::Alive,
        "probing again finds the same"
    );
    assert_eq!(conn.status_cell().bytes_written(), written, "nothing sent");
    let mut notifications = conn.notifications();
    let got = notifications
        .timeout_iter(PATIENCE)
        .next()
        .expect("read the notification")
        .expect("the notification is still there");
    assert_eq!((got.channel(), got.payload()), (channel.as_str(), "hello"));
    drop(notifications);
    conn.simple_query("SELECT 1").expect("the connection works");
}

#[test]
fn over_tls_a_restarted_server_probes_dead_or_unsure_never_alive() {
    let mut server = PgServer::start_with(Setup {
        tls: true,
        ..Setup::default()
    })
    .expect("a TLS server of our own");
    let idle = Idle::open(&format!("{} sslmode=require", server.dsn()), "probe-tls");
    for conn in &idle.blocking {
        assert!(conn.status_cell().is_tracked());
    }
    assert_eq!(idle.probes(), vec![Liveness::Alive; 2 * EACH]);
    server.restart_fast().expect("pg_ctl restart -m fast");
    let found = idle.probes();
    eprintln!(
        "over TLS after a fast restart: {} dead, {} unsure of {}",
        count(&found, Liveness::Dead),
        count(&found, Liveness::Unsure),
        found.len()
    );
    assert_eq!(count(&found, Liveness::Alive), 0, "{found:?}");
}
