//! identityd: `identityd.manager@0.0.1` (the node key and what can be done with it) and
//! `identityd.monitor@0.0.1` (the running version).
//!
//! The private key never crosses the bus: Go's `PrivateKey()` is not offered. Daemons get operations instead.
//! Implemented by `zos-identity` (daemon `identityd`); its README has the formats and the decisions.
//!
//! Errors carry a kind: `invalid_input` (bad input to a crypto operation, a signature that does not verify),
//! `not_found` (orphan node, unknown farm), `unavailable` (registrar_light not answering `Farm`), `internal`.

use zos_types::{Bytes, Version};

crate::contract! {
    /// The node identity: its ed25519 key, farm, and the operations that need the private key.
    object IdentityManager, IdentityManagerClient, IdentityManagerContract = "identityd", "manager", "0.0.1" {
        /// Where the key is kept (`file-store`).
        fn store_kind = "StoreKind" () -> String;
        /// The node id: base58 of the public key.
        fn node_id = "NodeID" () -> String;
        /// The farm id from the kernel command line (`not_found` on an orphan node).
        fn farm_id = "FarmID" () -> u32;
        /// The farm's name, from the registrar through registrar_light's gateway; cached once non-empty,
        /// `unavailable` while registrar_light does not answer.
        fn farm = "Farm" () -> String;
        /// The farm secret from the kernel command line.
        fn farm_secret = "FarmSecret" () -> String;
        /// The node's 32-byte ed25519 public key.
        fn public_key = "PublicKey" () -> Bytes;
        /// Sign a message with the node key (ed25519, 64-byte signature).
        fn sign = "Sign" (message: Bytes) -> Bytes;
        /// Verify a signature made by the node key.
        fn verify = "Verify" (message: Bytes, signature: Bytes);
        /// Seal a message to the node: a NaCl sealed box (libsodium `crypto_box_seal`) to the X25519 form of the
        /// node key, as Go does.
        fn encrypt = "Encrypt" (message: Bytes) -> Bytes;
        /// Open a sealed box addressed to the node (`invalid_input` under 48 bytes or when it does not open).
        fn decrypt = "Decrypt" (message: Bytes) -> Bytes;
        /// Encrypt for a peer: key = BLAKE2b-256 of X25519(node key, the peer's converted 32-byte ed25519 public
        /// key); NaCl secretbox with a random 24-byte nonce prepended, as Go does.
        fn encrypt_ecdh = "EncryptECDH" (message: Bytes, peer: Bytes) -> Bytes;
        /// Decrypt a message from a peer (see EncryptECDH).
        fn decrypt_ecdh = "DecryptECDH" (message: Bytes, peer: Bytes) -> Bytes;
        /// The registrar `X-Auth` header value for `twin`, signed now by the node key:
        /// `base64("<unix-seconds>:<twin>") + ":" + base64(ed25519 signature of that ASCII challenge)`.
        fn registrar_auth = "RegistrarAuth" (twin: u64) -> String;
        /// The 32-byte X25519 secret (a mycelium key file as is) for the host mycelium instance. Derived from the
        /// seed with domain separation (keyed BLAKE2b), not Go's converted node key: leaking it does not leak the
        /// node key, and the node's mycelium address differs from a Go node's.
        fn mycelium_key = "MyceliumKey" () -> Bytes;
    }
}

crate::contract! {
    /// The running zos version.
    object VersionMonitor, VersionMonitorClient, VersionMonitorContract = "identityd", "monitor", "0.0.1" {
        /// The running version.
        fn get_version = "GetVersion" () -> Version;
    } streams {
        /// The running version: sent at start, on change and every 10 s.
        stream version = "Version" -> Version;
    }
}
