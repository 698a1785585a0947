//! identityd's objects over the real bus (a real redis-server), called with the generated clients: every
//! method, the spec vectors, the registrar gateway for `Farm`, concurrency, the version stream, and that no
//! reply ever carries the seed or a key derived from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use sha2::Digest;
use tokio::sync::Notify;
use zos_api::bus::{self, CallError, Client, Server};
use zos_api::identity::{
    IdentityManagerClient, IdentityManagerContract, VersionMonitorClient, VersionMonitorContract,
};
use zos_api::registrar::{
    Account, Farm, Node, RegistrarGateway, RegistrarGatewayContract, ZosVersion,
};
use zos_identity::{IdentityService, NodeKey, Settings, VersionSource};
use zos_testkit::RedisServer;
use zos_types::go::base64_encode;
use zos_types::{Bytes, GoTime, Version};

const SEED: &str = "fac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e";
const PUBLIC: &str = "345071da55e5dccefaaa440339415ef9f2663338a38f7da0df21be5ab4e055ef";
const ACCOUNT_SIG_B64: &str =
    "SZVJE+v8SLWCuBhDRJnYN5hOkuvkzzYDNv0Q6c55cKG6A0mULUQKeamic6VJfBaRacS+tT7SCrx+q+q2Y2WtBQ==";
const XAUTH_TWIN1_T1700000000: &str = "MTcwMDAwMDAwMDox:UxYW2XJN+aKDHKOX/FeFoAqmgGkGXVFB7RzU0qGXaj4qolofhYpaCdTJdHizFZ3dKyKWQvWkRmIf+315XHHrDg==";
/// A libsodium-made ECDH message from the peer (seed 00..1f) to the node; see tests/crypto.rs.
const ECDH_FROM_PEER: &str = "070707070707070707070707070707070707070707070707fa36d7acb20cb7f24dd4e390ea63f1c0689f516b0fb70c045dc9b8ff3497ff9775f718";

fn seed() -> [u8; 32] {
    hex::decode(SEED).unwrap().try_into().unwrap()
}

fn peer() -> NodeKey {
    NodeKey::from_seed(&std::array::from_fn(|i| i as u8))
}

fn broker(redis: &RedisServer) -> bus::Broker {
    bus::Broker::parse(&redis.url()).unwrap()
}

/// identityd's objects, as the daemon serves them, for the vector key at t=1700000000.
fn serve_identity(
    redis: &RedisServer,
    farm_id: Option<u32>,
    tag_info: &std::path::Path,
) -> bus::ServerHandle {
    let settings = Settings {
        farm_id,
        farm_secret: "s3cret".into(),
        version: VersionSource::new(tag_info),
    };
    let service = IdentityService::new(
        NodeKey::from_seed(&seed()),
        settings,
        Client::connect(&redis.url()).unwrap(),
    )
    .with_clock(Arc::new(|| UNIX_EPOCH + Duration::from_secs(1_700_000_000)))
    .with_gateway_timeout(Duration::from_millis(500));
    let service = Arc::new(service);
    Server::new(zos_identity::MODULE, broker(redis))
        .concurrency(zos_identity::DEFAULT_WORKERS)
        .register(IdentityManagerContract::server(service.clone()))
        .register(VersionMonitorContract::server(service))
        .spawn()
}

fn identity(redis: &RedisServer) -> IdentityManagerClient {
    IdentityManagerClient::new(Client::connect(&redis.url()).unwrap())
}

/// registrar_light's gateway object, as far as `Farm` needs it: farm 42 is "freefarm". `GetFarm` can be held
/// until released, to show that other calls do not wait for it.
#[derive(Default)]
struct Gateway {
    hold: bool,
    entered: Notify,
    release: Notify,
    farm_calls: AtomicUsize,
}

impl RegistrarGateway for Gateway {
    async fn get_zos_version(&self) -> Result<ZosVersion, CallError> {
        Err(CallError::msg("not used"))
    }
    async fn get_farm(&self, id: u64) -> Result<Farm, CallError> {
        self.farm_calls.fetch_add(1, Ordering::SeqCst);
        if self.hold {
            self.entered.notify_one();
            self.release.notified().await;
        }
        match id {
            42 => Ok(Farm {
                farm_id: 42,
                farm_name: "freefarm".into(),
                twin_id: 7,
                ..Default::default()
            }),
            _ => Err(CallError::with_kind(
                "not_found",
                format!("farm {id} not found"),
            )),
        }
    }
    async fn get_twin(&self, _id: u64) -> Result<Account, CallError> {
        Err(CallError::msg("not used"))
    }
    async fn get_twin_by_pub_key(&self, _public_key: Bytes) -> Result<u64, CallError> {
        Err(CallError::msg("not used"))
    }
    async fn get_node(&self, _id: u64) -> Result<Node, CallError> {
        Err(CallError::msg("not used"))
    }
    async fn get_node_by_twin_id(&self, _twin: u64) -> Result<Node, CallError> {
        Err(CallError::msg("not used"))
    }
    async fn get_nodes(&self, _farm: u64) -> Result<Vec<u64>, CallError> {
        Err(CallError::msg("not used"))
    }
    async fn update_node_uptime_v2(&self, _uptime: u64, _timestamp: i64) -> Result<(), CallError> {
        Err(CallError::msg("not used"))
    }
    async fn get_time(&self) -> Result<GoTime, CallError> {
        Ok(GoTime::now())
    }
}

