//! The default TLS stack: rustls, verifying as libpq's `sslmode` says. Its cryptography is the
//! process's default rustls provider when the application installed one
//! (`CryptoProvider::install_default`), else aws-lc-rs (rustls's default, with post-quantum key
//! exchange).
//!
//! - `prefer`, `require`: encrypted, the certificate not verified (`prefer` also connects in
//!   plaintext when the server declines TLS or the handshake fails, as libpq does) (libpq's meaning: protection
//!   from passive eavesdroppers only) — unless a root certificate file is given, in which case
//!   `require` verifies the chain as `verify-ca` does, as libpq does;
//! - `verify-ca`: the chain must lead to a trusted root;
//! - `verify-full`: and the certificate must name the host.
//!
//! Roots: the `sslrootcert` file when given (`sslrootcert=system`: the system store), else
//! `~/.postgresql/root.crt` when it exists (libpq's default), else the system store.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::error::Error;
use crate::socket::PgSocket;
use crate::ssl::SslMode;

/// A `MakeTlsConnect` over rustls for one `sslmode` and set of roots; cheap to clone.
#[derive(Clone)]
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for RustlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustlsConnect").finish_non_exhaustive()
    }
}

impl RustlsConnect {
    /// The connector for `mode` (`disable` needs none, and gets the `prefer` one) with the root
    /// certificates of `root_cert` (a PEM file, `"system"`, or `None` for libpq's default).
    pub fn new(mode: SslMode, root_cert: Option<&str>) -> Result<RustlsConnect, Error> {
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let explicit = root_cert.is_some() || default_root_file().is_some();
        let verify = match mode {
            SslMode::VerifyFull => Verify::Full,
            SslMode::VerifyCa => Verify::Chain,
            SslMode::Require if explicit => Verify::Chain,
            _ => Verify::Nothing,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::Nothing => Arc::new(NoVerify(provider.clone())),
            Verify::Chain | Verify::Full => {
                let roots = Arc::new(roots(root_cert)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| Error::Tls(Box::new(e)))?;
                Arc::new(ChainVerify {
                    webpki,
                    names: verify == Verify::Full,
                })
            }
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(Box::new(e)))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // Required by servers that take direct TLS negotiation (PostgreSQL 17); harmless before.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(RustlsConnect {
            config: Arc::new(config),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    Full,
}

fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".postgresql/root.crt");
    path.is_file().then_some(path)
}

fn roots(root_cert: Option<&str>) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    let file = match root_cert {
        Some("system") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => default_root_file(),
    };
    match file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    Error::InvalidConfig(format!("sslrootcert {}: {e}", path.display()))
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::InvalidConfig(format!(
                    "sslrootcert {}: no certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
    }
    Ok(store)
}

/// Verifies the chain and, for `verify-full`, the name; `verify-ca` accepts any name.
#[derive(Debug)]
struct ChainVerify {
    webpki: Arc<WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for ChainVerify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified =
            self.webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match verified {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `prefer` and `require`: any certificate, but the handshake's signatures are still checked
/// (the key exchange is with whoever holds the certificate's key).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl MakeTlsConnect<PgSocket> for RustlsConnect {
    type Stream = RustlsStream;
    type TlsConnect = RustlsHandshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsHandshake> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsHandshake {
            config: self.config.clone(),
            name,
        })
    }
}

/// The handshake with one server.
pub struct RustlsHandshake {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

type Handshaking = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

impl TlsConnect<PgSocket> for RustlsHandshake {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Handshaking;

    fn connect(self, socket: PgSocket) -> Handshaking {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(RustlsStream(connector.connect(self.name, socket).await?)) })
    }
}

/// A TLS session over a [`PgSocket`].
pub struct RustlsStream(tokio_rustls::client::TlsStream<PgSocket>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl TlsStream for RustlsStream {
    /// `tls-server-end-point` (RFC 5929): the certificate's hash with the hash of its signature
    /// algorithm (SHA-256 for MD5 and SHA-1). None when that algorithm is not one of the known
    /// RSA or ECDSA ones: SCRAM then runs without channel binding rather than with a wrong one.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        let Some(cert) = session.peer_certificates().and_then(|c| c.first()) else {
            return ChannelBinding::none();
        };
        match end_point_digest(cert) {
            Some(digest) => ChannelBinding::tls_server_end_point(digest(cert)),
            None => ChannelBinding::none(),
        }
    }
}

/// A hash function, its output as bytes.
type Digest = fn(&[u8]) -> Vec<u8>;

/// The digest for `tls-server-end-point` from the certificate's outer signatureAlgorithm OID.
fn end_point_digest(cert: &[u8]) -> Option<Digest> {
    use sha2::{Digest as _, Sha256, Sha384, Sha512};
    const SHA256: Digest = |data| Sha256::digest(data).to_vec();
    const SHA384: Digest = |data| Sha384::digest(data).to_vec();
    const SHA512: Digest = |data| Sha512::digest(data).to_vec();
    let (cert, _) = der(cert, 0x30)?;
    let (_, after_tbs) = der(cert, 0x30)?;
    let (alg, _) = der(after_tbs, 0x30)?;
    let (oid, _) = der(alg, 0x06)?;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    match oid {
        [p @ .., 4 | 5 | 11 | 14] if p == RSA => Some(SHA256), // md5, sha1, sha256, sha224
        [p @ .., 12] if p == RSA => Some(SHA384),
        [p @ .., 13] if p == RSA => Some(SHA512),
        [p @ .., 1] if p == ECDSA => Some(SHA256), // ecdsa-with-SHA1
        [p @ .., 3, 1 | 2] if p == ECDSA => Some(SHA256),
        [p @ .., 3, 3] if p == ECDSA => Some(SHA384),
        [p @ .., 3, 4] if p == ECDSA => Some(SHA512),
        _ => None,
    }
}

/// One DER element of tag `tag` at the start of `data`: its contents and what follows it.
fn der(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if t != tag {
        return None;
    }
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}
