//! The mount table (`/proc/self/mountinfo`) and the mount system calls flistd makes: read-only binds,
//! overlays, lazy unmounts.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount id (unique among live mounts).
    pub id: u64,
    /// `major:minor` of the filesystem.
    pub dev: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    /// Filesystem (super block) options, e.g. an overlay's `lowerdir=…,upperdir=…`.
    pub super_options: String,
}

/// Undo the octal escapes of mountinfo (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse the text of `/proc/self/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            Some(MountEntry {
                id: l[0].parse().ok()?,
                dev: l[2].to_string(),
                mount_point: PathBuf::from(unescape(l[4])),
                fstype: r[0].to_string(),
                source: unescape(r[1]),
                super_options: unescape(r[2]),
            })
        })
        .collect()
}

/// The current mount table.
pub fn mountinfo() -> Result<Vec<MountEntry>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
    Ok(parse_mountinfo(&text))
}

/// The topmost mount at `path`, if any.
pub fn mount_at<'a>(table: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    table.iter().rev().find(|m| m.mount_point == path)
}

/// Every mount point at or below `dir`.
pub fn mounts_below(table: &[MountEntry], dir: &Path) -> Vec<PathBuf> {
    table
        .iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .map(|m| m.mount_point.clone())
        .collect()
}

/// Bind `src` on `target`, read-only.
pub fn bind_ro(src: &Path, target: &Path) -> Result<()> {
    let err = |source| Error::Mount {
        what: "bind-mounting onto",
        target: target.into(),
        source,
    };
    nix::mount::mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(err)?;
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    ) {
        let _ = detach(target);
        return Err(err(e));
    }
    Ok(())
}

/// Mount an overlay of `lower` (read-only) and `upper` (writes; `work` is its work dir) on `target`.
/// The paths must have passed [`crate::validate::check_option_path`].
pub fn overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<()> {
    // index=off: the lower layer is a FUSE mount that is made again when its server dies; the upper layer
    // must not be tied to one instance of it.
    let data = format!(
        "lowerdir={},upperdir={},workdir={},index=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|source| Error::Mount {
        what: "mounting the overlay on",
        target: target.into(),
        source,
    })
}

/// Detach whatever is mounted at `target` (lazily: it disappears now, and goes once its last user is gone).
/// Nothing mounted there is fine.
pub fn detach(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(source) => Err(Error::Mount {
            what: "unmounting",
            target: target.into(),
            source,
        }),
    }
}

/// Detach every mount stacked at `target`.
pub fn detach_all(target: &Path) -> Result<()> {
    for _ in 0..16 {
        let table = mountinfo()?;
        if mount_at(&table, target).is_none() {
            return Ok(());
        }
        detach(target)?;
    }
    Err(Error::Mount {
        what: "unmounting (still mounted after 16 tries)",
        target: target.into(),
        source: nix::errno::Errno::EBUSY,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
612 30 0:75 / /var/cache/modules/flistd/ro/0123 ro,nosuid,nodev,relatime - fuse flistd:4242 ro,user_id=0,group_id=0,default_permissions,allow_other
613 30 0:76 / /var/cache/modules/flistd/mountpoint/my\\040vm rw,relatime - overlay overlay rw,lowerdir=/a/ro/0123,upperdir=/mnt/p/v/rw,workdir=/mnt/p/v/wd,index=off
bad line
";
        let t = parse_mountinfo(text);
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].id, 612);
        assert_eq!(t[1].dev, "0:75");
        assert_eq!(t[1].fstype, "fuse");
        assert_eq!(t[1].source, "flistd:4242");
        assert_eq!(
            t[2].mount_point,
            Path::new("/var/cache/modules/flistd/mountpoint/my vm")
        );
        assert!(t[2].super_options.contains("upperdir=/mnt/p/v/rw"));
        assert_eq!(
            mount_at(&t, Path::new("/var/cache/modules/flistd/ro/0123")).map(|m| m.id),
            Some(612)
        );
        assert_eq!(
            mounts_below(&t, Path::new("/var/cache/modules/flistd")).len(),
            2
        );
        assert_eq!(unescape("a\\011b\\134"), "a\tb\\");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }
}
