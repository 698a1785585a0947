//! The HTTP API: routes under `/api/v1` and `/v1`, handlers, authentication, error bodies.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use zos_grid::Clock;
use zos_grid::auth;
use zos_grid::encoding::{b64_decode, b64_encode};
use zos_grid::keys;
use zos_grid::models::*;

use crate::config::ServerConfig;
use crate::store::{FarmQuery, NodeQuery, Store, StoreError};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub config: Arc<ServerConfig>,
    pub clock: Arc<dyn Clock>,
}

/// An error answer: `{"error": "..."}` (plus `server_time` on clock errors).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    server_time: Option<i64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            server_time: None,
        }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    fn with_time(mut self, now: i64) -> ApiError {
        self.server_time = Some(now);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
                server_time: self.server_time,
            }),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            other => {
                tracing::error!("database: {:#}", anyhow_chain(&other));
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal database error")
            }
        }
    }
}

fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

type ApiResult<T> = Result<T, ApiError>;

/// The router: every route under `/api/v1` and `/v1`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/api/v1", routes())
        .nest("/v1", routes())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(state)
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/accounts", get(get_account).post(create_account))
        .route("/accounts/", get(get_account).post(create_account))
        .route("/accounts/{twin_id}", axum::routing::patch(update_account))
        .route("/farms", get(list_farms).post(create_farm))
        .route("/farms/", get(list_farms).post(create_farm))
        .route("/farms/{farm_id}", get(get_farm).patch(update_farm))
        .route("/nodes", get(list_nodes).post(create_node))
        .route("/nodes/", get(list_nodes).post(create_node))
        .route("/nodes/{node_id}", get(get_node).patch(update_node))
        .route("/nodes/{node_id}/uptime", post(report_uptime))
        .route("/zos/version", put(set_zos_version).get(get_zos_version))
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
}

async fn db<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => {
            tracing::error!("database task: {e}");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ))
        }
    }
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn parse_id(what: &str, text: &str) -> ApiResult<u64> {
    text.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid {what} {text:?}: expected a non-negative integer"
        ))
    })
}

fn query_pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn query_u64(pairs: &[(String, String)], key: &str) -> ApiResult<Option<u64>> {
    match query_get(pairs, key) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid query parameter {key}={v:?}: expected a non-negative integer"
            ))
        }),
    }
}

fn query_bool(pairs: &[(String, String)], key: &str) -> ApiResult<Option<bool>> {
    match query_get(pairs, key) {
        None | Some("") => Ok(None),
        Some("true" | "1" | "True" | "TRUE" | "t") => Ok(Some(true)),
        Some("false" | "0" | "False" | "FALSE" | "f") => Ok(Some(false)),
        Some(v) => Err(ApiError::bad_request(format!(
            "invalid query parameter {key}={v:?}: expected true or false"
        ))),
    }
}

/// An id filter; 0 means "no filter" (the Go client always sends `farm_id=0`).
fn query_id(pairs: &[(String, String)], key: &str) -> ApiResult<Option<u64>> {
    Ok(query_u64(pairs, key)?.filter(|v| *v != 0))
}

fn pagination(state: &AppState, pairs: &[(String, String)]) -> ApiResult<(u64, u64)> {
    let page = query_u64(pairs, "page")?.unwrap_or(1).max(1);
    let size = match query_u64(pairs, "size")? {
        None | Some(0) => state.config.default_page_size,
        Some(s) => s.min(state.config.max_page_size),
    };
    Ok((page, size))
}

/// The public key in a query: base64, where an unescaped `+` arrived as a space.
fn query_public_key(text: &str) -> ApiResult<String> {
    let fixed = text.trim().replace(' ', "+");
    match b64_decode(&fixed) {
        Some(pk) if pk.len() == 32 => Ok(b64_encode(&pk)),
        _ => Err(ApiError::bad_request(
            "invalid public_key: expected standard base64 of 32 bytes",
        )),
    }
}

// ----- authentication -----

