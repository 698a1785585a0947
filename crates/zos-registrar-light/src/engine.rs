//! The registration state machine.
//!
//! Registration (until it succeeds, retried with capped exponential backoff, forever):
//! 1. preconditions: no `limited-cache` flag (storaged found no disk), `/dev/kvm` present (when required);
//! 2. the farm: kernel `farmer_id` (re-read each attempt), and the farm must exist on the registrar;
//! 3. the account of the node's key (identityd `PublicKey`), created when missing with a proof signed by
//!    identityd; its relays are brought to the configured ones;
//! 4. the node of that twin: registered when missing, else its node-owned fields compared and only the differing
//!    ones PATCHed (X-Auth signed by identityd).
//!
//! Once registered, independent schedules (created once, so none starves another; all cancellation-aware):
//! - every `account_check` (30 min): the account and the node still exist under the same ids;
//! - every `full_update` (24 h): the facts are gathered again (geoip too) and the record synced;
//! - when the watched interface changes: the record is synced;
//! - when storaged could not give the storage totals: they are asked again with backoff until it answers.
//!
//! The ids are never stored locally: at start and whenever the registrar answers 401/404 to them (a registrar
//! reset, an account deleted), they are re-derived from the registrar by the key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::{Instant, MissedTickBehavior};
use zos_grid::{ClientError, Location, RegistrarClient, UpdateAccountRequest};

use crate::backoff::Backoff;
use crate::facts::{Facts, Storage, StorageSource};
use crate::host::HostProbe;
use crate::netif::Netif;
use crate::signer::IdentitySigner;
use crate::state::{Ids, Shared};
use crate::{FarmSource, Schedule, error_chain};

/// What the state machine needs besides its collaborators.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Relays the node's account should carry.
    pub relays: Vec<String>,
    /// Where the farm id comes from.
    pub farm: FarmSource,
    /// The interface registered.
    pub interface: String,
    /// Where health flags are (`limited-cache`).
    pub flags_dir: PathBuf,
    /// `/dev/kvm`, when registration requires it.
    pub kvm_device: Option<PathBuf>,
    /// Intervals.
    pub schedule: Schedule,
}

/// The location as the geoip task last found it.
pub type LocationRx = watch::Receiver<Option<Location>>;

/// Why a step did not succeed, and what that means for the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Try again later (the registrar or identityd does not answer, the interface is not up yet, ...).
    Retry(String),
    /// Cannot proceed until something outside changes (orphan node, unknown farm, no disks, no KVM, the
    /// registrar rejecting the record); re-checked with the same backoff.
    Blocked(String),
    /// The registrar does not know the ids any more: derive them again.
    Lost(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Retry(m) | Failure::Blocked(m) | Failure::Lost(m) => m,
        }
    }
}

/// How a registrar error counts. `ids_in_use`: the call used our twin/node ids, so 401/404 means they are stale.
fn classify(what: &str, e: &ClientError, ids_in_use: bool) -> Failure {
    let message = format!("{what}: {}", error_chain(e));
    if e.is_retryable() || e.is_conflict() {
        Failure::Retry(message)
    } else if e.is_not_found() || e.is_unauthorized() {
        if ids_in_use {
            Failure::Lost(message)
        } else {
            Failure::Retry(message)
        }
    } else if matches!(e, ClientError::BadRequest { .. }) {
        Failure::Blocked(message)
    } else {
        Failure::Retry(message)
    }
}

/// What gathering the facts found worth reporting.
#[derive(Debug, Default)]
struct FactsOutcome {
    /// storaged did not answer: ask again later.
    storage_unknown: bool,
    notes: Vec<String>,
}

/// What a successful step left to do or to report.
#[derive(Debug, Default)]
struct Outcome {
    /// Set when the step gathered the facts (else the previous ones still hold).
    facts: Option<FactsOutcome>,
    /// Problems that did not stop the step (an account update that failed).
    notes: Vec<String>,
}

/// Work waiting to be done.
#[derive(Debug, Default)]
struct Pending {
    register: bool,
    account_check: bool,
    sync: bool,
}

impl Pending {
    fn any(&self) -> bool {
        self.register || self.account_check || self.sync
    }
}

