//! The cache cleaner: blocks in `<root>/cache` nobody read for 90 days are deleted (as Zero-OS: daily).
//!
//! A block counts as used at the later of its access and modification times, so a file system mounted
//! `noatime` never loses blocks it just fetched. Directories are kept (the cache creates them as needed, and
//! removing one under a writer would fail its write).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Blocks not used for this long are deleted.
pub const MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// How often the cleaner runs.
pub const INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Files deleted.
    pub removed: u64,
    /// Bytes freed.
    pub freed: u64,
    /// Files kept.
    pub kept: u64,
    /// Files or directories that could not be read or deleted.
    pub errors: u64,
}

/// Delete the files below `dir` last used before `now - max_age`.
pub fn clean(dir: &Path, max_age: Duration, now: SystemTime) -> CleanStats {
    let cutoff = now
        .checked_sub(max_age)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(i64::MIN);
    let mut stats = CleanStats::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(dir = %d.display(), "cache cleaner: {e}");
                stats.errors += 1;
                continue;
            }
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if m.is_dir() {
                stack.push(path);
                continue;
            }
            if m.atime().max(m.mtime()) >= cutoff {
                stats.kept += 1;
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    stats.removed += 1;
                    stats.freed += m.len();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cache cleaner: {e}");
                    stats.errors += 1;
                }
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_times(path: &Path, atime: SystemTime, mtime: SystemTime) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_times(
            std::fs::FileTimes::new()
                .set_accessed(atime)
                .set_modified(mtime),
        )
        .unwrap();
    }

    #[test]
    fn deletes_only_blocks_unused_for_the_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let sub = dir.path().join("ab/cd");
        std::fs::create_dir_all(&sub).unwrap();
        let old = sub.join("abcd-old");
        let read_lately = sub.join("abcd-read");
        let written_lately = dir.path().join("ab/abxx-written");
        let fresh = dir.path().join("fresh");
        for p in [&old, &read_lately, &written_lately, &fresh] {
            std::fs::write(p, b"0123456789").unwrap();
        }
        set_times(&old, now - 91 * day, now - 200 * day);
        set_times(&read_lately, now - 89 * day, now - 200 * day);
        set_times(&written_lately, now - 200 * day, now - day);
        let stats = clean(dir.path(), MAX_AGE, now);
        assert_eq!(
            stats,
            CleanStats {
                removed: 1,
                freed: 10,
                kept: 3,
                errors: 0
            }
        );
        assert!(!old.exists());
        assert!(read_lately.exists() && written_lately.exists() && fresh.exists());
        assert!(sub.is_dir(), "directories stay");
        // a missing cache directory is nothing to clean
        assert_eq!(
            clean(&dir.path().join("nope"), MAX_AGE, now),
            CleanStats::default()
        );
    }
}
