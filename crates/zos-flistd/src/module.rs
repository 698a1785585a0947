//! The flist module: every operation of `flist@0.0.1`, and the reconciliation that keeps the mounts the
//! records describe alive (at start and periodically).
//!
//! Layout under the root (each directory mode 0755):
//!
//! | path | what |
//! |---|---|
//! | `flist/<md5>` | downloaded flist files, named by their md5 |
//! | `cache/` | the block cache shared by every FUSE server |
//! | `ro/<md5>` | the read-only FUSE mount of a flist, shared by every mount of it |
//! | `mountpoint/<name>` | a mount: a read-only bind of `ro/<md5>`, or an overlay on it |
//! | `state/<name>.json` | the record of a mount ([`crate::record`]) |
//! | `pid/<md5>.pid`, `log/<md5>.log` | the FUSE server of a flist: its pid and its log |
//!
//! Locks: operations on one name are serialised by the name's lock; making or dropping `ro/<md5>` and
//! writing a record that refers to it happen under the flist's lock. Locks are always taken name first,
//! then flist.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zos_api::flist::MountOptions;
use zos_api::storage::StorageClient;

use crate::download::Downloader;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::fuse::FSNAME_PREFIX;
use crate::locks::KeyedLocks;
use crate::mounts::{self, MountEntry};
use crate::record::{Records, RoId, State, VolumeRecord};
use crate::validate::{self, Checked};

pub use crate::record::Record;

/// The file in the root of a volume flistd created (so that ownership survives the loss of the records).
pub const VOLUME_MARKER: &str = ".flistd-volume";

/// How to start the FUSE server of a flist: `program args… --meta … <mountpoint>` (the `flistd` binary
/// itself with `args = ["fuse"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// What the module needs to know.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where everything lives (`/var/cache/modules/flistd`).
    pub root: PathBuf,
    /// Stores tried after a flist's own routes (or a mount's store override) fail.
    pub fallback_stores: Vec<String>,
    /// The FUSE server command.
    pub helper: HelperCommand,
    /// FUSE request threads per server.
    pub fuse_threads: usize,
    /// How long a FUSE server may take to mount.
    pub helper_timeout: Duration,
}

impl Options {
    /// Defaults for `root` and a helper command.
    pub fn new(root: impl Into<PathBuf>, helper: HelperCommand) -> Options {
        Options {
            root: root.into(),
            fallback_stores: Vec::new(),
            helper,
            fuse_threads: 4,
            helper_timeout: Duration::from_secs(30),
        }
    }
}

/// The directories under the root.
#[derive(Clone, Debug)]
pub struct Dirs {
    pub root: PathBuf,
    pub flist: PathBuf,
    pub cache: PathBuf,
    pub mountpoint: PathBuf,
    pub ro: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
    pub state: PathBuf,
}

impl Dirs {
    fn new(root: &Path) -> Dirs {
        Dirs {
            root: root.into(),
            flist: root.join("flist"),
            cache: root.join("cache"),
            mountpoint: root.join("mountpoint"),
            ro: root.join("ro"),
            pid: root.join("pid"),
            log: root.join("log"),
            state: root.join("state"),
        }
    }

    fn all(&self) -> [&Path; 8] {
        [
            &self.root,
            &self.flist,
            &self.cache,
            &self.mountpoint,
            &self.ro,
            &self.pid,
            &self.log,
            &self.state,
        ]
    }
}

/// What one reconciliation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileStats {
    /// Mounts found alive.
    pub alive: usize,
    /// Mounts made again (their FUSE server or their mount was gone).
    pub remounted: usize,
    /// Interrupted mounts undone and interrupted unmounts finished.
    pub finished: usize,
    /// Mounts and directories nobody records, removed.
    pub orphans: usize,
    /// Failures (logged).
    pub errors: usize,
}

