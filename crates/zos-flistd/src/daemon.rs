//! The daemon: set up the root, bring the recorded mounts back in line (before serving), then serve
//! `flist.flist@0.0.1` with the periodic check of the mounts and the daily cache cleaner in the background.
//! On SIGTERM it stops serving and leaves every mount to its FUSE server.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zos_api::bus::{Broker, Client, Server};
use zos_api::flist::FlisterContract;
use zos_api::storage::StorageClient;
use zos_config::NodeConfig;

use crate::cleaner;
use crate::error::Error;
use crate::module::{FlistModule, HelperCommand, Options};
use crate::service::Service;

/// How often the mounts are checked (a FUSE server that died is replaced, a lost mount made again).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Everything the daemon needs.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Bus broker URL.
    pub broker: String,
    /// Concurrent bus calls.
    pub workers: usize,
    /// The module's options.
    pub module: Options,
    /// How often the mounts are checked.
    pub check_interval: Duration,
    /// How often the cache cleaner runs, and the age of blocks it deletes.
    pub clean_interval: Duration,
    pub clean_max_age: Duration,
    /// Deadline of calls to storaged.
    pub storage_timeout: Duration,
}

impl DaemonConfig {
    /// The daemon of a node: `[flist]`, `[hub]` and `[bus]` of its configuration, FUSE servers started with
    /// `helper`.
    pub fn from_node_config(cfg: &NodeConfig, helper: HelperCommand) -> DaemonConfig {
        let mut module = Options::new(&cfg.flist.root, helper);
        module.fallback_stores = fallback_stores(cfg);
        DaemonConfig {
            broker: cfg.bus.broker.clone(),
            workers: cfg.flist.workers.max(1),
            module,
            check_interval: CHECK_INTERVAL,
            clean_interval: cleaner::INTERVAL,
            clean_max_age: cleaner::MAX_AGE,
            storage_timeout: Duration::from_secs(60),
        }
    }
}

/// The stores tried when a flist's routes fail: `[flist] stores`, else the hub's `/blocks` (our hub serves
/// its block store there) and `[hub] storage`.
pub fn fallback_stores(cfg: &NodeConfig) -> Vec<String> {
    if !cfg.flist.stores.is_empty() {
        return cfg.flist.stores.clone();
    }
    let mut out = Vec::new();
    let hub = cfg.hub.url.trim_end_matches('/');
    if !hub.is_empty() {
        out.push(format!("{hub}/blocks"));
    }
    if !cfg.hub.storage.is_empty() {
        out.push(cfg.hub.storage.clone());
    }
    out
}

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("setting up {root}")]
    Init {
        root: PathBuf,
        #[source]
        source: Error,
    },
    #[error("the bus")]
    Bus(#[source] zos_bus::Error),
}

/// Run flistd until `shutdown` completes.
pub async fn run(cfg: DaemonConfig, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let broker = Broker::parse(&cfg.broker).map_err(DaemonError::Bus)?;
    let bus = Client::connect(&cfg.broker).map_err(DaemonError::Bus)?;
    let storage = StorageClient::new(bus).with_timeout(cfg.storage_timeout);
    let mut opts = cfg.module.clone();
    opts.fallback_stores
        .retain(|s| match crate::validate::check_store(s) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(store = %s, "ignoring a fallback store: {e}");
                false
            }
        });
    let root = opts.root.clone();
    let module = Arc::new(
        FlistModule::new(opts, storage).map_err(|source| DaemonError::Init { root, source })?,
    );
    module.clean_temp();
    let stats = module.reconcile().await;
    tracing::info!(root = %module.dirs().root.display(), ?stats, "mounts checked");

    let background = tokio::spawn(background(
        module.clone(),
        cfg.check_interval,
        cfg.clean_interval,
        cfg.clean_max_age,
    ));
    let server = Server::new(FlisterContract::MODULE, broker)
        .concurrency(cfg.workers)
        .register(FlisterContract::server(Arc::new(Service::new(
            module.clone(),
        ))));
    let result = server.run(shutdown).await.map_err(DaemonError::Bus);
    background.abort();
    tracing::info!("stopped; the mounts stay, served by their FUSE servers");
    result
}

async fn background(module: Arc<FlistModule>, check: Duration, clean: Duration, max_age: Duration) {
    let mut check = tokio::time::interval(check);
    let mut clean = tokio::time::interval(clean);
    check.tick().await;
    loop {
        tokio::select! {
            _ = check.tick() => {
                let stats = module.reconcile().await;
                if stats.remounted > 0 || stats.finished > 0 || stats.orphans > 0 {
                    tracing::info!(?stats, "mounts checked");
                }
            }
            _ = clean.tick() => {
                let m = module.clone();
                if let Ok(stats) = tokio::task::spawn_blocking(move || m.clean_cache(max_age)).await {
                    tracing::info!(removed = stats.removed, freed = stats.freed, kept = stats.kept,
                        errors = stats.errors, "cache cleaned");
                }
            }
        }
    }
}
