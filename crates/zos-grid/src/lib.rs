//! The Grid v4 node-registrar protocol, shared by the registrar server and the node side.
//!
//! * [`models`]: the JSON the real registrar emits and accepts (its quirks included: `Interfaces`,
//!   `ips` as list or `/`-joined string, base64 zos version).
//! * [`keys`]: ed25519 from a 32-byte seed, Substrate-style ed25519/sr25519 keys from a BIP-39 phrase,
//!   verification of both schemes, Stellar addresses.
//! * [`auth`]: the account-creation proof and the `X-Auth` header (v1 as the Go registrar, v2 binding the request).
//! * [`client`]: an async HTTP client that signs through a [`Signer`], so the node's key can stay in identityd.
//! * [`clock`]: an injectable clock.

pub mod auth;
pub mod client;
pub mod clock;
pub mod encoding;
pub mod keys;
pub mod models;
pub mod signer;

pub use client::{AuthMode, ClientError, FarmFilter, NodeFilter, RegistrarClient};
pub use clock::{Clock, ManualClock, SystemClock};
pub use keys::{KeyPair, Scheme};
pub use models::*;
pub use signer::{FnSigner, SignError, Signer};
