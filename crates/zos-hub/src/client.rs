//! The hub client nodes use: listings, tags, taglinks, light info, downloads with an md5 check, and the
//! taglink → tag → packages resolution (§5.3 of the reference digest). Tolerates `size` as a string or a
//! number and missing `md5`/`target`/`linktime`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use md5::{Digest, Md5};
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use crate::types::{Entry, EntryType, LinkRequest, Repository};

/// Errors of the hub client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Transport failure.
    #[error("{url}")]
    Http {
        /// URL requested
        url: String,
        /// the error
        #[source]
        source: reqwest::Error,
    },
    /// The hub answered with an error status.
    #[error("{url}: hub answered {status}: {message}")]
    Status {
        /// URL requested
        url: String,
        /// HTTP status
        status: u16,
        /// the hub's message
        message: String,
    },
    /// The hub answered something we cannot use.
    #[error("{url}: {reason}")]
    Protocol {
        /// URL requested
        url: String,
        /// what is wrong
        reason: String,
    },
    /// The download does not match the hub's md5.
    #[error("{url}: md5 mismatch: the hub says {expected}, the download is {actual}")]
    Md5Mismatch {
        /// URL downloaded
        url: String,
        /// from the hub
        expected: String,
        /// computed
        actual: String,
    },
    /// Local file I/O.
    #[error("{path}: {context}")]
    Io {
        /// path concerned
        path: PathBuf,
        /// what we were doing
        context: &'static str,
        /// the error
        #[source]
        source: std::io::Error,
    },
    /// None of the candidate hubs answered.
    #[error("no hub answered: {0}")]
    NoHub(String),
}

/// One package of a tag: the entry name and where its flist lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// The name in the tag (`zos.flist`).
    pub name: String,
    /// Repository of the flist.
    pub repo: String,
    /// File name of the flist.
    pub file: String,
}

/// A 0-hub client.
#[derive(Clone, Debug)]
pub struct HubClient {
    base: String,
    http: reqwest::Client,
}