/// The state machine and what it talks to.
pub struct Engine {
    cfg: EngineConfig,
    shared: Arc<Shared>,
    client: Arc<RegistrarClient>,
    signer: Arc<IdentitySigner>,
    storage: StorageSource,
    host: HostProbe,
    netif: Option<Netif>,
    location: LocationRx,
    geoip_refresh: Arc<Notify>,
    addresses: watch::Receiver<u64>,
    /// The farm of the last registration.
    farm_id: u64,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    /// A state machine; nothing happens until [`Engine::run`].
    pub fn new(
        cfg: EngineConfig,
        shared: Arc<Shared>,
        client: Arc<RegistrarClient>,
        signer: Arc<IdentitySigner>,
        storage: StorageSource,
        host: HostProbe,
        location: LocationRx,
        geoip_refresh: Arc<Notify>,
        addresses: watch::Receiver<u64>,
    ) -> Engine {
        Engine {
            cfg,
            shared,
            client,
            signer,
            storage,
            host,
            netif: None,
            location,
            geoip_refresh,
            addresses,
            farm_id: 0,
        }
    }

    /// Register, then keep the registration up to date, until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let s = self.cfg.schedule.clone();
        let mut ids: Option<Ids> = None;
        let mut pending = Pending {
            register: true,
            ..Default::default()
        };
        let mut backoff = Backoff::new(s.retry_min, s.retry_max);
        let mut storage_backoff = Backoff::new(s.retry_min, s.retry_max);
        let mut retry_at = Instant::now();
        let mut storage_retry_at: Option<Instant> = None;
        let mut last_failure: Option<String> = None;
        let mut fact_notes: Vec<String> = Vec::new();
        let mut account_tick = ticker(s.account_check);
        let mut update_tick = ticker(s.full_update);
        let shared = self.shared.clone();

        loop {
            if *stop.borrow() {
                return;
            }
            if pending.any() && Instant::now() >= retry_at {
                let result = tokio::select! {
                    r = self.step(&mut ids, &mut pending) => r,
                    _ = stop.changed() => return,
                };
                match result {
                    Ok(outcome) => {
                        backoff.reset();
                        if last_failure.take().is_some() {
                            tracing::info!("registrar record up to date again after failures");
                        }
                        if let Some(facts) = outcome.facts {
                            storage_retry_at = if facts.storage_unknown {
                                Some(Instant::now() + storage_backoff.next_delay())
                            } else {
                                storage_backoff.reset();
                                None
                            };
                            fact_notes = facts.notes;
                        }
                        let ids = ids.expect("a successful step leaves ids");
                        let reason = fact_notes
                            .iter()
                            .chain(&outcome.notes)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join("; ");
                        if let Err(e) = self.shared.set_registered(ids, reason) {
                            tracing::error!(error = %e, "registered, but the ids cannot be served");
                            self.shared.set_failed(e);
                        }
                    }
                    Err(failure) => {
                        let message = failure.message().to_string();
                        if last_failure.as_deref() != Some(message.as_str()) {
                            match (&failure, ids.is_some()) {
                                (Failure::Lost(_), _) => {
                                    tracing::warn!(reason = %message, "the registrar does not know the node's ids any more; registering again")
                                }
                                (Failure::Blocked(_), false) => {
                                    tracing::error!(reason = %message, "registration failed; re-checking with backoff")
                                }
                                (_, false) => {
                                    tracing::warn!(reason = %message, "registration not done yet; retrying with backoff")
                                }
                                (_, true) => {
                                    tracing::warn!(reason = %message, "updating the registrar record failed; retrying with backoff")
                                }
                            }
                            last_failure = Some(message.clone());
                        }
                        match failure {
                            Failure::Lost(m) => {
                                ids = None;
                                pending.register = true;
                                self.shared.set_in_progress(m);
                            }
                            Failure::Retry(m) if ids.is_none() => self.shared.set_in_progress(m),
                            Failure::Blocked(m) if ids.is_none() => self.shared.set_failed(m),
                            Failure::Retry(m) | Failure::Blocked(m) => self.shared.set_note(
                                format!("the last update of the registrar record failed: {m}"),
                            ),
                        }
                        retry_at = Instant::now() + backoff.next_delay();
                    }
                }
            }

            let retry_until = pending.any().then_some(retry_at);
            let retry_wait = async move {
                match retry_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let storage_until = storage_retry_at;
            let storage_wait = async move {
                match storage_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = retry_wait => {}
                _ = account_tick.tick() => {
                    if ids.is_some() {
                        tracing::debug!("scheduled account check");
                        pending.account_check = true;
                        if self.location.borrow().is_none() {
                            self.geoip_refresh.notify_one();
                        }
                    }
                }
                _ = update_tick.tick() => {
                    if ids.is_some() {
                        tracing::info!("scheduled full update of the registrar record");
                        pending.sync = true;
                        self.geoip_refresh.notify_one();
                    }
                }
                _ = storage_wait => {
                    storage_retry_at = None;
                    pending.sync = true;
                }
                changed = self.addresses.changed() => {
                    if changed.is_ok() {
                        tracing::info!(interface = %self.cfg.interface, "interface changed: updating the registration");
                        pending.sync = true;
                        retry_at = Instant::now();
                    } else {
                        // The watcher is gone (shutting down): stop listening to it.
                        self.addresses = watch::channel(0).1;
                    }
                }
                changed = self.location.changed() => {
                    if changed.is_ok() {
                        tracing::info!(location = ?*self.location.borrow(), "location found");
                        pending.sync = true;
                    } else {
                        self.location = watch::channel(None).1;
                    }
                }
                _ = shared.recheck_requested() => {
                    if ids.is_some() {
                        tracing::info!("the registrar refused the node's ids somewhere: checking them");
                        pending.account_check = true;
                        retry_at = Instant::now();
                    }
                }
            }
        }
    }

