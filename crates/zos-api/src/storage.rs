//! storaged: `storage.storage@0.0.1` — pools, volumes, virtual disks, zdb devices, the system cache.

use serde::{Deserialize, Serialize};
use zos_types::go::nullable;
use zos_types::Unit;

use crate::common::GoErrorField;

/// Kind of a disk: `ssd` or `hdd`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceType {
    #[default]
    #[serde(rename = "ssd")]
    Ssd,
    #[serde(rename = "hdd")]
    Hdd,
}

/// Size and use of a volume, pool or device, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(rename = "Size", default)]
    pub size: Unit,
    #[serde(rename = "Used", default)]
    pub used: Unit,
}

/// A volume: a btrfs subvolume with a quota.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "Path", default, deserialize_with = "nullable")]
    pub path: String,
    #[serde(rename = "Usage", default)]
    pub usage: Usage,
}

/// A virtual disk: a preallocated NOCOW file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VDisk {
    #[serde(rename = "Path", default, deserialize_with = "nullable")]
    pub path: String,
    #[serde(rename = "Size", default)]
    pub size: i64,
}

/// A zdb device: the `zdb` subvolume of an HDD pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "Path", default, deserialize_with = "nullable")]
    pub path: String,
    #[serde(rename = "Usage", default)]
    pub usage: Usage,
}

/// A pool that could not be mounted or used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenPool {
    #[serde(rename = "Label", default, deserialize_with = "nullable")]
    pub label: String,
    #[serde(rename = "Err", default)]
    pub err: GoErrorField,
    /// Why (Go sends an empty `Err`; this carries the message).
    #[serde(rename = "Reason", default, deserialize_with = "nullable")]
    pub reason: String,
}

/// A device that could not be turned into a pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenDevice {
    #[serde(rename = "Path", default, deserialize_with = "nullable")]
    pub path: String,
    #[serde(rename = "Err", default)]
    pub err: GoErrorField,
    /// Why (Go sends an empty `Err`; this carries the message).
    #[serde(rename = "Reason", default, deserialize_with = "nullable")]
    pub reason: String,
}

/// Size and use of one pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMetrics {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "Type", default)]
    pub kind: DeviceType,
    #[serde(rename = "Size", default)]
    pub size: Unit,
    #[serde(rename = "Used", default)]
    pub used: Unit,
}

/// Usage and I/O counters of one pool, as the Monitor stream reports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolStats {
    #[serde(rename = "path", default, deserialize_with = "nullable")]
    pub path: String,
    #[serde(rename = "total", default)]
    pub total: u64,
    #[serde(rename = "free", default)]
    pub free: u64,
    #[serde(rename = "used", default)]
    pub used: u64,
    #[serde(rename = "usedPercent", default)]
    pub used_percent: f64,
    #[serde(rename = "Counters", default)]
    pub counters: IoCounters,
}

/// Disk I/O counters (gopsutil `IOCountersStat`, json names as keys).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounters {
    #[serde(rename = "readCount", default)]
    pub read_count: u64,
    #[serde(rename = "writeCount", default)]
    pub write_count: u64,
    #[serde(rename = "readBytes", default)]
    pub read_bytes: u64,
    #[serde(rename = "writeBytes", default)]
    pub write_bytes: u64,
    #[serde(rename = "name", default, deserialize_with = "nullable")]
    pub name: String,
}

/// Stats of every pool by pool name.
pub type PoolsStats = std::collections::BTreeMap<String, PoolStats>;

crate::contract! {
    /// Disks turned into btrfs pools, and the volumes, virtual disks and zdb devices carved from them.
    object Storage, StorageClient, StorageContract = "storage", "storage", "0.0.1" {
        /// Where the system cache is mounted and how big it is.
        fn cache = "Cache" () -> Volume;
        /// Total bytes of all pools of a kind.
        fn total = "Total" (kind: DeviceType) -> u64;
        /// Pools that could not be mounted.
        fn broken_pools = "BrokenPools" () -> Vec<BrokenPool>;
        /// Devices that could not be used.
        fn broken_devices = "BrokenDevices" () -> Vec<BrokenDevice>;
        /// Create a volume (a subvolume whose quota is its size) on the best pool, SSD first.
        fn volume_create = "VolumeCreate" (name: String, size: Unit) -> Volume;
        /// Change a volume's quota.
        fn volume_update = "VolumeUpdate" (name: String, size: Unit);
        /// Find a volume by name.
        fn volume_lookup = "VolumeLookup" (name: String) -> Volume;
        /// Whether a volume exists.
        fn volume_exists = "VolumeExists" (name: String) -> bool;
        /// Delete a volume and its data.
        fn volume_delete = "VolumeDelete" (name: String);
        /// All volumes (not the cache, not the vdisks store).
        fn volume_list = "VolumeList" () -> Vec<Volume>;
        /// Create a virtual disk file of `size` bytes.
        fn disk_create = "DiskCreate" (name: String, size: Unit) -> VDisk;
        /// Grow a virtual disk.
        fn disk_resize = "DiskResize" (name: String, size: Unit) -> VDisk;
        /// Write a raw image onto a blank virtual disk.
        fn disk_write = "DiskWrite" (name: String, image: String);
        /// Put a btrfs filesystem on a virtual disk.
        fn disk_format = "DiskFormat" (name: String);
        /// Find a virtual disk by name.
        fn disk_lookup = "DiskLookup" (name: String) -> VDisk;
        /// Whether a virtual disk exists.
        fn disk_exists = "DiskExists" (name: String) -> bool;
        /// Delete a virtual disk.
        fn disk_delete = "DiskDelete" (name: String);
        /// All virtual disks.
        fn disk_list = "DiskList" () -> Vec<VDisk>;
        /// zdb devices allocated so far.
        fn devices = "Devices" () -> Vec<Device>;
        /// Allocate a zdb device of at least `min` bytes on an HDD pool.
        fn device_allocate = "DeviceAllocate" (min: Unit) -> Device;
        /// Find a zdb device by name.
        fn device_lookup = "DeviceLookup" (name: String) -> Device;
        /// Size and use of every pool.
        fn metrics = "Metrics" () -> Vec<PoolMetrics>;
    } streams {
        /// Usage and I/O of every pool, periodically.
        stream monitor = "Monitor" -> PoolsStats;
    }
}
