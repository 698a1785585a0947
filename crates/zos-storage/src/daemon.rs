//! The daemon: initialise the module, then serve the bus (only after initialisation, as Zero-OS does), with
//! the cache watcher and the hourly spin-down check in the background.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use zos_api::bus::{Broker, Server};
use zos_api::storage::StorageContract;

use crate::error::Error;
use crate::module::{Options, StorageModule};
use crate::service::Service;

/// How often the cache quota is reconsidered (as Zero-OS: 5 minutes).
pub const CACHE_CHECK_INTERVAL: Duration = Duration::from_secs(300);
/// How often idle rotating disks are spun down again (as Zero-OS: hourly).
pub const SPIN_DOWN_INTERVAL: Duration = Duration::from_secs(3600);

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("initialising storage")]
    Init(#[source] Error),
    #[error("the bus")]
    Bus(#[source] zos_bus::Error),
    #[error("the initialisation task died: {0}")]
    Task(String),
}

/// Initialise storage from `opts`, then serve `storage.storage@0.0.1` on `broker` with `workers` concurrent
/// calls until `shutdown` completes.
pub async fn run(
    opts: Options,
    broker: &str,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let broker = Broker::parse(broker).map_err(DaemonError::Bus)?;
    let module = tokio::task::spawn_blocking(move || StorageModule::init(opts))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?
        .map_err(DaemonError::Init)?;
    let module = Arc::new(module);
    tracing::info!(pools = module.pools().len(), broken_pools = module.broken_pools().len(),
        broken_devices = module.broken_devices().len(), cache = ?module.cache_state(), "storage initialised");

    let watcher = tokio::spawn(background(module.clone()));
    let server = Server::new(StorageContract::MODULE, broker)
        .concurrency(workers)
        .register(StorageContract::server(Arc::new(Service::new(module))));
    let result = server.run(shutdown).await.map_err(DaemonError::Bus);
    watcher.abort();
    result
}

async fn background(module: Arc<StorageModule>) {
    let mut cache = tokio::time::interval(CACHE_CHECK_INTERVAL);
    let mut spin = tokio::time::interval(SPIN_DOWN_INTERVAL);
    cache.tick().await;
    spin.tick().await;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cache.tick() => {
                let m = module.clone();
                match tokio::task::spawn_blocking(move || m.resize_cache()).await {
                    Ok(Err(e)) if !failing => {
                        tracing::warn!(error = %e.chain(), "cannot resize the cache; will retry");
                        failing = true;
                    }
                    Ok(Ok(_)) if failing => {
                        tracing::info!("cache resizing works again");
                        failing = false;
                    }
                    _ => {}
                }
            }
            _ = spin.tick() => {
                let m = module.clone();
                let _ = tokio::task::spawn_blocking(move || m.spin_down_idle_disks()).await;
            }
        }
    }
}