    /// Do the pending work. On success, `ids` are the node's.
    async fn step(
        &mut self,
        ids: &mut Option<Ids>,
        pending: &mut Pending,
    ) -> Result<Outcome, Failure> {
        let current = match *ids {
            Some(i) if !pending.register => i,
            _ => {
                *ids = None;
                let (new_ids, outcome) = self.register().await?;
                *ids = Some(new_ids);
                *pending = Pending::default();
                return Ok(outcome);
            }
        };
        let mut outcome = Outcome::default();
        if pending.account_check {
            outcome.notes = self.account_check(current).await?;
            pending.account_check = false;
        }
        if pending.sync {
            outcome.facts = Some(self.sync(current).await?);
            pending.sync = false;
        }
        Ok(outcome)
    }

    fn preconditions(&self) -> Result<(), Failure> {
        if zos_config::paths::has_flag(&self.cfg.flags_dir, zos_config::paths::FLAG_LIMITED_CACHE) {
            return Err(Failure::Blocked(format!(
                "no disks: the {} flag is set in {} (storaged found no disk for the cache); waiting for it to clear",
                zos_config::paths::FLAG_LIMITED_CACHE,
                self.cfg.flags_dir.display()
            )));
        }
        if let Some(kvm) = &self.cfg.kvm_device
            && !kvm.exists()
        {
            return Err(Failure::Blocked(format!(
                "virtualization is not enabled: {} is missing; enable virtualization in the BIOS",
                kvm.display()
            )));
        }
        Ok(())
    }

    fn farm(&self) -> Result<u64, Failure> {
        match self.cfg.farm.get() {
            Err(e) => Err(Failure::Blocked(format!("reading the farm id: {e}"))),
            Ok(None) => Err(Failure::Blocked(
                "this node has no farm: farmer_id is not on the kernel command line".into(),
            )),
            Ok(Some(0)) => Err(Failure::Blocked(
                "farmer_id=0 on the kernel command line is not a farm".into(),
            )),
            Ok(Some(id)) => Ok(u64::from(id)),
        }
    }

    async fn public_key(&self) -> Result<[u8; 32], Failure> {
        self.signer
            .refresh_public_key()
            .await
            .map_err(|e| Failure::Retry(format!("identityd is not answering: {e}")))
    }