/// The request target relative to the API root (`/nodes/1?x`), as v2 challenges sign it.
fn api_target(uri: &Uri) -> String {
    match uri.query() {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_string(),
    }
}

/// Verify the `X-Auth` header of a request; returns the authenticated twin.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> ApiResult<u64> {
    let Some(value) = headers.get(auth::HEADER) else {
        return Err(ApiError::unauthorized("Authorization header required"));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::bad_request(auth::HeaderError::Format.to_string()))?;
    let parsed = auth::parse_header(value).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now = state.clock.now_unix();
    let skew = state.config.auth_skew_secs;
    if now - parsed.timestamp > skew {
        return Err(ApiError::unauthorized("Expired challenge").with_time(now));
    }
    if parsed.timestamp - now > skew {
        return Err(ApiError::unauthorized(format!(
            "Challenge timestamp is more than {skew}s in the future"
        ))
        .with_time(now));
    }
    if parsed.binding.is_none() && !state.config.accept_v1_auth {
        return Err(ApiError::unauthorized(
            "v1 X-Auth headers are not accepted here: sign the request (v2 challenge)",
        ));
    }
    let twin = parsed.twin_id;
    let account = db(state, move |s| s.account(twin))
        .await?
        .ok_or_else(|| ApiError::not_found("Account not found"))?;
    let Some(pk) = b64_decode(&account.public_key) else {
        tracing::error!(twin, "stored public key is not base64");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stored public key is corrupt",
        ));
    };
    keys::verify_any(&pk, &parsed.challenge, &parsed.signature)
        .map_err(|e| ApiError::unauthorized(format!("Signature verification failed: {e}")))?;
    let body_hash = auth::body_sha256(body);
    let target = api_target(uri);
    let replay_key: Vec<u8> = match &parsed.binding {
        Some(b) => {
            let mismatch = if b.method != method.as_str() {
                Some("method")
            } else if b.path != target {
                Some("path")
            } else if b.body_sha256 != body_hash {
                Some("body")
            } else {
                None
            };
            if let Some(what) = mismatch {
                return Err(ApiError::unauthorized(format!(
                    "Challenge was signed for another request ({what} differs)"
                )));
            }
            Sha256::digest(&parsed.challenge).to_vec()
        }
        None => {
            // v1 does not bind the request: refuse the same header for the same request again, but let the Go
            // client make different requests within one second (they share the header).
            let mut h = Sha256::new();
            h.update(value.as_bytes());
            h.update(b"\n");
            h.update(method.as_str().as_bytes());
            h.update(b"\n");
            h.update(target.as_bytes());
            h.update(b"\n");
            h.update(body_hash);
            h.finalize().to_vec()
        }
    };
    let expires = parsed.timestamp + skew + 1;
    let fresh = db(state, move |s| {
        s.remember_challenge(&replay_key, expires, now)
    })
    .await?;
    if !fresh {
        return Err(ApiError::unauthorized(
            "Challenge already used (replayed request)",
        ));
    }
    Ok(twin)
}

fn ensure_owner(authenticated: u64, owner: u64) -> ApiResult<()> {
    if authenticated == 0 || authenticated != owner {
        return Err(ApiError::unauthorized("not authorized"));
    }
    Ok(())
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        Json(Message {
            message: text.to_string(),
        }),
    )
        .into_response()
}

// ----- accounts -----

async fn get_account(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Account>> {
    let pairs = query_pairs(&raw);
    let twin = query_get(&pairs, "twin_id").filter(|v| !v.is_empty());
    let pk = query_get(&pairs, "public_key").filter(|v| !v.is_empty());
    let account = match (twin, pk) {
        (Some(t), None) => {
            let twin = parse_id("twin_id", t)?;
            db(&state, move |s| s.account(twin)).await?
        }
        (None, Some(pk)) => {
            let pk = query_public_key(pk)?;
            db(&state, move |s| s.account_by_public_key(&pk)).await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "exactly one of twin_id or public_key is required",
            ));
        }
    };
    account
        .map(Json)
        .ok_or_else(|| ApiError::not_found("account not found"))
}

