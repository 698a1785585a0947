//! Real parts for registrar_light's tests: a registrar server (in process, SQLite, over loopback HTTP) with a
//! seeded farm, identityd (its library, on the test's redis-server) with a key the test knows, and
//! registrar_light itself (its library) with short schedules.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zos_api::bus::{Broker, Client};
use zos_api::registrar::{
    RegistrarClient, RegistrarGatewayClient, RegistrationPhase, RegistrationState,
};
use zos_grid::keys::{DEV_PHRASE, KeyPair, Scheme};
use zos_registrar_light::{Config, FarmSource, HostProbe, Schedule};
use zos_registrar_server::store::NodeQuery;
use zos_registrar_server::{ServerConfig, Store};
use zos_testkit::RedisServer;

/// The farm every test registrar has.
pub const FARM_NAME: &str = "testfarm";

/// Poll `f` until it returns `Some`, at most `limit` (a hang guard, not a timing assertion).
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting for {what} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A registrar server on loopback.
pub struct Registrar {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub farm_id: u64,
    pub farmer_twin: u64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Registrar {
    /// A fresh registrar (empty database, farm seeded) on a free loopback port.
    pub async fn start() -> Registrar {
        Registrar::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// A fresh registrar on `addr` (a registrar that comes back, or comes back reset).
    pub async fn start_on(addr: SocketAddr) -> Registrar {
        zos_grid::client::install_crypto_provider();
        let store = Arc::new(Store::open(":memory:").expect("opening the database"));
        let farmer = KeyPair::from_uri(DEV_PHRASE, Scheme::Ed25519).unwrap();
        let seeded = zos_registrar_server::bootstrap::seed_farm(
            &store,
            Some(&farmer),
            FARM_NAME,
            None,
            now_nanos(),
        )
        .expect("seeding the farm");
        zos_registrar_server::bootstrap::seed_zos_version(&store, "v4.1.2", true).unwrap();
        let listener = bind_retrying(addr).await;
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let store = store.clone();
            async move {
                zos_registrar_server::serve(
                    listener,
                    store,
                    ServerConfig::default(),
                    Arc::new(zos_grid::SystemClock),
                    async {
                        let _ = rx.await;
                    },
                )
                .await
                .expect("serving the registrar");
            }
        });
        Registrar {
            addr,
            store,
            farm_id: seeded.farm_id,
            farmer_twin: seeded.twin_id,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop serving (the port is free again once this returns).
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Every node of the database.
    pub fn nodes(&self) -> Vec<zos_grid::Node> {
        self.store
            .list_nodes(
                &NodeQuery {
                    page: 1,
                    size: 100,
                    ..Default::default()
                },
                0,
            )
            .unwrap()
    }

    /// The account of a key.
    pub fn account_of(&self, key: &KeyPair) -> Option<zos_grid::Account> {
        self.store
            .account_by_public_key(&key.public_key_base64())
            .unwrap()
    }

    /// The node of a key's account.
    pub fn node_of(&self, key: &KeyPair) -> Option<zos_grid::Node> {
        let twin = self.account_of(key)?.twin_id;
        self.nodes().into_iter().find(|n| n.twin_id == twin)
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn bind_retrying(addr: SocketAddr) -> tokio::net::TcpListener {
    let mut last = None;
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("binding {addr}: {last:?}");
}

/// A loopback address nobody listens on (yet).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// identityd (the library) serving the bus, with a key made from `seed`.
pub struct Identity {
    pub key: KeyPair,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Identity {
    pub fn start(redis: &RedisServer, seed: [u8; 32], farm_id: Option<u32>) -> Identity {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("identityd");
        std::fs::create_dir_all(&root).unwrap();
        let seed_file = root.join(zos_identity::keystore::SEED_FILE);
        std::fs::write(
            &seed_file,
            zos_identity::keystore::encode_seed_file(&seed).as_slice(),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&seed_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = zos_identity::DaemonConfig {
            root,
            broker: redis.url(),
            legacy_mirrors: None,
            tag_info: dir.path().join("tag.info"),
            farm_id,
            farm_secret: String::new(),
            workers: zos_identity::DEFAULT_WORKERS,
        };
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            zos_identity::run(cfg, async {
                let _ = rx.await;
            })
            .await
            .expect("identityd");
        });
        Identity {
            key: KeyPair::ed25519_from_seed(&seed),
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Short schedules: retries from 50 ms up to 500 ms; account checks and full updates once an hour unless a
/// test shortens them.
pub fn fast_schedule() -> Schedule {
    Schedule {
        account_check: Duration::from_secs(3600),
        full_update: Duration::from_secs(3600),
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(500),
        address_poll: Duration::from_secs(3600),
        address_settle: Duration::from_millis(100),
        storage_timeout: Duration::from_millis(500),
        geoip_timeout: Duration::from_secs(2),
    }
}

/// registrar_light's configuration for a test: loopback interface, no geoip, no storaged, no KVM needed.
pub fn light_config(
    redis: &RedisServer,
    registrar_url: &str,
    farm: FarmSource,
    flags: &Path,
) -> Config {
    Config {
        broker: redis.url(),
        registrar_url: registrar_url.to_string(),
        auth_mode: zos_grid::AuthMode::Auto,
        relays: vec!["wss://relay.test.example".into()],
        geoip_urls: vec![],
        interface: "lo".into(),
        farm,
        storage_enabled: false,
        flags_dir: flags.to_path_buf(),
        kvm_device: None,
        host: HostProbe::default(),
        schedule: fast_schedule(),
        gateway_workers: 4,
    }
}

/// registrar_light (the library) running in this process.
pub struct Light {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), zos_registrar_light::Error>>>,
}

impl Light {
    pub fn start(cfg: Config) -> Light {
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(zos_registrar_light::run(cfg, async {
            let _ = rx.await;
        }));
        Light {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stop it as a SIGTERM would; returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), zos_registrar_light::Error> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task
            .take()
            .unwrap()
            .await
            .expect("registrar_light task")
    }

    /// Abort it at an arbitrary point, as a SIGKILL would (no shutdown path runs).
    pub async fn kill(mut self) {
        let t = self.task.take().unwrap();
        t.abort();
        let _ = t.await;
    }
}

impl Drop for Light {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub fn bus(redis: &RedisServer) -> Client {
    Client::new(Broker::parse(&redis.url()).unwrap())
}

pub fn registrar_client(redis: &RedisServer) -> RegistrarClient {
    RegistrarClient::new(bus(redis)).with_timeout(Duration::from_secs(5))
}

pub fn gateway_client(redis: &RedisServer) -> RegistrarGatewayClient {
    RegistrarGatewayClient::new(bus(redis)).with_timeout(Duration::from_secs(20))
}

/// Wait until the state satisfies `pred` (over the bus).
pub async fn wait_state(
    redis: &RedisServer,
    what: &str,
    limit: Duration,
    pred: impl Fn(&RegistrationState) -> bool,
) -> RegistrationState {
    let client = registrar_client(redis);
    wait_for(what, limit, || {
        let client = client.clone();
        let pred = &pred;
        async move {
            match client.state().await {
                Ok(s) if pred(&s) => Some(s),
                _ => None,
            }
        }
    })
    .await
}

/// Wait until registered (over the bus).
pub async fn wait_registered(redis: &RedisServer) -> RegistrationState {
    wait_state(redis, "registration", Duration::from_secs(60), |s| {
        s.phase == RegistrationPhase::Registered
    })
    .await
}

/// A scratch directory for health flags.
pub fn flags_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("flags");
    std::fs::create_dir_all(&p).unwrap();
    (d, p)
}

/// The redis-server prerequisite (fails in CI when missing).
pub fn have_redis() -> bool {
    zos_testkit::require_command("redis-server")
}
