//! Keys: ed25519 from a 32-byte seed (node keys), Substrate-style keys from a BIP-39 phrase (farmer keys),
//! signature verification for both schemes the registrar accepts, and the Stellar address of an ed25519 key.
//!
//! The Substrate derivation (the registrar's Go client goes through go-subkey) is NOT the BIP-39 seed:
//! `mini = PBKDF2-HMAC-SHA512(entropy, "mnemonic" + password, 2048)[..32]`; ed25519 uses `mini` as its seed,
//! sr25519 expands it as a schnorrkel `MiniSecretKey` (Ed25519 expansion mode). Hard junctions `//name` and
//! (sr25519 only) soft junctions `/name` and a `///password` suffix follow Substrate's secret URI rules.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use ed25519_dalek::{Signer as _, Verifier as _};
use zeroize::Zeroizing;

use crate::encoding::b64_encode;

/// The Substrate development phrase (an empty phrase in a URI such as `//Alice` means this one).
pub const DEV_PHRASE: &str =
    "bottom drive obey lake curtain smoke basket hold race lonely fit walk";

/// The schnorrkel signing context Substrate uses.
pub const SR25519_CONTEXT: &[u8] = b"substrate";

/// Why a key could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid mnemonic phrase: {0}")]
    Mnemonic(String),
    #[error("invalid hex seed: expected 32 bytes as 64 hex digits (optionally 0x-prefixed)")]
    HexSeed,
    #[error("invalid secret uri {uri:?}: {reason}")]
    Uri { uri: String, reason: &'static str },
    #[error("soft derivation (/{junction}) is not possible for ed25519 keys")]
    SoftEd25519 { junction: String },
    #[error("sr25519: {0}")]
    Sr25519(String),
}

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("public key must be 32 bytes, got {0}")]
    PublicKeyLength(usize),
    #[error("signature must be 64 bytes, got {0}")]
    SignatureLength(usize),
    #[error("signature does not verify as ed25519 or sr25519")]
    Mismatch,
}

/// A signature scheme the registrar accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Ed25519,
    Sr25519,
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ed25519" => Ok(Scheme::Ed25519),
            "sr25519" => Ok(Scheme::Sr25519),
            other => Err(format!("unknown key scheme {other:?} (ed25519 or sr25519)")),
        }
    }
}

/// A signing key of either scheme.
#[allow(clippy::large_enum_variant)]
pub enum KeyPair {
    Ed25519(ed25519_dalek::SigningKey),
    Sr25519(schnorrkel::Keypair),
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyPair({:?}, {})",
            self.scheme(),
            hex::encode(self.public_key())
        )
    }
}