async fn create_account(State(state): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req: CreateAccountRequest = parse_body(&body)?;
    if req.timestamp == 0 {
        return Err(ApiError::bad_request(
            "invalid request body: timestamp is required",
        ));
    }
    let pk = match b64_decode(&req.public_key) {
        Some(pk) if pk.len() == 32 => pk,
        _ => {
            return Err(ApiError::bad_request(
                "invalid public key format: expected standard base64 of 32 bytes",
            ));
        }
    };
    let now = state.clock.now_unix();
    if (now - req.timestamp).abs() > state.config.account_window_secs {
        return Err(ApiError::bad_request("timestamp outside acceptable window").with_time(now));
    }
    let sig = b64_decode(&req.signature)
        .ok_or_else(|| ApiError::bad_request("invalid signature format: expected base64"))?;
    let msg = auth::account_message(req.timestamp, &req.public_key);
    keys::verify_any(&pk, msg.as_bytes(), &sig)
        .map_err(|e| ApiError::unauthorized(format!("signature verification failed: {e}")))?;
    let now_ns = state.clock.now_nanos();
    let account = db(&state, move |s| {
        s.create_account(&req.public_key, &req.relays, &req.rmb_enc_key, now_ns)
    })
    .await?;
    tracing::info!(twin = account.twin_id, "account created");
    Ok((StatusCode::CREATED, Json(account)).into_response())
}

async fn update_account(
    State(state): State<AppState>,
    Path(twin): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let twin = parse_id("twin id", &twin)?;
    let who = authenticate(&state, &headers, &method, &uri, &body).await?;
    ensure_owner(who, twin)?;
    let req: UpdateAccountRequest = parse_body(&body)?;
    let now = state.clock.now_nanos();
    db(&state, move |s| {
        s.update_account(twin, req.relays.as_deref(), req.rmb_enc_key.as_deref(), now)
    })
    .await?;
    Ok(message(StatusCode::OK, "account updated successfully"))
}

// ----- farms -----

fn validate_farm_name(name: &str) -> ApiResult<()> {
    if name.is_empty() || name.len() > 40 || !name.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request(format!(
            "invalid farm_name {name:?}: expected 1 to 40 ASCII letters or digits"
        )));
    }
    Ok(())
}

fn validate_stellar(addr: &str) -> ApiResult<()> {
    if addr.len() != 56
        || !addr.starts_with('G')
        || !addr
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Err(ApiError::bad_request(format!(
            "invalid stellar_address {addr:?}: expected 56 upper-case letters and digits starting with G"
        )));
    }
    Ok(())
}

