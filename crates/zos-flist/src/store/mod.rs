//! Block stores behind one trait: a directory, an HTTP server, a 0-db (redis protocol), and a router that
//! spreads ids over several stores by their first byte.
//!
//! URLs (as in the `route` table of an flist):
//! - `dir:///abs/path` — `<path>/<hex[0:2]>/<hex>`, reads also the flat `<path>/<hex>`;
//! - `http://host[:port]/base`, `https://…` — read only: `GET <base>/<hex[0:2]>/<hex>`, on 404 `GET <base>/<hex>`;
//! - `zdb://[user[:password]@]host[:port]/[namespace]` (default port 9900) or `zdb:///path/to/socket` — `GET`/`SET`
//!   of the raw id bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod dir;
pub mod http;
mod zdb;

pub use dir::DirStore;
pub use http::HttpStore;
pub use zdb::ZdbStore;

/// A boxed future, so stores can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors of block stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The block is not in the store.
    #[error("block {id} not found in {store}")]
    NotFound {
        /// hex id
        id: String,
        /// store URL
        store: String,
    },
    /// The store URL cannot be used.
    #[error("store url {url:?}: {reason}")]
    BadUrl {
        /// the URL as given
        url: String,
        /// what is wrong
        reason: String,
    },
    /// Local I/O.
    #[error("{store}: {context}")]
    Io {
        /// store URL
        store: String,
        /// what we were doing
        context: String,
        /// the error
        #[source]
        source: std::io::Error,
    },
    /// HTTP failure.
    #[error("{store}: {context}")]
    Http {
        /// store URL
        store: String,
        /// what we were doing
        context: String,
        /// the error
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an unexpected status.
    #[error("{store}: GET {url} answered {status}")]
    Status {
        /// store URL
        store: String,
        /// the URL fetched
        url: String,
        /// the HTTP status
        status: u16,
    },
    /// Redis/0-db failure.
    #[error("{store}: {context}")]
    Zdb {
        /// store URL
        store: String,
        /// what we were doing
        context: String,
        /// the error
        #[source]
        source: redis::RedisError,
    },
    /// The store does not support writing.
    #[error("{0} is read-only")]
    ReadOnly(String),
    /// No route covers the id.
    #[error("no store route covers block {0}")]
    NoRoute(String),
    /// Every route covering the id failed.
    #[error("block {id}: every store failed: {errors}")]
    AllFailed {
        /// hex id
        id: String,
        /// the errors, joined
        errors: String,
    },
}

/// A content-addressed block store. Keys are raw id bytes (32 for `.fl` flists).
pub trait Store: Send + Sync {
    /// Fetch the bytes stored under `id`.
    fn get<'a>(&'a self, id: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, StoreError>>;
    /// Store `data` under `id` (a no-op when it is there already).
    fn set<'a>(&'a self, id: &'a [u8], data: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The store's URL (passwords removed).
    fn url(&self) -> String;
}

/// Open a store from its URL.
pub fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let bad = |reason: &str| StoreError::BadUrl {
        url: redact(url),
        reason: reason.into(),
    };
    let (scheme, _) = url
        .split_once("://")
        .ok_or_else(|| bad("missing scheme (dir://, http(s)://, zdb://)"))?;
    match scheme {
        "dir" => Ok(Arc::new(DirStore::from_url(url)?)),
        "http" | "https" => Ok(Arc::new(HttpStore::new(url)?)),
        "zdb" => Ok(Arc::new(ZdbStore::from_url(url)?)),
        other => Err(bad(&format!(
            "unsupported scheme {other:?} (dir://, http(s)://, zdb://)"
        ))),
    }
}

/// Remove a password from a URL (`zdb://user:secret@host` → `zdb://user@host`).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth_end, _) = rest
        .split_once('/')
        .map_or((rest.len(), ""), |(a, b)| (a.len(), b));
    let authority = &rest[..auth_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let sep = if user.is_empty() { "" } else { "@" };
            format!("{scheme}://{user}{sep}{host}{}", &rest[auth_end..])
        }
        None => url.to_string(),
    }
}

/// Parse a CLI store argument: `[<lo>-<hi>=]<url>` with two-digit hex bounds (`00-80=dir:///x`).
pub fn parse_range(arg: &str) -> Result<(u8, u8, String), StoreError> {
    let bad = |reason: String| StoreError::BadUrl {
        url: redact(arg),
        reason,
    };
    if let Some((range, url)) = arg.split_once('=')
        && !range.contains("://")
    {
        let (lo, hi) = range
            .split_once('-')
            .ok_or_else(|| bad("range must be <lo>-<hi>, e.g. 00-7f".into()))?;
        let hexbyte = |s: &str| {
            if s.len() != 2 {
                return Err(bad(format!("range bound {s:?} must be two hex digits")));
            }
            u8::from_str_radix(s, 16).map_err(|_| bad(format!("range bound {s:?} is not hex")))
        };
        let (lo, hi) = (hexbyte(lo)?, hexbyte(hi)?);
        if lo > hi {
            return Err(bad(format!("range {lo:02x}-{hi:02x} is empty")));
        }
        return Ok((lo, hi, url.to_string()));
    }
    Ok((0, 255, arg.to_string()))
}

