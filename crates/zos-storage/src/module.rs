//! The storage module: pools found at start, and every operation of `storage@0.0.1`.
//!
//! Concurrency: every method may be called from many threads at once. Operations on one name (volume or
//! disk) are serialised by a per-name lock; structural changes of one pool (mount, unmount, subvolume
//! create/delete) by the pool's lock; capacity is reserved in one short critical section (`books`), so
//! concurrent requests can never overbook a pool.
//!
//! Crash safety: nothing becomes visible before it is complete. A volume is made and given its quota in
//! `<pool>/.zos-staging/` and renamed into place; a virtual disk is allocated as a hidden `.<name>.partial`
//! file and renamed into place; writing an image or a filesystem onto a disk leaves a `.<name>.writing` /
//! `.<name>.formatting` marker until it is done. The next start deletes staged subvolumes and partial files,
//! blanks disks whose marker remains, and destroys stale qgroups.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use zos_api::storage::{
    BrokenDevice, BrokenPool, Device, DeviceType, IoCounters, PoolMetrics, PoolStats, PoolsStats,
    Usage, VDisk, Volume,
};
use zos_config::{NodeConfig, paths};

use crate::btrfs;
use crate::discover::{self, BlockDevice, Sysfs};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::mounts;
use crate::pool::{CACHE, Pool, STAGING_DIR, VDISKS, ZDB};
use crate::vdisk;

/// Size of the tmpfs mounted on the cache path when no pool can hold the cache (as Zero-OS: 500 MB).
pub const TMPFS_CACHE_SIZE: u64 = 500 * 1000 * 1000;
/// The source name of storaged's tmpfs cache in the mount table (how a restart recognises it).
pub const TMPFS_CACHE_SOURCE: &str = "zos-cache";
/// Longest volume or disk name.
pub const MAX_NAME: usize = 128;
/// The label of the PXE boot partition, never used for storage.
pub const PXE_LABEL: &str = "ZOSPXE";

/// What storaged is told to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Devices that may be used; empty: every non-USB, non-removable disk of the machine.
    pub devices: Vec<PathBuf>,
    /// Turn free space (≥ 5 GiB) of partitioned disks into new partitions.
    pub allow_partitioning: bool,
    /// Pools are mounted at `<mount_root>/<uuid>`.
    pub mount_root: PathBuf,
    /// Where the system cache is mounted.
    pub cache_path: PathBuf,
    /// Initial cache quota, and the step of its automatic resizing.
    pub cache_size: u64,
    /// Where the `limited-cache` flag is set.
    pub flags_dir: PathBuf,
    /// Kernel parameter `missing-ssd`: HDD pools may hold volumes, disks and the cache.
    pub missing_ssd: bool,
}

impl Options {
    /// The options of a node: its `[storage]` section and kernel parameters, flags in `flags_dir`.
    pub fn from_config(cfg: &NodeConfig, flags_dir: impl Into<PathBuf>) -> Options {
        Options {
            devices: cfg.storage.devices.clone(),
            allow_partitioning: cfg.storage.allow_partitioning,
            mount_root: cfg.storage.mount_root.clone(),
            cache_path: cfg.storage.cache_path.clone(),
            cache_size: cfg.storage.cache_size,
            flags_dir: flags_dir.into(),
            missing_ssd: cfg.kernel.missing_ssd,
        }
    }

    /// Defaults of a node with an explicit device list (tests and tools).
    pub fn new(
        devices: Vec<PathBuf>,
        mount_root: impl Into<PathBuf>,
        cache_path: impl Into<PathBuf>,
    ) -> Options {
        Options {
            devices,
            allow_partitioning: false,
            mount_root: mount_root.into(),
            cache_path: cache_path.into(),
            cache_size: 5 << 30,
            flags_dir: PathBuf::from(paths::FLAGS_DIR),
            missing_ssd: false,
        }
    }
}

/// Where the system cache lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheState {
    /// The `zos-cache` subvolume of this pool, bind-mounted on the cache path.
    Pool(String),
    /// A tmpfs (the `limited-cache` flag is set).
    Tmpfs,
}

/// A pool as callers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: String,
    pub device: PathBuf,
    pub path: PathBuf,
    pub kind: DeviceType,
    pub size: u64,
    pub mounted: bool,
    /// Bytes reserved (quotas, disk sizes, real use of unlimited subvolumes, in-flight requests).
    pub reserved: u64,
}

#[derive(Debug, Default)]
struct Book {
    /// Bytes counted for each published subvolume.
    entries: BTreeMap<String, u64>,
    /// Bytes reserved by requests in flight.
    pending: u64,
}

impl Book {
    fn reserved(&self) -> u64 {
        self.entries.values().sum::<u64>() + self.pending
    }
}

#[derive(Default)]
struct NameLocks {
    map: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl NameLocks {
    fn get(&self, key: &str) -> Arc<Mutex<()>> {
        let mut map = lock(&self.map);
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(key.to_string()).or_default().clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Capacity taken from a pool's book for a request in flight; given back on drop unless committed.
struct Reservation<'a> {
    module: &'a StorageModule,
    pool: Arc<Pool>,
    size: u64,
    done: bool,
}

impl Reservation<'_> {
    /// Move the reserved bytes into the entry `name` (added to what it had).
    fn commit_add(mut self, name: &str) {
        let mut books = lock(&self.module.books);
        let book = books.entry(self.pool.name.clone()).or_default();
        book.pending -= self.size;
        *book.entries.entry(name.to_string()).or_default() += self.size;
        self.done = true;
    }

    /// Set the entry `name` to `value`, releasing the reservation.
    fn commit_set(mut self, name: &str, value: u64) {
        let mut books = lock(&self.module.books);
        let book = books.entry(self.pool.name.clone()).or_default();
        book.pending -= self.size;
        book.entries.insert(name.to_string(), value);
        self.done = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut books = lock(&self.module.books);
            if let Some(book) = books.get_mut(&self.pool.name) {
                book.pending -= self.size;
            }
        }
    }
}

/// The storage module. See the module docs.
pub struct StorageModule {
    opts: Options,
    pools: Vec<Arc<Pool>>,
    broken_pools: Vec<BrokenPool>,
    broken_devices: Vec<BrokenDevice>,
    books: Mutex<HashMap<String, Book>>,
    names: NameLocks,
    cache: Mutex<Option<CacheState>>,
    sysfs: Sysfs,
}

/// Validate a volume or disk name: 1 to [`MAX_NAME`] characters of `A-Z a-z 0-9 - _ . : @ +`, not starting
/// with `.` (hidden names are storaged's own bookkeeping), so it can never leave its directory.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            what,
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME {
        return bad(&format!("it is longer than {MAX_NAME} characters"));
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:@+".contains(*c)))
    {
        return bad(&format!(
            "character {c:?} is not allowed (letters, digits and - _ . : @ + only)"
        ));
    }
    Ok(())
}