async fn list_farms(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<Farm>>> {
    let pairs = query_pairs(&raw);
    let (page, size) = pagination(&state, &pairs)?;
    let q = FarmQuery {
        farm_name: query_get(&pairs, "farm_name")
            .filter(|v| !v.is_empty())
            .map(str::to_string),
        farm_id: query_id(&pairs, "farm_id")?,
        twin_id: query_id(&pairs, "twin_id")?,
        page,
        size,
    };
    Ok(Json(db(&state, move |s| s.list_farms(&q)).await?))
}

async fn get_farm(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Farm>> {
    let id = parse_id("farm id", &id)?;
    db(&state, move |s| s.farm(id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("farm not found"))
}

async fn create_farm(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let who = authenticate(&state, &headers, &method, &uri, &body).await?;
    let req: CreateFarmRequest = parse_body(&body)?;
    let name = req.farm_name.trim().to_string();
    let stellar = req.stellar_address.trim().to_string();
    validate_farm_name(&name)?;
    validate_stellar(&stellar)?;
    ensure_owner(who, req.twin_id)?;
    let now = state.clock.now_nanos();
    let (twin, dedicated) = (req.twin_id, req.dedicated);
    let farm_id = db(&state, move |s| {
        s.create_farm(&name, twin, &stellar, dedicated, now)
    })
    .await?;
    tracing::info!(farm_id, twin, "farm created");
    Ok((StatusCode::CREATED, Json(FarmCreated { farm_id })).into_response())
}

async fn update_farm(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let id = parse_id("farm id", &id)?;
    let who = authenticate(&state, &headers, &method, &uri, &body).await?;
    let farm = db(&state, move |s| s.farm(id))
        .await?
        .ok_or_else(|| ApiError::not_found("farm not found"))?;
    ensure_owner(who, farm.twin_id)?;
    let req: UpdateFarmRequest = parse_body(&body)?;
    let name = req
        .farm_name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let stellar = req
        .stellar_address
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if let Some(n) = &name {
        validate_farm_name(n)?;
    }
    if let Some(a) = &stellar {
        validate_stellar(a)?;
    }
    let name = name.filter(|n| *n != farm.farm_name);
    let stellar = stellar.filter(|a| *a != farm.stellar_address);
    if name.is_some() || stellar.is_some() {
        let now = state.clock.now_nanos();
        db(&state, move |s| {
            s.update_farm(id, name.as_deref(), stellar.as_deref(), now)
        })
        .await?;
    }
    Ok(message(StatusCode::OK, "Farm was updated successfully"))
}

// ----- nodes -----

fn online_after(state: &AppState) -> i64 {
    state.clock.now_nanos() - state.config.online_cutoff_secs * 1_000_000_000
}

fn validate_interfaces(list: &[Interface]) -> ApiResult<()> {
    if list.is_empty() {
        return Err(ApiError::bad_request(
            "interfaces: at least one interface is required",
        ));
    }
    for (i, iface) in list.iter().enumerate() {
        for ip in &iface.ips {
            if ip.parse::<IpAddr>().is_err() {
                return Err(ApiError::bad_request(format!(
                    "interfaces[{i}].ips: {ip:?} is not a bare IP address"
                )));
            }
        }
    }
    Ok(())
}

fn validate_serial(serial: &str) -> ApiResult<()> {
    if serial.trim().is_empty() {
        return Err(ApiError::bad_request("serial_number is required"));
    }
    Ok(())
}

async fn list_nodes(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Vec<Node>>> {
    let pairs = query_pairs(&raw);
    let (page, size) = pagination(&state, &pairs)?;
    let mut online = query_bool(&pairs, "online")?;
    let from_status = match query_get(&pairs, "status").unwrap_or("") {
        "" => None,
        "online" | "up" => Some(true),
        "offline" | "down" => Some(false),
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid query parameter status={other:?}: expected online or offline"
            )));
        }
    };
    // `healthy=false` is what the Go client always sends: no filter. `healthy=true` means reporting.
    let from_healthy = query_bool(&pairs, "healthy")?.filter(|h| *h);
    for extra in [from_status, from_healthy].into_iter().flatten() {
        match online {
            Some(o) if o != extra => {
                return Err(ApiError::bad_request(
                    "online, status and healthy ask for different things",
                ));
            }
            _ => online = Some(extra),
        }
    }
    let last_seen_minutes = query_u64(&pairs, "last_seen")?;
    let now = state.clock.now_nanos();
    let window = match last_seen_minutes {
        Some(m) => (m as i64).saturating_mul(60_000_000_000),
        None => state.config.online_cutoff_secs * 1_000_000_000,
    };
    let threshold = now - window;
    let (seen_after, not_seen_after) = match (online, last_seen_minutes) {
        (Some(true), _) => (Some(threshold), None),
        (Some(false), _) => (None, Some(threshold)),
        (None, Some(_)) => (Some(threshold), None),
        (None, None) => (None, None),
    };
    let q = NodeQuery {
        node_id: query_id(&pairs, "node_id")?,
        farm_id: query_id(&pairs, "farm_id")?,
        twin_id: query_id(&pairs, "twin_id")?,
        seen_after,
        not_seen_after,
        page,
        size,
    };
    let after = online_after(&state);
    Ok(Json(db(&state, move |s| s.list_nodes(&q, after)).await?))
}

