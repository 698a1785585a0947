//! Server behaviour at the wire level, against a real redis-server: malformed requests, reply keys that are not
//! UUIDs, requests pulled after their deadline, replies with an expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_bytes::ByteBuf;
use zos_bus::wire::{Request, Response};
use zos_bus::{Broker, CallOptions, Client, ObjectId, Server, ServerHandle, ServerObject, codec};
use zos_testkit::RedisServer;
use zos_types::{GoTime, msgpack};

fn echo_object(runs: Arc<AtomicUsize>) -> ServerObject {
    ServerObject::new(ObjectId::new("echo", "1.0"), move |method, inputs| {
        let runs = runs.clone();
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            match method.as_str() {
                "Echo" => {
                    codec::check_arg_count(&inputs, 1, false)?;
                    let s: String = codec::decode_arg(&inputs, 0, "string")?;
                    codec::value_output(Ok(s))
                }
                other => Err(codec::unknown_method(other)),
            }
        })
    })
}

fn start(redis: &RedisServer, runs: Arc<AtomicUsize>) -> ServerHandle {
    Server::new("raw", Broker::parse(&redis.url()).unwrap())
        .register(echo_object(runs))
        .spawn()
}

async fn rpush(redis: &RedisServer, key: &str, payload: &[u8]) {
    let client = redis::Client::open(format!("redis+unix://{}", redis.socket().display())).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("RPUSH")
        .arg(key)
        .arg(payload)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn blpop(redis: &RedisServer, key: &str, secs: f64) -> Option<Vec<u8>> {
    let client = redis::Client::open(format!("redis+unix://{}", redis.socket().display())).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .unwrap();
    let r: Option<(String, Vec<u8>)> = redis::cmd("BLPOP")
        .arg(key)
        .arg(secs)
        .query_async(&mut conn)
        .await
        .unwrap();
    r.map(|(_, v)| v)
}

fn request(reply_to: &str, deadline: Option<GoTime>) -> Vec<u8> {
    msgpack::to_vec(&Request {
        id: reply_to.to_string(),
        inputs: vec![ByteBuf::from(msgpack::to_vec("hi").unwrap())],
        object: ObjectId::new("echo", "1.0"),
        reply_to: reply_to.to_string(),
        method: "Echo".into(),
        deadline,
    })
    .unwrap()
}

#[tokio::test]
async fn replies_expire_and_carry_the_result() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let runs = Arc::new(AtomicUsize::new(0));
    let _server = start(&redis, runs.clone());
    let id = uuid::Uuid::new_v4().to_string();
    rpush(&redis, "raw.echo@1.0", &request(&id, None)).await;
    // Wait until the reply exists, then check its TTL was set together with it.
    let mut ttl = String::new();
    for _ in 0..200 {
        ttl = redis.cli(&["TTL", &id]);
        if ttl != "-2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ttl: i64 = ttl.parse().unwrap();
    assert!((290..=300).contains(&ttl), "reply TTL {ttl}");
    let reply: Response = msgpack::from_slice(&blpop(&redis, &id, 1.0).await.unwrap()).unwrap();
    assert_eq!(reply.id, id);
    let s: String = msgpack::from_slice(reply.output.data.as_deref().unwrap()).unwrap();
    assert_eq!(s, "hi");
}

#[tokio::test]
async fn malformed_requests_get_a_protocol_error_and_never_crash_the_server() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let runs = Arc::new(AtomicUsize::new(0));
    let _server = start(&redis, runs.clone());

    // Garbage that still names a reply key: a protocol-error reply.
    let id = uuid::Uuid::new_v4().to_string();
    #[derive(serde::Serialize)]
    struct Bad<'a> {
        #[serde(rename = "ReplyTo")]
        reply_to: &'a str,
        #[serde(rename = "Inputs")]
        inputs: &'a str,
    }
    rpush(
        &redis,
        "raw.echo@1.0",
        &msgpack::to_vec(&Bad {
            reply_to: &id,
            inputs: "not a list",
        })
        .unwrap(),
    )
    .await;
    let reply: Response =
        msgpack::from_slice(&blpop(&redis, &id, 5.0).await.expect("a reply")).unwrap();
    assert!(reply.error.unwrap().starts_with("invalid request"));

    // Plain garbage and a ReplyTo that is not a UUID: dropped, and no foreign key is written.
    rpush(&redis, "raw.echo@1.0", b"\xff\x00garbage").await;
    rpush(&redis, "raw.echo@1.0", &request("victim-key", None)).await;

    // The server still serves, and by now (one worker, FIFO) it has seen both.
    let client = Client::connect(&redis.url()).unwrap();
    let input = msgpack::to_vec("still here").unwrap();
    let out: String = client
        .call(
            "raw",
            &ObjectId::new("echo", "1.0"),
            "Echo",
            vec![input],
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out, "still here");
    assert_eq!(redis.cli(&["EXISTS", "victim-key"]), "0");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the valid call ran");
}

#[tokio::test]
async fn a_request_pulled_after_its_deadline_is_dropped_not_run() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    // Queue requests while no server runs: one already expired, one still valid.
    let expired_id = uuid::Uuid::new_v4().to_string();
    let valid_id = uuid::Uuid::new_v4().to_string();
    let past = GoTime::from(std::time::SystemTime::now() - Duration::from_secs(5));
    let future = GoTime::from(std::time::SystemTime::now() + Duration::from_secs(60));
    rpush(&redis, "raw.echo@1.0", &request(&expired_id, Some(past))).await;
    rpush(&redis, "raw.echo@1.0", &request(&valid_id, Some(future))).await;

    let runs = Arc::new(AtomicUsize::new(0));
    let _server = start(&redis, runs.clone());
    assert!(
        blpop(&redis, &valid_id, 5.0).await.is_some(),
        "the valid request runs"
    );
    assert_eq!(
        redis.cli(&["EXISTS", &expired_id]),
        "0",
        "the expired one gets no reply"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "and is not run");
    let status = Client::connect(&redis.url())
        .unwrap()
        .status("raw", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(status.expired, Some(1));
}
