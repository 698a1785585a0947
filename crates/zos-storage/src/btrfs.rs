//! btrfs operations through btrfs-progs, with parsers for its text output (its JSON output of `qgroup show`
//! crashes on btrfs-progs 6.2, and `subvolume list` has none).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::exec;

/// The inode number of every subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
const SUBVOLUME_ROOT_INODE: u64 = 256;

/// One subvolume as `btrfs subvolume list` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subvolume {
    pub id: u64,
    /// Path relative to the filesystem's top level.
    pub path: String,
}

/// One level-0 qgroup (`0/<subvolume id>`) as `btrfs qgroup show -re --raw` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Qgroup {
    /// Bytes referenced.
    pub rfer: u64,
    /// Bytes exclusive to the subvolume.
    pub excl: u64,
    /// The limit on referenced bytes (`None`: no limit).
    pub max_rfer: Option<u64>,
}

/// Put a new btrfs filesystem on `device` with the given UUID (also used as label, as Zero-OS does).
/// Without `force`, mkfs refuses a device that holds anything it recognises, a last safety net; `force` is
/// only for redoing a format storaged itself started and did not finish.
pub fn mkfs(device: &Path, uuid: &str, force: bool) -> Result<()> {
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["-L".as_ref(), uuid.as_ref(), "-U".as_ref(), uuid.as_ref()];
    if force {
        args.push("-f".as_ref());
    }
    args.push(device.as_os_str());
    exec::run("mkfs.btrfs", &args)?;
    Ok(())
}

/// Erase every signature on a device (only for redoing a format storaged started).
pub fn wipe(device: &Path) -> Result<()> {
    exec::run("wipefs", &["-a".as_ref(), device.as_os_str()])?;
    Ok(())
}

/// Put a new btrfs filesystem on a file (a virtual disk).
pub fn mkfs_file(file: &Path) -> Result<()> {
    exec::run("mkfs.btrfs", &[file.as_os_str()])?;
    Ok(())
}

/// Enable quotas (idempotent).
pub fn quota_enable(mount: &Path) -> Result<()> {
    exec::run(
        "btrfs",
        &["quota".as_ref(), "enable".as_ref(), mount.as_os_str()],
    )?;
    Ok(())
}

/// Create a subvolume at `path`.
pub fn subvolume_create(path: &Path) -> Result<()> {
    exec::run(
        "btrfs",
        &["subvolume".as_ref(), "create".as_ref(), path.as_os_str()],
    )?;
    Ok(())
}

/// Delete the subvolume at `path` and commit.
pub fn subvolume_delete(path: &Path) -> Result<()> {
    exec::run(
        "btrfs",
        &[
            "subvolume".as_ref(),
            "delete".as_ref(),
            "-c".as_ref(),
            path.as_os_str(),
        ],
    )?;
    Ok(())
}

/// Wait until deleted subvolumes are cleaned (then their qgroups can be destroyed).
pub fn subvolume_sync(mount: &Path) -> Result<()> {
    exec::run(
        "btrfs",
        &["subvolume".as_ref(), "sync".as_ref(), mount.as_os_str()],
    )?;
    Ok(())
}

/// Whether `path` is the root directory of a subvolume.
pub fn is_subvolume(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.is_dir() && m.ino() == SUBVOLUME_ROOT_INODE)
        .unwrap_or(false)
}

/// Every subvolume of the filesystem mounted at `mount`.
pub fn subvolume_list(mount: &Path) -> Result<Vec<Subvolume>> {
    let out = exec::run(
        "btrfs",
        &["subvolume".as_ref(), "list".as_ref(), mount.as_os_str()],
    )?;
    parse_subvolume_list(&out).map_err(|reason| Error::Parse {
        command: format!("btrfs subvolume list {}", mount.display()),
        reason,
    })
}

