//! registrar_light against the real registrar server (loopback HTTP, SQLite), real identityd (its library) and
//! a real redis-server: registration, restarts, a registrar that is down or reset, failures that are
//! re-checked, the schedules (shortened), storage totals that come later, and geoip with its fallback.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use zos_api::registrar::RegistrationPhase;
use zos_registrar_light::FarmSource;
use zos_testkit::RedisServer;

const SEED: [u8; 32] = [7; 32];

#[tokio::test]
async fn a_fresh_node_creates_its_account_registers_and_answers_over_the_bus() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, Some(registrar.farm_id as u32));
    let (_f, flags) = flags_dir();
    let cfg = light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    );
    let light = Light::start(cfg);

    let state = wait_registered(&redis).await;
    assert_eq!(state.reason, "", "{state:?}");
    assert!(!state.updated.is_zero());
    let bus = registrar_client(&redis);
    let node_id = bus.node_id().await.unwrap();
    let twin_id = bus.twin_id().await.unwrap();

    // The registrar has exactly this account and node, made of the node's key and facts.
    let account = registrar
        .account_of(&identity.key)
        .expect("the node's account");
    assert_eq!(u64::from(twin_id), account.twin_id);
    assert_eq!(account.relays, vec!["wss://relay.test.example"]);
    let nodes = registrar.nodes();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let node = &nodes[0];
    assert_eq!(
        (node.node_id, node.twin_id, node.farm_id),
        (u64::from(node_id), account.twin_id, registrar.farm_id)
    );
    let probe = zos_registrar_light::HostProbe::default();
    assert_eq!(node.resources.cru, probe.cpu_count());
    assert_eq!(node.resources.mru, probe.memory_total().unwrap());
    assert_eq!((node.resources.sru, node.resources.hru), (0, 0));
    assert_eq!(node.serial_number, probe.serial_number());
    assert_eq!(node.virtualized, probe.virtualized());
    assert_eq!(node.interfaces.len(), 1);
    assert_eq!(node.interfaces[0].name, "lo");
    assert!(node.interfaces[0].ips.is_empty(), "{:?}", node.interfaces);
    assert_eq!(node.location, zos_grid::Location::default());

    // identityd's Farm() goes through the gateway.
    let identity_bus = zos_api::identity::IdentityManagerClient::new(bus.bus().clone());
    assert_eq!(identity_bus.farm().await.unwrap(), FARM_NAME);

    light.stop().await.unwrap();
    identity.stop().await;
}

