//! The zos-grid client against the real server on loopback (and, for the fallbacks a reference server needs,
//! against two tiny stand-ins that answer as the reference server does).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{patch, post};
use common::*;
use serde_json::{Value, json};
use zos_grid::keys::{DEV_PHRASE, KeyPair, Scheme};
use zos_grid::models::*;
use zos_grid::{
    AuthMode, ClientError, FnSigner, ManualClock, NodeFilter, RegistrarClient, SignError, Signer,
};

fn info(farm: u64) -> NodeInfo {
    NodeInfo {
        farm_id: farm,
        location: Location {
            country: "Belgium".into(),
            city: "Ghent".into(),
            longitude: "3.7".into(),
            latitude: "51.05".into(),
        },
        resources: Resources {
            hru: 0,
            sru: 1 << 40,
            cru: 4,
            mru: 1 << 33,
        },
        interfaces: vec![Interface {
            name: "zos".into(),
            mac: "aa:bb:cc:dd:ee:ff".into(),
            ips: vec!["10.0.0.5".into()],
        }],
        secure_boot: true,
        virtualized: true,
        serial_number: "SN1".into(),
    }
}

fn registration(twin: u64, i: &NodeInfo) -> NodeRegistration {
    NodeRegistration {
        twin_id: twin,
        farm_id: i.farm_id,
        resources: i.resources,
        location: i.location.clone(),
        interfaces: i.interfaces.clone(),
        secure_boot: i.secure_boot,
        virtualized: i.virtualized,
        serial_number: i.serial_number.clone(),
    }
}

/// A signer like identityd's over the bus: only a public key and an async "sign these bytes".
fn bus_like_signer(seed: [u8; 32], calls: Arc<AtomicUsize>) -> Arc<dyn Signer> {
    let key = Arc::new(KeyPair::ed25519_from_seed(&seed));
    let pk = key.public_key();
    Arc::new(FnSigner::new(pk, move |msg: Vec<u8>| {
        let key = key.clone();
        let calls = calls.clone();
        async move {
            tokio::task::yield_now().await;
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, SignError>(key.sign(&msg).to_vec())
        }
    }))
}

fn client(s: &Server, signer: Arc<dyn Signer>) -> RegistrarClient {
    // the server's clock drives the client too, so signatures are fresh for it
    RegistrarClient::with_options(&s.base, signer, AuthMode::Auto, Arc::new(s.clock.clone()))
        .unwrap()
}

