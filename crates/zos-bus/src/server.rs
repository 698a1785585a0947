//! The bus server: serves a module's objects from their Redis queues.
//!
//! - Requests are pulled (`BLPOP` over all object queues) only while a worker is free, as Go zbus does, so a
//!   module's concurrency is exactly its number of workers ([`Server::concurrency`], default 1). Several
//!   pullers share the work when concurrency allows it.
//! - Handlers are async and run on the tokio runtime. A handler that panics yields a protocol-error reply,
//!   never a lost call; a malformed request yields a protocol-error reply when it names a valid reply key.
//! - A reply is pushed and given its 300 s expiry in one atomic step (a Lua script), and the result is checked.
//! - `ReplyTo` must look like a UUID, so a request cannot make the server write to an arbitrary key.
//! - A request whose `Deadline` has passed when it is pulled is dropped (its caller gave up) and counted.
//! - The status object `<module>.zbus@1.0` is answered by its own loop, even while every worker is busy.
//! - Streams are started once at [`Server::run`] and restarted if they end; each event is published on
//!   `<module>.<object>.<Stream>`.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use serde::Serialize;
use serde_bytes::ByteBuf;
use tokio::sync::Semaphore;
use zos_types::{GoTime, msgpack};

use crate::wire::{
    self, ObjectId, Output, Request, Response, Status, WorkerState, WorkerStatus, keys,
};
use crate::{Broker, Error};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What dispatching a method gives: its output, or a protocol error message.
pub type DispatchResult = Result<Output, String>;

type Handler = Arc<dyn Fn(String, Vec<ByteBuf>) -> BoxFuture<DispatchResult> + Send + Sync>;
type StreamStart = Arc<dyn Fn(RawSink) -> BoxFuture<()> + Send + Sync>;

/// One object a server serves: its id, its method dispatcher and its streams.
pub struct ServerObject {
    id: ObjectId,
    handler: Handler,
    streams: Vec<(String, StreamStart)>,
}

impl ServerObject {
    /// An object whose methods are dispatched by `handler(method, inputs)`.
    pub fn new(
        id: ObjectId,
        handler: impl Fn(String, Vec<ByteBuf>) -> BoxFuture<DispatchResult> + Send + Sync + 'static,
    ) -> Self {
        ServerObject {
            id,
            handler: Arc::new(handler),
            streams: Vec::new(),
        }
    }

    /// Add a stream: `start` runs once when the server starts (again if it returns) and publishes events
    /// through its sink.
    pub fn with_stream(
        mut self,
        name: &str,
        start: impl Fn(RawSink) -> BoxFuture<()> + Send + Sync + 'static,
    ) -> Self {
        self.streams.push((name.to_string(), Arc::new(start)));
        self
    }

    /// The object's id.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }
}

/// A Redis connection shared by many users for non-blocking commands, re-made after a failure.
#[derive(Clone)]
pub(crate) struct SharedConn {
    broker: Broker,
    conn: Arc<Mutex<Option<redis::aio::MultiplexedConnection>>>,
}

impl SharedConn {
    pub(crate) fn new(broker: Broker) -> Self {
        SharedConn {
            broker,
            conn: Arc::new(Mutex::new(None)),
        }
    }

    async fn get(&self) -> Result<redis::aio::MultiplexedConnection, Error> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(c.clone());
        }
        // Connect outside the lock; if several tasks race, the last connection made is kept.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let c = self
            .broker
            .client()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| Error::Broker {
                url: self.broker.url().to_string(),
                source: e,
            })?;
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        Ok(c)
    }

    async fn reset(&self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Run a pipeline, reconnecting once if the connection broke.
    async fn query<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, Error> {
        let mut last = None;
        for _ in 0..2 {
            let mut conn = self.get().await?;
            match pipe.query_async::<T>(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.reset().await;
                    last = Some(e);
                }
            }
        }
        Err(Error::Broker {
            url: self.broker.url().to_string(),
            source: last.expect("loop ran"),
        })
    }
}

/// Publishes raw (already encoded) events on one stream channel. Best-effort: failures are logged, not
/// returned, because nobody waits on an event.
#[derive(Clone)]
pub struct RawSink {
    channel: String,
    conn: SharedConn,
    failures: Arc<AtomicU64>,
}