#[tokio::test]
async fn the_gateway_returns_the_registrar_data_and_reports_uptime() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    let light = Light::start(light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    ));
    let gw = gateway_client(&redis);

    let state = wait_registered(&redis).await;
    let (node_id, twin_id) = (u64::from(state.node_id), u64::from(state.twin_id));

    let v = gw.get_zos_version().await.unwrap();
    assert_eq!((v.version.as_str(), v.safe_to_upgrade), ("v4.1.2", true));
    let farm = gw.get_farm(registrar.farm_id).await.unwrap();
    assert_eq!(
        (farm.farm_id, farm.farm_name.as_str(), farm.twin_id),
        (registrar.farm_id, FARM_NAME, registrar.farmer_twin)
    );
    let twin = gw.get_twin(twin_id).await.unwrap();
    assert_eq!(twin.public_key, identity.key.public_key_base64());
    assert_eq!(twin.relays, vec!["wss://relay.test.example"]);
    let by_key = gw
        .get_twin_by_pub_key(zos_types::Bytes(identity.key.public_key().to_vec()))
        .await
        .unwrap();
    assert_eq!(by_key, twin_id);
    let node = gw.get_node(node_id).await.unwrap();
    assert_eq!((node.node_id, node.twin_id), (node_id, twin_id));
    assert_eq!(node.interfaces[0].name, "lo");
    assert_eq!(gw.get_node_by_twin_id(twin_id).await.unwrap(), node);
    assert_eq!(
        gw.get_nodes(registrar.farm_id).await.unwrap(),
        vec![node_id]
    );

    let uptime = 4242;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    gw.update_node_uptime_v2(uptime, now).await.unwrap();
    let reports = registrar.store.uptime_reports(node_id).unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!((reports[0].0, reports[0].1), (uptime, now));
    assert!(gw.get_node(node_id).await.unwrap().online);

    // The registrar's clock (its Date header), not ours; both are the system clock here.
    let t = gw.get_time().await.unwrap();
    assert!((t.unix_secs() - now).abs() < 120, "{t:?} vs {now}");

    // Errors carry kinds.
    let e = gw.get_farm(999).await.unwrap_err();
    assert_eq!(e.kind(), Some("not_found"), "{e}");
    assert!(e.to_string().contains("farm 999"), "{e}");
    let e = gw
        .get_twin_by_pub_key(zos_types::Bytes(vec![1, 2, 3]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some("invalid_input"), "{e}");
    assert!(e.to_string().contains("expected 32 bytes, got 3"), "{e}");
    let e = gw.get_nodes(0).await.unwrap_err();
    assert_eq!(e.kind(), Some("invalid_input"), "{e}");
    let e = gw
        .get_node_by_twin_id(registrar.farmer_twin)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some("not_found"), "{e}");
    let e = gw.get_twin(9999).await.unwrap_err();
    assert_eq!(e.kind(), Some("not_found"), "{e}");
    let e = gw.update_node_uptime_v2(0, now).await.unwrap_err();
    assert_eq!(e.kind(), Some("invalid_input"), "{e}");

    light.stop().await.unwrap();
    identity.stop().await;
}

#[tokio::test]
async fn a_restart_finds_the_same_ids_without_duplicates_or_needless_updates() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    let cfg = light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    );

    let light = Light::start(cfg.clone());
    let first = wait_registered(&redis).await;
    let before = registrar.node_of(&identity.key).unwrap();
    light.kill().await;

    for round in 0..2 {
        let light = Light::start(cfg.clone());
        // The bus answers at once, before the registrar was asked anything.
        let state = registrar_client(&redis).state().await.unwrap();
        assert_ne!(state.phase, RegistrationPhase::Failed, "{state:?}");
        let again = wait_registered(&redis).await;
        assert_eq!(
            (again.node_id, again.twin_id),
            (first.node_id, first.twin_id),
            "round {round}"
        );
        if round == 0 {
            light.stop().await.unwrap();
        } else {
            light.kill().await;
        }
    }
    assert_eq!(registrar.nodes().len(), 1, "{:?}", registrar.nodes());
    let account = registrar.account_of(&identity.key).unwrap();
    assert_eq!(account.twin_id, u64::from(first.twin_id));
    assert!(
        registrar
            .store
            .account(account.twin_id + 1)
            .unwrap()
            .is_none(),
        "no second account"
    );
    // Nothing changed, so nothing was PATCHed.
    let after = registrar.node_of(&identity.key).unwrap();
    assert_eq!(after.updated_at, before.updated_at);
    identity.stop().await;
}

#[tokio::test]
async fn a_registrar_down_at_start_keeps_registration_in_progress_until_it_comes() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let addr = free_addr();
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    let light = Light::start(light_config(
        &redis,
        &format!("http://{addr}"),
        FarmSource::fixed(Some(1)),
        &flags,
    ));

    let state = wait_state(&redis, "a retry reason", Duration::from_secs(30), |s| {
        !s.reason.is_empty() && s.reason != zos_registrar_light::state::FIRST_ATTEMPT
    })
    .await;
    assert_eq!(state.phase, RegistrationPhase::InProgress, "{state:?}");
    assert!(state.reason.contains("no answer"), "{state:?}");
    assert!(state.reason.contains(&addr.to_string()), "{state:?}");
    let e = registrar_client(&redis).node_id().await.unwrap_err();
    assert_eq!(e.kind(), Some("unavailable"));
    assert!(
        e.to_string()
            .starts_with("registration is still in progress"),
        "{e}"
    );
    let e = gateway_client(&redis).get_farm(1).await.unwrap_err();
    assert_eq!(e.kind(), Some("unavailable"), "{e}");
    let e = gateway_client(&redis)
        .update_node_uptime_v2(10, 1_700_000_000)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some("unavailable"), "{e}");
    assert!(
        e.to_string()
            .starts_with("registration is still in progress"),
        "{e}"
    );

    let registrar = Registrar::start_on(addr).await;
    let state = wait_registered(&redis).await;
    assert_eq!(state.reason, "");
    let node = registrar.node_of(&identity.key).unwrap();
    assert_eq!(u64::from(state.node_id), node.node_id);
    light.stop().await.unwrap();
    identity.stop().await;
}

