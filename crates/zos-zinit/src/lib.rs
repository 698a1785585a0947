//! A zinit v0.2.14 compatible process supervisor: the node's PID 1.
//!
//! - [`init::run`] is `zinit init`: it loads the YAML units of a directory ([`load`]), supervises them
//!   ([`manager::Manager`]) and serves the v0.2.14 line protocol on a unix socket ([`server`]), byte-compatible
//!   with what zos's Go client and `zinit` CLI expect.
//! - The unit struct and the client live in `zos-zinit-client`, shared with the daemons.
//!
//! Kept from v0.2.14: the unit schema and defaults, the state strings (`Error(Exited(Pid(N), C))`), dependency
//! gating on Running/Success (a oneshot's dependants wait for its success), `test` gating, process groups,
//! reverse-dependency-order shutdown, `--container`. Fixed: exponential restart backoff with a stability
//! reset; SIGKILL after `shutdown_timeout` on stop and at shutdown; child subreaper when not PID 1 (orphans are
//! reaped); lossy UTF-8 log reading; no busy loop when a test cannot be spawned, and the test is killed when
//! its service exits; dependency cycles rejected at load and at `monitor`; `monitor` names sanitised;
//! `shutdown`/`reboot` refused unless PID 1 or `--container`; SIGTERM handled gracefully; a server-side,
//! atomic `restart`.

pub mod cli;
pub mod graph;
pub mod init;
pub mod load;
pub mod logging;
pub mod logs;
pub mod manager;
pub mod process;
pub mod server;
pub mod state;

pub use init::{InitConfig, InitError, run};
pub use manager::{Backoff, Error, Manager, Options, Power};
pub use state::{ExitStatus, State, Target};
pub use zos_zinit_client::Unit;

/// What `zinit -V` reports: the protocol version we are compatible with (zos parses `zinit vX.Y.Z` and uses
/// `reboot`/`shutdown` from 0.2.9 on).
pub const COMPAT_VERSION: &str = "v0.2.14";
