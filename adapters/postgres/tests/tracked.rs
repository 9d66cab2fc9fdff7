//! The tracker against a real server: `SANSPOOL_TEST_DSN` if set, else a throwaway server started
//! here.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use postgres::config::{SslMode, SslNegotiation};
use postgres::fallible_iterator::FallibleIterator;
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::{Client, Config, NoTls, SimpleQueryMessage};
use sanspool_postgres::tracked::{connect, connect_tls};
use sanspool_postgres::PgSocket;
use sanspool_postgres::{StatusCell, TxStatus};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway server, stopped and removed on drop.
struct Server {
    dir: PathBuf,
    port: u16,
}

impl Server {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("sanspool-tracked-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = Server { dir, port };
        if as_root() {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&server.dir));
        }
        let data = server.dir.join("data");
        run(server
            .pg("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres"]));
        let opts = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1",
            server.dir.display()
        );
        let log = server.dir.join("log");
        run(server
            .pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(log)
            .args(["-o", &opts, "-w", "start"]));
        server
    }

    fn pg(&self, program: &str) -> Command {
        let program = format!("{BIN}/{program}");
        if !as_root() {
            return Command::new(program);
        }
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", &program]);
        command
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn open(config: &Config) -> (Client, StatusCell) {
    let (client, cell) = connect(config).unwrap();
    assert!(cell.is_tracked());
    assert_eq!(cell.get(), TxStatus::Idle, "fresh connection");
    (client, cell)
}

/// The first column of the first row of a simple query.
fn scalar(client: &mut Client, sql: &str) -> String {
    let rows = client.simple_query(sql).unwrap();
    let row = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    row.and_then(|r| r.get(0)).unwrap_or_default().to_owned()
}

/// The status once the client has read what already arrived. A call that fails returns on the
/// ErrorResponse, possibly before the ReadyForQuery behind it is read: the status is `Unknown`
/// until the client reads again. Waiting for notifications reads without sending a request (the
/// non-blocking `iter` would not do: the client's runtime only learns that the socket is readable
/// when it parks).
fn settle(client: &mut Client, cell: &StatusCell) -> TxStatus {
    for _ in 0..100 {
        if cell.get() != TxStatus::Unknown {
            break;
        }
        let _ = client
            .notifications()
            .timeout_iter(Duration::from_millis(10))
            .count();
    }
    cell.get()
}

fn rollback(client: &mut Client, cell: &StatusCell) {
    client.simple_query("ROLLBACK").unwrap();
    assert_eq!(cell.get(), TxStatus::Idle, "after ROLLBACK");
}

#[test]
fn tracks_a_real_server() {
    let server = std::env::var("SANSPOOL_TEST_DSN")
        .is_err()
        .then(Server::start);
    let dsn = match &server {
        Some(s) => format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            s.port
        ),
        None => std::env::var("SANSPOOL_TEST_DSN").unwrap(),
    };
    let config = Config::from_str(&dsn).unwrap();
    transactions(&config);
    copies(&config);
    unread_results(&config);
    status_costs_no_round_trip(&config);
    termination(&config);
    tls_wrapper(&config);
    plaintext_paths(&config, server.as_ref());
}

fn transactions(config: &Config) {
    let (mut c, cell) = open(config);
    c.simple_query("BEGIN").unwrap();
    assert_eq!(cell.get(), TxStatus::InTransaction);
    rollback(&mut c, &cell);

    c.batch_execute("BEGIN; SELECT 1/0;").unwrap_err();
    assert_eq!(settle(&mut c, &cell), TxStatus::InError);
    rollback(&mut c, &cell);

    // The extended protocol: an error outside a block leaves the session idle, inside it fails the
    // block.
    c.query("SELECT 1/0", &[]).unwrap_err();
    assert_eq!(settle(&mut c, &cell), TxStatus::Idle);
    c.simple_query("BEGIN").unwrap();
    c.query("SELECT 1/$1::int", &[&0i32]).unwrap_err();
    assert_eq!(settle(&mut c, &cell), TxStatus::InError);
    rollback(&mut c, &cell);

    // `transaction()` sends BEGIN before returning; a forgotten one stays open, a dropped one rolls
    // back.
    std::mem::forget(c.transaction().unwrap());
    assert_eq!(cell.get(), TxStatus::InTransaction);
    rollback(&mut c, &cell);
    let mut tx = c.transaction().unwrap();
    tx.execute("SELECT 1", &[]).unwrap();
    drop(tx);
    assert_eq!(cell.get(), TxStatus::Idle);
    c.transaction().unwrap().commit().unwrap();
    assert_eq!(cell.get(), TxStatus::Idle);

    // A dropped statement queues Close + Sync; the next request flushes it and everything is
    // answered.
    drop(c.prepare("SELECT 2").unwrap());
    c.simple_query("SELECT 1").unwrap();
    assert_eq!(cell.get(), TxStatus::Idle);
}

