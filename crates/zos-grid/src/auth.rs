//! The registrar's request authentication: the account-creation proof and the `X-Auth` header.
//!
//! * Account creation signs the ASCII bytes `"<unix_seconds>:<public_key_base64>"`.
//! * `X-Auth` v1 (what the Go client and the real registrar use) signs `"<unix_seconds>:<twin_id>"`; the header is
//!   `base64(challenge) ":" base64(signature)`. It does not cover the request, so a captured header works for any
//!   request of that twin while it is fresh.
//! * `X-Auth` v2 (ours) has the same header shape, but the challenge binds the request and carries a nonce:
//!   `"v2:<unix_seconds>:<twin_id>:<nonce>:<METHOD>:<hex sha256(body)>:<path?query>"`. A v1 server rejects it
//!   (`Invalid challenge format`), which is how the client knows to fall back.

use sha2::{Digest, Sha256};

use crate::encoding::{b64_decode, b64_encode};

/// The header name.
pub const HEADER: &str = "X-Auth";

/// The account-creation message: `"<timestamp>:<public_key_base64>"`.
pub fn account_message(timestamp: i64, public_key_b64: &str) -> String {
    format!("{timestamp}:{public_key_b64}")
}

/// The v1 challenge: `"<timestamp>:<twin_id>"`.
pub fn v1_challenge(timestamp: i64, twin_id: u64) -> String {
    format!("{timestamp}:{twin_id}")
}

/// What a v2 challenge binds: the request line and body, plus a nonce that makes each challenge unique.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBinding {
    /// 1..=64 characters of `[A-Za-z0-9_-]`.
    pub nonce: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// The request target as sent: path and, if any, `?query`.
    pub path: String,
    /// SHA-256 of the request body (of the empty string when there is none).
    pub body_sha256: [u8; 32],
}

impl RequestBinding {
    /// A binding for a request, with a fresh random nonce.
    pub fn new(method: &str, path: &str, body: &[u8]) -> RequestBinding {
        RequestBinding {
            nonce: new_nonce(),
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            body_sha256: body_sha256(body),
        }
    }
}

/// The v2 challenge text.
pub fn v2_challenge(timestamp: i64, twin_id: u64, b: &RequestBinding) -> String {
    format!(
        "v2:{timestamp}:{twin_id}:{}:{}:{}:{}",
        b.nonce,
        b.method,
        hex::encode(b.body_sha256),
        b.path
    )
}

/// SHA-256 of a body.
pub fn body_sha256(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// 16 random bytes, hex.
pub fn new_nonce() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}

/// The header value for a challenge and its signature.
pub fn header_value(challenge: &str, signature: &[u8]) -> String {
    format!(
        "{}:{}",
        b64_encode(challenge.as_bytes()),
        b64_encode(signature)
    )
}

/// Why an `X-Auth` header could not be parsed. The messages are the real registrar's (clients match on them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("Invalid header format. Use 'Challenge:Signature'")]
    Format,
    #[error("Invalid challenge encoding")]
    ChallengeEncoding,
    #[error("Invalid challenge format")]
    ChallengeFormat,
    #[error("Invalid timestamp")]
    Timestamp,
    #[error("Invalid twin ID format")]
    TwinId,
    #[error("Invalid signature encoding")]
    SignatureEncoding,
    #[error("Invalid challenge format: bad v2 {0}")]
    V2Field(&'static str),
}

/// A parsed (not yet verified) `X-Auth` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedHeader {
    /// The exact bytes that were signed.
    pub challenge: Vec<u8>,
    pub timestamp: i64,
    pub twin_id: u64,
    /// `Some` for a v2 header.
    pub binding: Option<RequestBinding>,
    pub signature: Vec<u8>,
}

/// Parse a header value (both versions).
pub fn parse_header(value: &str) -> Result<ParsedHeader, HeaderError> {
    let parts: Vec<&str> = value.split(':').collect();
    let [challenge_b64, sig_b64] = parts[..] else {
        return Err(HeaderError::Format);
    };
    let challenge = b64_decode(challenge_b64).ok_or(HeaderError::ChallengeEncoding)?;
    let text = std::str::from_utf8(&challenge).map_err(|_| HeaderError::ChallengeFormat)?;
    let (timestamp, twin, binding) = if let Some(v2) = text.strip_prefix("v2:") {
        let f: Vec<&str> = v2.splitn(6, ':').collect();
        let [ts, twin, nonce, method, body, path] = f[..] else {
            return Err(HeaderError::ChallengeFormat);
        };
        if nonce.is_empty()
            || nonce.len() > 64
            || !nonce
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(HeaderError::V2Field("nonce"));
        }
        if method.is_empty() || !method.bytes().all(|c| c.is_ascii_uppercase()) {
            return Err(HeaderError::V2Field("method"));
        }
        let mut body_sha256 = [0u8; 32];
        if body.len() != 64 || hex::decode_to_slice(body, &mut body_sha256).is_err() {
            return Err(HeaderError::V2Field("body hash"));
        }
        if !path.starts_with('/') {
            return Err(HeaderError::V2Field("path"));
        }
        let binding = RequestBinding {
            nonce: nonce.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            body_sha256,
        };
        (ts, twin, Some(binding))
    } else {
        let f: Vec<&str> = text.split(':').collect();
        let [ts, twin] = f[..] else {
            return Err(HeaderError::ChallengeFormat);
        };
        (ts, twin, None)
    };
    let timestamp: i64 = timestamp.parse().map_err(|_| HeaderError::Timestamp)?;
    let twin_id: u64 = twin.parse().map_err(|_| HeaderError::TwinId)?;
    let signature = b64_decode(sig_b64).ok_or(HeaderError::SignatureEncoding)?;
    Ok(ParsedHeader {
        challenge,
        timestamp,
        twin_id,
        binding,
        signature,
    })
}
