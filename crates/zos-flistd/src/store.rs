//! The block store of a mount: the flist's own routes (or the mount's store override) first, then fallback
//! stores (by default the hub's `/blocks` and `[hub] storage`), for flists packed with a store the node
//! cannot reach (a `dir://` on the packing host, `127.0.0.1`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use zos_flist::store::{BoxFuture, Store, StoreError};

/// Stores tried in order, starting with the one that answered last: once a fallback serves blocks, a route
/// that fails is not tried first for every block.
pub struct FailoverStore {
    stores: Vec<Arc<dyn Store>>,
    preferred: AtomicUsize,
}

impl FailoverStore {
    /// Stores in order of preference (at least one).
    pub fn new(stores: Vec<Arc<dyn Store>>) -> FailoverStore {
        assert!(!stores.is_empty(), "a failover store needs a store");
        FailoverStore {
            stores,
            preferred: AtomicUsize::new(0),
        }
    }

    /// The index of the store tried first.
    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }
}

impl Store for FailoverStore {
    fn get<'a>(&'a self, id: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            let n = self.stores.len();
            let first = self.preferred.load(Ordering::Relaxed) % n;
            let mut errors = Vec::new();
            for k in 0..n {
                let i = (first + k) % n;
                match self.stores[i].get(id).await {
                    Ok(data) => {
                        if i != first
                            && self
                                .preferred
                                .compare_exchange(first, i, Ordering::Relaxed, Ordering::Relaxed)
                                .is_ok()
                        {
                            tracing::warn!(
                                store = %self.stores[i].url(),
                                failed = %errors.join("; "),
                                "blocks now come from this store"
                            );
                        }
                        return Ok(data);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(StoreError::AllFailed {
                id: hex::encode(id),
                errors: errors.join("; "),
            })
        })
    }

    fn set<'a>(&'a self, _id: &'a [u8], _data: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { Err(StoreError::ReadOnly(self.url())) })
    }

    fn url(&self) -> String {
        self.stores
            .iter()
            .map(|s| s.url())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// An in-memory store counting its gets.
    struct Mem {
        name: &'static str,
        blocks: HashMap<Vec<u8>, Vec<u8>>,
        gets: Mutex<usize>,
    }

    impl Mem {
        fn new(name: &'static str, blocks: &[(&[u8], &[u8])]) -> Arc<Mem> {
            Arc::new(Mem {
                name,
                blocks: blocks
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect(),
                gets: Mutex::new(0),
            })
        }
        fn gets(&self) -> usize {
            *self.gets.lock().unwrap()
        }
    }

    impl Store for Mem {
        fn get<'a>(&'a self, id: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, StoreError>> {
            Box::pin(async move {
                *self.gets.lock().unwrap() += 1;
                self.blocks
                    .get(id)
                    .cloned()
                    .ok_or_else(|| StoreError::NotFound {
                        id: hex::encode(id),
                        store: self.name.into(),
                    })
            })
        }
        fn set<'a>(&'a self, _: &'a [u8], _: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn url(&self) -> String {
            self.name.into()
        }
    }

    #[tokio::test]
    async fn falls_back_and_prefers_what_answered() {
        let dead = Mem::new("dead", &[]);
        let hub = Mem::new("hub", &[(b"a", b"A"), (b"b", b"B")]);
        let s = FailoverStore::new(vec![dead.clone(), hub.clone()]);
        assert_eq!(s.get(b"a").await.unwrap(), b"A");
        assert_eq!((dead.gets(), hub.gets(), s.preferred()), (1, 1, 1));
        // the fallback is asked first now
        assert_eq!(s.get(b"b").await.unwrap(), b"B");
        assert_eq!((dead.gets(), hub.gets()), (1, 2));
        // a block nobody has: every store is asked, the error names them all
        let e = s.get(b"zz").await.unwrap_err().to_string();
        assert!(e.contains("dead") && e.contains("hub"), "{e}");
        assert!(s.set(b"a", b"x").await.is_err());
        assert_eq!(s.url(), "dead | hub");
    }

    #[tokio::test]
    async fn the_first_store_stays_first_while_it_answers() {
        let a = Mem::new("a", &[(b"x", b"1")]);
        let b = Mem::new("b", &[(b"x", b"2")]);
        let s = FailoverStore::new(vec![a.clone(), b.clone()]);
        for _ in 0..3 {
            assert_eq!(s.get(b"x").await.unwrap(), b"1");
        }
        assert_eq!((a.gets(), b.gets()), (3, 0));
    }
}
