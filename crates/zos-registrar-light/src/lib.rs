//! registrar_light's library: the node's registration on the Grid v4 registrar, and the registrar gateway
//! every other daemon uses instead of speaking HTTP to the registrar itself.
//!
//! - [`engine`]: the registration state machine (find or create the account, register or update the node,
//!   keep the ids, re-derive them from the registrar when it forgets them) and its schedules (account check,
//!   daily full update, re-registration when the node's interface changes).
//! - [`state`]: the state (`in-progress` / `registered` / `failed` with the reason) and the bus object
//!   `registrar.registrar@0.0.1`.
//! - [`gateway`]: the bus object `api-gateway.api-gateway@0.0.1`.
//! - [`signer`]: signing through identityd (`PublicKey`, `Sign`): the node's private key never leaves it.
//! - [`facts`], [`host`], [`netif`], [`geoip`]: what the node reports (CPUs, memory, storage totals from
//!   storaged, interface, secure boot, virtualisation, serial number, location).
//!
//! [`run`] is the daemon: both bus objects are served at once (state "in progress"), and registration goes on
//! in the background until shutdown. Nothing is stored locally: the ids are re-derived from the registrar.

pub mod backoff;
pub mod engine;
pub mod error;
pub mod facts;
pub mod gateway;
pub mod geoip;
pub mod host;
pub mod netif;
pub mod signer;
pub mod state;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use zos_api::identity::IdentityManagerClient;
use zos_api::registrar::{RegistrarContract, RegistrarGatewayContract};
use zos_api::storage::StorageClient;
use zos_grid::{AuthMode, RegistrarClient};

pub use engine::{Engine, EngineConfig, Failure};
pub use error::{Error, HostError, NetError};
pub use gateway::Gateway;
pub use host::HostProbe;
pub use signer::IdentitySigner;
pub use state::{Ids, RegistrarObject, Shared};

/// The bus module of `registrar@0.0.1`.
pub const MODULE: &str = RegistrarContract::MODULE;
/// The bus module of `api-gateway@0.0.1`.
pub const GATEWAY_MODULE: &str = RegistrarGatewayContract::MODULE;

/// Where the farm id comes from. Re-read on every registration attempt, so an orphan node (no `farmer_id`)
/// is re-checked rather than failed for good.
#[derive(Clone)]
pub struct FarmSource(Arc<dyn Fn() -> Result<Option<u32>, String> + Send + Sync>);

impl FarmSource {
    /// Always `id`.
    pub fn fixed(id: Option<u32>) -> FarmSource {
        FarmSource(Arc::new(move || Ok(id)))
    }

    /// `farmer_id` of the kernel command line (`ZOS_CMDLINE` or `/proc/cmdline`), read each time.
    pub fn kernel_cmdline() -> FarmSource {
        FarmSource(Arc::new(|| {
            let cmdline = zos_config::Cmdline::load().map_err(|e| error_chain(&e))?;
            zos_config::KernelParams::from_cmdline(&cmdline)
                .map(|k| k.farm_id)
                .map_err(|e| error_chain(&e))
        }))
    }

    /// Any function.
    pub fn from_fn(
        f: impl Fn() -> Result<Option<u32>, String> + Send + Sync + 'static,
    ) -> FarmSource {
        FarmSource(Arc::new(f))
    }

    /// The farm id now (`None`: orphan).
    pub fn get(&self) -> Result<Option<u32>, String> {
        (self.0)()
    }
}

impl std::fmt::Debug for FarmSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FarmSource")
    }
}

/// The state machine's intervals and timeouts.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Check that the account and the node still exist (Zero-OS: 30 min).
    pub account_check: Duration,
    /// Gather everything again (geoip too) and sync the record (Zero-OS meant 24 h and never did it).
    pub full_update: Duration,
    /// First retry delay; doubles per failure.
    pub retry_min: Duration,
    /// Longest retry delay (Zero-OS: 2 min).
    pub retry_max: Duration,
    /// Re-read the interface this often even without netlink notifications.
    pub address_poll: Duration,
    /// Let a burst of netlink notifications settle this long before reading the interface.
    pub address_settle: Duration,
    /// Bound on each storaged call.
    pub storage_timeout: Duration,
    /// Bound on each geoip request.
    pub geoip_timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            account_check: Duration::from_secs(30 * 60),
            full_update: Duration::from_secs(24 * 60 * 60),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(120),
            address_poll: Duration::from_secs(60),
            address_settle: Duration::from_millis(500),
            storage_timeout: Duration::from_secs(3),
            geoip_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything the daemon needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The bus broker.
    pub broker: String,
    /// The registrar's base URL (`/api/v1` is appended).
    pub registrar_url: String,
    /// Which X-Auth header to send (`Auto`: the request-bound v2, v1 for a registrar that only takes v1).
    pub auth_mode: AuthMode,
    /// Relays the node's account carries.
    pub relays: Vec<String>,
    /// geoip services, tried in order (empty: the location stays unknown).
    pub geoip_urls: Vec<String>,
    /// The interface registered and watched (`zos`).
    pub interface: String,
    /// The farm.
    pub farm: FarmSource,
    /// Whether storaged runs on this node (else the storage totals are 0).
    pub storage_enabled: bool,
    /// Where health flags are (`/tmp/flags`).
    pub flags_dir: PathBuf,
    /// `/dev/kvm` when registration requires it.
    pub kvm_device: Option<PathBuf>,
    /// Where host facts are read.
    pub host: HostProbe,
    /// Intervals and timeouts.
    pub schedule: Schedule,
    /// Concurrent gateway calls.
    pub gateway_workers: usize,
}

