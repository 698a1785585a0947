//! The node key's operations against the reference vectors (registrar-upgrade-flist.md §2.6, mycelium.md §1–2)
//! and against messages made by libsodium, whose primitives Go's x/crypto (nacl/box, secretbox, extra25519)
//! reproduce byte for byte.
//!
//! The libsodium vectors were made once with the system libsodium (ctypes): `crypto_sign_seed_keypair`,
//! `crypto_sign_ed25519_{pk,sk}_to_curve25519`, `crypto_box_seal`, `crypto_scalarmult` + BLAKE2b-256 +
//! `crypto_secretbox_easy`. They are not produced by this crate, so they check it independently.

use sha2::Digest;
use zos_identity::CryptoError;
use zos_identity::key::{self, NodeKey};
use zos_types::go::{base64_decode, base64_encode};

/// registrar-upgrade-flist.md §2.6: the ed25519 seed (mini secret) of the Substrate dev phrase.
const SEED: &str = "fac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e";
const PUBLIC: &str = "345071da55e5dccefaaa440339415ef9f2663338a38f7da0df21be5ab4e055ef";
const PUBLIC_B64: &str = "NFBx2lXl3M76qkQDOUFe+fJmMzijj32g3yG+WrTgVe8=";
const ACCOUNT_SIG_B64: &str =
    "SZVJE+v8SLWCuBhDRJnYN5hOkuvkzzYDNv0Q6c55cKG6A0mULUQKeamic6VJfBaRacS+tT7SCrx+q+q2Y2WtBQ==";
const XAUTH_TWIN1_T1700000000: &str = "MTcwMDAwMDAwMDox:UxYW2XJN+aKDHKOX/FeFoAqmgGkGXVFB7RzU0qGXaj4qolofhYpaCdTJdHizFZ3dKyKWQvWkRmIf+315XHHrDg==";

/// libsodium: the node's converted X25519 keys.
const NODE_X25519_PUBLIC: &str = "340ee939363112129725389f9a090541c1103f62847fe66da53289056fc0186c";
/// libsodium `crypto_box_seal` of "sealed by libsodium for the node" to the node.
const SEALED_BY_LIBSODIUM: &str = "670a573689e103566dc204d3912699e6a10b4ccb1111773b586f56dec4348416d18bca41df36c0c3bfad9a1ae862ed798c778344e063439baee6659d497bfdb5e70f61a4d0b6fcff4a05f3b3ae1759d2";
/// The peer: seed 00 01 .. 1f (key D of mycelium.md §1, public key `03a107bf…31b8`).
const PEER_PUBLIC: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
/// The peer's ECDH message "from the peer, ecdh" to the node: nonce 07×24, then the secretbox under
/// BLAKE2b-256(X25519(peer secret, node public)).
const ECDH_FROM_PEER: &str = "070707070707070707070707070707070707070707070707fa36d7acb20cb7f24dd4e390ea63f1c0689f516b0fb70c045dc9b8ff3497ff9775f718";

fn seed() -> [u8; 32] {
    hex::decode(SEED).unwrap().try_into().unwrap()
}

fn node() -> NodeKey {
    NodeKey::from_seed(&seed())
}

fn peer() -> NodeKey {
    let s: [u8; 32] = std::array::from_fn(|i| i as u8);
    NodeKey::from_seed(&s)
}

#[test]
fn public_key_and_node_id_of_the_vector_seed() {
    let key = node();
    assert_eq!(hex::encode(key.public_key()), PUBLIC);
    assert_eq!(base64_encode(&key.public_key()), PUBLIC_B64);
    let id = key.node_id();
    assert_eq!(
        bs58::decode(&id).into_vec().unwrap(),
        key.public_key().to_vec(),
        "the node id is base58 of the public key"
    );
    assert_eq!(id, bs58::encode(hex::decode(PUBLIC).unwrap()).into_string());
    // Debug never shows the seed.
    let debug = format!("{key:?}");
    assert!(debug.contains(&id) && !debug.contains(SEED), "{debug}");
}

