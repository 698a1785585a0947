//! The read-only FUSE mount of a loaded flist (pure Rust, `fuser`; no libfuse).
//!
//! Inode numbers are the flist's own (the root is 1, as FUSE wants). Metadata is served from memory; file
//! content is read through the [`BlockCache`], block by block, so a read at any offset and of any size works
//! and spans blocks. Requests are served by several threads (each with its own `/dev/fuse` fd) and nothing
//! serializes reads: concurrent requests for the same missing block wait for one fetch, other reads go on.
//! Sequential readers get the next blocks prefetched in the background.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEntry, ReplyOpen, ReplyStatfs, Request, SessionACL,
};

use crate::block::{BLOCK_SIZE, block_len};
use crate::cache::{BlockCache, read_file_at};
use crate::meta::{Flist, Kind, Node};

/// The content never changes while mounted: let the kernel cache entries and attributes for long.
const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Blocks prefetched ahead of a sequential reader.
const PREFETCH_AHEAD: u64 = 2;

/// Errors mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mountpoint is not a directory.
    #[error("mountpoint {0} is not a directory")]
    NotADirectory(PathBuf),
    /// The kernel refused the mount, or /dev/fuse is missing.
    #[error("mounting at {path}")]
    Mount {
        /// mountpoint
        path: PathBuf,
        /// the error
        #[source]
        source: std::io::Error,
    },
}

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// Threads serving FUSE requests.
    pub threads: usize,
    /// `allow_other`: let every user read (root mounts only).
    pub allow_other: bool,
    /// The source name shown in `/proc/mounts`.
    pub fsname: String,
    /// Background threads fetching blocks ahead of sequential readers (0 = no prefetch).
    pub prefetch_threads: usize,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            threads: 4,
            allow_other: true,
            fsname: "zflist".into(),
            prefetch_threads: 2,
        }
    }
}

struct Shared {
    flist: Arc<Flist>,
    cache: Arc<BlockCache>,
}

/// The FUSE filesystem.
pub struct FlistFs {
    shared: Arc<Shared>,
    next_fh: AtomicU64,
    /// per open file: where the last read ended (sequential detection)
    last_end: Mutex<HashMap<u64, u64>>,
    prefetch: Option<mpsc::SyncSender<(u64, u64)>>,
}

impl FlistFs {
    /// A filesystem over a loaded flist and a block cache.
    pub fn new(flist: Arc<Flist>, cache: Arc<BlockCache>, prefetch_threads: usize) -> FlistFs {
        let shared = Arc::new(Shared { flist, cache });
        let prefetch = (prefetch_threads > 0).then(|| {
            let (tx, rx) = mpsc::sync_channel::<(u64, u64)>(64);
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..prefetch_threads {
                let rx = rx.clone();
                let shared = shared.clone();
                let _ = std::thread::Builder::new()
                    .name(format!("prefetch-{i}"))
                    .spawn(move || {
                        loop {
                            let Ok((ino, index)) = rx.lock().expect("prefetch queue").recv() else {
                                return;
                            };
                            let Some(node) = shared.flist.node(ino) else {
                                continue;
                            };
                            if let Some(b) = node.blocks.get(index as usize) {
                                // errors surface again (and are reported) when the block is read for real
                                let _ = shared.cache.ensure(b, block_len(node.size, index));
                            }
                        }
                    });
            }
            tx
        });
        FlistFs {
            shared,
            next_fh: AtomicU64::new(1),
            last_end: Mutex::new(HashMap::new()),
            prefetch,
        }
    }

    fn node(&self, ino: INodeNo) -> Option<&Node> {
        self.shared.flist.node(u64::from(ino))
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::CharDevice => FileType::CharDevice,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
    }
}

fn time(secs: i64) -> std::time::SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// The attributes the mount reports for an inode.
pub fn attr(n: &Node) -> FileAttr {
    FileAttr {
        ino: INodeNo(n.ino),
        size: n.size,
        blocks: n.size.div_ceil(512),
        atime: time(n.mtime),
        mtime: time(n.mtime),
        ctime: time(n.ctime),
        crtime: time(n.ctime),
        kind: file_type(n.kind),
        perm: (n.perm() & 0o7777) as u16,
        nlink: if n.kind == Kind::Dir { 2 } else { 1 },
        uid: n.uid,
        gid: n.gid,
        rdev: n.rdev as u32,
        blksize: 128 * 1024,
        flags: 0,
    }
}

