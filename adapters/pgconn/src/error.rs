//! [`Error`]: why a connection could not be configured, opened, reset, checked, closed or
//! cancelled; [`Op`]: which bounded operation ran out of time.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::status::TxStatus;

/// Why a connector could not be built or a connection could not be opened, reset, checked or
/// cancelled. The same type for the blocking and the async connector.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The connection string could not be parsed.
    Config(tokio_postgres::Error),
    /// The configuration cannot be used as it is (no host, `sslmode=require` without TLS, ...).
    InvalidConfig(String),
    /// The server could not be reached: DNS, TCP or the Unix socket.
    Connect(io::Error),
    /// The TLS connector could not be set up, or the server refused TLS that `sslmode` demands.
    Tls(Box<dyn StdError + Send + Sync>),
    /// The client failed: the protocol, TLS, authentication, or the query of a reset or check.
    Postgres(tokio_postgres::Error),
    /// The operation did not finish within its bound; the connection is closed.
    TimedOut(Op),
    /// The connection closed while being opened.
    Closed,
    /// After `ROLLBACK` (or a check) the session is still not known to be idle — the tracker lost
    /// the thread of the protocol, say — so it must not be reused.
    NotIdle(TxStatus),
}

/// The bounded network operations of a connection ([`Error::TimedOut`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening: DNS, TCP, TLS, startup and authentication, per host address.
    Connect,
    /// The reset of a returned connection (`ROLLBACK`, or the session reset).
    Reset,
    /// The pool's check query.
    Check,
    /// Terminate, and waiting for the server to close the socket.
    Close,
    /// A cancel request.
    Cancel,
}

impl Error {
    /// The client's error, if this is one.
    pub fn as_postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Error::Config(e) | Error::Postgres(e) => Some(e),
            _ => None,
        }
    }

    /// Whether an open that failed with this will fail again until someone changes something:
    /// the server refused the login (SQLSTATE class 28: a bad password, an unknown role, no
    /// `pg_hba.conf` entry), the database does not exist (`3D000`) or may not be connected to
    /// (`42501`), or the configuration cannot be used. A server starting, shutting down or full
    /// (`57P03`, `57P01`, `53300`) and an unreachable one may answer next time: not permanent.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Config(_) | Error::InvalidConfig(_) => true,
            Error::Postgres(e) => e.code().is_some_and(|code| {
                let code = code.code();
                code.starts_with("28") || code == "3D000" || code == "42501"
            }),
            _ => false,
        }
    }

    /// A client error caused by the connection's deadline becomes [`Error::TimedOut`].
    pub fn during(op: Op) -> impl FnOnce(tokio_postgres::Error) -> Error {
        move |e| match io_cause(&e) {
            Some(io) if io.kind() == io::ErrorKind::TimedOut => Error::TimedOut(op),
            _ => Error::Postgres(e),
        }
    }

    /// An error of the client's own connect (the TCP connect tokio-postgres makes for the
    /// blocking client): a socket that could not connect is [`Error::Connect`], as when this
    /// crate connects it; past the bound, [`Error::TimedOut`].
    pub(crate) fn of_connect(e: tokio_postgres::Error) -> Error {
        match io_cause(&e) {
            Some(io) if io.kind() == io::ErrorKind::TimedOut => Error::TimedOut(Op::Connect),
            // The socket never got to the protocol: tokio-postgres's `Connect` kind.
            Some(io) if e.to_string().starts_with("error connecting to server") => {
                Error::Connect(io::Error::new(io.kind(), io.to_string()))
            }
            _ => Error::Postgres(e),
        }
    }
}

/// The I/O error in `e`'s chain of causes, if any.
fn io_cause(e: &tokio_postgres::Error) -> Option<&io::Error> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return Some(io);
        }
        source = cause.source();
    }
    None
}

/// The client's error with its cause: its own text names only the kind ("db error", "invalid
/// connection string"), the cause says what happened (the server's message, the parser's).
fn with_cause(f: &mut fmt::Formatter<'_>, e: &tokio_postgres::Error) -> fmt::Result {
    fmt::Display::fmt(e, f)?;
    match StdError::source(e) {
        Some(cause) => write!(f, ": {cause}"),
        None => Ok(()),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => with_cause(f, e),
            Error::InvalidConfig(why) => write!(f, "unusable configuration: {why}"),
            Error::Connect(e) => write!(f, "cannot reach the server: {e}"),
            Error::Tls(e) => write!(f, "TLS setup failed: {e}"),
            Error::Postgres(e) => with_cause(f, e),
            Error::TimedOut(op) => write!(f, "{op:?} timed out"),
            Error::Closed => f.write_str("the connection closed"),
            Error::NotIdle(status) => {
                write!(f, "session not idle after a reset or check ({status:?})")
            }
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            // The client's error is displayed, not chained: its own source follows.
            Error::Config(e) => StdError::source(e),
            Error::Connect(e) => Some(e),
            Error::Tls(e) => Some(&**e),
            // The client's error is displayed, not chained: its own source follows.
            Error::Postgres(e) => StdError::source(e),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Postgres(e)
    }
}
