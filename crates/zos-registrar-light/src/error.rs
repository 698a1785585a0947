//! Errors of registrar_light's library.

use std::path::PathBuf;

/// Why the daemon could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("registrar client for {url:?}")]
    Registrar {
        url: String,
        #[source]
        source: zos_grid::ClientError,
    },
    #[error("bus broker {broker:?}")]
    Broker {
        broker: String,
        #[source]
        source: zos_bus::Error,
    },
    #[error("serving module {module} on the bus")]
    Serve {
        module: &'static str,
        #[source]
        source: zos_bus::Error,
    },
}

/// Why a fact about the host could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// Why an interface could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("interface {name:?} does not exist")]
    NoSuchInterface { name: String },
    #[error("interface {name:?}: netlink")]
    Netlink {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
}
