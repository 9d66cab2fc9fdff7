//! Pins the tokio-postgres behaviour the blocking connector relies on to build a stock
//! `postgres::Client` over a tracked stream (see `sanspool-pgconn`'s `handshake` module):
//!
//! - told `sslmode=require` with `sslnegotiation=direct`, `postgres::Config::connect` gives the
//!   TLS hook the TCP socket it opened before it writes a byte;
//! - it never gives a Unix socket to the hook (no host name to verify): hence the loopback
//!   stand-in for Unix sockets.
//!
//! Should an upgrade change either, this fails before any connector does.

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use postgres::config::{SslMode, SslNegotiation};
use postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use postgres::Socket;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A hook that counts the sockets it was given and refuses them.
#[derive(Clone, Default)]
struct Probe {
    made: Arc<AtomicUsize>,
    given: Arc<AtomicUsize>,
}

struct Never;

impl AsyncRead for Never {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl AsyncWrite for Never {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Pending
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl TlsStream for Never {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl MakeTlsConnect<Socket> for Probe {
    type Stream = Never;
    type TlsConnect = Probe;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, _: &str) -> std::io::Result<Probe> {
        self.made.fetch_add(1, Ordering::SeqCst);
        Ok(self.clone())
    }
}

impl TlsConnect<Socket> for Probe {
    type Stream = Never;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Never>> + Send>>;

    fn connect(self, _socket: Socket) -> Self::Future {
        self.given.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(std::io::Error::other("refused by the probe")) })
    }
}

fn handed() -> postgres::Config {
    let mut config = postgres::Config::new();
    config
        .user("nobody")
        .ssl_mode(SslMode::Require)
        .ssl_negotiation(SslNegotiation::Direct);
    config
}

/// Everything a server receives on one connection, until the client closes it.
fn received(mut stream: impl Read) -> Vec<u8> {
    let mut seen = Vec::new();
    let _ = stream.read_to_end(&mut seen);
    seen
}

#[test]
fn a_tcp_socket_reaches_the_hook_before_a_byte() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || received(listener.accept().unwrap().0));
    let mut config = handed();
    config
        .host("db.example")
        .hostaddr(addr.ip())
        .port(addr.port());
    let probe = Probe::default();
    let err = config.connect(probe.clone()).map(drop).unwrap_err();
    assert!(
        format!("{err:?}").contains("refused by the probe"),
        "{err:?}"
    );
    assert_eq!(probe.given.load(Ordering::SeqCst), 1);
    assert_eq!(server.join().unwrap(), b"", "written before the hook");
}

#[test]
fn a_unix_socket_never_reaches_the_hook() {
    let dir = std::env::temp_dir().join(format!("sanspool-handshake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.join(".s.PGSQL.5999")).unwrap();
    let server = thread::spawn(move || received(listener.accept().unwrap().0));
    let mut config = handed();
    config.host_path(&dir).port(5999);
    let probe = Probe::default();
    let err = config.connect(probe.clone()).map(drop).unwrap_err();
    assert!(
        format!("{err:?}").contains("no hostname provided for TLS handshake"),
        "{err:?}"
    );
    assert_eq!(probe.given.load(Ordering::SeqCst), 0);
    assert_eq!(server.join().unwrap(), b"");
    std::fs::remove_dir_all(&dir).unwrap();
}