impl KeyPair {
    /// The ed25519 key of a 32-byte seed (what identityd keeps in `seed.txt`).
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> KeyPair {
        KeyPair::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The ed25519 key of a hex seed (64 digits, optionally `0x`-prefixed).
    pub fn ed25519_from_hex_seed(text: &str) -> Result<KeyPair, KeyError> {
        let seed = parse_hex_seed(text.trim()).ok_or(KeyError::HexSeed)?;
        Ok(KeyPair::ed25519_from_seed(&seed))
    }

    /// The sr25519 key of a 32-byte mini secret (Ed25519 expansion mode, as Substrate).
    pub fn sr25519_from_seed(seed: &[u8; 32]) -> Result<KeyPair, KeyError> {
        let mini = schnorrkel::MiniSecretKey::from_bytes(seed)
            .map_err(|e| KeyError::Sr25519(e.to_string()))?;
        Ok(KeyPair::Sr25519(
            mini.expand_to_keypair(schnorrkel::ExpansionMode::Ed25519),
        ))
    }

    /// A fresh random ed25519 key.
    pub fn generate_ed25519() -> KeyPair {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        KeyPair::ed25519_from_seed(&seed)
    }

    /// A key from a Substrate secret URI: `<phrase or 0xhexseed>[//hard|/soft]*[///password]`. An empty
    /// phrase means [`DEV_PHRASE`]. A plain 64-digit hex string (no `0x`, as the node passes its seed) is a seed too.
    pub fn from_uri(uri: &str, scheme: Scheme) -> Result<KeyPair, KeyError> {
        let (rest, password) = match uri.find("///") {
            Some(i) => (&uri[..i], Some(&uri[i + 3..])),
            None => (uri, None),
        };
        let (phrase, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let phrase = phrase.trim();
        let junctions = parse_junctions(uri, path)?;

        let mini: Zeroizing<[u8; 32]> = if let Some(seed) = parse_hex_seed(phrase) {
            if password.is_some() {
                return Err(KeyError::Uri {
                    uri: redact(uri),
                    reason: "a password applies to a phrase, not a hex seed",
                });
            }
            seed
        } else {
            let phrase = if phrase.is_empty() {
                DEV_PHRASE
            } else {
                phrase
            };
            mini_secret_from_phrase(phrase, password.unwrap_or(""))?
        };

        match scheme {
            Scheme::Ed25519 => {
                let mut seed = mini;
                for j in &junctions {
                    match j {
                        Junction::Hard(cc) => seed = ed25519_hard_derive(&seed, cc),
                        Junction::Soft(name, _) => {
                            return Err(KeyError::SoftEd25519 {
                                junction: name.clone(),
                            });
                        }
                    }
                }
                Ok(KeyPair::ed25519_from_seed(&seed))
            }
            Scheme::Sr25519 => {
                let mini = schnorrkel::MiniSecretKey::from_bytes(mini.as_ref())
                    .map_err(|e| KeyError::Sr25519(e.to_string()))?;
                let mut pair = mini.expand_to_keypair(schnorrkel::ExpansionMode::Ed25519);
                for j in &junctions {
                    pair = match j {
                        Junction::Hard(cc) => pair
                            .secret
                            .hard_derive_mini_secret_key(
                                Some(schnorrkel::derive::ChainCode(*cc)),
                                b"",
                            )
                            .0
                            .expand_to_keypair(schnorrkel::ExpansionMode::Ed25519),
                        Junction::Soft(_, cc) => {
                            use schnorrkel::derive::Derivation as _;
                            pair.derived_key_simple(schnorrkel::derive::ChainCode(*cc), [])
                                .0
                        }
                    };
                }
                Ok(KeyPair::Sr25519(pair))
            }
        }
    }

    /// The scheme of this key.
    pub fn scheme(&self) -> Scheme {
        match self {
            KeyPair::Ed25519(_) => Scheme::Ed25519,
            KeyPair::Sr25519(_) => Scheme::Sr25519,
        }
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        match self {
            KeyPair::Ed25519(k) => k.verifying_key().to_bytes(),
            KeyPair::Sr25519(k) => k.public.to_bytes(),
        }
    }

    /// The public key as the registrar stores it (standard padded base64).
    pub fn public_key_base64(&self) -> String {
        b64_encode(&self.public_key())
    }

    /// Sign `msg` (ed25519: deterministic; sr25519: randomized, context `substrate`).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        match self {
            KeyPair::Ed25519(k) => k.sign(msg).to_bytes(),
            KeyPair::Sr25519(k) => k.sign_simple(SR25519_CONTEXT, msg).to_bytes(),
        }
    }
}

/// Verify `sig` over `msg` with one scheme.
pub fn verify(scheme: Scheme, public_key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    match scheme {
        Scheme::Ed25519 => match ed25519_dalek::VerifyingKey::from_bytes(public_key) {
            Ok(pk) => pk
                .verify(msg, &ed25519_dalek::Signature::from_bytes(sig))
                .is_ok(),
            Err(_) => false,
        },
        Scheme::Sr25519 => {
            let (Ok(pk), Ok(sig)) = (
                schnorrkel::PublicKey::from_bytes(public_key),
                schnorrkel::Signature::from_bytes(sig),
            ) else {
                return false;
            };
            pk.verify_simple(SR25519_CONTEXT, msg, &sig).is_ok()
        }
    }
}

/// Verify as the registrar does: ed25519 first, then sr25519. Returns the scheme that verified.
pub fn verify_any(public_key: &[u8], msg: &[u8], sig: &[u8]) -> Result<Scheme, VerifyError> {
    let pk: &[u8; 32] = public_key
        .try_into()
        .map_err(|_| VerifyError::PublicKeyLength(public_key.len()))?;
    let sig: &[u8; 64] = sig
        .try_into()
        .map_err(|_| VerifyError::SignatureLength(sig.len()))?;
    [Scheme::Ed25519, Scheme::Sr25519]
        .into_iter()
        .find(|s| verify(*s, pk, msg, sig))
        .ok_or(VerifyError::Mismatch)
}