fn serve_gateway(redis: &RedisServer, gateway: Arc<Gateway>) -> bus::ServerHandle {
    Server::new(RegistrarGatewayContract::MODULE, broker(redis))
        .concurrency(4)
        .register(RegistrarGatewayContract::server(gateway))
        .spawn()
}

#[tokio::test]
async fn every_manager_method_over_the_bus() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let server = serve_identity(&redis, Some(42), &tmp.path().join("tag.info"));
    let id = identity(&redis);
    let public = hex::decode(PUBLIC).unwrap();

    assert_eq!(id.store_kind().await.unwrap(), "file-store");
    assert_eq!(
        id.node_id().await.unwrap(),
        bs58::encode(&public).into_string()
    );
    assert_eq!(id.public_key().await.unwrap(), Bytes(public.clone()));
    assert_eq!(id.farm_id().await.unwrap(), 42);
    assert_eq!(id.farm_secret().await.unwrap(), "s3cret");

    // Sign and RegistrarAuth: the spec vectors (the service's clock is frozen at 1700000000).
    let account = format!("1700000000:{}", base64_encode(&public));
    assert_eq!(
        base64_encode(&id.sign(Bytes(account.clone().into_bytes())).await.unwrap()),
        ACCOUNT_SIG_B64
    );
    assert_eq!(id.registrar_auth(1).await.unwrap(), XAUTH_TWIN1_T1700000000);
    let err = id.registrar_auth(0).await.unwrap_err();
    assert_eq!(err.kind(), Some("invalid_input"), "{err}");

    // Verify.
    let sig = id.sign(Bytes(b"msg".to_vec())).await.unwrap();
    id.verify(Bytes(b"msg".to_vec()), sig.clone())
        .await
        .unwrap();
    let err = id
        .verify(Bytes(b"msG".to_vec()), sig.clone())
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.to_string().as_str()),
        (
            Some("invalid_input"),
            "Verify: signature verification failed"
        )
    );
    let err = id
        .verify(Bytes(b"msg".to_vec()), Bytes(sig[..10].to_vec()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("must be 64 bytes, got 10"),
        "{err}"
    );

    // Encrypt / Decrypt: a sealed box to the node; a peer can make one from the public key alone.
    let sealed = id.encrypt(Bytes(b"for the node".to_vec())).await.unwrap();
    assert_eq!(
        id.decrypt(sealed.clone()).await.unwrap(),
        Bytes(b"for the node".to_vec())
    );
    let from_outside = zos_identity::key::seal_for(&public, b"outside").unwrap();
    assert_eq!(
        id.decrypt(Bytes(from_outside)).await.unwrap(),
        Bytes(b"outside".to_vec())
    );
    assert!(peer().unseal(&sealed).is_err(), "only the node opens it");
    let err = id.decrypt(Bytes(vec![0; 47])).await.unwrap_err();
    assert_eq!(err.kind(), Some("invalid_input"));
    assert!(
        err.to_string().contains("at least 48 bytes, got 47"),
        "{err}"
    );
    let mut tampered = sealed.0.clone();
    tampered[40] ^= 0xff;
    assert_eq!(
        id.decrypt(Bytes(tampered)).await.unwrap_err().kind(),
        Some("invalid_input")
    );

    // EncryptECDH / DecryptECDH with a peer built from another key.
    let peer = peer();
    let to_peer = id
        .encrypt_ecdh(
            Bytes(b"hi peer".to_vec()),
            Bytes(peer.public_key().to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(peer.decrypt_ecdh(&to_peer, &public).unwrap(), b"hi peer");
    let from_peer = peer.encrypt_ecdh(b"hi node", &public).unwrap();
    assert_eq!(
        id.decrypt_ecdh(Bytes(from_peer), Bytes(peer.public_key().to_vec()))
            .await
            .unwrap(),
        Bytes(b"hi node".to_vec())
    );
    let libsodium = hex::decode(ECDH_FROM_PEER).unwrap();
    assert_eq!(
        id.decrypt_ecdh(Bytes(libsodium), Bytes(peer.public_key().to_vec()))
            .await
            .unwrap(),
        Bytes(b"from the peer, ecdh".to_vec())
    );
    let err = id
        .encrypt_ecdh(Bytes(b"x".to_vec()), Bytes(vec![1; 5]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("invalid_input"));
    assert!(
        err.to_string()
            .contains("peer public key must be 32 bytes, got 5"),
        "{err}"
    );
    let err = id
        .decrypt_ecdh(Bytes(vec![0; 39]), Bytes(peer.public_key().to_vec()))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("at least 40 bytes, got 39"),
        "{err}"
    );

    // MyceliumKey: the derived key, not the node key or its X25519 conversion.
    let mycelium = id.mycelium_key().await.unwrap();
    assert_eq!(
        mycelium.0,
        NodeKey::from_seed(&seed()).mycelium_secret().to_vec()
    );
    assert_ne!(
        zos_identity::key::x25519_public_of_secret(&mycelium.0.clone().try_into().unwrap()),
        NodeKey::from_seed(&seed()).x25519_public()
    );

    server.stop().await.unwrap();
}

#[tokio::test]
async fn farm_comes_from_the_registrar_gateway_and_is_cached() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let server = serve_identity(&redis, Some(42), &tmp.path().join("tag.info"));
    let id = identity(&redis);

    // registrar_light is not running: a clear error, kind "unavailable".
    let err = id.farm().await.unwrap_err();
    assert_eq!(err.kind(), Some("unavailable"), "{err}");
    assert!(
        err.to_string()
            .contains("registrar gateway (registrar_light) is not available"),
        "{err}"
    );

    let gateway = Arc::new(Gateway::default());
    let gw = serve_gateway(&redis, gateway.clone());
    assert_eq!(id.farm().await.unwrap(), "freefarm");
    assert_eq!(id.farm().await.unwrap(), "freefarm");
    assert_eq!(
        gateway.farm_calls.load(Ordering::SeqCst),
        1,
        "a non-empty name is cached"
    );
    gw.stop().await.unwrap();
    assert_eq!(
        id.farm().await.unwrap(),
        "freefarm",
        "cached: works without the gateway"
    );
    server.stop().await.unwrap();

    // A farm the registrar does not know: its error and kind come through.
    let server = serve_identity(&redis, Some(43), &tmp.path().join("tag.info"));
    let gw = serve_gateway(&redis, Arc::new(Gateway::default()));
    let err = id.farm().await.unwrap_err();
    assert_eq!(err.kind(), Some("not_found"));
    assert!(err.to_string().contains("farm 43 not found"), "{err}");
    server.stop().await.unwrap();

    // An orphan node (no farmer_id): FarmID and Farm say so.
    let server = serve_identity(&redis, None, &tmp.path().join("tag.info"));
    assert_eq!(id.farm_id().await.unwrap_err().kind(), Some("not_found"));
    let err = id.farm().await.unwrap_err();
    assert!(err.to_string().contains("farmer_id"), "{err}");
    server.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_farm_lookup_does_not_hold_up_signing() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let server = serve_identity(&redis, Some(42), &tmp.path().join("tag.info"));
    let gateway = Arc::new(Gateway {
        hold: true,
        ..Default::default()
    });
    let gw = serve_gateway(&redis, gateway.clone());
    let id = identity(&redis);

    let entered = gateway.entered.notified();
    let slow = id.clone();
    let farm = tokio::spawn(async move { slow.with_timeout(Duration::from_secs(60)).farm().await });
    entered.await; // the Farm call is inside the registrar gateway, blocked
    // Meanwhile every other call is answered.
    let sig = id.sign(Bytes(b"while farm waits".to_vec())).await.unwrap();
    id.verify(Bytes(b"while farm waits".to_vec()), sig)
        .await
        .unwrap();
    assert_eq!(
        id.node_id().await.unwrap(),
        NodeKey::from_seed(&seed()).node_id()
    );
    assert!(!farm.is_finished(), "Farm is still waiting for the gateway");
    gateway.release.notify_one();
    assert_eq!(farm.await.unwrap().unwrap(), "freefarm");
    gw.stop().await.unwrap();
    server.stop().await.unwrap();
}

/// Every secret the node has, and their printable forms.
fn secret_forms() -> Vec<Vec<u8>> {
    let seed = seed();
    let expanded = sha2::Sha512::digest(seed);
    let mut x25519 = [0u8; 32];
    x25519.copy_from_slice(&expanded[..32]);
    x25519[0] &= 248;
    x25519[31] &= 127;
    x25519[31] |= 64;
    let mut forms = vec![
        seed.to_vec(),
        expanded[..32].to_vec(),
        expanded[32..].to_vec(),
        x25519.to_vec(),
    ];
    for raw in forms.clone() {
        forms.push(hex::encode(&raw).into_bytes());
        forms.push(base64_encode(&raw).trim_end_matches('=').as_bytes()[..40].to_vec());
        forms.push(bs58::encode(&raw).into_string().into_bytes());
    }
    forms
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_method_returns_the_seed_or_a_key_derived_from_it() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let server = serve_identity(&redis, Some(42), &tmp.path().join("tag.info"));
    let gw = serve_gateway(&redis, Arc::new(Gateway::default()));
    let bus = Client::connect(&redis.url()).unwrap();
    let contract = IdentityManagerContract::describe();
    assert!(
        contract
            .methods
            .iter()
            .all(|m| !m.name.to_lowercase().contains("private")),
        "no PrivateKey method"
    );

    let peer = peer();
    let public = NodeKey::from_seed(&seed()).public_key();
    let secrets = secret_forms();
    let mut called = 0;
    // Each method is called through its contract metadata, so a method added later is covered too.
    for method in &contract.methods {
        for attempt in 0..2 {
            let args: Vec<serde_json::Value> = method
                .args
                .iter()
                .map(|(name, _)| match (*name, method.name, attempt) {
                    ("twin", _, _) => serde_json::json!(1),
                    ("peer", _, _) => serde_json::json!(base64_encode(&peer.public_key())),
                    ("signature", _, _) => {
                        serde_json::json!(base64_encode(&NodeKey::from_seed(&seed()).sign(b"m")))
                    }
                    ("message", "Decrypt", 0) => serde_json::json!(base64_encode(
                        &zos_identity::key::seal_for(&public, b"m").unwrap()
                    )),
                    ("message", "DecryptECDH", 0) => {
                        serde_json::json!(base64_encode(&peer.encrypt_ecdh(b"m", &public).unwrap()))
                    }
                    ("message", _, _) => serde_json::json!(base64_encode(b"m")),
                    (other, m, _) => panic!("{m}: no test input for argument {other}"),
                })
                .collect();
            let inputs = (method.encode_json_args)(&args).unwrap();
            let output = bus
                .request(
                    zos_identity::MODULE,
                    &IdentityManagerContract::object_id(),
                    method.name,
                    inputs,
                    Default::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", method.name));
            let mut reply = output.data.map(|d| d.into_vec()).unwrap_or_default();
            if let Some(e) = output.error {
                reply.extend_from_slice(e.message.as_bytes());
            }
            for secret in &secrets {
                assert!(
                    !contains(&reply, secret),
                    "{} returned secret material",
                    method.name
                );
            }
            called += 1;
        }
    }
    assert_eq!(called, 2 * contract.methods.len());
    assert_eq!(
        contract.methods.len(),
        14,
        "a method was added or removed: review its inputs above"
    );
    server.stop().await.unwrap();
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn version_comes_from_the_release_and_is_streamed() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let tag_info = tmp.path().join("tag.info");
    let write_tag = |target: &str| {
        let json = format!(
            r#"{{"type":"taglink","updated":1,"md5":"","name":"production-v4","target":"{target}"}}"#
        );
        std::fs::write(&tag_info, json).unwrap();
    };
    let server = serve_identity(&redis, Some(42), &tag_info);
    let monitor = VersionMonitorClient::new(Client::connect(&redis.url()).unwrap());

    assert_eq!(
        monitor.get_version().await.unwrap(),
        zos_identity::version::builtin_version(),
        "no release installed"
    );
    write_tag("tf-autobuilder/tags/v4.0.5");
    assert_eq!(monitor.get_version().await.unwrap(), Version::new(4, 0, 5));

    let mut stream = monitor.version().await.unwrap();
    wait_for(&mut stream, Version::new(4, 0, 5)).await;
    write_tag("tf-autobuilder/tags/v4.0.6");
    wait_for(&mut stream, Version::new(4, 0, 6)).await;
    assert_eq!(monitor.get_version().await.unwrap(), Version::new(4, 0, 6));
    server.stop().await.unwrap();
}

/// Receive stream events until `want` arrives (events from before a change may still come first). The timeout
/// is a hang guard, not a measurement: the stream re-sends every 10 s.
async fn wait_for(stream: &mut bus::Subscription<Version>, want: Version) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if stream.recv().await.unwrap().unwrap() == want {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the Version stream never sent {want}"))
}
