//! The zbus v1 envelope, byte-compatible with Go zbus (`vmihailenco/msgpack` v4, structs as maps keyed by Go
//! field name, in declaration order).
//!
//! ```text
//! Request  = {"ID", "Inputs": [bin...], "Object": {"Name","Version"}, "ReplyTo", "Method" [, "Deadline"]}
//! Response = {"ID", "Output": {"Data": bin|nil, "Error": nil|{"Message" [, "Kind"]}}, "Error": nil|str}
//! ```
//!
//! `Deadline` (a `time.Time`) and `Kind` are our additions; Go ignores unknown keys, and both are omitted when
//! unset, so requests and replies without them are byte-identical to Go's.

use serde::{Deserialize, Serialize};
use std::fmt;
use zos_types::go::{GoTime, nullable};

/// Redis queue, reply and channel naming, and the reserved status object.
pub mod keys {
    use super::ObjectId;

    /// The request queue of an object: `<module>.<name>@<version>`.
    pub fn queue(module: &str, object: &ObjectId) -> String {
        format!("{module}.{object}")
    }

    /// The pub/sub channel of a stream: `<module>.<name>@<version>.<Stream>`.
    pub fn stream(module: &str, object: &ObjectId, stream: &str) -> String {
        format!("{module}.{object}.{stream}")
    }

    /// Name of the reserved status object (`zbus@1.0`).
    pub const STATUS_NAME: &str = "zbus";
    /// Version of the reserved status object.
    pub const STATUS_VERSION: &str = "1.0";

    /// Seconds a reply list lives in Redis (Go's `redisResponseTTL`).
    pub const REPLY_TTL_SECS: i64 = 300;
}

/// An object's identity, `name@version` (or just `name` when the version is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId {
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "Version", default, deserialize_with = "nullable")]
    pub version: String,
}

impl ObjectId {
    /// An object id from its parts.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        ObjectId {
            name: name.into(),
            version: version.into(),
        }
    }

    /// Parse `name@version` (split on the first `@`) or `name`.
    pub fn parse(text: &str) -> Self {
        match text.split_once('@') {
            Some((n, v)) => ObjectId::new(n, v),
            None => ObjectId::new(text, ""),
        }
    }

    /// The reserved status object `zbus@1.0`.
    pub fn status() -> Self {
        ObjectId::new(keys::STATUS_NAME, keys::STATUS_VERSION)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}@{}", self.name, self.version)
        }
    }
}

/// A request as it sits in an object's queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    /// Each argument msgpack-encoded on its own.
    #[serde(rename = "Inputs", default, deserialize_with = "nullable")]
    pub inputs: Vec<serde_bytes::ByteBuf>,
    #[serde(rename = "Object", default)]
    pub object: ObjectId,
    #[serde(rename = "ReplyTo", default, deserialize_with = "nullable")]
    pub reply_to: String,
    #[serde(rename = "Method", default, deserialize_with = "nullable")]
    pub method: String,
    /// When the caller stops waiting. A server drops a request it pulls after this time instead of running it
    /// late. Our extension: absent in Go requests.
    #[serde(rename = "Deadline", default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<GoTime>,
}

/// An application error: the `error` a method returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallError {
    #[serde(rename = "Message", default, deserialize_with = "nullable")]
    pub message: String,
    /// A stable machine-readable kind (e.g. `not_found`, `invalid_input`). Our extension: Go ignores it.
    #[serde(rename = "Kind", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl CallError {
    /// An error with a message and no kind.
    pub fn msg(message: impl fmt::Display) -> Self {
        CallError {
            message: message.to_string(),
            kind: None,
        }
    }

    /// An error with a message and a stable kind.
    pub fn with_kind(kind: &str, message: impl fmt::Display) -> Self {
        CallError {
            message: message.to_string(),
            kind: Some(kind.to_string()),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for CallError {
    /// Flatten the error chain into one message, `outer: inner: root`.
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        CallError {
            message,
            kind: None,
        }
    }
}

/// What a method produced: its return values (msgpack) and its application error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// The msgpack of the return value, an array for several values, nil for none.
    #[serde(rename = "Data", default)]
    pub data: Option<serde_bytes::ByteBuf>,
    #[serde(rename = "Error", default)]
    pub error: Option<CallError>,
}

/// A reply, pushed to the request's `ReplyTo` list.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "Output", default)]
    pub output: Output,
    /// A protocol error: unknown object or method, bad arguments, a panic.
    #[serde(rename = "Error", default)]
    pub error: Option<String>,
}

/// State of one server worker, as `zbusdebug` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerState {
    #[serde(rename = "free")]
    Free,
    #[serde(rename = "busy")]
    Busy,
}

/// One worker of the status object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerStatus {
    #[serde(rename = "State")]
    pub state: WorkerState,
    #[serde(rename = "StartTime", default)]
    pub start_time: GoTime,
    /// `name@version.Method()` while busy, empty when free.
    #[serde(rename = "Action", default, deserialize_with = "nullable")]
    pub action: String,
}

/// The payload of the reserved status object `<module>.zbus@1.0`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    #[serde(rename = "Objects", default, deserialize_with = "nullable")]
    pub objects: Vec<ObjectId>,
    #[serde(rename = "Workers", default, deserialize_with = "nullable")]
    pub workers: Vec<WorkerStatus>,
    /// Requests dropped because they waited in the queue past their caller's deadline. Our extension.
    #[serde(rename = "Expired", default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<u64>,
}

/// Whether `text` looks like a UUID (`8-4-4-4-12` hex digits), the only form a `ReplyTo` may take.
pub fn looks_like_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_forms() {
        assert_eq!(
            ObjectId::parse("storage@0.0.1"),
            ObjectId::new("storage", "0.0.1")
        );
        assert_eq!(ObjectId::parse("plain").to_string(), "plain");
        assert_eq!(
            keys::queue("storage", &ObjectId::new("storage", "0.0.1")),
            "storage.storage@0.0.1"
        );
        assert_eq!(
            keys::stream("node", &ObjectId::new("system", "0.0.1"), "CPU"),
            "node.system@0.0.1.CPU"
        );
    }

    #[test]
    fn reply_to_must_be_a_uuid() {
        assert!(looks_like_uuid("00000000-0000-0000-0000-000000000001"));
        assert!(looks_like_uuid(&uuid::Uuid::new_v4().to_string()));
        assert!(!looks_like_uuid("storage.storage@0.0.1"));
        assert!(!looks_like_uuid("00000000-0000-0000-0000-00000000000g"));
    }

    #[test]
    fn call_error_flattens_the_chain() {
        #[derive(Debug)]
        struct Inner;
        impl fmt::Display for Inner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("disk full")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("creating volume")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            CallError::from(Outer(Inner)).message,
            "creating volume: disk full"
        );
    }
}
