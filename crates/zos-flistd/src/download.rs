//! Getting a flist file: the md5 the hub publishes (`<url>.md5`), the download (capped, into a temp file,
//! md5 computed on the way), the check against the published md5 and of the file itself (a valid `.fl`),
//! and only then `<root>/flist/<md5>`. A flist already there with the published md5 is not downloaded again.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// Largest flist file accepted (the metadata of a whole OS is a few MiB).
pub const MAX_FLIST_SIZE: u64 = 512 << 20;
/// Prefix of downloads in progress in the flist directory (deleted at start).
pub const TEMP_PREFIX: &str = ".download-";

/// Downloads flists into a directory.
#[derive(Clone)]
pub struct Downloader {
    dir: PathBuf,
    http: reqwest::Client,
    hub: zos_hub::HubClient,
    max_size: u64,
}

impl Downloader {
    /// Flists go to `dir` (`<root>/flist`).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Downloader> {
        zos_flist::store::http::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| Error::Hub {
                url: String::new(),
                reason: format!("building the HTTP client: {e}"),
            })?;
        // The hub client is only used with full URLs (`flist_hash`); its base does not matter.
        let hub = zos_hub::HubClient::new("http://localhost").map_err(|e| Error::Hub {
            url: String::new(),
            reason: e.to_string(),
        })?;
        Ok(Downloader {
            dir: dir.into(),
            http,
            hub,
            max_size: MAX_FLIST_SIZE,
        })
    }

    /// Accept flists of at most `bytes`.
    pub fn with_max_size(mut self, bytes: u64) -> Downloader {
        self.max_size = bytes;
        self
    }

    /// The md5 the hub publishes for `url` (`<url>.md5`, 32 hex digits). `Ok(None)` when the server has no
    /// such file (404); other failures are errors.
    pub async fn published_hash(&self, url: &str) -> Result<Option<String>> {
        match self.hub.flist_hash(url).await {
            Ok(h) => Ok(Some(h)),
            Err(zos_hub::ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(hub_error(url, &e)),
        }
    }

    /// [`Self::published_hash`], with "none published" as a `not_found` error (the `FlistHash` call).
    pub async fn flist_hash(&self, url: &str) -> Result<String> {
        self.published_hash(url)
            .await?
            .ok_or_else(|| Error::HubNotFound {
                url: format!("{url}.md5"),
            })
    }

    /// The flist at `url` in the flist directory: `(md5, path)`. Downloaded unless a verified copy is there.
    pub async fn fetch(&self, url: &str) -> Result<(String, PathBuf)> {
        let published = self.published_hash(url).await?;
        if let Some(h) = &published {
            let path = self.dir.join(h);
            let p = path.clone();
            let have = tokio::task::spawn_blocking(move || md5_file(&p))
                .await
                .ok()
                .and_then(|r| r.ok());
            if have.as_deref() == Some(h.as_str()) {
                tracing::debug!(url, hash = %h, "flist already downloaded");
                return Ok((h.clone(), path));
            }
        }
        let tmp = self.dir.join(format!(
            "{TEMP_PREFIX}{}",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let result = self.download(url, &tmp, published.as_deref()).await;
        let hash = match result {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // A valid .fl, before it is stored under its hash.
        let t = tmp.clone();
        let check = tokio::task::spawn_blocking(move || zos_flist::Flist::open(&t).map(|_| ()))
            .await
            .map_err(|e| Error::io("checking", &tmp)(std::io::Error::other(e)))?;
        if let Err(source) = check {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::BadFlist {
                url: url.into(),
                source: Box::new(source),
            });
        }
        let path = self.dir.join(&hash);
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io("storing", &path)(e)
        })?;
        tracing::info!(url, hash = %hash, "flist downloaded");
        Ok((hash, path))
    }

    async fn download(&self, url: &str, tmp: &Path, expected: Option<&str>) -> Result<String> {
        let r = self.http.get(url).send().await.map_err(|e| Error::Hub {
            url: url.into(),
            reason: chain(&e),
        })?;
        match r.status().as_u16() {
            200..=299 => {}
            404 => return Err(Error::HubNotFound { url: url.into() }),
            s => {
                return Err(Error::Hub {
                    url: url.into(),
                    reason: format!("answered HTTP {s}"),
                });
            }
        }
        if r.content_length().is_some_and(|l| l > self.max_size) {
            return Err(Error::TooLarge {
                url: url.into(),
                limit: self.max_size,
            });
        }
        let mut f = tokio::fs::File::create(tmp)
            .await
            .map_err(Error::io("creating", tmp))?;
        let mut h = Md5::new();
        let mut len = 0u64;
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::Hub {
                url: url.into(),
                reason: format!("downloading: {}", chain(&e)),
            })?;
            len += chunk.len() as u64;
            if len > self.max_size {
                return Err(Error::TooLarge {
                    url: url.into(),
                    limit: self.max_size,
                });
            }
            h.update(&chunk);
            f.write_all(&chunk)
                .await
                .map_err(Error::io("writing", tmp))?;
        }
        f.sync_all().await.map_err(Error::io("syncing", tmp))?;
        let actual = hex::encode(h.finalize());
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(Error::HashMismatch {
                url: url.into(),
                expected: expected.into(),
                actual,
            });
        }
        Ok(actual)
    }

    /// Delete downloads a killed flistd left behind (call before serving).
    pub fn clean_temp(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The md5 of a file, hex.
pub fn md5_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut s = e.source();
    while let Some(x) = s {
        out.push_str(": ");
        out.push_str(&x.to_string());
        s = x.source();
    }
    out
}

fn hub_error(url: &str, e: &zos_hub::ClientError) -> Error {
    use zos_hub::ClientError as C;
    let reason = match e {
        C::Status {
            status, message, ..
        } => format!("answered HTTP {status}: {message}"),
        C::Http { source, .. } => chain(source),
        C::Protocol { reason, .. } => format!("the hub published no usable md5: {reason}"),
        other => chain(other),
    };
    Error::Hub {
        url: format!("{url}.md5"),
        reason,
    }
}