/// Validate the name of a volume a caller may create or delete: a valid name that is not reserved.
pub fn validate_volume_name(name: &str) -> Result<()> {
    validate_name("volume", name)?;
    if name.starts_with(ZDB) {
        return Err(Error::InvalidName {
            what: "volume",
            name: name.into(),
            reason: "the zdb prefix is reserved".into(),
        });
    }
    if name == CACHE || name == VDISKS {
        return Err(Error::InvalidName {
            what: "volume",
            name: name.into(),
            reason: "the name is reserved".into(),
        });
    }
    Ok(())
}

/// The next quota of the cache given its current quota, its exclusive use and the resize step `unit`
/// (Zero-OS: 5 GiB): no quota → `max(unit, 2 × used)`; used ≥ 60 % → grow by `unit`; used < 20 % and quota
/// above `unit` → `floor(2 × used / unit) × unit + unit`. `None` when nothing changes.
pub fn next_cache_quota(quota: Option<u64>, used: u64, unit: u64) -> Option<u64> {
    let unit = unit.max(1);
    match quota {
        None => Some(unit.max(used.saturating_mul(2))),
        Some(q) if u128::from(used) * 100 >= u128::from(q) * 60 => Some(q + unit),
        Some(q) if u128::from(used) * 100 < u128::from(q) * 20 && q > unit => {
            let next = (used.saturating_mul(2) / unit) * unit + unit;
            (next < q).then_some(next)
        }
        Some(_) => None,
    }
}

fn kind_word(kind: DeviceType) -> &'static str {
    match kind {
        DeviceType::Ssd => "ssd",
        DeviceType::Hdd => "hdd",
    }
}

enum Unusable {
    Device(String),
    Pool(String, String),
}

impl StorageModule {
    /// Find the devices, turn them into pools, repair what an interrupted run left, set up the cache and
    /// unmount unused pools. Errors are per device or pool (reported by `BrokenDevices`/`BrokenPools`),
    /// except a cache that can be neither bound nor replaced by a tmpfs.
    pub fn init(opts: Options) -> Result<StorageModule> {
        Self::init_with(opts, Sysfs::default())
    }

    /// [`init`](Self::init) with another sysfs root.
    pub fn init_with(opts: Options, sysfs: Sysfs) -> Result<StorageModule> {
        tracing::info!(devices = ?opts.devices, mount_root = %opts.mount_root.display(), "initialising storage");
        let mut module = StorageModule {
            opts,
            pools: Vec::new(),
            broken_pools: Vec::new(),
            broken_devices: Vec::new(),
            books: Mutex::new(HashMap::new()),
            names: NameLocks::default(),
            cache: Mutex::new(None),
            sysfs,
        };
        let candidates = module.candidates()?;
        for dev in candidates {
            match module.open_pool(&dev) {
                Ok(pool) => {
                    tracing::info!(pool = %pool.name, device = %pool.device.display(), kind = kind_word(pool.kind),
                        size = pool.size, "pool ready");
                    module.pools.push(Arc::new(pool));
                }
                Err(Unusable::Device(reason)) => {
                    tracing::warn!(device = %dev.path.display(), %reason, "device not used");
                    module.broken_devices.push(BrokenDevice {
                        path: dev.path.display().to_string(),
                        reason,
                        ..Default::default()
                    });
                }
                Err(Unusable::Pool(label, reason)) => {
                    tracing::warn!(pool = %label, device = %dev.path.display(), %reason, "pool not usable");
                    module.broken_pools.push(BrokenPool {
                        label,
                        reason,
                        ..Default::default()
                    });
                }
            }
        }
        for pool in &module.pools {
            let entries = pool.book_entries()?;
            lock(&module.books).insert(
                pool.name.clone(),
                Book {
                    entries,
                    pending: 0,
                },
            );
        }
        module.ensure_cache()?;
        module.shutdown_unused_pools();
        Ok(module)
    }