#[tokio::test]
async fn a_reset_registrar_gets_the_account_and_node_again_from_the_account_check() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let mut registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    let mut cfg = light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    );
    cfg.schedule.account_check = Duration::from_millis(300);
    let light = Light::start(cfg);
    wait_registered(&redis).await;
    assert!(registrar.node_of(&identity.key).is_some());

    // A new, empty database behind the same address.
    let addr = registrar.addr;
    registrar.stop().await;
    let registrar = Registrar::start_on(addr).await;
    assert!(registrar.account_of(&identity.key).is_none());
    let node = wait_for(
        "the node on the reset registrar",
        Duration::from_secs(30),
        || async { registrar.node_of(&identity.key) },
    )
    .await;
    let state = wait_state(
        &redis,
        "registered with the new ids",
        Duration::from_secs(30),
        |s| s.phase == RegistrationPhase::Registered && u64::from(s.node_id) == node.node_id,
    )
    .await;
    assert_eq!(
        u64::from(state.twin_id),
        registrar.account_of(&identity.key).unwrap().twin_id
    );
    assert_eq!(registrar.nodes().len(), 1);
    light.stop().await.unwrap();
    identity.stop().await;
}

#[tokio::test]
async fn a_refused_uptime_report_makes_the_node_re_resolve_its_ids() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let mut registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    // The schedules are an hour away: only the refused report can start the re-check.
    let light = Light::start(light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    ));
    wait_registered(&redis).await;
    let addr = registrar.addr;
    registrar.stop().await;
    let registrar = Registrar::start_on(addr).await;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let e = gateway_client(&redis)
        .update_node_uptime_v2(100, now)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some("unavailable"), "{e}");
    assert!(
        e.to_string().contains("checking the registration again"),
        "{e}"
    );
    let node = wait_for("re-registration", Duration::from_secs(30), || async {
        registrar.node_of(&identity.key)
    })
    .await;
    wait_state(&redis, "registered again", Duration::from_secs(30), |s| {
        s.phase == RegistrationPhase::Registered && u64::from(s.node_id) == node.node_id
    })
    .await;
    gateway_client(&redis)
        .update_node_uptime_v2(100, now)
        .await
        .unwrap();
    assert_eq!(
        registrar.store.uptime_reports(node.node_id).unwrap().len(),
        1
    );
    light.stop().await.unwrap();
    identity.stop().await;
}