/// Stores selected by the first byte of the id: get tries every covering route (starting at a rotating
/// position, first success wins); set writes to every covering route.
pub struct Router {
    routes: Vec<(u8, u8, Arc<dyn Store>)>,
    next: AtomicUsize,
}

impl Router {
    /// A router over `(start, end, store)` routes.
    pub fn new(routes: Vec<(u8, u8, Arc<dyn Store>)>) -> Router {
        Router {
            routes,
            next: AtomicUsize::new(rand::random::<u32>() as usize),
        }
    }

    /// A router from `(start, end, url)` triples (the `route` table of an flist or CLI arguments).
    pub fn from_urls<'a>(
        routes: impl IntoIterator<Item = (u8, u8, &'a str)>,
    ) -> Result<Router, StoreError> {
        let mut out = Vec::new();
        for (s, e, url) in routes {
            out.push((s, e, open(url)?));
        }
        Ok(Router::new(out))
    }

    /// The routes.
    pub fn routes(&self) -> impl Iterator<Item = (u8, u8, &Arc<dyn Store>)> {
        self.routes.iter().map(|(s, e, st)| (*s, *e, st))
    }

    fn covering(&self, id: &[u8]) -> Vec<&Arc<dyn Store>> {
        let b = id.first().copied().unwrap_or(0);
        self.routes
            .iter()
            .filter(|(s, e, _)| *s <= b && b <= *e)
            .map(|(_, _, st)| st)
            .collect()
    }
}

impl Store for Router {
    fn get<'a>(&'a self, id: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            let stores = self.covering(id);
            if stores.is_empty() {
                return Err(StoreError::NoRoute(hex::encode(id)));
            }
            let first = self.next.fetch_add(1, Ordering::Relaxed) % stores.len();
            let mut errors = Vec::new();
            for i in 0..stores.len() {
                match stores[(first + i) % stores.len()].get(id).await {
                    Ok(data) => return Ok(data),
                    Err(e) => errors.push(e),
                }
            }
            if errors.len() == 1 {
                return Err(errors.pop().expect("one error"));
            }
            let errors = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            Err(StoreError::AllFailed {
                id: hex::encode(id),
                errors,
            })
        })
    }

    fn set<'a>(&'a self, id: &'a [u8], data: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let stores = self.covering(id);
            if stores.is_empty() {
                return Err(StoreError::NoRoute(hex::encode(id)));
            }
            for s in stores {
                s.set(id, data).await?;
            }
            Ok(())
        })
    }

    fn url(&self) -> String {
        self.routes
            .iter()
            .map(|(s, e, st)| format!("{s:02x}-{e:02x}={}", st.url()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        assert_eq!(
            parse_range("dir:///x").unwrap(),
            (0, 255, "dir:///x".into())
        );
        assert_eq!(
            parse_range("00-7f=dir:///x").unwrap(),
            (0, 0x7f, "dir:///x".into())
        );
        assert_eq!(
            parse_range("80-ff=http://h/a?x=1").unwrap(),
            (0x80, 0xff, "http://h/a?x=1".into())
        );
        assert!(parse_range("0-7f=dir:///x").is_err());
        assert!(parse_range("7f-00=dir:///x").is_err());
        assert!(parse_range("zz-ff=dir:///x").is_err());
        // a query string with '=' is not a range
        assert_eq!(parse_range("http://h/a?x=1").unwrap().2, "http://h/a?x=1");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("zdb://u:secret@host:9900/ns"),
            "zdb://u@host:9900/ns"
        );
        assert_eq!(redact("zdb://:secret@host/ns"), "zdb://host/ns");
        assert_eq!(redact("zdb://host:9900/ns"), "zdb://host:9900/ns");
    }

    #[test]
    fn bad_urls_are_named() {
        let e = open("ftp://x").err().unwrap().to_string();
        assert!(e.contains("ftp"), "{e}");
        assert!(open("no-scheme").is_err());
        assert!(open("dir://relative/path").is_err());
    }

    #[tokio::test]
    async fn router_replicates_and_shards() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ua = format!("dir://{}", a.path().display());
        let ub = format!("dir://{}", b.path().display());
        let r = Router::from_urls([(0u8, 0x7fu8, ua.as_str()), (0, 255, ub.as_str())]).unwrap();
        let low = [0x10u8; 32];
        let high = [0xf0u8; 32];
        r.set(&low, b"low").await.unwrap();
        r.set(&high, b"high").await.unwrap();
        // low went to both, high only to b
        let sa = DirStore::new(a.path());
        let sb = DirStore::new(b.path());
        assert_eq!(sa.get(&low).await.unwrap(), b"low");
        assert_eq!(sb.get(&low).await.unwrap(), b"low");
        assert!(matches!(
            sa.get(&high).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(r.get(&high).await.unwrap(), b"high");
        // with a missing in one replica, get still succeeds through the other
        std::fs::remove_dir_all(a.path().join("10")).unwrap();
        for _ in 0..4 {
            assert_eq!(r.get(&low).await.unwrap(), b"low");
        }
        let only_low = Router::from_urls([(0u8, 0x7fu8, ua.as_str())]).unwrap();
        assert!(matches!(
            only_low.get(&high).await,
            Err(StoreError::NoRoute(_))
        ));
    }
}
