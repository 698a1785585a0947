//! Node configuration in one place.
//!
//! Every daemon reads its settings through [`NodeConfig::load`]: built-in defaults, then the kernel command
//! line ([`Cmdline`]), then `/etc/zos/config.toml`, then `ZOS__SECTION__KEY` environment overrides. See the
//! crate README for the precedence rules and `config.example.toml` for every key.
//!
//! The kernel command line decides the run mode, farm and debug flags exactly as Zero-OS does (`farmer_id`,
//! `runmode`, `version`, `zos-debug`, ...); the TOML file holds what a kernel parameter cannot: which daemons
//! run, which disks storaged may use, where the registrar and hub are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod paths;

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("kernel command line: {0}")]
    Cmdline(String),
}

/// Run mode of the node (kernel parameter `runmode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    Dev,
    Qa,
    Test,
    #[default]
    Prod,
}

impl RunMode {
    /// Parse a `runmode` value. Like Go, anything unknown is `prod`; the long names are accepted too.
    pub fn parse(text: &str) -> RunMode {
        match text {
            "dev" | "development" => RunMode::Dev,
            "qa" => RunMode::Qa,
            "test" | "testing" => RunMode::Test,
            _ => RunMode::Prod,
        }
    }

    /// The long name used in hub taglinks and zos-config files.
    pub fn display_name(self) -> &'static str {
        match self {
            RunMode::Dev => "development",
            RunMode::Qa => "qa",
            RunMode::Test => "testing",
            RunMode::Prod => "production",
        }
    }

    /// The grid registrar of this mode.
    pub fn default_registrar(self) -> &'static str {
        match self {
            RunMode::Dev => "http://registrar.dev4.grid.tf",
            RunMode::Test => "http://registrar.test4.grid.tf",
            RunMode::Qa => "https://registrar.qa4.grid.tf",
            RunMode::Prod => "https://registrar.prod4.threefold.me",
        }
    }

    /// The RMB relay of this mode.
    pub fn default_relay(self) -> &'static str {
        match self {
            RunMode::Dev => "wss://relay.dev.grid.tf",
            RunMode::Test => "wss://relay.test.grid.tf",
            RunMode::Qa => "wss://relay.qa.grid.tf",
            RunMode::Prod => "wss://relay.grid.tf",
        }
    }
}

/// The parsed kernel command line: `key=value` words (shell-split), repeated keys accumulate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cmdline {
    params: BTreeMap<String, Vec<String>>,
}

impl Cmdline {
    /// Parse a command line.
    pub fn parse(text: &str) -> Result<Cmdline, ConfigError> {
        let words = shlex::split(text.trim())
            .ok_or_else(|| ConfigError::Cmdline(format!("unbalanced quotes in {text:?}")))?;
        let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for word in words {
            let (k, v) = match word.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (word.clone(), String::new()),
            };
            params.entry(k).or_default().push(v);
        }
        Ok(Cmdline { params })
    }

    /// Read `/proc/cmdline`, or the file named by `ZOS_CMDLINE` when set.
    pub fn load() -> Result<Cmdline, ConfigError> {
        let path = std::env::var_os("ZOS_CMDLINE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/proc/cmdline"));
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Cmdline::parse(&text)
    }

    /// Whether a parameter is present (with or without a value).
    pub fn has(&self, key: &str) -> bool {
        self.params.contains_key(key)
    }

    /// The last value of a parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of a parameter.
    pub fn all(&self, key: &str) -> &[String] {
        self.params.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// What the kernel command line says about the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KernelParams {
    /// `farmer_id`; `None` means an orphan node.
    pub farm_id: Option<u32>,
    /// `runmode` (or `ZOS_RUNMODE` when absent); default prod.
    pub runmode: RunMode,
    /// `version` (`v4` for this node).
    pub version: String,
    /// `secret` (the farm secret).
    pub farm_secret: String,
    /// `relay` overrides.
    pub relays: Vec<String>,
    /// `zos-debug`: log at debug level.
    pub debug: bool,
    /// `zos-debug-vm`: the node runs in a VM.
    pub debug_vm: bool,
    /// `disable-gpu`.
    pub disable_gpu: bool,
    /// `missing-ssd`: HDD pools may hold volumes and the cache.
    pub missing_ssd: bool,
    /// `ssh-user`: GitHub users whose keys are authorized (ignored on prod).
    pub ssh_users: Vec<String>,
    /// `vlan:priv`.
    pub vlan_private: Option<u16>,
    /// `vlan:pub`.
    pub vlan_public: Option<u16>,
    /// `domain`.
    pub domain: String,
}

