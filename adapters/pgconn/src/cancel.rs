//! [`CancelToken`]: cancels the query running on a connection, over the way the connection went.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::error::{Error, Op};
use crate::handshake::Negotiation;
use crate::plan::{socket, Addr};
use crate::status::StatusCell;

/// Cancels the query running on one connection, from any thread or task; `Send + Sync + Clone`.
///
/// The request quotes the process id and secret key the server (or the bouncer in front of it)
/// sent when the session started, read off the wire by the connection's tracker. It goes to the
/// address the connection went to, TCP or Unix, with TLS as the connection's `sslmode` says.
#[derive(Clone)]
pub struct CancelToken {
    cell: StatusCell,
    addr: Addr,
    negotiation: Negotiation,
    config: tokio_postgres::Config,
    timeout: Duration,
}

/// A CancelRequest: length 16, code 80877102, then the key.
const CANCEL_REQUEST: [u8; 8] = [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];

impl CancelToken {
    pub(crate) fn new(
        cell: StatusCell,
        addr: Addr,
        negotiation: Negotiation,
        config: tokio_postgres::Config,
        timeout: Duration,
    ) -> Self {
        CancelToken {
            cell,
            addr,
            negotiation,
            config,
            timeout,
        }
    }

    /// Sends the cancel request: a new connection to the address the connection went to, with
    /// TLS as its `sslmode` says, within the connect bound; it waits for the server to close that
    /// connection, as libpq does, so the request has been read before it returns. As with libpq,
    /// success means the request was delivered; the query may have finished first.
    pub fn cancel_query(&self) -> Result<(), Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Connect)?;
        runtime.block_on(self.cancel_query_async())
    }

    /// [`cancel_query`](Self::cancel_query) on the caller's tokio runtime (`cancel_query` runs a
    /// runtime of its own, which a task cannot block on).
    pub async fn cancel_query_async(&self) -> Result<(), Error> {
        let Some(key) = self.cell.backend_key() else {
            return Err(Error::Connect(io::Error::new(
                io::ErrorKind::NotFound,
                "the server sent no BackendKeyData to quote",
            )));
        };
        // `None`: no bound (`connect_timeout=0`, as libpq).
        let deadline = Instant::now().checked_add(self.timeout);
        let send = async {
            // Shutting down waits for the server to close (PgBouncer 1.18 drops a cancel request
            // whose client closes first, and may then crash): see `PgSocket`.
            let socket = socket(&self.addr, &self.config, deadline).await?;
            let unix = matches!(self.addr, Addr::Unix(_));
            let mut stream = self
                .negotiation
                .run(socket, unix, false, StatusCell::default())
                .await
                .map_err(|failed| failed.into_error())?;
            let mut request = [0u8; 16];
            request[..8].copy_from_slice(&CANCEL_REQUEST);
            request[8..].copy_from_slice(&key);
            stream.write_all(&request).await.map_err(Error::Connect)?;
            stream.flush().await.map_err(Error::Connect)?;
            stream.shutdown().await.map_err(Error::Connect)
        };
        tokio::time::timeout(self.timeout, send)
            .await
            .unwrap_or(Err(Error::TimedOut(Op::Cancel)))
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