fn copies(config: &Config) {
    let (mut c, cell) = open(config);
    c.batch_execute("CREATE TEMP TABLE t (x int)").unwrap();

    // A finished COPY IN is clean: the Sync sent with its Execute is swallowed by the server.
    // (`finish` returns on CommandComplete, before the Close of the statement it prepared is
    // answered: settle.)
    let mut w = c.copy_in("COPY t FROM STDIN").unwrap();
    w.write_all(b"1\n2\n").unwrap();
    assert_eq!(w.finish().unwrap(), 2);
    assert_eq!(settle(&mut c, &cell), TxStatus::Idle);

    // A COPY IN that fails on bad data.
    let mut w = c.copy_in("COPY t FROM STDIN").unwrap();
    w.write_all(b"oops\n").unwrap();
    w.finish().unwrap_err();
    assert_eq!(settle(&mut c, &cell), TxStatus::Idle);

    // A COPY IN dropped half done: the server waits for data. The ROLLBACK request makes the client
    // send the CopyFail + Sync it queued on drop, then ROLLBACK itself; the copy is aborted, the
    // session idle.
    for in_block in [false, true] {
        if in_block {
            c.simple_query("BEGIN").unwrap();
        }
        let mut w = c.copy_in("COPY t FROM STDIN").unwrap();
        w.write_all(b"3\n4\n").unwrap();
        w.flush().unwrap();
        drop(w);
        assert_eq!(cell.get(), TxStatus::Unknown, "COPY IN dropped");
        rollback(&mut c, &cell);
        assert_eq!(scalar(&mut c, "SELECT count(*) FROM t"), "2");
    }

    // A COPY OUT dropped before its end: the server goes on sending; ROLLBACK drains it all first.
    let mut r = c
        .copy_out("COPY (SELECT generate_series(1, 1000000)) TO STDOUT")
        .unwrap();
    r.read_exact(&mut [0; 16]).unwrap();
    drop(r);
    assert_eq!(cell.get(), TxStatus::Unknown, "COPY OUT dropped");
    rollback(&mut c, &cell);

    // A COPY IN that fails to start (rejected at Execute) desynchronizes tokio-postgres 0.7 itself
    // (rust-postgres issue 789): the CopyFail + Sync it sends at its next read or write draws a
    // second ReadyForQuery. Until then the session may look idle (or unknown, if the ReadyForQuery
    // after the error is not read yet); once sent, the tracker reports it closed.
    c.copy_in("COPY no_such_table FROM STDIN")
        .map(drop)
        .unwrap_err();
    c.simple_query("SELECT 1").unwrap_err();
    assert_eq!(cell.get(), TxStatus::Closed);
}

fn unread_results(config: &Config) {
    let (mut c, cell) = open(config);
    let mut rows = c
        .query_raw(
            "SELECT generate_series(1, 100000)",
            std::iter::empty::<i32>(),
        )
        .unwrap();
    rows.next().unwrap().unwrap();
    drop(rows);
    assert_eq!(cell.get(), TxStatus::Unknown, "rows left unread");
    rollback(&mut c, &cell);
}

fn status_costs_no_round_trip(config: &Config) {
    let (mut c, cell) = open(config);
    let (mut observer, _) = open(config);
    let pid = scalar(&mut c, "SELECT pg_backend_pid()");
    let activity = format!(
        "SELECT query_start::text || ' ' || state_change::text FROM pg_stat_activity \
         WHERE pid = {pid}"
    );
    let (seen, written) = (scalar(&mut observer, &activity), cell.bytes_written());
    for _ in 0..100_000 {
        assert_eq!(cell.get(), TxStatus::Idle);
    }
    assert_eq!(
        cell.bytes_written(),
        written,
        "bytes written while reading the status"
    );
    assert_eq!(
        scalar(&mut observer, &activity),
        seen,
        "server activity while reading the status"
    );
    // The control: one query does show on both counters.
    c.simple_query("SELECT 1").unwrap();
    assert!(cell.bytes_written() > written);
    assert_ne!(scalar(&mut observer, &activity), seen);
}

