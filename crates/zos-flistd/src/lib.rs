//! flistd's logic: mounts of flists, served on the bus as `flist.flist@0.0.1` ([`zos_api::flist`]).
//!
//! A mount of a flist (an rfs `.fl`) by URL is made in three layers:
//! 1. the flist file, downloaded over HTTP and checked against the md5 the hub publishes at `<url>.md5`
//!    (when it does), stored as `<root>/flist/<md5>` ([`download`]);
//! 2. its read-only FUSE mount at `<root>/ro/<md5>`, shared by every mount of that flist, served by a FUSE
//!    server process of its own (`flistd fuse …`, [`fuse`]) that outlives flistd;
//! 3. `<root>/mountpoint/<name>`: a read-only bind of it, or an overlay whose writable layer (`rw/`, `wd/`)
//!    lives on a storaged volume named `<name>` (created through `storage@0.0.1` when missing) or on the
//!    caller's persisted volume ([`module`]).
//!
//! Every mount is recorded in `<root>/state/<name>.json` before each step that changes the system
//! ([`record`]), so a flistd killed at any moment finds, at its next start, what it was doing: interrupted
//! mounts are undone, interrupted unmounts finished, and recorded mounts whose FUSE server died are mounted
//! again ([`module::FlistModule::reconcile`], also run every 30 s). Mounts whose server is alive are left
//! alone: they survive a flistd restart untouched.
//!
//! Block stores: the flist's own routes (or the mount's `Storage` override), then fallbacks — by default
//! the hub's `/blocks` and `[hub] storage` ([`store`]). Blocks are cached in `<root>/cache`; files not
//! used for 90 days are deleted daily ([`cleaner`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = zos_config::NodeConfig::load()?;
//! let helper = zos_flistd::HelperCommand { program: "/usr/bin/flistd".into(), args: vec!["fuse".into()] };
//! let daemon = zos_flistd::daemon::DaemonConfig::from_node_config(&cfg, helper);
//! zos_flistd::daemon::run(daemon, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod cleaner;
pub mod daemon;
pub mod download;
pub mod error;
pub mod failpoint;
pub mod fuse;
pub mod locks;
pub mod module;
pub mod mounts;
pub mod record;
pub mod service;
pub mod store;
pub mod validate;

pub use error::{Error, Result};
pub use module::{FlistModule, HelperCommand, Options, ReconcileStats};
pub use service::Service;
