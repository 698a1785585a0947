//! The node identity: identityd's library.
//!
//! - [`keystore`]: the node's ed25519 seed in `<root>/seed.txt` (Zero-OS's versioned format), old formats
//!   upgraded in place, an atomic backup, recovery, and never a silent new identity.
//! - [`key`]: [`NodeKey`], every operation that needs the secret: sign, verify, sealed boxes, ECDH, the registrar
//!   `X-Auth` header, and the derived mycelium key.
//! - [`service`]: the bus objects `identityd.manager@0.0.1` and `identityd.monitor@0.0.1`
//!   (declared in [`zos_api::identity`]). **The private key never crosses the bus**: there is no `PrivateKey`
//!   method; daemons ask for operations instead.
//! - [`version`]: the running version, from the installed release (`/tmp/tag.info`).
//!
//! [`run`] is the daemon: load (or create) the key, then serve module `identityd` until shutdown.

pub mod error;
pub mod key;
pub mod keystore;
pub mod service;
pub mod version;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::{CryptoError, DaemonError, KeyStoreError};
pub use key::NodeKey;
pub use keystore::{KeySource, KeyStore};
pub use service::{IdentityService, Settings};
pub use version::VersionSource;

use zos_api::identity::{IdentityManagerClient, IdentityManagerContract, VersionMonitorContract};

/// The bus module identityd serves.
pub const MODULE: &str = "identityd";

/// How many bus calls identityd runs at once (every call but `Farm` is a few microseconds of CPU).
pub const DEFAULT_WORKERS: usize = 8;

/// Everything identityd needs to run.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Where `seed.txt` lives.
    pub root: PathBuf,
    /// The bus broker.
    pub broker: String,
    /// Where Go's legacy seed mirrors may be (`<dir>/*/seed.txt`, read-only); normally the pools' mount root.
    pub legacy_mirrors: Option<PathBuf>,
    /// The installed release's taglink.
    pub tag_info: PathBuf,
    /// The farm (kernel `farmer_id`).
    pub farm_id: Option<u32>,
    /// The farm secret (kernel `secret`).
    pub farm_secret: String,
    /// Concurrent bus calls.
    pub workers: usize,
}

impl DaemonConfig {
    /// The configuration of a node.
    pub fn from_node_config(cfg: &zos_config::NodeConfig) -> DaemonConfig {
        DaemonConfig {
            root: cfg.identity.root.clone(),
            broker: cfg.bus.broker.clone(),
            legacy_mirrors: Some(cfg.storage.mount_root.clone()),
            tag_info: PathBuf::from(zos_config::paths::TAG_INFO),
            farm_id: cfg.kernel.farm_id,
            farm_secret: cfg.kernel.farm_secret.clone(),
            workers: DEFAULT_WORKERS,
        }
    }
}

/// Load the node key, then serve `identityd.manager@0.0.1` and `identityd.monitor@0.0.1` until `shutdown`.
///
/// Fails (and writes nothing) when the key cannot be loaded or restored: the node never silently gets a new
/// identity.
pub async fn run(cfg: DaemonConfig, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let mut store = KeyStore::new(&cfg.root);
    if let Some(mirrors) = &cfg.legacy_mirrors {
        store = store.with_legacy_mirrors(mirrors);
    }
    let loaded = tokio::task::spawn_blocking(move || store.load_or_create())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    tracing::info!(node_id = %loaded.key.node_id(), source = ?loaded.source, "node key loaded");

    let broker = zos_bus::Broker::parse(&cfg.broker)?;
    let client = zos_bus::Client::new(broker.clone());
    let settings = Settings {
        farm_id: cfg.farm_id,
        farm_secret: cfg.farm_secret.clone(),
        version: VersionSource::new(&cfg.tag_info),
    };
    let service = Arc::new(IdentityService::new(loaded.key, settings, client));
    zos_bus::Server::new(MODULE, broker)
        .concurrency(cfg.workers)
        .register(IdentityManagerContract::server(service.clone()))
        .register(VersionMonitorContract::server(service))
        .run(shutdown)
        .await?;
    Ok(())
}

/// The node's public key as standard base64, asked of the running identityd (what `identityd --id` prints).
pub async fn public_key_base64(client: &IdentityManagerClient) -> Result<String, zos_bus::Error> {
    let key = client.public_key().await?;
    Ok(zos_types::go::base64_encode(&key))
}