#[tokio::test]
async fn an_orphan_node_or_unknown_farm_fails_with_a_reason_and_is_rechecked() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    let farm = Arc::new(AtomicU32::new(0));
    let source = {
        let farm = farm.clone();
        FarmSource::from_fn(move || match farm.load(Ordering::SeqCst) {
            0 => Ok(None),
            n => Ok(Some(n)),
        })
    };
    let light = Light::start(light_config(&redis, &registrar.url(), source, &flags));

    let state = wait_state(&redis, "failed: orphan", Duration::from_secs(30), |s| {
        s.phase == RegistrationPhase::Failed
    })
    .await;
    assert!(state.reason.contains("this node has no farm"), "{state:?}");
    let e = registrar_client(&redis).twin_id().await.unwrap_err();
    assert_eq!(e.kind(), Some("not_found"));
    assert_eq!(
        e.to_string(),
        "registration failed: this node has no farm: farmer_id is not on the kernel command line"
    );

    farm.store(999, Ordering::SeqCst);
    let state = wait_state(
        &redis,
        "failed: unknown farm",
        Duration::from_secs(30),
        |s| s.reason.contains("farm 999"),
    )
    .await;
    assert_eq!(state.phase, RegistrationPhase::Failed);
    assert!(
        state.reason.contains("does not exist on the registrar"),
        "{state:?}"
    );
    assert!(registrar.nodes().is_empty());

    farm.store(registrar.farm_id as u32, Ordering::SeqCst);
    wait_registered(&redis).await;
    assert_eq!(
        registrar.node_of(&identity.key).unwrap().farm_id,
        registrar.farm_id
    );
    light.stop().await.unwrap();
    identity.stop().await;
}

#[tokio::test]
async fn no_disks_and_no_kvm_are_reported_and_rechecked() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (dir, flags) = flags_dir();
    zos_config::paths::set_flag(&flags, zos_config::paths::FLAG_LIMITED_CACHE, true).unwrap();
    let kvm = dir.path().join("kvm");
    let mut cfg = light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    );
    cfg.kvm_device = Some(kvm.clone());
    let light = Light::start(cfg);

    let state = wait_state(&redis, "failed: no disks", Duration::from_secs(30), |s| {
        s.phase == RegistrationPhase::Failed
    })
    .await;
    assert!(state.reason.starts_with("no disks"), "{state:?}");
    assert!(state.reason.contains("limited-cache"), "{state:?}");

    zos_config::paths::set_flag(&flags, zos_config::paths::FLAG_LIMITED_CACHE, false).unwrap();
    let state = wait_state(&redis, "failed: no kvm", Duration::from_secs(30), |s| {
        s.reason.contains("virtualization")
    })
    .await;
    assert_eq!(state.phase, RegistrationPhase::Failed);
    assert!(
        state.reason.contains(&kvm.display().to_string()),
        "{state:?}"
    );
    assert!(registrar.nodes().is_empty());

    std::fs::write(&kvm, b"").unwrap();
    wait_registered(&redis).await;
    assert!(registrar.node_of(&identity.key).is_some());
    light.stop().await.unwrap();
    identity.stop().await;
}

#[tokio::test]
async fn the_full_update_restores_drifted_fields_and_keeps_virtualized_false() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    let mut cfg = light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    );
    cfg.schedule.full_update = Duration::from_millis(300);
    let light = Light::start(cfg);
    let state = wait_registered(&redis).await;
    let node_id = u64::from(state.node_id);
    let ours = registrar.node_of(&identity.key).unwrap();

    // Someone changed node-owned fields, and a farmer marked the node as not virtualized.
    registrar
        .store
        .update_node(
            node_id,
            &zos_grid::NodeUpdate {
                serial_number: Some("tampered".into()),
                resources: Some(zos_grid::Resources {
                    cru: 999,
                    ..ours.resources
                }),
                virtualized: Some(false),
                ..Default::default()
            },
            now_nanos(),
        )
        .unwrap();
    let restored = wait_for("the full update", Duration::from_secs(30), || async {
        registrar
            .node_of(&identity.key)
            .filter(|n| n.serial_number == ours.serial_number && n.resources == ours.resources)
    })
    .await;
    assert!(
        !restored.virtualized,
        "a registrar 'not virtualized' sticks"
    );
    light.stop().await.unwrap();
    identity.stop().await;
}