fn termination(config: &Config) {
    let (mut c, cell) = open(config);
    let (mut observer, _) = open(config);
    let pid = scalar(&mut c, "SELECT pg_backend_pid()");
    assert_eq!(
        scalar(
            &mut observer,
            &format!("SELECT pg_terminate_backend({pid})")
        ),
        "t"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while scalar(
        &mut observer,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
    ) != "0"
    {
        assert!(Instant::now() < deadline, "backend {pid} still alive");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The blocking client reads only inside its calls: the status changes once a call notices.
    assert_eq!(cell.get(), TxStatus::Idle);
    c.simple_query("SELECT 1").unwrap_err();
    assert_eq!(cell.get(), TxStatus::Closed);
    drop(c);
    assert_eq!(cell.get(), TxStatus::Closed);

    let (c, cell) = open(config);
    drop(c);
    assert_eq!(cell.get(), TxStatus::Closed, "dropped client");
}

fn plaintext_paths(config: &Config, server: Option<&Server>) {
    // sslmode=disable: the plaintext session is tracked.
    let mut plain = config.clone();
    plain.ssl_mode(SslMode::Disable);
    let (_c, cell) = connect_tls(&plain, NoTls).unwrap();
    assert!(cell.is_tracked());
    assert_eq!(cell.get(), TxStatus::Idle);

    let Some(server) = server else { return };
    // A server without TLS declines the SSLRequest: the session falls back to plaintext, and the
    // tracker in the socket reads on past the one-byte answer.
    let mut prefer = config.clone();
    prefer.ssl_mode(SslMode::Prefer);
    let (mut c, cell) = connect_tls(&prefer, FakeTls).unwrap();
    assert!(cell.is_tracked());
    assert_eq!(cell.get(), TxStatus::Idle);
    c.simple_query("BEGIN").unwrap();
    assert_eq!(cell.get(), TxStatus::InTransaction);
    rollback(&mut c, &cell);

    // A unix-domain socket ignores sslmode, as libpq does, and is tracked.
    let mut unix = Config::new();
    unix.host_path(&server.dir)
        .port(server.port)
        .user("postgres")
        .dbname("postgres")
        .ssl_mode(SslMode::Require);
    let (mut c, cell) = connect(&unix).unwrap();
    assert!(cell.is_tracked());
    assert_eq!(cell.get(), TxStatus::Idle);
    c.simple_query("BEGIN").unwrap();
    assert_eq!(cell.get(), TxStatus::InTransaction);
    rollback(&mut c, &cell);
}

/// A stand-in for a TLS connector that returns the socket as is: with direct negotiation the
/// server sees plain messages, and `connect_tls` puts the tracker over the returned stream.
#[derive(Clone, Copy)]
struct FakeTls;

struct FakeTlsStream(PgSocket);

impl MakeTlsConnect<PgSocket> for FakeTls {
    type Stream = FakeTlsStream;
    type TlsConnect = FakeTls;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, _: &str) -> std::io::Result<FakeTls> {
        Ok(FakeTls)
    }
}

impl TlsConnect<PgSocket> for FakeTls {
    type Stream = FakeTlsStream;
    type Error = std::io::Error;
    type Future = std::future::Ready<std::io::Result<FakeTlsStream>>;

    fn connect(self, socket: PgSocket) -> Self::Future {
        std::future::ready(Ok(FakeTlsStream(socket)))
    }
}

impl TlsStream for FakeTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for FakeTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for FakeTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn tls_wrapper(config: &Config) {
    let mut direct = config.clone();
    direct
        .ssl_mode(SslMode::Require)
        .ssl_negotiation(SslNegotiation::Direct);
    let (mut c, cell) = connect_tls(&direct, FakeTls).unwrap();
    assert!(cell.is_tracked());
    assert_eq!(cell.get(), TxStatus::Idle);
    c.simple_query("BEGIN").unwrap();
    assert_eq!(cell.get(), TxStatus::InTransaction);
    rollback(&mut c, &cell);
}
