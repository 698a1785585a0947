//! `cargo xtask bench bus`: our bus round trip against the raw Redis floor of the zbus pattern, in one run.
//!
//! Floor: the client pipelines `RPUSH queue req` + `BLPOP reply`; 32 server connections each `BLPOP queue` and
//! `RPUSH reply resp` — the least work the zbus pattern can do over the same Redis and the same client library.
//! Ours: a `zos-bus` server (32 workers) serving a trivial method, called through a generated typed client.
//! Both are measured with 1 caller (latency) and 32 concurrent callers (throughput), and the ratios printed.
//! The callers run on one thread and the server on another (single-threaded runtimes), for floor and ours alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zos_api::bus::{Broker, CallError, Client, Server};
use zos_testkit::RedisServer;

zos_api::contract! {
    /// The benchmark's trivial object.
    object Echo, EchoClient, EchoContract = "bench", "echo", "1.0" {
        /// Add two numbers.
        fn add = "Add" (a: f64, b: f64) -> f64;
    }
}

struct EchoImpl;

impl Echo for EchoImpl {
    async fn add(&self, a: f64, b: f64) -> Result<f64, CallError> {
        Ok(a + b)
    }
}

/// Latency percentiles and throughput of one scenario.
#[derive(Clone, Copy, Debug)]
pub struct Measure {
    pub p50: Duration,
    pub p99: Duration,
    pub calls_per_sec: f64,
}

fn summarize(mut samples: Vec<Duration>, elapsed: Duration) -> Measure {
    samples.sort_unstable();
    let pick = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Measure {
        p50: pick(0.50),
        p99: pick(0.99),
        calls_per_sec: samples.len() as f64 / elapsed.as_secs_f64(),
    }
}

const SERVER_CONNS: usize = 32;

/// Run `callers` concurrent loops of `call` for `calls_each` calls each, after a warm-up.
async fn drive<F, Fut>(callers: usize, calls_each: usize, call: F) -> anyhow::Result<Measure>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    for i in 0..200 {
        call(i % callers.max(1)).await?;
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(calls_each);
                for _ in 0..calls_each {
                    let t = Instant::now();
                    call(c).await?;
                    samples.push(t.elapsed());
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(callers * calls_each);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(summarize(all, start.elapsed()))
}

async fn raw_conn(socket: &std::path::Path) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis+unix://{}", socket.display()))?;
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// A server running on a thread of its own (a single-threaded runtime), as a separate daemon process would;
/// stopped on drop.
struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    fn spawn<F, Fut>(make: F) -> ServerThread
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                tokio::select! {
                    _ = make() => {}
                    _ = stopped => {}
                }
            });
        });
        ServerThread {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(|t| t.join());
    }
}

/// The floor: the zbus pattern with nothing but Redis commands.
async fn floor(redis: &RedisServer, callers: usize, calls_each: usize) -> anyhow::Result<Measure> {
    let queue = format!("floor.{}", callers);
    let socket = redis.socket();
    let server_queue = queue.clone();
    let _server = ServerThread::spawn(move || async move {
        let mut servers = Vec::new();
        for _ in 0..SERVER_CONNS {
            let Ok(mut conn) = raw_conn(&socket).await else {
                return;
            };
            let queue = server_queue.clone();
            servers.push(tokio::spawn(async move {
                loop {
                    let item: Option<(String, Vec<u8>)> = redis::cmd("BLPOP")
                        .arg(&queue)
                        .arg(0)
                        .query_async(&mut conn)
                        .await
                        .ok()
                        .flatten();
                    let Some((_, payload)) = item else { continue };
                    // The payload starts with the 36-byte reply key.
                    let reply = String::from_utf8_lossy(&payload[..36]).into_owned();
                    let _: Result<i64, _> = redis::cmd("RPUSH")
                        .arg(&reply)
                        .arg(&payload[36..])
                        .query_async(&mut conn)
                        .await;
                }
            }));
        }
        std::future::pending::<()>().await;
    });
    let mut conns = Vec::new();
    for _ in 0..callers {
        conns.push(tokio::sync::Mutex::new(raw_conn(&redis.socket()).await?));
    }
    let conns = Arc::new(conns);
    let body = vec![b'x'; 96];
    drive(callers, calls_each, move |c| {
        let conns = conns.clone();
        let queue = queue.clone();
        let body = body.clone();
        async move {
            let mut conn = conns[c].lock().await;
            let id = uuid::Uuid::new_v4().to_string();
            let mut payload = id.clone().into_bytes();
            payload.extend_from_slice(&body);
            let mut pipe = redis::pipe();
            pipe.cmd("RPUSH")
                .arg(&queue)
                .arg(payload)
                .ignore()
                .cmd("BLPOP")
                .arg(&id)
                .arg(5);
            let (_reply,): (Option<(String, Vec<u8>)>,) = pipe.query_async(&mut *conn).await?;
            Ok(())
        }
    })
    .await
}

