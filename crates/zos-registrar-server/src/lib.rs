//! A Grid v4 node-registrar server: the HTTP API of the reference `node-registrar` (accounts, farms, nodes,
//! uptime reports, zos version; every route under `/api/v1` and `/v1`), stored in SQLite.
//!
//! Compatible with Go nodes and the Go client, with the reference server's weaknesses closed: X-Auth timestamps
//! bounded in both directions, replayed challenges refused, a request-bound v2 header (v1 still accepted),
//! 409/404 instead of 500 for client errors, PATCH semantics that can set `false` and touch only what is sent,
//! stable pagination, an online cutoff well above the report interval. See the README for every decision.
//!
//! ```ignore
//! let store = Arc::new(Store::open(":memory:")?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! serve(listener, store, ServerConfig::default(), Arc::new(SystemClock), shutdown).await?;
//! ```

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod store;

use std::future::Future;
use std::sync::Arc;

pub use api::{AppState, router};
pub use config::ServerConfig;
pub use store::{Store, StoreError};
use zos_grid::Clock;

/// Serve the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(AppState {
        store,
        config: Arc::new(config),
        clock,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
