//! Well-known paths on a node. Inside the sandbox node these are the same paths, on private mounts.

/// The bus broker's socket.
pub const REDIS_SOCKET: &str = "/var/run/redis.sock";
/// zinit's control socket.
pub const ZINIT_SOCKET: &str = "/var/run/zinit.sock";
/// zinit's unit directory.
pub const ZINIT_DIR: &str = "/etc/zinit";
/// Health flags (`limited-cache`, `readonly-cache`, `not-reachable`).
pub const FLAGS_DIR: &str = "/tmp/flags";
/// First-boot-since-power-on markers of modules.
pub const MODULES_RUN_DIR: &str = "/var/run/modules";
/// The system cache mount point.
pub const CACHE: &str = "/var/cache";
/// The installed release's taglink.
pub const TAG_INFO: &str = "/tmp/tag.info";
/// The node configuration directory.
pub const CONFIG_DIR: &str = "/etc/zos";

/// The flag `limited-cache`: no disk could hold the cache; a tmpfs is used.
pub const FLAG_LIMITED_CACHE: &str = "limited-cache";
/// The flag `readonly-cache`: the cache became read-only.
pub const FLAG_READONLY_CACHE: &str = "readonly-cache";
/// The flag `not-reachable`: the grid services are not reachable.
pub const FLAG_NOT_REACHABLE: &str = "not-reachable";

/// Set or clear a flag under `dir` (normally [`FLAGS_DIR`]).
pub fn set_flag(dir: &std::path::Path, flag: &str, on: bool) -> std::io::Result<()> {
    let path = dir.join(flag);
    if on {
        std::fs::create_dir_all(dir)?;
        std::fs::write(path, b"")
    } else {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Whether a flag is set under `dir`.
pub fn has_flag(dir: &std::path::Path, flag: &str) -> bool {
    dir.join(flag).exists()
}