impl KernelParams {
    /// Interpret a command line.
    pub fn from_cmdline(c: &Cmdline) -> Result<KernelParams, ConfigError> {
        let farm_id = match c.get("farmer_id") {
            None | Some("") => None,
            Some(v) => Some(v.parse().map_err(|_| {
                ConfigError::Cmdline(format!("farmer_id={v:?} is not a farm number"))
            })?),
        };
        let runmode = match c.get("runmode") {
            Some(v) => RunMode::parse(v),
            None => std::env::var("ZOS_RUNMODE")
                .map(|v| RunMode::parse(&v))
                .unwrap_or_default(),
        };
        let vlan = |key: &str| -> Result<Option<u16>, ConfigError> {
            match c.get(key) {
                None | Some("none") | Some("untagged") | Some("un") | Some("") => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| ConfigError::Cmdline(format!("{key}={v:?} is not a VLAN id"))),
            }
        };
        Ok(KernelParams {
            farm_id,
            runmode,
            version: c.get("version").unwrap_or("v3").to_string(),
            farm_secret: c.get("secret").unwrap_or("").to_string(),
            relays: c
                .all("relay")
                .iter()
                .filter(|r| !r.is_empty())
                .cloned()
                .collect(),
            debug: c.has("zos-debug"),
            debug_vm: c.has("zos-debug-vm"),
            disable_gpu: c.has("disable-gpu"),
            missing_ssd: c.has("missing-ssd"),
            ssh_users: c
                .all("ssh-user")
                .iter()
                .filter(|u| !u.is_empty())
                .cloned()
                .collect(),
            vlan_private: vlan("vlan:priv")?,
            vlan_public: vlan("vlan:pub")?,
            domain: c.get("domain").unwrap_or("").to_string(),
        })
    }
}

/// Every daemon zinit can start, in boot order.
pub const ALL_SERVICES: &[&str] = &[
    "storaged",
    "identityd",
    "registrar_light",
    "netlightd",
    "noded",
    "flistd",
    "contd",
    "vmd",
    "provisiond",
    "powerd",
    "upgrader",
];

/// `[bus]`: where the zbus broker listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    pub broker: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            broker: format!("unix://{}", paths::REDIS_SOCKET),
        }
    }
}

/// `[system_services]`: which daemons zinit starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemServices {
    /// Daemon names (see [`ALL_SERVICES`]); default: all of them.
    pub enable: Vec<String>,
}

impl Default for SystemServices {
    fn default() -> Self {
        SystemServices {
            enable: ALL_SERVICES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// `[storage]`: storaged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Devices storaged may use. Empty: every non-USB, non-removable disk of the machine (a real node).
    /// The sandbox and tests list their loop devices here, and then nothing else is ever touched.
    pub devices: Vec<PathBuf>,
    /// Turn free space (≥ 5 GiB) on partitioned disks into new partitions. Off unless asked for.
    pub allow_partitioning: bool,
    /// Where pools are mounted (`<mount_root>/<uuid>`).
    pub mount_root: PathBuf,
    /// Where the system cache is mounted.
    pub cache_path: PathBuf,
    /// Initial quota of the system cache in bytes, and the step by which storaged grows or shrinks it.
    pub cache_size: u64,
    /// Concurrent bus calls.
    pub workers: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            devices: Vec::new(),
            allow_partitioning: false,
            mount_root: PathBuf::from("/mnt"),
            cache_path: PathBuf::from(paths::CACHE),
            cache_size: 5 << 30,
            workers: 16,
        }
    }
}

/// `[identity]`: identityd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Where the key (`seed.txt`) lives.
    pub root: PathBuf,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            root: PathBuf::from("/var/cache/modules/identityd"),
        }
    }
}

/// `[registrar]`: the grid registrar and how the node registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Registrar base URL (without `/api/v1`); empty: the run mode's registrar.
    pub url: String,
    /// geoip services, tried in order.
    pub geoip_urls: Vec<String>,
    /// Relays to put on the node's account; empty: the run mode's relay.
    pub relays: Vec<String>,
    /// The interface whose name, MAC and addresses are registered, and whose address changes trigger an
    /// update (the `zos` bridge on a node).
    pub interface: String,
    /// Register only when `/dev/kvm` exists (as Zero-OS does); re-checked until it appears.
    pub require_kvm: bool,
    /// Seconds between checks that the node's account and node record still exist (Zero-OS: 30 min).
    pub account_check_secs: u64,
    /// Seconds between full updates of the node's record (Zero-OS: 24 h).
    pub update_secs: u64,
    /// Longest wait between retries, in seconds (the backoff doubles up to it; Zero-OS: 2 min).
    pub max_backoff_secs: u64,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            url: String::new(),
            geoip_urls: vec![
                "https://geoip.threefold.me/".into(),
                "https://geoip.grid.tf/".into(),
                "https://02.geoip.grid.tf/".into(),
                "https://03.geoip.grid.tf/".into(),
            ],
            relays: Vec::new(),
            interface: "zos".into(),
            require_kvm: true,
            account_check_secs: 30 * 60,
            update_secs: 24 * 60 * 60,
            max_backoff_secs: 120,
        }
    }
}

