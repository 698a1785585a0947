//! Talk to zinit, the node's PID 1, and describe the services it runs.
//!
//! - [`Unit`]: the YAML unit (`/etc/zinit/<name>.yaml`), shared by the supervisor (`zos-zinit`), this client
//!   and every daemon that installs services. Same schema, defaults and validation as zinit v0.2.14.
//! - [`Client`]: an async client for the control socket (zinit v0.2.14 line protocol), with the zos Go
//!   client's semantics: [`Client::start_wait`], [`Client::stop_wait`] (SIGKILL at the deadline),
//!   [`Client::add_service`] (atomic write of the unit file, then `monitor`).
//! - [`ServiceState`]: a state string parsed like the Go client does (`^(\w+)(?:\((.+)\))?$`, lower-cased;
//!   success, error, failure and blocked count as exited).
//!
//! ```no_run
//! # async fn demo() -> Result<(), zos_zinit_client::Error> {
//! use std::time::Duration;
//! use zos_zinit_client::{Client, Unit};
//!
//! let zinit = Client::default(); // /var/run/zinit.sock
//! let mut unit = Unit::new("mycelium --peers tcp://1.2.3.4:9651");
//! unit.after = vec!["networkd".into()];
//! zinit.add_service("/etc/zinit".as_ref(), "mycelium", &unit).await?;
//! zinit.start_wait("mycelium", Duration::from_secs(30)).await?;
//! println!("{}", zinit.status("mycelium").await?.state);
//! zinit.stop_wait("mycelium", Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```

mod client;
pub mod state;
pub mod unit;

pub use client::{Client, DEFAULT_TIMEOUT, Error, LogStream, write_unit};
pub use state::{RawStatus, ServiceState, ServiceStatus, StateKind, Target};
pub use unit::{LogMode, Signals, Unit, UnitError, parse_signal, split_command, validate_name};
