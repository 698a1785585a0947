//! Primitive wire types shared by every daemon, encoded as Go's msgpack v4 encodes them.
//!
//! - [`msgpack`]: the Go-style encoder ([`msgpack::to_vec`]) and the lenient decoder ([`msgpack::from_slice`]).
//! - [`go`]: Go types with their exact wire forms: [`go::GoTime`], [`go::GoDuration`], [`go::Ip`],
//!   [`go::IpNet`], [`go::Version`], [`go::Bytes`], and [`go::nullable`] for Go's nil slices, maps and strings.
//!
//! Every type also has a JSON form an operator can type (used by the `zbus` CLI).

pub mod go;
pub mod msgpack;

pub use go::{Bytes, GoDuration, GoTime, Ip, IpNet, Unit, Version};
