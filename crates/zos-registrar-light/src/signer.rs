//! Signing as the node without holding its key: every signature is identityd's `Sign` over the bus, and the
//! public key is identityd's `PublicKey`. The private key never leaves identityd.

use std::sync::Mutex;

use zos_api::identity::IdentityManagerClient;
use zos_grid::signer::SignFuture;
use zos_grid::{SignError, Signer};
use zos_types::Bytes;

/// A [`Signer`] backed by identityd.
pub struct IdentitySigner {
    identity: IdentityManagerClient,
    public_key: Mutex<Option<[u8; 32]>>,
}

impl IdentitySigner {
    /// Sign through `identity` (give it a bounded timeout).
    pub fn new(identity: IdentityManagerClient) -> IdentitySigner {
        IdentitySigner {
            identity,
            public_key: Mutex::new(None),
        }
    }

    /// Ask identityd for the node's public key (again) and remember it.
    pub async fn refresh_public_key(&self) -> Result<[u8; 32], SignError> {
        let key =
            self.identity.public_key().await.map_err(|e| {
                SignError(format!("asking identityd for the node's public key: {e}"))
            })?;
        let key: [u8; 32] = key.0.as_slice().try_into().map_err(|_| {
            SignError(format!(
                "identityd gave a public key of {} bytes, expected 32",
                key.0.len()
            ))
        })?;
        *self.public_key.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
        Ok(key)
    }

    /// The remembered public key, if identityd gave it already.
    pub fn known_public_key(&self) -> Option<[u8; 32]> {
        *self.public_key.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Signer for IdentitySigner {
    /// The key identityd gave; all zeros before [`IdentitySigner::refresh_public_key`] succeeded (the state
    /// machine asks for it before any call that needs it).
    fn public_key(&self) -> [u8; 32] {
        self.known_public_key().unwrap_or([0; 32])
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        Box::pin(async move {
            let sig = self
                .identity
                .sign(Bytes(message.to_vec()))
                .await
                .map_err(|e| SignError(format!("identityd Sign: {e}")))?;
            if sig.0.len() != 64 {
                return Err(SignError(format!(
                    "identityd Sign gave {} bytes, expected a 64-byte signature",
                    sig.0.len()
                )));
            }
            Ok(sig.0)
        })
    }
}
