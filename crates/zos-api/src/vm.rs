//! vmd: `vmd.manager@0.0.1` — virtual machines.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zos_types::go::nullable;
use zos_types::{Bytes, Ip, IpNet, Unit};

/// A route handed to a VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    #[serde(rename = "Net", default)]
    pub net: IpNet,
    #[serde(rename = "Gateway", default)]
    pub gateway: Ip,
}

/// One network interface of a VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmIface {
    #[serde(rename = "Tap", default, deserialize_with = "nullable")]
    pub tap: String,
    #[serde(rename = "MAC", default, deserialize_with = "nullable")]
    pub mac: String,
    #[serde(rename = "IPs", default, deserialize_with = "nullable")]
    pub ips: Vec<IpNet>,
    #[serde(rename = "Routes", default, deserialize_with = "nullable")]
    pub routes: Vec<Route>,
    #[serde(rename = "IP4DefaultGateway", default)]
    pub ip4_default_gateway: Ip,
    #[serde(rename = "IP6DefaultGateway", default)]
    pub ip6_default_gateway: Ip,
    #[serde(rename = "PublicIPv4", default)]
    pub public_ipv4: bool,
    #[serde(rename = "PublicIPv6", default)]
    pub public_ipv6: bool,
    #[serde(rename = "NetID", default, deserialize_with = "nullable")]
    pub net_id: String,
}

/// A VM's network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNetwork {
    #[serde(rename = "Ifaces", default, deserialize_with = "nullable")]
    pub ifaces: Vec<VmIface>,
    #[serde(rename = "Nameservers", default, deserialize_with = "nullable")]
    pub nameservers: Vec<Ip>,
}

/// A disk attached to a VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDisk {
    #[serde(rename = "Path", default, deserialize_with = "nullable")]
    pub path: String,
    #[serde(rename = "Target", default, deserialize_with = "nullable")]
    pub target: String,
}

/// A directory shared with a VM over virtio-fs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDir {
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "Path", default, deserialize_with = "nullable")]
    pub path: String,
    #[serde(rename = "Target", default, deserialize_with = "nullable")]
    pub target: String,
}

/// How a VM boots: from a disk (0) or a virtio-fs root (1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    #[serde(rename = "Type", default)]
    pub kind: i64,
    #[serde(rename = "Path", default, deserialize_with = "nullable")]
    pub path: String,
}

/// A VM definition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "CPU", default)]
    pub cpu: u8,
    #[serde(rename = "Memory", default)]
    pub memory: Unit,
    #[serde(rename = "Network", default)]
    pub network: VmNetwork,
    #[serde(rename = "KernelImage", default, deserialize_with = "nullable")]
    pub kernel_image: String,
    #[serde(rename = "InitrdImage", default, deserialize_with = "nullable")]
    pub initrd_image: String,
    #[serde(rename = "KernelArgs", default, deserialize_with = "nullable")]
    pub kernel_args: BTreeMap<String, String>,
    #[serde(rename = "Entrypoint", default, deserialize_with = "nullable")]
    pub entrypoint: String,
    #[serde(rename = "Disks", default, deserialize_with = "nullable")]
    pub disks: Vec<VmDisk>,
    #[serde(rename = "Shared", default, deserialize_with = "nullable")]
    pub shared: Vec<SharedDir>,
    #[serde(rename = "Boot", default)]
    pub boot: Boot,
    #[serde(rename = "Environment", default, deserialize_with = "nullable")]
    pub environment: BTreeMap<String, String>,
    #[serde(rename = "NoKeepAlive", default)]
    pub no_keep_alive: bool,
    #[serde(rename = "Hostname", default, deserialize_with = "nullable")]
    pub hostname: String,
    #[serde(rename = "Devices", default, deserialize_with = "nullable")]
    pub devices: Vec<String>,
}

/// What `Run` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    #[serde(rename = "ConsoleURL", default, deserialize_with = "nullable")]
    pub console_url: String,
}

/// What `Inspect` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    #[serde(rename = "HtEnabled", default)]
    pub ht_enabled: bool,
    #[serde(rename = "Memory", default)]
    pub memory: Unit,
    #[serde(rename = "CPU", default)]
    pub cpu: i64,
}

/// Traffic counters of one side of a VM's networking.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetMetric {
    #[serde(rename = "NetRxPackets", default)]
    pub rx_packets: u64,
    #[serde(rename = "NetRxBytes", default)]
    pub rx_bytes: u64,
    #[serde(rename = "NetTxPackets", default)]
    pub tx_packets: u64,
    #[serde(rename = "NetTxBytes", default)]
    pub tx_bytes: u64,
}

/// Traffic of one VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineMetric {
    #[serde(rename = "Private", default)]
    pub private: NetMetric,
    #[serde(rename = "Public", default)]
    pub public: NetMetric,
}

/// A log stream of a VM, forwarded to `Output`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "Namespace", default, deserialize_with = "nullable")]
    pub namespace: String,
    #[serde(rename = "Output", default, deserialize_with = "nullable")]
    pub output: String,
}

crate::contract! {
    /// Virtual machines.
    object VmModule, VmModuleClient, VmModuleContract = "vmd", "manager", "0.0.1" {
        /// Start a VM.
        fn run = "Run" (vm: Vm) -> MachineInfo;
        /// A running VM's size.
        fn inspect = "Inspect" (name: String) -> VmInfo;
        /// Stop and forget a VM.
        fn delete = "Delete" (name: String);
        /// Whether a VM exists.
        fn exists = "Exists" (name: String) -> bool;
        /// The tail of a VM's console log.
        fn logs = "Logs" (name: String) -> String;
        /// Names of all VMs.
        fn list = "List" () -> Vec<String>;
        /// Traffic of every VM.
        fn metrics = "Metrics" () -> BTreeMap<String, MachineMetric>;
        /// Pause (true) or resume (false) a VM.
        fn lock = "Lock" (name: String, lock: bool);
        /// Forward a VM's log to an output.
        fn stream_create = "StreamCreate" (name: String, stream: Stream);
        /// Stop forwarding a log.
        fn stream_delete = "StreamDelete" (id: String);
    }
}

/// Seed of a VM's mycelium address (6 bytes).
pub type MyceliumSeed = Bytes;
