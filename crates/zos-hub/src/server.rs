//! The hub HTTP server: the read side of the 0-hub API over a [`Hub`] directory, an optional token-guarded
//! publish API, and a `/blocks/` route serving a directory block store (so the HTTP store of a flist can point
//! at `http://<hub>/blocks`).
//!
//! Read routes (JSON bodies end with a newline; every response has `Access-Control-Allow-Origin: *`):
//! `GET /api/flist`, `/api/repositories`, `/api/fileslist`, `/api/flist/{repo}`, `/api/flist/{repo}/tags/{tag}`,
//! `/api/flist/{repo}/{name}/light`, `/api/flist/{repo}/{name}/taglink`, `/api/flist/{repo}/{name}` (content
//! listing of an `.fl`; method `INFO` gives the light info), downloads `/{repo}/{name}`,
//! `/{repo}/{name}.md5`, `/{repo}/tags/{tag}/{name}`, and blocks `/blocks/{hex[0:2]}/{hex}` or `/blocks/{hex}`.
//!
//! Publish routes (only with a token; `Authorization: Bearer <token>`):
//! `PUT /api/flist/{repo}/{name}` (body = the flist file), `PUT /api/flist/{repo}/tags/{tag}/{name}` (body
//! `{"target":"repo2/file.flist"}`), `PUT /api/flist/{repo}/{link}/taglink` (body `{"target":"repo2/tags/tag"}`),
//! `PUT /api/flist/{repo}/{link}/link` (body `{"target":"file.flist"}` or `"repo2/file.flist"`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Serialize;

use crate::layout::{Hub, HubError, check_component};
use crate::types::{ErrorBody, LinkRequest};

/// Largest flist accepted by the publish API.
pub const MAX_UPLOAD: usize = 512 * 1024 * 1024;

/// Server configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The public directory.
    pub dir: PathBuf,
    /// A directory block store served under `/blocks/` (flat or two-level layout).
    pub blocks: Option<PathBuf>,
    /// Token enabling the publish API; without one it is disabled.
    pub publish_token: Option<String>,
}

struct AppState {
    hub: Hub,
    blocks: Option<zos_flist::store::DirStore>,
    token: Option<String>,
}

