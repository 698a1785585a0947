//! Finding the disks without udev: `/sys/block` for devices, partitions, sizes, the rotational flag and USB,
//! and `blkid -p` (a low-level probe of the device itself, no cache) for filesystems and partition tables.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::exec;

/// Smallest free region turned into a partition when partitioning is allowed (as Zero-OS: 5 GiB).
pub const MIN_PARTITION: u64 = 5 << 30;

/// What `blkid -p` found on a device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// Filesystem or signature type (`btrfs`, `ext4`, `swap`, `linux_raid_member`, ...).
    pub fstype: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// Partition table type (`gpt`, `dos`).
    pub pttype: Option<String>,
}

impl Probe {
    /// Nothing at all was found: the device may be formatted.
    pub fn is_blank(&self) -> bool {
        self.fstype.is_none() && self.pttype.is_none()
    }
}

/// Parse `blkid -p -o export` output.
pub fn parse_blkid_export(text: &str) -> Probe {
    let mut kv = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            kv.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let get = |k: &str| kv.get(k).filter(|v| !v.is_empty()).cloned();
    Probe {
        fstype: get("TYPE"),
        uuid: get("UUID"),
        label: get("LABEL"),
        pttype: get("PTTYPE"),
    }
}

/// Probe a device or file with `blkid -p`. Exit status 2 means nothing was found.
pub fn probe(path: &Path) -> Result<Probe> {
    let args = [
        "-p".as_ref(),
        "-o".as_ref(),
        "export".as_ref(),
        path.as_os_str(),
    ];
    let out = exec::run_any("blkid", &args)?;
    match out.code {
        Some(0) => Ok(parse_blkid_export(&out.stdout)),
        Some(2) => Ok(Probe::default()),
        _ => Err(exec::failed(
            &format!("blkid -p -o export {}", path.display()),
            &out,
        )),
    }
}

/// A block device as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name (`sda`, `loop3`, `loop3p1`, `nvme0n1p2`).
    pub name: String,
    /// `/dev/<name>`.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// The kernel's rotational flag (of the whole disk for a partition).
    pub rotational: bool,
    /// The whole disk's kernel name (itself for a disk).
    pub disk: String,
    /// Whether this is a partition.
    pub is_partition: bool,
}

/// A disk and its partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    pub device: BlockDevice,
    pub partitions: Vec<BlockDevice>,
}

/// Where sysfs is (a test may point elsewhere).
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs {
            root: PathBuf::from("/sys"),
        }
    }
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

impl Sysfs {
    /// A sysfs rooted at `root` (for tests).
    pub fn at(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    fn block(&self, name: &str) -> PathBuf {
        self.root.join("block").join(name)
    }

    /// The disk named `name` (a directory in `/sys/block`) with its partitions.
    pub fn disk(&self, name: &str) -> Result<Disk> {
        let dir = self.block(name);
        let rotational = read_trim(&dir.join("queue/rotational")).as_deref() == Some("1");
        let size = sectors(&dir.join("size"))?;
        let mut partitions = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(Error::io("reading", &dir))?;
        for entry in entries.flatten() {
            let pname = entry.file_name().to_string_lossy().into_owned();
            let pdir = entry.path();
            if !pdir.join("partition").exists() {
                continue;
            }
            partitions.push(BlockDevice {
                path: PathBuf::from("/dev").join(&pname),
                size: sectors(&pdir.join("size"))?,
                rotational,
                disk: name.to_string(),
                is_partition: true,
                name: pname,
            });
        }
        partitions.sort_by_key(|p| {
            read_trim(&self.block(name).join(&p.name).join("partition"))
                .and_then(|n| n.parse::<u32>().ok())
        });
        Ok(Disk {
            device: BlockDevice {
                name: name.to_string(),
                path: PathBuf::from("/dev").join(name),
                size,
                rotational,
                disk: name.to_string(),
                is_partition: false,
            },
            partitions,
        })
    }

    /// Every disk a real node may use: not loop, ram, zram, optical, floppy, device-mapper or md; not
    /// removable; not on USB; not empty.
    pub fn node_disks(&self) -> Result<Vec<Disk>> {
        let dir = self.root.join("block");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(Error::io("reading", &dir))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut disks = Vec::new();
        for name in names {
            const SKIP: &[&str] = &[
                "loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd", "drbd",
            ];
            if SKIP.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let dev = self.block(&name);
            if read_trim(&dev.join("removable")).as_deref() == Some("1") {
                tracing::debug!(disk = %name, "skipping removable disk");
                continue;
            }
            let real = std::fs::canonicalize(&dev).unwrap_or(dev.clone());
            if real
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with("usb"))
            {
                tracing::debug!(disk = %name, "skipping USB disk");
                continue;
            }
            let disk = self.disk(&name)?;
            if disk.device.size == 0 {
                continue;
            }
            disks.push(disk);
        }
        Ok(disks)
    }