    /// The options the module runs with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The devices to turn into pools.
    fn candidates(&mut self) -> Result<Vec<BlockDevice>> {
        let mut disks = Vec::new();
        let mut out = Vec::new();
        if self.opts.devices.is_empty() {
            disks = self.sysfs.node_disks()?;
        } else {
            for path in self.opts.devices.clone() {
                let resolved = self
                    .sysfs
                    .resolve(&path)
                    .and_then(|(name, parent)| match parent {
                        None => self.sysfs.disk(&name).map(|d| (Some(d), None)),
                        Some(parent) => {
                            let disk = self.sysfs.disk(&parent)?;
                            let part = disk.partitions.into_iter().find(|p| p.name == name);
                            Ok((None, part))
                        }
                    });
                match resolved {
                    Ok((Some(disk), _)) => disks.push(disk),
                    Ok((None, Some(part))) => out.push(part),
                    Ok((None, None)) => self.broken_device(&path, "not found in sysfs".into()),
                    Err(e) => self.broken_device(&path, e.chain()),
                }
            }
        }
        for mut disk in disks {
            if self.opts.allow_partitioning && disk_has_table(&disk.device.path) {
                match discover::partition_free_space(&disk.device.path) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(disk = %disk.device.path.display(), partitions = n, "partitioned free space");
                        disk = self.sysfs.disk(&disk.device.name)?;
                    }
                    Err(e) => {
                        tracing::warn!(disk = %disk.device.path.display(), error = %e.chain(), "cannot partition free space")
                    }
                }
            }
            if disk.partitions.is_empty() {
                match discover::probe(&disk.device.path) {
                    Ok(p) if p.pttype.is_some() && p.fstype.is_none() => {
                        let reason = format!(
                            "has a {} partition table without partitions; set [storage] allow_partitioning to use its free space",
                            p.pttype.unwrap_or_default()
                        );
                        self.broken_device(&disk.device.path, reason);
                    }
                    _ => out.push(disk.device),
                }
            } else {
                out.extend(disk.partitions);
            }
        }
        Ok(out)
    }

    fn broken_device(&mut self, path: &Path, reason: String) {
        tracing::warn!(device = %path.display(), %reason, "device not used");
        self.broken_devices.push(BrokenDevice {
            path: path.display().to_string(),
            reason,
            ..Default::default()
        });
    }

    /// Make a pool of a device: format it if it is blank, mount it, enable quotas, repair, type it.
    fn open_pool(&self, dev: &BlockDevice) -> Result<Pool, Unusable> {
        let probe = discover::probe(&dev.path)
            .map_err(|e| Unusable::Device(format!("cannot probe: {}", e.chain())))?;
        if probe.label.as_deref() == Some(PXE_LABEL) {
            return Err(Unusable::Device(format!(
                "PXE partition (label {PXE_LABEL}); never used for storage"
            )));
        }
        let marker = self.format_marker(dev);
        // A format this storaged started and never finished (killed): redo it, the pool holds nothing yet.
        if let Ok(started) = std::fs::read_to_string(&marker) {
            let started = started.trim().to_string();
            let ours = probe.fstype.as_deref() == Some("btrfs")
                && probe.uuid.as_deref() == Some(started.as_str());
            if probe.is_blank() || ours {
                tracing::warn!(device = %dev.path.display(), uuid = %started, "redoing an interrupted format");
                btrfs::wipe(&dev.path)
                    .map_err(|e| Unusable::Device(format!("cannot wipe: {}", e.chain())))?;
                btrfs::mkfs(&dev.path, &started, true)
                    .map_err(|e| Unusable::Device(format!("cannot format: {}", e.chain())))?;
                return self.setup_pool(dev, started, &marker);
            }
            let _ = std::fs::remove_file(&marker);
        }
        let uuid = match probe.fstype.as_deref() {
            Some("btrfs") => probe
                .uuid
                .clone()
                .ok_or_else(|| Unusable::Device("btrfs filesystem without a uuid".into()))?,
            Some(other) => {
                let label = probe
                    .label
                    .as_deref()
                    .map(|l| format!(" labelled {l:?}"))
                    .unwrap_or_default();
                return Err(Unusable::Device(format!(
                    "holds a foreign {other} filesystem{label}; storaged never formats it"
                )));
            }
            None if probe.pttype.is_some() => {
                return Err(Unusable::Device(format!(
                    "holds a {} partition table",
                    probe.pttype.unwrap_or_default()
                )));
            }
            None => {
                let uuid = uuid::Uuid::new_v4().to_string();
                tracing::info!(device = %dev.path.display(), %uuid, "formatting blank device as a new btrfs pool");
                std::fs::create_dir_all(&self.opts.mount_root)
                    .and_then(|_| std::fs::write(&marker, &uuid))
                    .map_err(|e| {
                        Unusable::Device(format!(
                            "cannot record the format in {}: {e}",
                            marker.display()
                        ))
                    })?;
                failpoint::hit("pool-format:marked");
                btrfs::mkfs(&dev.path, &uuid, false).map_err(|e| {
                    let _ = std::fs::remove_file(&marker);
                    Unusable::Device(format!("cannot format: {}", e.chain()))
                })?;
                uuid
            }
        };
        self.setup_pool(dev, uuid, &marker)
    }

    /// The marker of a format in progress on a device: `<mount_root>/.zos-formatting-<device name>`, holding
    /// the new filesystem's UUID until the pool is mounted and set up.
    fn format_marker(&self, dev: &BlockDevice) -> PathBuf {
        self.opts
            .mount_root
            .join(format!(".zos-formatting-{}", dev.name))
    }

    /// Mount a pool, enable quotas, type it and repair it; then drop the format marker if there is one.
    fn setup_pool(&self, dev: &BlockDevice, uuid: String, marker: &Path) -> Result<Pool, Unusable> {
        let path = self.opts.mount_root.join(&uuid);
        let broken = |e: Error| Unusable::Pool(uuid.clone(), e.chain());
        match mounts::mount_at(&path).map_err(broken)? {
            Some(m) if Path::new(&m.source) == dev.path && m.root == Path::new("/") => {
                tracing::info!(pool = %uuid, "pool already mounted");
            }
            Some(m) => {
                return Err(Unusable::Pool(
                    uuid.clone(),
                    format!(
                        "{} is already a mount point of {}",
                        path.display(),
                        m.source
                    ),
                ));
            }
            None => mounts::mount_btrfs(&dev.path, &path).map_err(broken)?,
        }
        btrfs::quota_enable(&path).map_err(broken)?;
        let kind = match Pool::read_seektime(&path) {
            Some(k) => k,
            None => {
                let k = if dev.rotational {
                    DeviceType::Hdd
                } else {
                    DeviceType::Ssd
                };
                Pool::write_seektime(&path, k).map_err(broken)?;
                k
            }
        };
        let pool = Pool::new(
            uuid.clone(),
            dev.path.clone(),
            dev.name.clone(),
            dev.disk.clone(),
            path,
            kind,
            dev.size,
        );
        for e in repair(&pool) {
            tracing::warn!(pool = %pool.name, error = %e.chain(), "repair step failed");
        }
        if let Err(e) = std::fs::remove_file(marker)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(marker = %marker.display(), error = %e, "cannot remove the format marker");
        }
        Ok(pool)
    }

    // ---------------------------------------------------------------------------------------------------
    // Pools and capacity

    /// Every pool.
    pub fn pools(&self) -> Vec<PoolInfo> {
        let books = lock(&self.books);
        self.pools
            .iter()
            .map(|p| PoolInfo {
                name: p.name.clone(),
                device: p.device.clone(),
                path: p.path.clone(),
                kind: p.kind,
                size: p.size,
                mounted: p.mounted(),
                reserved: books.get(&p.name).map(Book::reserved).unwrap_or(0),
            })
            .collect()
    }

    fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Device types that hold volumes, disks and the cache: SSD, and HDD when `missing-ssd` is set.
    fn ssd_first(&self) -> Vec<DeviceType> {
        if self.opts.missing_ssd {
            vec![DeviceType::Ssd, DeviceType::Hdd]
        } else {
            vec![DeviceType::Ssd]
        }
    }

    /// Reserve `size` bytes on the best pool of `kinds`: SSD before HDD, mounted before unmounted (no disk
    /// is woken up needlessly), most room first.
    fn place(&self, what: &str, size: u64, kinds: &[DeviceType]) -> Result<Reservation<'_>> {
        let mut books = lock(&self.books);
        let mut best: Option<(&Arc<Pool>, u64)> = None;
        let mut most_free = 0;
        let rank = |p: &Pool, free: u64| {
            (
                kinds
                    .iter()
                    .position(|k| *k == p.kind)
                    .unwrap_or(usize::MAX),
                !p.mounted(),
                u64::MAX - free,
            )
        };
        for p in self.pools.iter().filter(|p| kinds.contains(&p.kind)) {
            let reserved = books.get(&p.name).map(Book::reserved).unwrap_or(0);
            let free = p.size.saturating_sub(reserved);
            most_free = most_free.max(free);
            if free < size {
                continue;
            }
            if best.is_none_or(|(b, bfree)| rank(p, free) < rank(b, bfree)) {
                best = Some((p, free));
            }
        }
        let Some((pool, _)) = best else {
            let kinds: Vec<&str> = kinds.iter().map(|k| kind_word(*k)).collect();
            let count = self
                .pools
                .iter()
                .filter(|p| kinds.contains(&kind_word(p.kind)))
                .count();
            return Err(Error::NoSpace(format!(
                "not enough space for {what} of {size} bytes: the {} pool with most room has {most_free} bytes free ({count} such pools)",
                kinds.join("/")
            )));
        };
        books.entry(pool.name.clone()).or_default().pending += size;
        Ok(Reservation {
            module: self,
            pool: pool.clone(),
            size,
            done: false,
        })
    }

    /// Reserve `size` more bytes on a given pool.
    fn reserve_on(&self, pool: &Arc<Pool>, what: &str, size: u64) -> Result<Reservation<'_>> {
        let mut books = lock(&self.books);
        let book = books.entry(pool.name.clone()).or_default();
        let free = pool.size.saturating_sub(book.reserved());
        if free < size {
            return Err(Error::NoSpace(format!(
                "not enough space for {what}: it needs {size} more bytes and pool {} has {free} bytes free",
                pool.name
            )));
        }
        book.pending += size;
        Ok(Reservation {
            module: self,
            pool: pool.clone(),
            size,
            done: false,
        })
    }

    fn set_entry(&self, pool: &Pool, name: &str, value: Option<u64>) {
        let mut books = lock(&self.books);
        let book = books.entry(pool.name.clone()).or_default();
        match value {
            Some(v) => {
                book.entries.insert(name.to_string(), v);
            }
            None => {
                book.entries.remove(name);
            }
        }
    }

    fn sub_entry(&self, pool: &Pool, name: &str, value: u64) {
        let mut books = lock(&self.books);
        if let Some(v) = books
            .get_mut(&pool.name)
            .and_then(|b| b.entries.get_mut(name))
        {
            *v = v.saturating_sub(value);
        }
    }

    /// Total bytes of the pools of a kind.
    pub fn total(&self, kind: DeviceType) -> u64 {
        self.pools
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.size)
            .sum()
    }

    /// Pools that could not be mounted.
    pub fn broken_pools(&self) -> Vec<BrokenPool> {
        self.broken_pools.clone()
    }

    /// Devices that could not be used.
    pub fn broken_devices(&self) -> Vec<BrokenDevice> {
        self.broken_devices.clone()
    }

    /// Size and reserved bytes of every pool (the real use of zdb devices is refreshed).
    pub fn metrics(&self) -> Result<Vec<PoolMetrics>> {
        for pool in &self.pools {
            if pool.mounted()
                && let Some((_, q)) = pool.subvolume(ZDB, false)?
            {
                self.set_entry(pool, ZDB, Some(q.rfer));
            }
        }
        Ok(self
            .pools()
            .into_iter()
            .map(|p| PoolMetrics {
                name: p.name,
                kind: p.kind,
                size: p.size,
                used: p.reserved,
            })
            .collect())
    }

    /// Usage and I/O counters of every pool.
    pub fn pools_stats(&self) -> PoolsStats {
        let mut out = PoolsStats::new();
        for pool in &self.pools {
            let mut stats = PoolStats {
                fstype: "btrfs".into(),
                ..Default::default()
            };
            if pool.mounted() {
                if let Ok(st) = nix::sys::statvfs::statvfs(&pool.path) {
                    let frsize = st.fragment_size();
                    let blocks = st.blocks();
                    let bfree = st.blocks_free();
                    let bavail = st.blocks_available();
                    stats.path = pool.path.display().to_string();
                    stats.total = blocks * frsize;
                    stats.free = bavail * frsize;
                    stats.used = (blocks - bfree) * frsize;
                    if stats.used + stats.free > 0 {
                        stats.used_percent =
                            stats.used as f64 / (stats.used + stats.free) as f64 * 100.0;
                    }
                    stats.inodes_total = st.files();
                    stats.inodes_free = st.files_free();
                    stats.inodes_used = stats.inodes_total.saturating_sub(stats.inodes_free);
                    if stats.inodes_total > 0 {
                        stats.inodes_used_percent =
                            stats.inodes_used as f64 / stats.inodes_total as f64 * 100.0;
                    }
                }
            } else {
                stats.total = pool.size;
                stats.free = pool.size;
            }
            if let Some(line) = self.sysfs.stat(&pool.block) {
                stats
                    .counters
                    .insert(pool.block.clone(), parse_block_stat(&pool.block, &line));
            }
            out.insert(pool.name.clone(), stats);
        }
        out
    }

    // ---------------------------------------------------------------------------------------------------
    // Volumes

    fn find_volume(&self, name: &str) -> Result<Option<(Arc<Pool>, Volume)>> {
        for pool in &self.pools {
            if let Some((_, q)) = pool.subvolume(name, false)? {
                return Ok(Some((pool.clone(), volume_of(pool, name, q))));
            }
        }
        Ok(None)
    }

    /// Create a volume (idempotent for the same name and size).
    pub fn volume_create(&self, name: &str, size: u64) -> Result<Volume> {
        validate_volume_name(name)?;
        self.create_volume(name, size, &self.ssd_first())
    }

    fn create_volume(&self, name: &str, size: u64, kinds: &[DeviceType]) -> Result<Volume> {
        if size == 0 {
            return Err(Error::InvalidInput(format!(
                "volume {name:?}: size must be more than 0 bytes"
            )));
        }
        let name_lock = self.names.get(&format!("volume:{name}"));
        let _name = lock(&name_lock);
        if let Some((_, vol)) = self.find_volume(name)? {
            if vol.usage.size == size {
                return Ok(vol);
            }
            return Err(Error::Conflict(format!(
                "volume {name:?} exists with size {} bytes, not {size} (use VolumeUpdate to resize it)",
                vol.usage.size
            )));
        }
        let res = self.place(&format!("volume {name:?}"), size, kinds)?;
        let pool = res.pool.clone();
        let _ops = lock(&pool.ops);
        pool.ensure_mounted()?;
        let staging = pool.path.join(STAGING_DIR);
        std::fs::create_dir_all(&staging).map_err(Error::io("creating", &staging))?;
        let staged = staging.join(name);
        if btrfs::is_subvolume(&staged) {
            btrfs::subvolume_delete(&staged)?;
        }
        btrfs::subvolume_create(&staged)?;
        failpoint::hit("volume-create:staged");
        let publish = || -> Result<()> {
            btrfs::qgroup_limit(&staged, Some(size))?;
            failpoint::hit("volume-create:limited");
            let target = pool.path.join(name);
            std::fs::rename(&staged, &target).map_err(Error::io("publishing", &target))?;
            vdisk::sync_dir(&pool.path)
        };
        if let Err(e) = publish() {
            if let Err(e2) = btrfs::subvolume_delete(&staged) {
                tracing::warn!(path = %staged.display(), error = %e2.chain(), "cannot remove a staged subvolume; the next start will");
            }
            return Err(e);
        }
        res.commit_set(name, size);
        tracing::info!(volume = name, pool = %pool.name, size, "volume created");
        Ok(Volume {
            name: name.to_string(),
            path: pool.path.join(name).display().to_string(),
            usage: Usage { size, used: 0 },
        })
    }

    /// Change a volume's quota.
    pub fn volume_update(&self, name: &str, size: u64) -> Result<()> {
        validate_volume_name(name)?;
        self.update_volume(name, size)
    }

    fn update_volume(&self, name: &str, size: u64) -> Result<()> {
        if size == 0 {
            return Err(Error::InvalidInput(format!(
                "volume {name:?}: size must be more than 0 bytes"
            )));
        }
        let name_lock = self.names.get(&format!("volume:{name}"));
        let _name = lock(&name_lock);
        let (pool, vol) = self.find_volume(name)?.ok_or_else(|| Error::NotFound {
            what: "volume",
            name: name.into(),
        })?;
        if size == vol.usage.size {
            return Ok(());
        }
        let (_, q) = pool.subvolume(name, true)?.ok_or_else(|| Error::NotFound {
            what: "volume",
            name: name.into(),
        })?;
        if size < q.rfer {
            return Err(Error::InvalidInput(format!(
                "volume {name:?} uses {} bytes; it cannot shrink to {size}",
                q.rfer
            )));
        }
        let res = if size > vol.usage.size {
            Some(self.reserve_on(
                &pool,
                &format!("growing volume {name:?}"),
                size - vol.usage.size,
            )?)
        } else {
            None
        };
        let _ops = lock(&pool.ops);
        btrfs::qgroup_limit(&pool.path.join(name), Some(size))?;
        match res {
            Some(r) => r.commit_set(name, size),
            None => self.set_entry(&pool, name, Some(size)),
        }
        tracing::info!(volume = name, pool = %pool.name, from = vol.usage.size, to = size, "volume resized");
        Ok(())
    }

    /// Find a volume.
    pub fn volume_lookup(&self, name: &str) -> Result<Volume> {
        validate_name("volume", name)?;
        if name == VDISKS || name.starts_with(ZDB) {
            return Err(Error::NotFound {
                what: "volume",
                name: name.into(),
            });
        }
        self.find_volume(name)?
            .map(|(_, v)| v)
            .ok_or_else(|| Error::NotFound {
                what: "volume",
                name: name.into(),
            })
    }

    /// Whether a volume exists.
    pub fn volume_exists(&self, name: &str) -> Result<bool> {
        match self.volume_lookup(name) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Delete a volume (nothing to do when it does not exist). A pool left without subvolumes is unmounted.
    pub fn volume_delete(&self, name: &str) -> Result<()> {
        validate_volume_name(name)?;
        let name_lock = self.names.get(&format!("volume:{name}"));
        let _name = lock(&name_lock);
        let Some((pool, _)) = self.find_volume(name)? else {
            tracing::debug!(volume = name, "delete of a volume that does not exist");
            return Ok(());
        };
        let _ops = lock(&pool.ops);
        btrfs::subvolume_delete(&pool.path.join(name))?;
        self.set_entry(&pool, name, None);
        tracing::info!(volume = name, pool = %pool.name, "volume deleted");
        if !pool.is_used()? {
            self.retire(&pool);
        }
        Ok(())
    }

    /// All volumes (not the cache, vdisks or zdb).
    pub fn volume_list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for pool in &self.pools {
            for (s, q) in pool.subvolumes(false)? {
                if s.path == CACHE || s.path == VDISKS || s.path.starts_with(ZDB) {
                    continue;
                }
                out.push(volume_of(pool, &s.path, q));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Unmount a pool that holds nothing (with its `ops` held), after cleaning its stale qgroups.
    fn retire(&self, pool: &Pool) {
        if let Err(e) = btrfs::subvolume_sync(&pool.path) {
            tracing::debug!(pool = %pool.name, error = %e.chain(), "waiting for deleted subvolumes");
        }
        clean_stale_qgroups(pool);
        if let Err(e) = pool.unmount() {
            tracing::warn!(pool = %pool.name, error = %e.chain(), "cannot unmount the unused pool");
            return;
        }
        self.spin_down(pool);
    }

    fn shutdown_unused_pools(&self) {
        for pool in &self.pools {
            let _ops = lock(&pool.ops);
            match pool.is_used() {
                Ok(false) => self.retire(pool),
                Ok(true) => {}
                Err(e) => {
                    tracing::warn!(pool = %pool.name, error = %e.chain(), "cannot list subvolumes")
                }
            }
        }
    }

    /// Put a pool's disk in standby when it is a real rotating disk with no mounted pool left on it.
    fn spin_down(&self, pool: &Pool) {
        if pool.kind != DeviceType::Hdd
            || is_virtual_disk(&pool.disk)
            || !crate::exec::has_program("hdparm")
        {
            return;
        }
        if self
            .pools
            .iter()
            .any(|p| p.disk == pool.disk && p.mounted())
        {
            return;
        }
        let dev = format!("/dev/{}", pool.disk);
        match crate::exec::run("hdparm", &["-y", dev.as_str()]) {
            Ok(_) => tracing::info!(disk = %dev, "disk spun down"),
            Err(e) => tracing::warn!(disk = %dev, error = %e.chain(), "cannot spin the disk down"),
        }
    }

    /// Spin down rotating disks that are active though none of their pools is mounted (hourly task).
    pub fn spin_down_idle_disks(&self) {
        if !crate::exec::has_program("smartctl") {
            return;
        }
        for pool in &self.pools {
            if pool.mounted() || pool.kind != DeviceType::Hdd || is_virtual_disk(&pool.disk) {
                continue;
            }
            let dev = format!("/dev/{}", pool.disk);
            if let Ok(out) =
                crate::exec::run_any("smartctl", &["-i", "-n", "standby", dev.as_str()])
                && out.stdout.contains("ACTIVE")
            {
                self.spin_down(pool);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------
    // The system cache

    fn ensure_cache(&self) -> Result<()> {
        let target = self.opts.cache_path.clone();
        if let Some(m) = mounts::mount_at(&target)? {
            let ours = if m.fstype == "btrfs" && m.root == Path::new("/").join(CACHE) {
                self.pools
                    .iter()
                    .find(|p| Path::new(&m.source) == p.device)
                    .map(|p| CacheState::Pool(p.name.clone()))
            } else if m.fstype == "tmpfs" && m.source == TMPFS_CACHE_SOURCE {
                Some(CacheState::Tmpfs)
            } else {
                None
            };
            if let Some(state) = ours {
                tracing::info!(path = %target.display(), state = ?state, "the cache is already mounted");
                *lock(&self.cache) = Some(state);
                return Ok(());
            }
            // Not storaged's (a sandbox's private tmpfs, a leftover): the cache is mounted over it.
            tracing::info!(path = %target.display(), fstype = %m.fstype, source = %m.source,
                "the cache path holds a mount storaged did not make; mounting the cache over it");
        }
        let kinds = self.ssd_first();
        let mut found = None;
        for kind in &kinds {
            if let Some(p) = self.pools.iter().find(|p| {
                p.kind == *kind && p.mounted() && btrfs::is_subvolume(&p.path.join(CACHE))
            }) {
                found = Some(p.clone());
                break;
            }
        }
        let pool = match found {
            Some(p) => Some(p),
            None => match self.create_volume(CACHE, self.opts.cache_size, &kinds) {
                Ok(_) => self.find_volume(CACHE)?.map(|(p, _)| p),
                Err(e) => {
                    tracing::warn!(error = %e.chain(), "no pool can hold the cache");
                    None
                }
            },
        };
        match pool {
            Some(pool) => {
                mounts::bind(&pool.path.join(CACHE), &target)?;
                if let Err(e) =
                    paths::set_flag(&self.opts.flags_dir, paths::FLAG_LIMITED_CACHE, false)
                {
                    tracing::warn!(error = %e, "cannot clear the limited-cache flag");
                }
                tracing::info!(pool = %pool.name, path = %target.display(), "cache mounted");
                *lock(&self.cache) = Some(CacheState::Pool(pool.name.clone()));
            }
            None => {
                tracing::warn!(path = %target.display(), "running on a limited cache: a {TMPFS_CACHE_SIZE} byte tmpfs");
                paths::set_flag(&self.opts.flags_dir, paths::FLAG_LIMITED_CACHE, true).map_err(
                    Error::io("setting the limited-cache flag in", &self.opts.flags_dir),
                )?;
                mounts::mount_tmpfs(&target, TMPFS_CACHE_SIZE, TMPFS_CACHE_SOURCE)?;
                *lock(&self.cache) = Some(CacheState::Tmpfs);
            }
        }
        Ok(())
    }

    /// Where the cache lives.
    pub fn cache_state(&self) -> Option<CacheState> {
        lock(&self.cache).clone()
    }

    /// The cache volume.
    pub fn cache(&self) -> Result<Volume> {
        match self.cache_state() {
            Some(CacheState::Pool(_)) => {
                self.find_volume(CACHE)?
                    .map(|(_, v)| v)
                    .ok_or_else(|| Error::NotFound {
                        what: "volume",
                        name: CACHE.into(),
                    })
            }
            Some(CacheState::Tmpfs) => Err(Error::Unavailable(
                "the cache is a tmpfs (limited-cache): no pool could hold it".into(),
            )),
            None => Err(Error::Unavailable("the cache is not set up".into())),
        }
    }

    /// One round of the cache's automatic resizing; returns the new quota when it changed.
    pub fn resize_cache(&self) -> Result<Option<u64>> {
        let Some(CacheState::Pool(pool_name)) = self.cache_state() else {
            return Ok(None);
        };
        let Some(pool) = self.pool(&pool_name).cloned() else {
            return Ok(None);
        };
        let name_lock = self.names.get(&format!("volume:{CACHE}"));
        let _name = lock(&name_lock);
        let Some((_, q)) = pool.subvolume(CACHE, true)? else {
            return Ok(None);
        };
        let Some(next) = next_cache_quota(q.max_rfer, q.excl, self.opts.cache_size) else {
            return Ok(None);
        };
        let current = q.max_rfer.unwrap_or(q.excl);
        let res = if next > current {
            Some(self.reserve_on(&pool, "growing the cache", next - current)?)
        } else {
            None
        };
        let _ops = lock(&pool.ops);
        btrfs::qgroup_limit(&pool.path.join(CACHE), Some(next))?;
        match res {
            Some(r) => r.commit_set(CACHE, next),
            None => self.set_entry(&pool, CACHE, Some(next)),
        }
        tracing::info!(pool = %pool.name, used = q.excl, from = ?q.max_rfer, to = next, "cache quota changed");
        Ok(Some(next))
    }

    // ---------------------------------------------------------------------------------------------------
    // Virtual disks

    fn find_disk(&self, name: &str) -> Option<(Arc<Pool>, PathBuf)> {
        self.pools.iter().filter(|p| p.mounted()).find_map(|p| {
            let path = p.path.join(VDISKS).join(name);
            path.is_file().then(|| (p.clone(), path))
        })
    }

    fn disk_of(path: &Path) -> Result<VDisk> {
        let len = std::fs::metadata(path)
            .map_err(Error::io("reading", path))?
            .len();
        Ok(VDisk {
            path: path.display().to_string(),
            size: i64::try_from(len).unwrap_or(i64::MAX),
        })
    }

    /// Create a virtual disk (idempotent for the same name and size).
    pub fn disk_create(&self, name: &str, size: u64) -> Result<VDisk> {
        validate_name("disk", name)?;
        if size == 0 {
            return Err(Error::InvalidInput(format!(
                "disk {name:?}: size must be more than 0 bytes"
            )));
        }
        let name_lock = self.names.get(&format!("disk:{name}"));
        let _name = lock(&name_lock);
        if let Some((_, path)) = self.find_disk(name) {
            let disk = Self::disk_of(&path)?;
            if disk.size as u64 == size {
                return Ok(disk);
            }
            return Err(Error::Conflict(format!(
                "disk {name:?} exists with size {} bytes, not {size} (use DiskResize)",
                disk.size
            )));
        }
        let res = self.place(&format!("disk {name:?}"), size, &self.ssd_first())?;
        let pool = res.pool.clone();
        let dir = pool.path.join(VDISKS);
        {
            let _ops = lock(&pool.ops);
            pool.ensure_mounted()?;
            if !btrfs::is_subvolume(&dir) {
                btrfs::subvolume_create(&dir)?;
                self.set_entry(&pool, VDISKS, Some(0));
            }
        }
        let partial = dir.join(format!(".{name}.partial"));
        let target = dir.join(name);
        let make = || -> Result<()> {
            let _ = std::fs::remove_file(&partial);
            vdisk::create(&partial, size)?;
            failpoint::hit("disk-create:allocated");
            std::fs::rename(&partial, &target).map_err(Error::io("publishing", &target))?;
            vdisk::sync_dir(&dir)
        };
        if let Err(e) = make() {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        res.commit_add(VDISKS);
        tracing::info!(disk = name, pool = %pool.name, size, "disk created");
        Self::disk_of(&target)
    }

    /// Grow a virtual disk.
    pub fn disk_resize(&self, name: &str, size: u64) -> Result<VDisk> {
        validate_name("disk", name)?;
        let name_lock = self.names.get(&format!("disk:{name}"));
        let _name = lock(&name_lock);
        let (pool, path) = self.find_disk(name).ok_or_else(|| Error::NotFound {
            what: "disk",
            name: name.into(),
        })?;
        let current = Self::disk_of(&path)?.size as u64;
        if size < current {
            return Err(Error::InvalidInput(format!(
                "disk {name:?} is {current} bytes; disks only grow, not to {size}"
            )));
        }
        if size == current {
            return Self::disk_of(&path);
        }
        let res = self.reserve_on(&pool, &format!("growing disk {name:?}"), size - current)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(Error::io("opening", &path))?;
        vdisk::allocate(&file, &path, size)?;
        file.sync_all().map_err(Error::io("syncing", &path))?;
        res.commit_add(VDISKS);
        tracing::info!(disk = name, from = current, to = size, "disk grown");
        Self::disk_of(&path)
    }

    /// Write a raw image onto a blank disk.
    pub fn disk_write(&self, name: &str, image: &Path) -> Result<()> {
        validate_name("disk", name)?;
        let name_lock = self.names.get(&format!("disk:{name}"));
        let _name = lock(&name_lock);
        let (_, path) = self.find_disk(name).ok_or_else(|| Error::NotFound {
            what: "disk",
            name: name.into(),
        })?;
        let meta = std::fs::metadata(image)
            .map_err(|e| Error::InvalidInput(format!("image {}: {e}", image.display())))?;
        if !meta.is_file() {
            return Err(Error::InvalidInput(format!(
                "image {} is not a regular file",
                image.display()
            )));
        }
        let disk_size = std::fs::metadata(&path)
            .map_err(Error::io("reading", &path))?
            .len();
        if meta.len() > disk_size {
            return Err(Error::InvalidInput(format!(
                "image {} ({} bytes) is bigger than disk {name:?} ({disk_size} bytes)",
                image.display(),
                meta.len()
            )));
        }
        let found = discover::probe(&path)?;
        if !found.is_blank() {
            tracing::info!(disk = name, found = ?found, "disk already holds data; image not written");
            return Ok(());
        }
        self.with_marker(&path, name, "writing", || {
            vdisk::write_image(image, &path, || failpoint::hit("disk-write:partial"))
        })?;
        tracing::info!(disk = name, image = %image.display(), "image written");
        Ok(())
    }

    /// Put a btrfs filesystem on a disk unless it holds one already.
    pub fn disk_format(&self, name: &str) -> Result<()> {
        validate_name("disk", name)?;
        let name_lock = self.names.get(&format!("disk:{name}"));
        let _name = lock(&name_lock);
        let (_, path) = self.find_disk(name).ok_or_else(|| Error::NotFound {
            what: "disk",
            name: name.into(),
        })?;
        let found = discover::probe(&path)?;
        if !found.is_blank() {
            tracing::info!(disk = name, found = ?found, "disk already formatted");
            return Ok(());
        }
        self.with_marker(&path, name, "formatting", || {
            failpoint::hit("disk-format:started");
            btrfs::mkfs_file(&path)
        })?;
        tracing::info!(disk = name, "disk formatted");
        Ok(())
    }

    /// Run `work` on a disk with a marker file that says the disk is being changed; when `work` fails the
    /// disk is blanked, so a half-written disk never looks ready.
    fn with_marker(
        &self,
        path: &Path,
        name: &str,
        what: &str,
        work: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let marker = dir.join(format!(".{name}.{what}"));
        std::fs::write(&marker, what).map_err(Error::io("writing", &marker))?;
        vdisk::sync_dir(dir)?;
        if let Err(e) = work() {
            if let Err(e2) = blank_disk(path) {
                tracing::error!(disk = name, error = %e2.chain(), "cannot blank the disk after a failed write; the next start will");
                return Err(e);
            }
            let _ = std::fs::remove_file(&marker);
            return Err(e);
        }
        std::fs::remove_file(&marker).map_err(Error::io("removing", &marker))?;
        vdisk::sync_dir(dir)
    }

    /// Find a disk.
    pub fn disk_lookup(&self, name: &str) -> Result<VDisk> {
        validate_name("disk", name)?;
        let (_, path) = self.find_disk(name).ok_or_else(|| Error::NotFound {
            what: "disk",
            name: name.into(),
        })?;
        Self::disk_of(&path)
    }

    /// Whether a disk exists.
    pub fn disk_exists(&self, name: &str) -> Result<bool> {
        validate_name("disk", name)?;
        Ok(self.find_disk(name).is_some())
    }

    /// Delete a disk (nothing to do when it does not exist).
    pub fn disk_delete(&self, name: &str) -> Result<()> {
        validate_name("disk", name)?;
        let name_lock = self.names.get(&format!("disk:{name}"));
        let _name = lock(&name_lock);
        let Some((pool, path)) = self.find_disk(name) else {
            return Ok(());
        };
        let size = std::fs::metadata(&path)
            .map_err(Error::io("reading", &path))?
            .len();
        std::fs::remove_file(&path).map_err(Error::io("removing", &path))?;
        self.sub_entry(&pool, VDISKS, size);
        tracing::info!(disk = name, pool = %pool.name, "disk deleted");
        Ok(())
    }

    /// All disks.
    pub fn disk_list(&self) -> Result<Vec<VDisk>> {
        let mut out = Vec::new();
        for pool in self.pools.iter().filter(|p| p.mounted()) {
            let dir = pool.path.join(VDISKS);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if e.file_name().to_string_lossy().starts_with('.') || !path.is_file() {
                    continue;
                }
                out.push(Self::disk_of(&path)?);
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------------------
    // zdb devices

    fn device_of(&self, pool: &Pool, used: u64) -> Device {
        Device {
            id: pool.name.clone(),
            path: pool.path.join(ZDB).display().to_string(),
            usage: Usage {
                size: pool.size,
                used,
            },
        }
    }

    /// zdb devices: mounted HDD pools with a `zdb` subvolume.
    pub fn devices(&self) -> Result<Vec<Device>> {
        let mut out = Vec::new();
        for pool in self.pools.iter().filter(|p| p.kind == DeviceType::Hdd) {
            if let Some((_, q)) = pool.subvolume(ZDB, false)? {
                out.push(self.device_of(pool, q.rfer));
            }
        }
        Ok(out)
    }

    /// Allocate a zdb device on the first HDD pool with `min` bytes free and no zdb device yet.
    pub fn device_allocate(&self, min: u64) -> Result<Device> {
        let name_lock = self.names.get("device:zdb");
        let _name = lock(&name_lock);
        let mut candidates: Vec<(Arc<Pool>, u64)> = {
            let books = lock(&self.books);
            self.pools
                .iter()
                .filter(|p| p.kind == DeviceType::Hdd && !btrfs::is_subvolume(&p.path.join(ZDB)))
                .map(|p| {
                    (
                        p.clone(),
                        p.size
                            .saturating_sub(books.get(&p.name).map(Book::reserved).unwrap_or(0)),
                    )
                })
                .filter(|(_, free)| *free >= min)
                .collect()
        };
        candidates.sort_by_key(|(p, free)| (!p.mounted(), u64::MAX - free));
        let Some((pool, _)) = candidates.into_iter().next() else {
            return Err(Error::NoSpace(format!(
                "no hdd pool without a zdb device has {min} bytes free"
            )));
        };
        let _ops = lock(&pool.ops);
        pool.ensure_mounted()?;
        let path = pool.path.join(ZDB);
        btrfs::subvolume_create(&path)?;
        self.set_entry(&pool, ZDB, Some(0));
        tracing::info!(pool = %pool.name, "zdb device allocated");
        Ok(self.device_of(&pool, 0))
    }

    /// Find a zdb device by its ID (the pool name).
    pub fn device_lookup(&self, name: &str) -> Result<Device> {
        let not_found = || Error::NotFound {
            what: "zdb device",
            name: name.into(),
        };
        let pool = self.pool(name).ok_or_else(not_found)?;
        let (_, q) = pool.subvolume(ZDB, false)?.ok_or_else(not_found)?;
        Ok(self.device_of(pool, q.rfer))
    }
}

fn volume_of(pool: &Pool, name: &str, q: btrfs::Qgroup) -> Volume {
    Volume {
        name: name.to_string(),
        path: pool.path.join(name).display().to_string(),
        usage: Usage {
            size: q.max_rfer.unwrap_or(q.rfer),
            used: q.rfer,
        },
    }
}

/// Whether a disk is virtual (loop, virtio, xen): never spun down.
fn is_virtual_disk(disk: &str) -> bool {
    ["loop", "vd", "xvd", "nbd", "zram", "ram"]
        .iter()
        .any(|p| disk.starts_with(p))
}

/// Whether a disk has a partition table (blkid finds one).
fn disk_has_table(path: &Path) -> bool {
    discover::probe(path)
        .map(|p| p.pttype.is_some())
        .unwrap_or(false)
}

/// Parse `/sys/class/block/<dev>/stat`.
fn parse_block_stat(name: &str, line: &str) -> IoCounters {
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    IoCounters {
        read_count: at(0),
        merged_read_count: at(1),
        read_bytes: at(2) * 512,
        read_time: at(3),
        write_count: at(4),
        merged_write_count: at(5),
        write_bytes: at(6) * 512,
        write_time: at(7),
        iops_in_progress: at(8),
        io_time: at(9),
        weighted_io: at(10),
        name: name.to_string(),
        ..Default::default()
    }
}

/// Re-create a disk file blank, with the same size and NOCOW.
fn blank_disk(path: &Path) -> Result<()> {
    let size = std::fs::metadata(path)
        .map_err(Error::io("reading", path))?
        .len();
    let tmp = path.with_file_name(format!(
        ".{}.blank",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let _ = std::fs::remove_file(&tmp);
    vdisk::create(&tmp, size)?;
    std::fs::rename(&tmp, path).map_err(Error::io("replacing", path))?;
    vdisk::sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// Destroy qgroups whose subvolume is gone (a qgroup still busy is left for later).
fn clean_stale_qgroups(pool: &Pool) {
    let (Ok(list), Ok(groups)) = (
        btrfs::subvolume_list(&pool.path),
        btrfs::qgroup_show(&pool.path, false),
    ) else {
        return;
    };
    for id in groups.keys() {
        if *id != 5 && !list.iter().any(|s| s.id == *id) {
            match btrfs::qgroup_destroy(&pool.path, *id) {
                Ok(()) => {
                    tracing::info!(pool = %pool.name, qgroup = %format!("0/{id}"), "stale qgroup destroyed")
                }
                Err(e) => {
                    tracing::debug!(pool = %pool.name, qgroup = %format!("0/{id}"), error = %e.chain(), "stale qgroup not destroyed yet")
                }
            }
        }
    }
}

/// Undo what an interrupted run left in a pool: staged subvolumes, partial disk files, disks whose write
/// or format did not finish; then destroy stale qgroups. Returns the errors of the steps that failed.
pub(crate) fn repair(pool: &Pool) -> Vec<Error> {
    let mut errors = Vec::new();
    let mut deleted = false;
    match btrfs::subvolume_list(&pool.path) {
        Ok(list) => {
            // Deepest first, so nested leftovers go before their parents.
            let mut staged: Vec<_> = list
                .into_iter()
                .filter(|s| s.path.starts_with(&format!("{STAGING_DIR}/")))
                .collect();
            staged.sort_by_key(|s| std::cmp::Reverse(s.path.len()));
            for s in staged {
                let path = pool.path.join(&s.path);
                match btrfs::subvolume_delete(&path) {
                    Ok(()) => {
                        tracing::warn!(pool = %pool.name, subvolume = %s.path, "removed a subvolume an interrupted call left unfinished");
                        deleted = true;
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    let dir = pool.path.join(VDISKS);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for file in &names {
            let Some(hidden) = file.strip_prefix('.') else {
                continue;
            };
            let path = dir.join(file);
            if hidden.ends_with(".partial") || hidden.ends_with(".blank") {
                tracing::warn!(pool = %pool.name, file = %file, "removed a disk file an interrupted call left unfinished");
                if let Err(e) = std::fs::remove_file(&path) {
                    errors.push(Error::io("removing", &path)(e));
                }
            } else if let Some(disk) = hidden
                .strip_suffix(".writing")
                .or_else(|| hidden.strip_suffix(".formatting"))
            {
                let disk_path = dir.join(disk);
                if disk_path.is_file() {
                    tracing::warn!(pool = %pool.name, disk, "blanking a disk whose write was interrupted");
                    if let Err(e) = blank_disk(&disk_path) {
                        errors.push(e);
                        continue;
                    }
                }
                if let Err(e) = std::fs::remove_file(&path) {
                    errors.push(Error::io("removing", &path)(e));
                }
            }
        }
    }
    if deleted && let Err(e) = btrfs::subvolume_sync(&pool.path) {
        errors.push(e);
    }
    clean_stale_qgroups(pool);
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_or_hide() {
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "..",
            "a b",
            "a\0b",
            &"x".repeat(MAX_NAME + 1),
        ] {
            assert!(
                validate_name("disk", bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
        for good in ["vm1-disk0", "12-34-name_1", "a.b", "x@y:z+w"] {
            validate_name("disk", good).unwrap();
        }
        let err = validate_volume_name("zdb-1").unwrap_err();
        assert!(err.to_string().contains("zdb prefix is reserved"), "{err}");
        assert!(validate_volume_name("zos-cache").is_err());
        assert!(validate_volume_name("vdisks").is_err());
        assert_eq!(
            validate_name("disk", "../x").unwrap_err().kind(),
            "invalid_input"
        );
    }

    #[test]
    fn cache_quota_policy_matches_zero_os() {
        const G: u64 = 1 << 30;
        let unit = 5 * G;
        // No quota: max(unit, 2 × used).
        assert_eq!(next_cache_quota(None, G, unit), Some(5 * G));
        assert_eq!(next_cache_quota(None, 4 * G, unit), Some(8 * G));
        // At or above 60 %: one more unit.
        assert_eq!(next_cache_quota(Some(5 * G), 3 * G, unit), Some(10 * G));
        // Between 20 % and 60 %: unchanged.
        assert_eq!(next_cache_quota(Some(10 * G), 3 * G, unit), None);
        // Below 20 % and above one unit: floor(2 × used / unit) × unit + unit.
        assert_eq!(next_cache_quota(Some(20 * G), G, unit), Some(5 * G));
        assert_eq!(next_cache_quota(Some(40 * G), 7 * G, unit), Some(15 * G));
        // Below 20 % at one unit: unchanged.
        assert_eq!(next_cache_quota(Some(5 * G), 0, unit), None);
    }

    #[test]
    fn block_stat_counters() {
        let c = parse_block_stat("loop3", "  100 2 800 10 50 1 400 20 0 30 40 0 0 0 0");
        assert_eq!(
            (
                c.read_count,
                c.read_bytes,
                c.write_count,
                c.write_bytes,
                c.io_time
            ),
            (100, 800 * 512, 50, 400 * 512, 30)
        );
        assert_eq!(c.name, "loop3");
    }
}