type St = State<Arc<AppState>>;

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut body = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(
        status,
        &ErrorBody {
            status: "error".into(),
            message: message.into(),
        },
    )
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        match &self {
            HubError::NotFound(_) => error(StatusCode::NOT_FOUND, self.to_string()),
            HubError::Invalid { .. } => error(StatusCode::BAD_REQUEST, self.to_string()),
            HubError::Io { .. } => {
                tracing::error!("{self}");
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

/// Run blocking hub work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HubError> + Send + 'static,
) -> Result<T, HubError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(HubError::Io {
            path: PathBuf::new(),
            context: "worker",
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// The router (for embedding or tests).
pub fn router(cfg: &ServerConfig) -> Result<Router, HubError> {
    let state = Arc::new(AppState {
        hub: Hub::new(&cfg.dir)?,
        blocks: cfg.blocks.clone().map(zos_flist::store::DirStore::new),
        token: cfg.publish_token.clone().filter(|t| !t.is_empty()),
    });
    Ok(Router::new()
        .route("/api/flist", get(all_flists))
        .route("/api/repositories", get(repositories))
        .route("/api/fileslist", get(fileslist))
        .route("/api/flist/{repo}", get(repo_entries))
        .route("/api/flist/{repo}/tags/{tag}", get(tag_entries))
        .route("/api/flist/{repo}/tags/{tag}/{name}", put(tag_add))
        .route(
            "/api/flist/{repo}/{name}",
            get(flist_content).put(publish_route).fallback(flist_other),
        )
        .route("/api/flist/{repo}/{name}/light", get(light))
        .route(
            "/api/flist/{repo}/{name}/taglink",
            get(taglink).put(taglink_set),
        )
        .route("/api/flist/{repo}/{name}/link", put(symlink_set))
        .route("/api/flist/{repo}/{name}/metadata", get(metadata))
        .route("/blocks/{a}", get(block_flat))
        .route("/blocks/{a}/{b}", get(block_nested))
        .route("/{repo}/{file}", get(download))
        .route("/{repo}/tags/{tag}/{file}", get(download_tag))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .layer(axum::middleware::map_response(
            |mut r: Response| async move {
                r.headers_mut().insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
                r
            },
        ))
        .with_state(state))
}

/// Serve on `listener` until `shutdown` completes.
pub async fn serve(
    cfg: &ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(cfg).map_err(std::io::Error::other)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn all_flists(State(s): St) -> Response {
    let r = blocking(move || {
        let mut out = Vec::new();
        for repo in s.hub.repositories()? {
            for e in s.hub.entries(&repo.name)? {
                out.push(format!("{}/{}", repo.name, e.name));
            }
        }
        Ok(out)
    })
    .await;
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn repositories(State(s): St) -> Response {
    match blocking(move || s.hub.repositories()).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn fileslist(State(s): St) -> Response {
    let r = blocking(move || {
        let mut out = serde_json::Map::new();
        for repo in s.hub.repositories()? {
            let entries = s.hub.entries(&repo.name)?;
            out.insert(repo.name, serde_json::to_value(entries).unwrap_or_default());
        }
        Ok(out)
    })
    .await;
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn repo_entries(State(s): St, Path(repo): Path<String>) -> Response {
    match blocking(move || s.hub.entries(&repo)).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn tag_entries(State(s): St, Path((repo, tag)): Path<(String, String)>) -> Response {
    match blocking(move || s.hub.tag_entries(&repo, &tag)).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn light(State(s): St, Path((repo, name)): Path<(String, String)>) -> Response {
    match blocking(move || s.hub.light(&repo, &name)).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e @ HubError::NotFound(_)) => {
            let msg = if e.to_string().starts_with("repository") {
                "user not found"
            } else {
                "source not found"
            };
            error(StatusCode::NOT_FOUND, msg)
        }
        Err(e) => e.into_response(),
    }
}

async fn taglink(State(s): St, Path((repo, name)): Path<(String, String)>) -> Response {
    match blocking(move || s.hub.taglink(&repo, &name)).await {
        Ok(t) => json(StatusCode::OK, &serde_json::json!({ "target": t })),
        Err(e) => e.into_response(),
    }
}

async fn metadata(State(s): St, Path((repo, name)): Path<(String, String)>) -> Response {
    let r = blocking(move || {
        let path = s.hub.flist_path(&repo, &name)?;
        let mut meta = serde_json::Map::new();
        if path.to_string_lossy().ends_with(".fl")
            && let Ok(f) = zos_flist::Flist::open(&path)
        {
            for (k, v) in f.tags() {
                meta.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
            let routes: Vec<_> = f
                .routes()
                .iter()
                .map(|r| format!("{:02x}-{:02x}={}", r.start, r.end, r.url))
                .collect();
            meta.insert("routes".into(), routes.into());
        }
        Ok(meta)
    })
    .await;
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

/// `INFO /api/flist/{repo}/{name}`: the light info (any other unknown method: 405).
async fn flist_other(
    State(s): St,
    Path((repo, name)): Path<(String, String)>,
    method: Method,
) -> Response {
    if method.as_str() == "INFO" {
        return light(State(s), Path((repo, name))).await;
    }
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// `GET /api/flist/{repo}/{name}`: the content listing of an `.fl`.
async fn flist_content(State(s): St, Path((repo, name)): Path<(String, String)>) -> Response {
    let r = blocking(move || {
        let path = s.hub.flist_path(&repo, &name)?;
        if !path.to_string_lossy().ends_with(".fl") {
            return Err(HubError::Invalid {
                what: "flist",
                value: name,
                reason: "content listings are available for .fl flists only",
            });
        }
        let f = zos_flist::Flist::open(&path).map_err(|e| HubError::Io {
            path: path.clone(),
            context: "reading the flist",
            source: std::io::Error::other(e.to_string()),
        })?;
        let content: Vec<_> = f
            .walk()
            .into_iter()
            .map(|(p, n)| {
                let mut v = serde_json::json!({
                    "path": p.to_string_lossy(),
                    "size": n.size,
                    "type": format!("{:?}", n.kind).to_lowercase(),
                    "mode": format!("{:o}", n.perm()),
                    "uid": n.uid,
                    "gid": n.gid,
                });
                if let Some(t) = &n.target {
                    v["target"] = String::from_utf8_lossy(t).into_owned().into();
                }
                v
            })
            .collect();
        Ok(serde_json::json!({ "flist": name, "content": content }))
    })
    .await;
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

fn flist_response(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response()
}

async fn download(State(s): St, Path((repo, file)): Path<(String, String)>) -> Response {
    let r = blocking(move || {
        if let Some(name) = file.strip_suffix(".md5") {
            let path = s.hub.flist_path(&repo, name)?;
            let md5 = s.hub.md5(&path)?;
            return Ok((format!("{md5}\n").into_bytes(), true));
        }
        if !crate::layout::is_flist_name(&file) {
            return Err(HubError::NotFound(format!("{repo}/{file}")));
        }
        let path = s.hub.flist_path(&repo, &file)?;
        let data = std::fs::read(&path).map_err(|source| HubError::Io {
            path: path.clone(),
            context: "reading",
            source,
        })?;
        Ok((data, false))
    })
    .await;
    match r {
        Ok((d, true)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], d).into_response()
        }
        Ok((d, false)) => flist_response(d),
        Err(e) => e.into_response(),
    }
}

async fn download_tag(
    State(s): St,
    Path((repo, tag, file)): Path<(String, String, String)>,
) -> Response {
    let r = blocking(move || {
        let path = s.hub.tag_flist_path(&repo, &tag, &file)?;
        std::fs::read(&path).map_err(|source| HubError::Io {
            path: path.clone(),
            context: "reading",
            source,
        })
    })
    .await;
    match r {
        Ok(d) => flist_response(d),
        Err(e) => e.into_response(),
    }
}

fn parse_block_id(hex_id: &str) -> Option<Vec<u8>> {
    if hex_id.len() != 64 && hex_id.len() != 32 {
        return None;
    }
    hex::decode(hex_id).ok()
}

async fn serve_block(s: Arc<AppState>, hex_id: String) -> Response {
    let Some(store) = s.blocks.clone() else {
        return error(StatusCode::NOT_FOUND, "this hub serves no blocks");
    };
    let Some(id) = parse_block_id(&hex_id) else {
        return error(StatusCode::BAD_REQUEST, "a block id is 64 hex digits");
    };
    match tokio::task::spawn_blocking(move || store.get_sync(&id)).await {
        Ok(Ok(d)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            d,
        )
            .into_response(),
        Ok(Err(zos_flist::StoreError::NotFound { .. })) => {
            error(StatusCode::NOT_FOUND, "block not found")
        }
        Ok(Err(e)) => {
            tracing::error!("{e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

async fn block_flat(State(s): St, Path(a): Path<String>) -> Response {
    serve_block(s, a.to_ascii_lowercase()).await
}

async fn block_nested(State(s): St, Path((a, b)): Path<(String, String)>) -> Response {
    let b = b.to_ascii_lowercase();
    if !b.starts_with(&a.to_ascii_lowercase()) || a.len() != 2 {
        return error(StatusCode::NOT_FOUND, "block not found");
    }
    serve_block(s, b).await
}

fn authorized(s: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = &s.token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "publishing is disabled on this hub (no token configured)",
        )));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // constant-time enough for a local hub: compare all bytes
    let ok = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )))
    }
}

fn link_body(body: &Bytes) -> Result<LinkRequest, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("body must be {{\"target\": \"...\"}}: {e}"),
        ))
    })
}

async fn publish(s: Arc<AppState>, repo: String, name: String, body: Bytes) -> Response {
    match blocking(move || s.hub.publish(&repo, &name, &body)).await {
        Ok(v) => json(StatusCode::CREATED, &v),
        Err(e) => e.into_response(),
    }
}

async fn tag_add(
    State(s): St,
    Path((repo, tag, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let req = match link_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match blocking(move || s.hub.tag_add(&repo, &tag, &name, &req.target)).await {
        Ok(v) => json(StatusCode::CREATED, &v),
        Err(e) => e.into_response(),
    }
}

async fn taglink_set(
    State(s): St,
    Path((repo, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let req = match link_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match blocking(move || s.hub.taglink_set(&repo, &name, &req.target)).await {
        Ok(v) => json(StatusCode::CREATED, &v),
        Err(e) => e.into_response(),
    }
}

async fn symlink_set(
    State(s): St,
    Path((repo, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let req = match link_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match blocking(move || s.hub.symlink_set(&repo, &name, &req.target)).await {
        Ok(v) => json(StatusCode::CREATED, &v),
        Err(e) => e.into_response(),
    }
}

/// `PUT /api/flist/{repo}/{name}`: publish the body as the flist.
async fn publish_route(
    State(s): St,
    Path((repo, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    if let Err(e) =
        check_component("repository", &repo).and_then(|_| check_component("flist", &name))
    {
        return e.into_response();
    }
    publish(s, repo, name, body).await
}