#[tokio::test]
async fn node_registration_flow_through_a_bus_like_signer() {
    let s = Server::start().await;
    let farmer = client(
        &s,
        Arc::new(KeyPair::from_uri(DEV_PHRASE, Scheme::Ed25519).unwrap()),
    );
    let ft = farmer.ensure_account(&[], "").await.unwrap().twin_id;
    assert_eq!(ft, 1);
    let farm_id = farmer
        .create_farm(&CreateFarmRequest {
            farm_name: "sandbox".into(),
            twin_id: ft,
            stellar_address: STELLAR.into(),
            dedicated: false,
        })
        .await
        .unwrap();
    assert_eq!(farmer.get_farm(farm_id).await.unwrap().farm_name, "sandbox");
    let farms = farmer
        .list_farms(&zos_grid::FarmFilter {
            farm_name: Some("SAND".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        farms.iter().map(|f| f.farm_id).collect::<Vec<_>>(),
        [farm_id]
    );

    let calls = Arc::new(AtomicUsize::new(0));
    let node = client(&s, bus_like_signer([9; 32], calls.clone()));
    let relays = vec!["wss://relay.example".to_string()];
    let acc = node.ensure_account(&relays, "").await.unwrap();
    assert_eq!(acc.relays, relays);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "account creation signed once"
    );
    assert_eq!(
        node.ensure_account(&relays, "").await.unwrap(),
        acc,
        "found, not created again"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let twin = acc.twin_id;

    assert_eq!(node.get_node_by_twin(twin).await.unwrap(), None);
    let mine = info(farm_id);
    let node_id = node
        .register_node(&registration(twin, &mine))
        .await
        .unwrap();
    let remote = node
        .get_node_by_twin(twin)
        .await
        .unwrap()
        .expect("registered");
    assert_eq!((remote.node_id, remote.info()), (node_id, mine.clone()));

    // nothing changed: no PATCH
    let before = calls.load(Ordering::SeqCst);
    assert!(!node.sync_node(twin, node_id, &mine).await.unwrap());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "no signed request when nothing changed"
    );
    // a boolean back to false and a new address: one PATCH, and the record follows
    let mut changed = mine.clone();
    changed.secure_boot = false;
    changed.interfaces[0].ips = vec!["10.0.0.6".into(), "2a02::6".into()];
    assert!(node.sync_node(twin, node_id, &changed).await.unwrap());
    assert_eq!(node.get_node(node_id).await.unwrap().info(), changed);
    assert!(!node.sync_node(twin, node_id, &changed).await.unwrap());

    node.report_uptime(twin, node_id, 120, s.now())
        .await
        .unwrap();
    let n = node.get_node(node_id).await.unwrap();
    assert!(n.online && !n.last_seen.is_zero());
    let online = node
        .list_nodes(&NodeFilter {
            online: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        online.iter().map(|n| n.node_id).collect::<Vec<_>>(),
        [node_id]
    );

    // zos version: twin 1 is the admin by default
    let v = ZosVersion {
        version: "v4.0.7".into(),
        safe_to_upgrade: true,
    };
    farmer.set_zos_version(ft, &v).await.unwrap();
    assert_eq!(node.get_zos_version().await.unwrap(), v);
    assert!(
        farmer
            .set_zos_version(ft, &v)
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(
        node.set_zos_version(twin, &v)
            .await
            .unwrap_err()
            .is_unauthorized()
    );

    // errors a caller can branch on
    let e = node.get_node(999).await.unwrap_err();
    assert!(e.is_not_found() && !e.is_retryable(), "{e}");
    assert!(node.get_farm(999).await.unwrap_err().is_not_found());
    assert!(node.get_account(999).await.unwrap_err().is_not_found());
    let e = node
        .register_node(&registration(twin, &mine))
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e}");
    let e = farmer
        .update_node(
            ft,
            node_id,
            &NodeUpdate {
                secure_boot: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    let e = node
        .register_node(&registration(
            twin,
            &NodeInfo {
                serial_number: String::new(),
                ..mine.clone()
            },
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::BadRequest { .. }) && e.to_string().contains("serial_number"),
        "{e}"
    );
    node.update_account(
        twin,
        &UpdateAccountRequest {
            rmb_enc_key: Some("rmb".into()),
            relays: None,
        },
    )
    .await
    .unwrap();
    let acc = node.get_account(twin).await.unwrap();
    assert_eq!((acc.relays, acc.rmb_enc_key), (relays, "rmb".to_string()));
    s.stop().await;
}

#[tokio::test]
async fn network_errors_are_retryable() {
    zos_grid::client::install_crypto_provider();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = RegistrarClient::new(&format!("http://{addr}"), Arc::new(key(1))).unwrap();
    assert_eq!(c.base_url().path(), "/api/v1");
    let e = c.get_zos_version().await.unwrap_err();
    assert!(
        matches!(e, ClientError::Network { .. }) && e.is_retryable(),
        "{e}"
    );
    assert!(RegistrarClient::new("ftp://x", Arc::new(key(1))).is_err());
    assert_eq!(
        RegistrarClient::new("http://h/v1/", Arc::new(key(1)))
            .unwrap()
            .base_url()
            .as_str(),
        "http://h/v1"
    );
}

#[tokio::test]
async fn client_adopts_the_server_clock_when_its_own_is_off() {
    let s = Server::start().await;
    // the node's clock is 10 minutes behind: outside both the account window and the X-Auth skew
    let node_clock = ManualClock::at(T0 - 600);
    let c = RegistrarClient::with_options(
        &s.base,
        Arc::new(key(30)),
        AuthMode::V2,
        Arc::new(node_clock),
    )
    .unwrap();
    let acc = c.ensure_account(&[], "").await.unwrap();
    assert_eq!(c.clock_offset(), 600);
    // a fresh client with the same wrong clock learns it from an X-Auth rejection too
    let c2 = RegistrarClient::with_options(
        &s.base,
        Arc::new(key(30)),
        AuthMode::V2,
        Arc::new(ManualClock::at(T0 + 900)),
    )
    .unwrap();
    c2.update_account(
        acc.twin_id,
        &UpdateAccountRequest {
            rmb_enc_key: Some("x".into()),
            relays: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(c2.clock_offset(), -900);
    s.stop().await;
}

#[tokio::test]
async fn v1_mode_works_against_our_server() {
    let s = Server::start().await;
    let c = RegistrarClient::with_options(
        &s.base,
        Arc::new(key(31)),
        AuthMode::V1,
        Arc::new(s.clock.clone()),
    )
    .unwrap();
    let twin = c.ensure_account(&[], "").await.unwrap().twin_id;
    c.update_account(
        twin,
        &UpdateAccountRequest {
            relays: Some(vec!["wss://r".into()]),
            rmb_enc_key: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(c.get_account(twin).await.unwrap().relays, ["wss://r"]);
    s.stop().await;
}

/// Start a stand-in on loopback; returns its base url.
async fn stand_in(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn auto_mode_falls_back_to_v1_for_a_reference_server() {
    // The reference server splits the decoded challenge on ':' and wants exactly two parts.
    let seen: Arc<Mutex<Vec<bool>>> = Arc::default();
    let app = axum::Router::new().route(
        "/api/v1/accounts/{id}",
        patch({
            let seen = seen.clone();
            move |headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let h = headers.get("X-Auth").unwrap().to_str().unwrap().to_string();
                    let v2 = zos_grid::auth::parse_header(&h).unwrap().binding.is_some();
                    seen.lock().unwrap().push(v2);
                    if v2 {
                        (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": "Invalid challenge format"})),
                        )
                    } else {
                        (
                            StatusCode::OK,
                            axum::Json(json!({"message": "account updated successfully"})),
                        )
                    }
                }
            }
        }),
    );
    let base = stand_in(app).await;
    zos_grid::client::install_crypto_provider();
    let c = RegistrarClient::new(&base, Arc::new(key(32))).unwrap();
    c.update_account(5, &UpdateAccountRequest::default())
        .await
        .unwrap();
    c.update_account(5, &UpdateAccountRequest::default())
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [true, false, false],
        "v2 once, then v1 for good"
    );
    // with v2 forced there is no fallback
    let c = RegistrarClient::with_options(
        &base,
        Arc::new(key(32)),
        AuthMode::V2,
        Arc::new(zos_grid::SystemClock),
    )
    .unwrap();
    assert!(matches!(
        c.update_account(5, &UpdateAccountRequest::default())
            .await
            .unwrap_err(),
        ClientError::BadRequest { .. }
    ));
}

#[tokio::test]
async fn register_retries_with_joined_ips_for_an_old_server() {
    // A server from before list-valued ips rejects lists the way Go's json decoder does.
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new().route(
        "/api/v1/nodes",
        post({
            let bodies = bodies.clone();
            move |axum::Json(body): axum::Json<Value>| {
                let bodies = bodies.clone();
                async move {
                    let joined = body["interfaces"][0]["ips"].is_string();
                    bodies.lock().unwrap().push(body);
                    if joined {
                        (StatusCode::CREATED, axum::Json(json!({"node_id": 7})))
                    } else {
                        (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": "json: cannot unmarshal array into Go struct field Interface.interfaces.ips of type string"})),
                        )
                    }
                }
            }
        }),
    );
    let base = stand_in(app).await;
    zos_grid::client::install_crypto_provider();
    let c = RegistrarClient::new(&base, Arc::new(key(33))).unwrap();
    let mut i = info(1);
    i.interfaces[0].ips = vec!["10.0.0.5".into(), "2a02::1".into()];
    assert_eq!(c.register_node(&registration(3, &i)).await.unwrap(), 7);
    let seen = bodies.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1]["interfaces"][0]["ips"], "10.0.0.5/2a02::1");
}
