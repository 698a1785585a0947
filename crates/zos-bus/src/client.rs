//! The bus client.
//!
//! A call pushes its request on the object's queue and waits on its own reply list, both in one pipelined
//! round trip on a connection that is lent to that call alone (so the blocking wait never stalls other calls).
//! Idle connections go back to a small pool; a call that is cancelled mid-wait drops its connection instead.
//!
//! Every call has a deadline (30 s by default, [`CallOptions::timeout`] to change it). The deadline travels in
//! the request, so a server that pulls it too late drops it instead of running it. When the deadline passes
//! and the request is still queued, the client withdraws it (`LREM`) and reports that no server took it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use zos_types::GoTime;
use zos_types::msgpack;

use crate::subscriber::{Subscriber, Subscription};
use crate::wire::{ObjectId, Output, Request, Response, Status, keys};
use crate::{Broker, Error};

/// Deadline used when a call does not set one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many idle connections a client keeps for later calls.
const MAX_IDLE: usize = 64;

/// Per-call options.
#[derive(Clone, Copy, Debug)]
pub struct CallOptions {
    /// How long the caller waits for the reply, queueing included.
    pub timeout: Duration,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl CallOptions {
    /// Options with this timeout.
    pub fn timeout(timeout: Duration) -> Self {
        CallOptions { timeout }
    }
}

/// A handle on the bus. Cheap to clone; clones share connections and the stream subscriber.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    idle: Mutex<Vec<redis::aio::MultiplexedConnection>>,
    subscriber: Subscriber,
    stream_buffer: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("broker", &self.inner.broker.url())
            .finish()
    }
}

/// A connection on loan to one call; returned to the pool only when the call finished cleanly.
struct Lease<'a> {
    client: &'a Inner,
    conn: Option<redis::aio::MultiplexedConnection>,
}

impl Lease<'_> {
    fn conn(&mut self) -> &mut redis::aio::MultiplexedConnection {
        self.conn
            .as_mut()
            .expect("lease holds a connection until released")
    }

    fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.client.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }
}

impl Client {
    /// A client for `broker`. Connections are made on first use, so this works before Redis is up.
    pub fn new(broker: Broker) -> Client {
        Client {
            inner: Arc::new(Inner {
                subscriber: Subscriber::new(broker.clone()),
                broker,
                idle: Mutex::new(Vec::new()),
                stream_buffer: 64,
            }),
        }
    }

    /// Parse the broker address and make a client.
    pub fn connect(url: &str) -> Result<Client, Error> {
        Ok(Client::new(Broker::parse(url)?))
    }

