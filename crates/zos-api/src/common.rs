//! Small wire types several contracts share.

use serde::de::{Deserializer, IgnoredAny};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// A Go struct field of type `error`. Go's msgpack encodes any error value as an empty map (the message is
/// lost), so this is what we send for Go decoders; the message travels in a string field next to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoErrorField;

impl Serialize for GoErrorField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.serialize_none();
        }
        s.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for GoErrorField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d)?;
        Ok(GoErrorField)
    }
}

/// `gridtypes.WorkloadID`: `"<twin>-<contract>-<name>"`.
pub type WorkloadId = String;