impl RawSink {
    /// The channel events go to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Publish one encoded event; returns the number of subscribers that got it (0 on failure).
    pub async fn publish(&self, payload: Vec<u8>) -> u64 {
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH").arg(&self.channel).arg(payload);
        match self.conn.query::<(u64,)>(&pipe).await {
            Ok((n,)) => n,
            Err(e) => {
                if self
                    .failures
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(100)
                {
                    tracing::warn!(channel = %self.channel, error = %e, "could not publish stream event");
                }
                0
            }
        }
    }

    /// A typed view of this sink.
    pub fn typed<T: Serialize>(self) -> StreamSink<T> {
        StreamSink {
            raw: self,
            _type: PhantomData,
        }
    }
}

/// Publishes events of type `T` on one stream channel.
pub struct StreamSink<T> {
    raw: RawSink,
    _type: PhantomData<fn(&T)>,
}

impl<T> Clone for StreamSink<T> {
    fn clone(&self) -> Self {
        StreamSink {
            raw: self.raw.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Serialize> StreamSink<T> {
    /// Publish one event; returns how many subscribers got it.
    pub async fn send(&self, value: &T) -> u64 {
        match msgpack::to_vec(value) {
            Ok(bytes) => self.raw.publish(bytes).await,
            Err(e) => {
                tracing::error!(channel = %self.raw.channel, error = %e, "could not encode stream event");
                0
            }
        }
    }

    /// The channel events go to.
    pub fn channel(&self) -> &str {
        &self.raw.channel
    }
}

/// A server serving on a task of its own ([`Server::spawn`]). Dropping it asks the server to stop.
pub struct ServerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), Error>>>,
}

impl ServerHandle {
    /// Stop pulling, let running calls finish, and wait for the server to end.
    pub async fn stop(mut self) -> Result<(), Error> {
        let _ = self.stop.take().map(|s| s.send(()));
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
    }
}

/// A module's server. See the module docs.
pub struct Server {
    module: String,
    broker: Broker,
    concurrency: usize,
    objects: Vec<ServerObject>,
}

struct Workers {
    status: Mutex<Vec<WorkerStatus>>,
    free: Mutex<Vec<usize>>,
}

impl Workers {
    fn new(n: usize) -> Self {
        let free_worker = WorkerStatus {
            state: WorkerState::Free,
            start_time: GoTime::default(),
            action: String::new(),
        };
        Workers {
            status: Mutex::new(vec![free_worker; n]),
            free: Mutex::new((0..n).rev().collect()),
        }
    }

    fn take(&self, action: String) -> usize {
        let slot = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or(0);
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = status.get_mut(slot) {
            *w = WorkerStatus {
                state: WorkerState::Busy,
                start_time: GoTime::now(),
                action,
            };
        }
        slot
    }

    fn give_back(&self, slot: usize) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = status.get_mut(slot) {
            *w = WorkerStatus {
                state: WorkerState::Free,
                start_time: GoTime::default(),
                action: String::new(),
            };
        }
        drop(status);
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
    }
}

struct Shared {
    module: String,
    handlers: HashMap<ObjectId, Handler>,
    replies: SharedConn,
    workers: Workers,
    expired: AtomicU64,
    stopping: AtomicBool,
}

/// Most pullers a server runs, however high its concurrency.
const MAX_PULLERS: usize = 32;
/// Seconds a pull waits before checking for shutdown.
const PULL_TIMEOUT_SECS: f64 = 1.0;

impl Server {
    /// A server for `module` with one worker.
    pub fn new(module: impl Into<String>, broker: Broker) -> Self {
        Server {
            module: module.into(),
            broker,
            concurrency: 1,
            objects: Vec::new(),
        }
    }

    /// How many calls may run at once (at least 1).
    pub fn concurrency(mut self, workers: usize) -> Self {
        self.concurrency = workers.max(1);
        self
    }

    /// Serve an object. The reserved status object `zbus@1.0` cannot be registered.
    pub fn register(mut self, object: ServerObject) -> Self {
        assert!(
            object.id != ObjectId::status(),
            "object id zbus@1.0 is reserved"
        );
        self.objects.push(object);
        self
    }

    /// The ids of the registered objects.
    pub fn object_ids(&self) -> Vec<ObjectId> {
        self.objects.iter().map(|o| o.id.clone()).collect()
    }

