//! HTTP serving shared by the explorer, the hub and the node API: plain HTTP (the default, for
//! a private network or behind a proxy that terminates TLS) or TLS with a certificate chain and
//! key from PEM files.
//!
//! ```no_run
//! # async fn demo(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
//! let tls = zgrid_serve::TlsFiles::new("cert.pem", "key.pem");
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let listener = zgrid_serve::Listener::tls(tcp, &tls)?;
//! println!("listening on {}", listener.url()?);
//! zgrid_serve::serve(listener, app, std::future::pending()).await?;
//! # Ok(()) }
//! ```

#[cfg(feature = "testing")]
pub mod testing;
mod tls;

use std::future::Future;
use std::net::SocketAddr;

pub use crate::tls::{TlsError, TlsFiles};

/// Where a server accepts connections: plain TCP, or TCP with a TLS handshake first.
pub enum Listener {
    /// Plain HTTP.
    Plain(tokio::net::TcpListener),
    /// HTTPS.
    Tls(tls::TlsListener),
}

impl Listener {
    /// Serve TLS on `tcp` with the certificate chain and key in `files`.
    pub fn tls(tcp: tokio::net::TcpListener, files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self::Tls(tls::TlsListener::new(tcp, files.server_config()?)))
    }

    /// Serve TLS on `tcp` as `config` says (for a server that checks client certificates).
    pub fn with_config(tcp: tokio::net::TcpListener, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        Self::Tls(tls::TlsListener::new(tcp, config))
    }

    /// Plain HTTP on `tcp`, or TLS when `files` is given.
    pub fn new(tcp: tokio::net::TcpListener, files: Option<&TlsFiles>) -> Result<Self, TlsError> {
        match files {
            Some(files) => Self::tls(tcp, files),
            None => Ok(Self::Plain(tcp)),
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Plain(_) => "http",
            Self::Tls(_) => "https",
        }
    }

    /// The address connections arrive at.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Self::Plain(l) => l.local_addr(),
            Self::Tls(l) => axum::serve::Listener::local_addr(l),
        }
    }

    /// `scheme://address`, e.g. `https://127.0.0.1:8443`.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!("{}://{}", self.scheme(), self.local_addr()?))
    }
}

impl From<tokio::net::TcpListener> for Listener {
    fn from(tcp: tokio::net::TcpListener) -> Self {
        Self::Plain(tcp)
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then wait for open requests to end.
pub async fn serve(
    listener: Listener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match listener {
        Listener::Plain(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
        Listener::Tls(l) => axum::serve(l, app).with_graceful_shutdown(shutdown).await,
    }
}
