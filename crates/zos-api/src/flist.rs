//! flistd: `flist.flist@0.0.1` — flist mounts.

use serde::{Deserialize, Serialize};
use zos_types::Unit;
use zos_types::go::nullable;

/// How to mount an flist.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountOptions {
    /// A read-only bind of the flist; otherwise an overlay with a writable layer.
    #[serde(rename = "ReadOnly", default)]
    pub read_only: bool,
    /// Size of the writable layer (a storaged volume) in bytes; 0 means 256 MiB.
    #[serde(rename = "Limit", default)]
    pub limit: Unit,
    /// Block store URL overriding the flist's own.
    #[serde(rename = "Storage", default, deserialize_with = "nullable")]
    pub storage: String,
    /// Use this existing directory as the writable layer instead of a new volume.
    #[serde(rename = "PersistedVolume", default, deserialize_with = "nullable")]
    pub persisted_volume: String,
}

crate::contract! {
    /// Mounts of flists: read-only FUSE, with a bind or a writable overlay on top.
    object Flister, FlisterClient, FlisterContract = "flist", "flist", "0.0.1" {
        /// Mount the flist at `url` under `name`; returns the mount path.
        fn mount = "Mount" (name: String, url: String, options: MountOptions) -> String;
        /// Resize the writable layer of a mount; returns the mount path.
        fn update_mount_size = "UpdateMountSize" (name: String, limit: Unit) -> String;
        /// Unmount and forget a mount (and delete its writable volume).
        fn unmount = "Unmount" (name: String);
        /// The hash of the flist mounted under `name`.
        fn hash_from_root_path = "HashFromRootPath" (name: String) -> String;
        /// The hash the hub publishes for the flist at `url`.
        fn flist_hash = "FlistHash" (url: String) -> String;
        /// Whether a mount exists.
        fn exists = "Exists" (name: String) -> bool;
    }
}
