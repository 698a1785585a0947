//! Pack a directory tree into an `.fl` and its blocks into a store; unpack an flist into a directory.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::block::{self, BLOCK_SIZE, BlockId, BlockKey};
use crate::cache::{BlockCache, CacheError};
use crate::meta::{Flist, Kind, MetaError, NewInode, Writer};
use crate::store::{self, Store, StoreError};

/// Errors of pack and unpack.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Reading the source tree or writing the destination.
    #[error("{path}: {context}")]
    Io {
        /// the file concerned
        path: PathBuf,
        /// what we were doing
        context: &'static str,
        /// the error
        #[source]
        source: std::io::Error,
    },
    /// The source or destination is not usable.
    #[error("{path}: {reason}")]
    Invalid {
        /// the path concerned
        path: PathBuf,
        /// what is wrong
        reason: String,
    },
    /// Writing the flist.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Storing a block.
    #[error("{path}: storing a block")]
    Store {
        /// the file whose block failed
        path: PathBuf,
        /// the error
        #[source]
        source: StoreError,
    },
    /// Fetching a block (unpack).
    #[error("{path}: reading content")]
    Cache {
        /// the file whose content failed
        path: PathBuf,
        /// the error
        #[source]
        source: CacheError,
    },
}

/// Pack options.
#[derive(Clone, Debug)]
pub struct PackOptions {
    /// Tags to write (`version`, `description`, `author`, or custom).
    pub tags: Vec<(String, String)>,
    /// Keep passwords in the route URLs written to the flist (stripped by default).
    pub keep_passwords: bool,
    /// Encoding/upload threads.
    pub workers: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            tags: Vec::new(),
            keep_passwords: false,
            workers: 4,
        }
    }
}

/// Progress and result counters of a pack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Inodes written (all types, including the root).
    pub inodes: u64,
    /// Regular files.
    pub files: u64,
    /// Content bytes read.
    pub bytes: u64,
    /// Blocks referenced.
    pub blocks: u64,
    /// Distinct blocks sent to the store in this run.
    pub blocks_stored: u64,
}

struct Job {
    ino: u64,
    index: usize,
    path: Arc<PathBuf>,
    data: Vec<u8>,
}

type Done = Result<(u64, usize, BlockId, BlockKey, bool), PackError>;

struct Pending {
    path: Arc<PathBuf>,
    blocks: Vec<Option<(BlockId, BlockKey)>>,
    expected: Option<usize>,
    done: usize,
}

fn io(path: &Path, context: &'static str) -> impl FnOnce(std::io::Error) -> PackError {
    let path = path.to_path_buf();
    move |source| PackError::Io {
        path,
        context,
        source,
    }
}

