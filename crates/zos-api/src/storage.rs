//! storaged: `storage.storage@0.0.1` — pools, volumes, virtual disks, zdb devices, the system cache.

use serde::{Deserialize, Serialize};
use zos_types::Unit;
use zos_types::go::nullable;

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
///
/// Go's `PoolStats` embeds gopsutil's `disk.UsageStat` (msgpack v4 inlines it, and ignores json tags, so the
/// keys are the Go field names) and adds `Counters`, the I/O counters of each device of the pool by device
/// name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Where the pool is mounted (empty when it is not mounted).
    #[serde(rename = "Path", default, deserialize_with = "nullable")]
    pub path: String,
    #[serde(rename = "Fstype", default, deserialize_with = "nullable")]
    pub fstype: String,
    /// Bytes of the filesystem.
    #[serde(rename = "Total", default)]
    pub total: u64,
    #[serde(rename = "Free", default)]
    pub free: u64,
    #[serde(rename = "Used", default)]
    pub used: u64,
    #[serde(rename = "UsedPercent", default)]
    pub used_percent: f64,
    #[serde(rename = "InodesTotal", default)]
    pub inodes_total: u64,
    #[serde(rename = "InodesUsed", default)]
    pub inodes_used: u64,
    #[serde(rename = "InodesFree", default)]
    pub inodes_free: u64,
    #[serde(rename = "InodesUsedPercent", default)]
    pub inodes_used_percent: f64,
    /// I/O counters by device name (`sda`, `loop3p1`).
    #[serde(rename = "Counters", default, deserialize_with = "nullable")]
    pub counters: std::collections::BTreeMap<String, IoCounters>,
}

/// Disk I/O counters (gopsutil `IOCountersStat`, Go field names as keys).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounters {
    #[serde(rename = "ReadCount", default)]
    pub read_count: u64,
    #[serde(rename = "MergedReadCount", default)]
    pub merged_read_count: u64,
    #[serde(rename = "WriteCount", default)]
    pub write_count: u64,
    #[serde(rename = "MergedWriteCount", default)]
    pub merged_write_count: u64,
    #[serde(rename = "ReadBytes", default)]
    pub read_bytes: u64,
    #[serde(rename = "WriteBytes", default)]
    pub write_bytes: u64,
    /// Milliseconds spent reading.
    #[serde(rename = "ReadTime", default)]
    pub read_time: u64,
    /// Milliseconds spent writing.
    #[serde(rename = "WriteTime", default)]
    pub write_time: u64,
    #[serde(rename = "IopsInProgress", default)]
    pub iops_in_progress: u64,
    /// Milliseconds spent doing I/O.
    #[serde(rename = "IoTime", default)]
    pub io_time: u64,
    #[serde(rename = "WeightedIO", default)]
    pub weighted_io: u64,
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "SerialNumber", default, deserialize_with = "nullable")]
    pub serial_number: String,
    #[serde(rename = "Label", default, deserialize_with = "nullable")]
    pub label: String,
}

/// Stats of every pool by pool name.
pub type PoolsStats = std::collections::BTreeMap<String, PoolStats>;

crate::contract! {
    /// Disks turned into btrfs pools, and the volumes, virtual disks and zdb devices carved from them.
    ///
    /// Capacity is accounted by reservation: a pool's use is the sum of its volumes' quotas, its virtual
    /// disks' sizes and the real use of subvolumes without a quota (zdb). A request that does not fit fails
    /// with kind `unavailable` and changes nothing. Bad names and sizes fail with kind `invalid_input`,
    /// missing objects with `not_found`, a name taken with another size with `conflict`.
    object Storage, StorageClient, StorageContract = "storage", "storage", "0.0.1" {
        /// The `zos-cache` volume mounted on the system cache path (fails when the cache is a tmpfs).
        fn cache = "Cache" () -> Volume;
        /// Total bytes of all pools of a kind.
        fn total = "Total" (kind: DeviceType) -> u64;
        /// Pools that could not be mounted, with the reason.
        fn broken_pools = "BrokenPools" () -> Vec<BrokenPool>;
        /// Devices that could not be used (foreign filesystem, PXE partition, format failure), with the reason.
        fn broken_devices = "BrokenDevices" () -> Vec<BrokenDevice>;
        /// Create a volume (a subvolume whose quota is its size) on the pool with most room, SSD first.
        /// Idempotent for the same name and size; names starting with `zdb` are reserved.
        fn volume_create = "VolumeCreate" (name: String, size: Unit) -> Volume;
        /// Change a volume's quota (not below what it uses; growth must fit its pool).
        fn volume_update = "VolumeUpdate" (name: String, size: Unit);
        /// Find a volume by name.
        fn volume_lookup = "VolumeLookup" (name: String) -> Volume;
        /// Whether a volume exists.
        fn volume_exists = "VolumeExists" (name: String) -> bool;
        /// Delete a volume and its data (a pool left without subvolumes is unmounted).
        fn volume_delete = "VolumeDelete" (name: String);
        /// All volumes (not the cache, not the vdisks store, not zdb devices).
        fn volume_list = "VolumeList" () -> Vec<Volume>;
        /// Create a virtual disk: a preallocated NOCOW file of `size` bytes in the `vdisks` subvolume.
        /// Idempotent for the same name and size.
        fn disk_create = "DiskCreate" (name: String, size: Unit) -> VDisk;
        /// Grow a virtual disk (never shrinks it).
        fn disk_resize = "DiskResize" (name: String, size: Unit) -> VDisk;
        /// Write a raw image file onto a virtual disk, unless the disk already holds a filesystem or
        /// partition table; the image must not be bigger than the disk.
        fn disk_write = "DiskWrite" (name: String, image: String);
        /// Put a btrfs filesystem on a virtual disk (nothing to do when it already holds one).
        fn disk_format = "DiskFormat" (name: String);
        /// Find a virtual disk by name.
        fn disk_lookup = "DiskLookup" (name: String) -> VDisk;
        /// Whether a virtual disk exists.
        fn disk_exists = "DiskExists" (name: String) -> bool;
        /// Delete a virtual disk.
        fn disk_delete = "DiskDelete" (name: String);
        /// All virtual disks.
        fn disk_list = "DiskList" () -> Vec<VDisk>;
        /// zdb devices allocated so far (mounted HDD pools with a `zdb` subvolume).
        fn devices = "Devices" () -> Vec<Device>;
        /// Allocate a zdb device on an HDD pool with at least `min` bytes free and no zdb device yet;
        /// its ID is the pool name.
        fn device_allocate = "DeviceAllocate" (min: Unit) -> Device;
        /// Find a zdb device by ID (the pool name).
        fn device_lookup = "DeviceLookup" (name: String) -> Device;
        /// Size and reserved bytes of every pool.
        fn metrics = "Metrics" () -> Vec<PoolMetrics>;
    } streams {
        /// Usage and I/O of every pool (SSD and HDD), periodically.
        stream monitor = "Monitor" -> PoolsStats;
    }
}
