//! `api-gateway.api-gateway@0.0.1`: the one door to the grid registrar for every other daemon. Reads are
//! passed through; the uptime report is signed as this node (through identityd) with the ids the state
//! machine keeps; `GetTime` is the registrar's clock (its HTTP `Date`), not ours.

use std::sync::Arc;
use std::time::Duration;

use zos_api::bus::CallError;
use zos_api::registrar as api;
use zos_grid::{ClientError, NodeFilter, RegistrarClient};
use zos_types::{Bytes, GoTime};

use crate::state::Shared;

/// Largest page asked of the registrar when listing a farm's nodes.
const PAGE: u64 = 100;
/// Pages read at most when listing (100 000 nodes).
const MAX_PAGES: u64 = 1000;

/// The gateway object.
pub struct Gateway {
    client: Arc<RegistrarClient>,
    shared: Arc<Shared>,
    http: reqwest::Client,
}

impl Gateway {
    /// A gateway over `client`, reporting uptime with the ids in `shared`.
    pub fn new(client: Arc<RegistrarClient>, shared: Arc<Shared>) -> Gateway {
        zos_grid::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Gateway {
            client,
            shared,
            http,
        }
    }
}

/// A registrar error as a bus error: `not_found` (404), `conflict` (409), `invalid_input` (other 4xx),
/// `unavailable` (no answer, 5xx, 429, identityd not signing), `internal` (an answer we cannot read).
pub fn call_error(what: &str, e: &ClientError) -> CallError {
    let kind = match e {
        ClientError::NotFound { .. } => "not_found",
        ClientError::Conflict { .. } => "conflict",
        _ if e.is_retryable() => "unavailable",
        ClientError::BadRequest { .. } => "invalid_input",
        ClientError::Unauthorized { .. } => "unavailable",
        _ => "internal",
    };
    CallError::with_kind(kind, format!("{what}: {}", crate::error_chain(e)))
}

fn account(a: zos_grid::Account) -> api::Account {
    api::Account {
        twin_id: a.twin_id,
        relays: a.relays,
        rmb_enc_key: a.rmb_enc_key,
        public_key: a.public_key,
    }
}

fn farm(f: zos_grid::Farm) -> api::Farm {
    api::Farm {
        farm_id: f.farm_id,
        farm_name: f.farm_name,
        twin_id: f.twin_id,
        dedicated: f.dedicated,
        stellar_address: f.stellar_address,
    }
}

/// The bus form of a registrar node.
pub fn node(n: zos_grid::Node) -> api::Node {
    api::Node {
        node_id: n.node_id,
        farm_id: n.farm_id,
        twin_id: n.twin_id,
        location: api::Location {
            country: n.location.country,
            city: n.location.city,
            longitude: n.location.longitude,
            latitude: n.location.latitude,
        },
        resources: api::Resources {
            hru: n.resources.hru,
            sru: n.resources.sru,
            cru: n.resources.cru,
            mru: n.resources.mru,
        },
        interfaces: n
            .interfaces
            .into_iter()
            .map(|i| api::NodeInterface {
                name: i.name,
                mac: i.mac,
                ips: i.ips,
            })
            .collect(),
        secure_boot: n.secure_boot,
        virtualized: n.virtualized,
        serial_number: n.serial_number,
        online: n.online,
        approved: n.approved,
    }
}

impl api::RegistrarGateway for Gateway {
    async fn get_zos_version(&self) -> Result<api::ZosVersion, CallError> {
        let v = self
            .client
            .get_zos_version()
            .await
            .map_err(|e| call_error("zos version", &e))?;
        Ok(api::ZosVersion {
            version: v.version,
            safe_to_upgrade: v.safe_to_upgrade,
        })
    }

    async fn get_farm(&self, id: u64) -> Result<api::Farm, CallError> {
        self.client
            .get_farm(id)
            .await
            .map(farm)
            .map_err(|e| call_error(&format!("farm {id}"), &e))
    }

