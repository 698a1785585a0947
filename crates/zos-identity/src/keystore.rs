//! The node key on disk: `<root>/seed.txt`, its backup `<root>/seed.txt.bak`, and recovery.
//!
//! **Format** (Zero-OS's "versioned" file): the JSON string `"1.0.0"` immediately followed by the 32 raw seed
//! bytes (39 bytes in all). Also read, then rewritten in place as 1.0.0:
//! - version `1.1.0`: `"1.1.0"` followed by JSON `{"mnemonic": "<24 BIP-39 words>"}` whose entropy is the seed;
//! - legacy: the raw 32-byte seed with no version. (Go upgrades such a file by labelling the raw seed `1.1.0`,
//!   which it then cannot read back; we write `1.0.0`.)
//!
//! Every write is atomic: a temp file in the same directory, fsync, rename, fsync of the directory. Files are
//! mode 0600, the directory 0700 when we create it. A process killed at any moment leaves either the old file or
//! the new one, plus at most a stray temp file that the next start removes.
//!
//! **Copies and recovery.** The only copy we write is `<root>/seed.txt.bak`, next to the primary, same
//! permissions, same filesystem. It guards against a torn, truncated or damaged primary, not against losing the
//! disk; it adds no exposure (Go mirrored the seed in plaintext to every pool root, `/mnt/*/seed.txt`; we
//! write no such mirrors). Those Go mirrors are still *read*, for recovery only, so a node migrating from Go
//! keeps its identity when its cache was lost. Order when loading:
//! 1. a valid primary is the key (upgraded in place if in an old format); the backup is made to match it;
//! 2. a missing or corrupt primary is restored from a valid backup, else from the legacy pool mirrors (all
//!    valid mirrors must agree); a corrupt primary is first moved aside to `seed.txt.corrupt-<unix-nanos>`;
//! 3. a new key is generated **only** when no primary, no backup and no mirror file exist at all;
//! 4. anything else (a corrupt primary or copy with no valid copy, unreadable files, disagreeing mirrors) is an
//!    error naming the file, and nothing is written: the node never silently gets a new identity.
//!
//! Operator recovery: put a valid key file (any of the three formats) at `<root>/seed.txt`, or delete
//! `seed.txt` and `seed.txt.bak` to give the node a new identity on purpose.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::KeyStoreError;
use crate::key::{NodeKey, SEED_LEN};

/// The primary key file name.
pub const SEED_FILE: &str = "seed.txt";
/// The backup key file name (next to the primary).
pub const BACKUP_FILE: &str = "seed.txt.bak";
/// The version we write.
pub const CURRENT_VERSION: &str = "1.0.0";
/// Mode of key files.
pub const KEY_FILE_MODE: u32 = 0o600;

/// The format a key file was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedFormat {
    /// `"1.0.0"` + 32 raw bytes (current).
    V1_0,
    /// `"1.1.0"` + JSON `{"mnemonic": ...}`.
    V1_1Mnemonic,
    /// 32 raw bytes, no version.
    Legacy,
}

/// Where the key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The primary file.
    Primary,
    /// Restored from `seed.txt.bak`.
    Backup,
    /// Restored from a legacy Go pool mirror.
    Mirror(PathBuf),
    /// Nothing existed: a new identity.
    Generated,
}

/// A loaded key and how it was found.
#[derive(Debug)]
pub struct Loaded {
    pub key: NodeKey,
    pub source: KeySource,
    /// The primary was rewritten from this older format.
    pub upgraded_from: Option<SeedFormat>,
}

#[derive(Deserialize)]
struct Seed110 {
    mnemonic: String,
}

