//! The per-client stream subscriber: one async pub/sub connection shared by every subscription of a client.
//!
//! A background task owns the connection. It (re)connects with a capped backoff, re-subscribes every channel
//! after a reconnect, and hands each message to every subscription of its channel through a bounded buffer.
//! A full buffer drops the message and counts it; a dropped [`Subscription`] unsubscribes at once.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use zos_types::msgpack;

use crate::{Broker, Error};

type Subscribers = HashMap<String, Vec<Slot>>;

struct Slot {
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

enum Command {
    Subscribe {
        channel: String,
        slot: Slot,
        done: oneshot::Sender<()>,
    },
    Unsubscribe {
        channel: String,
        id: u64,
    },
}

/// Handle on the shared subscriber task (started lazily on the first subscription).
pub(crate) struct Subscriber {
    broker: Broker,
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
    next_id: AtomicU64,
    channels: Arc<Mutex<HashMap<String, usize>>>,
}

impl Subscriber {
    pub(crate) fn new(broker: Broker) -> Self {
        Subscriber {
            broker,
            commands: Mutex::new(None),
            next_id: AtomicU64::new(1),
            channels: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn sender(&self) -> mpsc::UnboundedSender<Command> {
        let mut guard = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = guard.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(self.broker.clone(), rx, self.channels.clone()));
        *guard = Some(tx.clone());
        tx
    }

    pub(crate) fn channels(&self) -> HashMap<String, usize> {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) async fn subscribe<T: DeserializeOwned>(
        &self,
        channel: String,
        buffer: usize,
    ) -> Result<Subscription<T>, Error> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let commands = self.sender();
        let (done, confirmed) = oneshot::channel();
        let slot = Slot {
            id,
            tx,
            dropped: dropped.clone(),
        };
        // The subscription is registered at once; `confirmed` fires when Redis acknowledged it (or at the
        // first successful connection). Waiting a moment for it lets callers publish right after subscribing.
        let _ = commands.send(Command::Subscribe {
            channel: channel.clone(),
            slot,
            done,
        });
        let _ = tokio::time::timeout(Duration::from_secs(2), confirmed).await;
        Ok(Subscription {
            channel,
            id,
            rx,
            dropped,
            commands,
            _type: PhantomData,
        })
    }
}

/// Events of one stream, decoded as `T`. Dropping it unsubscribes.
pub struct Subscription<T> {
    channel: String,
    id: u64,
    rx: mpsc::Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    commands: mpsc::UnboundedSender<Command>,
    _type: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next event; `None` when the client's subscriber has shut down.
    pub async fn recv(&mut self) -> Option<Result<T, Error>> {
        let raw = self.rx.recv().await?;
        Some(msgpack::from_slice(&raw).map_err(|source| Error::Decode {
            what: format!("event on {}", self.channel),
            source,
        }))
    }

    /// The next event as raw msgpack.
    pub async fn recv_raw(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// Events dropped so far because this subscription's buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The channel this subscription listens to.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unsubscribe {
            channel: std::mem::take(&mut self.channel),
            id: self.id,
        });
    }
}

fn publish_channels(subs: &Subscribers, shared: &Mutex<HashMap<String, usize>>) {
    let mut map = shared.lock().unwrap_or_else(|e| e.into_inner());
    *map = subs.iter().map(|(k, v)| (k.clone(), v.len())).collect();
}

/// Apply a command to the table; returns the channel to (un)subscribe on Redis, if any.
fn apply(
    subs: &mut Subscribers,
    cmd: Command,
    pending: &mut Vec<oneshot::Sender<()>>,
) -> Option<(bool, String)> {
    match cmd {
        Command::Subscribe {
            channel,
            slot,
            done,
        } => {
            pending.push(done);
            let list = subs.entry(channel.clone()).or_default();
            list.push(slot);
            (list.len() == 1).then_some((true, channel))
        }
        Command::Unsubscribe { channel, id } => {
            let list = subs.get_mut(&channel)?;
            list.retain(|s| s.id != id);
            if list.is_empty() {
                subs.remove(&channel);
                return Some((false, channel));
            }
            None
        }
    }
}

async fn run(
    broker: Broker,
    mut commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Mutex<HashMap<String, usize>>>,
) {
    let mut subs: Subscribers = HashMap::new();
    let mut pending: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    // Set while the connection is lost, so the outage is logged once and the recovery once.
    let mut lost = false;
    loop {
        let pubsub = match broker.client().get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                if !lost {
                    tracing::warn!(broker = broker.url(), error = %e, "stream subscriber cannot reach the broker; retrying");
                    lost = true;
                }
                // Keep the table current while disconnected.
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        cmd = commands.recv() => match cmd {
                            Some(cmd) => { apply(&mut subs, cmd, &mut pending); publish_channels(&subs, &shared); }
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut ok = true;
        for channel in subs.keys() {
            if sink.subscribe(channel).await.is_err() {
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        if lost {
            tracing::info!(
                broker = broker.url(),
                channels = subs.len(),
                "stream subscriber reconnected"
            );
        }
        backoff = Duration::from_millis(100);
        for done in pending.drain(..) {
            let _ = done.send(());
        }
        loop {
            tokio::select! {
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    let change = apply(&mut subs, cmd, &mut pending);
                    publish_channels(&subs, &shared);
                    let result = match change {
                        Some((true, ch)) => sink.subscribe(&ch).await,
                        Some((false, ch)) => sink.unsubscribe(&ch).await,
                        None => Ok(()),
                    };
                    if result.is_err() {
                        break;
                    }
                    for done in pending.drain(..) {
                        let _ = done.send(());
                    }
                }
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let channel = msg.get_channel_name().to_string();
                    let payload = msg.get_payload_bytes().to_vec();
                    let mut closed = false;
                    if let Some(list) = subs.get(&channel) {
                        for slot in list {
                            match slot.tx.try_send(payload.clone()) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(_)) => { slot.dropped.fetch_add(1, Ordering::Relaxed); }
                                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
                            }
                        }
                    }
                    if closed {
                        if let Some(list) = subs.get_mut(&channel) {
                            list.retain(|s| !s.tx.is_closed());
                            if list.is_empty() {
                                subs.remove(&channel);
                                let _ = sink.unsubscribe(&channel).await;
                            }
                        }
                        publish_channels(&subs, &shared);
                    }
                }
            }
        }
        tracing::warn!(
            broker = broker.url(),
            "stream subscriber connection closed; reconnecting"
        );
        lost = true;
        tokio::time::sleep(backoff).await;
    }
}