/// `[hub]`: where flists come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Hub base URL.
    pub url: String,
    /// Block storage for flists whose routes do not say.
    pub storage: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            url: "https://v4.hub.threefold.me".into(),
            storage: "zdb://v4.hub.threefold.me:9940".into(),
        }
    }
}

/// `[flist]`: flistd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlistConfig {
    /// flistd's state and mounts.
    pub root: PathBuf,
    /// Concurrent bus calls.
    pub workers: usize,
    /// Block stores (`[<lo>-<hi>=]<url>`) tried when a flist's own routes fail (a flist packed with a store
    /// the node cannot reach). Empty: the hub's `/blocks` (`<[hub] url>/blocks`), then `[hub] storage`.
    pub stores: Vec<String>,
}

impl Default for FlistConfig {
    fn default() -> Self {
        FlistConfig {
            root: PathBuf::from("/var/cache/modules/flistd"),
            workers: 4,
            stores: Vec::new(),
        }
    }
}

/// The whole node configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeConfig {
    /// From the kernel command line.
    pub kernel: KernelParams,
    pub bus: BusConfig,
    pub system_services: SystemServices,
    pub storage: StorageConfig,
    pub identity: IdentityConfig,
    pub registrar: RegistrarConfig,
    pub hub: HubConfig,
    pub flist: FlistConfig,
}

/// The file part of the configuration (everything but the kernel parameters).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    bus: BusConfig,
    system_services: SystemServices,
    storage: StorageConfig,
    identity: IdentityConfig,
    registrar: RegistrarConfig,
    hub: HubConfig,
    flist: FlistConfig,
}

/// Default location of the config file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/zos/config.toml";

impl NodeConfig {
    /// Load from the standard places: the kernel command line (`ZOS_CMDLINE` or `/proc/cmdline`), the config
    /// file (`ZOS_CONFIG` or `/etc/zos/config.toml`, optional) and the process environment.
    pub fn load() -> Result<NodeConfig, ConfigError> {
        NodeConfig::load_from(None)
    }

    /// Like [`NodeConfig::load`], with the config file given explicitly (a daemon's `--config` flag): then the
    /// file must exist. `None` means `ZOS_CONFIG`, else `/etc/zos/config.toml` if present.
    pub fn load_from(file: Option<&Path>) -> Result<NodeConfig, ConfigError> {
        let cmdline = Cmdline::load()?;
        let explicit = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ZOS_CONFIG").map(PathBuf::from));
        let path = explicit
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => None,
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        NodeConfig::from_parts(
            &cmdline,
            text.as_deref().map(|t| (path.as_path(), t)),
            std::env::vars(),
        )
    }

