//! storaged's logic: the node's disks turned into btrfs pools, and the volumes, virtual disks, zdb devices
//! and system cache carved from them, served as `storage.storage@0.0.1`.
//!
//! - [`discover`]: disks and partitions from sysfs, filesystems from `blkid -p` (no udev needed), the
//!   rotational flag, opt-in partitioning of free space.
//! - [`pool`]: one btrfs filesystem per device, mounted at `<mount_root>/<filesystem uuid>`; its type in
//!   `.seektime`.
//! - [`module::StorageModule`]: every operation, with per-name and per-pool serialisation, capacity by
//!   reservation, and crash repair at start.
//! - [`service::Service`]: the bus object; [`daemon::run`]: the daemon.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = zos_storage::Options::new(vec!["/dev/loop3".into()], "/tmp/pools", "/tmp/cache");
//! zos_storage::daemon::run(opts, "unix:///var/run/redis.sock", 16, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod btrfs;
pub mod daemon;
pub mod discover;
pub mod error;
mod exec;
pub mod failpoint;
pub mod module;
pub mod mounts;
pub mod pool;
pub mod service;
pub mod vdisk;

pub use error::{Error, Result};
pub use module::{CacheState, Options, PoolInfo, StorageModule};
pub use service::Service;
