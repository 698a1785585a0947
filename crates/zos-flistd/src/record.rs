//! The persisted record of each mount: `<root>/state/<name>.json`, written atomically (temp file, fsync,
//! rename, fsync of the directory) before every step that changes the system, so that a flistd killed at
//! any moment finds at its next start what it was doing, and finishes or undoes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where a mount is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Being set up; a restart finding it undoes it (the caller never got a path).
    Mounting,
    /// Set up and returned to the caller; a restart keeps it (or mounts it again).
    Mounted,
    /// Being taken down; a restart finishes it.
    Removing,
}

/// Which read-only FUSE mount a name was mounted over: the mount's id in `/proc/self/mountinfo` and the pid
/// of its FUSE server. When the read-only mount is made again (its server died), the id changes and the
/// name is mounted again over the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoId {
    pub mount_id: u64,
    pub pid: i32,
}

/// The storaged volume holding a mount's writable layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The volume's path (empty until storaged answered).
    pub path: PathBuf,
    /// flistd created it (and deletes it on unmount); set before asking storaged to create it.
    pub created: bool,
}

/// One mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub url: String,
    /// md5 of the flist file (`<root>/flist/<hash>`, `<root>/ro/<hash>`).
    pub hash: String,
    pub read_only: bool,
    /// Bytes of the writable layer's volume.
    pub limit: u64,
    /// Store override given at mount time (empty: the flist's routes).
    #[serde(default)]
    pub storage: String,
    /// The caller's directory holding the writable layer (instead of a volume).
    #[serde(default)]
    pub persisted_volume: Option<PathBuf>,
    /// The storaged volume holding the writable layer.
    #[serde(default)]
    pub volume: Option<VolumeRecord>,
    pub state: State,
    /// The read-only mount the name is mounted over.
    #[serde(default)]
    pub ro: Option<RoId>,
}

impl Record {
    /// The directory holding `rw/` and `wd/`, once known.
    pub fn layer_dir(&self) -> Option<&Path> {
        if let Some(p) = &self.persisted_volume {
            return Some(p);
        }
        self.volume
            .as_ref()
            .map(|v| v.path.as_path())
            .filter(|p| !p.as_os_str().is_empty())
    }
}

/// The records directory.
#[derive(Clone, Debug)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// Records kept in `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Records {
        Records { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The record of `name`, if any. A record that cannot be read is an error naming its file.
    pub fn load(&self, name: &str) -> Result<Option<Record>> {
        let path = self.path(name);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", &path)(e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::io("parsing", &path)(std::io::Error::other(e)))
    }

    /// Write a record atomically.
    pub fn save(&self, r: &Record) -> Result<()> {
        let path = self.path(&r.name);
        let tmp = self.dir.join(format!(".{}.json.tmp", r.name));
        let data = serde_json::to_vec_pretty(r).expect("records serialize");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(Error::io("writing", &path))
    }

    /// Delete the record of `name` (nothing to do when there is none).
    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("deleting", &path)(e))
            }
            _ => {
                let _ = std::fs::File::open(&self.dir).and_then(|d| d.sync_all());
                Ok(())
            }
        }
    }

    /// The names that have a record, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(Error::io("listing", &self.dir))?;
        for e in entries {
            let e = e.map_err(Error::io("listing", &self.dir))?;
            let file = e.file_name();
            let Some(file) = file.to_str() else { continue };
            if file.starts_with('.') {
                continue;
            }
            if let Some(name) = file.strip_suffix(".json") {
                out.push(name.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every readable record; unreadable ones are returned as errors (and kept on disk).
    pub fn all(&self) -> Result<Vec<Result<Record>>> {
        Ok(self
            .names()?
            .into_iter()
            .filter_map(|n| self.load(&n).transpose())
            .collect())
    }

    /// Delete temp files a killed writer left.
    pub fn clean_temp(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let file = e.file_name();
                let f = file.to_string_lossy();
                if f.starts_with('.') && f.ends_with(".json.tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Record {
        Record {
            name: name.into(),
            url: "http://hub/me/a.fl".into(),
            hash: "0123456789abcdef0123456789abcdef".into(),
            read_only: false,
            limit: 1 << 28,
            storage: String::new(),
            persisted_volume: None,
            volume: Some(VolumeRecord {
                path: "/mnt/pool/a".into(),
                created: true,
            }),
            state: State::Mounted,
            ro: Some(RoId {
                mount_id: 42,
                pid: 7,
            }),
        }
    }

    #[test]
    fn round_trip_listing_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::new(dir.path());
        assert_eq!(r.load("a").unwrap(), None);
        r.save(&sample("b")).unwrap();
        r.save(&sample("a")).unwrap();
        assert_eq!(r.load("a").unwrap(), Some(sample("a")));
        assert_eq!(r.names().unwrap(), vec!["a", "b"]);
        assert_eq!(sample("a").layer_dir(), Some(Path::new("/mnt/pool/a")));
        r.remove("a").unwrap();
        r.remove("a").unwrap();
        assert_eq!(r.names().unwrap(), vec!["b"]);
        // a corrupt record is an error naming its file, and stays
        std::fs::write(dir.path().join("c.json"), b"{not json").unwrap();
        let all = r.all().unwrap();
        assert_eq!(all.len(), 2);
        let e = all.iter().find_map(|x| x.as_ref().err()).unwrap();
        assert!(e.to_string().contains("c.json"), "{e}");
        assert!(dir.path().join("c.json").exists());
        // leftovers of a killed writer go
        std::fs::write(dir.path().join(".d.json.tmp"), b"x").unwrap();
        r.clean_temp();
        assert!(!dir.path().join(".d.json.tmp").exists());
    }
}
