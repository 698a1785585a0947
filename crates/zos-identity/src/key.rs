//! The node key and every operation that needs its secret half.
//!
//! Formats and algorithms are Zero-OS's, so Go peers interoperate:
//! - node id: base58 of the 32-byte ed25519 public key;
//! - signatures: pure ed25519 (RFC 8032), 64 bytes;
//! - [`NodeKey::seal`] / [`NodeKey::unseal`]: a NaCl sealed box (libsodium `crypto_box_seal`) to the X25519 key
//!   converted from the node key: secret = clamp(SHA-512(seed)[..32]), public = the Montgomery form of the
//!   ed25519 public key (what Go's `extra25519` conversions give);
//! - [`NodeKey::encrypt_ecdh`] / [`NodeKey::decrypt_ecdh`]: key = BLAKE2b-256 of X25519(node secret, converted
//!   peer ed25519 key), cipher = NaCl secretbox (XSalsa20-Poly1305), the random 24-byte nonce prepended;
//! - [`NodeKey::registrar_auth`]: the registrar `X-Auth` header, `b64("<ts>:<twin>") + ":" + b64(sig)`.
//!
//! Not Go's: [`NodeKey::mycelium_secret`] is a dedicated X25519 secret derived from the seed with a keyed
//! BLAKE2b (domain separated), so a leaked mycelium key file does not leak the node key. A node therefore has a
//! different mycelium address than a Go node with the same seed (Go used the converted node key).

use std::fmt;

use blake2::digest::consts::U32;
use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2b, Blake2bMac};
use crypto_secretbox::aead::Aead;
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use sha2::Sha512;
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// Length of the ed25519 seed (the whole secret).
pub const SEED_LEN: usize = 32;
/// Smallest sealed box: the ephemeral public key (32) and the Poly1305 tag (16).
pub const SEALED_BOX_MIN: usize = 48;
/// Smallest ECDH message: the nonce (24) and the Poly1305 tag (16).
pub const ECDH_MIN: usize = 40;
/// Domain separation of the mycelium key derivation. Changing it changes every node's mycelium address.
pub const MYCELIUM_DOMAIN: &[u8] = b"zos identityd: mycelium host x25519 key v1";

/// The node's ed25519 key. The seed never leaves this type except towards the key store; `Debug` prints the
/// node id only.
pub struct NodeKey {
    signing: SigningKey,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// The key of a 32-byte seed.
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> NodeKey {
        NodeKey {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// A new random key from the system random generator.
    pub fn generate() -> Result<NodeKey, String> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rand::rngs::OsRng
            .try_fill_bytes(seed.as_mut())
            .map_err(|e| e.to_string())?;
        Ok(NodeKey::from_seed(&seed))
    }

    /// The seed, for the key store only.
    pub(crate) fn seed(&self) -> Zeroizing<[u8; SEED_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The 32-byte ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The node id: base58 of the public key.
    pub fn node_id(&self) -> String {
        bs58::encode(self.public_key()).into_string()
    }

    /// Sign a message (ed25519, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Verify a signature of the node key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        verify(&self.public_key(), message, signature)
    }

    /// The node's X25519 public key: the Montgomery form of its ed25519 public key.
    pub fn x25519_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_montgomery().to_bytes()
    }

