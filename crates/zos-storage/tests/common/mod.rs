//! Test fixtures: loop devices on sparse files in a temp dir, and an environment that unmounts everything
//! under its temp dir and detaches only its own loops when dropped (also when the test fails).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Run a command that must succeed; its stdout.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(zos_testkit::which(program).unwrap_or_else(|| program.into()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device on a sparse file; detached on drop.
pub struct LoopDisk {
    pub device: PathBuf,
    pub file: PathBuf,
}

impl LoopDisk {
    /// A new loop device of `size` bytes; `partscan` lets the kernel see partitions on it.
    pub fn new(dir: &Path, size: u64, partscan: bool) -> LoopDisk {
        let file = dir.join(format!("{}.img", zos_testkit::unique_name("disk")));
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let mut args = vec!["-f", "--show"];
        if partscan {
            args.push("-P");
        }
        let file_s = file.to_str().unwrap().to_string();
        args.push(&file_s);
        let device = PathBuf::from(sh("losetup", &args).trim());
        let disk = LoopDisk { device, file };
        assert!(
            disk.device.to_string_lossy().starts_with("/dev/loop"),
            "{:?}",
            disk.device
        );
        disk
    }

    /// The kernel name (`loop3`).
    pub fn name(&self) -> String {
        self.device
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Fake an SSD (`false`) or an HDD (`true`).
    pub fn set_rotational(&self, rotational: bool) {
        let path = format!("/sys/block/{}/queue/rotational", self.name());
        std::fs::write(&path, if rotational { "1" } else { "0" }).unwrap();
    }

    /// `blkid -p` of the device: (TYPE, UUID).
    pub fn probe(&self) -> (Option<String>, Option<String>) {
        probe(&self.device)
    }
}

/// `blkid -p` of a device or file: (TYPE, UUID).
pub fn probe(path: &Path) -> (Option<String>, Option<String>) {
    let out = Command::new(zos_testkit::which("blkid").unwrap())
        .args(["-p", "-o", "export"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_string))
    };
    (get("TYPE"), get("UUID"))
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new(zos_testkit::which("losetup").unwrap())
            .arg("-d")
            .arg(&self.device)
            .status();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Unmount every mount at or below `dir`, deepest first (lazily, so a failing test cannot leave them).
pub fn unmount_below(dir: &Path) {
    for _ in 0..3 {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = zos_storage::mounts::parse_mountinfo(&text)
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(dir))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A test's world: a temp dir holding the disk images, the pools' mount root, the cache path and the flags
/// dir. Dropping it unmounts everything below the temp dir, then detaches the loops.
pub struct Env {
    pub disks: Vec<LoopDisk>,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("zos-storage-test-")
            .tempdir()
            .unwrap();
        Env {
            disks: Vec::new(),
            dir,
        }
    }

    pub fn add_disk(&mut self, size: u64, rotational: bool) -> PathBuf {
        let disk = LoopDisk::new(self.dir.path(), size, false);
        disk.set_rotational(rotational);
        let dev = disk.device.clone();
        self.disks.push(disk);
        dev
    }

    pub fn mount_root(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    pub fn cache_path(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn flags_dir(&self) -> PathBuf {
        self.dir.path().join("flags")
    }

    /// Options using exactly `devices`, with this env's paths and a small cache.
    pub fn options(&self, devices: Vec<PathBuf>, cache_size: u64) -> zos_storage::Options {
        let mut o = zos_storage::Options::new(devices, self.mount_root(), self.cache_path());
        o.cache_size = cache_size;
        o.flags_dir = self.flags_dir();
        o
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        unmount_below(self.dir.path());
        self.disks.clear();
    }
}

/// Whether the machine can run these tests (root, btrfs-progs, blkid, losetup); skips locally, fails in CI.
pub fn prerequisites() -> bool {
    zos_testkit::require_root()
        && zos_testkit::require_command("btrfs")
        && zos_testkit::require_command("mkfs.btrfs")
        && zos_testkit::require_command("blkid")
        && zos_testkit::require_command("losetup")
}

/// The mount at `path`, if any.
pub fn mount_at(path: &Path) -> Option<zos_storage::mounts::MountInfo> {
    zos_storage::mounts::mount_at(path).unwrap()
}