/// Our bus: a zos-bus server with 32 workers and a typed client.
async fn ours(redis: &RedisServer, callers: usize, calls_each: usize) -> anyhow::Result<Measure> {
    let broker = Broker::parse(&redis.url())?;
    let server_broker = broker.clone();
    let _server = ServerThread::spawn(move || async move {
        let server = Server::new("bench", server_broker)
            .concurrency(SERVER_CONNS)
            .register(EchoContract::server(Arc::new(EchoImpl)));
        let _ = server.run(std::future::pending()).await;
    });
    let client = EchoClient::new(Client::new(broker));
    // The server is up once its status object answers.
    client
        .bus()
        .status("bench", Duration::from_secs(10))
        .await?;
    drive(callers, calls_each, move |_| {
        let client = client.clone();
        async move {
            let v = client.add(1.0, 2.0).await?;
            anyhow::ensure!(v == 3.0, "wrong answer {v}");
            Ok(())
        }
    })
    .await
}

fn line(name: &str, m: &Measure) {
    println!(
        "{name:<28} p50 {:>8.1} µs   p99 {:>8.1} µs   {:>9.0} calls/s",
        m.p50.as_secs_f64() * 1e6,
        m.p99.as_secs_f64() * 1e6,
        m.calls_per_sec
    );
}

/// Run the bus benchmark and print the ratios.
///
/// The machine may be busy with other work, so floor and ours are measured alternately over several rounds
/// and the median ratio is reported (each round's pair ran under the same conditions).
pub fn run(quick: bool) -> anyhow::Result<()> {
    let (n1, n32, rounds) = if quick { (300, 60, 1) } else { (3000, 300, 5) };
    let redis = RedisServer::start();
    // The callers run on this thread, each server on a thread of its own: as separate processes would, and
    // without work-stealing moving tasks between the two cores from one round to the next.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        println!("bus benchmark: redis-server on a unix socket, {SERVER_CONNS} server connections/workers, {rounds} rounds");
        let mut p50_ratios = Vec::new();
        let mut tput_ratios = Vec::new();
        for round in 0..rounds {
            let floor1 = floor(&redis, 1, n1).await?;
            let ours1 = ours(&redis, 1, n1).await?;
            let floor32 = floor(&redis, 32, n32).await?;
            let ours32 = ours(&redis, 32, n32).await?;
            println!("round {}", round + 1);
            line("  floor, 1 caller", &floor1);
            line("  zos-bus, 1 caller", &ours1);
            line("  floor, 32 callers", &floor32);
            line("  zos-bus, 32 callers", &ours32);
            p50_ratios.push(ours1.p50.as_secs_f64() / floor1.p50.as_secs_f64());
            tput_ratios.push(ours32.calls_per_sec / floor32.calls_per_sec);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let p50_ratio = median(&mut p50_ratios);
        let tput_ratio = median(&mut tput_ratios);
        println!();
        println!(
            "1 caller:   p50 ratio to floor {p50_ratio:.2}x (median of {rounds}; target <= 1.5x) {}",
            if p50_ratio <= 1.5 { "OK" } else { "MISSED" }
        );
        println!(
            "32 callers: throughput {:.0}% of floor (median of {rounds}; target >= 70%) {}",
            tput_ratio * 100.0,
            if tput_ratio >= 0.7 { "OK" } else { "MISSED" }
        );
        anyhow::Ok(())
    })
}
