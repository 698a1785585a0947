//! Every endpoint of the registrar server over real HTTP on loopback, with a real SQLite database and a
//! manual clock: success paths, malformed, forged, expired (past and future) and replayed requests,
//! duplicates, unknown ids, pagination, PATCH semantics and the online computation.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use zos_grid::encoding::b64_encode;
use zos_grid::keys::{DEV_PHRASE, KeyPair, Scheme};
use zos_grid::models::ZosVersion;
use zos_registrar_server::ServerConfig;

const VECTOR_V1: &str = "MTcwMDAwMDAwMDox:UxYW2XJN+aKDHKOX/FeFoAqmgGkGXVFB7RzU0qGXaj4qolofhYpaCdTJdHizFZ3dKyKWQvWkRmIf+315XHHrDg==";
const VECTOR_SR: &str = "MTcwMDAwMDAwMDox:co25M81whNcLb0D+sqjbJjxph1x+cFstgVPnT4d8fzjG498+3k5/6MWKvOjKKNg3xUFBtKQi62rVQYJ+p/VIgw==";

fn err(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field in {v}"))
}

#[tokio::test]
async fn account_creation_get_and_duplicates() {
    let s = Server::start().await;
    let k = key(1);
    let body = account_body(&k, T0);
    let (st, acc) = s
        .call(
            Method::POST,
            "/api/v1/accounts",
            None,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{acc}");
    assert_eq!(acc["twin_id"], 1);
    assert_eq!(acc["public_key"], k.public_key_base64());
    assert_eq!(acc["relays"], json!(["wss://relay.example"]));
    assert_eq!(acc["rmb_enc_key"], "k1");
    assert_eq!(acc["created_at"], "2023-11-14T22:13:20Z");

    // duplicate public key: 409, not 500
    let (st, b) = s
        .call(
            Method::POST,
            "/api/v1/accounts/",
            None,
            Some(&account_body(&k, T0 + 1).to_string()),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(err(&b).contains("already exists"));

    // GET by twin and by public key, under both prefixes; an unescaped '+' (arriving as a space) still works
    assert_eq!(
        s.get("/api/v1/accounts?twin_id=1").await,
        (StatusCode::OK, acc.clone())
    );
    let pk = k.public_key_base64();
    let enc: String = pk
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    assert_eq!(
        s.get(&format!("/v1/accounts?public_key={enc}")).await,
        (StatusCode::OK, acc.clone())
    );
    assert_eq!(
        s.get(&format!(
            "/api/v1/accounts?public_key={}",
            pk.replace('=', "%3D")
        ))
        .await
        .0,
        StatusCode::OK
    );

    // errors
    let (st, b) = s.get("/api/v1/accounts?twin_id=2").await;
    assert_eq!((st, err(&b)), (StatusCode::NOT_FOUND, "account not found"));
    assert_eq!(s.get("/api/v1/accounts").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        s.get(&format!("/api/v1/accounts?twin_id=1&public_key={enc}"))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (st, b) = s.get("/api/v1/accounts?twin_id=abc").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(err(&b).contains("twin_id"), "{b}");
    assert_eq!(
        s.get("/api/v1/accounts?public_key=AAAA").await.0,
        StatusCode::BAD_REQUEST
    );
    s.stop().await;
}

#[tokio::test]
async fn account_creation_rejects_bad_input_and_stores_nothing() {
    let s = Server::start().await;
    let k = key(2);
    let post = |b: Value| {
        let s = &s;
        async move {
            s.call(Method::POST, "/api/v1/accounts", None, Some(&b.to_string()))
                .await
        }
    };
    // malformed json / missing fields / zero timestamp
    let (st, b) = s
        .call(Method::POST, "/api/v1/accounts", None, Some("{not json"))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(err(&b).starts_with("invalid request body"), "{b}");
    let mut body = account_body(&k, T0);
    body["timestamp"] = json!(0);
    assert_eq!(post(body).await.0, StatusCode::BAD_REQUEST);
    // a public key that is not 32 bytes
    let mut body = account_body(&k, T0);
    body["public_key"] = json!(b64_encode(&[1u8; 31]));
    let (st, b) = post(body).await;
    assert_eq!(
        (st, err(&b).starts_with("invalid public key format")),
        (StatusCode::BAD_REQUEST, true),
        "{b}"
    );
    // forged: signed by another key
    let mut body = account_body(&key(3), T0);
    body["public_key"] = json!(k.public_key_base64());
    let (st, b) = post(body).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    // signature over another timestamp
    let mut body = account_body(&k, T0);
    body["timestamp"] = json!(T0 + 1);
    assert_eq!(post(body).await.0, StatusCode::UNAUTHORIZED);
    // outside the ±300 s window, past and future: 400 with the server's time
    for ts in [T0 - 301, T0 + 301] {
        let (st, b) = post(account_body(&k, ts)).await;
        assert_eq!(
            (st, err(&b)),
            (
                StatusCode::BAD_REQUEST,
                "timestamp outside acceptable window"
            )
        );
        assert_eq!(b["server_time"], T0);
    }
    // nothing was stored
    let pk = k
        .public_key_base64()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    assert_eq!(
        s.get(&format!("/api/v1/accounts?public_key={pk}")).await.0,
        StatusCode::NOT_FOUND
    );
    // inside the (wider than the reference 2 s) window it works
    let (st, b) = post(account_body(&k, T0 - 299)).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    s.stop().await;
}

#[tokio::test]
async fn sr25519_accounts_are_accepted() {
    let s = Server::start().await;
    let sr = KeyPair::from_uri(DEV_PHRASE, Scheme::Sr25519).unwrap();
    let twin = s.account(&sr).await;
    assert_eq!(twin, 1);
    // the sr25519 X-Auth vector of the reference (twin 1, t=1700000000) verifies
    let (st, b) = s
        .call(
            Method::PATCH,
            "/api/v1/accounts/1",
            Some(VECTOR_SR),
            Some(r#"{"rmb_enc_key":"x"}"#),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    // and a fresh sr25519 v2 request too
    let (st, b) = s
        .v2(
            &sr,
            twin,
            Method::PATCH,
            "/accounts/1",
            &json!({"relays": []}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    s.stop().await;
}

#[tokio::test]
async fn x_auth_vector_expiry_both_ways_and_replay() {
    let s = Server::start().await;
    let ed = KeyPair::from_uri(DEV_PHRASE, Scheme::Ed25519).unwrap();
    assert_eq!(s.account(&ed).await, 1);
    let patch = |auth: &'static str, body: &'static str| {
        let s = &s;
        async move {
            s.call(Method::PATCH, "/api/v1/accounts/1", Some(auth), Some(body))
                .await
        }
    };
    // expired: 61 s after the challenge (reference: 60 s in the past allowed)
    s.clock.set(T0 + 61);
    let (st, b) = patch(VECTOR_V1, r#"{"rmb_enc_key":"a"}"#).await;
    assert_eq!(
        (st, err(&b)),
        (StatusCode::UNAUTHORIZED, "Expired challenge")
    );
    assert_eq!(b["server_time"], T0 + 61);
    // future-dated beyond the skew: refused too (the reference accepts these forever)
    s.clock.set(T0 - 61);
    let (st, b) = patch(VECTOR_V1, r#"{"rmb_enc_key":"a"}"#).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    assert!(err(&b).contains("future"), "{b}");
    assert_eq!(b["server_time"], T0 - 61);
    // within the window: the exact reference header works
    s.clock.set(T0 + 60);
    assert_eq!(
        patch(VECTOR_V1, r#"{"rmb_enc_key":"a"}"#).await.0,
        StatusCode::OK
    );
    // the very same request again: replay
    let (st, b) = patch(VECTOR_V1, r#"{"rmb_enc_key":"a"}"#).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(err(&b).contains("already used"), "{b}");
    // a v1 header does not bind the request: a different request in the same second is accepted (the Go client
    // sends e.g. POST /nodes and PATCH /nodes/:id within one second with the same header)
    assert_eq!(
        patch(VECTOR_V1, r#"{"rmb_enc_key":"b"}"#).await.0,
        StatusCode::OK
    );
    // after the window the header is dead, and the replay cache forgot it
    s.clock.set(T0 + 62);
    assert_eq!(
        patch(VECTOR_V1, r#"{"rmb_enc_key":"c"}"#).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

#[tokio::test]
async fn x_auth_malformed_forged_and_v2_binding() {
    let s = Server::start().await;
    let k = key(4);
    let twin = s.account(&k).await;
    let other = key(5);
    let other_twin = s.account(&other).await;
    let body = r#"{"rmb_enc_key":"z"}"#;
    let path = format!("/api/v1/accounts/{twin}");
    let cases: Vec<(Option<String>, StatusCode, &str)> = vec![
        (
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization header required",
        ),
        (
            Some("garbage".into()),
            StatusCode::BAD_REQUEST,
            "Invalid header format. Use 'Challenge:Signature'",
        ),
        (
            Some("!!!:AAAA".into()),
            StatusCode::BAD_REQUEST,
            "Invalid challenge encoding",
        ),
        (
            Some(format!("{}:AAAA", b64_encode(b"1700000000"))),
            StatusCode::BAD_REQUEST,
            "Invalid challenge format",
        ),
        (
            Some(format!("{}:AAAA", b64_encode(b"x:1"))),
            StatusCode::BAD_REQUEST,
            "Invalid timestamp",
        ),
        (
            Some(format!("{}:AAAA", b64_encode(b"1700000000:x"))),
            StatusCode::BAD_REQUEST,
            "Invalid twin ID format",
        ),
        (
            Some(v1_header(&k, 99, T0)),
            StatusCode::NOT_FOUND,
            "Account not found",
        ),
        // forged: twin's challenge signed with another key
        (
            Some(v1_header(&other, twin, T0)),
            StatusCode::UNAUTHORIZED,
            "Signature verification failed",
        ),
        // truncated signature
        (
            Some(format!(
                "{}:{}",
                b64_encode(format!("{T0}:{twin}").as_bytes()),
                b64_encode(&[0u8; 10])
            )),
            StatusCode::UNAUTHORIZED,
            "Signature verification failed",
        ),
        // authenticated, but not the owner
        (
            Some(v1_header(&other, other_twin, T0)),
            StatusCode::UNAUTHORIZED,
            "not authorized",
        ),
    ];
    for (auth, status, msg) in cases {
        let (st, b) = s
            .call(Method::PATCH, &path, auth.as_deref(), Some(body))
            .await;
        assert_eq!(st, status, "{auth:?}: {b}");
        assert!(err(&b).starts_with(msg), "{auth:?}: {b}");
    }
    // v2: bound to method, path and body
    let good = v2_header(
        &k,
        twin,
        T0,
        "PATCH",
        &format!("/accounts/{twin}"),
        body.as_bytes(),
    );
    let (st, b) = s
        .call(
            Method::PATCH,
            &path,
            Some(&good),
            Some(r#"{"rmb_enc_key":"evil"}"#),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(err(&b).contains("body differs"), "{b}");
    let wrong_path = v2_header(&k, twin, T0, "PATCH", "/accounts/999", body.as_bytes());
    let (st, b) = s
        .call(Method::PATCH, &path, Some(&wrong_path), Some(body))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(err(&b).contains("path differs"), "{b}");
    let wrong_method = v2_header(
        &k,
        twin,
        T0,
        "POST",
        &format!("/accounts/{twin}"),
        body.as_bytes(),
    );
    assert_eq!(
        s.call(Method::PATCH, &path, Some(&wrong_method), Some(body))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // the same v2 header works under /v1 too (it signs the path relative to the API root) ...
    let fresh = v2_header(
        &k,
        twin,
        T0,
        "PATCH",
        &format!("/accounts/{twin}"),
        body.as_bytes(),
    );
    assert_eq!(
        s.call(
            Method::PATCH,
            &format!("/v1/accounts/{twin}"),
            Some(&fresh),
            Some(body)
        )
        .await
        .0,
        StatusCode::OK
    );
    // ... but only once
    let (st, b) = s.call(Method::PATCH, &path, Some(&fresh), Some(body)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(err(&b).contains("already used"), "{b}");
    // two v2 requests in the same second with identical content are fine (each has its own nonce)
    assert_eq!(
        s.v2(
            &k,
            twin,
            Method::PATCH,
            &format!("/accounts/{twin}"),
            &json!({"rmb_enc_key": "q"})
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        s.v2(
            &k,
            twin,
            Method::PATCH,
            &format!("/accounts/{twin}"),
            &json!({"rmb_enc_key": "q"})
        )
        .await
        .0,
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test]
async fn v1_can_be_switched_off() {
    let s = Server::start_with(
        ServerConfig {
            accept_v1_auth: false,
            ..ServerConfig::default()
        },
        ":memory:",
    )
    .await;
    let k = key(6);
    let twin = s.account(&k).await;
    let (st, b) = s
        .v1(
            &k,
            twin,
            Method::PATCH,
            &format!("/api/v1/accounts/{twin}"),
            &json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(err(&b).contains("v1"), "{b}");
    assert_eq!(
        s.v2(
            &k,
            twin,
            Method::PATCH,
            &format!("/accounts/{twin}"),
            &json!({})
        )
        .await
        .0,
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test]
async fn account_patch_touches_only_fields_present() {
    let s = Server::start().await;
    let k = key(7);
    let twin = s.account(&k).await;
    let p = format!("/accounts/{twin}");
    let (st, b) = s
        .v2(
            &k,
            twin,
            Method::PATCH,
            &p,
            &json!({"relays": ["wss://a", "wss://b"]}),
        )
        .await;
    assert_eq!(
        (st, b),
        (
            StatusCode::OK,
            json!({"message": "account updated successfully"})
        )
    );
    let acc = s.get(&format!("/api/v1/accounts?twin_id={twin}")).await.1;
    assert_eq!(
        (acc["relays"].clone(), acc["rmb_enc_key"].clone()),
        (json!(["wss://a", "wss://b"]), json!("k1"))
    );
    assert_eq!(
        s.v2(&k, twin, Method::PATCH, &p, &json!({"rmb_enc_key": "k2"}))
            .await
            .0,
        StatusCode::OK
    );
    let acc = s.get(&format!("/api/v1/accounts?twin_id={twin}")).await.1;
    assert_eq!(
        (acc["relays"].clone(), acc["rmb_enc_key"].clone()),
        (json!(["wss://a", "wss://b"]), json!("k2"))
    );
    // bad body: 400 and nothing changed
    let (st, b) = s
        .v2(&k, twin, Method::PATCH, &p, &json!({"relays": "wss://c"}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        s.get(&format!("/api/v1/accounts?twin_id={twin}")).await.1["relays"],
        json!(["wss://a", "wss://b"])
    );
    // bad id
    assert_eq!(
        s.v2(&k, twin, Method::PATCH, "/accounts/x", &json!({}))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    s.stop().await;
}

#[tokio::test]
async fn farms_create_get_patch_and_errors() {
    let s = Server::start().await;
    let k = key(8);
    let twin = s.account(&k).await;
    let other = key(9);
    let other_twin = s.account(&other).await;
    // a client-supplied farm_id is ignored
    let mut body = farm_body("FreeFarm", twin);
    body["farm_id"] = json!(77);
    let (st, b) = s.v2(&k, twin, Method::POST, "/farms", &body).await;
    assert_eq!((st, b), (StatusCode::CREATED, json!({"farm_id": 1})));
    let (st, farm) = s.get("/api/v1/farms/1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (
            farm["farm_name"].as_str(),
            farm["twin_id"].as_u64(),
            farm["dedicated"].as_bool()
        ),
        (Some("FreeFarm"), Some(twin), Some(false))
    );
    assert_eq!(s.get("/api/v1/farms/77").await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/farms/x").await.0, StatusCode::BAD_REQUEST);

    // duplicates and bad input
    let (st, b) = s
        .v2(
            &k,
            twin,
            Method::POST,
            "/farms",
            &farm_body("FreeFarm", twin),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    for bad in ["", "has space", "dash-farm", &"x".repeat(41)] {
        let (st, b) = s
            .v2(&k, twin, Method::POST, "/farms", &farm_body(bad, twin))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad:?}: {b}");
        assert!(err(&b).contains("farm_name"), "{b}");
    }
    let mut body = farm_body("Farm2", twin);
    body["stellar_address"] = json!("gabc");
    let (st, b) = s.v2(&k, twin, Method::POST, "/farms", &body).await;
    assert!(
        st == StatusCode::BAD_REQUEST && err(&b).contains("stellar_address"),
        "{b}"
    );
    // creating a farm for someone else
    let (st, b) = s
        .v2(
            &k,
            twin,
            Method::POST,
            "/farms",
            &farm_body("Farm3", other_twin),
        )
        .await;
    assert_eq!((st, err(&b)), (StatusCode::UNAUTHORIZED, "not authorized"));
    assert_eq!(
        s.get("/api/v1/farms").await.1.as_array().unwrap().len(),
        1,
        "nothing stored by the failures"
    );

    // PATCH: name only leaves the stellar address (reference: stellar_address required every time)
    let (st, b) = s
        .v2(
            &k,
            twin,
            Method::PATCH,
            "/farms/1",
            &json!({"farm_name": "  Renamed "}),
        )
        .await;
    assert_eq!(
        (st, b),
        (
            StatusCode::OK,
            json!({"message": "Farm was updated successfully"})
        )
    );
    let farm = s.get("/api/v1/farms/1").await.1;
    assert_eq!(
        (farm["farm_name"].as_str(), farm["stellar_address"].as_str()),
        (Some("Renamed"), Some(STELLAR))
    );
    assert_eq!(
        s.v2(
            &other,
            other_twin,
            Method::PATCH,
            "/farms/1",
            &json!({"farm_name": "Mine"})
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.v2(
            &k,
            twin,
            Method::PATCH,
            "/farms/9",
            &json!({"farm_name": "X"})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    s.farm(&other, other_twin, "Taken").await;
    assert_eq!(
        s.v2(
            &k,
            twin,
            Method::PATCH,
            "/farms/1",
            &json!({"farm_name": "Taken"})
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        s.v2(
            &k,
            twin,
            Method::PATCH,
            "/farms/1",
            &json!({"farm_name": "bad name"})
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(s.get("/api/v1/farms/1").await.1["farm_name"], "Renamed");
    s.stop().await;
}

#[tokio::test]
async fn farm_list_filters_and_stable_pagination() {
    let s = Server::start_with(
        ServerConfig {
            max_page_size: 3,
            ..ServerConfig::default()
        },
        ":memory:",
    )
    .await;
    let (a, b) = (key(10), key(11));
    let (ta, tb) = (s.account(&a).await, s.account(&b).await);
    for (i, name) in ["alpha", "Beta", "gamma", "ALPHAbet", "delta"]
        .iter()
        .enumerate()
    {
        if i % 2 == 0 {
            s.farm(&a, ta, name).await
        } else {
            s.farm(&b, tb, name).await
        };
    }
    let ids = |v: Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| f["farm_id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(s.get("/api/v1/farms?size=2&page=1").await.1), [1, 2]);
    assert_eq!(ids(s.get("/api/v1/farms?size=2&page=2").await.1), [3, 4]);
    assert_eq!(ids(s.get("/api/v1/farms?size=2&page=3").await.1), [5]);
    assert_eq!(
        ids(s.get("/api/v1/farms?size=2&page=4").await.1),
        Vec::<u64>::new()
    );
    assert_eq!(
        ids(s.get("/api/v1/farms?size=2&page=0").await.1),
        [1, 2],
        "page 0 is page 1"
    );
    assert_eq!(
        ids(s.get("/api/v1/farms?size=1000").await.1),
        [1, 2, 3],
        "size is capped"
    );
    assert_eq!(
        ids(s.get("/api/v1/farms?farm_name=alp").await.1),
        [1, 4],
        "case-insensitive substring"
    );
    assert_eq!(
        ids(s.get("/api/v1/farms?farm_name=%25").await.1),
        Vec::<u64>::new(),
        "% is literal"
    );
    assert_eq!(
        ids(s.get(&format!("/api/v1/farms?twin_id={tb}")).await.1),
        [2, 4]
    );
    assert_eq!(ids(s.get("/api/v1/farms?farm_id=3").await.1), [3]);
    let (st, b) = s.get("/api/v1/farms?page=x").await;
    assert!(
        st == StatusCode::BAD_REQUEST && err(&b).contains("page"),
        "{b}"
    );
    assert_eq!(
        s.get("/api/v1/farms?size=-1").await.0,
        StatusCode::BAD_REQUEST
    );
    s.stop().await;
}

#[tokio::test]
async fn node_registration_and_errors() {
    let s = Server::start().await;
    let farmer = key(12);
    let ft = s.account(&farmer).await;
    let farm = s.farm(&farmer, ft, "farm").await;
    let nk = key(13);
    let nt = s.account(&nk).await;

    // unknown farm: 404 naming it, not 500
    let (st, b) = s
        .v2(&nk, nt, Method::POST, "/nodes", &node_body(nt, 42))
        .await;
    assert_eq!((st, err(&b)), (StatusCode::NOT_FOUND, "farm 42 not found"));
    // validation
    let mut body = node_body(nt, farm);
    body["serial_number"] = json!("");
    let (st, b) = s.v2(&nk, nt, Method::POST, "/nodes", &body).await;
    assert_eq!(
        (st, err(&b)),
        (StatusCode::BAD_REQUEST, "serial_number is required")
    );
    let mut body = node_body(nt, farm);
    body["interfaces"] = json!([]);
    assert_eq!(
        s.v2(&nk, nt, Method::POST, "/nodes", &body).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut body = node_body(nt, farm);
    body["interfaces"][0]["ips"] = json!(["10.0.0.5/24"]);
    let (st, b) = s.v2(&nk, nt, Method::POST, "/nodes", &body).await;
    assert!(
        st == StatusCode::BAD_REQUEST && err(&b).contains("ips"),
        "{b}"
    );
    let mut body = node_body(nt, farm);
    body["farm_id"] = json!(0);
    assert_eq!(
        s.v2(&nk, nt, Method::POST, "/nodes", &body).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.v2(&nk, nt, Method::POST, "/nodes", &json!({"twin_id": "one"}))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // registering for another twin
    assert_eq!(
        s.v2(&nk, nt, Method::POST, "/nodes", &node_body(ft, farm))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/api/v1/nodes").await.1,
        json!([]),
        "nothing stored by the failures"
    );

    // the legacy '/'-joined ips string is accepted (Go's fallback body), and the node reads back as the real server emits it
    let mut body = node_body(nt, farm);
    body["interfaces"][0]["ips"] = json!("10.0.0.5/2a02::1");
    body["node_id"] = json!(99);
    let (st, b) = s.v1(&nk, nt, Method::POST, "/api/v1/nodes", &body).await;
    assert_eq!((st, b), (StatusCode::CREATED, json!({"node_id": 1})));
    let (st, node) = s.get("/api/v1/nodes/1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        node["Interfaces"],
        json!([{"name": "zos", "mac": "aa:bb:cc:dd:ee:ff", "ips": ["10.0.0.5", "2a02::1"]}])
    );
    assert!(node.get("interfaces").is_none());
    assert_eq!(node["last_seen"], "0001-01-01T00:00:00Z");
    assert_eq!(
        (node["online"].as_bool(), node["approved"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(
        (node["twin_id"].as_u64(), node["farm_id"].as_u64()),
        (Some(nt), Some(farm))
    );
    assert_eq!(node["resources"]["sru"], 512_110_190_592u64);
    assert_eq!(node["location"]["latitude"], "51.05");

    // one node per twin: 409, not 500
    let (st, b) = s
        .v2(&nk, nt, Method::POST, "/nodes", &node_body(nt, farm))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(err(&b).contains("already has node 1"), "{b}");
    assert_eq!(s.get("/api/v1/nodes/2").await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/nodes/-1").await.0, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn node_patch_sets_false_and_only_what_is_sent() {
    let s = Server::start().await;
    let farmer = key(14);
    let ft = s.account(&farmer).await;
    let farm = s.farm(&farmer, ft, "one").await;
    let farm2 = s.farm(&farmer, ft, "two").await;
    let nk = key(15);
    let nt = s.account(&nk).await;
    let id = s.node(&nk, nt, farm).await;
    let path = format!("/nodes/{id}");
    let node = || async { s.get(&format!("/api/v1/nodes/{id}")).await.1 };
    assert_eq!(
        (
            node().await["secure_boot"].clone(),
            node().await["virtualized"].clone()
        ),
        (json!(true), json!(true))
    );

    // booleans back to false (the reference silently ignores false)
    let (st, b) = s
        .v2(
            &nk,
            nt,
            Method::PATCH,
            &path,
            &json!({"secure_boot": false, "virtualized": false}),
        )
        .await;
    assert_eq!(
        (st, b),
        (
            StatusCode::OK,
            json!({"message": "node updated successfully"})
        )
    );
    let n = node().await;
    assert_eq!(
        (
            n["secure_boot"].clone(),
            n["virtualized"].clone(),
            n["serial_number"].clone()
        ),
        (json!(false), json!(false), json!("ABC123"))
    );
    // only the serial
    assert_eq!(
        s.v2(
            &nk,
            nt,
            Method::PATCH,
            &path,
            &json!({"serial_number": "NEW"})
        )
        .await
        .0,
        StatusCode::OK
    );
    let n = node().await;
    assert_eq!(
        (
            n["serial_number"].clone(),
            n["secure_boot"].clone(),
            n["Interfaces"][0]["name"].clone()
        ),
        (json!("NEW"), json!(false), json!("zos"))
    );
    // the whole Node as the Go client PATCHes it (capitalised Interfaces, extra fields) is accepted
    let mut whole = node().await;
    whole["Interfaces"][0]["ips"] = json!(["10.0.0.9"]);
    whole["secure_boot"] = json!(true);
    assert_eq!(
        s.v2(&nk, nt, Method::PATCH, &path, &whole).await.0,
        StatusCode::OK
    );
    let n = node().await;
    assert_eq!(
        (n["Interfaces"][0]["ips"].clone(), n["secure_boot"].clone()),
        (json!(["10.0.0.9"]), json!(true))
    );

    // moving to another farm resets approval
    s.store.set_node_approved(id, true).unwrap();
    assert_eq!(node().await["approved"], true);
    assert_eq!(
        s.v2(&nk, nt, Method::PATCH, &path, &json!({"farm_id": farm}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(node().await["approved"], true, "same farm: approval kept");
    assert_eq!(
        s.v2(&nk, nt, Method::PATCH, &path, &json!({"farm_id": farm2}))
            .await
            .0,
        StatusCode::OK
    );
    let n = node().await;
    assert_eq!(
        (n["approved"].clone(), n["farm_id"].clone()),
        (json!(false), json!(farm2))
    );

    // errors change nothing
    assert_eq!(
        s.v2(&nk, nt, Method::PATCH, &path, &json!({"farm_id": 999}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.v2(
            &nk,
            nt,
            Method::PATCH,
            &path,
            &json!({"serial_number": " "})
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.v2(&nk, nt, Method::PATCH, &path, &json!({"interfaces": []}))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.v2(&nk, nt, Method::PATCH, &path, &json!({"secure_boot": "no"}))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.v2(
            &farmer,
            ft,
            Method::PATCH,
            &path,
            &json!({"secure_boot": false})
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.v2(&nk, nt, Method::PATCH, "/nodes/77", &json!({}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let n = node().await;
    assert_eq!(
        (
            n["farm_id"].clone(),
            n["serial_number"].clone(),
            n["secure_boot"].clone()
        ),
        (json!(farm2), json!("NEW"), json!(true))
    );
    s.stop().await;
}

#[tokio::test]
async fn uptime_reports_and_online_state() {
    let s = Server::start().await;
    let farmer = key(16);
    let ft = s.account(&farmer).await;
    let farm = s.farm(&farmer, ft, "f").await;
    let (k1, k2) = (key(17), key(18));
    let (t1, t2) = (s.account(&k1).await, s.account(&k2).await);
    let (n1, n2) = (s.node(&k1, t1, farm).await, s.node(&k2, t2, farm).await);
    let up = format!("/nodes/{n1}/uptime");

    let (st, b) = s
        .v2(
            &k1,
            t1,
            Method::POST,
            &up,
            &json!({"uptime": 100, "timestamp": s.now()}),
        )
        .await;
    assert_eq!(
        (st, b),
        (
            StatusCode::CREATED,
            json!({"message": "uptime reported successfully"})
        )
    );
    let n = s.get(&format!("/api/v1/nodes/{n1}")).await.1;
    assert_eq!(
        (n["online"].clone(), n["last_seen"].clone()),
        (json!(true), json!("2023-11-14T22:13:20Z"))
    );

    // the online cutoff (90 min) is comfortably above the 40 min report interval: a late report does not flap
    s.clock.advance(89 * 60);
    assert_eq!(
        s.get(&format!("/api/v1/nodes/{n1}")).await.1["online"],
        true
    );
    let ids = |v: Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| f["node_id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(s.get("/api/v1/nodes?online=true").await.1), [n1]);
    assert_eq!(ids(s.get("/api/v1/nodes?online=false").await.1), [n2]);
    assert_eq!(
        ids(s.get("/api/v1/nodes?status=online&healthy=false").await.1),
        [n1]
    );
    assert_eq!(
        ids(s.get("/api/v1/nodes?last_seen=60").await.1),
        Vec::<u64>::new(),
        "not seen within 60 min"
    );
    assert_eq!(
        ids(s.get("/api/v1/nodes?online=true&last_seen=120").await.1),
        [n1]
    );
    s.clock.advance(2 * 60);
    assert_eq!(
        s.get(&format!("/api/v1/nodes/{n1}")).await.1["online"],
        false
    );
    assert_eq!(ids(s.get("/api/v1/nodes?online=false").await.1), [n1, n2]);
    assert_eq!(
        s.get("/api/v1/nodes?online=maybe").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.get("/api/v1/nodes?status=sleepy").await.0,
        StatusCode::BAD_REQUEST
    );

    // timestamps outside ±60 s, zero uptime, wrong owner, unknown node
    for ts in [s.now() - 61, s.now() + 61] {
        let (st, b) = s
            .v2(
                &k1,
                t1,
                Method::POST,
                &up,
                &json!({"uptime": 5, "timestamp": ts}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(err(&b).starts_with("invalid timestamp hint"), "{b}");
        assert_eq!(b["server_time"], s.now());
    }
    assert_eq!(
        s.v2(
            &k1,
            t1,
            Method::POST,
            &up,
            &json!({"uptime": 0, "timestamp": s.now()})
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.v2(
            &k1,
            t1,
            Method::POST,
            &up,
            &json!({"Uptime": 5, "Timestamp": "2023-11-14T22:13:20Z"})
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.v2(
            &k2,
            t2,
            Method::POST,
            &up,
            &json!({"uptime": 5, "timestamp": s.now()})
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.v2(
            &k1,
            t1,
            Method::POST,
            "/nodes/99/uptime",
            &json!({"uptime": 5, "timestamp": s.now()})
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/api/v1/nodes/{n1}")).await.1["online"],
        false,
        "failed reports do not mark the node seen"
    );

    // a lower uptime than last time is recorded as a restart
    assert_eq!(
        s.v2(
            &k1,
            t1,
            Method::POST,
            &up,
            &json!({"uptime": 30, "timestamp": s.now()})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.get(&format!("/api/v1/nodes/{n1}")).await.1["online"],
        true
    );
    let reports = s.store.uptime_reports(n1).unwrap();
    assert_eq!(reports, vec![(100, T0, false), (30, s.now(), true)]);
    s.stop().await;
}

#[tokio::test]
async fn node_list_filters_and_pagination() {
    let s = Server::start().await;
    let farmer = key(19);
    let ft = s.account(&farmer).await;
    let (fa, fb) = (
        s.farm(&farmer, ft, "a").await,
        s.farm(&farmer, ft, "b").await,
    );
    let mut twins = Vec::new();
    for i in 0..5u8 {
        let k = key(40 + i);
        let t = s.account(&k).await;
        s.node(&k, t, if i < 3 { fa } else { fb }).await;
        twins.push(t);
    }
    let ids = |v: Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| f["node_id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(s.get("/api/v1/nodes?size=2").await.1), [1, 2]);
    assert_eq!(ids(s.get("/api/v1/nodes?size=2&page=3").await.1), [5]);
    assert_eq!(
        ids(s.get(&format!("/api/v1/nodes?farm_id={fb}")).await.1),
        [4, 5]
    );
    assert_eq!(
        ids(s
            .get(&format!(
                "/api/v1/nodes?twin_id={}&page=1&size=50",
                twins[2]
            ))
            .await
            .1),
        [3]
    );
    assert_eq!(ids(s.get("/api/v1/nodes?node_id=2").await.1), [2]);
    // what the Go client sends for "list everything": farm_id=0 and healthy=false mean no filter
    assert_eq!(
        ids(s
            .get("/api/v1/nodes?farm_id=0&healthy=false&page=1&size=50")
            .await
            .1),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        s.get("/api/v1/nodes?twin_id=x").await.0,
        StatusCode::BAD_REQUEST
    );
    s.stop().await;
}

#[tokio::test]
async fn zos_version_admin_vectors_and_conflicts() {
    let s = Server::start_with(
        ServerConfig {
            admin_twin: 2,
            ..ServerConfig::default()
        },
        ":memory:",
    )
    .await;
    let (k1, admin) = (key(20), key(21));
    let t1 = s.account(&k1).await;
    let ta = s.account(&admin).await;
    assert_eq!(ta, 2);
    let (st, b) = s.get("/api/v1/zos/version").await;
    assert_eq!(
        (st, err(&b)),
        (StatusCode::NOT_FOUND, "zos version not set")
    );
    let vector = "eyJ2ZXJzaW9uIjoidjQuMC41Iiwic2FmZV90b191cGdyYWRlIjp0cnVlfQ==";
    let body = json!({"version": vector});
    let (st, b) = s.v2(&k1, t1, Method::PUT, "/zos/version", &body).await;
    assert_eq!((st, err(&b)), (StatusCode::UNAUTHORIZED, "not authorized"));
    let (st, b) = s.v2(&admin, ta, Method::PUT, "/zos/version", &body).await;
    assert_eq!(
        (st, b),
        (StatusCode::OK, Value::Null),
        "200 with an empty body"
    );
    assert_eq!(
        s.get("/v1/zos/version").await,
        (StatusCode::OK, json!(vector))
    );
    let (st, b) = s.v2(&admin, ta, Method::PUT, "/zos/version", &body).await;
    assert_eq!((st, err(&b)), (StatusCode::CONFLICT, "version already set"));
    // the legacy single-quoted form is accepted and served in the canonical form
    let legacy = json!({"version": "eyd2ZXJzaW9uJzondjQuMC41Jywnc2FmZV90b191cGdyYWRlJzpmYWxzZX0="});
    assert_eq!(
        s.v2(&admin, ta, Method::PUT, "/zos/version", &legacy)
            .await
            .0,
        StatusCode::OK
    );
    let served = s.get("/api/v1/zos/version").await.1;
    assert_eq!(
        ZosVersion::decode(served.as_str().unwrap()).unwrap(),
        ZosVersion {
            version: "v4.0.5".into(),
            safe_to_upgrade: false
        }
    );
    assert_eq!(
        served,
        json!(
            ZosVersion {
                version: "v4.0.5".into(),
                safe_to_upgrade: false
            }
            .encode()
        )
    );
    // garbage is refused and the stored value survives
    for bad in [
        json!({"version": "%%%"}),
        json!({"version": b64_encode(b"{\"v\":1}")}),
        json!({"nope": 1}),
    ] {
        let (st, b) = s.v2(&admin, ta, Method::PUT, "/zos/version", &bad).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    assert_eq!(s.get("/api/v1/zos/version").await.1, served);
    s.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let s = Server::start().await;
    let (st, b) = s.get("/api/v1/nodes/1/consumption").await;
    assert_eq!((st, err(&b)), (StatusCode::NOT_FOUND, "no such endpoint"));
    let (st, b) = s.call(Method::DELETE, "/api/v1/nodes/1", None, None).await;
    assert_eq!(
        (st, err(&b)),
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    );
    s.stop().await;
}

#[tokio::test]
async fn data_and_used_challenges_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("registrar.db");
    let db = db.to_str().unwrap();
    let k = key(22);
    let s = Server::start_with(ServerConfig::default(), db).await;
    let twin = s.account(&k).await;
    let header = v1_header(&k, twin, T0);
    let path = format!("/api/v1/accounts/{twin}");
    assert_eq!(
        s.call(Method::PATCH, &path, Some(&header), Some("{}"))
            .await
            .0,
        StatusCode::OK
    );
    s.stop().await;
    let s = Server::start_with(ServerConfig::default(), db).await;
    assert_eq!(
        s.get(&format!("/api/v1/accounts?twin_id={twin}")).await.0,
        StatusCode::OK
    );
    let (st, b) = s
        .call(Method::PATCH, &path, Some(&header), Some("{}"))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "replay after restart: {b}");
    s.stop().await;
}
