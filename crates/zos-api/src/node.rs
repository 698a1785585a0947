//! noded: `node.system@0.0.1`, `node.host@0.0.1`, `node.performance-monitor@0.0.1`.

use serde::{Deserialize, Serialize};
use zos_types::go::nullable;
use zos_types::{GoDuration, GoTime};

/// Memory statistics (gopsutil `VirtualMemoryStat`, the fields zos uses).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VirtualMemoryStat {
    #[serde(rename = "Total", default)]
    pub total: u64,
    #[serde(rename = "Available", default)]
    pub available: u64,
    #[serde(rename = "Used", default)]
    pub used: u64,
    #[serde(rename = "UsedPercent", default)]
    pub used_percent: f64,
    #[serde(rename = "Free", default)]
    pub free: u64,
}

/// CPU time split and use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimesStat {
    #[serde(rename = "CPU", default, deserialize_with = "nullable")]
    pub cpu: String,
    #[serde(rename = "User", default)]
    pub user: f64,
    #[serde(rename = "System", default)]
    pub system: f64,
    #[serde(rename = "Idle", default)]
    pub idle: f64,
    #[serde(rename = "Iowait", default)]
    pub iowait: f64,
    #[serde(rename = "Percent", default)]
    pub percent: f64,
    #[serde(rename = "Time", default)]
    pub time: GoTime,
}

/// Disk I/O of one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskIoStat {
    #[serde(rename = "ReadCount", default)]
    pub read_count: u64,
    #[serde(rename = "WriteCount", default)]
    pub write_count: u64,
    #[serde(rename = "ReadBytes", default)]
    pub read_bytes: u64,
    #[serde(rename = "WriteBytes", default)]
    pub write_bytes: u64,
    #[serde(rename = "Time", default)]
    pub time: GoTime,
}

/// Disk I/O by device.
pub type DisksIoCountersStat = std::collections::BTreeMap<String, DiskIoStat>;

/// Traffic of one interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NicIoCounterStat {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "BytesSent", default)]
    pub bytes_sent: u64,
    #[serde(rename = "BytesRecv", default)]
    pub bytes_recv: u64,
    #[serde(rename = "RateOut", default)]
    pub rate_out: u64,
    #[serde(rename = "RateIn", default)]
    pub rate_in: u64,
}

crate::contract! {
    /// Node facts and live system statistics.
    object SystemMonitor, SystemMonitorClient, SystemMonitorContract = "node", "system", "0.0.1" {
        /// The registrar node id.
        fn node_id = "NodeID" () -> u32;
        /// Features the node offers (workload types and services).
        fn get_node_features = "GetNodeFeatures" () -> Vec<String>;
    } streams {
        /// Memory use, every 2 s.
        stream memory = "Memory" -> VirtualMemoryStat;
        /// CPU use, every 2 s.
        stream cpu = "CPU" -> TimesStat;
        /// Disk I/O, every 2 s.
        stream disks = "Disks" -> DisksIoCountersStat;
        /// Network traffic, every 2 s.
        stream nics = "Nics" -> Vec<NicIoCounterStat>;
    }
}

crate::contract! {
    /// The host.
    object HostMonitor, HostMonitorClient, HostMonitorContract = "node", "host", "0.0.1" {
    } streams {
        /// Time since boot, every 2 s.
        stream uptime = "Uptime" -> GoDuration;
    }
}

/// The result of a performance or health task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "Description", default, deserialize_with = "nullable")]
    pub description: String,
    #[serde(rename = "Timestamp", default)]
    pub timestamp: u64,
    #[serde(rename = "Result", default)]
    pub result: serde_json::Value,
}

crate::contract! {
    /// Results of the periodic performance and health tasks.
    object PerformanceMonitor, PerformanceMonitorClient, PerformanceMonitorContract = "node", "performance-monitor", "0.0.1" {
        /// One task's last result.
        fn get = "Get" (task: String) -> TaskResult;
        /// Every task's last result.
        fn get_all = "GetAll" () -> Vec<TaskResult>;
    }
}
