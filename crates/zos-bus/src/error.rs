//! Errors a bus call can end with. Each says what happened in words an operator can act on.

use std::time::Duration;

/// Why a bus call or subscription failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker address could not be parsed.
    #[error("invalid broker address {url:?}: {reason}")]
    BadBroker { url: String, reason: String },
    /// Redis could not be reached or failed mid-call.
    #[error("bus broker {url} is unavailable")]
    Broker {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    /// Nobody took the request from the object's queue before the deadline; the request was withdrawn.
    #[error(
        "no server is serving {queue}: the request waited {waited:?} and nobody took it (is the {module} daemon running?)"
    )]
    NoServer {
        module: String,
        queue: String,
        waited: Duration,
    },
    /// A server took the request but did not reply before the deadline.
    #[error("{queue} {method}: timed out after {waited:?} waiting for the reply")]
    Timeout {
        queue: String,
        method: String,
        waited: Duration,
    },
    /// The server rejected the call itself (unknown object or method, bad arguments, a crash in the handler).
    #[error("{queue} {method}: {message}")]
    Protocol {
        queue: String,
        method: String,
        message: String,
    },
    /// The method ran and returned an error.
    #[error("{message}")]
    Call {
        message: String,
        kind: Option<String>,
    },
    /// An argument could not be encoded.
    #[error("encoding {what}")]
    Encode {
        what: String,
        #[source]
        source: zos_types::msgpack::EncodeError,
    },
    /// A reply, result or event could not be decoded.
    #[error("decoding {what}")]
    Decode {
        what: String,
        #[source]
        source: zos_types::msgpack::DecodeError,
    },
    /// A reply did not belong to the request (a foreign push on our reply key).
    #[error("reply for {got:?} arrived on the reply key of request {expected:?}")]
    Mismatch { expected: String, got: String },
}

impl Error {
    /// The application error kind, if the method returned an error with one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Error::Call { kind, .. } => kind.as_deref(),
            _ => None,
        }
    }

    /// Whether the method ran and returned an error (as opposed to the call not getting through).
    pub fn is_call_error(&self) -> bool {
        matches!(self, Error::Call { .. })
    }
}