impl HubClient {
    /// A client for the hub at `base` (`https://hub.grid.tf`, `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<HubClient, ClientError> {
        zos_flist::store::http::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|source| ClientError::Http {
                url: base.into(),
                source,
            })?;
        Ok(HubClient {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The first of `candidates` whose `GET /api/flist` answers 2xx within `timeout`.
    pub async fn probe(candidates: &[String], timeout: Duration) -> Result<HubClient, ClientError> {
        let mut errors = Vec::new();
        for c in candidates {
            let client = HubClient::new(c)?;
            let url = client.url("/api/flist");
            match tokio::time::timeout(timeout, client.http.get(&url).send()).await {
                Ok(Ok(r)) if r.status().is_success() => return Ok(client),
                Ok(Ok(r)) => errors.push(format!("{url}: {}", r.status())),
                Ok(Err(e)) => errors.push(format!("{url}: {e}")),
                Err(_) => errors.push(format!("{url}: timed out")),
            }
        }
        Err(ClientError::NoHub(errors.join("; ")))
    }

    /// The hub's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET url`: the body of a successful answer.
    async fn get_body(&self, url: &str) -> Result<Vec<u8>, ClientError> {
        let http = |source| ClientError::Http {
            url: url.to_string(),
            source,
        };
        let r = self.http.get(url).send().await.map_err(http)?;
        let r = check(r, url).await?;
        r.bytes().await.map(|b| b.to_vec()).map_err(http)
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let body = self.get_body(&url).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            url,
            reason: format!("bad JSON: {e}"),
        })
    }

    /// `GET /api/repositories`.
    pub async fn repositories(&self) -> Result<Vec<Repository>, ClientError> {
        self.get_json("/api/repositories").await
    }

    /// `GET /api/flist/{repo}`.
    pub async fn list(&self, repo: &str) -> Result<Vec<Entry>, ClientError> {
        self.get_json(&format!("/api/flist/{}", seg(repo))).await
    }

    /// `GET /api/flist/{repo}/tags/{tag}`.
    pub async fn tag(&self, repo: &str, tag: &str) -> Result<Vec<Entry>, ClientError> {
        self.get_json(&format!("/api/flist/{}/tags/{}", seg(repo), seg(tag)))
            .await
    }

    /// `GET /api/flist/{repo}/{name}/taglink`: the cleaned target (`repo/tags/tag`).
    pub async fn taglink(&self, repo: &str, name: &str) -> Result<String, ClientError> {
        #[derive(serde::Deserialize)]
        struct T {
            target: String,
        }
        let t: T = self
            .get_json(&format!("/api/flist/{}/{}/taglink", seg(repo), seg(name)))
            .await?;
        Ok(t.target)
    }

    /// `GET /api/flist/{repo}/{name}/light`.
    pub async fn light(&self, repo: &str, name: &str) -> Result<Entry, ClientError> {
        self.get_json(&format!("/api/flist/{}/{}/light", seg(repo), seg(name)))
            .await
    }

    /// The hash the hub publishes for a flist URL: `GET <url>.md5`, which must be 32 hex digits.
    pub async fn flist_hash(&self, flist_url: &str) -> Result<String, ClientError> {
        let url = format!("{flist_url}.md5");
        let body = self.get_body(&url).await?;
        let text = String::from_utf8_lossy(&body);
        let h = text.trim().to_ascii_lowercase();
        if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ClientError::Protocol {
                url,
                reason: format!("{h:?} is not an md5 hash"),
            });
        }
        Ok(h)
    }

    /// Resolve the taglink `repo/name` to its tag's packages (taglink → `repo/tags/tag` → tag listing →
    /// each link's `(repo, file)`).
    pub async fn resolve_taglink(
        &self,
        repo: &str,
        name: &str,
    ) -> Result<Vec<Package>, ClientError> {
        let entries = self.list(repo).await?;
        let url = self.url(&format!("/api/flist/{repo}"));
        let link = entries
            .iter()
            .find(|e| e.name == name && e.kind == EntryType::Taglink)
            .ok_or_else(|| ClientError::Protocol {
                url: url.clone(),
                reason: format!("no taglink named {name}"),
            })?;
        let target = link.target.clone().unwrap_or_default();
        let parts: Vec<&str> = target.split('/').collect();
        let [trepo, "tags", tag] = parts.as_slice() else {
            return Err(ClientError::Protocol {
                url,
                reason: format!("taglink target {target:?} is not <repo>/tags/<tag>"),
            });
        };
        self.tag_packages(trepo, tag).await
    }

    /// The packages of `repo/tags/tag`.
    pub async fn tag_packages(&self, repo: &str, tag: &str) -> Result<Vec<Package>, ClientError> {
        let url = self.url(&format!("/api/flist/{repo}/tags/{tag}"));
        let mut out = Vec::new();
        for e in self.tag(repo, tag).await? {
            let target = e.target.clone().unwrap_or_default();
            let parts: Vec<&str> = target.split('/').filter(|s| !s.is_empty()).collect();
            let (r, f) = match parts.as_slice() {
                [f] => (repo.to_string(), f.to_string()),
                [r, f] => (r.to_string(), f.to_string()),
                _ => {
                    return Err(ClientError::Protocol {
                        url,
                        reason: format!("tag entry {} has target {target:?}", e.name),
                    });
                }
            };
            out.push(Package {
                name: e.name,
                repo: r,
                file: f,
            });
        }
        Ok(out)
    }

    /// URL of a flist download.
    pub fn flist_url(&self, repo: &str, name: &str) -> String {
        self.url(&format!("/{}/{}", seg(repo), seg(name)))
    }

    /// Download `repo/name` to `dest` (through a temporary file renamed into place), checking the md5 the
    /// hub's light info gives when it gives one. Returns the md5 of what was downloaded.
    pub async fn download(
        &self,
        repo: &str,
        name: &str,
        dest: &Path,
    ) -> Result<String, ClientError> {
        let info = self.light(repo, name).await?;
        self.download_url(&self.flist_url(repo, name), dest, info.md5.as_deref())
            .await
    }

    /// Download any URL to `dest`, checking `expected_md5` when given. Returns the md5.
    pub async fn download_url(
        &self,
        url: &str,
        dest: &Path,
        expected_md5: Option<&str>,
    ) -> Result<String, ClientError> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.into(),
                source,
            })?;
        let r = check(r, url).await?;
        let mut name = dest.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".part.{}", std::process::id()));
        let tmp = dest.with_file_name(name);
        let io = |context: &'static str, p: &Path| {
            let path = p.to_path_buf();
            move |source| ClientError::Io {
                path,
                context,
                source,
            }
        };
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(io("creating", &tmp))?;
        let mut h = Md5::new();
        let mut stream = r.bytes_stream();
        let result: Result<(), ClientError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| ClientError::Http {
                    url: url.into(),
                    source,
                })?;
                h.update(&chunk);
                f.write_all(&chunk).await.map_err(io("writing", &tmp))?;
            }
            f.sync_all().await.map_err(io("syncing", &tmp))?;
            Ok(())
        }
        .await;
        drop(f);
        let md5 = hex::encode(h.finalize());
        let result =
            result.and_then(
                |_| match expected_md5.map(|e| e.trim().to_ascii_lowercase()) {
                    Some(e) if !e.is_empty() && e != md5 => Err(ClientError::Md5Mismatch {
                        url: url.into(),
                        expected: e,
                        actual: md5.clone(),
                    }),
                    _ => Ok(()),
                },
            );
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, dest)
            .await
            .map_err(io("moving into place", dest))?;
        Ok(md5)
    }

    async fn put(
        &self,
        path: &str,
        token: &str,
        body: reqwest::Body,
    ) -> Result<Entry, ClientError> {
        let url = self.url(path);
        let r = self
            .http
            .put(&url)
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        let r = check(r, &url).await?;
        let body = r.bytes().await.map_err(|source| ClientError::Http {
            url: url.clone(),
            source,
        })?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            url,
            reason: format!("bad JSON: {e}"),
        })
    }

    /// Publish a flist file as `repo/name` (hub started with a publish token).
    pub async fn publish(
        &self,
        repo: &str,
        name: &str,
        data: Vec<u8>,
        token: &str,
    ) -> Result<Entry, ClientError> {
        self.put(
            &format!("/api/flist/{}/{}", seg(repo), seg(name)),
            token,
            data.into(),
        )
        .await
    }

    /// Put `pkg` into tag `repo/tag`, linking to `target` = `repo2/file`.
    pub async fn tag_add(
        &self,
        repo: &str,
        tag: &str,
        pkg: &str,
        target: &str,
        token: &str,
    ) -> Result<Entry, ClientError> {
        let body = serde_json::to_vec(&LinkRequest {
            target: target.into(),
        })
        .expect("serializable");
        self.put(
            &format!("/api/flist/{}/tags/{}/{}", seg(repo), seg(tag), seg(pkg)),
            token,
            body.into(),
        )
        .await
    }

    /// Make `repo/link` a taglink to `target` = `repo2/tags/tag`.
    pub async fn taglink_set(
        &self,
        repo: &str,
        link: &str,
        target: &str,
        token: &str,
    ) -> Result<Entry, ClientError> {
        let body = serde_json::to_vec(&LinkRequest {
            target: target.into(),
        })
        .expect("serializable");
        self.put(
            &format!("/api/flist/{}/{}/taglink", seg(repo), seg(link)),
            token,
            body.into(),
        )
        .await
    }
}

/// Percent-encode one path segment (only what can occur in hub names and would break a URL).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b':'
            | b'@'
            | b'+' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn check(r: reqwest::Response, url: &str) -> Result<reqwest::Response, ClientError> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let message = serde_json::from_str::<crate::types::ErrorBody>(&text)
        .map(|b| b.message)
        .unwrap_or(text);
    Err(ClientError::Status {
        url: url.into(),
        status,
        message: message.trim().to_string(),
    })
}