/// Parse `btrfs subvolume list` (`ID 256 gen 7 top level 5 path vol1`).
pub fn parse_subvolume_list(text: &str) -> Result<Vec<Subvolume>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let rest = line
            .strip_prefix("ID ")
            .ok_or_else(|| format!("unexpected line {line:?}"))?;
        let (id, rest) = rest
            .split_once(' ')
            .ok_or_else(|| format!("unexpected line {line:?}"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("bad subvolume id in {line:?}"))?;
        let (_, path) = rest
            .split_once(" path ")
            .ok_or_else(|| format!("no path in {line:?}"))?;
        out.push(Subvolume {
            id,
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// Level-0 qgroups by subvolume id. `sync` first commits the filesystem so the numbers are current.
pub fn qgroup_show(mount: &Path, sync: bool) -> Result<HashMap<u64, Qgroup>> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "qgroup".as_ref(),
        "show".as_ref(),
        "-re".as_ref(),
        "--raw".as_ref(),
    ];
    if sync {
        args.push("--sync".as_ref());
    }
    args.push(mount.as_os_str());
    let out = exec::run("btrfs", &args)?;
    parse_qgroup_show(&out).map_err(|reason| Error::Parse {
        command: format!("btrfs qgroup show -re --raw {}", mount.display()),
        reason,
    })
}

/// Parse `btrfs qgroup show -re --raw`: `0/256  16384  16384  52428800  none  vol1`.
pub fn parse_qgroup_show(text: &str) -> Result<HashMap<u64, Qgroup>, String> {
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("0/") else {
            continue;
        };
        let cols: Vec<&str> = rest.split_whitespace().collect();
        if cols.len() < 4 {
            return Err(format!("short qgroup line {line:?}"));
        }
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("bad number {s:?} in {line:?}"))
        };
        let id = num(cols[0])?;
        let max_rfer = if cols[3] == "none" {
            None
        } else {
            Some(num(cols[3])?)
        };
        out.insert(
            id,
            Qgroup {
                rfer: num(cols[1])?,
                excl: num(cols[2])?,
                max_rfer,
            },
        );
    }
    Ok(out)
}

/// Set (or with `None`, remove) the referenced-bytes limit of the subvolume at `path`.
pub fn qgroup_limit(path: &Path, limit: Option<u64>) -> Result<()> {
    let size = match limit {
        Some(l) => l.to_string(),
        None => "none".to_string(),
    };
    exec::run(
        "btrfs",
        &[
            "qgroup".as_ref(),
            "limit".as_ref(),
            size.as_ref(),
            path.as_os_str(),
        ],
    )?;
    Ok(())
}

/// Destroy the qgroup `0/<id>`.
pub fn qgroup_destroy(mount: &Path, id: u64) -> Result<()> {
    let group = format!("0/{id}");
    exec::run(
        "btrfs",
        &[
            "qgroup".as_ref(),
            "destroy".as_ref(),
            group.as_ref(),
            mount.as_os_str(),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subvolume_list_parses_paths_with_spaces_and_nesting() {
        let text =
            "ID 256 gen 9 top level 5 path v1\nID 257 gen 9 top level 5 path .zos-staging/v 2\n";
        let l = parse_subvolume_list(text).unwrap();
        assert_eq!(
            l,
            vec![
                Subvolume {
                    id: 256,
                    path: "v1".into()
                },
                Subvolume {
                    id: 257,
                    path: ".zos-staging/v 2".into()
                }
            ]
        );
        assert!(parse_subvolume_list("what\n").is_err());
        assert!(parse_subvolume_list("").unwrap().is_empty());
    }

    #[test]
    fn qgroup_show_parses_limits_and_stale_groups() {
        let text = "Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive   Path \n\
                    --------    ----------    ---------  --------------  -------------   ---- \n\
                    0/5              16384        16384            none           none   <toplevel>\n\
                    0/256                0            0        52428800           none   <stale>\n\
                    0/257            16384        16384            none           none   v2\n\
                    1/100            16384        16384            none           none   \n";
        let q = parse_qgroup_show(text).unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(
            q[&256],
            Qgroup {
                rfer: 0,
                excl: 0,
                max_rfer: Some(52428800)
            }
        );
        assert_eq!(q[&257].max_rfer, None);
        assert_eq!(q[&257].rfer, 16384);
        assert!(parse_qgroup_show("0/256 x 0 none none v\n").is_err());
    }
}
