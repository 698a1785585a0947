//! Errors of the storage module.

use std::path::PathBuf;

/// What went wrong. Each variant names the object (pool, volume, disk, device, path) it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name that cannot be used (empty, too long, characters outside the allowed set, reserved).
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: String,
    },
    /// A request that is malformed or impossible as asked (zero size, shrinking a disk, image too big).
    #[error("{0}")]
    InvalidInput(String),
    /// The object does not exist.
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    /// The name is taken by an object that differs from the request.
    #[error("{0}")]
    Conflict(String),
    /// No pool can hold the request.
    #[error("{0}")]
    NoSpace(String),
    /// A device or pool could not be used.
    #[error("{0}")]
    Unavailable(String),
    /// An external command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// An external command could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A command's output could not be understood.
    #[error("cannot parse the output of `{command}`: {reason}")]
    Parse { command: String, reason: String },
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{op} {path}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

impl Error {
    /// The stable kind a bus caller can branch on (`invalid_input`, `not_found`, `conflict`, `unavailable`,
    /// `internal`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidName { .. } | Error::InvalidInput(_) => "invalid_input",
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) => "conflict",
            Error::NoSpace(_) | Error::Unavailable(_) => "unavailable",
            _ => "internal",
        }
    }

    /// The message with its causes, `outer: inner: root`.
    pub fn chain(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        message
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    pub(crate) fn sys(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(nix::Error) -> Error {
        let path = path.into();
        move |source| Error::Sys { op, path, source }
    }
}

/// Result of the storage module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