/// Pack `src` into the flist `out`, storing blocks through the routes `(start, end, url)`. `progress` is
/// called after every file. Store I/O runs on `rt`; call this from a plain thread, not from an async task.
pub fn pack(
    src: &Path,
    out: &Path,
    routes: &[(u8, u8, String)],
    opts: &PackOptions,
    rt: &tokio::runtime::Handle,
    progress: &mut dyn FnMut(&PackStats),
) -> Result<PackStats, PackError> {
    let meta = std::fs::symlink_metadata(src).map_err(io(src, "reading the source directory"))?;
    if !meta.is_dir() {
        return Err(PackError::Invalid {
            path: src.into(),
            reason: "not a directory".into(),
        });
    }
    if routes.is_empty() {
        return Err(PackError::Invalid {
            path: out.into(),
            reason: "no store given".into(),
        });
    }
    let router = store::Router::from_urls(routes.iter().map(|(s, e, u)| (*s, *e, u.as_str())))
        .map_err(|source| PackError::Store {
            path: out.into(),
            source,
        })?;
    let router: Arc<dyn Store> = Arc::new(router);

    let writer = Writer::create(out)?;
    for (s, e, u) in routes {
        let url = if opts.keep_passwords {
            u.clone()
        } else {
            store::redact(u)
        };
        writer.route(*s, *e, &url)?;
    }
    for (k, v) in &opts.tags {
        writer.tag(k, v)?;
    }

    // workers: encode and store blocks
    let workers = opts.workers.max(1);
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(workers * 2);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let seen: Arc<Mutex<HashSet<BlockId>>> = Arc::default();
    let mut handles = Vec::new();
    for i in 0..workers {
        let job_rx = job_rx.clone();
        let done_tx = done_tx.clone();
        let router = router.clone();
        let seen = seen.clone();
        let rt = rt.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("pack-{i}"))
                .spawn(move || {
                    loop {
                        let job = match job_rx.lock().expect("job queue").recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        };
                        let r = (|| {
                            let b = block::encode(&job.data).expect("chunks are at most a block");
                            let new = seen.lock().expect("seen set").insert(b.id);
                            if new {
                                rt.block_on(router.set(&b.id, &b.data)).map_err(|source| {
                                    PackError::Store {
                                        path: (*job.path).clone(),
                                        source,
                                    }
                                })?;
                            }
                            Ok((job.ino, job.index, b.id, b.key, new))
                        })();
                        let failed = r.is_err();
                        if done_tx.send(r).is_err() || failed {
                            return;
                        }
                    }
                })
                .map_err(io(out, "starting a pack thread"))?,
        );
    }
    drop(done_tx);

    let mut stats = PackStats::default();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let result = walk_and_send(
        src,
        &meta,
        &writer,
        &job_tx,
        &done_rx,
        &mut pending,
        &mut stats,
        progress,
    );
    drop(job_tx);
    let mut result = result;
    // drain the remaining results
    for d in done_rx.iter() {
        if result.is_ok() {
            result = absorb(d, &writer, &mut pending, &mut stats);
        }
    }
    for h in handles {
        let _ = h.join();
    }
    result?;
    if let Some((_, p)) = pending.iter().next() {
        return Err(PackError::Invalid {
            path: (*p.path).clone(),
            reason: "not every block was stored".into(),
        });
    }
    writer.finish()?;
    progress(&stats);
    Ok(stats)
}

fn absorb(
    d: Done,
    writer: &Writer,
    pending: &mut HashMap<u64, Pending>,
    stats: &mut PackStats,
) -> Result<(), PackError> {
    let (ino, index, id, key, new) = d?;
    if new {
        stats.blocks_stored += 1;
    }
    let p = pending.get_mut(&ino).expect("pending file");
    p.blocks[index] = Some((id, key));
    p.done += 1;
    flush_if_complete(ino, writer, pending)
}

