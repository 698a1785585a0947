//! Go types as they travel over zbus.
//!
//! Every type here encodes to msgpack exactly as Go's msgpack v4 encodes its Go counterpart, and to JSON in the
//! form an operator types on the `zbus` command line (a string for addresses, times and versions). The choice
//! is made with `Serializer::is_human_readable`: msgpack is binary, JSON is human readable.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::msgpack::EXT_STRUCT_NAME;

/// `gridtypes.Unit`: a number of bytes.
pub type Unit = u64;

/// Deserialize a Go value that may be nil (`c0`) as its zero value, as Go does for slices, maps and strings.
///
/// Use as `#[serde(default, deserialize_with = "zos_types::go::nullable")]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------------------
// []byte

/// Go `[]byte`: msgpack `bin`, JSON base64 (as Go's `encoding/json`); nil decodes as empty.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({})", base64_encode(&self.0))
    }
}

impl std::ops::Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Self {
        Bytes(v.to_vec())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&base64_encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes (msgpack bin, base64 string or array of integers)")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                base64_decode(v)
                    .map(Bytes)
                    .ok_or_else(|| E::custom(format!("invalid base64: {v:?}")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Bytes, E> {
                Ok(Bytes::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Bytes, E> {
                Ok(Bytes::default())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_any(V)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard, padded base64 (what Go's `encoding/json` uses for `[]byte`).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard base64, padded or not. `None` when the text is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits >= 6 {
        return None;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------------------
// time.Duration

/// Go `time.Duration`: i64 nanoseconds. JSON accepts an integer (ns) or a string like `"1.5s"`, `"30m"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub i64);

impl GoDuration {
    /// As a std duration (negative durations become zero).
    pub fn to_std(self) -> Duration {
        Duration::from_nanos(self.0.max(0) as u64)
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration in nanoseconds or a string such as \"30s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                Ok(GoDuration(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                i64::try_from(v)
                    .map(GoDuration)
                    .map_err(|_| E::custom("duration overflows i64"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoDuration, E> {
                Ok(GoDuration(v as i64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                parse_duration(v).ok_or_else(|| {
                    E::custom(format!(
                        "invalid duration {v:?} (use e.g. 500ms, 30s, 5m, 1h)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse `"<number><unit>"` with unit `ns`, `us`, `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Option<GoDuration> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = text.split_at(split);
    let num: f64 = num.parse().ok()?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    Some(GoDuration((num * scale) as i64))
}

// ---------------------------------------------------------------------------------------------------------
// time.Time

/// Seconds from 0001-01-01 (Go's zero time) to the Unix epoch, negated.
const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// Go `time.Time`: msgpack extension -1 in the three layouts Go uses; JSON as Unix seconds with fraction or
/// RFC 3339 UTC. The default value is Go's zero time (0001-01-01T00:00:00Z).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoTime {
    secs: i64,
    nanos: u32,
}

impl Default for GoTime {
    fn default() -> Self {
        GoTime {
            secs: GO_ZERO_UNIX,
            nanos: 0,
        }
    }
}

impl fmt::Debug for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoTime({})", self.to_rfc3339())
    }
}

impl GoTime {
    /// The current time.
    pub fn now() -> Self {
        SystemTime::now().into()
    }

    /// From Unix seconds and nanoseconds (nanos above 1e9 are carried into seconds).
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        GoTime {
            secs: secs + i64::from(nanos / 1_000_000_000),
            nanos: nanos % 1_000_000_000,
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_secs(&self) -> i64 {
        self.secs
    }

    /// Nanoseconds within the second.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// Whether this is Go's zero time.
    pub fn is_zero(&self) -> bool {
        *self == GoTime::default()
    }

    /// As a `SystemTime` (times before the epoch are clamped to it).
    pub fn to_system_time(&self) -> SystemTime {
        if self.secs < 0 {
            UNIX_EPOCH
        } else {
            UNIX_EPOCH + Duration::new(self.secs as u64, self.nanos)
        }
    }

    /// The msgpack extension payload, in the layout Go chooses.
    pub fn ext_bytes(&self) -> Vec<u8> {
        let secs = self.secs;
        if (secs as u64) >> 34 == 0 {
            let data = (u64::from(self.nanos) << 34) | secs as u64;
            if data & 0xffff_ffff_0000_0000 == 0 {
                (data as u32).to_be_bytes().to_vec()
            } else {
                data.to_be_bytes().to_vec()
            }
        } else {
            let mut out = Vec::with_capacity(12);
            out.extend_from_slice(&self.nanos.to_be_bytes());
            out.extend_from_slice(&secs.to_be_bytes());
            out
        }
    }

    /// Parse an extension payload of 4, 8 or 12 bytes.
    pub fn from_ext_bytes(data: &[u8]) -> Option<Self> {
        match data.len() {
            4 => Some(GoTime {
                secs: i64::from(u32::from_be_bytes(data.try_into().ok()?)),
                nanos: 0,
            }),
            8 => {
                let v = u64::from_be_bytes(data.try_into().ok()?);
                Some(GoTime {
                    secs: (v & 0x3_ffff_ffff) as i64,
                    nanos: (v >> 34) as u32,
                })
            }
            12 => Some(GoTime {
                nanos: u32::from_be_bytes(data[0..4].try_into().ok()?),
                secs: i64::from_be_bytes(data[4..12].try_into().ok()?),
            }),
            _ => None,
        }
    }

    /// RFC 3339 in UTC with nanoseconds when non-zero, e.g. `2024-01-02T03:04:05.5Z`.
    pub fn to_rfc3339(&self) -> String {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let frac = if self.nanos == 0 {
            String::new()
        } else {
            let s = format!(".{:09}", self.nanos);
            s.trim_end_matches('0').to_string()
        };
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    /// Parse RFC 3339 (`Z` or a numeric offset).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        {
            return None;
        }
        let num = |s: &str| s.parse::<i64>().ok();
        let (y, mo, d) = (num(&text[0..4])?, num(&text[5..7])?, num(&text[8..10])?);
        let (h, mi, s) = (
            num(&text[11..13])?,
            num(&text[14..16])?,
            num(&text[17..19])?,
        );
        let mut rest = &text[19..];
        let mut nanos = 0u32;
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            let digits = &r[..end.min(9)];
            nanos = format!("{digits:0<9}").parse().ok()?;
            rest = &r[end..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6 => {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                sign * (num(&rest[1..3])? * 3600 + num(&rest[4..6])? * 60)
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        Some(GoTime {
            secs: days * 86_400 + h * 3600 + mi * 60 + s - offset,
            nanos,
        })
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl From<SystemTime> for GoTime {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => GoTime {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                GoTime { secs, nanos }
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "_ExtStruct")]
struct ExtStruct((i8, serde_bytes::ByteBuf));

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_rfc3339())
        } else {
            s.serialize_newtype_struct(
                EXT_STRUCT_NAME,
                &(-1i8, serde_bytes::Bytes::new(&self.ext_bytes())),
            )
        }
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            struct V;
            impl Visitor<'_> for V {
                type Value = GoTime;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an RFC 3339 time or Unix seconds")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<GoTime, E> {
                    GoTime::parse_rfc3339(v)
                        .ok_or_else(|| E::custom(format!("invalid RFC 3339 time {v:?}")))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoTime, E> {
                    Ok(GoTime::from_unix(v, 0))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoTime, E> {
                    Ok(GoTime::from_unix(v as i64, 0))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoTime, E> {
                    let secs = v.floor();
                    Ok(GoTime::from_unix(secs as i64, ((v - secs) * 1e9) as u32))
                }
            }
            d.deserialize_any(V)
        } else {
            let ExtStruct((tag, data)) = ExtStruct::deserialize(d)?;
            if tag != -1 {
                return Err(de::Error::custom(format!(
                    "time: unexpected extension type {tag}"
                )));
            }
            GoTime::from_ext_bytes(&data).ok_or_else(|| {
                de::Error::custom(format!("time: invalid extension length {}", data.len()))
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// net.IP and net.IPNet

/// Go `net.IP`: a 16-byte `bin` (IPv4 as `::ffff:a.b.c.d`), nil when unset. Decodes 0, 4 or 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ip(pub Option<IpAddr>);

impl Ip {
    /// The 16-byte form Go uses.
    pub fn to_go_bytes(addr: IpAddr) -> [u8; 16] {
        match addr {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }

    /// Parse Go's byte forms (4 or 16 bytes; an IPv4-mapped address becomes IPv4).
    pub fn from_go_bytes(b: &[u8]) -> Option<Option<IpAddr>> {
        match b.len() {
            0 => Some(None),
            4 => Some(Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))),
            16 => {
                let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?);
                Some(Some(match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(v6),
                }))
            }
            _ => None,
        }
    }
}

impl From<IpAddr> for Ip {
    fn from(a: IpAddr) -> Self {
        Ip(Some(a))
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("<nil>"),
        }
    }
}

impl Serialize for Ip {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.0, s.is_human_readable()) {
            (None, _) => s.serialize_none(),
            (Some(a), true) => s.collect_str(&a),
            (Some(a), false) => s.serialize_bytes(&Ip::to_go_bytes(a)),
        }
    }
}

impl<'de> Deserialize<'de> for Ip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ip;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address (4 or 16 bytes, or text)")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Ip, E> {
                Ip::from_go_bytes(v)
                    .map(Ip)
                    .ok_or_else(|| E::custom(format!("invalid IP length {}", v.len())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ip, E> {
                if v.is_empty() {
                    return Ok(Ip(None));
                }
                IpAddr::from_str(v)
                    .map(|a| Ip(Some(a)))
                    .map_err(|_| E::custom(format!("invalid IP address {v:?}")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ip, E> {
                Ok(Ip(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Ip, E> {
                Ok(Ip(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Ip, A::Error> {
                let mut b = Vec::new();
                while let Some(x) = seq.next_element::<u8>()? {
                    b.push(x);
                }
                self.visit_bytes(&b)
            }
        }
        d.deserialize_any(V)
    }
}

/// Go `net.IPNet{IP, Mask}`; `None` is Go's empty `IPNet{}` (both members nil). JSON: `"10.0.0.0/24"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpNet(pub Option<(IpAddr, u8)>);

impl IpNet {
    /// A network from an address and prefix length.
    pub fn new(ip: IpAddr, prefix: u8) -> Self {
        IpNet(Some((ip, prefix)))
    }

    fn mask_bytes(ip: IpAddr, prefix: u8) -> Vec<u8> {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let mut out = vec![0u8; bits / 8];
        for i in 0..usize::from(prefix).min(bits) {
            out[i / 8] |= 0x80 >> (i % 8);
        }
        out
    }

    fn prefix_of(mask: &[u8]) -> Option<u8> {
        let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
        // Canonical masks only: ones then zeros.
        let expect = IpNet::mask_bytes(
            if mask.len() == 4 {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            },
            ones as u8,
        );
        (expect == mask).then_some(ones as u8)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((ip, p)) => write!(f, "{ip}/{p}"),
            None => f.write_str("<nil>"),
        }
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid network {s:?}: missing /prefix"))?;
        let ip = IpAddr::from_str(ip).map_err(|_| format!("invalid network {s:?}: bad address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("invalid network {s:?}: bad prefix"))?;
        if prefix > if ip.is_ipv4() { 32 } else { 128 } {
            return Err(format!("invalid network {s:?}: prefix too long"));
        }
        Ok(IpNet::new(ip, prefix))
    }
}

#[derive(Serialize, Deserialize, Default)]
struct GoIpNet {
    #[serde(rename = "IP", default)]
    ip: Ip,
    #[serde(rename = "Mask", default, deserialize_with = "nullable")]
    mask: Bytes,
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return match self.0 {
                Some(_) => s.collect_str(self),
                None => s.serialize_none(),
            };
        }
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "IP")]
            ip: Ip,
            #[serde(rename = "Mask")]
            mask: Option<&'a serde_bytes::Bytes>,
        }
        match self.0 {
            Some((ip, p)) => {
                let mask = IpNet::mask_bytes(ip, p);
                Wire {
                    ip: Ip(Some(ip)),
                    mask: Some(serde_bytes::Bytes::new(&mask)),
                }
                .serialize(s)
            }
            None => Wire {
                ip: Ip(None),
                mask: None,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = Option::<String>::deserialize(d)?;
            return match s.as_deref() {
                None | Some("") => Ok(IpNet(None)),
                Some(s) => IpNet::from_str(s).map_err(de::Error::custom),
            };
        }
        let w = Option::<GoIpNet>::deserialize(d)?.unwrap_or_default();
        match (w.ip.0, w.mask.0.as_slice()) {
            (None, _) => Ok(IpNet(None)),
            (Some(ip), mask) => {
                let prefix = IpNet::prefix_of(mask)
                    .ok_or_else(|| de::Error::custom("IPNet: non-canonical mask"))?;
                // A 16-byte mask on an IPv4 address counts the 96 mapped-prefix bits.
                let prefix = if ip.is_ipv4() && mask.len() == 16 {
                    prefix.saturating_sub(96)
                } else {
                    prefix
                };
                let prefix = if ip.is_ipv6() && mask.len() == 4 {
                    prefix + 96
                } else {
                    prefix
                };
                Ok(IpNet::new(ip, prefix))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// semver.Version

/// One pre-release identifier of Go's `semver.PRVersion`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrVersion {
    #[serde(rename = "VersionStr", default, deserialize_with = "nullable")]
    pub version_str: String,
    #[serde(rename = "VersionNum", default)]
    pub version_num: u64,
    #[serde(rename = "IsNum", default)]
    pub is_num: bool,
}

/// Go `semver.Version` (blang/semver): a map `{Major, Minor, Patch, Pre, Build}` in msgpack, `"1.2.3-rc.1"`
/// in JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<PrVersion>,
    pub build: Vec<String>,
}

impl Version {
    /// A release version without pre-release or build parts.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
            pre: Vec::new(),
            build: Vec::new(),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, p) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            if p.is_num {
                write!(f, "{}", p.version_num)?
            } else {
                f.write_str(&p.version_str)?
            }
        }
        for (i, b) in self.build.iter().enumerate() {
            f.write_str(if i == 0 { "+" } else { "." })?;
            f.write_str(b)?;
        }
        Ok(())
    }
}

impl FromStr for Version {
    type Err = String;
    /// Parse `1.2.3`, `v1.2.3`, `1.2.3-rc.1+build.5`.
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.strip_prefix('v').unwrap_or(s);
        let (text, build) = match text.split_once('+') {
            Some((t, b)) => (t, b.split('.').map(str::to_string).collect()),
            None => (text, Vec::new()),
        };
        let (core, pre) = match text.split_once('-') {
            Some((c, p)) => (c, p.split('.').collect::<Vec<_>>()),
            None => (text, Vec::new()),
        };
        let nums: Vec<&str> = core.split('.').collect();
        if nums.len() != 3 {
            return Err(format!("invalid version {s:?}: expected MAJOR.MINOR.PATCH"));
        }
        let n = |x: &str| {
            x.parse::<u64>()
                .map_err(|_| format!("invalid version {s:?}: {x:?} is not a number"))
        };
        let pre = pre
            .into_iter()
            .map(|p| match p.parse::<u64>() {
                Ok(v) if !p.is_empty() => PrVersion {
                    version_str: String::new(),
                    version_num: v,
                    is_num: true,
                },
                _ => PrVersion {
                    version_str: p.to_string(),
                    version_num: 0,
                    is_num: false,
                },
            })
            .collect();
        Ok(Version {
            major: n(nums[0])?,
            minor: n(nums[1])?,
            patch: n(nums[2])?,
            pre,
            build,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct GoVersion {
    #[serde(rename = "Major", default)]
    major: u64,
    #[serde(rename = "Minor", default)]
    minor: u64,
    #[serde(rename = "Patch", default)]
    patch: u64,
    #[serde(rename = "Pre", default)]
    pre: Option<Vec<PrVersion>>,
    #[serde(rename = "Build", default)]
    build: Option<Vec<String>>,
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.collect_str(self);
        }
        GoVersion {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: (!self.pre.is_empty()).then(|| self.pre.clone()),
            build: (!self.build.is_empty()).then(|| self.build.clone()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            return Version::from_str(&s).map_err(de::Error::custom);
        }
        let g = GoVersion::deserialize(d)?;
        Ok(Version {
            major: g.major,
            minor: g.minor,
            patch: g.patch,
            pre: g.pre.unwrap_or_default(),
            build: g.build.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::{from_slice, to_vec};

    fn hex(v: &impl Serialize) -> String {
        hex::encode(to_vec(v).unwrap())
    }

    #[test]
    fn go_zero_time_vector() {
        assert_eq!(hex(&GoTime::default()), "c70cff00000000fffffff1886e0900");
        let back: GoTime =
            from_slice(&hex::decode("c70cff00000000fffffff1886e0900").unwrap()).unwrap();
        assert!(back.is_zero());
        assert_eq!(back.to_rfc3339(), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn time_uses_fixext4_fixext8_and_ext12_like_go() {
        // whole seconds below 2^32: fixext4
        let t = GoTime::from_unix(1_700_000_000, 0);
        assert_eq!(hex(&t), "d6ff6553f100");
        // with nanoseconds: fixext8 = nanos << 34 | secs
        let t = GoTime::from_unix(1_700_000_000, 5);
        let data = (5u64 << 34) | 1_700_000_000;
        assert_eq!(hex(&t), format!("d7ff{data:016x}"));
        for t in [
            GoTime::from_unix(1_700_000_000, 0),
            GoTime::from_unix(1_700_000_000, 5),
            GoTime::default(),
        ] {
            let back: GoTime = from_slice(&to_vec(&t).unwrap()).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn time_rfc3339_round_trip() {
        let t = GoTime::from_unix(1_700_000_000, 123_000_000);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123Z");
        assert_eq!(GoTime::parse_rfc3339("2023-11-14T22:13:20.123Z"), Some(t));
        assert_eq!(
            GoTime::parse_rfc3339("2023-11-14T23:13:20.123+01:00"),
            Some(t)
        );
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<GoTime>(&json).unwrap(), t);
    }

    #[test]
    fn duration_is_i64_nanoseconds() {
        assert_eq!(
            hex(&GoDuration::from(Duration::from_secs(1))),
            "d3000000003b9aca00"
        );
        assert_eq!(
            serde_json::from_str::<GoDuration>("\"1.5s\"").unwrap(),
            GoDuration(1_500_000_000)
        );
        assert_eq!(
            serde_json::from_str::<GoDuration>("250").unwrap(),
            GoDuration(250)
        );
    }

    #[test]
    fn ip_is_16_bytes_ipv4_mapped() {
        let ip = Ip(Some("10.1.2.3".parse().unwrap()));
        assert_eq!(hex(&ip), "c41000000000000000000000ffff0a010203");
        assert_eq!(from_slice::<Ip>(&to_vec(&ip).unwrap()).unwrap(), ip);
        // Go's 4-byte form and nil decode too.
        assert_eq!(
            from_slice::<Ip>(&hex::decode("c4040a010203").unwrap()).unwrap(),
            ip
        );
        assert_eq!(from_slice::<Ip>(&[0xc0]).unwrap(), Ip(None));
        assert_eq!(hex(&Ip(None)), "c0");
        let v6 = Ip(Some("2a02::1".parse().unwrap()));
        assert_eq!(from_slice::<Ip>(&to_vec(&v6).unwrap()).unwrap(), v6);
        assert_eq!(serde_json::to_string(&ip).unwrap(), "\"10.1.2.3\"");
    }

    #[test]
    fn ipnet_is_ip_and_mask() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap();
        assert_eq!(
            hex(&n),
            "82a24950c41000000000000000000000ffff0a010000a44d61736bc404ffff0000"
        );
        assert_eq!(from_slice::<IpNet>(&to_vec(&n).unwrap()).unwrap(), n);
        assert_eq!(hex(&IpNet(None)), "82a24950c0a44d61736bc0");
        assert_eq!(
            from_slice::<IpNet>(&to_vec(&IpNet(None)).unwrap()).unwrap(),
            IpNet(None)
        );
        let v6: IpNet = "fd00::/64".parse().unwrap();
        assert_eq!(from_slice::<IpNet>(&to_vec(&v6).unwrap()).unwrap(), v6);
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"10.1.0.0/16\"");
        assert!("10.0.0.0/40".parse::<IpNet>().is_err());
    }

    #[test]
    fn version_is_a_semver_map() {
        let v: Version = "1.2.3".parse().unwrap();
        assert_eq!(
            hex(&v),
            "85a54d616a6f72cf0000000000000001a54d696e6f72cf0000000000000002a55061746368cf0000000000000003a3507265c0a54275696c64c0"
        );
        let pre: Version = "v0.0.0-3b51aa5".parse().unwrap();
        assert_eq!(pre.to_string(), "0.0.0-3b51aa5");
        assert_eq!(from_slice::<Version>(&to_vec(&pre).unwrap()).unwrap(), pre);
        assert!("1.2".parse::<Version>().is_err());
    }

    #[test]
    fn nullable_turns_nil_into_zero_values() {
        #[derive(Deserialize)]
        struct S {
            #[serde(rename = "L", default, deserialize_with = "nullable")]
            list: Vec<u32>,
            #[serde(rename = "N", default, deserialize_with = "nullable")]
            name: String,
        }
        // {"L": nil, "N": nil}
        let s: S = from_slice(&hex::decode("82a14cc0a14ec0").unwrap()).unwrap();
        assert!(s.list.is_empty() && s.name.is_empty());
    }

    #[test]
    fn bytes_are_bin_in_msgpack_and_base64_in_json() {
        let b = Bytes(vec![1, 2, 250]);
        assert_eq!(hex(&b), "c4030102fa");
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"AQL6\"");
        assert_eq!(serde_json::from_str::<Bytes>("\"AQL6\"").unwrap(), b);
        assert_eq!(serde_json::from_str::<Bytes>("[1,2,250]").unwrap(), b);
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert!(base64_decode("a$").is_none());
    }
}