    /// The sysfs name of the block device node at `path`, and the name of its disk when it is a partition.
    pub fn resolve(&self, path: &Path) -> Result<(String, Option<String>)> {
        let meta = std::fs::metadata(path).map_err(Error::io("looking up device", path))?;
        if !meta.file_type().is_block_device() {
            return Err(Error::Unavailable(format!(
                "{} is not a block device",
                path.display()
            )));
        }
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let link = self.root.join("dev/block").join(format!("{major}:{minor}"));
        let real = std::fs::canonicalize(&link).map_err(Error::io("resolving", &link))?;
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::Unavailable(format!("{} has no sysfs entry", path.display())))?;
        if real.join("partition").exists() {
            let parent = real
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            Ok((name, parent))
        } else {
            Ok((name, None))
        }
    }

    /// Current statistics line of a block device (`/sys/class/block/<name>/stat`).
    pub fn stat(&self, name: &str) -> Option<String> {
        read_trim(&self.root.join("class/block").join(name).join("stat"))
    }
}

fn sectors(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
    let n: u64 = text.trim().parse().map_err(|_| Error::Parse {
        command: format!("cat {}", path.display()),
        reason: format!("not a number: {text:?}"),
    })?;
    Ok(n * 512)
}

/// A free region of a partitioned disk, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeRegion {
    pub start: u64,
    pub end: u64,
}

impl FreeRegion {
    pub fn len(&self) -> u64 {
        self.end + 1 - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }
}

/// Parse `parted -s -m <dev> unit B print free`: the free regions (`1:17408B:1048575B:1031168B:free;`).
pub fn parse_parted_free(text: &str) -> Vec<FreeRegion> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim().trim_end_matches(';');
        let cols: Vec<&str> = line.split(':').collect();
        if cols.len() < 5 || cols[4] != "free" {
            continue;
        }
        let num = |s: &str| s.trim_end_matches('B').parse::<u64>().ok();
        if let (Some(start), Some(end)) = (num(cols[1]), num(cols[2])) {
            out.push(FreeRegion { start, end });
        }
    }
    out
}

