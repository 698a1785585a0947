//! The FUSE server of one flist: the process behind `<root>/ro/<hash>` (`flistd fuse …`).
//!
//! flistd runs one per mounted flist, in its own session, so it outlives flistd: a flistd killed or restarted
//! leaves every mount readable, and the next flistd finds the servers by the mount table (the mount's source
//! is `flistd:<pid>`). The server ends when its mount goes away (`umount`, also a lazy one once the last user
//! is gone), or on SIGTERM/SIGINT when nothing holds the mount any more.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zos_flist::store::{Router, Store, parse_range};
use zos_flist::{BlockCache, Flist, MountConfig};

use crate::store::FailoverStore;

/// The mount source of a flistd FUSE server is this prefix and the server's pid.
pub const FSNAME_PREFIX: &str = "flistd:";

/// What to serve, and where.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The `.fl` file.
    pub meta: PathBuf,
    /// The block cache (shared by every server).
    pub cache: PathBuf,
    /// Stores replacing the flist's routes (`[<lo>-<hi>=]<url>`); empty: the routes.
    pub stores: Vec<String>,
    /// Stores tried when those fail.
    pub fallbacks: Vec<String>,
    /// The mountpoint.
    pub mountpoint: PathBuf,
    /// FUSE request threads.
    pub threads: usize,
}

/// Why a FUSE server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("starting the runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Flist(#[from] zos_flist::Error),
    #[error("no block store: the flist has no routes, and no store or fallback was given")]
    NoStore,
    #[error("unmounting {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The store of a mount: the flist's routes (or `stores` when given), then each of `fallbacks`.
pub fn build_store(
    flist: &Flist,
    stores: &[String],
    fallbacks: &[String],
) -> Result<Arc<dyn Store>, ServeError> {
    let mut list: Vec<Arc<dyn Store>> = Vec::new();
    if !stores.is_empty() || !flist.routes().is_empty() {
        list.push(zos_flist::open_store(flist, stores)?);
    }
    for f in fallbacks {
        let (lo, hi, url) = parse_range(f).map_err(zos_flist::Error::from)?;
        let router = Router::from_urls([(lo, hi, url.as_str())]).map_err(zos_flist::Error::from)?;
        list.push(Arc::new(router));
    }
    match list.len() {
        0 => Err(ServeError::NoStore),
        1 => Ok(list.pop().expect("one store")),
        _ => Ok(Arc::new(FailoverStore::new(list))),
    }
}

/// Mount the flist and serve it until it is unmounted (or SIGTERM/SIGINT once nothing holds it).
pub fn serve(opts: &ServeOptions) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let flist = Arc::new(Flist::open(&opts.meta).map_err(zos_flist::Error::from)?);
    let store = build_store(&flist, &opts.stores, &opts.fallbacks)?;
    let cache = Arc::new(
        BlockCache::new(&opts.cache, store.clone(), rt.handle().clone())
            .map_err(zos_flist::Error::from)?,
    );
    let cfg = MountConfig {
        threads: opts.threads.max(1),
        allow_other: true,
        fsname: format!("{FSNAME_PREFIX}{}", std::process::id()),
        ..MountConfig::default()
    };
    let mut handle = zos_flist::fs::mount(flist.clone(), cache, &opts.mountpoint, &cfg)
        .map_err(zos_flist::Error::from)?;
    tracing::info!(flist = %opts.meta.display(), mountpoint = %opts.mountpoint.display(),
        store = %store.url(), inodes = flist.len(), "serving");
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(ServeError::Runtime)?;
        let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Runtime)?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = tick.tick() => {
                    if !handle.is_alive() {
                        tracing::info!("unmounted: exiting");
                        return Ok(());
                    }
                    continue;
                }
            }
            match handle.unmount() {
                Ok(()) => {
                    tracing::info!("signalled: unmounted");
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    tracing::warn!("signalled, but the mount is in use: serving on");
                }
                Err(source) => {
                    return Err(ServeError::Unmount {
                        path: opts.mountpoint.clone(),
                        source,
                    });
                }
            }
        }
    })?;
    handle.unmount().map_err(|source| ServeError::Unmount {
        path: opts.mountpoint.clone(),
        source,
    })
}
