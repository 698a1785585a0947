//! The in-memory log ring (`log: ring`) and its followers.
//!
//! Lines are `[+] <name>: <line>` for stdout and `[-] <name>: <line>` for stderr; every spawn adds
//! `[-] <name>: ------------ [start] ------------`. Output is read as bytes and decoded lossily, so a service
//! printing invalid UTF-8 loses nothing but the bad bytes (v0.2.14 stopped reading and the service died of
//! SIGPIPE). A reader never closes a pipe before EOF.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;

/// The default ring size (`init -b`).
pub const DEFAULT_CAPACITY: usize = 2000;
/// Lines longer than this are cut into several lines (so a service without newlines cannot grow memory).
pub const MAX_LINE: usize = 16 * 1024;
/// How many lines a follower may lag behind before it is told lines were dropped.
const FOLLOW_BUFFER: usize = 1024;

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn marker(self) -> &'static str {
        match self {
            Stream::Stdout => "[+]",
            Stream::Stderr => "[-]",
        }
    }
}

/// The shared log ring.
#[derive(Clone)]
pub struct Ring {
    inner: Arc<Mutex<RingInner>>,
}

struct RingInner {
    lines: VecDeque<Arc<str>>,
    capacity: usize,
    tx: broadcast::Sender<Arc<str>>,
}

/// A follower: the ring's content at subscription time, then new lines.
pub struct Follower {
    /// The snapshot taken when following started.
    pub snapshot: Vec<Arc<str>>,
    rx: broadcast::Receiver<Arc<str>>,
}

impl Follower {
    /// The next live line; when this follower fell behind, a `[-] zinit: N lines dropped` line first.
    /// `None` when the ring is gone.
    pub async fn next(&mut self) -> Option<Arc<str>> {
        match self.rx.recv().await {
            Ok(line) => Some(line),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Some(format!("[-] zinit: {n} lines dropped").into())
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Ring {
    /// A ring keeping the last `capacity` lines.
    pub fn new(capacity: usize) -> Ring {
        let (tx, _) = broadcast::channel(FOLLOW_BUFFER);
        Ring {
            inner: Arc::new(Mutex::new(RingInner {
                lines: VecDeque::new(),
                capacity: capacity.max(1),
                tx,
            })),
        }
    }

    /// Add one formatted line.
    pub fn push_raw(&self, line: impl Into<Arc<str>>) {
        let line = line.into();
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.lines.len() == inner.capacity {
            inner.lines.pop_front();
        }
        inner.lines.push_back(line.clone());
        let _ = inner.tx.send(line);
    }

    /// Add a line of `name`'s output.
    pub fn push(&self, name: &str, stream: Stream, text: &str) {
        self.push_raw(format!("{} {name}: {text}", stream.marker()));
    }

    /// Add the marker written on every spawn.
    pub fn push_start_marker(&self, name: &str) {
        self.push(name, Stream::Stderr, "------------ [start] ------------");
    }

    /// The current content.
    pub fn snapshot(&self) -> Vec<Arc<str>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lines
            .iter()
            .cloned()
            .collect()
    }

    /// Snapshot and subscribe atomically: no line is lost or repeated between the two.
    pub fn follow(&self) -> Follower {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Follower {
            snapshot: inner.lines.iter().cloned().collect(),
            rx: inner.tx.subscribe(),
        }
    }

    /// Read `reader` to EOF, pushing each line under `name`. Invalid UTF-8 is replaced, overlong lines are
    /// split, read errors are retried: the pipe stays open as long as the writer keeps it open.
    pub async fn pump<R>(&self, name: String, stream: Stream, reader: R)
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        let mut reader = BufReader::with_capacity(8192, reader);
        let mut line: Vec<u8> = Vec::new();
        let mut errors = 0u32;
        loop {
            let chunk = match reader.fill_buf().await {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    errors += 1;
                    if errors == 1 {
                        tracing::warn!("reading the output of {name}: {e} (retrying)");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if chunk.is_empty() {
                break;
            }
            errors = 0;
            let n = chunk.len();
            let mut rest = chunk;
            while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
                line.extend_from_slice(&rest[..pos]);
                self.emit(&name, stream, &mut line);
                rest = &rest[pos + 1..];
            }
            line.extend_from_slice(rest);
            while line.len() >= MAX_LINE {
                let tail = line.split_off(MAX_LINE);
                self.emit(&name, stream, &mut line);
                line = tail;
            }
            reader.consume(n);
        }
        if !line.is_empty() {
            self.emit(&name, stream, &mut line);
        }
    }

    fn emit(&self, name: &str, stream: Stream, line: &mut Vec<u8>) {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.push(name, stream, &String::from_utf8_lossy(line));
        line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_lines() {
        let ring = Ring::new(3);
        for i in 0..5 {
            ring.push("svc", Stream::Stdout, &format!("line {i}"));
        }
        let lines: Vec<String> = ring.snapshot().iter().map(|l| l.to_string()).collect();
        assert_eq!(
            lines,
            vec!["[+] svc: line 2", "[+] svc: line 3", "[+] svc: line 4"]
        );
        ring.push_start_marker("svc");
        assert_eq!(
            &*ring.snapshot()[2],
            "[-] svc: ------------ [start] ------------"
        );
    }

    #[tokio::test]
    async fn pump_decodes_lossily_and_splits_lines() {
        let ring = Ring::new(100);
        let input: Vec<u8> = b"ok\n\xff\xfe bad\r\nno newline at end".to_vec();
        ring.pump("svc".into(), Stream::Stderr, &input[..]).await;
        let lines: Vec<String> = ring.snapshot().iter().map(|l| l.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "[-] svc: ok",
                "[-] svc: \u{fffd}\u{fffd} bad",
                "[-] svc: no newline at end"
            ]
        );
    }

    #[tokio::test]
    async fn overlong_lines_are_cut() {
        let ring = Ring::new(100);
        let input = vec![b'a'; MAX_LINE * 2 + 5];
        ring.pump("svc".into(), Stream::Stdout, &input[..]).await;
        let lengths: Vec<usize> = ring
            .snapshot()
            .iter()
            .map(|l| l.len() - "[+] svc: ".len())
            .collect();
        assert_eq!(lengths, vec![MAX_LINE, MAX_LINE, 5]);
    }

    #[tokio::test]
    async fn followers_get_the_snapshot_then_live_lines() {
        let ring = Ring::new(10);
        ring.push("a", Stream::Stdout, "before");
        let mut follower = ring.follow();
        ring.push("a", Stream::Stdout, "after");
        assert_eq!(follower.snapshot.len(), 1);
        assert_eq!(&*follower.snapshot[0], "[+] a: before");
        assert_eq!(&*follower.next().await.unwrap(), "[+] a: after");
    }

    #[tokio::test]
    async fn lagging_followers_are_told() {
        let ring = Ring::new(10);
        let mut follower = ring.follow();
        for i in 0..FOLLOW_BUFFER + 5 {
            ring.push("a", Stream::Stdout, &i.to_string());
        }
        assert_eq!(
            &*follower.next().await.unwrap(),
            "[-] zinit: 5 lines dropped"
        );
        assert_eq!(&*follower.next().await.unwrap(), "[+] a: 5");
    }
}