async fn get_node(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Node>> {
    let id = parse_id("node id", &id)?;
    let after = online_after(&state);
    db(&state, move |s| s.node(id, after))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("node not found"))
}

async fn create_node(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let who = authenticate(&state, &headers, &method, &uri, &body).await?;
    let req: NodeRegistration = parse_body(&body)?;
    if req.twin_id == 0 {
        return Err(ApiError::bad_request("twin_id is required"));
    }
    if req.farm_id == 0 {
        return Err(ApiError::bad_request("farm_id is required"));
    }
    validate_interfaces(&req.interfaces)?;
    validate_serial(&req.serial_number)?;
    ensure_owner(who, req.twin_id)?;
    let now = state.clock.now_nanos();
    let twin = req.twin_id;
    let node_id = db(&state, move |s| s.create_node(&req, now)).await?;
    tracing::info!(node_id, twin, "node registered");
    Ok((StatusCode::CREATED, Json(NodeCreated { node_id })).into_response())
}

/// Authenticate the request and check that the node `id` exists and belongs to the authenticated twin.
async fn owned_node(
    state: &AppState,
    id: u64,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<()> {
    let who = authenticate(state, headers, method, uri, body).await?;
    let after = online_after(state);
    let node = db(state, move |s| s.node(id, after))
        .await?
        .ok_or_else(|| ApiError::not_found("node not found"))?;
    ensure_owner(who, node.twin_id)
}

async fn update_node(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let id = parse_id("node id", &id)?;
    owned_node(&state, id, &method, &uri, &headers, &body).await?;
    let req: NodeUpdate = parse_body(&body)?;
    if req.farm_id == Some(0) {
        return Err(ApiError::bad_request("farm_id must be at least 1"));
    }
    if let Some(list) = &req.interfaces {
        validate_interfaces(list)?;
    }
    if let Some(serial) = &req.serial_number {
        validate_serial(serial)?;
    }
    let now = state.clock.now_nanos();
    db(&state, move |s| s.update_node(id, &req, now)).await?;
    Ok(message(StatusCode::OK, "node updated successfully"))
}

async fn report_uptime(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let id = parse_id("node id", &id)?;
    owned_node(&state, id, &method, &uri, &headers, &body).await?;
    let req: UptimeReportRequest = parse_body(&body)?;
    if req.uptime == 0 {
        return Err(ApiError::bad_request("uptime must be at least 1 second"));
    }
    let now = state.clock.now_unix();
    let skew = state.config.uptime_skew_secs;
    if (now - req.timestamp).abs() > skew {
        return Err(ApiError::bad_request(format!(
            "invalid timestamp hint: must be within ±{skew} seconds of server time"
        ))
        .with_time(now));
    }
    let now_ns = state.clock.now_nanos();
    db(&state, move |s| {
        s.report_uptime(id, req.uptime, req.timestamp, now_ns)
    })
    .await?;
    Ok(message(StatusCode::CREATED, "uptime reported successfully"))
}

// ----- zos version -----

async fn get_zos_version(State(state): State<AppState>) -> ApiResult<Json<String>> {
    db(&state, |s| s.zos_version())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("zos version not set"))
}

async fn set_zos_version(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let who = authenticate(&state, &headers, &method, &uri, &body).await?;
    ensure_owner(who, state.config.admin_twin)?;
    let req: ZosVersionRequest = parse_body(&body)?;
    let v = ZosVersion::decode(&req.version)
        .map_err(|e| ApiError::bad_request(format!("invalid version: {}", anyhow_chain(&e))))?;
    let canonical = v.encode();
    db(&state, move |s| s.set_zos_version(&canonical)).await?;
    tracing::info!(version = %v.version, safe_to_upgrade = v.safe_to_upgrade, "zos version set");
    Ok(StatusCode::OK.into_response())
}