    async fn get_twin(&self, id: u64) -> Result<api::Account, CallError> {
        self.client
            .get_account(id)
            .await
            .map(account)
            .map_err(|e| call_error(&format!("twin {id}"), &e))
    }

    async fn get_twin_by_pub_key(&self, public_key: Bytes) -> Result<u64, CallError> {
        let key: [u8; 32] = public_key.0.as_slice().try_into().map_err(|_| {
            CallError::with_kind(
                "invalid_input",
                format!("public key: expected 32 bytes, got {}", public_key.0.len()),
            )
        })?;
        self.client
            .get_account_by_public_key(&key)
            .await
            .map(|a| a.twin_id)
            .map_err(|e| call_error("twin of the public key", &e))
    }

    async fn get_node(&self, id: u64) -> Result<api::Node, CallError> {
        self.client
            .get_node(id)
            .await
            .map(node)
            .map_err(|e| call_error(&format!("node {id}"), &e))
    }

    async fn get_node_by_twin_id(&self, twin: u64) -> Result<api::Node, CallError> {
        match self.client.get_node_by_twin(twin).await {
            Ok(Some(n)) => Ok(node(n)),
            Ok(None) => Err(CallError::with_kind(
                "not_found",
                format!("node of twin {twin}: twin {twin} has no node"),
            )),
            Err(e) => Err(call_error(&format!("node of twin {twin}"), &e)),
        }
    }

    async fn get_nodes(&self, farm: u64) -> Result<Vec<u64>, CallError> {
        if farm == 0 {
            return Err(CallError::with_kind(
                "invalid_input",
                "nodes of farm 0: 0 is not a farm id",
            ));
        }
        let mut ids = Vec::new();
        for page in 1..=MAX_PAGES {
            let filter = NodeFilter {
                farm_id: Some(farm),
                page: Some(page),
                size: Some(PAGE),
                ..Default::default()
            };
            let nodes = self
                .client
                .list_nodes(&filter)
                .await
                .map_err(|e| call_error(&format!("nodes of farm {farm}"), &e))?;
            if nodes.is_empty() {
                break;
            }
            ids.extend(
                nodes
                    .iter()
                    .filter(|n| n.farm_id == farm)
                    .map(|n| n.node_id),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    async fn update_node_uptime_v2(&self, uptime: u64, timestamp: i64) -> Result<(), CallError> {
        let ids = self.shared.ids()?;
        match self
            .client
            .report_uptime(ids.twin_id, ids.node_id, uptime, timestamp)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() || e.is_unauthorized() => {
                // The registrar does not know these ids (any more): have the state machine re-resolve them.
                self.shared.request_recheck();
                Err(CallError::with_kind(
                    "unavailable",
                    format!(
                        "uptime of node {}: the registrar refused the node's ids, checking the registration again: {}",
                        ids.node_id,
                        crate::error_chain(&e)
                    ),
                ))
            }
            Err(e) => Err(call_error(&format!("uptime of node {}", ids.node_id), &e)),
        }
    }

    async fn get_time(&self) -> Result<GoTime, CallError> {
        let url = format!(
            "{}/zos/version",
            self.client.base_url().as_str().trim_end_matches('/')
        );
        let unavailable = |m: String| CallError::with_kind("unavailable", m);
        let resp = self.http.get(&url).send().await.map_err(|e| {
            unavailable(format!(
                "registrar time: GET {url}: no answer: {}",
                crate::error_chain(&e)
            ))
        })?;
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .ok_or_else(|| unavailable(format!("registrar time: GET {url}: no Date header")))?;
        let text = date.to_str().unwrap_or("");
        let time = httpdate::parse_http_date(text).map_err(|_| {
            unavailable(format!(
                "registrar time: GET {url}: unreadable Date header {text:?}"
            ))
        })?;
        Ok(GoTime::from(time))
    }
}