    /// The broker this client talks to.
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    async fn lease(&self) -> Result<Lease<'_>, Error> {
        let pooled = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.inner.broker.dedicated().await?,
        };
        Ok(Lease {
            client: &self.inner,
            conn: Some(conn),
        })
    }

    /// Send one request and wait for its reply. `inputs` are the already-encoded arguments.
    ///
    /// Returns the method's [`Output`] (which may carry an application error), or the reason the call did not
    /// go through.
    pub async fn request(
        &self,
        module: &str,
        object: &ObjectId,
        method: &str,
        inputs: Vec<Vec<u8>>,
        opts: CallOptions,
    ) -> Result<Output, Error> {
        let queue = keys::queue(module, object);
        let started = Instant::now();
        let id = uuid::Uuid::new_v4().to_string();
        let request = Request {
            id: id.clone(),
            inputs: inputs.into_iter().map(serde_bytes::ByteBuf::from).collect(),
            object: object.clone(),
            reply_to: id.clone(),
            method: method.to_string(),
            deadline: Some(GoTime::from(std::time::SystemTime::now() + opts.timeout)),
        };
        let payload = msgpack::to_vec(&request).map_err(|source| Error::Encode {
            what: format!("request {queue} {method}"),
            source,
        })?;
        let broker_err = |source| Error::Broker {
            url: self.inner.broker.url().to_string(),
            source,
        };

        let mut lease = self.lease().await?;
        // RPUSH the request and BLPOP the reply in one round trip. Redis takes fractional BLPOP timeouts.
        let wait = opts.timeout.as_secs_f64().max(0.001);
        let mut pipe = redis::pipe();
        pipe.cmd("RPUSH")
            .arg(&queue)
            .arg(&payload)
            .ignore()
            .cmd("BLPOP")
            .arg(&id)
            .arg(wait);
        // A guard against a broker that stops answering altogether.
        let guard = opts.timeout + Duration::from_secs(2);
        let reply: Option<(String, Vec<u8>)> = match tokio::time::timeout(
            guard,
            pipe.query_async::<(Option<(String, Vec<u8>)>,)>(lease.conn()),
        )
        .await
        {
            Ok(Ok((reply,))) => reply,
            Ok(Err(e)) => return Err(broker_err(e)),
            // The broker stopped answering: the connection is in an unknown state and is dropped with the lease.
            Err(_) => {
                return Err(Error::Timeout {
                    queue,
                    method: method.to_string(),
                    waited: started.elapsed(),
                });
            }
        };

        let Some((_, raw)) = reply else {
            // Withdraw the request if nobody took it, so it cannot run after we gave up.
            let removed: i64 = redis::cmd("LREM")
                .arg(&queue)
                .arg(1)
                .arg(&payload)
                .query_async(lease.conn())
                .await
                .unwrap_or(0);
            lease.release();
            let waited = started.elapsed();
            return Err(if removed > 0 {
                Error::NoServer {
                    module: module.to_string(),
                    queue,
                    waited,
                }
            } else {
                Error::Timeout {
                    queue,
                    method: method.to_string(),
                    waited,
                }
            });
        };
        lease.release();

        let response: Response = msgpack::from_slice(&raw).map_err(|source| Error::Decode {
            what: format!("reply from {queue} {method}"),
            source,
        })?;
        if response.id != id {
            return Err(Error::Mismatch {
                expected: id,
                got: response.id,
            });
        }
        if let Some(message) = response.error {
            return Err(Error::Protocol {
                queue,
                method: method.to_string(),
                message,
            });
        }
        Ok(response.output)
    }

    /// Call a method and decode its result as `T` (use `()` for methods that return only an error).
    pub async fn call<T: DeserializeOwned>(
        &self,
        module: &str,
        object: &ObjectId,
        method: &str,
        inputs: Vec<Vec<u8>>,
        opts: CallOptions,
    ) -> Result<T, Error> {
        let output = self.request(module, object, method, inputs, opts).await?;
        decode_output(&output, &format!("{module}.{object} {method}"))
    }

    /// Ask a module's status object which objects it serves and what its workers do.
    pub async fn status(&self, module: &str, timeout: Duration) -> Result<Status, Error> {
        self.call(
            module,
            &ObjectId::status(),
            "",
            Vec::new(),
            CallOptions::timeout(timeout),
        )
        .await
    }

    /// Subscribe to a stream channel, decoding each event as `T`.
    ///
    /// All subscriptions of a client share one Redis connection, which is re-established (and every channel
    /// re-subscribed) when Redis restarts. Events are best-effort: those published while disconnected are
    /// lost, and when the subscriber does not keep up, events beyond its buffer are dropped and counted
    /// ([`Subscription::dropped`]).
    pub async fn subscribe<T: DeserializeOwned>(
        &self,
        channel: String,
    ) -> Result<Subscription<T>, Error> {
        self.inner
            .subscriber
            .subscribe(channel, self.inner.stream_buffer)
            .await
    }

    /// Subscribe to the stream `stream` of `module`'s `object`.
    pub async fn subscribe_stream<T: DeserializeOwned>(
        &self,
        module: &str,
        object: &ObjectId,
        stream: &str,
    ) -> Result<Subscription<T>, Error> {
        self.subscribe(keys::stream(module, object, stream)).await
    }

    /// How many channels the shared subscriber currently listens to (for diagnostics and tests).
    pub fn subscribed_channels(&self) -> HashMap<String, usize> {
        self.inner.subscriber.channels()
    }
}

/// Encode one argument for a request.
pub fn encode_arg<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>, Error> {
    msgpack::to_vec(value).map_err(|source| Error::Encode {
        what: what.to_string(),
        source,
    })
}

/// Turn a method's output into its result: the application error, or the decoded return value.
pub fn decode_output<T: DeserializeOwned>(output: &Output, what: &str) -> Result<T, Error> {
    if let Some(e) = &output.error {
        return Err(Error::Call {
            message: e.message.clone(),
            kind: e.kind.clone(),
        });
    }
    let data: &[u8] = match &output.data {
        Some(d) => d,
        None => &[0xc0],
    };
    msgpack::from_slice(data).map_err(|source| Error::Decode {
        what: format!("result of {what}"),
        source,
    })
}