    /// Serve on a task of its own until [`ServerHandle::stop`] (or until the handle is dropped).
    pub fn spawn(self) -> ServerHandle {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async {
            let _ = stopped.await;
        }));
        ServerHandle {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Serve until `shutdown` completes, then stop pulling, let running calls finish (up to 30 s) and return.
    ///
    /// Redis being down is not an error: the server keeps retrying and serves once it is back.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let replies = SharedConn::new(self.broker.clone());
        let queues: Vec<String> = self
            .objects
            .iter()
            .map(|o| keys::queue(&self.module, &o.id))
            .collect();
        let mut object_ids: Vec<ObjectId> = self.objects.iter().map(|o| o.id.clone()).collect();
        object_ids.sort();
        let shared = Arc::new(Shared {
            module: self.module.clone(),
            handlers: self
                .objects
                .iter()
                .map(|o| (o.id.clone(), o.handler.clone()))
                .collect(),
            replies: replies.clone(),
            workers: Workers::new(self.concurrency),
            expired: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = Vec::new();

        // Streams.
        for object in &self.objects {
            for (name, start) in &object.streams {
                let sink = RawSink {
                    channel: keys::stream(&self.module, &object.id, name),
                    conn: replies.clone(),
                    failures: Arc::new(AtomicU64::new(0)),
                };
                let start = start.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        start(sink.clone()).await;
                        tracing::warn!(channel = %sink.channel, "stream ended; restarting it in 1s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }));
            }
        }

        // The status object.
        tasks.push(tokio::spawn(status_loop(
            self.broker.clone(),
            shared.clone(),
            object_ids,
        )));

        // Pullers.
        let pullers = self.concurrency.min(MAX_PULLERS);
        let mut puller_tasks = Vec::new();
        if !queues.is_empty() {
            for _ in 0..pullers {
                puller_tasks.push(tokio::spawn(pull_loop(
                    self.broker.clone(),
                    queues.clone(),
                    shared.clone(),
                    permits.clone(),
                )));
            }
        }
        tracing::info!(module = %self.module, objects = ?self.object_ids().iter().map(ToString::to_string).collect::<Vec<_>>(),
            concurrency = self.concurrency, "bus server running");

        shutdown.await;
        tracing::info!(module = %self.module, "bus server stopping");
        shared.stopping.store(true, Ordering::SeqCst);
        for t in puller_tasks {
            let _ = t.await;
        }
        // Wait for running calls to finish.
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        if tokio::time::timeout(Duration::from_secs(30), permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(module = %self.module, "calls still running after 30s; stopping anyway");
        }
        for t in tasks {
            t.abort();
        }
        Ok(())
    }
}

async fn pull_loop(
    broker: Broker,
    queues: Vec<String>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
) {
    let mut conn = None;
    let mut failing = false;
    while !shared.stopping.load(Ordering::SeqCst) {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        if conn.is_none() {
            match broker.dedicated().await {
                Ok(c) => {
                    if failing {
                        tracing::info!(module = %shared.module, "bus broker reachable again");
                        failing = false;
                    }
                    conn = Some(c);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(module = %shared.module, error = %e, "cannot reach the bus broker; retrying");
                        failing = true;
                    }
                    drop(permit);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let popped: Result<Option<(String, Vec<u8>)>, _> = redis::cmd("BLPOP")
            .arg(&queues)
            .arg(PULL_TIMEOUT_SECS)
            .query_async(c)
            .await;
        match popped {
            Ok(Some((_queue, raw))) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    handle(&shared, raw).await;
                    drop(permit);
                });
            }
            Ok(None) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(module = %shared.module, error = %e, "lost the bus broker; reconnecting");
                    failing = true;
                }
                conn = None;
                drop(permit);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Just enough of a request to answer a malformed one.
#[derive(serde::Deserialize)]
struct ReplyToOnly {
    #[serde(rename = "ReplyTo", default)]
    reply_to: Option<String>,
}

async fn handle(shared: &Shared, raw: Vec<u8>) {
    let request: Request = match msgpack::from_slice(&raw) {
        Ok(r) => r,
        Err(e) => {
            let reply_to = msgpack::from_slice::<ReplyToOnly>(&raw)
                .ok()
                .and_then(|r| r.reply_to);
            match reply_to.filter(|r| wire::looks_like_uuid(r)) {
                Some(reply_to) => {
                    tracing::warn!(module = %shared.module, error = %e, "malformed request; replying with a protocol error");
                    let response = Response {
                        id: reply_to.clone(),
                        output: Output::default(),
                        error: Some(format!("invalid request: {e}")),
                    };
                    reply(shared, &reply_to, &response).await;
                }
                None => {
                    tracing::warn!(module = %shared.module, error = %e, "malformed request without a valid reply key; dropped")
                }
            }
            return;
        }
    };
    if !wire::looks_like_uuid(&request.reply_to) {
        tracing::warn!(module = %shared.module, object = %request.object, method = %request.method,
            reply_to = %request.reply_to, "request whose ReplyTo is not a UUID; dropped");
        return;
    }
    if let Some(deadline) = request.deadline
        && deadline.to_system_time() < SystemTime::now()
    {
        shared.expired.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(module = %shared.module, object = %request.object, method = %request.method,
            "request waited in the queue past its caller's deadline; dropped without running it");
        return;
    }
    let action = format!("{}.{}()", request.object, request.method);
    let slot = shared.workers.take(action);
    let result = match shared.handlers.get(&request.object) {
        None => Err(format!("unknown object {}", request.object)),
        Some(handler) => {
            let fut = handler(request.method.clone(), request.inputs);
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(r) => r,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(module = %shared.module, object = %request.object, method = %request.method,
                        panic = %what, "bus handler panicked");
                    Err(format!(
                        "remote method call {}.{}() paniced: {what}",
                        request.object, request.method
                    ))
                }
            }
        }
    };
    shared.workers.give_back(slot);
    let response = match result {
        Ok(output) => Response {
            id: request.id,
            output,
            error: None,
        },
        Err(message) => Response {
            id: request.id,
            output: Output::default(),
            error: Some(message),
        },
    };
    reply(shared, &request.reply_to, &response).await;
}

/// Push a reply and give it its expiry in one atomic step (a Lua script: one command for Redis to run).
static REPLY_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        "redis.call('RPUSH', KEYS[1], ARGV[1]); return redis.call('EXPIRE', KEYS[1], ARGV[2])",
    )
});

