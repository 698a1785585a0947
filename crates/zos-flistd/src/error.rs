//! flistd's errors, and their bus kinds.

use std::path::PathBuf;

use zos_api::bus::CallError;

/// Why a flistd operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mount name that cannot be used (it would escape the mount directory, or storaged could not name a
    /// volume after it).
    #[error("invalid mount name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// A flist URL that cannot be used.
    #[error("invalid flist url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// A legacy `.flist` (tar + capnp, g8ufs): not supported yet.
    #[error(
        "flist url {url:?}: legacy .flist flists are not supported yet (only rfs .fl flists can be mounted)"
    )]
    LegacyFlist { url: String },
    /// Mount options that cannot be used.
    #[error("invalid mount options: {0}")]
    InvalidOptions(String),
    /// No mount of that name.
    #[error("no mount named {0:?}")]
    NotFound(String),
    /// The name is taken by a mount of something else.
    #[error("mount {name:?} already exists with other settings ({existing})")]
    Conflict { name: String, existing: String },
    /// The operation does not apply to this mount (a size for a read-only mount, ...).
    #[error("mount {name:?}: {reason}")]
    NotApplicable { name: String, reason: String },
    /// The hub (or any HTTP server holding the flist) could not be asked or answered an error.
    #[error("{url}: {reason}")]
    Hub { url: String, reason: String },
    /// The hub has no such flist (HTTP 404).
    #[error("{url}: not found on the hub")]
    HubNotFound { url: String },
    /// The download does not match the md5 the hub publishes.
    #[error("{url}: md5 mismatch: the hub publishes {expected}, the download is {actual}")]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    /// The download is bigger than any flist flistd accepts.
    #[error("{url}: the flist is bigger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    /// The download is not a usable `.fl` flist.
    #[error("{url}: not a valid flist")]
    BadFlist {
        url: String,
        #[source]
        source: Box<zos_flist::MetaError>,
    },
    /// A storaged call failed.
    #[error("storaged {op} {name:?}")]
    Storage {
        op: &'static str,
        name: String,
        #[source]
        source: zos_bus::Error,
    },
    /// Local file I/O.
    #[error("{context} {path}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A mount or unmount system call failed.
    #[error("{what} {target}")]
    Mount {
        what: &'static str,
        target: PathBuf,
        #[source]
        source: nix::errno::Errno,
    },
    /// The FUSE server of a flist could not be started or did not mount.
    #[error("the FUSE server of flist {hash}: {reason}")]
    Helper { hash: String, reason: String },
    /// Taking a mount down failed in one or more steps (each step was tried; the mount stays recorded as
    /// being removed and the next call or check tries again).
    #[error("taking down mount {name:?}: {}", .errors.iter().map(Error::chain).collect::<Vec<_>>().join("; "))]
    Cleanup { name: String, errors: Vec<Error> },
    /// The writable layer of a mount is gone.
    #[error("mount {name:?}: its writable layer {path} is gone")]
    LayerGone { name: String, path: PathBuf },
}

impl Error {
    /// The bus error kind callers branch on.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidName { .. }
            | Error::InvalidUrl { .. }
            | Error::LegacyFlist { .. }
            | Error::InvalidOptions(_)
            | Error::NotApplicable { .. }
            | Error::HashMismatch { .. }
            | Error::TooLarge { .. }
            | Error::BadFlist { .. } => "invalid_input",
            Error::NotFound(_) | Error::HubNotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::Hub { .. } => "unavailable",
            Error::Storage { source, .. } => match source.kind() {
                Some("not_found") => "not_found",
                Some("invalid_input") => "invalid_input",
                Some("conflict") => "conflict",
                // `None`: the call did not get through (storaged down, timed out)
                Some("unavailable") | None => "unavailable",
                Some(_) => "internal",
            },
            Error::Cleanup { errors, .. } => errors.first().map_or("internal", Error::kind),
            Error::Io { .. }
            | Error::Mount { .. }
            | Error::Helper { .. }
            | Error::LayerGone { .. } => "internal",
        }
    }

    /// The message with its causes, `a: b: c`.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    /// As a bus error.
    pub fn to_call_error(&self) -> CallError {
        CallError::with_kind(self.kind(), self.chain())
    }

    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            context,
            path,
            source,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_chains() {
        let e = Error::NotFound("x".into());
        assert_eq!(e.kind(), "not_found");
        let c = e.to_call_error();
        assert_eq!(c.kind.as_deref(), Some("not_found"));
        assert_eq!(c.message, "no mount named \"x\"");

        let e = Error::Storage {
            op: "VolumeCreate",
            name: "v".into(),
            source: zos_bus::Error::Call {
                message: "pool full".into(),
                kind: Some("unavailable".into()),
            },
        };
        assert_eq!(e.kind(), "unavailable");
        assert_eq!(e.chain(), "storaged VolumeCreate \"v\": pool full");
        let e = Error::Storage {
            op: "VolumeCreate",
            name: "v".into(),
            source: zos_bus::Error::Call {
                message: "bad".into(),
                kind: Some("invalid_input".into()),
            },
        };
        assert_eq!(e.kind(), "invalid_input");
    }
}
