//! The rfs block pipeline: 512 KiB chunks, BLAKE2b-256 key, raw snappy, AES-256-GCM, BLAKE2b-256 id.
//!
//! For a chunk `P`: `key = BLAKE2b-256(P)`, `C = snappy_raw(P)`, `E = AES-256-GCM(key, nonce = key[0..12], C)`
//! (ciphertext followed by the 16-byte tag), `id = BLAKE2b-256(E)`. The store keeps `E` under `id`; the flist
//! keeps `(id, key)` per block, in order.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};

/// Every block of a file but the last holds exactly this many plaintext bytes.
pub const BLOCK_SIZE: usize = 512 * 1024;

/// Length of a block id and of a block key.
pub const HASH_LEN: usize = 32;

/// A block id (BLAKE2b-256 of the stored, encrypted bytes).
pub type BlockId = [u8; HASH_LEN];
/// A block key (BLAKE2b-256 of the plaintext; the AES-256 key).
pub type BlockKey = [u8; HASH_LEN];

/// AES-GCM tag length.
const TAG_LEN: usize = 16;

/// What can go wrong decoding a block.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The stored bytes do not hash to the block id.
    #[error("block {id}: content hash is {actual}, the store returned the wrong bytes")]
    HashMismatch {
        /// hex of the expected id
        id: String,
        /// hex of what the bytes hash to
        actual: String,
    },
    /// AES-GCM authentication failed.
    #[error("block {id}: decryption failed (wrong key or corrupted data)")]
    Decrypt {
        /// hex of the block id
        id: String,
    },
    /// The decrypted bytes are not valid raw snappy, or decompress to more than a block.
    #[error("block {id}: decompression failed: {reason}")]
    Decompress {
        /// hex of the block id
        id: String,
        /// what was wrong
        reason: String,
    },
    /// A plaintext chunk larger than [`BLOCK_SIZE`] was given to the encoder.
    #[error("chunk of {0} bytes is larger than the block size")]
    TooLarge(usize),
}

/// BLAKE2b with a 32-byte digest.
pub fn blake2b256(data: &[u8]) -> [u8; HASH_LEN] {
    let mut h = Blake2b::<U32>::new();
    h.update(data);
    h.finalize().into()
}

/// An encoded block: what goes to the store and what goes to the flist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedBlock {
    /// Store key.
    pub id: BlockId,
    /// Decryption key.
    pub key: BlockKey,
    /// Stored bytes (ciphertext ‖ tag).
    pub data: Vec<u8>,
}

/// Encode one plaintext chunk (at most [`BLOCK_SIZE`] bytes).
pub fn encode(plain: &[u8]) -> Result<EncodedBlock, BlockError> {
    if plain.len() > BLOCK_SIZE {
        return Err(BlockError::TooLarge(plain.len()));
    }
    let key = blake2b256(plain);
    let mut data = snap::raw::Encoder::new()
        .compress_vec(plain)
        .expect("snappy compression of a bounded buffer cannot fail");
    let cipher = Aes256Gcm::new((&key).into());
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&key[..12]), b"", &mut data)
        .expect("AES-GCM encryption of a buffer under 64 GiB cannot fail");
    data.extend_from_slice(&tag);
    let id = blake2b256(&data);
    Ok(EncodedBlock { id, key, data })
}