impl Filesystem for FlistFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(BLOCK_SIZE as u32);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.shared.flist.lookup(u64::from(parent), name) {
            Some(n) => reply.entry(&TTL, &attr(n), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Some(n) => reply.attr(&TTL, &attr(n)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino) {
            Some(Node {
                target: Some(t), ..
            }) => reply.data(t),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(n) = self.node(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if n.kind == Kind::Dir {
            return reply.error(Errno::EISDIR);
        }
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        reply.opened(
            FileHandle(fh),
            FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
        );
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.last_end.lock().expect("read positions").remove(&fh.0);
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(n) = self.node(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if n.kind != Kind::File {
            return reply.error(Errno::EINVAL);
        }
        if offset >= n.size {
            return reply.data(&[]);
        }
        let len = (size as u64).min(n.size - offset) as usize;
        let sequential = {
            let mut m = self.last_end.lock().expect("read positions");
            let prev = m.insert(fh.0, offset + len as u64);
            prev == Some(offset) || offset == 0
        };
        if sequential && let Some(tx) = &self.prefetch {
            let last = (offset + len as u64 - 1) / BLOCK_SIZE as u64;
            for i in 1..=PREFETCH_AHEAD {
                if (last + i) < n.blocks.len() as u64 {
                    let _ = tx.try_send((n.ino, last + i));
                }
            }
        }
        let mut buf = vec![0u8; len];
        match read_file_at(&self.shared.cache, n, offset, &mut buf) {
            Ok(got) => reply.data(&buf[..got]),
            Err(e) => {
                tracing::error!(ino = n.ino, offset, "read failed: {e}");
                reply.error(Errno::EIO)
            }
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(n) = self.node(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if n.kind != Kind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        let parent = if n.parent == 0 { n.ino } else { n.parent };
        let mut i = offset;
        loop {
            let full = match i {
                0 => reply.add(INodeNo(n.ino), 1, FileType::Directory, "."),
                1 => reply.add(INodeNo(parent), 2, FileType::Directory, ".."),
                _ => {
                    let Some(&c) = n.children.get((i - 2) as usize) else {
                        break;
                    };
                    let Some(child) = self.shared.flist.node(c) else {
                        break;
                    };
                    reply.add(
                        INodeNo(c),
                        i + 1,
                        file_type(child.kind),
                        OsStr::from_bytes(child.name.as_bytes()),
                    )
                }
            };
            if full {
                break;
            }
            i += 1;
        }
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: fuser::ReplyEmpty,
    ) {
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        if size == 0 {
            reply.size(0)
        } else {
            reply.data(&[])
        }
    }

    fn access(
        &self,
        _req: &Request,
        ino: INodeNo,
        mask: fuser::AccessFlags,
        reply: fuser::ReplyEmpty,
    ) {
        if self.node(ino).is_none() {
            return reply.error(Errno::ENOENT);
        }
        if mask.contains(fuser::AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let f = &self.shared.flist;
        let blocks = f.content_size().div_ceil(4096);
        reply.statfs(blocks, 0, 0, f.len() as u64, 0, 4096, 255, 4096);
    }
}

/// A live mount; dropping it unmounts.
pub struct MountHandle {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl MountHandle {
    /// The mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the session still runs (false once someone unmounted it from outside).
    pub fn is_alive(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Unmount and wait for the serving threads. Fails with `EBUSY` (and stays mounted) while files are open.
    pub fn unmount(&mut self) -> std::io::Result<()> {
        let Some(s) = self.session.as_ref() else {
            return Ok(());
        };
        if !s.guard.is_finished() {
            let c = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes())
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
        }
        // the serving threads end once the kernel closes the connection
        let s = self.session.take().expect("checked above");
        s.join()
    }

    /// Detach the mount lazily (`MNT_DETACH`): it disappears now and the kernel closes it once its last user
    /// is gone; the serving threads end then.
    pub fn detach(&mut self) -> std::io::Result<()> {
        if self.session.take().is_some() {
            let c = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes())
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            tracing::warn!(mountpoint = %self.mountpoint.display(), "unmounting: {e}; detaching lazily");
            if let Err(e) = self.detach() {
                tracing::warn!(mountpoint = %self.mountpoint.display(), "detaching: {e}");
            }
        }
    }
}

/// Mount `flist` read-only at `mountpoint`, content through `cache`.
pub fn mount(
    flist: Arc<Flist>,
    cache: Arc<BlockCache>,
    mountpoint: &Path,
    cfg: &MountConfig,
) -> Result<MountHandle, MountError> {
    if !mountpoint.is_dir() {
        return Err(MountError::NotADirectory(mountpoint.into()));
    }
    let fs = FlistFs::new(flist, cache, cfg.prefetch_threads);
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(cfg.fsname.clone()),
        MountOption::Subtype("zflist".into()),
        MountOption::DefaultPermissions,
    ];
    config.acl = if cfg.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(cfg.threads.max(1));
    config.clone_fd = cfg.threads > 1;
    let session = fuser::Session::new(fs, mountpoint, &config)
        .and_then(|s| s.spawn())
        .map_err(|source| MountError::Mount {
            path: mountpoint.into(),
            source,
        })?;
    Ok(MountHandle {
        session: Some(session),
        mountpoint: mountpoint.into(),
    })
}