/// The BIP-39 entropy of an English phrase.
pub fn mnemonic_entropy(phrase: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let normalized = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
    let m = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
        .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
    Ok(Zeroizing::new(m.to_entropy()))
}

/// The Substrate mini secret of a phrase: PBKDF2-HMAC-SHA512(entropy, "mnemonic"+password, 2048)[..32].
pub fn mini_secret_from_phrase(
    phrase: &str,
    password: &str,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let entropy = mnemonic_entropy(phrase)?;
    let salt = format!("mnemonic{password}");
    let mut seed64 = Zeroizing::new([0u8; 64]);
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(&entropy, salt.as_bytes(), 2048, seed64.as_mut());
    let mut mini = Zeroizing::new([0u8; 32]);
    mini.copy_from_slice(&seed64[..32]);
    Ok(mini)
}

/// The Stellar account id (`G...`, 56 characters) of an ed25519 public key: base32 of version byte 6<<3,
/// the key and a CRC16-XModem checksum (little endian).
pub fn stellar_address(public_key: &[u8; 32]) -> String {
    let mut data = Vec::with_capacity(35);
    data.push(6 << 3);
    data.extend_from_slice(public_key);
    let crc = crc16_xmodem(&data);
    data.extend_from_slice(&crc.to_le_bytes());
    base32(&data)
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

enum Junction {
    Hard([u8; 32]),
    Soft(String, [u8; 32]),
}

fn parse_junctions(uri: &str, path: &str) -> Result<Vec<Junction>, KeyError> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let hard = rest.starts_with("//");
        let body = if hard { &rest[2..] } else { &rest[1..] };
        let end = body.find('/').unwrap_or(body.len());
        let name = &body[..end];
        if name.is_empty() {
            return Err(KeyError::Uri {
                uri: redact(uri),
                reason: "empty derivation junction",
            });
        }
        let cc = chain_code(name);
        out.push(if hard {
            Junction::Hard(cc)
        } else {
            Junction::Soft(name.to_string(), cc)
        });
        rest = &body[end..];
    }
    Ok(out)
}

/// Substrate's junction chain code: SCALE encoding of the u64 (if numeric) or of the string, zero-padded to
/// 32 bytes, or its blake2b-256 when longer.
fn chain_code(name: &str) -> [u8; 32] {
    let encoded = match name.parse::<u64>() {
        Ok(n) => n.to_le_bytes().to_vec(),
        Err(_) => {
            let mut v = scale_compact_len(name.len());
            v.extend_from_slice(name.as_bytes());
            v
        }
    };
    let mut cc = [0u8; 32];
    if encoded.len() > 32 {
        cc.copy_from_slice(&Blake2b::<U32>::digest(&encoded));
    } else {
        cc[..encoded.len()].copy_from_slice(&encoded);
    }
    cc
}

fn scale_compact_len(n: usize) -> Vec<u8> {
    match n {
        0..=0x3f => vec![(n as u8) << 2],
        0x40..=0x3fff => (((n as u16) << 2) | 1).to_le_bytes().to_vec(),
        _ => (((n as u32) << 2) | 2).to_le_bytes().to_vec(),
    }
}

fn ed25519_hard_derive(seed: &[u8; 32], cc: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut h = Blake2b::<U32>::new();
    h.update(scale_compact_len("Ed25519HDKD".len()));
    h.update(b"Ed25519HDKD");
    h.update(seed);
    h.update(cc);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&h.finalize());
    out
}

fn parse_hex_seed(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.len() != 64 {
        return None;
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(digits, seed.as_mut()).ok()?;
    Some(seed)
}

/// A URI with its phrase hidden, for error messages.
fn redact(uri: &str) -> String {
    match uri.find('/') {
        Some(i) => format!(
            "<secret>{}",
            &uri[i..].split("///").next().unwrap_or_default()
        ),
        None => "<secret>".to_string(),
    }
}
