//! A pool: one btrfs filesystem on one device (a whole disk or a partition), mounted at
//! `<mount_root>/<filesystem uuid>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use zos_api::storage::DeviceType;

use crate::btrfs::{self, Qgroup, Subvolume};
use crate::error::{Error, Result};
use crate::mounts;

/// The file in a pool's root recording its device type, as Zero-OS writes it: the bare word `ssd` or `hdd`.
pub const SEEKTIME_FILE: &str = ".seektime";
/// Where subvolumes are made before they are complete; anything found here at start is removed.
pub const STAGING_DIR: &str = ".zos-staging";
/// The subvolume holding virtual disk files.
pub const VDISKS: &str = "vdisks";
/// The zdb device subvolume of an HDD pool.
pub const ZDB: &str = "zdb";
/// The system cache subvolume.
pub const CACHE: &str = "zos-cache";

/// One pool.
#[derive(Debug)]
pub struct Pool {
    /// The filesystem UUID: the pool's name, and the name of its mount point, forever.
    pub name: String,
    /// The device node (`/dev/sdb`, `/dev/loop3p1`).
    pub device: PathBuf,
    /// Kernel name of the device (`sdb`, `loop3p1`).
    pub block: String,
    /// Kernel name of the whole disk the device is on.
    pub disk: String,
    /// `<mount_root>/<name>`.
    pub path: PathBuf,
    pub kind: DeviceType,
    /// Bytes of the device.
    pub size: u64,
    /// Serialises the pool's structural changes: mount, unmount, subvolume creation and deletion.
    pub(crate) ops: Mutex<()>,
    mounted: AtomicBool,
}

impl Pool {
    pub(crate) fn new(
        name: String,
        device: PathBuf,
        block: String,
        disk: String,
        path: PathBuf,
        kind: DeviceType,
        size: u64,
    ) -> Pool {
        Pool {
            name,
            device,
            block,
            disk,
            path,
            kind,
            size,
            ops: Mutex::new(()),
            mounted: AtomicBool::new(true),
        }
    }

    /// Whether the pool is mounted (as far as storaged did it).
    pub fn mounted(&self) -> bool {
        self.mounted.load(Ordering::SeqCst)
    }

    /// Mount the pool if it is not. Call with `ops` held.
    pub(crate) fn ensure_mounted(&self) -> Result<()> {
        if self.mounted() {
            return Ok(());
        }
        match mounts::mount_at(&self.path)? {
            Some(m) if Path::new(&m.source) == self.device => {}
            Some(m) => {
                return Err(Error::Unavailable(format!(
                    "pool {}: {} is a mount point of {}",
                    self.name,
                    self.path.display(),
                    m.source
                )));
            }
            None => {
                tracing::info!(pool = %self.name, device = %self.device.display(), "mounting pool");
                mounts::mount_btrfs(&self.device, &self.path)?;
            }
        }
        self.mounted.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Unmount the pool. Call with `ops` held.
    pub(crate) fn unmount(&self) -> Result<()> {
        if !self.mounted() {
            return Ok(());
        }
        if mounts::mount_at(&self.path)?.is_some() {
            mounts::unmount(&self.path)?;
        }
        self.mounted.store(false, Ordering::SeqCst);
        tracing::info!(pool = %self.name, "pool unmounted (unused)");
        Ok(())
    }

    /// The published subvolumes (top level, not hidden) with their qgroups.
    pub(crate) fn subvolumes(&self, sync: bool) -> Result<Vec<(Subvolume, Qgroup)>> {
        if !self.mounted() {
            return Ok(Vec::new());
        }
        let listed = btrfs::subvolume_list(&self.path)
            .and_then(|l| Ok((l, btrfs::qgroup_show(&self.path, sync)?)));
        let (list, groups) = match listed {
            Ok(v) => v,
            // Unmounted meanwhile (its last subvolume was deleted): it holds nothing.
            Err(_) if !self.mounted() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(list
            .into_iter()
            .filter(|s| is_published(&s.path))
            .map(|s| {
                let q = groups.get(&s.id).copied().unwrap_or_default();
                (s, q)
            })
            .collect())
    }

    /// One published subvolume with its qgroup.
    pub(crate) fn subvolume(&self, name: &str, sync: bool) -> Result<Option<(Subvolume, Qgroup)>> {
        if !self.mounted() || !btrfs::is_subvolume(&self.path.join(name)) {
            return Ok(None);
        }
        Ok(self
            .subvolumes(sync)?
            .into_iter()
            .find(|(s, _)| s.path == name))
    }

    /// Whether the pool holds any published subvolume.
    pub(crate) fn is_used(&self) -> Result<bool> {
        Ok(btrfs::subvolume_list(&self.path)?
            .iter()
            .any(|s| is_published(&s.path)))
    }

    /// Bytes counted against the pool for each published subvolume: a volume's quota, the sum of the
    /// virtual disk sizes for `vdisks`, the real use of a subvolume without quota.
    pub(crate) fn book_entries(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for (s, q) in self.subvolumes(false)? {
            let bytes = if s.path == VDISKS {
                vdisks_bytes(&self.path.join(VDISKS))?
            } else {
                q.max_rfer.unwrap_or(q.rfer)
            };
            out.insert(s.path, bytes);
        }
        Ok(out)
    }

    /// The recorded device type, if any.
    pub(crate) fn read_seektime(path: &Path) -> Option<DeviceType> {
        match std::fs::read_to_string(path.join(SEEKTIME_FILE))
            .ok()?
            .trim()
        {
            "ssd" | "SSD" => Some(DeviceType::Ssd),
            "hdd" | "HDD" => Some(DeviceType::Hdd),
            _ => None,
        }
    }

    /// Record the device type.
    pub(crate) fn write_seektime(path: &Path, kind: DeviceType) -> Result<()> {
        let word = match kind {
            DeviceType::Ssd => "ssd",
            DeviceType::Hdd => "hdd",
        };
        let file = path.join(SEEKTIME_FILE);
        std::fs::write(&file, word).map_err(Error::io("writing", &file))
    }
}

/// A subvolume path that is a published object: top level, not hidden.
pub(crate) fn is_published(path: &str) -> bool {
    !path.contains('/') && !path.starts_with('.')
}

/// Sum of the sizes of the virtual disk files (hidden files are in-flight work, not disks).
pub(crate) fn vdisks_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("reading", dir)(e)),
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if let Ok(m) = entry.metadata()
            && m.is_file()
        {
            total += m.len();
        }
    }
    Ok(total)
}
