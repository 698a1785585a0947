//! Failpoints: `ZOS_FLISTD_FAILPOINT=<name>` makes the daemon stop at the named step (it logs
//! `failpoint <name> reached` on stderr, then the operation waits forever), so a test can SIGKILL it there
//! and check what the next start finishes or undoes. Unset, a failpoint costs one string comparison.
//!
//! Points: `mount:volume-created` (the writable volume exists, nothing is mounted on the name yet),
//! `mount:mounted` (the name is mounted, its record does not say so yet), `unmount:detached` (the name is
//! unmounted, its volume not yet deleted).

use std::sync::OnceLock;

/// The environment variable naming the failpoint.
pub const FAILPOINT_ENV: &str = "ZOS_FLISTD_FAILPOINT";

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(FAILPOINT_ENV).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Stop this operation here forever when the failpoint `name` is armed.
pub(crate) async fn hit(name: &str) {
    if armed() == Some(name) {
        tracing::error!(failpoint = name, "failpoint reached; pausing until killed");
        eprintln!("failpoint {name} reached");
        std::future::pending::<()>().await;
    }
}
