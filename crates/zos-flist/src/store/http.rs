//! `http(s)://host/base`: read-only; `GET <base>/<hex[0:2]>/<hex>`, on 404 `GET <base>/<hex>`.

use std::time::Duration;

use super::{BoxFuture, Store, StoreError};

/// Largest stored block accepted from a server (a 512 KiB chunk that snappy could not compress, plus the
/// tag, is just over 612 KiB).
pub const MAX_STORED_BLOCK: usize = 1024 * 1024;

/// A block store over HTTP.
#[derive(Clone, Debug)]
pub struct HttpStore {
    base: String,
    client: reqwest::Client,
}

/// Install the ring crypto provider for rustls unless one is installed already.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl HttpStore {
    /// A store at `url` (`http(s)://host[:port]/base`).
    pub fn new(url: &str) -> Result<HttpStore, StoreError> {
        let bad = |reason: String| StoreError::BadUrl {
            url: url.into(),
            reason,
        };
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or_default();
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("no host".into()));
        }
        ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| bad(format!("building the HTTP client: {e}")))?;
        Ok(HttpStore {
            base: url.trim_end_matches('/').to_string(),
            client,
        })
    }

    async fn fetch(&self, url: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let http = |context: String| {
            let store = self.base.clone();
            move |source| StoreError::Http {
                store,
                context,
                source,
            }
        };
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(http(format!("GET {url}")))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => {
                return Err(StoreError::Status {
                    store: self.base.clone(),
                    url: url.into(),
                    status,
                });
            }
        }
        let mut body = Vec::with_capacity(
            resp.content_length()
                .unwrap_or(0)
                .min(MAX_STORED_BLOCK as u64) as usize,
        );
        while let Some(chunk) = resp.chunk().await.map_err(http(format!("reading {url}")))? {
            if body.len() + chunk.len() > MAX_STORED_BLOCK {
                return Err(StoreError::Io {
                    store: self.base.clone(),
                    context: format!("GET {url}"),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("body larger than {MAX_STORED_BLOCK} bytes: not a block"),
                    ),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

impl Store for HttpStore {
    fn get<'a>(&'a self, id: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            let h = hex::encode(id);
            if let Some(d) = self
                .fetch(&format!("{}/{}/{}", self.base, &h[..2], h))
                .await?
            {
                return Ok(d);
            }
            if let Some(d) = self.fetch(&format!("{}/{}", self.base, h)).await? {
                return Ok(d);
            }
            Err(StoreError::NotFound {
                id: h,
                store: self.base.clone(),
            })
        })
    }

    fn set<'a>(&'a self, _id: &'a [u8], _data: &'a [u8]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { Err(StoreError::ReadOnly(self.base.clone())) })
    }

    fn url(&self) -> String {
        self.base.clone()
    }
}
