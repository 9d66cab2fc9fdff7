//! [`SslMode`]: libpq's `sslmode`, all five of them.

/// libpq's `sslmode`: what the connection asks of TLS.
///
/// Followed by the default TLS stack (feature `rustls`); a connector given to a connector's
/// `with_tls` is told only whether TLS is off, tried or required, and verifies as it was built
/// to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS if the server offers it, else plaintext; the certificate is not verified. libpq's
    /// default.
    Prefer,
    /// TLS or no connection; the certificate is verified only if a root certificate file is
    /// given (as libpq does).
    Require,
    /// TLS, the certificate's chain verified against the roots.
    VerifyCa,
    /// TLS, the chain verified and the certificate naming the host.
    VerifyFull,
}

impl SslMode {
    /// The nearest of tokio-postgres's three modes (verification is the TLS connector's).
    pub(crate) fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Tokio;
        match self {
            SslMode::Disable => Tokio::Disable,
            SslMode::Prefer => Tokio::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Tokio::Require,
        }
    }

    /// The mode a tokio-postgres configuration says.
    pub(crate) fn of(config: &tokio_postgres::Config) -> SslMode {
        use tokio_postgres::config::SslMode as Tokio;
        match config.get_ssl_mode() {
            Tokio::Disable => SslMode::Disable,
            Tokio::Require => SslMode::Require,
            _ => SslMode::Prefer,
        }
    }
}