#[tokio::test]
async fn storage_totals_register_as_zero_and_are_updated_when_storaged_answers() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    let mut cfg = light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    );
    cfg.storage_enabled = true;
    let light = Light::start(cfg);

    let state = wait_registered(&redis).await;
    assert!(state.reason.contains("storaged"), "{state:?}");
    let node = registrar.node_of(&identity.key).unwrap();
    assert_eq!((node.resources.sru, node.resources.hru), (0, 0));

    let storaged = storage::serve(&redis, 500 << 30, 4 << 40);
    let node = wait_for("the storage totals", Duration::from_secs(30), || async {
        registrar
            .node_of(&identity.key)
            .filter(|n| n.resources.sru != 0)
    })
    .await;
    assert_eq!(
        (node.resources.sru, node.resources.hru),
        (500 << 30, 4 << 40)
    );
    wait_state(
        &redis,
        "the storage note cleared",
        Duration::from_secs(30),
        |s| s.reason.is_empty(),
    )
    .await;

    // storaged going away later does not erase what the registrar has.
    storaged.stop().await;
    light.stop().await.unwrap();
    let light = Light::start({
        let mut cfg = light_config(
            &redis,
            &registrar.url(),
            FarmSource::fixed(Some(registrar.farm_id as u32)),
            &flags,
        );
        cfg.storage_enabled = true;
        cfg
    });
    let state = wait_registered(&redis).await;
    assert!(state.reason.contains("storaged"), "{state:?}");
    let node = registrar.node_of(&identity.key).unwrap();
    assert_eq!(
        (node.resources.sru, node.resources.hru),
        (500 << 30, 4 << 40)
    );
    light.stop().await.unwrap();
    identity.stop().await;
}

#[tokio::test]
async fn geoip_gives_the_location_and_its_absence_never_blocks_or_erases_it() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    let dead = format!("http://{}/", free_addr());
    let config = |urls: Vec<String>| {
        let mut cfg = light_config(
            &redis,
            &registrar.url(),
            FarmSource::fixed(Some(registrar.farm_id as u32)),
            &flags,
        );
        cfg.geoip_urls = urls;
        cfg
    };

    // Only a dead service: registered anyway, location empty.
    let light = Light::start(config(vec![dead.clone()]));
    wait_registered(&redis).await;
    assert_eq!(
        registrar.node_of(&identity.key).unwrap().location,
        zos_grid::Location::default()
    );
    light.stop().await.unwrap();

    // A dead service, then a working one: the second gives the location.
    let (geoip_url, geoip) = geoip::serve().await;
    let light = Light::start(config(vec![dead.clone(), geoip_url]));
    let node = wait_for("the location", Duration::from_secs(30), || async {
        registrar
            .node_of(&identity.key)
            .filter(|n| !n.location.country.is_empty())
    })
    .await;
    assert_eq!(
        node.location,
        zos_grid::Location {
            country: "Belgium".into(),
            city: "Ghent".into(),
            longitude: "3.7174".into(),
            latitude: "51.0543".into(),
        }
    );
    light.stop().await.unwrap();
    geoip.abort();

    // geoip gone again: the known location stays.
    let light = Light::start(config(vec![dead]));
    wait_registered(&redis).await;
    let again = registrar.node_of(&identity.key).unwrap();
    assert_eq!(again.location, node.location);
    assert_eq!(again.updated_at, node.updated_at, "nothing to update");
    light.stop().await.unwrap();
    identity.stop().await;
}

/// A local stand-in for a geoip service (the HTTP boundary is real; the answer is the real service's shape).
mod geoip {
    pub async fn serve() -> (String, tokio::task::JoinHandle<()>) {
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({
                    "longitude": 3.7174, "latitude": 51.0543, "continent": "EU",
                    "country_name": "Belgium", "country_code": "BE", "city_name": "Ghent"
                }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (url, task)
    }
}

/// storaged's object as far as `Total` goes (the totals of pools the test decides); every other method
/// answers that it is not served here.
mod storage {
    use std::sync::Arc;

    use zos_api::bus::{CallError, Server, StreamSink};
    use zos_api::storage::*;
    use zos_testkit::RedisServer;
    use zos_types::Unit;

    struct Totals {
        ssd: u64,
        hdd: u64,
    }

    fn no<T>() -> Result<T, CallError> {
        Err(CallError::with_kind("internal", "not served by this test"))
    }

