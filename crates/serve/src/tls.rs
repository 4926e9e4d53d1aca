//! TLS for the servers: the certificate chain and key from PEM files, and a listener that
//! completes handshakes concurrently (each within a time limit) before HTTP sees a connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate and key cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} {path}: {error}")]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        error: std::io::Error,
    },
    /// A file holds nothing usable.
    #[error("{path} holds no PEM {what} ({expected}); give the {what} in PEM form")]
    Empty {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM header expected.
        expected: &'static str,
    },
    /// The key does not fit the certificate, or rustls refuses them.
    #[error("cannot serve TLS with certificate {cert} and key {key}: {error}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        error: rustls::Error,
    },
}

/// A server's certificate chain (leaf first) and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The chain in `cert` and the key in `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self { cert: cert.into(), key: key.into() }
    }

    /// Read both files and check that the key fits the certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let chain = read(&self.cert, "certificate", |pem| {
            CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().unwrap_or_default()
        })?;
        if chain.is_empty() {
            return Err(TlsError::Empty {
                what: "certificate",
                path: self.cert.clone(),
                expected: "-----BEGIN CERTIFICATE-----",
            });
        }
        let key = read(&self.key, "key", |pem| PrivateKeyDer::from_pem_slice(pem).ok())?.ok_or_else(|| {
            TlsError::Empty { what: "private key", path: self.key.clone(), expected: "-----BEGIN PRIVATE KEY-----" }
        })?;
        let config_error = |error| TlsError::Config { cert: self.cert.clone(), key: self.key.clone(), error };
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(config_error)?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(config_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn read<T>(path: &Path, what: &'static str, parse: impl FnOnce(&[u8]) -> T) -> Result<T, TlsError> {
    let pem = std::fs::read(path).map_err(|error| TlsError::Read { what, path: path.to_owned(), error })?;
    Ok(parse(&pem))
}

/// TCP connections that have completed a TLS handshake. A client that fails or stalls its
/// handshake is dropped without delaying the others.
pub struct TlsListener(tls_listener::TlsListener<TcpListener, TlsAcceptor>);

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        Self(tls_listener::builder(TlsAcceptor::from(config)).handshake_timeout(HANDSHAKE_TIMEOUT).listen(tcp))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(connection) => return connection,
                Err(tls_listener::Error::ListenerError(e)) => {
                    // Such as too many open files: wait for some to close, as axum does.
                    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCa;

    #[test]
    fn files_that_cannot_serve_tls_are_named_with_what_is_wrong() {
        let (ca, other) = (TestCa::new("a"), TestCa::new("b"));
        let good = ca.server();
        assert!(good.server_config().is_ok());

        let no_cert = TlsFiles::new(&good.key, &good.key).server_config().unwrap_err().to_string();
        assert!(no_cert.contains("holds no PEM certificate"), "{no_cert}");
        let no_key = TlsFiles::new(&good.cert, &good.cert).server_config().unwrap_err().to_string();
        assert!(no_key.contains("holds no PEM private key"), "{no_key}");
        let missing = TlsFiles::new(good.cert.with_extension("gone"), &good.key).server_config().unwrap_err();
        assert!(missing.to_string().starts_with("cannot read the TLS certificate"), "{missing}");
        let mismatch = TlsFiles::new(&good.cert, other.server().key).server_config().unwrap_err().to_string();
        assert!(
            mismatch.contains("cannot serve TLS with certificate") && mismatch.contains("KeyMismatch"),
            "{mismatch}"
        );
    }
}
