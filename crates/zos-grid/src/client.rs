//! An async registrar client. It never holds a private key: every signature comes from a [`Signer`].
//!
//! Authenticated methods take the twin id to sign as; the caller (registrar_light) keeps its ids and refreshes
//! them on [`ClientError::NotFound`]/[`ClientError::Unauthorized`]. Errors say whether a retry can help
//! ([`ClientError::is_retryable`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::auth::{self, RequestBinding};
use crate::clock::{Clock, SystemClock};
use crate::encoding::b64_encode;
use crate::models::*;
use crate::signer::{SignError, Signer};

/// Which `X-Auth` header the client sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// `ts:twin` only (the real Grid registrar).
    V1,
    /// The request-bound v2 header (our registrar server).
    V2,
    /// v2 first; if the server answers `Invalid challenge format`, v1 from then on.
    #[default]
    Auto,
}

/// Why a registrar call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid registrar url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{method} {url}: no answer")]
    Network {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}: not found: {message}")]
    NotFound {
        method: Method,
        url: String,
        message: String,
    },
    #[error("{method} {url}: conflict: {message}")]
    Conflict {
        method: Method,
        url: String,
        message: String,
    },
    #[error("{method} {url}: unauthorized: {message}")]
    Unauthorized {
        method: Method,
        url: String,
        message: String,
    },
    #[error("{method} {url}: rejected ({status}): {message}")]
    BadRequest {
        method: Method,
        url: String,
        status: StatusCode,
        message: String,
    },
    #[error("{method} {url}: server error ({status}): {message}")]
    Server {
        method: Method,
        url: String,
        status: StatusCode,
        message: String,
    },
    #[error("{method} {url}: unreadable {what} in the answer")]
    Decode {
        method: Method,
        url: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("zos version from the registrar")]
    ZosVersion(#[source] ZosVersionError),
    #[error(transparent)]
    Sign(#[from] SignError),
}

impl ClientError {
    /// Whether trying again later can help (no answer, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Network { .. } | ClientError::Server { .. } | ClientError::Sign(_) => true,
            ClientError::BadRequest { status, .. } => *status == StatusCode::TOO_MANY_REQUESTS,
            _ => false,
        }
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound { .. })
    }

    /// 409.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClientError::Conflict { .. })
    }

    /// 401/403.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Unauthorized { .. })
    }
}

/// Filters of `GET /farms`.
#[derive(Clone, Debug, Default)]
pub struct FarmFilter {
    pub farm_name: Option<String>,
    pub farm_id: Option<u64>,
    pub twin_id: Option<u64>,
    pub page: Option<u64>,
    pub size: Option<u64>,
}

/// Filters of `GET /nodes`.
#[derive(Clone, Debug, Default)]
pub struct NodeFilter {
    pub node_id: Option<u64>,
    pub farm_id: Option<u64>,
    pub twin_id: Option<u64>,
    pub online: Option<bool>,
    /// Minutes (the `last_seen` query parameter).
    pub last_seen: Option<u64>,
    pub page: Option<u64>,
    pub size: Option<u64>,
}

const V2_UNKNOWN: u8 = 0;
const V2_OK: u8 = 1;
const V1_ONLY: u8 = 2;

/// The registrar client.
pub struct RegistrarClient {
    base: Url,
    http: reqwest::Client,
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
    mode: AuthMode,
    v2_state: AtomicU8,
    /// Seconds to add to the local clock, learned from the server's `server_time` hints.
    offset: AtomicI64,
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    url: String,
    method: Method,
}

impl RegistrarClient {
    /// A client for `registrar_url` (`/api/v1` is appended unless the url already ends with `/api/v1` or `/v1`).
    pub fn new(
        registrar_url: &str,
        signer: Arc<dyn Signer>,
    ) -> Result<RegistrarClient, ClientError> {
        RegistrarClient::with_options(registrar_url, signer, AuthMode::Auto, Arc::new(SystemClock))
    }

