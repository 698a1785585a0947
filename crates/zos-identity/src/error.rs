//! Errors of the key store and of the crypto operations.

use std::path::PathBuf;

/// Why the node key could not be loaded, recovered or stored. Nothing on disk was replaced when one of these
/// is returned.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// A key file exists but does not hold a valid key.
    #[error("{path}: corrupt key file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The primary key file is unusable and no valid copy exists: refusing to create a new identity.
    #[error(
        "{path}: the node key cannot be read ({reason}) and no valid copy exists; refusing to create a new identity. \
         Restore a valid seed.txt from a backup, or delete {path} (and {backup}) deliberately to give the node a new identity"
    )]
    Unrecoverable {
        path: PathBuf,
        backup: PathBuf,
        reason: String,
    },
    /// Legacy pool mirrors hold different keys: which identity is the node's is for an operator to decide.
    #[error(
        "the primary key {path} is missing and the legacy pool mirrors hold different keys ({mirrors}); refusing to guess. Copy the right one to {path}"
    )]
    AmbiguousMirrors { path: PathBuf, mirrors: String },
    /// Reading, writing or syncing a file failed.
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The system random generator failed.
    #[error("generating a key: the system random generator failed: {0}")]
    Random(String),
}

/// Why a crypto operation was refused. Messages name what was wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A signature is not 64 bytes.
    #[error("signature must be 64 bytes, got {0}")]
    SignatureLength(usize),
    /// A signature does not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// A peer public key is not 32 bytes.
    #[error("peer public key must be 32 bytes, got {0}")]
    PeerKeyLength(usize),
    /// A peer public key is not a valid ed25519 point, or a weak (small-order) one.
    #[error("peer public key is not a valid ed25519 public key")]
    PeerKeyInvalid,
    /// A ciphertext is too short to hold what its format needs.
    #[error("{what} must be at least {min} bytes, got {got}")]
    TooShort {
        what: &'static str,
        min: usize,
        got: usize,
    },
    /// Decryption failed: wrong key, or the message was modified.
    #[error("{0}: decryption failed (not for this key, or modified)")]
    Open(&'static str),
    /// Encryption failed (the system random generator).
    #[error("{0}: encryption failed")]
    Seal(&'static str),
}

/// Why identityd stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The node key could not be loaded.
    #[error("loading the node key")]
    Key(#[from] KeyStoreError),
    /// The bus could not be used.
    #[error("bus")]
    Bus(#[from] zos_bus::Error),
}
