//! registrar_light: `registrar.registrar@0.0.1` (this node's registration) and `api-gateway.api-gateway@0.0.1`
//! (the one door to the grid registrar for every other daemon; no other daemon speaks HTTP to it).
//!
//! Implemented by `zos-registrar-light` (daemon `registrar_light`), which serves both modules from one process
//! as soon as it starts (state `in-progress`) and registers in the background, retrying forever.
//!
//! Error kinds: `unavailable` (registration still in progress, the registrar not answering, identityd not
//! signing: try again later), `not_found` (registration failed for a reason that is re-checked, unknown ids),
//! `invalid_input` (bad arguments, a request the registrar refused), `conflict`, `internal`.

use serde::{Deserialize, Serialize};
use zos_types::go::nullable;
use zos_types::{Bytes, GoTime};

/// Where registration stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistrationPhase {
    /// Not registered yet (or the registrar forgot the node, e.g. after a reset); retrying with backoff.
    #[default]
    #[serde(rename = "in-progress")]
    InProgress,
    /// Registered: the ids are valid.
    #[serde(rename = "registered")]
    Registered,
    /// Registration cannot proceed until something outside changes (no `farmer_id`, a farm the registrar
    /// does not know, no disks, no `/dev/kvm`, the registrar refusing the record); re-checked with backoff.
    #[serde(rename = "failed")]
    Failed,
}

/// The registration state: phase, ids once registered, the reason of the last failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationState {
    #[serde(rename = "State", default)]
    pub phase: RegistrationPhase,
    #[serde(rename = "NodeID", default)]
    pub node_id: u32,
    #[serde(rename = "TwinID", default)]
    pub twin_id: u32,
    /// Why the last attempt failed (kept while retrying). When registered: empty, or what did not stop the
    /// registration (storaged not answering, the last update of the record failing).
    #[serde(rename = "Reason", default, deserialize_with = "nullable")]
    pub reason: String,
    /// When the node last registered or checked its record against the registrar.
    #[serde(rename = "Updated", default)]
    pub updated: GoTime,
}

crate::contract! {
    /// This node's registration on the grid registrar.
    object Registrar, RegistrarClient, RegistrarContract = "registrar", "registrar", "0.0.1" {
        /// The node id. Errors: `unavailable` "registration is still in progress (<reason>)", `not_found`
        /// "registration failed: <reason>".
        fn node_id = "NodeID" () -> u32;
        /// The twin id; the same errors as `NodeID`.
        fn twin_id = "TwinID" () -> u32;
        /// The registration state, whatever it is (never an error).
        fn state = "State" () -> RegistrationState;
    }
}

/// A grid account (twin).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde(rename = "TwinID", default)]
    pub twin_id: u64,
    #[serde(rename = "Relays", default, deserialize_with = "nullable")]
    pub relays: Vec<String>,
    #[serde(rename = "RMBEncKey", default, deserialize_with = "nullable")]
    pub rmb_enc_key: String,
    /// base64 of the 32-byte public key.
    #[serde(rename = "PublicKey", default, deserialize_with = "nullable")]
    pub public_key: String,
}

/// A farm.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Farm {
    #[serde(rename = "FarmID", default)]
    pub farm_id: u64,
    #[serde(rename = "FarmName", default, deserialize_with = "nullable")]
    pub farm_name: String,
    #[serde(rename = "TwinID", default)]
    pub twin_id: u64,
    #[serde(rename = "Dedicated", default)]
    pub dedicated: bool,
    #[serde(rename = "StellarAddress", default, deserialize_with = "nullable")]
    pub stellar_address: String,
}

/// Where a node is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    #[serde(rename = "Country", default, deserialize_with = "nullable")]
    pub country: String,
    #[serde(rename = "City", default, deserialize_with = "nullable")]
    pub city: String,
    #[serde(rename = "Longitude", default, deserialize_with = "nullable")]
    pub longitude: String,
    #[serde(rename = "Latitude", default, deserialize_with = "nullable")]
    pub latitude: String,
}

