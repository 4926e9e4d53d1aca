//! `zgrid explorer`: serve the explorer until SIGINT or SIGTERM.

use anyhow::{Context, Result};
use zgrid_explorer::{AppState, Config};

use crate::args::ExplorerArgs;

pub async fn run(a: ExplorerArgs) -> Result<()> {
    let state = AppState::open(Config::new(&a.db)).await.with_context(|| format!("cannot open database {}", a.db))?;
    let listener =
        tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, db = %a.db, "explorer ready");
    // Scripts and tests wait for this line.
    println!("explorer listening on http://{addr}");
    zgrid_explorer::run(listener, state, shutdown_signal()).await.context("explorer stopped with an error")
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
