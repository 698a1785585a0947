//! identityd: `identityd.manager@0.0.1` (the node key and what can be done with it) and
//! `identityd.monitor@0.0.1` (the running version).
//!
//! The private key never crosses the bus: Go's `PrivateKey()` is not offered. Daemons get operations instead.

use zos_types::{Bytes, Version};

crate::contract! {
    /// The node identity: its ed25519 key, farm, and the operations that need the private key.
    object IdentityManager, IdentityManagerClient, IdentityManagerContract = "identityd", "manager", "0.0.1" {
        /// Where the key is kept (`file-store`).
        fn store_kind = "StoreKind" () -> String;
        /// The node id: base58 of the public key.
        fn node_id = "NodeID" () -> String;
        /// The farm id from the kernel command line.
        fn farm_id = "FarmID" () -> u32;
        /// The farm's name, from the registrar.
        fn farm = "Farm" () -> String;
        /// The farm secret from the kernel command line.
        fn farm_secret = "FarmSecret" () -> String;
        /// The node's 32-byte ed25519 public key.
        fn public_key = "PublicKey" () -> Bytes;
        /// Sign a message with the node key (ed25519, 64-byte signature).
        fn sign = "Sign" (message: Bytes) -> Bytes;
        /// Verify a signature made by the node key.
        fn verify = "Verify" (message: Bytes, signature: Bytes);
        /// Seal a message to the node (NaCl sealed box).
        fn encrypt = "Encrypt" (message: Bytes) -> Bytes;
        /// Open a sealed box addressed to the node.
        fn decrypt = "Decrypt" (message: Bytes) -> Bytes;
        /// Encrypt for a peer with a key agreed from the node key and the peer's ed25519 public key.
        fn encrypt_ecdh = "EncryptECDH" (message: Bytes, peer: Bytes) -> Bytes;
        /// Decrypt a message from a peer (see EncryptECDH).
        fn decrypt_ecdh = "DecryptECDH" (message: Bytes, peer: Bytes) -> Bytes;
        /// The registrar `X-Auth` header value for `twin`, signed now by the node key.
        fn registrar_auth = "RegistrarAuth" (twin: u64) -> String;
        /// The X25519 secret mycelium uses for the host instance, derived from (not equal to) the node key.
        fn mycelium_key = "MyceliumKey" () -> Bytes;
    }
}

crate::contract! {
    /// The running zos version.
    object VersionMonitor, VersionMonitorClient, VersionMonitorContract = "identityd", "monitor", "0.0.1" {
        /// The running version.
        fn get_version = "GetVersion" () -> Version;
    } streams {
        /// The running version, re-sent periodically and on change.
        stream version = "Version" -> Version;
    }
}
