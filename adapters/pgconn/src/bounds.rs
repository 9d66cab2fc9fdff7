//! [`Bounds`]: how long each network operation of a connection may take, and the setters that
//! change them ([`bound_setters!`](crate::bound_setters)), written once for the blocking
//! connector and the async one.

use std::time::Duration;

/// How long opening a connection may take by default, per host address (DNS, TCP, TLS, startup,
/// authentication), when the configuration sets no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a check waits for the server's answer by default.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a reset (`ROLLBACK`, or the session reset) may take by default.
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// How long closing a connection may take by default: Terminate, then the server's end of stream.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The bounds of a connection's network operations: a connection that exceeds one fails with
/// [`Error::TimedOut`](crate::Error::TimedOut) and is closed. Set through a connector's
/// `connect_timeout`, `check_timeout`, `reset_timeout` and `close_timeout`; read with its
/// `bounds()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Bounds {
    /// Opening, per host address, when the configuration sets no `connect_timeout`
    /// ([`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect: Duration,
    /// The check query ([`DEFAULT_CHECK_TIMEOUT`]).
    pub check: Duration,
    /// The reset of a returned connection ([`DEFAULT_RESET_TIMEOUT`]).
    pub reset: Duration,
    /// The close: Terminate, then the server's end of stream ([`DEFAULT_CLOSE_TIMEOUT`]).
    pub close: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            connect: DEFAULT_CONNECT_TIMEOUT,
            check: DEFAULT_CHECK_TIMEOUT,
            reset: DEFAULT_RESET_TIMEOUT,
            close: DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

/// Expands the bound setters (`connect_timeout`, `check_timeout`, `reset_timeout`,
/// `close_timeout`) and the `bounds()` getter inside the `impl` of a connector with a field
/// `bounds: sanspool_pgconn::Bounds`. The docs link to `Connector` and the `DEFAULT_*`
/// constants, which the connector's module has in scope. Not part of the API; for the
/// connectors.
#[doc(hidden)]
#[macro_export]
macro_rules! bound_setters {
    () => {
        /// How long opening a connection may take, per host address, when the configuration has
        /// no `connect_timeout` ([`DEFAULT_CONNECT_TIMEOUT`] unless set).
        pub fn connect_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.bounds.connect = timeout;
            self
        }

        /// How long [`Connector::check`] waits for the server ([`DEFAULT_CHECK_TIMEOUT`] unless
        /// set).
        pub fn check_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.bounds.check = timeout;
            self
        }

        /// How long a reset may take ([`DEFAULT_RESET_TIMEOUT`] unless set).
        pub fn reset_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.bounds.reset = timeout;
            self
        }

        /// How long a close may take ([`DEFAULT_CLOSE_TIMEOUT`] unless set).
        pub fn close_timeout(mut self, timeout: ::std::time::Duration) -> Self {
            self.bounds.close = timeout;
            self
        }

        /// The bounds of the connections' network operations.
        pub fn bounds(&self) -> $crate::Bounds {
            self.bounds
        }
    };
}
