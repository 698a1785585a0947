//! provisiond: `provision.provision@0.0.1` (deployments) and `provision.statistics@0.0.1` (capacity).

use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use zos_types::Unit;
use zos_types::go::nullable;

use crate::common::WorkloadId;

/// Go `json.RawMessage`: JSON text carried as `bin` on the bus, shown as JSON on the CLI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawJson(pub Vec<u8>);

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let v: serde_json::Value = if self.0.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&self.0).map_err(serde::ser::Error::custom)?
            };
            v.serialize(s)
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let v = serde_json::Value::deserialize(d)?;
            return Ok(RawJson(
                serde_json::to_vec(&v).map_err(serde::de::Error::custom)?,
            ));
        }
        Ok(RawJson(zos_types::Bytes::deserialize(d)?.0))
    }
}

/// Result of a workload operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// Unix seconds.
    #[serde(rename = "Created", default)]
    pub created: i64,
    /// `init`, `ok`, `error`, `deleted`, `paused`, `unchanged`.
    #[serde(rename = "State", default, deserialize_with = "nullable")]
    pub state: String,
    #[serde(rename = "Error", default, deserialize_with = "nullable")]
    pub error: String,
    #[serde(rename = "Data", default)]
    pub data: RawJson,
}

/// One workload of a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    #[serde(rename = "Version", default)]
    pub version: u32,
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "Type", default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(rename = "Data", default)]
    pub data: RawJson,
    #[serde(rename = "Metadata", default, deserialize_with = "nullable")]
    pub metadata: String,
    #[serde(rename = "Description", default, deserialize_with = "nullable")]
    pub description: String,
    #[serde(rename = "Result", default)]
    pub result: WorkloadResult,
}

/// A twin whose signature a deployment needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRequest {
    #[serde(rename = "TwinID", default)]
    pub twin_id: u32,
    #[serde(rename = "Required", default)]
    pub required: bool,
    #[serde(rename = "Weight", default)]
    pub weight: u64,
}

/// A signature over a deployment's challenge hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(rename = "TwinID", default)]
    pub twin_id: u32,
    /// Hex.
    #[serde(rename = "Signature", default, deserialize_with = "nullable")]
    pub signature: String,
    #[serde(rename = "SignatureType", default, deserialize_with = "nullable")]
    pub signature_type: String,
}

/// Who must sign a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRequirement {
    #[serde(rename = "Requests", default, deserialize_with = "nullable")]
    pub requests: Vec<SignatureRequest>,
    #[serde(rename = "WeightRequired", default)]
    pub weight_required: u64,
    #[serde(rename = "Signatures", default, deserialize_with = "nullable")]
    pub signatures: Vec<Signature>,
    #[serde(rename = "SignatureStyle", default, deserialize_with = "nullable")]
    pub signature_style: String,
}

/// A deployment: a signed, versioned set of workloads of one twin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    #[serde(rename = "Version", default)]
    pub version: u32,
    #[serde(rename = "TwinID", default)]
    pub twin_id: u32,
    #[serde(rename = "ContractID", default)]
    pub contract_id: u64,
    #[serde(rename = "Metadata", default, deserialize_with = "nullable")]
    pub metadata: String,
    #[serde(rename = "Description", default, deserialize_with = "nullable")]
    pub description: String,
    #[serde(rename = "Expiration", default)]
    pub expiration: i64,
    #[serde(rename = "SignatureRequirement", default)]
    pub signature_requirement: SignatureRequirement,
    #[serde(rename = "Workloads", default, deserialize_with = "nullable")]
    pub workloads: Vec<Workload>,
}

/// Capacity: CPUs, bytes of SSD, HDD and memory, public IPv4s.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    #[serde(rename = "CRU", default)]
    pub cru: u64,
    #[serde(rename = "SRU", default)]
    pub sru: Unit,
    #[serde(rename = "HRU", default)]
    pub hru: Unit,
    #[serde(rename = "MRU", default)]
    pub mru: Unit,
    #[serde(rename = "IPV4U", default)]
    pub ipv4u: u64,
}

/// Counters of user deployments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersCounters {
    #[serde(rename = "Deployments", default)]
    pub deployments: i64,
    #[serde(rename = "Workloads", default)]
    pub workloads: i64,
    #[serde(rename = "LastDeploymentTimestamp", default)]
    pub last_deployment_timestamp: i64,
}

/// Capacity counters of the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    #[serde(rename = "Total", default)]
    pub total: Capacity,
    #[serde(rename = "Used", default)]
    pub used: Capacity,
    #[serde(rename = "System", default)]
    pub system: Capacity,
    #[serde(rename = "Users", default)]
    pub users: UsersCounters,
    /// Go's spelling.
    #[serde(rename = "OpenConnecions", default)]
    pub open_connections: i64,
}

/// A GPU of the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "Vendor", default, deserialize_with = "nullable")]
    pub vendor: String,
    #[serde(rename = "Device", default, deserialize_with = "nullable")]
    pub device: String,
    #[serde(rename = "Contract", default)]
    pub contract: u64,
}

crate::contract! {
    /// Deployments and their workloads.
    object Provision, ProvisionClient, ProvisionContract = "provision", "provision", "0.0.1" {
        /// Tear down a failed workload, with the reason recorded.
        fn decommission_cached = "DecommissionCached" (id: WorkloadId, reason: String);
        /// A workload's state, and whether it exists.
        fn get_workload_status = "GetWorkloadStatus" (id: WorkloadId) -> (String, bool);
        /// Create (or, with `update`, update) a deployment of `twin`.
        fn create_or_update = "CreateOrUpdate" (twin: u32, deployment: Deployment, update: bool);
        /// A deployment.
        fn get = "Get" (twin: u32, contract: u64) -> Deployment;
        /// All deployments of a twin.
        fn list = "List" (twin: u32) -> Vec<Deployment>;
        /// The history of a deployment's workloads.
        fn changes = "Changes" (twin: u32, contract: u64) -> Vec<Workload>;
        /// Public IPs in use.
        fn list_public_ips = "ListPublicIPs" () -> Vec<String>;
        /// Private IPs of a twin's network in use.
        fn list_private_ips = "ListPrivateIPs" (twin: u32, network: String) -> Vec<String>;
    }
}

crate::contract! {
    /// Capacity of the node and how much is reserved.
    object Statistics, StatisticsClient, StatisticsContract = "provision", "statistics", "0.0.1" {
        /// Capacity reserved now.
        fn current = "Current" () -> Capacity;
        /// Total capacity.
        fn total = "Total" () -> Capacity;
        /// Number of active workloads.
        fn workloads = "Workloads" () -> i64;
        /// All counters.
        fn get_counters = "GetCounters" () -> Counters;
        /// GPUs of the node.
        fn list_gpus = "ListGPUs" () -> Vec<GpuInfo>;
    } streams {
        /// Reserved capacity, every 2 minutes.
        stream reserved_stream = "ReservedStream" -> Capacity;
    }
}
