//! zbus over Redis, wire-compatible with Go zbus v1 and better behaved.
//!
//! - [`wire`]: the envelope, keys and status payload, byte-compatible with Go.
//! - [`Client`]: calls with a deadline on every call, a connection lent per call, withdrawal of requests nobody
//!   took, and one shared, self-healing stream subscriber per client.
//! - [`Server`]: async handlers, per-module concurrency, atomic replies, deadline-expired requests dropped,
//!   protocol-error replies instead of panics, the `zbus@1.0` status object.
//! - [`codec`]: what generated contract code uses to decode arguments and encode results.
//!
//! Typed clients and server objects are generated from the contracts in the `zos-api` crate; this crate knows
//! nothing about any daemon.
//!
//! ```no_run
//! # async fn demo() -> Result<(), zos_bus::Error> {
//! let client = zos_bus::Client::connect("unix:///var/run/redis.sock")?;
//! let status = client.status("storage", std::time::Duration::from_secs(3)).await?;
//! println!("{} objects", status.objects.len());
//! # Ok(()) }
//! ```

pub mod broker;
pub mod client;
pub mod codec;
pub mod error;
pub mod server;
mod subscriber;
pub mod wire;

pub use broker::{Broker, DEFAULT_BROKER};
pub use client::{CallOptions, Client, DEFAULT_TIMEOUT};
pub use error::Error;
pub use server::{BoxFuture, RawSink, Server, ServerHandle, ServerObject, StreamSink};
pub use subscriber::Subscription;
pub use wire::{CallError, ObjectId, Output, Status};
