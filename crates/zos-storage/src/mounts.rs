//! The mount table (`/proc/self/mountinfo`) and the mount system calls.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// The path inside the filesystem that is mounted (`/` or `/zos-cache` for a bind of a subvolume).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    pub fstype: String,
    /// The device (or `tmpfs`, ...).
    pub source: String,
}

/// Undo the octal escapes (`\040` for a space) of mountinfo fields.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse the text of a mountinfo file; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 3 {
            continue;
        }
        out.push(MountInfo {
            root: PathBuf::from(unescape(fields[3])),
            mount_point: PathBuf::from(unescape(fields[4])),
            fstype: fields[sep + 1].to_string(),
            source: unescape(fields[sep + 2]),
        });
    }
    out
}

/// The current mount table of this process.
pub fn mounts() -> Result<Vec<MountInfo>> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
    Ok(parse_mountinfo(&text))
}

/// The last (topmost) mount on `path`, if any.
pub fn mount_at(path: &Path) -> Result<Option<MountInfo>> {
    Ok(mounts()?.into_iter().rev().find(|m| m.mount_point == path))
}

/// Mount a btrfs device at `target` (created if needed).
pub fn mount_btrfs(device: &Path, target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).map_err(Error::io("creating", target))?;
    tracing::debug!(device = %device.display(), target = %target.display(), "mount btrfs");
    nix::mount::mount(
        Some(device),
        target,
        Some("btrfs"),
        MsFlags::MS_NOATIME,
        None::<&str>,
    )
    .map_err(Error::sys("mounting btrfs on", target))
}

/// Bind-mount `source` on `target` (created if needed).
pub fn bind(source: &Path, target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).map_err(Error::io("creating", target))?;
    tracing::debug!(source = %source.display(), target = %target.display(), "bind mount");
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(Error::sys("bind-mounting on", target))
}

/// Mount a tmpfs of `size` bytes at `target` (created if needed); `source` names it in the mount table.
pub fn mount_tmpfs(target: &Path, size: u64, source: &str) -> Result<()> {
    std::fs::create_dir_all(target).map_err(Error::io("creating", target))?;
    let data = format!("size={size}");
    nix::mount::mount(
        Some(source),
        target,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(Error::sys("mounting a tmpfs on", target))
}

/// Unmount `target` (not lazily: a busy filesystem stays mounted and that is reported).
pub fn unmount(target: &Path) -> Result<()> {
    tracing::debug!(target = %target.display(), "unmount");
    nix::mount::umount2(target, MntFlags::empty()).map_err(Error::sys("unmounting", target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "43 27 0:39 / /tmp/exp/m rw,relatime - btrfs /dev/loop0 rw,subvolid=5,subvol=/\n\
                    50 27 0:39 /zos-cache /var/cache rw shared:5 - btrfs /dev/loop0 rw\n\
                    51 27 0:40 / /tmp/with\\040space rw - tmpfs tmpfs rw,size=500m\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, PathBuf::from("/tmp/exp/m"));
        assert_eq!(m[0].source, "/dev/loop0");
        assert_eq!(m[1].root, PathBuf::from("/zos-cache"));
        assert_eq!(m[1].fstype, "btrfs");
        assert_eq!(m[2].mount_point, PathBuf::from("/tmp/with space"));
        assert_eq!(m[2].fstype, "tmpfs");
    }
}