    /// Bring the account's relays to the configured ones (best effort: a note when it fails).
    async fn update_relays(&self, account: &zos_grid::Account, notes: &mut Vec<String>) {
        if account.relays == self.cfg.relays {
            return;
        }
        let update = UpdateAccountRequest {
            relays: Some(self.cfg.relays.clone()),
            rmb_enc_key: None,
        };
        match self.client.update_account(account.twin_id, &update).await {
            Ok(()) => {
                tracing::info!(twin = account.twin_id, relays = ?self.cfg.relays, "account relays updated")
            }
            Err(e) => {
                let m = format!("updating the account's relays: {}", error_chain(&e));
                tracing::warn!("{m}");
                notes.push(m);
            }
        }
    }

    async fn facts(&mut self) -> Result<(Facts, Vec<String>), Failure> {
        let mut notes = Vec::new();
        if self.netif.is_none() {
            self.netif =
                Some(Netif::new().map_err(|e| {
                    Failure::Retry(format!("reading interfaces: {}", error_chain(&e)))
                })?);
        }
        let netif = self.netif.as_ref().expect("set above");
        let interface = netif.read(&self.cfg.interface).await.map_err(|e| {
            Failure::Retry(format!("reading the node's interface: {}", error_chain(&e)))
        })?;
        let mru = self
            .host
            .memory_total()
            .map_err(|e| Failure::Retry(format!("total memory: {}", error_chain(&e))))?;
        let (storage, note) = self.storage.totals().await;
        if let Some(n) = note {
            notes.push(format!("{n}; asking again later"));
        }
        let location = self.location.borrow().clone();
        let facts = Facts {
            cru: self.host.cpu_count(),
            mru,
            storage,
            location,
            interface,
            secure_boot: self.host.secure_boot(),
            virtualized: self.host.virtualized(),
            serial_number: self.host.serial_number(),
        };
        tracing::debug!(?facts, "node facts");
        Ok((facts, notes))
    }