impl Config {
    /// The daemon's configuration on a node: `[registrar]` of the node config, the kernel's `farmer_id`
    /// (re-read each attempt), storaged enabled or not.
    pub fn from_node_config(cfg: &zos_config::NodeConfig, flags_dir: &Path) -> Config {
        let r = &cfg.registrar;
        Config {
            broker: cfg.bus.broker.clone(),
            registrar_url: cfg.registrar_url(),
            auth_mode: AuthMode::Auto,
            relays: cfg.relays(),
            geoip_urls: r.geoip_urls.clone(),
            interface: r.interface.clone(),
            farm: FarmSource::kernel_cmdline(),
            storage_enabled: cfg.service_enabled("storaged"),
            flags_dir: flags_dir.to_path_buf(),
            kvm_device: r.require_kvm.then(|| PathBuf::from("/dev/kvm")),
            host: HostProbe::default(),
            schedule: Schedule {
                account_check: Duration::from_secs(r.account_check_secs),
                full_update: Duration::from_secs(r.update_secs),
                retry_max: Duration::from_secs(r.max_backoff_secs),
                ..Schedule::default()
            },
            gateway_workers: 8,
        }
    }

    /// Check what can be checked before starting; the error names the bad setting.
    pub fn validate(&self) -> Result<(), Error> {
        if self.interface.is_empty() {
            return Err(Error::Config("[registrar] interface is empty".into()));
        }
        for (name, d) in [
            (
                "[registrar] account_check_secs",
                self.schedule.account_check,
            ),
            ("[registrar] update_secs", self.schedule.full_update),
            ("[registrar] max_backoff_secs", self.schedule.retry_max),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        for url in &self.geoip_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "[registrar] geoip_urls: {url:?} is not an http(s) URL"
                )));
            }
        }
        Ok(())
    }
}

/// An error and its sources, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Serve `registrar.registrar@0.0.1` and `api-gateway.api-gateway@0.0.1` right away, register the node in the
/// background, keep the registration up to date; until `shutdown`.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    cfg.validate()?;
    let broker = zos_bus::Broker::parse(&cfg.broker).map_err(|source| Error::Broker {
        broker: cfg.broker.clone(),
        source,
    })?;
    let bus = zos_bus::Client::new(broker.clone());
    let signer = Arc::new(IdentitySigner::new(
        IdentityManagerClient::new(bus.clone()).with_timeout(Duration::from_secs(10)),
    ));
    let client = Arc::new(
        RegistrarClient::with_options(
            &cfg.registrar_url,
            signer.clone(),
            cfg.auth_mode,
            Arc::new(zos_grid::SystemClock),
        )
        .map_err(|source| Error::Registrar {
            url: cfg.registrar_url.clone(),
            source,
        })?,
    );
    let shared = Arc::new(Shared::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    let registrar_server = zos_bus::Server::new(MODULE, broker.clone())
        .concurrency(4)
        .register(RegistrarContract::server(Arc::new(RegistrarObject::new(
            shared.clone(),
        ))));
    let gateway_server = zos_bus::Server::new(GATEWAY_MODULE, broker)
        .concurrency(cfg.gateway_workers)
        .register(RegistrarGatewayContract::server(Arc::new(Gateway::new(
            client.clone(),
            shared.clone(),
        ))));
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let registrar_task = tokio::spawn(registrar_server.run(stopped(stop_rx.clone())));
    let gateway_task = tokio::spawn(gateway_server.run(stopped(stop_rx.clone())));

    // Location and interface watchers feed the state machine.
    let (location_tx, location_rx) = watch::channel(None);
    let geoip_refresh = Arc::new(Notify::new());
    let geoip = geoip::Geoip::new(cfg.geoip_urls.clone(), cfg.schedule.geoip_timeout);
    let geoip_task = tokio::spawn(engine::geoip_task(
        geoip,
        geoip_refresh.clone(),
        location_tx,
        stop_rx.clone(),
    ));
    let (addr_tx, addr_rx) = watch::channel(0u64);
    let watch_task = tokio::spawn(netif::watch_interface(
        cfg.interface.clone(),
        cfg.schedule.address_poll,
        cfg.schedule.address_settle,
        addr_tx,
        stop_rx.clone(),
    ));
    let storage = if cfg.storage_enabled {
        facts::StorageSource::Storaged(
            StorageClient::new(bus.clone()),
            cfg.schedule.storage_timeout,
        )
    } else {
        facts::StorageSource::Disabled
    };
    let engine = Engine::new(
        EngineConfig {
            relays: cfg.relays.clone(),
            farm: cfg.farm.clone(),
            interface: cfg.interface.clone(),
            flags_dir: cfg.flags_dir.clone(),
            kvm_device: cfg.kvm_device.clone(),
            schedule: cfg.schedule.clone(),
        },
        shared,
        client,
        signer,
        storage,
        cfg.host.clone(),
        location_rx,
        geoip_refresh,
        addr_rx,
    );
    tracing::info!(registrar = %cfg.registrar_url, interface = %cfg.interface, "registrar_light starting: serving the bus, registering in the background");
    let engine_task = tokio::spawn(engine.run(stop_rx));

    shutdown.await;
    tracing::info!("registrar_light stopping");
    let _ = stop_tx.send(true);
    let _ = engine_task.await;
    let _ = geoip_task.await;
    let _ = watch_task.await;
    let mut result = Ok(());
    for (module, task) in [(MODULE, registrar_task), (GATEWAY_MODULE, gateway_task)] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                if result.is_ok() {
                    result = Err(Error::Serve { module, source });
                }
            }
            Err(e) => tracing::error!(module, error = %e, "bus server task failed"),
        }
    }
    result
}
