//! The registrar's JSON, as the real server emits and accepts it.
//!
//! Quirks kept on purpose: a node's interfaces are emitted under the capitalised key `Interfaces` (the Go model
//! has no json tag there) and accepted as both `Interfaces` and `interfaces`; an interface's `ips` is accepted as
//! a list or as the legacy `/`-joined string. Times are RFC 3339 with nanoseconds; a never-set time is Go's zero
//! time `0001-01-01T00:00:00Z` (and `null` is accepted for it).

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use zos_types::GoTime;

use crate::encoding::{b64_decode, b64_encode};

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A grid account (twin).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub twin_id: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub relays: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub rmb_enc_key: String,
    /// Standard padded base64 of the 32-byte public key.
    #[serde(default, deserialize_with = "null_default")]
    pub public_key: String,
    #[serde(default, deserialize_with = "null_default")]
    pub created_at: GoTime,
    #[serde(default, deserialize_with = "null_default")]
    pub updated_at: GoTime,
}

/// A farm.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Farm {
    pub farm_id: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub farm_name: String,
    pub twin_id: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub stellar_address: String,
    #[serde(default)]
    pub dedicated: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub created_at: GoTime,
    #[serde(default, deserialize_with = "null_default")]
    pub updated_at: GoTime,
}

/// Where a node is (all strings; latitude and longitude are decimal strings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    #[serde(default, deserialize_with = "null_default")]
    pub country: String,
    #[serde(default, deserialize_with = "null_default")]
    pub city: String,
    #[serde(default, deserialize_with = "null_default")]
    pub longitude: String,
    #[serde(default, deserialize_with = "null_default")]
    pub latitude: String,
}

/// Total capacity in raw units: `cru` logical CPUs, the others bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub hru: u64,
    #[serde(default)]
    pub sru: u64,
    #[serde(default)]
    pub cru: u64,
    #[serde(default)]
    pub mru: u64,
}

/// A network interface of a node: bare IPs, no prefix length.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub mac: String,
    #[serde(default, deserialize_with = "ips_list_or_string")]
    pub ips: Vec<String>,
}

/// `ips` as a list of strings, a legacy `"ip1/ip2"` string (empty string: none), or null.
pub fn ips_list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ips {
        List(Vec<String>),
        Joined(String),
        Null(()),
    }
    match Ips::deserialize(d).map_err(|_| {
        de::Error::custom("ips: expected a list of IP strings or a '/'-separated string")
    })? {
        Ips::List(v) => Ok(v),
        Ips::Joined(s) => Ok(s
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()),
        Ips::Null(()) => Ok(Vec::new()),
    }
}

/// A node record as the registrar serves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub node_id: u64,
    pub farm_id: u64,
    pub twin_id: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub location: Location,
    #[serde(default, deserialize_with = "null_default")]
    pub resources: Resources,
    /// Emitted as `Interfaces` like the real server; read from either spelling.
    #[serde(
        rename(serialize = "Interfaces"),
        alias = "Interfaces",
        default,
        deserialize_with = "null_default"
    )]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub secure_boot: bool,
    #[serde(default)]
    pub virtualized: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub serial_number: String,
    /// Go's zero time when the node never reported.
    #[serde(default, deserialize_with = "null_default")]
    pub last_seen: GoTime,
    #[serde(default)]
    pub online: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub created_at: GoTime,
    #[serde(default, deserialize_with = "null_default")]
    pub updated_at: GoTime,
    #[serde(default, alias = "Approved")]
    pub approved: bool,
}

impl Node {
    /// The fields a node owns and reports about itself.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            farm_id: self.farm_id,
            location: self.location.clone(),
            resources: self.resources,
            interfaces: self.interfaces.clone(),
            secure_boot: self.secure_boot,
            virtualized: self.virtualized,
            serial_number: self.serial_number.clone(),
        }
    }
}

/// What a node reports about itself: everything it owns in its registrar record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub farm_id: u64,
    pub location: Location,
    pub resources: Resources,
    pub interfaces: Vec<Interface>,
    pub secure_boot: bool,
    pub virtualized: bool,
    pub serial_number: String,
}

