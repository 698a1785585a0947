//! rfs `.fl` flists in Rust: the SQLite metadata format ([`meta`]), the block pipeline ([`block`]), block
//! stores ([`store`]: directory, HTTP, 0-db, and a router over ranges), the local block cache ([`cache`]),
//! pack/unpack ([`pack`]) and a read-only FUSE mount ([`fs`]).
//!
//! Flists made here and by rfs are interchangeable: same schema, same chunking (512 KiB), same keys and ids
//! (BLAKE2b-256, raw snappy, AES-256-GCM with `nonce = key[0..12]`), same store layouts.
//!
//! The one call flistd needs:
//! ```no_run
//! # fn main() -> Result<(), zos_flist::Error> {
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let mount = zos_flist::mount_fl(
//!     "/var/cache/modules/flistd/flist/<md5>".as_ref(),
//!     "/var/cache/modules/flistd/ro/<md5>".as_ref(),
//!     &zos_flist::MountFlOptions::new("/var/cache/modules/flistd/cache"),
//!     rt.handle(),
//! )?;
//! // ... the tree is readable at the mountpoint; dropping `mount` (or `mount.unmount()`) unmounts
//! # Ok(()) }
//! ```
//! Store I/O runs on the given runtime; the FUSE threads and the cache block, so never call the cache's
//! methods from inside an async task.

pub mod block;
pub mod cache;
pub mod fs;
pub mod meta;
pub mod pack;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use block::{BLOCK_SIZE, BlockId, BlockKey};
pub use cache::{BlockCache, CacheError};
pub use fs::{MountConfig, MountError, MountHandle};
pub use meta::{BlockRef, Flist, Kind, MetaError, Node};
pub use pack::{PackError, PackOptions, PackStats, UnpackOptions};
pub use store::{Store, StoreError};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing flist metadata.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A block store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The block cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Mounting.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Pack or unpack.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The flist has no routes and no store was given.
    #[error("flist {0}: no store routes in the flist and none given")]
    NoStore(PathBuf),
}

/// Options of [`mount_fl`].
#[derive(Clone, Debug)]
pub struct MountFlOptions {
    /// Block cache directory (shared between mounts; blocks are content addressed).
    pub cache_dir: PathBuf,
    /// Stores to use instead of the flist's own routes (`[<lo>-<hi>=]<url>`), e.g. a local hub's
    /// `http://127.0.0.1:8080/blocks`.
    pub stores: Vec<String>,
    /// FUSE options.
    pub mount: MountConfig,
}

impl MountFlOptions {
    /// Defaults with the given cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> MountFlOptions {
        MountFlOptions {
            cache_dir: cache_dir.into(),
            stores: Vec::new(),
            mount: MountConfig::default(),
        }
    }
}

/// Open the store an flist's routes (or `overrides`, when not empty) describe.
pub fn open_store(flist: &Flist, overrides: &[String]) -> Result<Arc<dyn Store>, Error> {
    let routes: Vec<(u8, u8, String)> = if overrides.is_empty() {
        flist
            .routes()
            .iter()
            .map(|r| (r.start, r.end, r.url.clone()))
            .collect()
    } else {
        overrides
            .iter()
            .map(|s| store::parse_range(s))
            .collect::<Result<_, _>>()?
    };
    if routes.is_empty() {
        return Err(Error::NoStore(flist.path().into()));
    }
    let router = store::Router::from_urls(routes.iter().map(|(s, e, u)| (*s, *e, u.as_str())))?;
    Ok(Arc::new(router))
}

/// Open, validate and mount the `.fl` at `meta` on `mountpoint`, read-only, fetching blocks on demand into
/// `opts.cache_dir`. Store I/O runs on `rt`.
pub fn mount_fl(
    meta: &Path,
    mountpoint: &Path,
    opts: &MountFlOptions,
    rt: &tokio::runtime::Handle,
) -> Result<MountHandle, Error> {
    let flist = Arc::new(Flist::open(meta)?);
    let store = open_store(&flist, &opts.stores)?;
    let cache = Arc::new(BlockCache::new(&opts.cache_dir, store, rt.clone())?);
    Ok(fs::mount(flist, cache, mountpoint, &opts.mount)?)
}
