//! Failpoints: `ZOS_STORAGE_FAILPOINT=<name>` makes the daemon stop at the named step of an operation (it logs
//! `failpoint <name> reached` on stderr and then waits forever), so a test can kill it there deterministically
//! and check what the next start repairs. Unset, a failpoint costs one string comparison.
//!
//! Points: `pool-format:marked` (a blank device is about to be formatted), `volume-create:staged` (subvolume
//! made, no quota yet), `volume-create:limited` (quota set, not yet published), `disk-create:allocated` (file
//! allocated, not yet published), `disk-write:partial` (part of the image written), `disk-format:started`
//! (before mkfs runs on a disk).

use std::sync::OnceLock;

/// The environment variable naming the failpoint.
pub const FAILPOINT_ENV: &str = "ZOS_STORAGE_FAILPOINT";

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(FAILPOINT_ENV).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Stop here forever when the failpoint `name` is armed.
pub(crate) fn hit(name: &str) {
    if armed() == Some(name) {
        tracing::error!(failpoint = name, "failpoint reached; pausing until killed");
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
