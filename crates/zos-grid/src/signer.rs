//! Who signs registrar requests. The node's key lives in identityd and never leaves it, so the client only
//! needs something that can sign bytes: a [`KeyPair`] here, or identityd's `Sign` over the bus through
//! [`FnSigner`].

use std::future::Future;
use std::pin::Pin;

use crate::keys::KeyPair;

/// A boxed signing future.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, SignError>> + Send + 'a>>;

/// Signing failed (identityd unreachable, ...).
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(pub String);

/// Signs registrar challenges for one account.
pub trait Signer: Send + Sync {
    /// The 32-byte public key of the account (ed25519 or sr25519).
    fn public_key(&self) -> [u8; 32];
    /// A 64-byte signature of `message`.
    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a>;
}

impl Signer for KeyPair {
    fn public_key(&self) -> [u8; 32] {
        KeyPair::public_key(self)
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        let sig = KeyPair::sign(self, message).to_vec();
        Box::pin(async move { Ok(sig) })
    }
}

/// A signer made of a public key and an async closure, e.g. one that calls identityd's `Sign` on the bus:
/// `FnSigner::new(pk, move |msg| { let c = c.clone(); async move { c.sign(msg).await.map_err(|e| SignError(e.to_string())) } })`.
pub struct FnSigner<F> {
    public_key: [u8; 32],
    f: F,
}

impl<F, Fut> FnSigner<F>
where
    F: Fn(Vec<u8>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Vec<u8>, SignError>> + Send + 'static,
{
    /// Wrap `f`.
    pub fn new(public_key: [u8; 32], f: F) -> FnSigner<F> {
        FnSigner { public_key, f }
    }
}

impl<F, Fut> Signer for FnSigner<F>
where
    F: Fn(Vec<u8>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Vec<u8>, SignError>> + Send + 'static,
{
    fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        Box::pin((self.f)(message.to_vec()))
    }
}
