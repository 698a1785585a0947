//! End-to-end tests of a contract-generated object against a real redis-server: calls and replies, both error
//! kinds, variadic calls, streams, the status object, deadlines, concurrency, and a server killed mid-call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zos_api::bus::{CallError, Client, Error, Server, ServerHandle, StreamSink};
use zos_testkit::RedisServer;
use zos_types::{Bytes, GoDuration};

zos_api::contract! {
    /// A calculator, the object of Go zbus's own examples.
    object Calculator, CalculatorClient, CalculatorContract = "calc", "calculator", "1.0" {
        /// a + b
        fn add = "Add" (a: f64, b: f64) -> f64;
        /// (a + b, a - b)
        fn add_sub = "AddSub" (a: f64, b: f64) -> (f64, f64);
        /// a / b, an error when b is zero
        fn divide = "Divide" (a: f64, b: f64) -> f64;
        /// The mean of the values.
        fn avg = "Avg" (values: Vec<f64>) -> f64;
        /// Sleep, then return.
        fn sleep = "Sleep" (d: GoDuration);
        /// Always fails.
        fn fail = "Fail" ();
        /// Two bytes.
        fn bytes = "Bytes" () -> Bytes;
        /// Join words with a separator.
        fn join = "Join" (sep: String) variadic(words: String) -> String;
        /// Panics.
        fn crash = "Crash" ();
    } streams {
        /// Counts up forever.
        stream ticks = "Ticks" -> u64;
    }
}

#[derive(Default)]
struct Calc {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    sleeps_started: AtomicUsize,
}