/// Total capacity of a node: CPUs and bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(rename = "HRU", default)]
    pub hru: u64,
    #[serde(rename = "SRU", default)]
    pub sru: u64,
    #[serde(rename = "CRU", default)]
    pub cru: u64,
    #[serde(rename = "MRU", default)]
    pub mru: u64,
}

/// A network interface of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInterface {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "Mac", default, deserialize_with = "nullable")]
    pub mac: String,
    #[serde(rename = "IPs", default, deserialize_with = "nullable")]
    pub ips: Vec<String>,
}

/// A node record of the registrar.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(rename = "NodeID", default)]
    pub node_id: u64,
    #[serde(rename = "FarmID", default)]
    pub farm_id: u64,
    #[serde(rename = "TwinID", default)]
    pub twin_id: u64,
    #[serde(rename = "Location", default)]
    pub location: Location,
    #[serde(rename = "Resources", default)]
    pub resources: Resources,
    #[serde(rename = "Interfaces", default, deserialize_with = "nullable")]
    pub interfaces: Vec<NodeInterface>,
    #[serde(rename = "SecureBoot", default)]
    pub secure_boot: bool,
    #[serde(rename = "Virtualized", default)]
    pub virtualized: bool,
    #[serde(rename = "SerialNumber", default, deserialize_with = "nullable")]
    pub serial_number: String,
    #[serde(rename = "Online", default)]
    pub online: bool,
    #[serde(rename = "Approved", default)]
    pub approved: bool,
}

/// The zos version the registrar publishes, and whether every farm may upgrade to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZosVersion {
    #[serde(rename = "Version", default, deserialize_with = "nullable")]
    pub version: String,
    #[serde(rename = "SafeToUpgrade", default)]
    pub safe_to_upgrade: bool,
}

crate::contract! {
    /// The grid registrar, reached through registrar_light, signing as this node.
    object RegistrarGateway, RegistrarGatewayClient, RegistrarGatewayContract = "api-gateway", "api-gateway", "0.0.1" {
        /// The published zos version (`Version` as the registrar publishes it, e.g. `v4.1.2`) and whether every
        /// farm may upgrade to it (`SafeToUpgrade`). For the upgrader.
        fn get_zos_version = "GetZosVersion" () -> ZosVersion;
        /// A farm by id (`not_found` when the registrar has none).
        fn get_farm = "GetFarm" (id: u64) -> Farm;
        /// An account by twin id (`not_found` when unknown).
        fn get_twin = "GetTwin" (id: u64) -> Account;
        /// The twin id of a 32-byte public key (`invalid_input` for another length, `not_found` when unknown).
        fn get_twin_by_pub_key = "GetTwinByPubKey" (public_key: Bytes) -> u64;
        /// A node by id (`not_found` when unknown).
        fn get_node = "GetNode" (id: u64) -> Node;
        /// The node of a twin (`not_found` when the twin has none).
        fn get_node_by_twin_id = "GetNodeByTwinID" (twin: u64) -> Node;
        /// The node ids of a farm, all pages, sorted (`invalid_input` for farm 0).
        fn get_nodes = "GetNodes" (farm: u64) -> Vec<u64>;
        /// Report this node's uptime (seconds since boot, ≥ 1) measured at `timestamp` (Unix seconds, within
        /// ±60 s of the registrar's clock), signed as this node with the ids registrar_light keeps. For powerd,
        /// every 40 min. `unavailable` while not registered, and when the registrar refuses the ids (it was
        /// reset): registrar_light then re-resolves them at once; report again later.
        fn update_node_uptime_v2 = "UpdateNodeUptimeV2" (uptime: u64, timestamp: i64);
        /// The registrar's clock (the `Date` of its answer, whole seconds), not the local one: what an NTP sanity
        /// check compares with. `unavailable` when the registrar does not answer.
        fn get_time = "GetTime" () -> GoTime;
    }
}