#[test]
fn signatures_and_registrar_auth_match_the_spec_vectors() {
    let key = node();
    let account = format!("1700000000:{PUBLIC_B64}");
    assert_eq!(
        base64_encode(&key.sign(account.as_bytes())),
        ACCOUNT_SIG_B64
    );
    assert_eq!(
        key.registrar_auth(1, 1_700_000_000),
        XAUTH_TWIN1_T1700000000
    );

    // The header's parts: base64 of the ASCII challenge, base64 of the signature of those ASCII bytes.
    let header = key.registrar_auth(77, 1_700_000_123);
    let (challenge, signature) = header.split_once(':').unwrap();
    assert_eq!(base64_decode(challenge).unwrap(), b"1700000123:77");
    key.verify(b"1700000123:77", &base64_decode(signature).unwrap())
        .unwrap();
}

#[test]
fn verify_accepts_only_the_node_signature_of_the_message() {
    let key = node();
    let sig = key.sign(b"hello");
    key.verify(b"hello", &sig).unwrap();
    assert_eq!(key.verify(b"hellO", &sig), Err(CryptoError::BadSignature));
    assert_eq!(
        key.verify(b"hello", &peer().sign(b"hello")),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        key.verify(b"hello", &sig[..63]),
        Err(CryptoError::SignatureLength(63))
    );
    assert_eq!(
        key.verify(b"hello", &[]),
        Err(CryptoError::SignatureLength(0))
    );
}

#[test]
fn ed25519_to_x25519_conversion_is_zero_os_s() {
    let key = node();
    // libsodium's crypto_sign_ed25519_pk_to_curve25519 (= Go's extra25519.PublicKeyToCurve25519).
    assert_eq!(hex::encode(key.x25519_public()), NODE_X25519_PUBLIC);
    assert_eq!(
        hex::encode(key::x25519_public_of(&key.public_key()).unwrap()),
        NODE_X25519_PUBLIC
    );
    // mycelium.md §2: secret = clamp(SHA-512(seed)[..32]); its X25519 public key is the Montgomery form of the
    // ed25519 public key.
    let digest = sha2::Sha512::digest(seed());
    let mut secret: [u8; 32] = digest[..32].try_into().unwrap();
    secret[0] &= 248;
    secret[31] &= 127;
    secret[31] |= 64;
    assert_eq!(
        key::x25519_public_of_secret(&secret),
        node().x25519_public()
    );
    // Key D of mycelium.md: seed 00..1f has the ed25519 public key 03a107bf…31b8.
    assert_eq!(hex::encode(peer().public_key()), PEER_PUBLIC);
    let d = hex::decode(PEER_PUBLIC).unwrap();
    assert!(PEER_PUBLIC.starts_with("03a107bf") && PEER_PUBLIC.ends_with("31b8"));
    assert_eq!(key::x25519_public_of(&d).unwrap(), peer().x25519_public());
}

#[test]
fn mycelium_key_file_public_keys_match_the_mycelium_table() {
    // mycelium.md §1: key files A (00..1f), B (42×32), C (00×32) and their public keys.
    let a: [u8; 32] = std::array::from_fn(|i| i as u8);
    assert_eq!(
        hex::encode(key::x25519_public_of_secret(&a)),
        "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f"
    );
    assert_eq!(
        hex::encode(key::x25519_public_of_secret(&[0x42; 32])),
        "132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f472"
    );
    assert_eq!(
        hex::encode(key::x25519_public_of_secret(&[0; 32])),
        "2fe57da347cd62431528daac5fbb290730fff684afc4cfc2ed90995f58cb3b74"
    );
}

#[test]
fn sealed_boxes_open_only_for_the_node() {
    let key = node();
    // Made by libsodium.
    let sealed = hex::decode(SEALED_BY_LIBSODIUM).unwrap();
    assert_eq!(
        key.unseal(&sealed).unwrap(),
        b"sealed by libsodium for the node"
    );
    // Round trip, through the node and through a peer that knows only the public key.
    let mine = key.seal(b"secret").unwrap();
    assert_eq!(mine.len(), 48 + 6);
    assert_eq!(key.unseal(&mine).unwrap(), b"secret");
    let theirs = key::seal_for(&key.public_key(), b"from outside").unwrap();
    assert_eq!(key.unseal(&theirs).unwrap(), b"from outside");
    assert_ne!(
        key.seal(b"secret").unwrap(),
        mine,
        "every box has a fresh ephemeral key"
    );
    // Empty message: exactly 48 bytes, and it opens.
    assert_eq!(key.unseal(&key.seal(b"").unwrap()).unwrap(), b"");
    // Another key cannot open it; a modified box does not open; short input is named.
    assert_eq!(peer().unseal(&mine), Err(CryptoError::Open("sealed box")));
    let mut modified = mine.clone();
    modified[50] ^= 1;
    assert_eq!(key.unseal(&modified), Err(CryptoError::Open("sealed box")));
    let err = key.unseal(&mine[..47]).unwrap_err();
    assert_eq!(
        err,
        CryptoError::TooShort {
            what: "sealed box",
            min: 48,
            got: 47
        }
    );
    assert!(err.to_string().contains("at least 48 bytes"), "{err}");
}