async fn reply(shared: &Shared, reply_to: &str, response: &Response) {
    let payload = match msgpack::to_vec(response) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(module = %shared.module, error = %e, "could not encode a reply");
            return;
        }
    };
    let mut invocation = REPLY_SCRIPT.prepare_invoke();
    invocation
        .key(reply_to)
        .arg(payload)
        .arg(keys::REPLY_TTL_SECS);
    let mut last = None;
    for _ in 0..2 {
        let mut conn = match shared.replies.get().await {
            Ok(c) => c,
            Err(e) => {
                last = Some(e.to_string());
                break;
            }
        };
        match invocation.invoke_async::<i64>(&mut conn).await {
            Ok(1) => return,
            Ok(other) => {
                last = Some(format!("EXPIRE returned {other}"));
                break;
            }
            Err(e) => {
                shared.replies.reset().await;
                last = Some(e.to_string());
            }
        }
    }
    tracing::error!(module = %shared.module, reply_to, error = last.unwrap_or_default(), "could not deliver a reply");
}

async fn status_loop(broker: Broker, shared: Arc<Shared>, objects: Vec<ObjectId>) {
    let queue = keys::queue(&shared.module, &ObjectId::status());
    let mut conn = None;
    loop {
        if conn.is_none() {
            match broker.dedicated().await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let popped: Result<Option<(String, Vec<u8>)>, _> = redis::cmd("BLPOP")
            .arg(&queue)
            .arg(PULL_TIMEOUT_SECS)
            .query_async(c)
            .await;
        let raw = match popped {
            Ok(Some((_, raw))) => raw,
            Ok(None) => continue,
            Err(_) => {
                conn = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let Ok(request) = msgpack::from_slice::<Request>(&raw) else {
            continue;
        };
        if !wire::looks_like_uuid(&request.reply_to) {
            continue;
        }
        let status = Status {
            objects: objects.clone(),
            workers: shared
                .workers
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            expired: Some(shared.expired.load(Ordering::Relaxed)),
        };
        let response = match msgpack::to_vec(&status) {
            Ok(data) => Response {
                id: request.id,
                output: Output {
                    data: Some(ByteBuf::from(data)),
                    error: None,
                },
                error: None,
            },
            Err(e) => Response {
                id: request.id,
                output: Output::default(),
                error: Some(e.to_string()),
            },
        };
        reply(&shared, &request.reply_to, &response).await;
    }
}