impl Calculator for Calc {
    async fn add(&self, a: f64, b: f64) -> Result<f64, CallError> {
        Ok(a + b)
    }
    async fn add_sub(&self, a: f64, b: f64) -> Result<(f64, f64), CallError> {
        Ok((a + b, a - b))
    }
    async fn divide(&self, a: f64, b: f64) -> Result<f64, CallError> {
        if b == 0.0 {
            return Err(CallError::with_kind("invalid_input", "division by zero"));
        }
        Ok(a / b)
    }
    async fn avg(&self, values: Vec<f64>) -> Result<f64, CallError> {
        Ok(values.iter().sum::<f64>() / values.len() as f64)
    }
    async fn sleep(&self, d: GoDuration) -> Result<(), CallError> {
        self.sleeps_started.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(d.to_std()).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
    async fn fail(&self) -> Result<(), CallError> {
        Err(CallError::msg("boom"))
    }
    async fn bytes(&self) -> Result<Bytes, CallError> {
        Ok(Bytes(vec![1, 2]))
    }
    async fn join(&self, sep: String, words: Vec<String>) -> Result<String, CallError> {
        Ok(words.join(&sep))
    }
    async fn crash(&self) -> Result<(), CallError> {
        panic!("the calculator caught fire")
    }
    async fn ticks(&self, sink: StreamSink<u64>) {
        let mut n = 0;
        loop {
            sink.send(&n).await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn serve(redis: &RedisServer, calc: Arc<Calc>, concurrency: usize) -> ServerHandle {
    let broker = zos_api::bus::Broker::parse(&redis.url()).unwrap();
    Server::new("calc", broker)
        .concurrency(concurrency)
        .register(CalculatorContract::server(calc))
        .spawn()
}

fn client(redis: &RedisServer) -> CalculatorClient {
    CalculatorClient::new(Client::connect(&redis.url()).unwrap())
}

#[tokio::test]
async fn calls_return_values_errors_and_protocol_errors() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let server = serve(&redis, Arc::new(Calc::default()), 1);
    let calc = client(&redis);

    assert_eq!(calc.add(1.0, 2.0).await.unwrap(), 3.0);
    assert_eq!(calc.add_sub(1.0, 2.0).await.unwrap(), (3.0, -1.0));
    assert_eq!(calc.avg(vec![10.0, 10.0, 10.0]).await.unwrap(), 10.0);
    assert_eq!(calc.bytes().await.unwrap(), Bytes(vec![1, 2]));
    calc.sleep(GoDuration(1_000)).await.unwrap();

    // Application errors carry the message and kind.
    let err = calc.divide(1.0, 0.0).await.unwrap_err();
    assert!(
        matches!(&err, Error::Call { message, .. } if message == "division by zero"),
        "{err:?}"
    );
    assert_eq!(err.kind(), Some("invalid_input"));
    let err = calc.fail().await.unwrap_err();
    assert_eq!(err.to_string(), "boom");

    // Variadic: any number of trailing arguments.
    assert_eq!(calc.join("-".into(), vec![]).await.unwrap(), "");
    assert_eq!(
        calc.join("-".into(), vec!["a".into(), "b".into(), "c".into()])
            .await
            .unwrap(),
        "a-b-c"
    );

    // A panic in a handler becomes a protocol error; the server keeps serving.
    let err = calc.crash().await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { message, .. } if message.contains("paniced") && message.contains("caught fire")),
        "{err:?}"
    );
    assert_eq!(calc.add(2.0, 2.0).await.unwrap(), 4.0);

    // Protocol errors from raw calls: unknown method, wrong argument count, wrong type.
    let bus = calc.bus();
    let id = CalculatorContract::object_id();
    let err = bus
        .request("calc", &id, "Nope", vec![], Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { message, .. } if message == "not a function"),
        "{err:?}"
    );
    let one = zos_types::msgpack::to_vec(&1.0f64).unwrap();
    let err = bus
        .request("calc", &id, "Add", vec![one.clone()], Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { message, .. } if message == "invalid number of arguments expecting 2 got 1"),
        "{err:?}"
    );
    let x = zos_types::msgpack::to_vec("x").unwrap();
    let err = bus
        .request("calc", &id, "Add", vec![x, one.clone()], Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { message, .. } if message.starts_with("invalid argument type [0] expecting f64")),
        "{err:?}"
    );
    let err = bus
        .request(
            "calc",
            &zos_api::bus::ObjectId::new("calculator", "9.9"),
            "Add",
            vec![],
            zos_api::bus::CallOptions::timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NoServer { .. }),
        "a wrong version is nobody's queue: {err:?}"
    );

    // Go integer arguments are accepted for float parameters.
    let i1 = zos_types::msgpack::to_vec(&1i64).unwrap();
    let i2 = zos_types::msgpack::to_vec(&2i64).unwrap();
    let out: f64 = bus
        .call("calc", &id, "Add", vec![i1, i2], Default::default())
        .await
        .unwrap();
    assert_eq!(out, 3.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn status_object_reports_objects_and_busy_workers() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let calc_impl = Arc::new(Calc::default());
    let server = serve(&redis, calc_impl.clone(), 2);
    let calc = client(&redis);

    let status = calc
        .bus()
        .status("calc", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(status.objects, vec![CalculatorContract::object_id()]);
    assert_eq!(status.workers.len(), 2);
    assert!(status.workers.iter().all(|w| w.action.is_empty()));

    // While a call runs, one worker is busy with it, and the status object still answers.
    let slow = calc.clone();
    let call = tokio::spawn(async move {
        slow.sleep(GoDuration::from(Duration::from_millis(800)))
            .await
    });
    while calc_impl.sleeps_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = calc
        .bus()
        .status("calc", Duration::from_secs(3))
        .await
        .unwrap();
    let busy: Vec<_> = status
        .workers
        .iter()
        .filter(|w| !w.action.is_empty())
        .collect();
    assert_eq!(busy.len(), 1, "{status:?}");
    assert_eq!(busy[0].action, "calculator@1.0.Sleep()");
    assert!(!busy[0].start_time.is_zero());
    call.await.unwrap().unwrap();

    // No server for a module: a clear error, quickly.
    let err = calc
        .bus()
        .status("nobody", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoServer { .. }), "{err:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn concurrency_is_the_number_of_workers() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    for workers in [1usize, 4] {
        let calc_impl = Arc::new(Calc::default());
        let server = serve(&redis, calc_impl.clone(), workers);
        let calc = client(&redis);
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let c = calc.clone();
                tokio::spawn(
                    async move { c.sleep(GoDuration::from(Duration::from_millis(150))).await },
                )
            })
            .collect();
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert_eq!(
            calc_impl.max_in_flight.load(Ordering::SeqCst),
            workers,
            "with {workers} workers"
        );
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn deadlines_bound_every_call() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let calc = client(&redis);

    // Nobody serves the module: the call fails at its deadline and the request is withdrawn from the queue.
    let err = calc
        .with_timeout(Duration::from_millis(300))
        .add(1.0, 1.0)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoServer { .. }), "{err:?}");
    assert_eq!(redis.cli(&["LLEN", "calc.calculator@1.0"]), "0");

    // A server that takes the call but is slower than the caller's deadline: a timeout, not a hang.
    let calc_impl = Arc::new(Calc::default());
    let server = serve(&redis, calc_impl.clone(), 1);
    let err = calc
        .with_timeout(Duration::from_millis(300))
        .sleep(GoDuration::from(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");

    // A request queued behind that slow call, whose caller gives up before it is pulled, is never run.
    let impatient = calc.with_timeout(Duration::from_millis(300));
    let err = impatient.sleep(GoDuration(1)).await.unwrap_err();
    assert!(
        matches!(err, Error::NoServer { .. }),
        "the queued request was withdrawn: {err:?}"
    );
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        calc_impl.sleeps_started.load(Ordering::SeqCst),
        1,
        "the expired request must not run"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_killed_mid_call_does_not_hang_the_caller() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    let calc_impl = Arc::new(Calc::default());
    // The server runs on its own runtime, which we tear down mid-call: every task dies, as in a crash.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server_impl = calc_impl.clone();
    let broker = zos_api::bus::Broker::parse(&url).unwrap();
    runtime.spawn(async move {
        let server = Server::new("calc", broker).register(CalculatorContract::server(server_impl));
        server.run(std::future::pending()).await.unwrap();
    });
    let calc = client(&redis);
    assert_eq!(calc.add(1.0, 1.0).await.unwrap(), 2.0);

    let slow = calc.with_timeout(Duration::from_secs(2));
    let call =
        tokio::spawn(async move { slow.sleep(GoDuration::from(Duration::from_secs(30))).await });
    while calc_impl.sleeps_started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runtime.shutdown_background();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");

    // A new server instance serves again.
    let server = serve(&redis, Arc::new(Calc::default()), 1);
    assert_eq!(calc.add(2.0, 3.0).await.unwrap(), 5.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn streams_deliver_events_and_survive_a_redis_restart() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let mut redis = RedisServer::start();
    let server = serve(&redis, Arc::new(Calc::default()), 1);
    let calc = client(&redis);

    let mut ticks = calc.ticks().await.unwrap();
    let a = ticks.recv().await.unwrap().unwrap();
    let b = ticks.recv().await.unwrap().unwrap();
    assert!(b > a, "events arrive in order: {a} then {b}");

    // Two subscribers of one client share one connection and both get events.
    let mut again = calc.ticks().await.unwrap();
    again.recv().await.unwrap().unwrap();
    assert_eq!(
        calc.bus()
            .subscribed_channels()
            .get("calc.calculator@1.0.Ticks"),
        Some(&2)
    );
    drop(again);

    // Redis restarts under the running client and server: calls and the stream recover by themselves.
    redis.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if calc
            .with_timeout(Duration::from_millis(500))
            .add(1.0, 1.0)
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "calls work again after the redis restart");
    let event = tokio::time::timeout(Duration::from_secs(15), async {
        // Skip whatever was buffered before the restart; a fresh event proves the resubscription.
        loop {
            let v = ticks.recv().await.unwrap().unwrap();
            if v < a || v > b + 10 {
                return v;
            }
        }
    })
    .await;
    assert!(
        event.is_ok(),
        "the stream delivers events after the redis restart"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_subscriber_drops_and_counts_events() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let redis = RedisServer::start();
    let server = serve(&redis, Arc::new(Calc::default()), 1);
    let calc = client(&redis);
    let mut ticks = calc.ticks().await.unwrap();
    ticks.recv().await.unwrap().unwrap();
    // Do not read for a while: the buffer (64) fills at 20 events/s, the rest is dropped and counted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(ticks.dropped() > 0, "dropped events are counted");
    ticks.recv().await.unwrap().unwrap();
    server.stop().await.unwrap();
}

#[test]
fn contract_metadata_types_json_arguments() {
    let c = CalculatorContract::describe();
    assert_eq!((c.module, c.name, c.version), ("calc", "calculator", "1.0"));
    let add = c.method("Add").unwrap();
    assert_eq!(add.signature(), "Add(a: f64, b: f64) -> f64");
    let args = (add.encode_json_args)(&[serde_json::json!(1), serde_json::json!(2.5)]).unwrap();
    assert_eq!(hex::encode(&args[0]), "cb3ff0000000000000");
    let err = (add.encode_json_args)(&[serde_json::json!("x"), serde_json::json!(1)]).unwrap_err();
    assert!(err.contains("argument 1 (a: f64)"), "{err}");
    let err = (add.encode_json_args)(&[serde_json::json!(1)]).unwrap_err();
    assert!(err.contains("takes 2 argument(s), got 1"), "{err}");
    let join = c.method("Join").unwrap();
    assert_eq!(
        join.signature(),
        "Join(sep: String, words: ...String) -> String"
    );
    assert_eq!(
        (join.encode_json_args)(&[
            serde_json::json!("-"),
            serde_json::json!("a"),
            serde_json::json!("b")
        ])
        .unwrap()
        .len(),
        3
    );
    assert_eq!(c.stream("Ticks").unwrap().item, "u64");
    assert_eq!(c.method("Fail").unwrap().signature(), "Fail()");
}
