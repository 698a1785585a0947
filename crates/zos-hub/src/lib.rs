//! A 0-hub compatible flist hub for Zero-OS nodes: the [`server`] (the read side of the 0-hub API over a
//! directory laid out as the real hub's, a token-guarded publish API, and `/blocks/` over a directory block
//! store), the directory [`layout`] itself (also usable without HTTP to publish), and the [`client`] nodes
//! use (listings, tags, taglinks, light info, downloads with md5 check, taglink resolution).

pub mod client;
pub mod layout;
pub mod server;
pub mod types;

pub use client::{ClientError, HubClient, Package};
pub use layout::{Hub, HubError};
pub use server::{ServerConfig, router, serve};
pub use types::{Entry, EntryType, Repository, Size};