    /// A client with an explicit auth mode and clock.
    pub fn with_options(
        registrar_url: &str,
        signer: Arc<dyn Signer>,
        mode: AuthMode,
        clock: Arc<dyn Clock>,
    ) -> Result<RegistrarClient, ClientError> {
        let trimmed = registrar_url.trim().trim_end_matches('/');
        let full = if trimmed.ends_with("/api/v1") || trimmed.ends_with("/v1") {
            trimmed.to_string()
        } else {
            format!("{trimmed}/api/v1")
        };
        let base = Url::parse(&full).map_err(|e| ClientError::Url {
            url: registrar_url.into(),
            reason: e.to_string(),
        })?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(ClientError::Url {
                url: registrar_url.into(),
                reason: "scheme must be http or https".into(),
            });
        }
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Url {
                url: registrar_url.into(),
                reason: format!("building the HTTP client: {e}"),
            })?;
        Ok(RegistrarClient {
            base,
            http,
            signer,
            clock,
            mode,
            v2_state: AtomicU8::new(V2_UNKNOWN),
            offset: AtomicI64::new(0),
        })
    }

    /// The API base url (ending in `/api/v1` or `/v1`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The signer's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    /// The clock offset (seconds) learned from the server.
    pub fn clock_offset(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    fn now(&self) -> i64 {
        self.clock.now_unix() + self.offset.load(Ordering::Relaxed)
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        url
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
        twin: Option<u64>,
    ) -> Result<Answer, ClientError> {
        let url = self.url(path, query);
        let mut v1_fallback_done = false;
        let mut time_fixed = false;
        loop {
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(b) = body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.to_vec());
            }
            let mut used_v2 = false;
            if let Some(twin) = twin {
                used_v2 = self.use_v2();
                let ts = self.now();
                let challenge = if used_v2 {
                    let target = match url.query() {
                        Some(q) => format!("{path}?{q}"),
                        None => path.to_string(),
                    };
                    auth::v2_challenge(
                        ts,
                        twin,
                        &RequestBinding::new(method.as_str(), &target, body.unwrap_or(b"")),
                    )
                } else {
                    auth::v1_challenge(ts, twin)
                };
                let sig = self.signer.sign(challenge.as_bytes()).await?;
                req = req.header(auth::HEADER, auth::header_value(&challenge, &sig));
            }
            tracing::debug!(%method, %url, "registrar request");
            let resp = req.send().await.map_err(|source| ClientError::Network {
                method: method.clone(),
                url: url.to_string(),
                source,
            })?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|source| ClientError::Network {
                method: method.clone(),
                url: url.to_string(),
                source,
            })?;
            let answer = Answer {
                status,
                body: bytes.to_vec(),
                url: url.to_string(),
                method: method.clone(),
            };
            if twin.is_some() && !status.is_success() {
                let err = error_body(&answer.body);
                if used_v2
                    && !v1_fallback_done
                    && status == StatusCode::BAD_REQUEST
                    && err.error.starts_with("Invalid challenge format")
                    && self.mode == AuthMode::Auto
                {
                    tracing::info!(%url, "registrar does not take v2 X-Auth headers; using v1");
                    self.v2_state.store(V1_ONLY, Ordering::Relaxed);
                    v1_fallback_done = true;
                    continue;
                }
                if status == StatusCode::UNAUTHORIZED
                    && !time_fixed
                    && let Some(server) = err.server_time
                {
                    let offset = server - self.clock.now_unix();
                    tracing::warn!(
                        offset,
                        "registrar rejected our clock; signing with the server's time"
                    );
                    self.offset.store(offset, Ordering::Relaxed);
                    time_fixed = true;
                    continue;
                }
            } else if used_v2 && status.is_success() {
                self.v2_state.store(V2_OK, Ordering::Relaxed);
            }
            return Ok(answer);
        }
    }

    fn use_v2(&self) -> bool {
        match self.mode {
            AuthMode::V1 => false,
            AuthMode::V2 => true,
            AuthMode::Auto => self.v2_state.load(Ordering::Relaxed) != V1_ONLY,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
        twin: Option<u64>,
        expect: StatusCode,
        what: &'static str,
    ) -> Result<T, ClientError> {
        let a = self.raw(method, path, query, body, twin).await?;
        let a = check(a, expect)?;
        serde_json::from_slice(&a.body).map_err(|source| ClientError::Decode {
            method: a.method,
            url: a.url,
            what,
            source,
        })
    }

    async fn call_empty(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        twin: Option<u64>,
        expect: StatusCode,
    ) -> Result<(), ClientError> {
        let a = self.raw(method, path, &[], body, twin).await?;
        check(a, expect).map(|_| ())
    }

    // ----- accounts -----

    /// `GET /accounts?twin_id=N`.
    pub async fn get_account(&self, twin_id: u64) -> Result<Account, ClientError> {
        let q = [("twin_id", twin_id.to_string())];
        self.call(
            Method::GET,
            "/accounts",
            &q,
            None,
            None,
            StatusCode::OK,
            "account",
        )
        .await
    }

    /// `GET /accounts?public_key=B64`.
    pub async fn get_account_by_public_key(
        &self,
        public_key: &[u8; 32],
    ) -> Result<Account, ClientError> {
        let q = [("public_key", b64_encode(public_key))];
        self.call(
            Method::GET,
            "/accounts",
            &q,
            None,
            None,
            StatusCode::OK,
            "account",
        )
        .await
    }

    /// `POST /accounts` for the signer's key. When the server rejects our clock and tells its own, signs again
    /// once with the server's time.
    pub async fn create_account(
        &self,
        relays: &[String],
        rmb_enc_key: &str,
    ) -> Result<Account, ClientError> {
        let public_key = b64_encode(&self.signer.public_key());
        let mut retried = false;
        loop {
            let timestamp = self.now();
            let sig = self
                .signer
                .sign(auth::account_message(timestamp, &public_key).as_bytes())
                .await?;
            let req = CreateAccountRequest {
                public_key: public_key.clone(),
                signature: b64_encode(&sig),
                timestamp,
                relays: relays.to_vec(),
                rmb_enc_key: rmb_enc_key.to_string(),
            };
            let body = serde_json::to_vec(&req).expect("serializing an account request");
            let a = self
                .raw(Method::POST, "/accounts", &[], Some(&body), None)
                .await?;
            if a.status == StatusCode::BAD_REQUEST
                && !retried
                && let Some(server) = error_body(&a.body).server_time
            {
                self.offset
                    .store(server - self.clock.now_unix(), Ordering::Relaxed);
                retried = true;
                continue;
            }
            let a = check(a, StatusCode::CREATED)?;
            return serde_json::from_slice(&a.body).map_err(|source| ClientError::Decode {
                method: a.method,
                url: a.url,
                what: "account",
                source,
            });
        }
    }

    /// The signer's account: found by public key, else created (a concurrent creation is tolerated).
    pub async fn ensure_account(
        &self,
        relays: &[String],
        rmb_enc_key: &str,
    ) -> Result<Account, ClientError> {
        let pk = self.signer.public_key();
        match self.get_account_by_public_key(&pk).await {
            Ok(a) => return Ok(a),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        match self.create_account(relays, rmb_enc_key).await {
            Ok(a) => Ok(a),
            Err(e) if e.is_conflict() => self.get_account_by_public_key(&pk).await,
            Err(e) => Err(e),
        }
    }

    /// `PATCH /accounts/:twin_id` (only the fields set are changed by our server).
    pub async fn update_account(
        &self,
        twin_id: u64,
        update: &UpdateAccountRequest,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(update).expect("serializing an account update");
        self.call_empty(
            Method::PATCH,
            &format!("/accounts/{twin_id}"),
            Some(&body),
            Some(twin_id),
            StatusCode::OK,
        )
        .await
    }

    // ----- farms -----

    /// `GET /farms/:id`.
    pub async fn get_farm(&self, farm_id: u64) -> Result<Farm, ClientError> {
        self.call(
            Method::GET,
            &format!("/farms/{farm_id}"),
            &[],
            None,
            None,
            StatusCode::OK,
            "farm",
        )
        .await
    }

    /// `GET /farms` with filters.
    pub async fn list_farms(&self, f: &FarmFilter) -> Result<Vec<Farm>, ClientError> {
        let mut q = Vec::new();
        push(&mut q, "farm_name", f.farm_name.clone());
        push(&mut q, "farm_id", f.farm_id);
        push(&mut q, "twin_id", f.twin_id);
        push(&mut q, "page", f.page);
        push(&mut q, "size", f.size);
        let farms: Option<Vec<Farm>> = self
            .call(
                Method::GET,
                "/farms",
                &q,
                None,
                None,
                StatusCode::OK,
                "farm list",
            )
            .await?;
        Ok(farms.unwrap_or_default())
    }

    /// `POST /farms` signed as `req.twin_id`; returns the farm id.
    pub async fn create_farm(&self, req: &CreateFarmRequest) -> Result<u64, ClientError> {
        let body = serde_json::to_vec(req).expect("serializing a farm");
        let r: FarmCreated = self
            .call(
                Method::POST,
                "/farms",
                &[],
                Some(&body),
                Some(req.twin_id),
                StatusCode::CREATED,
                "farm id",
            )
            .await?;
        Ok(r.farm_id)
    }

    /// `PATCH /farms/:id` signed as `twin_id` (the farmer).
    pub async fn update_farm(
        &self,
        twin_id: u64,
        farm_id: u64,
        update: &UpdateFarmRequest,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(update).expect("serializing a farm update");
        self.call_empty(
            Method::PATCH,
            &format!("/farms/{farm_id}"),
            Some(&body),
            Some(twin_id),
            StatusCode::OK,
        )
        .await
    }

    // ----- nodes -----

    /// `GET /nodes/:id`.
    pub async fn get_node(&self, node_id: u64) -> Result<Node, ClientError> {
        self.call(
            Method::GET,
            &format!("/nodes/{node_id}"),
            &[],
            None,
            None,
            StatusCode::OK,
            "node",
        )
        .await
    }

    /// `GET /nodes` with filters.
    pub async fn list_nodes(&self, f: &NodeFilter) -> Result<Vec<Node>, ClientError> {
        let mut q = Vec::new();
        push(&mut q, "node_id", f.node_id);
        push(&mut q, "farm_id", f.farm_id);
        push(&mut q, "twin_id", f.twin_id);
        push(&mut q, "online", f.online);
        push(&mut q, "last_seen", f.last_seen);
        push(&mut q, "page", f.page);
        push(&mut q, "size", f.size);
        let nodes: Option<Vec<Node>> = self
            .call(
                Method::GET,
                "/nodes",
                &q,
                None,
                None,
                StatusCode::OK,
                "node list",
            )
            .await?;
        Ok(nodes.unwrap_or_default())
    }

    /// The node of a twin, if it has one.
    pub async fn get_node_by_twin(&self, twin_id: u64) -> Result<Option<Node>, ClientError> {
        let f = NodeFilter {
            twin_id: Some(twin_id),
            page: Some(1),
            size: Some(50),
            ..Default::default()
        };
        match self.list_nodes(&f).await {
            Ok(nodes) => Ok(nodes.into_iter().find(|n| n.twin_id == twin_id)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /nodes` signed as `reg.twin_id`; returns the node id. A 400 that complains about `ips` (a server
    /// from before list-valued ips) is retried once with the legacy `/`-joined form.
    pub async fn register_node(&self, reg: &NodeRegistration) -> Result<u64, ClientError> {
        let body = serde_json::to_vec(reg).expect("serializing a node registration");
        let a = self
            .raw(Method::POST, "/nodes", &[], Some(&body), Some(reg.twin_id))
            .await?;
        let a = if wants_legacy_ips(&a) {
            let legacy =
                legacy_ips_body(serde_json::to_value(reg).expect("node registration as json"));
            self.raw(
                Method::POST,
                "/nodes",
                &[],
                Some(&legacy),
                Some(reg.twin_id),
            )
            .await?
        } else {
            a
        };
        let a = check(a, StatusCode::CREATED)?;
        let r: NodeCreated =
            serde_json::from_slice(&a.body).map_err(|source| ClientError::Decode {
                method: a.method,
                url: a.url,
                what: "node id",
                source,
            })?;
        Ok(r.node_id)
    }

    /// `PATCH /nodes/:id` signed as `twin_id` with only the fields set (with the same legacy fallback).
    pub async fn update_node(
        &self,
        twin_id: u64,
        node_id: u64,
        update: &NodeUpdate,
    ) -> Result<(), ClientError> {
        let path = format!("/nodes/{node_id}");
        let body = serde_json::to_vec(update).expect("serializing a node update");
        let a = self
            .raw(Method::PATCH, &path, &[], Some(&body), Some(twin_id))
            .await?;
        let a = if wants_legacy_ips(&a) && update.interfaces.is_some() {
            let legacy =
                legacy_ips_body(serde_json::to_value(update).expect("node update as json"));
            self.raw(Method::PATCH, &path, &[], Some(&legacy), Some(twin_id))
                .await?
        } else {
            a
        };
        check(a, StatusCode::OK).map(|_| ())
    }

    /// Bring the registrar's record of a node to `info`: GET it, compare only the fields the node owns, PATCH
    /// just the differing ones. Returns whether a PATCH was sent.
    pub async fn sync_node(
        &self,
        twin_id: u64,
        node_id: u64,
        info: &NodeInfo,
    ) -> Result<bool, ClientError> {
        let current = self.get_node(node_id).await?;
        match info.diff(&current.info()) {
            None => Ok(false),
            Some(update) => {
                self.update_node(twin_id, node_id, &update).await?;
                Ok(true)
            }
        }
    }

    /// `POST /nodes/:id/uptime` signed as `twin_id`: `uptime` seconds since boot measured at `timestamp`.
    pub async fn report_uptime(
        &self,
        twin_id: u64,
        node_id: u64,
        uptime: u64,
        timestamp: i64,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(&UptimeReportRequest { uptime, timestamp })
            .expect("serializing an uptime report");
        self.call_empty(
            Method::POST,
            &format!("/nodes/{node_id}/uptime"),
            Some(&body),
            Some(twin_id),
            StatusCode::CREATED,
        )
        .await
    }

    // ----- zos version -----

    /// `GET /zos/version`, decoded (legacy single-quoted payloads included).
    pub async fn get_zos_version(&self) -> Result<ZosVersion, ClientError> {
        let s: String = self
            .call(
                Method::GET,
                "/zos/version",
                &[],
                None,
                None,
                StatusCode::OK,
                "zos version",
            )
            .await?;
        ZosVersion::decode(&s).map_err(ClientError::ZosVersion)
    }

    /// `PUT /zos/version` signed as `admin_twin`.
    pub async fn set_zos_version(
        &self,
        admin_twin: u64,
        v: &ZosVersion,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(&ZosVersionRequest {
            version: v.encode(),
        })
        .expect("serializing a zos version");
        self.call_empty(
            Method::PUT,
            "/zos/version",
            Some(&body),
            Some(admin_twin),
            StatusCode::OK,
        )
        .await
    }
}

/// Install rustls' ring provider as the process default (reqwest needs one even for plain http clients).
/// Idempotent; a provider installed earlier by someone else is kept.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn push<T: ToString>(q: &mut Vec<(&'static str, String)>, key: &'static str, v: Option<T>) {
    if let Some(v) = v {
        q.push((key, v.to_string()));
    }
}

fn error_body(body: &[u8]) -> ErrorBody {
    serde_json::from_slice(body).unwrap_or_else(|_| ErrorBody {
        error: String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(500)
            .collect(),
        server_time: None,
    })
}

fn check(a: Answer, expect: StatusCode) -> Result<Answer, ClientError> {
    // Success codes are exact (as the Go client), except that a 200 for an expected 201 is not worth failing over.
    if a.status == expect || (expect == StatusCode::CREATED && a.status == StatusCode::OK) {
        return Ok(a);
    }
    let message = error_body(&a.body).error;
    let (method, url, status) = (a.method, a.url, a.status);
    Err(match status {
        StatusCode::NOT_FOUND => ClientError::NotFound {
            method,
            url,
            message,
        },
        StatusCode::CONFLICT => ClientError::Conflict {
            method,
            url,
            message,
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ClientError::Unauthorized {
            method,
            url,
            message,
        },
        s if s.is_server_error() => ClientError::Server {
            method,
            url,
            status,
            message,
        },
        s if s.is_success() => ClientError::Server {
            method,
            url,
            status,
            message: format!("expected status {expect}, got {s}"),
        },
        _ => ClientError::BadRequest {
            method,
            url,
            status,
            message,
        },
    })
}

fn wants_legacy_ips(a: &Answer) -> bool {
    a.status == StatusCode::BAD_REQUEST && error_body(&a.body).error.contains("ips")
}

fn legacy_ips_body(mut v: serde_json::Value) -> Vec<u8> {
    if let Some(list) = v.get_mut("interfaces").and_then(|i| i.as_array_mut()) {
        for iface in list {
            if let Some(ips) = iface.get_mut("ips") {
                let joined = ips
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .unwrap_or_default();
                *ips = serde_json::Value::String(joined);
            }
        }
    }
    serde_json::to_vec(&v).expect("serializing json")
}