    /// Build from explicit parts (for tests and tools): a command line, an optional `(path, text)` config
    /// file, and environment variables.
    pub fn from_parts(
        cmdline: &Cmdline,
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<NodeConfig, ConfigError> {
        let kernel = KernelParams::from_cmdline(cmdline)?;
        let mut table = match file {
            Some((path, text)) => text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?,
            None => toml::Table::new(),
        };
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("ZOS__") else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: "expected ZOS__<SECTION>__<KEY>".into(),
                });
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.clone()));
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => {
                    t.insert(key, parsed);
                }
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("[{section}] is not a table"),
                    });
                }
            }
        }
        let path = file
            .map(|(p, _)| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("<defaults and environment>"));
        let parsed: FileConfig =
            FileConfig::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
        for name in &parsed.system_services.enable {
            if !ALL_SERVICES.contains(&name.as_str()) {
                return Err(ConfigError::Parse {
                    path,
                    message: format!(
                        "[system_services] enable: unknown service {name:?} (known: {})",
                        ALL_SERVICES.join(", ")
                    ),
                });
            }
        }
        Ok(NodeConfig {
            kernel,
            bus: parsed.bus,
            system_services: parsed.system_services,
            storage: parsed.storage,
            identity: parsed.identity,
            registrar: parsed.registrar,
            hub: parsed.hub,
            flist: parsed.flist,
        })
    }

    /// The registrar URL: the configured one, else the run mode's.
    pub fn registrar_url(&self) -> String {
        if self.registrar.url.is_empty() {
            self.kernel.runmode.default_registrar().to_string()
        } else {
            self.registrar.url.trim_end_matches('/').to_string()
        }
    }

    /// Relays for the node's account: configured, else from the command line, else the run mode's.
    pub fn relays(&self) -> Vec<String> {
        if !self.registrar.relays.is_empty() {
            self.registrar.relays.clone()
        } else if !self.kernel.relays.is_empty() {
            self.kernel.relays.clone()
        } else {
            vec![self.kernel.runmode.default_relay().to_string()]
        }
    }

    /// Whether zinit should start `service`.
    pub fn service_enabled(&self, service: &str) -> bool {
        self.system_services.enable.iter().any(|s| s == service)
    }

    /// The configuration as TOML (what `zos-config` prints; kernel parameters omitted).
    pub fn to_toml(&self) -> String {
        let file = FileConfig {
            bus: self.bus.clone(),
            system_services: self.system_services.clone(),
            storage: self.storage.clone(),
            identity: self.identity.clone(),
            registrar: self.registrar.clone(),
            hub: self.hub.clone(),
            flist: self.flist.clone(),
        };
        toml::to_string_pretty(&file).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(
        cmdline: &str,
        file: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<NodeConfig, ConfigError> {
        let c = Cmdline::parse(cmdline).unwrap();
        NodeConfig::from_parts(
            &c,
            file.map(|t| (Path::new("/etc/zos/config.toml"), t)),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn kernel_parameters_like_zero_os() {
        let c = cfg("BOOT_IMAGE=/x farmer_id=42 runmode=dev version=v4 zos-debug ssh-user=a ssh-user=b vlan:priv=none", None, &[]).unwrap();
        assert_eq!(c.kernel.farm_id, Some(42));
        assert_eq!(c.kernel.runmode, RunMode::Dev);
        assert_eq!(c.kernel.version, "v4");
        assert!(c.kernel.debug && !c.kernel.debug_vm);
        assert_eq!(c.kernel.ssh_users, vec!["a", "b"]);
        assert_eq!(c.kernel.vlan_private, None);
        assert_eq!(c.registrar_url(), "http://registrar.dev4.grid.tf");
        // Unknown run modes are prod, as in Go; long names are understood.
        assert_eq!(
            cfg("runmode=whatever", None, &[]).unwrap().kernel.runmode,
            RunMode::Prod
        );
        assert_eq!(
            cfg("runmode=testing", None, &[]).unwrap().kernel.runmode,
            RunMode::Test
        );
        // No farmer_id: an orphan.
        assert_eq!(cfg("", None, &[]).unwrap().kernel.farm_id, None);
        let err = cfg("farmer_id=abc", None, &[]).unwrap_err();
        assert!(err.to_string().contains("farmer_id=\"abc\""), "{err}");
    }

    #[test]
    fn defaults_work_without_a_file() {
        let c = cfg("", None, &[]).unwrap();
        assert_eq!(c.bus.broker, "unix:///var/run/redis.sock");
        assert_eq!(c.system_services.enable.len(), ALL_SERVICES.len());
        assert!(c.storage.devices.is_empty());
        assert!(!c.storage.allow_partitioning);
    }

    #[test]
    fn file_and_environment_override_defaults() {
        let file = r#"
            [system_services]
            enable = ["storaged", "identityd"]
            [storage]
            devices = ["/dev/loop7"]
            [registrar]
            url = "http://10.0.0.1:8080/"
        "#;
        let c = cfg(
            "runmode=dev",
            Some(file),
            &[
                ("ZOS__BUS__BROKER", "unix:///tmp/r.sock"),
                ("ZOS__STORAGE__WORKERS", "4"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert!(c.service_enabled("storaged") && !c.service_enabled("vmd"));
        assert_eq!(c.storage.devices, vec![PathBuf::from("/dev/loop7")]);
        assert_eq!(c.storage.workers, 4);
        assert_eq!(c.bus.broker, "unix:///tmp/r.sock");
        assert_eq!(c.registrar_url(), "http://10.0.0.1:8080");
        // The printed form parses back to the same file config.
        let again = cfg("runmode=dev", Some(&c.to_toml()), &[]).unwrap();
        assert_eq!(again.storage, c.storage);
    }

    #[test]
    fn bad_input_names_what_was_wrong() {
        let err = cfg("", Some("[storage]\ndevicez = []\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("devicez"), "{err}");
        let err = cfg("", Some("[system_services]\nenable = [\"nope\"]\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown service \"nope\""), "{err}");
        let err = cfg("", Some("not toml ["), &[]).unwrap_err().to_string();
        assert!(err.contains("/etc/zos/config.toml"), "{err}");
        let err = cfg("", None, &[("ZOS__BUS", "x")]).unwrap_err().to_string();
        assert!(err.contains("ZOS__BUS"), "{err}");
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn the_example_file_is_the_defaults() {
        let text = include_str!("../config.example.toml");
        let c = super::NodeConfig::from_parts(
            &super::Cmdline::default(),
            Some((std::path::Path::new("config.example.toml"), text)),
            std::iter::empty(),
        )
        .unwrap();
        let d = super::NodeConfig::from_parts(&super::Cmdline::default(), None, std::iter::empty())
            .unwrap();
        assert_eq!(c, d);
    }
}