    impl Storage for Totals {
        async fn cache(&self) -> Result<Volume, CallError> {
            no()
        }
        async fn total(&self, kind: DeviceType) -> Result<u64, CallError> {
            Ok(match kind {
                DeviceType::Ssd => self.ssd,
                DeviceType::Hdd => self.hdd,
            })
        }
        async fn broken_pools(&self) -> Result<Vec<BrokenPool>, CallError> {
            no()
        }
        async fn broken_devices(&self) -> Result<Vec<BrokenDevice>, CallError> {
            no()
        }
        async fn volume_create(&self, _: String, _: Unit) -> Result<Volume, CallError> {
            no()
        }
        async fn volume_update(&self, _: String, _: Unit) -> Result<(), CallError> {
            no()
        }
        async fn volume_lookup(&self, _: String) -> Result<Volume, CallError> {
            no()
        }
        async fn volume_exists(&self, _: String) -> Result<bool, CallError> {
            no()
        }
        async fn volume_delete(&self, _: String) -> Result<(), CallError> {
            no()
        }
        async fn volume_list(&self) -> Result<Vec<Volume>, CallError> {
            no()
        }
        async fn disk_create(&self, _: String, _: Unit) -> Result<VDisk, CallError> {
            no()
        }
        async fn disk_resize(&self, _: String, _: Unit) -> Result<VDisk, CallError> {
            no()
        }
        async fn disk_write(&self, _: String, _: String) -> Result<(), CallError> {
            no()
        }
        async fn disk_format(&self, _: String) -> Result<(), CallError> {
            no()
        }
        async fn disk_lookup(&self, _: String) -> Result<VDisk, CallError> {
            no()
        }
        async fn disk_exists(&self, _: String) -> Result<bool, CallError> {
            no()
        }
        async fn disk_delete(&self, _: String) -> Result<(), CallError> {
            no()
        }
        async fn disk_list(&self) -> Result<Vec<VDisk>, CallError> {
            no()
        }
        async fn devices(&self) -> Result<Vec<Device>, CallError> {
            no()
        }
        async fn device_allocate(&self, _: Unit) -> Result<Device, CallError> {
            no()
        }
        async fn device_lookup(&self, _: String) -> Result<Device, CallError> {
            no()
        }
        async fn metrics(&self) -> Result<Vec<PoolMetrics>, CallError> {
            no()
        }
        async fn monitor(&self, _sink: StreamSink<PoolsStats>) {
            std::future::pending::<()>().await
        }
    }

    pub struct Running(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    );

    impl Running {
        /// Stop serving (pullers and the status object included).
        pub async fn stop(self) {
            let _ = self.0.send(());
            self.1.await.unwrap();
        }
    }

    pub fn serve(redis: &RedisServer, ssd: u64, hdd: u64) -> Running {
        let server = Server::new(
            StorageContract::MODULE,
            zos_api::bus::Broker::parse(&redis.url()).unwrap(),
        )
        .register(StorageContract::server(Arc::new(Totals { ssd, hdd })));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Running(tx, task)
    }
}

#[tokio::test]
async fn changed_relays_are_put_on_the_existing_account() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, SEED, None);
    let (_f, flags) = flags_dir();
    let mut cfg = light_config(
        &redis,
        &registrar.url(),
        FarmSource::fixed(Some(registrar.farm_id as u32)),
        &flags,
    );
    let light = Light::start(cfg.clone());
    let first = wait_registered(&redis).await;
    light.stop().await.unwrap();
    assert_eq!(
        registrar.account_of(&identity.key).unwrap().relays,
        vec!["wss://relay.test.example"]
    );

    cfg.relays = vec!["wss://a.example".into(), "wss://b.example".into()];
    let light = Light::start(cfg);
    let again = wait_registered(&redis).await;
    assert_eq!(again.twin_id, first.twin_id);
    let account = registrar.account_of(&identity.key).unwrap();
    assert_eq!(account.relays, vec!["wss://a.example", "wss://b.example"]);
    light.stop().await.unwrap();
    identity.stop().await;
}
