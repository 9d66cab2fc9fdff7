//! Pins the tokio-postgres behaviour the async connector relies on: `connect_raw`, told
//! `sslmode=require` with `sslnegotiation=direct`, gives the TLS hook the stream it was given
//! before it writes a byte — whatever the stream, a Unix socket's included. Should an upgrade
//! change that, this fails before any connector does.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, DuplexStream};
use tokio_postgres::config::{SslMode, SslNegotiation};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// A hook that notes what it was given and refuses.
#[derive(Clone)]
struct Probe {
    calls: Arc<AtomicUsize>,
}

struct Never;

impl tokio::io::AsyncRead for Never {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl tokio::io::AsyncWrite for Never {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::task::Poll::Pending
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Pending
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl TlsStream for Never {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl TlsConnect<DuplexStream> for Probe {
    type Stream = Never;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Never>> + Send>>;

    fn connect(self, _stream: DuplexStream) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(io::Error::other("refused by the probe")) })
    }
}

#[tokio::test]
async fn connect_raw_hands_the_stream_to_the_hook_before_a_byte() {
    let (client_side, mut server_side) = tokio::io::duplex(1024);
    let mut config = tokio_postgres::Config::new();
    // A Unix socket's configuration: connect_raw does not look at the host.
    config
        .host_path("/nonexistent")
        .user("nobody")
        .ssl_mode(SslMode::Require)
        .ssl_negotiation(SslNegotiation::Direct);
    let probe = Probe {
        calls: Arc::default(),
    };
    let err = config
        .connect_raw(client_side, probe.clone())
        .await
        .map(drop)
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("refused by the probe"),
        "{err:?}"
    );
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
    // The client's end is gone (dropped by the probe): nothing was ever written.
    let mut seen = Vec::new();
    server_side.read_to_end(&mut seen).await.unwrap();
    assert!(seen.is_empty(), "written before the hook: {seen:?}");
}