    async fn register(&mut self) -> Result<(Ids, Outcome), Failure> {
        self.preconditions()?;
        let farm_id = self.farm()?;
        let public_key = self.public_key().await?;
        let url = self.client.base_url().to_string();
        match self.client.get_farm(farm_id).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Err(Failure::Blocked(format!(
                    "farm {farm_id} (kernel farmer_id) does not exist on the registrar {url}"
                )));
            }
            Err(e) => return Err(classify(&format!("farm {farm_id}"), &e, false)),
        }
        let account = self
            .client
            .ensure_account(&self.cfg.relays, "")
            .await
            .map_err(|e| classify("finding or creating the node's account", &e, false))?;
        if account.public_key != zos_types::go::base64_encode(&public_key) {
            return Err(Failure::Retry(format!(
                "the registrar gave account {} of another key",
                account.twin_id
            )));
        }
        let twin_id = account.twin_id;
        tracing::info!(twin = twin_id, "the node's account");
        let mut account_notes = Vec::new();
        self.update_relays(&account, &mut account_notes).await;
        let (facts, notes) = self.facts().await?;
        let existing = self
            .client
            .get_node_by_twin(twin_id)
            .await
            .map_err(|e| classify(&format!("the node of twin {twin_id}"), &e, false))?;
        let node_id = match existing {
            None => {
                let reg = facts.registration(twin_id, farm_id);
                let node_id = self.client.register_node(&reg).await.map_err(|e| {
                    if e.is_not_found() {
                        Failure::Blocked(format!(
                            "registering the node on farm {farm_id}: {}",
                            error_chain(&e)
                        ))
                    } else {
                        classify("registering the node", &e, false)
                    }
                })?;
                tracing::info!(
                    twin = twin_id,
                    node = node_id,
                    farm = farm_id,
                    "node registered"
                );
                node_id
            }
            Some(node) => {
                let desired = facts.desired(farm_id, &node);
                if let Some(patch) = desired.diff(&node.info()) {
                    tracing::info!(node = node.node_id, ?patch, "updating the node's record");
                    self.client
                        .update_node(twin_id, node.node_id, &patch)
                        .await
                        .map_err(|e| {
                            classify(&format!("updating node {}", node.node_id), &e, false)
                        })?;
                }
                tracing::info!(
                    twin = twin_id,
                    node = node.node_id,
                    farm = farm_id,
                    "node found on the registrar"
                );
                node.node_id
            }
        };
        self.farm_id = farm_id;
        Ok((
            Ids { twin_id, node_id },
            Outcome {
                facts: Some(FactsOutcome {
                    storage_unknown: facts.storage == Storage::Unknown,
                    notes,
                }),
                notes: account_notes,
            },
        ))
    }

    async fn account_check(&mut self, ids: Ids) -> Result<Vec<String>, Failure> {
        let public_key = self.public_key().await?;
        let account = match self.client.get_account_by_public_key(&public_key).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => {
                return Err(Failure::Lost(
                    "the registrar has no account for the node's key any more (was it reset?)"
                        .into(),
                ));
            }
            Err(e) => return Err(classify("the node's account", &e, true)),
        };
        if account.twin_id != ids.twin_id {
            return Err(Failure::Lost(format!(
                "the node's account is twin {} on the registrar, not twin {}",
                account.twin_id, ids.twin_id
            )));
        }
        let mut notes = Vec::new();
        self.update_relays(&account, &mut notes).await;
        let node = match self.client.get_node(ids.node_id).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => {
                return Err(Failure::Lost(format!(
                    "node {} is gone from the registrar",
                    ids.node_id
                )));
            }
            Err(e) => return Err(classify(&format!("node {}", ids.node_id), &e, true)),
        };
        if node.twin_id != ids.twin_id {
            return Err(Failure::Lost(format!(
                "node {} belongs to twin {} on the registrar, not to twin {}",
                ids.node_id, node.twin_id, ids.twin_id
            )));
        }
        Ok(notes)
    }

    async fn sync(&mut self, ids: Ids) -> Result<FactsOutcome, Failure> {
        let (facts, notes) = self.facts().await?;
        let current = match self.client.get_node(ids.node_id).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => {
                return Err(Failure::Lost(format!(
                    "node {} is gone from the registrar",
                    ids.node_id
                )));
            }
            Err(e) => return Err(classify(&format!("node {}", ids.node_id), &e, true)),
        };
        if current.twin_id != ids.twin_id {
            return Err(Failure::Lost(format!(
                "node {} belongs to twin {} on the registrar, not to twin {}",
                ids.node_id, current.twin_id, ids.twin_id
            )));
        }
        let desired = facts.desired(self.farm_id, &current);
        match desired.diff(&current.info()) {
            None => tracing::debug!(node = ids.node_id, "the registrar record is up to date"),
            Some(patch) => {
                tracing::info!(node = ids.node_id, ?patch, "updating the node's record");
                self.client
                    .update_node(ids.twin_id, ids.node_id, &patch)
                    .await
                    .map_err(|e| classify(&format!("updating node {}", ids.node_id), &e, true))?;
            }
        }
        Ok(FactsOutcome {
            storage_unknown: facts.storage == Storage::Unknown,
            notes,
        })
    }
}

/// An interval whose first tick is one period from now and that does not burst after a stall.
fn ticker(period: Duration) -> tokio::time::Interval {
    let period = period.max(Duration::from_millis(10));
    let mut t = tokio::time::interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// The geoip task: fetch the location now and whenever `refresh` is notified; publish it when it changes.
pub async fn geoip_task(
    geoip: crate::geoip::Geoip,
    refresh: Arc<Notify>,
    location: watch::Sender<Option<Location>>,
    mut stop: watch::Receiver<bool>,
) {
    if !geoip.is_configured() {
        tracing::info!("no geoip service configured: the node's location stays unknown");
        return;
    }
    let mut failing = false;
    loop {
        let result = tokio::select! {
            r = geoip.fetch() => r,
            _ = stop.changed() => return,
        };
        match result {
            Ok(loc) => {
                if failing {
                    tracing::info!("geoip answers again");
                    failing = false;
                }
                location.send_if_modified(|l| {
                    if l.as_ref() == Some(&loc) {
                        false
                    } else {
                        *l = Some(loc);
                        true
                    }
                });
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "location unknown (registration goes on without it)");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = refresh.notified() => {}
            _ = stop.changed() => return,
        }
    }
}
