//! Go-compatible msgpack.
//!
//! [`to_vec`] encodes exactly like `github.com/vmihailenco/msgpack` v4.0.4 with its default settings, the
//! library Go zbus uses:
//! - structs are maps keyed by field name, in declaration order (serde field order);
//! - integers are written at their full declared width (`i64` is always `d3` + 8 bytes, `u32` is `ce` + 4
//!   bytes, ...), never compacted;
//! - byte strings (`serde_bytes`) are `bin8/16/32`; strings are `fixstr/str8/str16/str32`;
//! - `None`, `()` and unit structs are nil (`c0`);
//! - unit enum variants are their name as a string; other variants are a one-entry map `{name: value}`;
//! - a newtype struct named `_ExtStruct` holding `(i8, bytes)` is an extension value (how [`crate::go::GoTime`]
//!   becomes ext -1), written with the shortest `fixext`/`ext8/16/32` header, as Go does.
//!
//! [`from_slice`] decodes with `rmp-serde`, which accepts every integer width and both map and array encodings
//! of structs, as Go does.

use serde::Serialize;
use serde::ser::{self, SerializeMap as _, SerializeSeq as _};

/// Name of the newtype struct that carries an extension value `(tag, data)`; shared with `rmp-serde`.
pub const EXT_STRUCT_NAME: &str = "_ExtStruct";

/// Error while encoding a value.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A serde `Serialize` implementation reported an error.
    #[error("{0}")]
    Custom(String),
    /// A value is larger than msgpack can represent.
    #[error("{what} too large for msgpack ({len})")]
    TooLarge { what: &'static str, len: usize },
    /// A `_ExtStruct` value was not a `(i8, bytes)` pair.
    #[error("malformed extension value")]
    BadExt,
}

impl ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        EncodeError::Custom(msg.to_string())
    }
}

/// Error while decoding a value.
pub type DecodeError = rmp_serde::decode::Error;

/// Encode `value` the way Go's msgpack v4 would.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    value.serialize(&mut Encoder { out: &mut out })?;
    Ok(out)
}

/// Decode a value leniently (any integer width, structs as maps or arrays).
pub fn from_slice<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    rmp_serde::from_slice(bytes)
}