#[test]
fn ecdh_messages_open_on_both_sides_and_nowhere_else() {
    let (node, peer) = (node(), peer());
    // A message made by libsodium on the peer's side.
    let from_peer = hex::decode(ECDH_FROM_PEER).unwrap();
    assert_eq!(
        node.decrypt_ecdh(&from_peer, &peer.public_key()).unwrap(),
        b"from the peer, ecdh"
    );
    // Node → peer and peer → node, each side using only the other's ed25519 public key.
    let to_peer = node
        .encrypt_ecdh(b"to the peer", &peer.public_key())
        .unwrap();
    assert_eq!(to_peer.len(), 24 + 16 + 11);
    assert_eq!(
        peer.decrypt_ecdh(&to_peer, &node.public_key()).unwrap(),
        b"to the peer"
    );
    let back = peer.encrypt_ecdh(b"back", &node.public_key()).unwrap();
    assert_eq!(
        node.decrypt_ecdh(&back, &peer.public_key()).unwrap(),
        b"back"
    );
    // The sender can read its own message too (same shared key).
    assert_eq!(
        node.decrypt_ecdh(&to_peer, &peer.public_key()).unwrap(),
        b"to the peer"
    );
    // A random nonce, prepended.
    let again = node
        .encrypt_ecdh(b"to the peer", &peer.public_key())
        .unwrap();
    assert_ne!(again[..24], to_peer[..24]);
    // A third key cannot read it; naming the wrong peer does not work either.
    let third = NodeKey::from_seed(&[9; 32]);
    assert_eq!(
        third.decrypt_ecdh(&to_peer, &node.public_key()),
        Err(CryptoError::Open("ECDH message"))
    );
    assert_eq!(
        peer.decrypt_ecdh(&to_peer, &third.public_key()),
        Err(CryptoError::Open("ECDH message"))
    );
    // Bad input is named.
    assert_eq!(
        node.decrypt_ecdh(&to_peer[..39], &peer.public_key()),
        Err(CryptoError::TooShort {
            what: "ECDH message",
            min: 40,
            got: 39
        })
    );
    assert_eq!(
        node.encrypt_ecdh(b"x", &[1; 31]),
        Err(CryptoError::PeerKeyLength(31))
    );
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    assert_eq!(
        node.encrypt_ecdh(b"x", &identity_point),
        Err(CryptoError::PeerKeyInvalid),
        "small-order key"
    );
    let not_a_point = not_a_point();
    assert_eq!(
        node.encrypt_ecdh(b"x", &not_a_point),
        Err(CryptoError::PeerKeyInvalid)
    );
}

/// A 32-byte string that is not the encoding of any curve point (y with no matching x).
fn not_a_point() -> [u8; 32] {
    for y in 2u8..=255 {
        let mut b = [0u8; 32];
        b[0] = y;
        if ed25519_dalek::VerifyingKey::from_bytes(&b).is_err() {
            return b;
        }
    }
    panic!("no invalid encoding among the candidates");
}

#[test]
fn the_mycelium_key_is_derived_and_independent_of_the_node_key() {
    let key = node();
    let m = key.mycelium_secret();
    assert_eq!(
        *m,
        *node().mycelium_secret(),
        "deterministic: the same seed gives the same mycelium key"
    );
    assert_ne!(*m, *peer().mycelium_secret());
    assert_eq!(m[0] & 7, 0, "clamped");
    assert_eq!(m[31] & 0xc0, 0x40, "clamped");
    assert_ne!(m.as_slice(), seed().as_slice());
    let digest = sha2::Sha512::digest(seed());
    assert_ne!(m[1..31], digest[1..31], "not the converted node key");
    assert_ne!(
        key::x25519_public_of_secret(&m),
        key.x25519_public(),
        "so the mycelium address differs from a Go node's"
    );
}
