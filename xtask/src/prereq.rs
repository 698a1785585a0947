//! Installing what the tests and the sandbox need, idempotently (Debian packages, cargo tools).

use std::process::Command;

use crate::sh;

/// Debian packages the test suite and the sandbox use.
pub const TEST_PACKAGES: &[&str] = &[
    "redis-server", // the bus broker (tests start their own)
    "btrfs-progs",  // storaged pools
    "e2fsprogs",    // mkfs.ext4: a "foreign filesystem" in storage tests
    "util-linux",   // losetup, blkid, unshare, nsenter, mountpoint
    "iproute2",     // ip: veth, bridges, namespaces
    "iputils-ping", // connectivity checks
    "nftables",     // firewall rules
    "fuse3",        // fusermount3 for FUSE mounts
    "kmod",         // modinfo (absent modules are reported, not loaded)
    "procps",       // pgrep/ps used in cleanup checks
];

/// Fail early with a clear message when not root.
pub fn ensure_root_for(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        anyhow::bail!("{what} needs root: run it as root (sudo -E cargo xtask ...)");
    }
    Ok(())
}

fn installed(pkg: &str) -> bool {
    sh::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .map(|s| s.contains("install ok installed"))
        .unwrap_or(false)
}

/// Install the missing packages (apt-get update once, no recommends).
pub fn ensure_packages(pkgs: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    ensure_root_for(&format!("installing {}", missing.join(" ")))?;
    eprintln!("xtask: installing {}", missing.join(" "));
    sh::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    sh::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Install cargo-nextest unless present.
pub fn ensure_nextest() -> anyhow::Result<()> {
    if sh::ok(sh::cargo().args(["nextest", "--version"])) {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-nextest");
    sh::run(sh::cargo().args(["install", "--locked", "cargo-nextest"]))
}