/// The Go-style msgpack encoder; use [`to_vec`].
pub struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    fn str(&mut self, s: &str) -> Result<(), EncodeError> {
        let len = s.len();
        if len < 32 {
            self.out.push(0xa0 | len as u8);
        } else if len <= u8::MAX as usize {
            self.out.push(0xd9);
            self.out.push(len as u8);
        } else if len <= u16::MAX as usize {
            self.out.push(0xda);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else if len <= u32::MAX as usize {
            self.out.push(0xdb);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        } else {
            return Err(EncodeError::TooLarge {
                what: "string",
                len,
            });
        }
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn array_header(out: &mut Vec<u8>, len: usize) -> Result<(), EncodeError> {
        if len < 16 {
            out.push(0x90 | len as u8);
        } else if len <= u16::MAX as usize {
            out.push(0xdc);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else if len <= u32::MAX as usize {
            out.push(0xdd);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        } else {
            return Err(EncodeError::TooLarge { what: "array", len });
        }
        Ok(())
    }

    fn map_header(out: &mut Vec<u8>, len: usize) -> Result<(), EncodeError> {
        if len < 16 {
            out.push(0x80 | len as u8);
        } else if len <= u16::MAX as usize {
            out.push(0xde);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else if len <= u32::MAX as usize {
            out.push(0xdf);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        } else {
            return Err(EncodeError::TooLarge { what: "map", len });
        }
        Ok(())
    }

    fn ext(&mut self, tag: i8, data: &[u8]) -> Result<(), EncodeError> {
        let len = data.len();
        match len {
            1 => self.out.push(0xd4),
            2 => self.out.push(0xd5),
            4 => self.out.push(0xd6),
            8 => self.out.push(0xd7),
            16 => self.out.push(0xd8),
            _ if len <= u8::MAX as usize => {
                self.out.push(0xc7);
                self.out.push(len as u8);
            }
            _ if len <= u16::MAX as usize => {
                self.out.push(0xc8);
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ if len <= u32::MAX as usize => {
                self.out.push(0xc9);
                self.out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            _ => {
                return Err(EncodeError::TooLarge {
                    what: "extension",
                    len,
                });
            }
        }
        self.out.push(tag as u8);
        self.out.extend_from_slice(data);
        Ok(())
    }
}

/// Parse the Go-style encoding of an `(i8, bytes)` tuple: `92 d0 <tag> c4|c5|c6 <len> <data>`.
fn parse_ext_pair(buf: &[u8]) -> Result<(i8, &[u8]), EncodeError> {
    if buf.len() < 4 || buf[0] != 0x92 || buf[1] != 0xd0 {
        return Err(EncodeError::BadExt);
    }
    let tag = buf[2] as i8;
    let rest = &buf[3..];
    let (len, data) = match rest.first() {
        Some(0xc4) if rest.len() >= 2 => (rest[1] as usize, &rest[2..]),
        Some(0xc5) if rest.len() >= 3 => {
            (u16::from_be_bytes([rest[1], rest[2]]) as usize, &rest[3..])
        }
        Some(0xc6) if rest.len() >= 5 => (
            u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize,
            &rest[5..],
        ),
        _ => return Err(EncodeError::BadExt),
    };
    if data.len() != len {
        return Err(EncodeError::BadExt);
    }
    Ok((tag, data))
}

/// A sequence or map whose header is written once its element count is known.
pub struct Compound<'a, 'b> {
    enc: &'a mut Encoder<'b>,
    /// Where the header goes, when the length was not known up front.
    header_at: Option<usize>,
    count: usize,
    is_map: bool,
}

impl Compound<'_, '_> {
    fn finish(self) -> Result<(), EncodeError> {
        if let Some(at) = self.header_at {
            let mut header = Vec::with_capacity(5);
            if self.is_map {
                Encoder::map_header(&mut header, self.count)?;
            } else {
                Encoder::array_header(&mut header, self.count)?;
            }
            self.enc.out.splice(at..at, header);
        }
        Ok(())
    }
}

impl<'b> Encoder<'b> {
    fn compound<'a>(
        &'a mut self,
        len: Option<usize>,
        is_map: bool,
    ) -> Result<Compound<'a, 'b>, EncodeError> {
        let header_at = match len {
            Some(len) => {
                if is_map {
                    Self::map_header(self.out, len)?;
                } else {
                    Self::array_header(self.out, len)?;
                }
                None
            }
            None => Some(self.out.len()),
        };
        Ok(Compound {
            enc: self,
            header_at,
            count: 0,
            is_map,
        })
    }
}

impl<'a, 'b> ser::Serializer for &'a mut Encoder<'b> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Compound<'a, 'b>;
    type SerializeTuple = Compound<'a, 'b>;
    type SerializeTupleStruct = Compound<'a, 'b>;
    type SerializeTupleVariant = Compound<'a, 'b>;
    type SerializeMap = Compound<'a, 'b>;
    type SerializeStruct = Compound<'a, 'b>;
    type SerializeStructVariant = Compound<'a, 'b>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), EncodeError> {
        self.out.push(if v { 0xc3 } else { 0xc2 });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), EncodeError> {
        self.out.push(0xd0);
        self.out.push(v as u8);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), EncodeError> {
        self.out.push(0xd1);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), EncodeError> {
        self.out.push(0xd2);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), EncodeError> {
        self.out.push(0xd3);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), EncodeError> {
        self.out.push(0xcc);
        self.out.push(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), EncodeError> {
        self.out.push(0xcd);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), EncodeError> {
        self.out.push(0xce);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), EncodeError> {
        self.out.push(0xcf);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), EncodeError> {
        self.out.push(0xca);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), EncodeError> {
        self.out.push(0xcb);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), EncodeError> {
        let mut buf = [0u8; 4];
        self.str(v.encode_utf8(&mut buf))
    }
    fn serialize_str(self, v: &str) -> Result<(), EncodeError> {
        self.str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), EncodeError> {
        let len = v.len();
        if len <= u8::MAX as usize {
            self.out.push(0xc4);
            self.out.push(len as u8);
        } else if len <= u16::MAX as usize {
            self.out.push(0xc5);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else if len <= u32::MAX as usize {
            self.out.push(0xc6);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        } else {
            return Err(EncodeError::TooLarge { what: "bytes", len });
        }
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), EncodeError> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), EncodeError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), EncodeError> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), EncodeError> {
        self.out.push(0xc0);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _idx: u32,
        variant: &'static str,
    ) -> Result<(), EncodeError> {
        self.str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        if name == EXT_STRUCT_NAME {
            let inner = to_vec(value)?;
            let (tag, data) = parse_ext_pair(&inner)?;
            return self.ext(tag, data);
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _idx: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.out.push(0x81);
        self.str(variant)?;
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, 'b>, EncodeError> {
        self.compound(len, false)
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'b>, EncodeError> {
        self.compound(Some(len), false)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, EncodeError> {
        self.compound(Some(len), false)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _idx: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, EncodeError> {
        self.out.push(0x81);
        self.str(variant)?;
        self.compound(Some(len), false)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a, 'b>, EncodeError> {
        self.compound(len, true)
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'b>, EncodeError> {
        // The field count is counted rather than trusted, so hand-written impls that skip fields stay valid.
        self.compound(None, true)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _idx: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'b>, EncodeError> {
        self.out.push(0x81);
        self.str(variant)?;
        self.compound(None, true)
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.count += 1;
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.serialize_element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        self.serialize_element(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), EncodeError> {
        self.count += 1;
        key.serialize(&mut *self.enc)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), EncodeError> {
        value.serialize(&mut *self.enc)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.serialize_key(key)?;
        self.serialize_value(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), EncodeError> {
        self.serialize_key(key)?;
        self.serialize_value(value)
    }
    fn end(self) -> Result<(), EncodeError> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    fn hex(v: &impl Serialize) -> String {
        hex::encode(to_vec(v).unwrap())
    }

    #[test]
    fn integers_use_their_declared_width_like_go() {
        assert_eq!(hex(&1i64), "d30000000000000001");
        assert_eq!(hex(&1_000_000_000i64), "d3000000003b9aca00");
        assert_eq!(hex(&7u32), "ce00000007");
        assert_eq!(hex(&7u8), "cc07");
        assert_eq!(hex(&-1i32), "d2ffffffff");
        assert_eq!(hex(&u64::MAX), "cfffffffffffffffff");
        assert_eq!(hex(&3.0f64), "cb4008000000000000");
        assert_eq!(hex(&true), "c3");
    }

    #[test]
    fn strings_bytes_and_nil() {
        assert_eq!(hex(&"Add"), "a3416464");
        let id = "00000000-0000-0000-0000-000000000001";
        assert_eq!(hex(&id), format!("d924{}", hex::encode(id)));
        assert_eq!(hex(&serde_bytes::Bytes::new(&[1, 2])), "c4020102");
        assert_eq!(hex(&Option::<u8>::None), "c0");
        assert_eq!(hex(&()), "c0");
        let long = "x".repeat(300);
        assert!(hex(&long).starts_with("da012c"));
    }

    #[test]
    fn structs_are_maps_in_field_order_and_skipped_fields_are_not_counted() {
        #[derive(Serialize)]
        struct Object {
            #[serde(rename = "Name")]
            name: String,
            #[serde(rename = "Version")]
            version: String,
            #[serde(rename = "Extra", skip_serializing_if = "Option::is_none")]
            extra: Option<u8>,
        }
        let o = Object {
            name: "calculator".into(),
            version: "1.0".into(),
            extra: None,
        };
        assert_eq!(
            hex(&o),
            "82a44e616d65aa63616c63756c61746f72a756657273696f6ea3312e30"
        );
    }

    #[test]
    fn sequences_and_maps_of_unknown_length_get_the_right_header() {
        struct Unsized(Vec<u8>);
        impl Serialize for Unsized {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(None)?;
                for v in &self.0 {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
        assert_eq!(hex(&Unsized(vec![1, 2])), "92cc01cc02");
        let big = Unsized(vec![0; 20]);
        assert!(hex(&big).starts_with("dc0014"));
        let mut m = BTreeMap::new();
        m.insert("a", 1u8);
        assert_eq!(hex(&m), "81a161cc01");
    }

    #[test]
    fn enums_unit_variants_are_strings() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        enum Kind {
            #[serde(rename = "ssd")]
            Ssd,
            #[serde(rename = "hdd")]
            Hdd,
        }
        assert_eq!(hex(&Kind::Ssd), "a3737364");
        let back: Kind = from_slice(&to_vec(&Kind::Hdd).unwrap()).unwrap();
        assert_eq!(back, Kind::Hdd);
    }

    #[test]
    fn decoding_accepts_go_wide_and_compact_integers() {
        let v: u32 = from_slice(&hex::decode("d30000000000000007").unwrap()).unwrap();
        assert_eq!(v, 7);
        let v: u32 = from_slice(&[0x07]).unwrap();
        assert_eq!(v, 7);
        let f: f64 = from_slice(&hex::decode("d30000000000000001").unwrap()).unwrap();
        assert_eq!(f, 1.0);
    }
}
