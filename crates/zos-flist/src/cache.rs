//! The local block cache: decoded (plaintext) blocks at `<dir>/<hex[0:2]>/<hex[2:4]>/<hex>`, the layout rfs
//! uses, filled on demand from a [`Store`].
//!
//! Unlike rfs, an entry is written to a temporary file and renamed into place, and an entry is used only when
//! its length is exactly the block's plaintext length (known from the flist), so a crash mid-write can never
//! leave a truncated block that is trusted later. Concurrent requests for the same missing block fetch it once.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::block::{self, BlockError};
use crate::meta::BlockRef;
use crate::store::{Store, StoreError};

/// Errors of the block cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The store could not deliver the block.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The block did not decode.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The decoded block has a different length than the flist says.
    #[error("block {id}: decodes to {actual} bytes, the flist expects {expected}")]
    Length {
        /// hex id
        id: String,
        /// from the flist
        expected: usize,
        /// decoded
        actual: usize,
    },
    /// Local I/O on the cache directory.
    #[error("block cache {path}: {context}")]
    Io {
        /// file or directory
        path: PathBuf,
        /// what we were doing
        context: &'static str,
        /// the error
        #[source]
        source: std::io::Error,
    },
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary name next to `path` (same directory, so rename is atomic).
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    path.with_file_name(name)
}

/// Fetch statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks found in the cache directory.
    pub hits: u64,
    /// Blocks fetched from the store.
    pub fetches: u64,
}

/// A block cache in front of a store. Its methods block; call them from plain threads (not from inside an
/// async task): store I/O runs on the runtime behind `rt`.
pub struct BlockCache {
    dir: PathBuf,
    store: Arc<dyn Store>,
    rt: tokio::runtime::Handle,
    inflight: Mutex<HashMap<Vec<u8>, Arc<Mutex<()>>>>,
    hits: AtomicU64,
    fetches: AtomicU64,
}

impl BlockCache {
    /// A cache in `dir` (created if missing) in front of `store`.
    pub fn new(
        dir: impl Into<PathBuf>,
        store: Arc<dyn Store>,
        rt: tokio::runtime::Handle,
    ) -> Result<BlockCache, CacheError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| CacheError::Io {
            path: dir.clone(),
            context: "creating",
            source,
        })?;
        Ok(BlockCache {
            dir,
            store,
            rt,
            inflight: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Hit and fetch counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            fetches: self.fetches.load(Ordering::Relaxed),
        }
    }

    /// Where the decoded block lives.
    pub fn path_of(&self, block: &BlockRef) -> PathBuf {
        let h = block.hex();
        self.dir.join(&h[..2]).join(&h[2..4]).join(h)
    }

    fn valid(path: &Path, len: usize) -> Option<std::fs::File> {
        let f = std::fs::File::open(path).ok()?;
        (f.metadata().ok()?.len() == len as u64).then_some(f)
    }

    /// Make sure the block (of plaintext length `len`) is in the cache; returns its file, open for reading.
    pub fn ensure(&self, block: &BlockRef, len: usize) -> Result<std::fs::File, CacheError> {
        let path = self.path_of(block);
        if let Some(f) = Self::valid(&path, len) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(f);
        }
        // one fetch per block at a time
        let key = block.store_key().to_vec();
        let lock = self
            .inflight
            .lock()
            .expect("inflight map")
            .entry(key.clone())
            .or_default()
            .clone();
        let result = {
            let _guard = lock.lock().expect("block lock");
            match Self::valid(&path, len) {
                Some(f) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    Ok(f)
                }
                None => self.fetch(block, len, &path),
            }
        };
        {
            let mut map = self.inflight.lock().expect("inflight map");
            if Arc::strong_count(&lock) <= 2 {
                map.remove(&key);
            }
        }
        result
    }

    fn fetch(
        &self,
        block: &BlockRef,
        len: usize,
        path: &Path,
    ) -> Result<std::fs::File, CacheError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let data = self.rt.block_on(self.store.get(block.store_key()))?;
        let plain = match block {
            BlockRef::Fl { id, key } => block::decode(id, key, data)?,
        };
        if plain.len() != len {
            return Err(CacheError::Length {
                id: block.hex(),
                expected: len,
                actual: plain.len(),
            });
        }
        let io = |context: &'static str, p: &Path| {
            let path = p.to_path_buf();
            move |source| CacheError::Io {
                path,
                context,
                source,
            }
        };
        let dir = path.parent().expect("cache path has a parent");
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let tmp = tmp_path(path);
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&plain)?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("writing", path)(e));
        }
        std::fs::File::open(path).map_err(io("opening", path))
    }

    /// Read from the block at `offset` (within the block) into `buf`; returns the bytes read.
    pub fn read_at(
        &self,
        block: &BlockRef,
        len: usize,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<usize, CacheError> {
        let f = self.ensure(block, len)?;
        let want = buf.len().min(len.saturating_sub(offset));
        let mut done = 0;
        while done < want {
            let n = f
                .read_at(&mut buf[done..want], (offset + done) as u64)
                .map_err(|source| CacheError::Io {
                    path: self.path_of(block),
                    context: "reading",
                    source,
                })?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
}

/// Read a regular file's content at `offset` into `buf` through the cache, spanning blocks as needed;
/// returns the bytes read (short only at the end of the file).
pub fn read_file_at(
    cache: &BlockCache,
    node: &crate::meta::Node,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, CacheError> {
    let bs = block::BLOCK_SIZE as u64;
    let end = node.size.min(offset.saturating_add(buf.len() as u64));
    let mut pos = offset;
    while pos < end {
        let index = pos / bs;
        let within = (pos % bs) as usize;
        let len = block::block_len(node.size, index);
        let Some(b) = node.blocks.get(index as usize) else {
            break;
        };
        let from = (pos - offset) as usize;
        let to = (end - offset) as usize;
        let n = cache.read_at(b, len, within, &mut buf[from..to])?;
        if n == 0 {
            break;
        }
        pos += n as u64;
    }
    Ok((pos.max(offset) - offset) as usize)
}
