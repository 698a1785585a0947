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
    /// Block store (`[<lo>-<hi>=]<url>`) replacing the flist's own routes.
    #[serde(rename = "Storage", default, deserialize_with = "nullable")]
    pub storage: String,
    /// Use this existing directory (absolute) as the writable layer instead of a volume; flistd never
    /// deletes it.
    #[serde(rename = "PersistedVolume", default, deserialize_with = "nullable")]
    pub persisted_volume: String,
}

crate::contract! {
    /// Mounts of flists: read-only FUSE, with a bind or a writable overlay on top.
    ///
    /// Only rfs `.fl` flists (by `http(s)` URL) can be mounted; a legacy `.flist` is refused. The flist is
    /// checked against the md5 the hub publishes at `<url>.md5` (when it does) and kept as
    /// `<root>/flist/<md5>`; its read-only mount `<root>/ro/<md5>` is shared by every mount of it (the
    /// `Storage` override of the first mount of a flist is the one its mount uses). A writable mount is an
    /// overlay whose layer is a storaged volume named after the mount (created when missing, deleted on
    /// unmount when flistd created it) or the `PersistedVolume`. Mount names are 1–128 characters of
    /// `A-Z a-z 0-9 - _ . @ +`, not starting with a dot.
    ///
    /// Error kinds: `invalid_input` (bad name, URL, options; a download that is not a flist or does not
    /// match the hub's md5), `not_found` (no mount of that name; the hub has no such flist), `conflict` (the
    /// name mounts another flist or with other options), `unavailable` (the hub or storaged cannot be
    /// reached), `internal`.
    object Flister, FlisterClient, FlisterContract = "flist", "flist", "0.0.1" {
        /// Mount the flist at `url` under `name`; returns the mount path (`<root>/mountpoint/<name>`).
        /// Mounting a name again with the same URL and options returns its path.
        fn mount = "Mount" (name: String, url: String, options: MountOptions) -> String;
        /// Resize the writable volume of a mount; returns the mount path.
        fn update_mount_size = "UpdateMountSize" (name: String, limit: Unit) -> String;
        /// Unmount and forget a mount (deleting the volume flistd created for it, and the flist's
        /// read-only mount when no other mount uses it).
        fn unmount = "Unmount" (name: String);
        /// The md5 of the flist mounted under `name`.
        fn hash_from_root_path = "HashFromRootPath" (name: String) -> String;
        /// The md5 the hub publishes for the flist at `url` (`<url>.md5`).
        fn flist_hash = "FlistHash" (url: String) -> String;
        /// Whether a mount exists.
        fn exists = "Exists" (name: String) -> bool;
    }
}
