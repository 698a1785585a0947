//! Standard padded base64, the only base64 the registrar speaks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Standard alphabet, padded (Go's `base64.StdEncoding`).
pub fn b64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decode standard padded base64 strictly (as Go's `base64.StdEncoding.DecodeString`).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text.as_bytes()).ok()
}