/// The flist module.
pub struct FlistModule {
    opts: Options,
    dirs: Dirs,
    records: Records,
    storage: StorageClient,
    downloader: Downloader,
    names: KeyedLocks,
    hashes: KeyedLocks,
    /// Names whose last check failed (their failure is logged once, and their recovery).
    failing: Mutex<HashSet<String>>,
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(Error::io("creating", path))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

impl FlistModule {
    /// Create the directories under the root and the module. Nothing is mounted or checked yet (see
    /// [`Self::reconcile`]).
    pub fn new(opts: Options, storage: StorageClient) -> Result<FlistModule> {
        let dirs = Dirs::new(&opts.root);
        validate::check_option_path("the flistd root", &dirs.root)
            .map_err(|e| Error::InvalidOptions(format!("configuration: {e}")))?;
        for d in dirs.all() {
            mkdir(d)?;
        }
        Ok(FlistModule {
            records: Records::new(&dirs.state),
            downloader: Downloader::new(&dirs.flist)?,
            dirs,
            opts,
            storage,
            names: KeyedLocks::default(),
            hashes: KeyedLocks::default(),
            failing: Mutex::new(HashSet::new()),
        })
    }

    /// The directories.
    pub fn dirs(&self) -> &Dirs {
        &self.dirs
    }

    /// Where `name` is mounted.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dirs.mountpoint.join(name)
    }

    /// Where the flist `hash` is mounted read-only.
    pub fn ro_path(&self, hash: &str) -> PathBuf {
        self.dirs.ro.join(hash)
    }

    /// The record of `name`.
    pub fn record(&self, name: &str) -> Result<Option<Record>> {
        self.records.load(name)
    }

    // --------------------------------------------------------------------------------------------------
    // the bus operations