    /// The node's X25519 secret: clamp(SHA-512(seed)[..32]), as Go's `PrivateKeyToCurve25519`.
    fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        let digest = Zeroizing::new(Sha512::digest(self.signing.as_bytes()));
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&digest[..32]);
        clamp(&mut secret);
        secret
    }

    /// A NaCl sealed box to the node (what `Encrypt` does; anyone with the public key can do the same, see
    /// [`seal_for`]).
    pub fn seal(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_for(&self.public_key(), message)
    }

    /// Open a sealed box addressed to the node.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < SEALED_BOX_MIN {
            return Err(CryptoError::TooShort {
                what: "sealed box",
                min: SEALED_BOX_MIN,
                got: sealed.len(),
            });
        }
        let secret = crypto_box::SecretKey::from(*self.x25519_secret());
        secret
            .unseal(sealed)
            .map_err(|_| CryptoError::Open("sealed box"))
    }

    /// The secretbox key shared with the holder of the ed25519 key `peer`.
    fn shared_key(&self, peer: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let peer_x = x25519_public_of(peer)?;
        let secret = x25519_dalek::StaticSecret::from(*self.x25519_secret());
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer_x));
        if !shared.was_contributory() {
            return Err(CryptoError::PeerKeyInvalid);
        }
        let digest = Blake2b::<U32>::digest(shared.as_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&digest);
        Ok(key)
    }

    /// Encrypt for the holder of the ed25519 key `peer`: nonce (24 random bytes) followed by the secretbox.
    pub fn encrypt_ecdh(&self, message: &[u8], peer: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.shared_key(peer)?;
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| CryptoError::Seal("ECDH message"))?;
        let cipher = XSalsa20Poly1305::new(key.as_ref().into());
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), message)
            .map_err(|_| CryptoError::Seal("ECDH message"))?;
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypt a message from (or to) the holder of the ed25519 key `peer`, made by [`Self::encrypt_ecdh`] on
    /// either side.
    pub fn decrypt_ecdh(&self, message: &[u8], peer: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.shared_key(peer)?;
        if message.len() < ECDH_MIN {
            return Err(CryptoError::TooShort {
                what: "ECDH message",
                min: ECDH_MIN,
                got: message.len(),
            });
        }
        let (nonce, sealed) = message.split_at(24);
        let cipher = XSalsa20Poly1305::new(key.as_ref().into());
        cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| CryptoError::Open("ECDH message"))
    }

    /// The registrar `X-Auth` header value for `twin` at `unix_seconds`.
    pub fn registrar_auth(&self, twin: u64, unix_seconds: i64) -> String {
        let challenge = format!("{unix_seconds}:{twin}");
        let signature = self.sign(challenge.as_bytes());
        format!(
            "{}:{}",
            zos_types::go::base64_encode(challenge.as_bytes()),
            zos_types::go::base64_encode(&signature)
        )
    }

    /// The X25519 secret for the node's mycelium instance (a mycelium key file is exactly these 32 bytes):
    /// keyed BLAKE2b-256 (key = seed) of [`MYCELIUM_DOMAIN`], clamped. Knowing it reveals nothing of the seed.
    pub fn mycelium_secret(&self) -> Zeroizing<[u8; 32]> {
        let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(self.signing.as_bytes())
            .expect("a 32-byte key is valid for BLAKE2b (up to 64 bytes)");
        mac.update(MYCELIUM_DOMAIN);
        let out = mac.finalize().into_bytes();
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&out);
        clamp(&mut secret);
        secret
    }
}

/// RFC 7748 clamping.
fn clamp(k: &mut [u8; 32]) {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
}

/// Verify an ed25519 signature of `public_key`.
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| CryptoError::SignatureLength(signature.len()))?;
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| CryptoError::BadSignature)?;
    key.verify(message, &Signature::from_bytes(&signature))
        .map_err(|_| CryptoError::BadSignature)
}

/// The X25519 public key of an ed25519 public key (its Montgomery form). Refuses keys that are not valid
/// points and small-order (weak) keys.
pub fn x25519_public_of(ed25519_public: &[u8]) -> Result<[u8; 32], CryptoError> {
    let bytes: [u8; 32] = ed25519_public
        .try_into()
        .map_err(|_| CryptoError::PeerKeyLength(ed25519_public.len()))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| CryptoError::PeerKeyInvalid)?;
    if key.is_weak() {
        return Err(CryptoError::PeerKeyInvalid);
    }
    Ok(key.to_montgomery().to_bytes())
}

/// A NaCl sealed box to the holder of the ed25519 key `ed25519_public` (what a peer does to send the node a
/// message only it can read).
pub fn seal_for(ed25519_public: &[u8], message: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let public = crypto_box::PublicKey::from(x25519_public_of(ed25519_public)?);
    public
        .seal(&mut rand::rngs::OsRng, message)
        .map_err(|_| CryptoError::Seal("sealed box"))
}

/// The X25519 public key of a mycelium secret (what mycelium computes from its key file).
pub fn x25519_public_of_secret(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
}
