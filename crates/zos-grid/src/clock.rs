//! Time as the registrar protocol sees it, injectable so servers and tests can freeze or move it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use zos_types::GoTime;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> i64;

    /// Whole seconds since the Unix epoch.
    fn now_unix(&self) -> i64 {
        self.now_nanos().div_euclid(1_000_000_000)
    }

    /// As a Go time (for JSON timestamps).
    fn now_time(&self) -> GoTime {
        nanos_to_time(self.now_nanos())
    }
}

/// Convert Unix nanoseconds to a [`GoTime`].
pub fn nanos_to_time(nanos: i64) -> GoTime {
    GoTime::from_unix(
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000) as u32,
    )
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_nanos(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i64,
            Err(e) => -(e.duration().as_nanos() as i64),
        }
    }
}

/// A clock that only moves when told to (tests). Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `unix_secs`.
    pub fn at(unix_secs: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(unix_secs * 1_000_000_000)))
    }

    /// Set the time to `unix_secs`.
    pub fn set(&self, unix_secs: i64) {
        self.0.store(unix_secs * 1_000_000_000, Ordering::SeqCst);
    }

    /// Move the time by `secs` (may be negative).
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs * 1_000_000_000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
