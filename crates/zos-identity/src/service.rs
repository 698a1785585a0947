//! identityd's bus objects: `identityd.manager@0.0.1` ([`IdentityManager`]) and `identityd.monitor@0.0.1`
//! ([`VersionMonitor`]), served by one [`IdentityService`].
//!
//! Every method is answered from memory, except `Farm`, which asks the registrar gateway (registrar_light) once
//! and caches a non-empty name. Calls run concurrently (the server has several workers), so a slow `Farm`
//! lookup never holds up `Sign`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use zos_api::bus::{self, CallError, StreamSink};
use zos_api::identity::{IdentityManager, VersionMonitor};
use zos_api::registrar::RegistrarGatewayClient;
use zos_types::{Bytes, Version};

use crate::error::CryptoError;
use crate::key::NodeKey;
use crate::version::VersionSource;

/// The time source of `RegistrarAuth` (injectable for tests).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How often the version stream re-sends the version even when it did not change.
pub const VERSION_PERIOD: Duration = Duration::from_secs(10);
/// How often the version stream looks for a change.
const VERSION_POLL: Duration = Duration::from_secs(1);
/// How long `Farm` waits for the registrar gateway.
pub const GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the service needs besides the key.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The farm (kernel `farmer_id`); `None` for an orphan node.
    pub farm_id: Option<u32>,
    /// The farm secret (kernel `secret`).
    pub farm_secret: String,
    /// Where the running version comes from.
    pub version: VersionSource,
}

/// The implementation of both identityd objects.
pub struct IdentityService {
    key: NodeKey,
    settings: Settings,
    bus: bus::Client,
    gateway_timeout: Duration,
    farm_name: Mutex<Option<String>>,
    clock: Clock,
}

impl IdentityService {
    /// A service for `key`; `bus` reaches the registrar gateway for `Farm`.
    pub fn new(key: NodeKey, settings: Settings, bus: bus::Client) -> IdentityService {
        IdentityService {
            key,
            settings,
            bus,
            gateway_timeout: GATEWAY_TIMEOUT,
            farm_name: Mutex::new(None),
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Use another clock for `RegistrarAuth`.
    pub fn with_clock(mut self, clock: Clock) -> IdentityService {
        self.clock = clock;
        self
    }

    /// Wait at most `timeout` for the registrar gateway.
    pub fn with_gateway_timeout(mut self, timeout: Duration) -> IdentityService {
        self.gateway_timeout = timeout;
        self
    }

    /// The node key (for the daemon's start-up log).
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    fn unix_now(&self) -> i64 {
        match (self.clock)().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}

/// The bus error of a refused crypto operation.
fn crypto_error(op: &str, e: CryptoError) -> CallError {
    let kind = match e {
        CryptoError::Seal(_) => "internal",
        _ => "invalid_input",
    };
    CallError::with_kind(kind, format!("{op}: {e}"))
}

impl IdentityManager for IdentityService {
    async fn store_kind(&self) -> Result<String, CallError> {
        Ok("file-store".to_string())
    }

    async fn node_id(&self) -> Result<String, CallError> {
        Ok(self.key.node_id())
    }

    async fn farm_id(&self) -> Result<u32, CallError> {
        self.settings.farm_id.ok_or_else(|| {
            CallError::with_kind(
                "not_found",
                "this node has no farm: farmer_id is not on the kernel command line",
            )
        })
    }

    async fn farm(&self) -> Result<String, CallError> {
        if let Some(name) = self
            .farm_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(name);
        }
        let id = self.farm_id().await?;
        let gateway =
            RegistrarGatewayClient::new(self.bus.clone()).with_timeout(self.gateway_timeout);
        match gateway.get_farm(u64::from(id)).await {
            Ok(farm) => {
                if !farm.farm_name.is_empty() {
                    *self.farm_name.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(farm.farm_name.clone());
                }
                Ok(farm.farm_name)
            }
            Err(bus::Error::Call { message, kind }) => Err(CallError {
                message: format!("farm {id}: the registrar gateway answered: {message}"),
                kind,
            }),
            Err(
                e @ (bus::Error::NoServer { .. }
                | bus::Error::Timeout { .. }
                | bus::Error::Broker { .. }),
            ) => Err(CallError::with_kind(
                "unavailable",
                format!(
                    "farm {id}: the registrar gateway (registrar_light) is not available, try again later: {e}"
                ),
            )),
            Err(e) => Err(CallError::with_kind(
                "internal",
                format!("farm {id}: asking the registrar gateway: {e}"),
            )),
        }
    }

    async fn farm_secret(&self) -> Result<String, CallError> {
        Ok(self.settings.farm_secret.clone())
    }

    async fn public_key(&self) -> Result<Bytes, CallError> {
        Ok(Bytes(self.key.public_key().to_vec()))
    }

    async fn sign(&self, message: Bytes) -> Result<Bytes, CallError> {
        Ok(Bytes(self.key.sign(&message).to_vec()))
    }

    async fn verify(&self, message: Bytes, signature: Bytes) -> Result<(), CallError> {
        self.key
            .verify(&message, &signature)
            .map_err(|e| crypto_error("Verify", e))
    }

    async fn encrypt(&self, message: Bytes) -> Result<Bytes, CallError> {
        self.key
            .seal(&message)
            .map(Bytes)
            .map_err(|e| crypto_error("Encrypt", e))
    }

    async fn decrypt(&self, message: Bytes) -> Result<Bytes, CallError> {
        self.key
            .unseal(&message)
            .map(Bytes)
            .map_err(|e| crypto_error("Decrypt", e))
    }

    async fn encrypt_ecdh(&self, message: Bytes, peer: Bytes) -> Result<Bytes, CallError> {
        self.key
            .encrypt_ecdh(&message, &peer)
            .map(Bytes)
            .map_err(|e| crypto_error("EncryptECDH", e))
    }

    async fn decrypt_ecdh(&self, message: Bytes, peer: Bytes) -> Result<Bytes, CallError> {
        self.key
            .decrypt_ecdh(&message, &peer)
            .map(Bytes)
            .map_err(|e| crypto_error("DecryptECDH", e))
    }

    async fn registrar_auth(&self, twin: u64) -> Result<String, CallError> {
        if twin == 0 {
            return Err(CallError::with_kind(
                "invalid_input",
                "RegistrarAuth: twin 0 is not a twin id",
            ));
        }
        Ok(self.key.registrar_auth(twin, self.unix_now()))
    }

    async fn mycelium_key(&self) -> Result<Bytes, CallError> {
        Ok(Bytes(self.key.mycelium_secret().to_vec()))
    }
}

impl VersionMonitor for IdentityService {
    async fn get_version(&self) -> Result<Version, CallError> {
        Ok(self.settings.version.current())
    }

    /// Sent at start, within a second of a change, and every [`VERSION_PERIOD`].
    async fn version(&self, sink: StreamSink<Version>) {
        let mut last: Option<(Version, Instant)> = None;
        loop {
            let current = self.settings.version.current();
            let due = match &last {
                None => true,
                Some((v, at)) => *v != current || at.elapsed() >= VERSION_PERIOD,
            };
            if due {
                if last.as_ref().is_some_and(|(v, _)| *v != current) {
                    tracing::info!(version = %current, "running version changed");
                }
                sink.send(&current).await;
                last = Some((current, Instant::now()));
            }
            tokio::time::sleep(VERSION_POLL).await;
        }
    }
}