fn flush_if_complete(
    ino: u64,
    writer: &Writer,
    pending: &mut HashMap<u64, Pending>,
) -> Result<(), PackError> {
    let complete = pending
        .get(&ino)
        .is_some_and(|p| p.expected == Some(p.done));
    if complete {
        let p = pending.remove(&ino).expect("pending file");
        for b in p.blocks {
            let (id, key) = b.expect("complete file has every block");
            writer.block(ino, &id, &key)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn walk_and_send(
    src: &Path,
    root_meta: &std::fs::Metadata,
    writer: &Writer,
    job_tx: &mpsc::SyncSender<Job>,
    done_rx: &mpsc::Receiver<Done>,
    pending: &mut HashMap<u64, Pending>,
    stats: &mut PackStats,
    progress: &mut dyn FnMut(&PackStats),
) -> Result<(), PackError> {
    let root = writer.inode(&new_inode(0, b"/", root_meta, None))?;
    stats.inodes += 1;
    let mut dirs = vec![(root, src.to_path_buf())];
    while let Some((dir_ino, dir)) = dirs.pop() {
        let mut entries: Vec<(OsString, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(io(&dir, "listing"))?
            .map(|e| e.map(|e| (e.file_name(), e.path())))
            .collect::<Result<_, _>>()
            .map_err(io(&dir, "listing"))?;
        entries.sort();
        let mut subdirs = Vec::new();
        for (name, path) in entries {
            let m = std::fs::symlink_metadata(&path).map_err(io(&path, "stat"))?;
            let ft = m.file_type();
            let target = if ft.is_symlink() {
                Some(
                    std::fs::read_link(&path)
                        .map_err(io(&path, "reading the link"))?
                        .into_os_string(),
                )
            } else {
                None
            };
            let n = new_inode(
                dir_ino,
                name.as_bytes(),
                &m,
                target.as_ref().map(|t| t.as_bytes()),
            );
            let ino = writer.inode(&n).map_err(|e| match e {
                MetaError::Invalid { reason, .. } => PackError::Invalid {
                    path: path.clone(),
                    reason,
                },
                e => PackError::Meta(e),
            })?;
            stats.inodes += 1;
            if ft.is_dir() {
                subdirs.push((ino, path));
            } else if ft.is_file() {
                let size = send_file(ino, &path, writer, job_tx, done_rx, pending, stats)?;
                if size != m.len() {
                    writer.set_size(ino, size)?;
                }
                stats.files += 1;
                progress(stats);
            }
        }
        // depth first, in name order
        subdirs.reverse();
        dirs.extend(subdirs);
    }
    Ok(())
}

fn new_inode<'a>(
    parent: u64,
    name: &'a [u8],
    m: &std::fs::Metadata,
    target: Option<&'a [u8]>,
) -> NewInode<'a> {
    NewInode {
        parent,
        name,
        size: m.len(),
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
        rdev: m.rdev(),
        ctime: m.ctime(),
        mtime: m.mtime(),
        target,
    }
}

#[allow(clippy::too_many_arguments)]
fn send_file(
    ino: u64,
    path: &Path,
    writer: &Writer,
    job_tx: &mpsc::SyncSender<Job>,
    done_rx: &mpsc::Receiver<Done>,
    pending: &mut HashMap<u64, Pending>,
    stats: &mut PackStats,
) -> Result<u64, PackError> {
    let mut f = std::fs::File::open(path).map_err(io(path, "opening"))?;
    let shared = Arc::new(path.to_path_buf());
    pending.insert(
        ino,
        Pending {
            path: shared.clone(),
            blocks: Vec::new(),
            expected: None,
            done: 0,
        },
    );
    let mut total = 0u64;
    let mut index = 0usize;
    loop {
        // fill a whole block: read() may return less than asked before the end of the file
        let mut buf = vec![0u8; BLOCK_SIZE];
        let mut filled = 0;
        while filled < BLOCK_SIZE {
            let n = match f.read(&mut buf[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(path, "reading")(e)),
            };
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        total += filled as u64;
        stats.bytes += filled as u64;
        stats.blocks += 1;
        if job_tx
            .send(Job {
                ino,
                index,
                path: shared.clone(),
                data: buf,
            })
            .is_err()
        {
            // every worker stopped: the error is waiting in done_rx
            break;
        }
        pending
            .get_mut(&ino)
            .expect("pending file")
            .blocks
            .push(None);
        index += 1;
        while let Ok(d) = done_rx.try_recv() {
            absorb(d, writer, pending, stats)?;
        }
        if filled < BLOCK_SIZE {
            break;
        }
    }
    pending.get_mut(&ino).expect("pending file").expected = Some(index);
    flush_if_complete(ino, writer, pending)?;
    while let Ok(d) = done_rx.try_recv() {
        absorb(d, writer, pending, stats)?;
    }
    Ok(total)
}

/// Unpack options.
#[derive(Clone, Debug, Default)]
pub struct UnpackOptions {
    /// Set owners (uid/gid) from the flist (needs root).
    pub preserve_owner: bool,
}

/// Unpack `flist` into `dest` (which must not exist or be empty), fetching content through `cache`.
/// Names were validated when the flist was opened and every file is created fresh (`O_EXCL`, no symlink
/// following), so nothing is ever written outside `dest`. Runs of zero blocks become holes.
pub fn unpack(
    flist: &Flist,
    cache: &BlockCache,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<(), PackError> {
    match std::fs::read_dir(dest) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(PackError::Invalid {
                    path: dest.into(),
                    reason: "destination is not empty".into(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(io(dest, "creating the destination"))?
        }
        Err(e) => return Err(io(dest, "opening the destination")(e)),
    }
    let mut dirs = Vec::new();
    for (rel, node) in flist.walk() {
        let path = dest.join(rel.strip_prefix("/").expect("walk paths are absolute"));
        match node.kind {
            Kind::Dir => {
                if node.ino != crate::meta::ROOT_INO {
                    std::fs::create_dir(&path).map_err(io(&path, "creating the directory"))?;
                }
                dirs.push((path, node));
                continue;
            }
            Kind::File => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io(&path, "creating the file"))?;
                let mut buf = vec![0u8; BLOCK_SIZE];
                let mut pos = 0u64;
                for (i, b) in node.blocks.iter().enumerate() {
                    let len = block::block_len(node.size, i as u64);
                    let n = cache
                        .read_at(b, len, 0, &mut buf[..len])
                        .map_err(|source| PackError::Cache {
                            path: path.clone(),
                            source,
                        })?;
                    if buf[..n].iter().all(|&x| x == 0) {
                        pos += n as u64;
                        continue;
                    }
                    use std::os::unix::fs::FileExt;
                    f.write_all_at(&buf[..n], pos)
                        .map_err(io(&path, "writing"))?;
                    pos += n as u64;
                }
                f.set_len(node.size)
                    .map_err(io(&path, "setting the size"))?;
                f.set_permissions(std::fs::Permissions::from_mode(node.perm()))
                    .map_err(io(&path, "setting the mode"))?;
            }
            Kind::Symlink => {
                let target =
                    std::ffi::OsStr::from_bytes(node.target.as_deref().unwrap_or_default());
                std::os::unix::fs::symlink(target, &path)
                    .map_err(io(&path, "creating the symlink"))?;
            }
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                let c = cpath(&path)?;
                // SAFETY: c is a valid NUL-terminated path; mknod has no memory preconditions.
                let r = unsafe {
                    libc::mknod(
                        c.as_ptr(),
                        node.mode as libc::mode_t,
                        node.rdev as libc::dev_t,
                    )
                };
                if r != 0 {
                    let e = std::io::Error::last_os_error();
                    if node.kind == Kind::Fifo || e.raw_os_error() != Some(libc::EPERM) {
                        return Err(io(&path, "creating the special file")(e));
                    }
                    tracing::warn!(path = %path.display(), "skipping a device node (not permitted)");
                    continue;
                }
            }
            Kind::Socket => continue,
        }
        finish_attrs(&path, node, opts, node.kind == Kind::Symlink)?;
    }
    // directories last (deepest first), so read-only modes do not block creating their content
    for (path, node) in dirs.into_iter().rev() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(node.perm()))
            .map_err(io(&path, "setting the mode"))?;
        finish_attrs(&path, node, opts, false)?;
    }
    Ok(())
}

fn cpath(path: &Path) -> Result<std::ffi::CString, PackError> {
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| PackError::Invalid {
        path: path.into(),
        reason: "path contains NUL".into(),
    })
}

fn finish_attrs(
    path: &Path,
    node: &crate::meta::Node,
    opts: &UnpackOptions,
    is_link: bool,
) -> Result<(), PackError> {
    if opts.preserve_owner {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))
            .map_err(io(path, "setting the owner"))?;
        if !is_link && node.perm() & 0o7000 != 0 {
            // chown clears setuid/setgid: put the mode back
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.perm()))
                .map_err(io(path, "setting the mode"))?;
        }
    }
    let c = cpath(path)?;
    let t = libc::timespec {
        tv_sec: node.mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: c is a valid NUL-terminated path and times points to two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io(path, "setting the times")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
