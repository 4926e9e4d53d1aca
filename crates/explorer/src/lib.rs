//! The zgrid explorer: the directory of users, farms and nodes, the ledger of owner-signed
//! workloads and node-signed results, and the feed that streams each node its desired set.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let state = zgrid_explorer::AppState::open(zgrid_explorer::Config::new("explorer.sqlite")).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! zgrid_explorer::run(listener, state, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod auth;
mod cockpit;
pub mod db;
mod error;
mod expiry;
mod extract;
mod feed;
mod openapi;
mod routes;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub use crate::db::Db;
pub use crate::feed::{Feed, Subscription};

/// Explorer settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `postgres://...`, `sqlite:...`, or a path to an SQLite file (created if missing).
    pub database: String,
    /// How far a request's timestamp may be from the explorer's clock, in seconds.
    pub request_window_secs: i64,
    /// A node that reported within this many seconds counts as alive.
    pub alive_after_secs: i64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How often expired workloads are removed from desired sets.
    pub expiry_interval: Duration,
}

impl Config {
    /// Defaults with the given database.
    pub fn new(database: impl Into<String>) -> Self {
        Self {
            database: database.into(),
            request_window_secs: 300,
            alive_after_secs: 180,
            max_body_bytes: 1 << 20,
            expiry_interval: Duration::from_secs(1),
        }
    }
}

/// Shared state of the running explorer.
#[derive(Clone)]
pub struct AppState {
    /// Storage.
    pub db: Db,
    /// Settings.
    pub config: Arc<Config>,
    /// Change notification for node feeds.
    pub feed: Feed,
}

impl AppState {
    /// Open the database (creating or migrating the schema). On PostgreSQL, also start
    /// listening for the changes other explorer processes on the same database accept
    /// ([`Feed::listen_postgres`]), until [`Feed::close`].
    pub async fn open(config: Config) -> Result<Self, db::DbError> {
        let db = Db::open(&config.database).await?;
        let feed = Feed::default();
        if db.backend() == db::Backend::Postgres {
            feed.listen_postgres(db::database_url(&config.database));
        }
        Ok(Self { db, config: Arc::new(config), feed })
    }

    /// The oldest last-seen time that still counts as alive.
    pub(crate) fn alive_since(&self) -> i64 {
        zgrid_types::unix_now() - self.config.alive_after_secs
    }
}

/// The HTTP application: the API under `/v1`, its OpenAPI document, and the cockpit.
pub fn app(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let (router, api) = openapi::routes();
    let api = Arc::new(api);
    router
        .route("/openapi.json", axum::routing::get(move || async move { axum::Json(api.as_ref().clone()) }))
        .merge(cockpit::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), cockpit::touch_on_change))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serve on `listener` (a [`tokio::net::TcpListener`] for plain HTTP, or a [`zgrid_serve::Listener`] for
/// TLS) until `shutdown` resolves, expiring workloads in the background.
pub async fn run(
    listener: impl Into<zgrid_serve::Listener>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper = tokio::spawn(expiry::run(state.clone()));
    let feed = state.feed.clone();
    let shutdown = async move {
        shutdown.await;
        // Open feed streams never end by themselves; end them so shutdown can finish.
        feed.close();
    };
    let served = zgrid_serve::serve(listener.into(), app(state.clone()), shutdown).await;
    sweeper.abort();
    state.db.close().await;
    served
}