/// Decode stored bytes: decrypt with `key` (the GCM tag authenticates them under the key the flist holds),
/// decompress. When decryption fails, the bytes are hashed to tell "the store returned other bytes than `id`"
/// from "the key does not fit". The result is at most [`BLOCK_SIZE`] bytes.
pub fn decode(id: &BlockId, key: &BlockKey, mut data: Vec<u8>) -> Result<Vec<u8>, BlockError> {
    let mismatch = |data: &[u8]| {
        let actual = blake2b256(data);
        (&actual != id).then(|| BlockError::HashMismatch {
            id: hex::encode(id),
            actual: hex::encode(actual),
        })
    };
    if data.len() < TAG_LEN {
        return Err(mismatch(&data).unwrap_or(BlockError::Decrypt {
            id: hex::encode(id),
        }));
    }
    let tag_at = data.len() - TAG_LEN;
    let tag: [u8; TAG_LEN] = data[tag_at..].try_into().expect("tag length");
    let cipher = Aes256Gcm::new(key.into());
    data.truncate(tag_at);
    // aes-gcm checks the tag before decrypting: on failure `data` still holds the ciphertext
    if cipher
        .decrypt_in_place_detached(Nonce::from_slice(&key[..12]), b"", &mut data, (&tag).into())
        .is_err()
    {
        data.extend_from_slice(&tag);
        return Err(mismatch(&data).unwrap_or(BlockError::Decrypt {
            id: hex::encode(id),
        }));
    }
    let body = data;
    let len = snap::raw::decompress_len(&body).map_err(|e| BlockError::Decompress {
        id: hex::encode(id),
        reason: e.to_string(),
    })?;
    if len > BLOCK_SIZE {
        return Err(BlockError::Decompress {
            id: hex::encode(id),
            reason: format!("claims {len} bytes, more than the {BLOCK_SIZE}-byte block size"),
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(&body)
        .map_err(|e| BlockError::Decompress {
            id: hex::encode(id),
            reason: e.to_string(),
        })
}

/// Number of blocks a regular file of `size` bytes has.
pub fn block_count(size: u64) -> u64 {
    size.div_ceil(BLOCK_SIZE as u64)
}

/// Plaintext length of block `index` of a file of `size` bytes.
pub fn block_len(size: u64, index: u64) -> usize {
    let start = index * BLOCK_SIZE as u64;
    size.saturating_sub(start).min(BLOCK_SIZE as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of the reference digest (§6.7), reproduced byte for byte.
    #[test]
    fn hello_world_vector() {
        let p = b"hello world";
        let snappy = snap::raw::Encoder::new().compress_vec(p).unwrap();
        assert_eq!(hex::encode(&snappy), "0b2868656c6c6f20776f726c64");
        let b = encode(p).unwrap();
        assert_eq!(
            hex::encode(b.key),
            "256c83b297114d201b30179f3f0ef0cace9783622da5974326b436178aeef610"
        );
        assert_eq!(
            hex::encode(&b.data),
            "ee4728dcead273b489d54d9464c03cf17853c6f001d196ee1efebb5563"
        );
        assert_eq!(
            hex::encode(b.id),
            "d917c0529e8b76d494ceb149a6faa1bd527b7415f5cf7ca728ad941622414267"
        );
        assert_eq!(decode(&b.id, &b.key, b.data).unwrap(), p);
    }

    #[test]
    fn round_trip_full_block() {
        let p: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i * 7 % 251) as u8).collect();
        let b = encode(&p).unwrap();
        assert_eq!(decode(&b.id, &b.key, b.data).unwrap(), p);
        assert!(matches!(
            encode(&vec![0; BLOCK_SIZE + 1]),
            Err(BlockError::TooLarge(_))
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let b = encode(b"some content").unwrap();
        let mut bad = b.data.clone();
        bad[0] ^= 1;
        let e = decode(&b.id, &b.key, bad.clone()).unwrap_err();
        assert!(matches!(e, BlockError::HashMismatch { .. }), "{e}");
        // right id for the tampered bytes, but the GCM tag no longer verifies
        let e = decode(&blake2b256(&bad), &b.key, bad).unwrap_err();
        assert!(matches!(e, BlockError::Decrypt { .. }), "{e}");
        let mut wrong_key = b.key;
        wrong_key[31] ^= 1;
        assert!(matches!(
            decode(&b.id, &wrong_key, b.data).unwrap_err(),
            BlockError::Decrypt { .. }
        ));
        assert!(matches!(
            decode(&blake2b256(b"x"), &b.key, b"x".to_vec()).unwrap_err(),
            BlockError::Decrypt { .. }
        ));
    }

    #[test]
    fn counts_and_lengths() {
        assert_eq!(block_count(0), 0);
        assert_eq!(block_count(1), 1);
        assert_eq!(block_count(BLOCK_SIZE as u64), 1);
        assert_eq!(block_count(BLOCK_SIZE as u64 + 1), 2);
        assert_eq!(block_len(BLOCK_SIZE as u64 + 5, 0), BLOCK_SIZE);
        assert_eq!(block_len(BLOCK_SIZE as u64 + 5, 1), 5);
    }
}