impl NodeInfo {
    /// The PATCH that turns `current` into `self`, touching only fields that differ (`None` when equal).
    pub fn diff(&self, current: &NodeInfo) -> Option<NodeUpdate> {
        let u = NodeUpdate {
            farm_id: (self.farm_id != current.farm_id).then_some(self.farm_id),
            location: (self.location != current.location).then(|| self.location.clone()),
            resources: (self.resources != current.resources).then_some(self.resources),
            interfaces: (self.interfaces != current.interfaces).then(|| self.interfaces.clone()),
            secure_boot: (self.secure_boot != current.secure_boot).then_some(self.secure_boot),
            virtualized: (self.virtualized != current.virtualized).then_some(self.virtualized),
            serial_number: (self.serial_number != current.serial_number)
                .then(|| self.serial_number.clone()),
        };
        (u != NodeUpdate::default()).then_some(u)
    }
}

/// `POST /nodes` body. Unknown fields are ignored, so a whole [`Node`] is accepted too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    pub twin_id: u64,
    pub farm_id: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub resources: Resources,
    #[serde(default, deserialize_with = "null_default")]
    pub location: Location,
    #[serde(alias = "Interfaces", default, deserialize_with = "null_default")]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub secure_boot: bool,
    #[serde(default)]
    pub virtualized: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub serial_number: String,
}

/// `PATCH /nodes/:id` body: only the fields present are changed (so `false` can be set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(alias = "Interfaces", default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<Interface>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualized: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
}

/// `POST /accounts` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAccountRequest {
    pub public_key: String,
    pub signature: String,
    pub timestamp: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub relays: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub rmb_enc_key: String,
}

/// `PATCH /accounts/:twin_id` body: only fields present are changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateAccountRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relays: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmb_enc_key: Option<String>,
}

/// `POST /farms` body (a client-supplied `farm_id` is ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateFarmRequest {
    pub farm_name: String,
    pub twin_id: u64,
    pub stellar_address: String,
    #[serde(default)]
    pub dedicated: bool,
}

/// `PATCH /farms/:id` body: only non-empty fields present are changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateFarmRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stellar_address: Option<String>,
}

/// `POST /nodes/:id/uptime` body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UptimeReportRequest {
    /// Seconds since boot (≥ 1).
    pub uptime: u64,
    /// Unix seconds when measured.
    pub timestamp: i64,
}

/// `PUT /zos/version` body: `version` is the base64 form of [`ZosVersion`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZosVersionRequest {
    pub version: String,
}

/// `{"farm_id": N}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarmCreated {
    pub farm_id: u64,
}

/// `{"node_id": N}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCreated {
    pub node_id: u64,
}

/// `{"message": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message: String,
}

/// Every error body: `{"error": "..."}`, plus the server's clock on timestamp errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_time: Option<i64>,
}

/// The published zos version and whether every farm may upgrade to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZosVersion {
    pub version: String,
    pub safe_to_upgrade: bool,
}

/// Why a zos version payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ZosVersionError {
    #[error("zos version is not valid base64")]
    Base64,
    #[error("zos version payload is not {{\"version\": string, \"safe_to_upgrade\": bool}}: {0}")]
    Json(#[source] serde_json::Error),
    #[error("zos version payload has an empty version")]
    EmptyVersion,
}

impl ZosVersion {
    /// The wire form: base64 of the compact JSON `{"version":"…","safe_to_upgrade":…}` (as the Go client).
    pub fn encode(&self) -> String {
        b64_encode(
            serde_json::to_string(self)
                .expect("serializing a ZosVersion")
                .as_bytes(),
        )
    }

    /// Read the wire form: base64 → replace `'` with `"` (legacy single-quoted payloads) → JSON.
    pub fn decode(b64: &str) -> Result<ZosVersion, ZosVersionError> {
        let raw = b64_decode(b64.trim()).ok_or(ZosVersionError::Base64)?;
        let text = String::from_utf8_lossy(&raw).replace('\'', "\"");
        let v: ZosVersion = serde_json::from_str(&text).map_err(ZosVersionError::Json)?;
        if v.version.trim().is_empty() {
            return Err(ZosVersionError::EmptyVersion);
        }
        Ok(v)
    }
}
