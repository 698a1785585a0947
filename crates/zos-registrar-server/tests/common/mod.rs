//! A real registrar server on loopback with a real SQLite database and a manual clock.

#![allow(dead_code)]

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use zos_grid::auth::{self, RequestBinding};
use zos_grid::encoding::b64_encode;
use zos_grid::keys::KeyPair;
use zos_grid::{Clock, ManualClock};
use zos_registrar_server::{ServerConfig, Store};

/// The reference vectors' time.
pub const T0: i64 = 1_700_000_000;

pub struct Server {
    pub base: String,
    pub clock: ManualClock,
    pub store: Arc<Store>,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(ServerConfig::default(), ":memory:").await
    }

    pub async fn start_with(config: ServerConfig, db: &str) -> Server {
        zos_grid::client::install_crypto_provider();
        let store = Arc::new(Store::open(db).expect("opening the database"));
        let clock = ManualClock::at(T0);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding loopback");
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
        let task = tokio::spawn({
            let store = store.clone();
            async move {
                zos_registrar_server::serve(listener, store, config, clock_dyn, async {
                    let _ = rx.await;
                })
                .await
                .expect("serving");
            }
        });
        Server {
            base: format!("http://{addr}"),
            clock,
            store,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task");
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    /// A request; returns the status and the JSON body (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(a) = auth {
            req = req.header("X-Auth", a);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.expect("request to the test server");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("non-json body {text:?} ({status})"))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, None).await
    }

    /// A v1-signed request at the server's current time.
    pub async fn v1(
        &self,
        key: &KeyPair,
        twin: u64,
        method: Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let header = v1_header(key, twin, self.now());
        self.call(method, path, Some(&header), Some(&body.to_string()))
            .await
    }

    /// A v2-signed request at the server's current time (path relative to /api/v1).
    pub async fn v2(
        &self,
        key: &KeyPair,
        twin: u64,
        method: Method,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let text = body.to_string();
        let header = v2_header(
            key,
            twin,
            self.now(),
            method.as_str(),
            path,
            text.as_bytes(),
        );
        self.call(
            method,
            &format!("/api/v1{path}"),
            Some(&header),
            Some(&text),
        )
        .await
    }

    /// Create an account for `key` (signed at the server's time); returns its twin id.
    pub async fn account(&self, key: &KeyPair) -> u64 {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/accounts",
                None,
                Some(&account_body(key, self.now()).to_string()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["twin_id"].as_u64().unwrap()
    }

    /// Create a farm owned by `twin`; returns its id.
    pub async fn farm(&self, key: &KeyPair, twin: u64, name: &str) -> u64 {
        let (status, body) = self
            .v2(key, twin, Method::POST, "/farms", &farm_body(name, twin))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["farm_id"].as_u64().unwrap()
    }

    /// Register a node for `twin` on `farm`; returns its id.
    pub async fn node(&self, key: &KeyPair, twin: u64, farm: u64) -> u64 {
        let (status, body) = self
            .v2(key, twin, Method::POST, "/nodes", &node_body(twin, farm))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["node_id"].as_u64().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn key(n: u8) -> KeyPair {
    KeyPair::ed25519_from_seed(&[n; 32])
}

pub fn v1_header(key: &KeyPair, twin: u64, ts: i64) -> String {
    let c = auth::v1_challenge(ts, twin);
    auth::header_value(&c, &key.sign(c.as_bytes()))
}

pub fn v2_header(
    key: &KeyPair,
    twin: u64,
    ts: i64,
    method: &str,
    path: &str,
    body: &[u8],
) -> String {
    let c = auth::v2_challenge(ts, twin, &RequestBinding::new(method, path, body));
    auth::header_value(&c, &key.sign(c.as_bytes()))
}

pub fn account_body(key: &KeyPair, ts: i64) -> Value {
    let pk = key.public_key_base64();
    let sig = key.sign(auth::account_message(ts, &pk).as_bytes());
    json!({"public_key": pk, "signature": b64_encode(&sig), "timestamp": ts, "relays": ["wss://relay.example"], "rmb_enc_key": "k1"})
}

pub const STELLAR: &str = "GA2FA4O2KXS5ZTX2VJCAGOKBL347EZRTHCRY67NA34Q34WVU4BK6745S";

pub fn farm_body(name: &str, twin: u64) -> Value {
    json!({"farm_name": name, "twin_id": twin, "stellar_address": STELLAR, "dedicated": false})
}

pub fn node_body(twin: u64, farm: u64) -> Value {
    json!({
        "twin_id": twin, "farm_id": farm,
        "resources": {"hru": 0, "sru": 512_110_190_592u64, "cru": 8, "mru": 33_554_432_000u64},
        "location": {"country": "Belgium", "city": "Ghent", "longitude": "3.7", "latitude": "51.05"},
        "interfaces": [{"name": "zos", "mac": "aa:bb:cc:dd:ee:ff", "ips": ["10.0.0.5", "2a02::1"]}],
        "secure_boot": true, "virtualized": true, "serial_number": "ABC123"
    })
}