/// Parse a key file. On failure, the reason (without the path).
pub fn parse_seed_file(data: &[u8]) -> Result<(SeedFormat, Zeroizing<[u8; SEED_LEN]>), String> {
    let start = data
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(data.len());
    if data.get(start) == Some(&b'"')
        && let Some(len) = data[start + 1..].iter().position(|&b| b == b'"')
        && let Ok(version) = std::str::from_utf8(&data[start + 1..start + 1 + len])
        && looks_like_version(version)
    {
        let rest = &data[start + len + 2..];
        return match version {
            "1.0.0" => {
                let seed: [u8; SEED_LEN] = rest.try_into().map_err(|_| {
                    format!(
                        "version 1.0.0 must be followed by {SEED_LEN} seed bytes, found {}",
                        rest.len()
                    )
                })?;
                Ok((SeedFormat::V1_0, Zeroizing::new(seed)))
            }
            "1.1.0" => {
                let parsed: Seed110 = serde_json::from_slice(rest).map_err(|e| {
                    format!("version 1.1.0 must be followed by JSON {{\"mnemonic\": ...}}: {e}")
                })?;
                let mnemonic = Zeroizing::new(parsed.mnemonic);
                let words = bip39::Mnemonic::parse_in(bip39::Language::English, mnemonic.as_str())
                    .map_err(|e| format!("version 1.1.0: invalid mnemonic: {e}"))?;
                let entropy = Zeroizing::new(words.to_entropy());
                let seed: [u8; SEED_LEN] = entropy.as_slice().try_into().map_err(|_| {
                    format!("version 1.1.0: the mnemonic holds {} bytes, a seed is {SEED_LEN} (24 words)", entropy.len())
                })?;
                Ok((SeedFormat::V1_1Mnemonic, Zeroizing::new(seed)))
            }
            other => Err(format!(
                "unknown seed file version {other} (known: 1.0.0, 1.1.0)"
            )),
        };
    }
    if let Ok(seed) = <[u8; SEED_LEN]>::try_from(data) {
        return Ok((SeedFormat::Legacy, Zeroizing::new(seed)));
    }
    Err(format!(
        "{} bytes that are neither a versioned seed (\"1.0.0\" + {SEED_LEN} bytes) nor a raw {SEED_LEN}-byte seed",
        data.len()
    ))
}

fn looks_like_version(text: &str) -> bool {
    let core = text.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The bytes of a current-format key file.
pub fn encode_seed_file(seed: &[u8; SEED_LEN]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(CURRENT_VERSION.len() + 2 + SEED_LEN));
    out.push(b'"');
    out.extend_from_slice(CURRENT_VERSION.as_bytes());
    out.push(b'"');
    out.extend_from_slice(seed);
    out
}

/// Where the key lives and where copies may be found.
#[derive(Clone, Debug)]
pub struct KeyStore {
    root: PathBuf,
    legacy_mirrors: Option<PathBuf>,
}

/// What reading one key file gave.
enum Read {
    Valid(SeedFormat, Zeroizing<[u8; SEED_LEN]>),
    Corrupt(String),
    Absent,
}

