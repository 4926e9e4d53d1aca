//! `zgrid explorer`: serve the explorer until SIGINT or SIGTERM.

use anyhow::{Context, Result};
use zgrid_explorer::{AppState, Config};

use crate::args::{ExplorerArgs, TlsArgs};

pub async fn run(a: ExplorerArgs) -> Result<()> {
    let state = AppState::open(Config::new(&a.db)).await.with_context(|| format!("cannot open database {}", a.db))?;
    let listener = listen(&a.listen, &a.tls).await?;
    let url = listener.url()?;
    tracing::info!(%url, db = %a.db, "explorer ready");
    // Scripts and tests wait for this line.
    println!("explorer listening on {url}");
    zgrid_explorer::run(listener, state, shutdown_signal()).await.context("explorer stopped with an error")
}

/// Listen on `address`, with TLS when `tls` names a certificate and key.
pub async fn listen(address: &str, tls: &TlsArgs) -> Result<zgrid_serve::Listener> {
    let tcp = tokio::net::TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
    Ok(zgrid_serve::Listener::new(tcp, tls.files().as_ref())?)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