/// Turn every free region of at least [`MIN_PARTITION`] on a partitioned disk into a new partition.
/// Returns how many partitions were made.
pub fn partition_free_space(disk: &Path) -> Result<usize> {
    let out = exec::run(
        "parted",
        &[
            "-s".as_ref(),
            "-m".as_ref(),
            disk.as_os_str(),
            "unit".as_ref(),
            "B".as_ref(),
            "print".as_ref(),
            "free".as_ref(),
        ],
    )?;
    let mut made = 0;
    for region in parse_parted_free(&out) {
        if region.len() < MIN_PARTITION {
            continue;
        }
        // Align the start to 1 MiB as parted prefers; the end is the region's end.
        let start = region.start.div_ceil(1 << 20) << 20;
        if start >= region.end || region.end - start < MIN_PARTITION {
            continue;
        }
        let (s, e) = (format!("{start}B"), format!("{}B", region.end));
        tracing::info!(disk = %disk.display(), start, end = region.end, "making a partition of free space");
        exec::run(
            "parted",
            &[
                "-s".as_ref(),
                disk.as_os_str(),
                "mkpart".as_ref(),
                "primary".as_ref(),
                "btrfs".as_ref(),
                s.as_ref(),
                e.as_ref(),
            ],
        )?;
        made += 1;
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkid_export() {
        let p = parse_blkid_export(
            "DEVNAME=/dev/loop0\nLABEL=lab1\nUUID=1111\nUUID_SUB=x\nTYPE=btrfs\nUSAGE=filesystem\n",
        );
        assert_eq!(p.fstype.as_deref(), Some("btrfs"));
        assert_eq!(p.uuid.as_deref(), Some("1111"));
        assert_eq!(p.label.as_deref(), Some("lab1"));
        assert!(!p.is_blank());
        let p = parse_blkid_export("DEVNAME=/dev/loop0\nPTUUID=d2\nPTTYPE=gpt\n");
        assert_eq!(p.pttype.as_deref(), Some("gpt"));
        assert!(!p.is_blank());
        // A partition entry without a filesystem is blank.
        let p = parse_blkid_export(
            "DEVNAME=/dev/loop0p1\nPART_ENTRY_SCHEME=gpt\nPART_ENTRY_TYPE=0fc6\n",
        );
        assert!(p.is_blank());
    }

    #[test]
    fn parted_free_regions() {
        let text = "BYT;\n/dev/loop0:8589934592B:loopback:512:512:gpt:Loopback device:;\n\
                    1:17408B:1048575B:1031168B:free;\n\
                    1:1048576B:1073741823B:1072693248B::primary:;\n\
                    1:1073741824B:8589917695B:7516175872B:free;\n";
        let r = parse_parted_free(text);
        assert_eq!(
            r,
            vec![
                FreeRegion {
                    start: 17408,
                    end: 1048575
                },
                FreeRegion {
                    start: 1073741824,
                    end: 8589917695
                }
            ]
        );
        assert_eq!(r[1].len(), 7516175872);
    }

    #[test]
    fn sysfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mk = |p: &str, v: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        };
        mk("block/sda/size", "2097152\n");
        mk("block/sda/removable", "0\n");
        mk("block/sda/queue/rotational", "1\n");
        mk("block/sda/sda2/partition", "2\n");
        mk("block/sda/sda2/size", "1024\n");
        mk("block/sda/sda1/partition", "1\n");
        mk("block/sda/sda1/size", "2048\n");
        mk("block/vdb/size", "4096\n");
        mk("block/vdb/removable", "0\n");
        mk("block/vdb/queue/rotational", "0\n");
        mk("block/sr0/size", "4096\n");
        mk("block/sdc/size", "4096\n");
        mk("block/sdc/removable", "1\n");
        mk("block/loop0/size", "4096\n");
        mk("block/vdz/size", "0\n");
        // A USB stick: /sys/block/sdu links into a usb device path.
        mk(
            "devices/pci0000:00/0000:00:14.0/usb1/1-1/host6/block/sdu/size",
            "4096\n",
        );
        mk(
            "devices/pci0000:00/0000:00:14.0/usb1/1-1/host6/block/sdu/removable",
            "0\n",
        );
        std::os::unix::fs::symlink(
            root.join("devices/pci0000:00/0000:00:14.0/usb1/1-1/host6/block/sdu"),
            root.join("block/sdu"),
        )
        .unwrap();
        let s = Sysfs::at(root);
        let disks = s.node_disks().unwrap();
        let names: Vec<&str> = disks.iter().map(|d| d.device.name.as_str()).collect();
        assert_eq!(names, vec!["sda", "vdb"]);
        let sda = &disks[0];
        assert_eq!(sda.device.size, 2097152 * 512);
        assert!(sda.device.rotational);
        assert_eq!(
            sda.partitions
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            vec!["sda1", "sda2"]
        );
        assert!(sda.partitions[0].rotational && sda.partitions[0].is_partition);
        assert_eq!(sda.partitions[0].disk, "sda");
        assert!(!disks[1].device.rotational);
    }
}