fn read_key_file(path: &Path) -> Read {
    match fs::read(path) {
        Ok(data) => {
            let data = Zeroizing::new(data);
            match parse_seed_file(&data) {
                Ok((format, seed)) => Read::Valid(format, seed),
                Err(reason) => Read::Corrupt(reason),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Read::Absent,
        Err(e) => Read::Corrupt(format!("cannot be read: {e}")),
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyStoreError + use<> {
    let path = path.to_path_buf();
    move |source| KeyStoreError::Io { what, path, source }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Write `data` to `path` atomically with mode 0600.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), KeyStoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    let result = file.write_all(data).and_then(|_| file.sync_all());
    drop(file);
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(KeyStoreError::Io {
            what: "writing",
            path: tmp,
            source: e,
        });
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(KeyStoreError::Io {
            what: "renaming a new key file onto",
            path: path.to_path_buf(),
            source: e,
        });
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), KeyStoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the directory", dir))
}

/// Rename `path` to `<path>.<suffix>-<unix-nanos>` so nothing is lost; returns the new name.
fn move_aside(path: &Path, suffix: &str) -> Result<PathBuf, KeyStoreError> {
    let aside = PathBuf::from(format!("{}.{suffix}-{}", path.display(), now_nanos()));
    fs::rename(path, &aside).map_err(io("moving aside", path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(aside)
}

/// An exclusive lock on the key directory for as long as it lives (two loaders never write at once).
struct DirLock {
    _file: File,
}

impl DirLock {
    fn take(root: &Path) -> Result<DirLock, KeyStoreError> {
        let path = root.join(".seed.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(KEY_FILE_MODE)
            .open(&path)
            .map_err(io("opening", &path))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(KeyStoreError::Io {
                what: "locking",
                path,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(DirLock { _file: file })
    }
}

impl KeyStore {
    /// The store in `root` (`<root>/seed.txt`), without legacy mirrors.
    pub fn new(root: impl Into<PathBuf>) -> KeyStore {
        KeyStore {
            root: root.into(),
            legacy_mirrors: None,
        }
    }

    /// Also read Go's legacy mirrors `<mount_root>/*/seed.txt` (read-only, for recovery).
    pub fn with_legacy_mirrors(mut self, mount_root: impl Into<PathBuf>) -> KeyStore {
        self.legacy_mirrors = Some(mount_root.into());
        self
    }

    /// `<root>/seed.txt`.
    pub fn primary_path(&self) -> PathBuf {
        self.root.join(SEED_FILE)
    }

    /// `<root>/seed.txt.bak`.
    pub fn backup_path(&self) -> PathBuf {
        self.root.join(BACKUP_FILE)
    }

    /// Load the node key, upgrading, restoring or generating it as the module docs say.
    pub fn load_or_create(&self) -> Result<Loaded, KeyStoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io("creating", &self.root))?;
        let _lock = DirLock::take(&self.root)?;
        self.remove_stale_temp_files();
        let primary = self.primary_path();
        match read_key_file(&primary) {
            Read::Valid(format, seed) => {
                let key = NodeKey::from_seed(&seed);
                let upgraded_from = if format == SeedFormat::V1_0 {
                    self.fix_mode(&primary)?;
                    None
                } else {
                    write_atomic(&primary, &encode_seed_file(&seed))?;
                    tracing::info!(path = %primary.display(), from = ?format, "key file upgraded to version {CURRENT_VERSION}");
                    Some(format)
                };
                self.ensure_backup(&key)?;
                Ok(Loaded {
                    key,
                    source: KeySource::Primary,
                    upgraded_from,
                })
            }
            Read::Corrupt(reason) => {
                let copy = self.find_copy()?;
                let Some((seed, source)) = copy.found else {
                    let mut reason = reason;
                    for p in &copy.problems {
                        reason.push_str("; ");
                        reason.push_str(p);
                    }
                    return Err(KeyStoreError::Unrecoverable {
                        path: primary,
                        backup: self.backup_path(),
                        reason,
                    });
                };
                let aside = move_aside(&primary, "corrupt")?;
                tracing::warn!(path = %primary.display(), reason = %reason, moved_to = %aside.display(), from = ?source,
                    "corrupt key file moved aside; restoring the key from a valid copy");
                self.restore(seed, source)
            }
            Read::Absent => {
                let copy = self.find_copy()?;
                match copy.found {
                    Some((seed, source)) => {
                        tracing::warn!(path = %primary.display(), from = ?source, "key file missing; restoring it from a valid copy");
                        self.restore(seed, source)
                    }
                    None if copy.problems.is_empty() => {
                        let key = NodeKey::generate().map_err(KeyStoreError::Random)?;
                        write_atomic(&primary, &encode_seed_file(&key.seed()))?;
                        self.ensure_backup(&key)?;
                        tracing::info!(path = %primary.display(), node_id = %key.node_id(), "no key existed: generated a new node identity");
                        Ok(Loaded {
                            key,
                            source: KeySource::Generated,
                            upgraded_from: None,
                        })
                    }
                    None => Err(KeyStoreError::Unrecoverable {
                        path: primary,
                        backup: self.backup_path(),
                        reason: format!(
                            "the file is missing and every copy is unusable: {}",
                            copy.problems.join("; ")
                        ),
                    }),
                }
            }
        }
    }

    fn restore(
        &self,
        seed: Zeroizing<[u8; SEED_LEN]>,
        source: KeySource,
    ) -> Result<Loaded, KeyStoreError> {
        let key = NodeKey::from_seed(&seed);
        write_atomic(&self.primary_path(), &encode_seed_file(&seed))?;
        self.ensure_backup(&key)?;
        tracing::info!(path = %self.primary_path().display(), node_id = %key.node_id(), from = ?source, "key restored");
        Ok(Loaded {
            key,
            source,
            upgraded_from: None,
        })
    }

    /// Make the backup hold `key`. A backup holding anything else is moved aside, never overwritten.
    fn ensure_backup(&self, key: &NodeKey) -> Result<(), KeyStoreError> {
        let backup = self.backup_path();
        let seed = key.seed();
        match read_key_file(&backup) {
            Read::Valid(SeedFormat::V1_0, s) if *s == *seed => return self.fix_mode(&backup),
            Read::Valid(_, s) if *s == *seed => {}
            Read::Valid(_, s) => {
                let aside = move_aside(&backup, "replaced")?;
                tracing::warn!(backup = %backup.display(), other_node_id = %NodeKey::from_seed(&s).node_id(),
                    node_id = %key.node_id(), moved_to = %aside.display(),
                    "the backup held another key than the primary; the primary wins, the old backup was kept aside");
            }
            Read::Corrupt(reason) => {
                if backup.exists() {
                    let aside = move_aside(&backup, "corrupt")?;
                    tracing::warn!(backup = %backup.display(), reason = %reason, moved_to = %aside.display(),
                        "corrupt backup moved aside; writing a new one");
                }
            }
            Read::Absent => {}
        }
        write_atomic(&backup, &encode_seed_file(&seed))
    }

    /// A valid copy of the key (backup first, then legacy mirrors), and the problems of the copies that exist
    /// but are unusable.
    fn find_copy(&self) -> Result<Copy, KeyStoreError> {
        let mut problems = Vec::new();
        let backup = self.backup_path();
        match read_key_file(&backup) {
            Read::Valid(_, seed) => {
                return Ok(Copy {
                    found: Some((seed, KeySource::Backup)),
                    problems,
                });
            }
            Read::Corrupt(reason) => problems.push(format!("{}: {reason}", backup.display())),
            Read::Absent => {}
        }
        let Some(mount_root) = &self.legacy_mirrors else {
            return Ok(Copy {
                found: None,
                problems,
            });
        };
        let entries = match fs::read_dir(mount_root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Copy {
                    found: None,
                    problems,
                });
            }
            Err(e) => {
                problems.push(format!(
                    "{}: cannot list the pool mirrors: {e}",
                    mount_root.display()
                ));
                return Ok(Copy {
                    found: None,
                    problems,
                });
            }
        };
        let mut mirrors: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join(SEED_FILE))
            .collect();
        mirrors.sort();
        let mut valid: Vec<(PathBuf, Zeroizing<[u8; SEED_LEN]>)> = Vec::new();
        for path in mirrors {
            match read_key_file(&path) {
                Read::Valid(_, seed) => valid.push((path, seed)),
                Read::Corrupt(reason) => problems.push(format!("{}: {reason}", path.display())),
                Read::Absent => {}
            }
        }
        let Some((first_path, first_seed)) = valid.first() else {
            return Ok(Copy {
                found: None,
                problems,
            });
        };
        if valid.iter().any(|(_, s)| **s != **first_seed) {
            let mirrors = valid
                .iter()
                .map(|(p, s)| {
                    format!(
                        "{} has node {}",
                        p.display(),
                        NodeKey::from_seed(s).node_id()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(KeyStoreError::AmbiguousMirrors {
                path: self.primary_path(),
                mirrors,
            });
        }
        for p in &problems {
            tracing::warn!(problem = %p, "an unusable copy of the node key was skipped");
        }
        Ok(Copy {
            found: Some((first_seed.clone(), KeySource::Mirror(first_path.clone()))),
            problems,
        })
    }

    fn fix_mode(&self, path: &Path) -> Result<(), KeyStoreError> {
        let meta = fs::metadata(path).map_err(io("reading the metadata of", path))?;
        if meta.permissions().mode() & 0o777 != KEY_FILE_MODE {
            fs::set_permissions(path, fs::Permissions::from_mode(KEY_FILE_MODE))
                .map_err(io("setting the mode of", path))?;
            tracing::info!(path = %path.display(), "key file mode set to 0600");
        }
        Ok(())
    }

    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if (name.starts_with(".seed.txt.tmp-") || name.starts_with(".seed.txt.bak.tmp-"))
                && let Err(e) = fs::remove_file(entry.path())
            {
                tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a stale temp key file");
            }
        }
    }
}

struct Copy {
    found: Option<(Zeroizing<[u8; SEED_LEN]>, KeySource)>,
    problems: Vec<String>,
}