    /// Mount the flist at `url` as `name`; returns the mount path. Mounting a name again with the same
    /// flist and options returns the path (after making sure it is mounted); with others is a `conflict`.
    pub async fn mount(&self, name: &str, url: &str, options: &MountOptions) -> Result<PathBuf> {
        validate::check_name(name)?;
        validate::check_flist_url(url)?;
        let opts = validate::check_options(options)?;
        if !opts.read_only && opts.persisted_volume.is_none() {
            validate::check_volume_name(name)?;
        }
        let _n = self.names.lock(name).await;
        if let Some(rec) = self.records.load(name)? {
            if rec.state == State::Mounted {
                if same_request(&rec, url, &opts) {
                    self.ensure_live(rec).await?;
                    return Ok(self.mountpoint(name));
                }
                return Err(Error::Conflict {
                    name: name.into(),
                    existing: describe(&rec),
                });
            }
            // An earlier call was interrupted: finish taking that down first.
            self.take_down_and_drop(rec).await?;
        }
        // Anything left at the mountpoint without a record is not ours to keep.
        let target = self.mountpoint(name);
        let t = target.clone();
        blocking(move || mounts::detach_all(&t)).await?;

        let (hash, _file) = self.downloader.fetch(url).await?;
        let _h = self.hashes.lock(&hash).await;
        let ro = self.ensure_ro(&hash, &opts.storage).await?;
        let mut rec = Record {
            name: name.into(),
            url: url.into(),
            hash: hash.clone(),
            read_only: opts.read_only,
            limit: opts.limit,
            storage: opts.storage.clone(),
            persisted_volume: opts.persisted_volume.clone(),
            volume: None,
            state: State::Mounting,
            ro: Some(ro),
        };
        if let Err(e) = self.records.save(&rec) {
            self.drop_ro_if_unused(&hash).await;
            return Err(e);
        }
        let result = async {
            if !rec.read_only {
                self.ensure_volume(&mut rec).await?;
                failpoint::hit("mount:volume-created").await;
            }
            self.mount_name(&rec).await?;
            failpoint::hit("mount:mounted").await;
            rec.state = State::Mounted;
            self.records.save(&rec)
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(name, url, hash = %hash, read_only = rec.read_only,
                    layer = ?rec.layer_dir(), "mounted");
                Ok(target)
            }
            Err(e) => {
                tracing::warn!(name, url, "mount failed, undoing it: {}", e.chain());
                if let Err(undo) = self.take_down(&mut rec).await {
                    tracing::error!(name, "undoing the failed mount: {}", undo.chain());
                }
                self.drop_ro_if_unused(&hash).await;
                Err(e)
            }
        }
    }

    /// Unmount `name`: the mount, its directory, the volume flistd created for it, and the flist's
    /// read-only mount when no other mount uses it.
    pub async fn unmount(&self, name: &str) -> Result<()> {
        validate::check_name(name)?;
        let _n = self.names.lock(name).await;
        let Some(rec) = self.records.load(name)? else {
            // Not ours; but a mount or directory left there without a record is cleaned up.
            let target = self.mountpoint(name);
            if target.exists() {
                let t = target.clone();
                blocking(move || mounts::detach_all(&t)).await?;
                std::fs::remove_dir(&target).map_err(Error::io("removing", &target))?;
                return Ok(());
            }
            return Err(Error::NotFound(name.into()));
        };
        self.take_down_and_drop(rec).await?;
        tracing::info!(name, "unmounted");
        Ok(())
    }

    /// Set the size of `name`'s writable volume; returns the mount path.
    pub async fn update_mount_size(&self, name: &str, limit: u64) -> Result<PathBuf> {
        validate::check_name(name)?;
        let _n = self.names.lock(name).await;
        let mut rec = self.mounted(name)?;
        let not = |reason: &str| Error::NotApplicable {
            name: name.into(),
            reason: reason.into(),
        };
        if rec.read_only {
            return Err(not("a read-only mount has no writable layer to resize"));
        }
        if rec.persisted_volume.is_some() {
            return Err(not(
                "its writable layer is a persisted volume flistd does not manage",
            ));
        }
        if limit == 0 {
            return Err(Error::InvalidOptions("the size must be more than 0".into()));
        }
        self.storage
            .volume_update(name.into(), limit)
            .await
            .map_err(|source| Error::Storage {
                op: "VolumeUpdate",
                name: name.into(),
                source,
            })?;
        rec.limit = limit;
        self.records.save(&rec)?;
        tracing::info!(name, limit, "writable layer resized");
        Ok(self.mountpoint(name))
    }

    /// The md5 of the flist mounted as `name`.
    pub async fn hash_from_root_path(&self, name: &str) -> Result<String> {
        validate::check_name(name)?;
        Ok(self.mounted(name)?.hash)
    }

    /// The md5 the hub publishes for the flist at `url`.
    pub async fn flist_hash(&self, url: &str) -> Result<String> {
        validate::check_http_url(url)?;
        self.downloader.flist_hash(url).await
    }

    /// Whether `name` is mounted.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        validate::check_name(name)?;
        Ok(self
            .records
            .load(name)?
            .is_some_and(|r| r.state == State::Mounted))
    }

    fn mounted(&self, name: &str) -> Result<Record> {
        match self.records.load(name)? {
            Some(r) if r.state == State::Mounted => Ok(r),
            _ => Err(Error::NotFound(name.into())),
        }
    }

    // --------------------------------------------------------------------------------------------------
    // the read-only mount of a flist

    /// The live read-only mount of `hash`, if its FUSE server is alive.
    fn ro_alive(&self, hash: &str, table: &[MountEntry]) -> Option<RoId> {
        let ro = self.ro_path(hash);
        let e = mounts::mount_at(table, &ro)?;
        if !e.fstype.starts_with("fuse") {
            return None;
        }
        let pid: i32 = e.source.strip_prefix(FSNAME_PREFIX)?.parse().ok()?;
        serves(pid, &ro).then_some(RoId {
            mount_id: e.id,
            pid,
        })
    }

    /// Make sure `ro/<hash>` is mounted by a live FUSE server; start one when not. The caller holds the
    /// flist's lock.
    async fn ensure_ro(&self, hash: &str, storage: &str) -> Result<RoId> {
        let table = blocking(mounts::mountinfo).await?;
        if let Some(id) = self.ro_alive(hash, &table) {
            return Ok(id);
        }
        let ro = self.ro_path(hash);
        if mounts::mount_at(&table, &ro).is_some() {
            tracing::warn!(
                hash,
                "the FUSE server of the flist is gone; mounting it again"
            );
            let r = ro.clone();
            blocking(move || mounts::detach_all(&r)).await?;
        }
        // A previous server of this path that is still alive would, once its (detached) mount is released,
        // unmount by path whatever is mounted there then: the new server's mount. It goes first.
        self.retire_server(hash).await;
        mkdir(&ro)?;
        let meta = self.dirs.flist.join(hash);
        if !meta.is_file() {
            return Err(Error::Helper {
                hash: hash.into(),
                reason: format!("the flist file {} is missing", meta.display()),
            });
        }
        let log = self.dirs.log.join(format!("{hash}.log"));
        let log_file = std::fs::File::create(&log).map_err(Error::io("creating", &log))?;
        let mut cmd = Command::new(&self.opts.helper.program);
        cmd.args(&self.opts.helper.args)
            .arg("--meta")
            .arg(&meta)
            .arg("--cache")
            .arg(&self.dirs.cache)
            .arg("--threads")
            .arg(self.opts.fuse_threads.to_string());
        if !storage.is_empty() {
            cmd.arg("--store").arg(storage);
        }
        for f in &self.opts.fallback_stores {
            cmd.arg("--fallback").arg(f);
        }
        cmd.arg(&ro)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(Error::io("opening", &log))?)
            .stderr(log_file);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // A session of its own: the server outlives flistd and zinit's signals to flistd's group.
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| Error::Helper {
            hash: hash.into(),
            reason: format!("starting {}: {e}", self.opts.helper.program.display()),
        })?;
        let pid = child.id() as i32;
        tracing::debug!(hash, pid, cmd = ?cmd, "FUSE server started");
        let deadline = Instant::now() + self.opts.helper_timeout;
        let id = loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Helper {
                    hash: hash.into(),
                    reason: format!("exited ({status}) before mounting: {}", tail(&log)),
                });
            }
            let table = blocking(mounts::mountinfo).await?;
            if let Some(id) = self.ro_alive(hash, &table)
                && id.pid == pid
            {
                break id;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let r = ro.clone();
                let _ = blocking(move || mounts::detach_all(&r)).await;
                return Err(Error::Helper {
                    hash: hash.into(),
                    reason: format!(
                        "did not mount within {:?}: {}",
                        self.opts.helper_timeout,
                        tail(&log)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Reap it when it ends (while we live; after that it is re-parented).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let pid_file = self.dirs.pid.join(format!("{hash}.pid"));
        if let Err(e) = std::fs::write(&pid_file, format!("{pid}\n")) {
            tracing::warn!(path = %pid_file.display(), "writing the pid file: {e}");
        }
        tracing::info!(hash, pid, mountpoint = %ro.display(), "flist mounted read-only");
        Ok(id)
    }

    /// Stop the last FUSE server of `ro/<hash>` (from its pid file) if it still runs, and wait until it is gone.
    /// Only called once its mount was detached or found dead. SIGKILL, so that it cannot run its unmount-by-path
    /// on exit (fuser unmounts its mountpoint's path when its session ends), which would take down a newer mount
    /// at the same path. The caller holds the flist's lock.
    async fn retire_server(&self, hash: &str) {
        let ro = self.ro_path(hash);
        let pid_file = self.dirs.pid.join(format!("{hash}.pid"));
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| serves(*p, &ro)) {
            tracing::debug!(hash, pid, "stopping the previous FUSE server of the flist");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while serves(pid, &ro) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let _ = std::fs::remove_file(&pid_file);
    }

    /// Unmount `ro/<hash>` when no record refers to the flist any more. The caller holds the flist's lock.
    async fn drop_ro_if_unused(&self, hash: &str) {
        let used = match self.records.all() {
            Ok(all) => all
                .iter()
                .any(|r| r.as_ref().map_or(true, |r| r.hash == hash)),
            Err(e) => {
                tracing::warn!(hash, "listing records: {}", e.chain());
                true
            }
        };
        if used {
            return;
        }
        let ro = self.ro_path(hash);
        let r = ro.clone();
        if let Err(e) = blocking(move || mounts::detach_all(&r)).await {
            tracing::warn!(hash, "unmounting the unused flist: {}", e.chain());
            return;
        }
        self.retire_server(hash).await;
        let _ = std::fs::remove_dir(&ro);
        let _ = std::fs::remove_file(self.dirs.log.join(format!("{hash}.log")));
        tracing::info!(hash, "flist no longer used: its read-only mount is gone");
    }

    // --------------------------------------------------------------------------------------------------
    // the mount of a name

    /// Find or create the volume of a writable mount (recording that flistd created it before asking).
    async fn ensure_volume(&self, rec: &mut Record) -> Result<()> {
        if rec.persisted_volume.is_some() {
            return Ok(());
        }
        let name = rec.name.clone();
        let storage_err = |op: &'static str| {
            let name = name.clone();
            move |source| Error::Storage { op, name, source }
        };
        match self.storage.volume_lookup(name.clone()).await {
            Ok(v) => {
                let path = PathBuf::from(&v.path);
                let created = rec.volume.as_ref().is_some_and(|v| v.created)
                    || path.join(VOLUME_MARKER).exists();
                rec.volume = Some(VolumeRecord { path, created });
                self.records.save(rec)?;
                tracing::info!(name, path = %v.path, created, "using the existing volume");
            }
            Err(e) if e.kind() == Some("not_found") => {
                rec.volume = Some(VolumeRecord {
                    path: PathBuf::new(),
                    created: true,
                });
                self.records.save(rec)?;
                let v = self
                    .storage
                    .volume_create(name.clone(), rec.limit)
                    .await
                    .map_err(storage_err("VolumeCreate"))?;
                let path = PathBuf::from(&v.path);
                if let Err(e) = std::fs::write(path.join(VOLUME_MARKER), format!("{name}\n")) {
                    tracing::warn!(name, "marking the volume as flistd's: {e}");
                }
                rec.volume = Some(VolumeRecord {
                    path,
                    created: true,
                });
                self.records.save(rec)?;
                tracing::info!(name, path = %v.path, limit = rec.limit, "volume created");
            }
            Err(e) => return Err(storage_err("VolumeLookup")(e)),
        }
        Ok(())
    }

    /// Mount `mountpoint/<name>` over `ro/<hash>`: a read-only bind, or an overlay whose writable layer is
    /// `<layer>/rw` (work dir `<layer>/wd`). Whatever was mounted there is detached first.
    async fn mount_name(&self, rec: &Record) -> Result<()> {
        let target = self.mountpoint(&rec.name);
        let ro = self.ro_path(&rec.hash);
        mkdir(&target)?;
        let layer = if rec.read_only {
            None
        } else {
            let layer = rec.layer_dir().ok_or_else(|| Error::LayerGone {
                name: rec.name.clone(),
                path: PathBuf::new(),
            })?;
            if !layer.is_dir() {
                return Err(Error::LayerGone {
                    name: rec.name.clone(),
                    path: layer.into(),
                });
            }
            validate::check_option_path("the writable layer", layer)?;
            Some(layer.to_path_buf())
        };
        blocking(move || -> Result<()> {
            mounts::detach_all(&target)?;
            match layer {
                None => mounts::bind_ro(&ro, &target),
                Some(layer) => {
                    let (rw, wd) = (layer.join("rw"), layer.join("wd"));
                    if !rw.exists() {
                        make_upper(&ro, &rw)?;
                    }
                    mkdir(&wd)?;
                    mounts::overlay(&ro, &rw, &wd, &target)
                }
            }
        })
        .await
    }

    /// Whether what is mounted at `mountpoint/<name>` is the mount `rec` describes, over `ro`.
    fn name_mount_ok(&self, rec: &Record, ro: RoId, table: &[MountEntry]) -> bool {
        if rec.ro != Some(ro) {
            return false;
        }
        let Some(e) = mounts::mount_at(table, &self.mountpoint(&rec.name)) else {
            return false;
        };
        if rec.read_only {
            e.fstype.starts_with("fuse") && e.source == format!("{FSNAME_PREFIX}{}", ro.pid)
        } else {
            let lower = format!("lowerdir={},", self.ro_path(&rec.hash).display());
            e.fstype == "overlay" && e.super_options.contains(&lower)
        }
    }

    /// Make sure a recorded mount is live: its flist's FUSE server, and its own mount over that server's
    /// current mount. The caller holds the name's lock.
    async fn ensure_live(&self, mut rec: Record) -> Result<bool> {
        let _h = self.hashes.lock(&rec.hash).await;
        let ro = self.ensure_ro(&rec.hash, &rec.storage).await?;
        let table = blocking(mounts::mountinfo).await?;
        if self.name_mount_ok(&rec, ro, &table) {
            return Ok(false);
        }
        tracing::warn!(name = %rec.name, "the mount or its flist's FUSE server was gone; mounting it again");
        self.mount_name(&rec).await?;
        rec.ro = Some(ro);
        self.records.save(&rec)?;
        Ok(true)
    }

    /// Take a mount down: mark it, unmount and remove its directory, delete the volume flistd created, and
    /// forget it. The record stays (as being removed) when a step failed; a volume is never deleted while
    /// the mount could not be detached.
    async fn take_down(&self, rec: &mut Record) -> Result<()> {
        if rec.state != State::Removing {
            rec.state = State::Removing;
            self.records.save(rec)?;
        }
        let mut errors = Vec::new();
        let target = self.mountpoint(&rec.name);
        let t = target.clone();
        match blocking(move || mounts::detach_all(&t)).await {
            Ok(()) => match std::fs::remove_dir(&target) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    errors.push(Error::io("removing", &target)(e))
                }
                _ => {}
            },
            Err(e) => {
                // Still mounted: its volume is not deleted under it; the next check tries again.
                return Err(Error::Cleanup {
                    name: rec.name.clone(),
                    errors: vec![e],
                });
            }
        }
        failpoint::hit("unmount:detached").await;
        if rec.volume.as_ref().is_some_and(|v| v.created) {
            match self.storage.volume_delete(rec.name.clone()).await {
                Ok(()) => tracing::info!(name = %rec.name, "volume deleted"),
                Err(e) if e.kind() == Some("not_found") => {}
                Err(source) => errors.push(Error::Storage {
                    op: "VolumeDelete",
                    name: rec.name.clone(),
                    source,
                }),
            }
        }
        if errors.is_empty() {
            self.records.remove(&rec.name)
        } else {
            Err(Error::Cleanup {
                name: rec.name.clone(),
                errors,
            })
        }
    }

    /// [`Self::take_down`], then drop the flist's read-only mount if nothing uses it any more.
    async fn take_down_and_drop(&self, mut rec: Record) -> Result<()> {
        self.take_down(&mut rec).await?;
        let _h = self.hashes.lock(&rec.hash).await;
        self.drop_ro_if_unused(&rec.hash).await;
        Ok(())
    }

    // --------------------------------------------------------------------------------------------------
    // reconciliation

    /// Bring the system in line with the records: interrupted mounts are undone and interrupted unmounts
    /// finished; recorded mounts whose FUSE server or mount is gone are made again (mounts that are alive
    /// are left alone); mounts and directories no record describes are removed.
    pub async fn reconcile(&self) -> ReconcileStats {
        let mut stats = ReconcileStats::default();
        let names = match self.records.names() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("listing mount records: {}", e.chain());
                stats.errors += 1;
                return stats;
            }
        };
        for name in &names {
            let _n = self.names.lock(name).await;
            let rec = match self.records.load(name) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    self.report(name, Err(e));
                    stats.errors += 1;
                    continue;
                }
            };
            let result = match rec.state {
                State::Mounted => self.ensure_live(rec).await.map(|again| {
                    if again {
                        stats.remounted += 1;
                    } else {
                        stats.alive += 1;
                    }
                }),
                State::Mounting | State::Removing => {
                    tracing::info!(name, state = ?rec.state, "finishing an interrupted operation: taking the mount down");
                    self.take_down_and_drop(rec)
                        .await
                        .map(|()| stats.finished += 1)
                }
            };
            if result.is_err() {
                stats.errors += 1;
            }
            self.report(name, result);
        }
        stats.orphans += self.remove_orphans().await;
        stats
    }

    /// Log a failing name once, and its recovery.
    fn report(&self, name: &str, result: Result<()>) {
        let mut failing = self.failing.lock().expect("failing set");
        match result {
            Ok(()) => {
                if failing.remove(name) {
                    tracing::info!(name, "mount recovered");
                }
            }
            Err(e) => {
                if failing.insert(name.to_string()) {
                    tracing::error!(name, "cannot keep the mount alive: {}", e.chain());
                }
            }
        }
    }

    /// Remove read-only mounts, mounts and directories no record refers to.
    async fn remove_orphans(&self) -> usize {
        let mut removed = 0;
        let (names, hashes): (HashSet<String>, HashSet<String>) = match self.records.all() {
            Ok(all) => {
                let ok: Vec<Record> = all.into_iter().filter_map(|r| r.ok()).collect();
                (
                    ok.iter().map(|r| r.name.clone()).collect(),
                    ok.iter().map(|r| r.hash.clone()).collect(),
                )
            }
            Err(_) => return 0,
        };
        let Ok(table) = blocking(mounts::mountinfo).await else {
            return 0;
        };
        // mounts of names
        let mut seen: HashSet<String> = HashSet::new();
        for p in mounts::mounts_below(&table, &self.dirs.mountpoint) {
            if let Some(n) = child_name(&self.dirs.mountpoint, &p) {
                seen.insert(n);
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.dirs.mountpoint) {
            seen.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        for n in seen {
            if names.contains(&n) || validate::check_name(&n).is_err() {
                continue;
            }
            let _l = self.names.lock(&n).await;
            if matches!(self.records.load(&n), Ok(Some(_))) {
                continue;
            }
            let target = self.mountpoint(&n);
            let t = target.clone();
            match blocking(move || mounts::detach_all(&t)).await {
                Ok(()) => match std::fs::remove_dir(&target) {
                    Ok(()) => {
                        tracing::info!(name = %n, "removed a mount nobody records");
                        removed += 1;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %target.display(), "removing a directory nobody records: {e}")
                    }
                },
                Err(e) => {
                    tracing::warn!(name = %n, "unmounting a mount nobody records: {}", e.chain())
                }
            }
        }
        // read-only mounts of flists
        let mut seen: HashSet<String> = HashSet::new();
        for p in mounts::mounts_below(&table, &self.dirs.ro) {
            if let Some(h) = child_name(&self.dirs.ro, &p) {
                seen.insert(h);
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.dirs.ro) {
            seen.extend(
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        for h in seen {
            if hashes.contains(&h) || !is_hash(&h) {
                continue;
            }
            let _l = self.hashes.lock(&h).await;
            let ro = self.ro_path(&h);
            let was = ro.exists();
            self.drop_ro_if_unused(&h).await;
            if was && !ro.exists() {
                removed += 1;
            }
        }
        removed
    }

    /// Delete cached blocks nobody read for `max_age`.
    pub fn clean_cache(&self, max_age: Duration) -> crate::cleaner::CleanStats {
        crate::cleaner::clean(&self.dirs.cache, max_age, std::time::SystemTime::now())
    }

    /// Delete temp files a killed flistd left (call before serving).
    pub fn clean_temp(&self) {
        self.downloader.clean_temp();
        self.records.clean_temp();
    }
}

/// The first component of `path` below `dir`.
fn child_name(dir: &Path, path: &Path) -> Option<String> {
    path.strip_prefix(dir)
        .ok()?
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
}

fn is_hash(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the process `pid` is alive and is the FUSE server of `mountpoint` (pids are reused).
fn serves(pid: i32, mountpoint: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = mountpoint.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == want)
}

/// Create the upper directory of an overlay with the owner and mode of the flist's root, so the merged root
/// looks like the flist's.
fn make_upper(ro: &Path, rw: &Path) -> Result<()> {
    let m = std::fs::metadata(ro).map_err(Error::io("reading", ro))?;
    std::fs::create_dir(rw).map_err(Error::io("creating", rw))?;
    std::os::unix::fs::chown(rw, Some(m.uid()), Some(m.gid())).map_err(Error::io("chown", rw))?;
    std::fs::set_permissions(rw, std::fs::Permissions::from_mode(m.mode() & 0o7777))
        .map_err(Error::io("chmod", rw))
}

/// The last lines of a log, for error messages.
fn tail(path: &Path) -> String {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("(no log: {e})"),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(2048)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        format!("(log {} is empty)", path.display())
    } else {
        format!("log {}: {}", path.display(), s.replace('\n', " | "))
    }
}

fn same_request(rec: &Record, url: &str, opts: &Checked) -> bool {
    rec.url == url
        && rec.read_only == opts.read_only
        && rec.storage == opts.storage
        && rec.persisted_volume == opts.persisted_volume
}

fn describe(rec: &Record) -> String {
    let mut s = format!(
        "{} {}",
        rec.url,
        if rec.read_only {
            "read-only"
        } else {
            "writable"
        }
    );
    if let Some(p) = &rec.persisted_volume {
        s.push_str(&format!(" on {}", p.display()));
    }
    if !rec.storage.is_empty() {
        s.push_str(&format!(" from {}", rec.storage));
    }
    s
}
