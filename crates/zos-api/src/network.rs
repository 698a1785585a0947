//! netlightd: `netlight.netlight@0.0.1` — the node's networks and user network resources.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zos_types::go::nullable;
use zos_types::{Bytes, Ip, IpNet};

use crate::common::WorkloadId;
use crate::vm::Route;

/// Mycelium settings of a network resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mycelium {
    #[serde(rename = "Key", default)]
    pub key: Bytes,
    #[serde(rename = "Peers", default, deserialize_with = "nullable")]
    pub peers: Vec<String>,
}

/// A WireGuard peer of a network resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    #[serde(rename = "Subnet", default)]
    pub subnet: IpNet,
    #[serde(rename = "WGPublicKey", default, deserialize_with = "nullable")]
    pub wg_public_key: String,
    #[serde(rename = "AllowedIPs", default, deserialize_with = "nullable")]
    pub allowed_ips: Vec<IpNet>,
    #[serde(rename = "Endpoint", default, deserialize_with = "nullable")]
    pub endpoint: String,
}

/// A user network on this node (`network-light` workload).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLight {
    #[serde(rename = "Subnet", default)]
    pub subnet: IpNet,
    #[serde(rename = "NetworkIPRange", default)]
    pub ip_range: IpNet,
    #[serde(rename = "Mycelium", default)]
    pub mycelium: Mycelium,
    #[serde(rename = "WGPrivateKey", default, deserialize_with = "nullable")]
    pub wg_private_key: String,
    #[serde(rename = "WGListenPort", default)]
    pub wg_listen_port: u16,
    #[serde(rename = "Peers", default, deserialize_with = "nullable")]
    pub peers: Vec<Peer>,
}

/// A tap device made for a VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapDevice {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "Mac", default)]
    pub mac: Bytes,
    #[serde(rename = "IP", default)]
    pub ip: IpNet,
    #[serde(rename = "Routes", default, deserialize_with = "nullable")]
    pub routes: Vec<Route>,
}

/// One interface and its addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "IPs", default, deserialize_with = "nullable")]
    pub ips: Vec<IpNet>,
    #[serde(rename = "Mac", default, deserialize_with = "nullable")]
    pub mac: String,
}

/// Interfaces by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interfaces {
    #[serde(rename = "Interfaces", default, deserialize_with = "nullable")]
    pub interfaces: BTreeMap<String, Interface>,
}

/// Public configuration of a node (not used on light nodes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicConfig {
    #[serde(rename = "Type", default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(rename = "IPv4", default)]
    pub ipv4: IpNet,
    #[serde(rename = "IPv6", default)]
    pub ipv6: IpNet,
    #[serde(rename = "GW4", default)]
    pub gw4: Ip,
    #[serde(rename = "GW6", default)]
    pub gw6: Ip,
    #[serde(rename = "Domain", default, deserialize_with = "nullable")]
    pub domain: String,
}

crate::contract! {
    /// The node's network and the user network resources on it.
    object NetworkerLight, NetworkerLightClient, NetworkerLightContract = "netlight", "netlight", "0.0.1" {
        /// Create or update network resource `name` (its NetID) for workload `wl`.
        fn create = "Create" (name: String, wl: WorkloadId, network: NetworkLight);
        /// Delete a network resource.
        fn delete = "Delete" (name: String);
        /// A tap on the private bridge of `name` for VM `id`, with its address.
        fn attach_private = "AttachPrivate" (name: String, id: String, vm_ip: Ip) -> TapDevice;
        /// A tap on the mycelium bridge of `name` for VM `id`, addressed from `seed` (6 bytes).
        fn attach_mycelium = "AttachMycelium" (name: String, id: String, seed: Bytes) -> TapDevice;
        /// Remove the taps of VM `id`.
        fn detach = "Detach" (id: String);
        /// Interfaces (all physical plus `zos` when `iface` is empty) in a namespace (host when empty).
        fn interfaces = "Interfaces" (iface: String, netns: String) -> Interfaces;
        /// A namespace for zdb `id` reachable over mycelium; returns its name.
        fn attach_zdb = "AttachZDB" (id: String) -> String;
        /// Addresses in a zdb namespace.
        fn zdb_ips = "ZDBIPs" (namespace: String) -> Vec<Ip>;
        /// The namespace name of a network resource.
        fn namespace = "Namespace" (id: String) -> String;
        /// Whether networking is ready.
        fn ready = "Ready" ();
        /// WireGuard listen ports in use.
        fn wireguard_ports = "WireguardPorts" () -> Vec<u64>;
        /// The gateway (`.1`) of a network resource's subnet.
        fn get_default_gw_ip = "GetDefaultGwIP" (id: String) -> Ip;
        /// A network's whole range.
        fn get_net = "GetNet" (id: String) -> IpNet;
        /// A network resource's subnet on this node.
        fn get_subnet = "GetSubnet" (id: String) -> IpNet;
        /// Set the public configuration.
        fn set_public_config = "SetPublicConfig" (config: PublicConfig);
        /// Remove the public configuration.
        fn unset_public_config = "UnSetPublicConfig" ();
        /// The public configuration.
        fn load_public_config = "LoadPublicConfig" () -> PublicConfig;
    } streams {
        /// The addresses of the `zos` bridge, when they change.
        stream zos_addresses = "ZOSAddresses" -> Vec<IpNet>;
    }
}
