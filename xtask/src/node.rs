//! The sandbox node: a Zero-OS node booted on a developer's or CI machine without touching the host.
//!
//! `up` builds the binaries, then boots a node in fresh PID, mount, network and UTS namespaces with our `zinit`
//! as PID 1, private `/etc` (an overlay), `/var/run`, `/var/cache`, `/mnt` and `/tmp` (tmpfs), the bus broker
//! (`redis-server` on `/var/run/redis.sock`, a zinit unit), and sparse-file loop devices as its disks, declared
//! in its config so storaged uses those and nothing else. Its network is a veth pair to the host with private
//! addresses (10.232.X.0/24; nothing is routed beyond the host); inside, as on a real node, the uplink is
//! enslaved to a bridge named `zos` that carries the node's address (static here, DHCP on a real node).
//! On the host side it runs the registrar (with a farm already created) and the hub the node talks to.
//!
//! Everything `up` makes is recorded in `/var/lib/zos-sandbox/<name>/state` as soon as it exists, so `down`
//! (also run when `up` fails half-way) removes exactly that: processes, mounts (they die with the mount
//! namespace), loop devices, links and files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{prereq, sh};

/// Where sandboxes keep their state.
const STATE_ROOT: &str = "/var/lib/zos-sandbox";
/// Where the node sees its binaries (a bind mount of `<state>/bin` on its private /run).
const NODE_BIN: &str = "/run/zos-bin";
/// Size of each sparse disk.
const DISK_SIZE: u64 = 8 << 30;
/// Number of disks.
const DISKS: usize = 2;
/// Farm the node belongs to (created in the host-side registrar).
const FARM_NAME: &str = "sandboxfarm";
/// Test mnemonic of the sandbox farmer (the standard Substrate dev phrase: never a real account).
const FARMER_MNEMONIC: &str =
    "bottom drive obey lake curtain smoke basket hold race lonely fit walk";

/// Daemon binaries the node runs, with their package, in boot order. Only those present in the workspace are
/// built and enabled.
const DAEMONS: &[(&str, &str)] = &[
    ("storaged", "storaged"),
    ("identityd", "identityd"),
    ("registrar_light", "registrar_light"),
    ("flistd", "flistd"),
];

/// Host-side tools, with their package.
const HOST_TOOLS: &[(&str, &str)] = &[
    ("registrar-server", "registrar-server"),
    ("hub-server", "hub-server"),
    ("zflist", "zflist"),
];

/// Tools the node needs besides the daemons.
const NODE_TOOLS: &[(&str, &str)] = &[("zinit", "zinit"), ("zbus", "zbus-cli")];

struct Opts {
    name: String,
    /// For `exec`: the command to run inside the node.
    command: Vec<String>,
    /// Build with `--release`.
    release: bool,
    /// For `logs`: one service.
    service: Option<String>,
    /// Seconds `up` waits for the services.
    wait: u64,
    /// `up` without starting the registrar (a node whose registrar is away at boot).
    no_registrar: bool,
}

fn parse(args: &[String]) -> anyhow::Result<(String, Opts)> {
    let mut it = args.iter();
    let verb = it
        .next()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("node what? up, down, status, logs or shell"))?;
    let mut opts = Opts {
        name: "sandbox".into(),
        command: Vec::new(),
        release: false,
        service: None,
        wait: 180,
        no_registrar: false,
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            s if verb == "publish" && !s.starts_with('-') => opts.command.push(s.to_string()),
            "--" if verb == "exec" => {
                opts.command = it.by_ref().cloned().collect();
                break;
            }
            "--name" => {
                opts.name = it
                    .next()
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("--name needs a value"))?
            }
            "--release" => opts.release = true,
            "--no-registrar" => opts.no_registrar = true,
            "--wait" => {
                opts.wait = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("--wait needs seconds"))?
            }
            s if (verb == "logs" || verb == "registrar")
                && !s.starts_with('-')
                && opts.service.is_none() =>
            {
                opts.service = Some(s.to_string())
            }
            other => anyhow::bail!("unknown option {other:?} for `node {verb}`"),
        }
    }
    if opts.name.is_empty()
        || opts.name.len() > 24
        || !opts
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        anyhow::bail!(
            "invalid node name {:?}: 1-24 characters, letters, digits and '-'",
            opts.name
        );
    }
    Ok((verb, opts))
}

/// `cargo xtask node ...`.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let (verb, opts) = parse(args)?;
    match verb.as_str() {
        "up" => up(&opts),
        "down" => down(&opts.name),
        "status" => status(&opts.name),
        "logs" => logs(&opts.name, opts.service.as_deref()),
        "shell" => shell(&opts.name),
        "exec" => exec(&opts.name, &opts.command),
        "reboot" => reboot(&opts.name, opts.wait),
        "publish" => publish(&opts.name, &opts.command),
        "registrar" => registrar(&opts.name, opts.service.as_deref().unwrap_or("")),
        other => {
            anyhow::bail!("unknown node command {other:?}: up, down, status, logs, shell or exec")
        }
    }
}

// ------------------------------------------------------------------------------------------------------------
// state

/// What a sandbox made, recorded line by line (`key=value`).
struct State {
    dir: PathBuf,
    values: BTreeMap<String, String>,
}

impl State {
    fn dir_of(name: &str) -> PathBuf {
        Path::new(STATE_ROOT).join(name)
    }

    fn load(name: &str) -> Option<State> {
        let dir = State::dir_of(name);
        let text = fs::read_to_string(dir.join("state")).ok()?;
        let values = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(State { dir, values })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn set(&mut self, key: &str, value: impl ToString) -> anyhow::Result<()> {
        self.values.insert(key.to_string(), value.to_string());
        let text: String = self
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        let tmp = self.dir.join("state.tmp");
        fs::write(&tmp, text)?;
        fs::rename(tmp, self.dir.join("state"))?;
        Ok(())
    }

    fn pid(&self, key: &str) -> Option<i32> {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .filter(|p| alive(*p))
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

// ------------------------------------------------------------------------------------------------------------
// up

fn built_packages() -> anyhow::Result<Vec<(&'static str, &'static str)>> {
    let root = sh::workspace_root()?;
    Ok(NODE_TOOLS
        .iter()
        .chain(DAEMONS)
        .chain(HOST_TOOLS)
        .copied()
        .filter(|(bin, pkg)| {
            // The package lives in bins/<binary name> (zbus-cli in bins/zbus).
            let dir = root.join("bins").join(bin);
            fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|t| t.contains(&format!("name = \"{pkg}\"")))
        })
        .collect())
}

fn build(opts: &Opts) -> anyhow::Result<PathBuf> {
    let root = sh::workspace_root()?;
    let pkgs = built_packages()?;
    let mut cmd = sh::cargo();
    cmd.arg("build").current_dir(&root);
    if opts.release {
        cmd.arg("--release");
    }
    for (_, pkg) in &pkgs {
        cmd.args(["-p", pkg]);
    }
    eprintln!(
        "xtask: building {}",
        pkgs.iter().map(|p| p.1).collect::<Vec<_>>().join(" ")
    );
    sh::run(&mut cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join(if opts.release { "release" } else { "debug" }))
}

/// A free /24 in 10.232.100-199.0, by looking at the host's addresses.
fn free_subnet() -> anyhow::Result<u8> {
    let addrs = sh::output(Command::new("ip").args(["-4", "-o", "addr", "show"]))?;
    (100u8..200)
        .find(|x| !addrs.contains(&format!("10.232.{x}.")))
        .ok_or_else(|| anyhow::anyhow!("no free 10.232.X.0/24 subnet for the sandbox"))
}

fn up(opts: &Opts) -> anyhow::Result<()> {
    prereq::ensure_root_for("the sandbox node (namespaces, loop devices, mounts)")?;
    if let Some(state) = State::load(&opts.name) {
        if state.pid("init_pid").is_some() {
            anyhow::bail!(
                "node {:?} is already up (init pid {}); `cargo xtask node down --name {}` first",
                opts.name,
                state.get("init_pid").unwrap_or("?"),
                opts.name
            );
        }
        eprintln!(
            "xtask: node {:?} left state behind; cleaning it first",
            opts.name
        );
        down(&opts.name)?;
    }
    prereq::ensure_packages(prereq::TEST_PACKAGES)?;
    let bin_dir = build(opts)?;
    let dir = State::dir_of(&opts.name);
    fs::create_dir_all(&dir)?;
    let mut state = State {
        dir: dir.clone(),
        values: BTreeMap::new(),
    };
    state.set("name", &opts.name)?;
    match boot(opts, &mut state, &bin_dir) {
        Ok(()) => announce(&state),
        Err(e) => {
            eprintln!("xtask: node {:?} failed to come up: {e:#}", opts.name);
            eprintln!("xtask: console log: {}", dir.join("console.log").display());
            if std::env::var_os("ZOS_SANDBOX_KEEP").is_none() {
                eprintln!(
                    "xtask: removing what was made (set ZOS_SANDBOX_KEEP=1 to keep it for inspection)"
                );
                let _ = down(&opts.name);
            }
            Err(e)
        }
    }
}

fn boot(opts: &Opts, state: &mut State, bin_dir: &Path) -> anyhow::Result<()> {
    let dir = state.dir.clone();
    // Binaries: copied, so a rebuild does not change a running node.
    let node_bin = dir.join("bin");
    fs::create_dir_all(&node_bin)?;
    let pkgs = built_packages()?;
    for (bin, _) in &pkgs {
        fs::copy(bin_dir.join(bin), node_bin.join(bin))
            .map_err(|e| anyhow::anyhow!("copying {bin}: {e}"))?;
    }
    let have = |bin: &str| pkgs.iter().any(|(b, _)| *b == bin);

    // Disks.
    let disks_dir = dir.join("disks");
    fs::create_dir_all(&disks_dir)?;
    let mut loops = Vec::new();
    for i in 0..DISKS {
        let img = disks_dir.join(format!("disk{i}.img"));
        fs::File::create(&img)?.set_len(DISK_SIZE)?;
        let dev = sh::output(Command::new("losetup").args(["-f", "--show"]).arg(&img))?
            .trim()
            .to_string();
        loops.push(dev.clone());
        state.set("loops", loops.join(","))?;
    }
    // The first disk plays an SSD, the second an HDD.
    for (i, dev) in loops.iter().enumerate() {
        let name = dev.trim_start_matches("/dev/");
        let _ = fs::write(
            format!("/sys/block/{name}/queue/rotational"),
            if i == 0 { "0" } else { "1" },
        );
    }

    // The node's subnet; the veth pair is made at each boot (it dies with the node's namespace).
    let x = free_subnet()?;
    state.set("subnet", x)?;
    let host_ip = format!("10.232.{x}.1");

    // Host side: the registrar (with a farm) and the hub.
    fs::create_dir_all(dir.join("logs"))?;
    let mut farm_id = 1u32;
    let registrar_url = format!("http://{host_ip}:8080");
    if have("registrar-server") {
        let out = sh::output(
            Command::new(node_bin.join("registrar-server"))
                .args(["seed-farm", "--db"])
                .arg(dir.join("registrar.db"))
                .args(["--name", FARM_NAME])
                .env("REGISTRAR_FARMER_MNEMONIC", FARMER_MNEMONIC),
        )?;
        farm_id = out
            .split_whitespace()
            .rev()
            .find_map(|w| w.parse().ok())
            .ok_or_else(|| {
                anyhow::anyhow!("registrar-server seed-farm printed no farm id: {out:?}")
            })?;
        // The registrar listens on the host end of the node's uplink, which exists from the first boot on.
        state.set("registrar", "1")?;
        if opts.no_registrar {
            // `start` skips it; `node registrar start` brings it up later.
            state.set("registrar_held", "1")?;
        }
    }
    let hub_url = format!("http://{host_ip}:8081");
    if have("hub-server") {
        fs::create_dir_all(dir.join("hub"))?;
        fs::create_dir_all(dir.join("hub-blocks"))?;
        state.set("hub", "1")?;
    }

    // The node's /etc overlay: units and configuration.
    let etc_upper = dir.join("etc-upper");
    let etc_zinit = etc_upper.join("zinit");
    let etc_zos = etc_upper.join("zos");
    fs::create_dir_all(&etc_zinit)?;
    fs::create_dir_all(&etc_zos)?;
    fs::create_dir_all(dir.join("etc-work"))?;
    // A daemon runs when its binary is built and its unit exists.
    let units = sh::workspace_root()?.join("zinit");
    let daemons: Vec<&str> = DAEMONS
        .iter()
        .map(|d| d.0)
        .filter(|d| have(d) && units.join(format!("{d}.yaml")).exists())
        .collect();
    install_units(&etc_zinit, &daemons)?;
    fs::write(
        etc_zos.join("cmdline"),
        format!("farmer_id={farm_id} runmode=dev version=v4 zos-debug\n"),
    )?;
    fs::write(
        etc_zos.join("config.toml"),
        node_config(&loops, &daemons, &registrar_url, &hub_url),
    )?;
    state.set("farm_id", farm_id)?;
    start(state, opts.wait)
}

/// Host end, node end, host address and node address of the node's uplink.
fn uplink(state: &State) -> anyhow::Result<(String, String, String, String)> {
    let x = state
        .get("subnet")
        .ok_or_else(|| anyhow::anyhow!("node state has no subnet"))?;
    Ok((
        format!("zs{x}h"),
        format!("zs{x}n"),
        format!("10.232.{x}.1"),
        format!("10.232.{x}.2"),
    ))
}

/// Start the registrar on the host side (its database survives restarts).
fn start_registrar(state: &mut State) -> anyhow::Result<()> {
    let (_, _, host_ip, _) = uplink(state)?;
    let pid = spawn_daemon(
        Command::new(state.dir.join("bin/registrar-server"))
            .arg("--db")
            .arg(state.dir.join("registrar.db"))
            .args(["--listen", &format!("{host_ip}:8080")]),
        &state.dir.join("logs/registrar.log"),
    )?;
    state.set("registrar_pid", pid)
}

fn start_hub(state: &mut State) -> anyhow::Result<()> {
    let (_, _, host_ip, _) = uplink(state)?;
    let pid = spawn_daemon(
        Command::new(state.dir.join("bin/hub-server"))
            .arg("--dir")
            .arg(state.dir.join("hub"))
            .arg("--blocks")
            .arg(state.dir.join("hub-blocks"))
            .args(["--listen", &format!("{host_ip}:8081")]),
        &state.dir.join("logs/hub.log"),
    )?;
    state.set("hub_pid", pid)
}

/// Boot the node on its prepared state: uplink, host-side services, namespaces, zinit; wait for the services.
fn start(state: &mut State, wait: u64) -> anyhow::Result<()> {
    let dir = state.dir.clone();
    let name = state.get("name").unwrap_or("sandbox").to_string();
    let (host_if, node_if, host_ip, node_ip) = uplink(state)?;
    sh::run(Command::new("ip").args([
        "link", "add", &host_if, "type", "veth", "peer", "name", &node_if,
    ]))?;
    state.set("host_if", &host_if)?;
    sh::run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/24"), "dev", &host_if]))?;
    sh::run(Command::new("ip").args(["link", "set", &host_if, "up"]))?;
    if state.get("registrar").is_some()
        && state.get("registrar_held").is_none()
        && state.pid("registrar_pid").is_none()
    {
        start_registrar(state)?;
    }
    if state.get("hub").is_some() && state.pid("hub_pid").is_none() {
        start_hub(state)?;
    }

    // The init script: PID 1 of the node until it execs zinit.
    let init = dir.join("init.sh");
    fs::write(
        &init,
        init_script(&name, &dir, &node_if, &node_ip, &host_ip),
    )?;

    // Boot: new namespaces; the child of unshare is the node's PID 1.
    let console = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("console.log"))?;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--mount",
        "--net",
        "--uts",
        "--ipc",
        "--fork",
        "--propagation",
        "private",
        "--mount-proc",
        "/bin/sh",
    ])
    .arg(&init)
    .stdin(Stdio::null())
    .stdout(console.try_clone()?)
    .stderr(console);
    detach(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting unshare: {e}"))?;
    let unshare_pid = child.id() as i32;
    state.set("unshare_pid", unshare_pid)?;
    let init_pid = wait_for(Duration::from_secs(10), || {
        fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<i32>().ok())
            })
    })
    .ok_or_else(|| anyhow::anyhow!("the node's init did not start"))?;
    state.set("init_pid", init_pid)?;
    sh::run(Command::new("ip").args(["link", "set", &node_if, "netns", &init_pid.to_string()]))?;

    // Wait for zinit, then for the services.
    wait_for(Duration::from_secs(30), || {
        node_cmd(state, &["zinit", "list"]).ok()
    })
    .ok_or_else(|| anyhow::anyhow!("zinit did not answer inside the node within 30 s"))?;
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut last = String::new();
    while Instant::now() < deadline {
        last = node_cmd(state, &["zinit", "list"]).unwrap_or_default();
        let states = parse_list(&last);
        let pending: Vec<_> = states
            .iter()
            .filter(|(_, s)| !(s.as_str() == "Running" || s.as_str() == "Success"))
            .collect();
        if !states.is_empty() && pending.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let states = parse_list(&last);
    let pending: Vec<_> = states
        .iter()
        .filter(|(_, s)| !(s.as_str() == "Running" || s.as_str() == "Success"))
        .collect();
    if !pending.is_empty() {
        anyhow::bail!("services not running after {wait} s: {pending:?}\n{last}");
    }
    Ok(())
}

/// Tell the operator how to reach the node.
fn announce(state: &State) -> anyhow::Result<()> {
    let name = state.get("name").unwrap_or("sandbox");
    let (_, _, host_ip, node_ip) = uplink(state)?;
    println!(
        "node {name:?} is up: address {node_ip} on bridge zos, farm {}",
        state.get("farm_id").unwrap_or("?")
    );
    println!(
        "  registrar http://{host_ip}:8080   hub http://{host_ip}:8081   disks {}",
        state.get("loops").unwrap_or("").replace(',', " ")
    );
    println!();
    println!("inspect it:");
    println!(
        "  cargo xtask node shell{}            then: zinit list; zbus status; zbus call registrar registrar NodeID",
        name_flag(name)
    );
    println!("  cargo xtask node status{}", name_flag(name));
    println!("  cargo xtask node logs{} [SERVICE]", name_flag(name));
    println!("  cargo xtask node down{}", name_flag(name));
    Ok(())
}

fn name_flag(name: &str) -> String {
    if name == "sandbox" {
        String::new()
    } else {
        format!(" --name {name}")
    }
}

/// Parse `zinit list` (YAML `name: State` lines).
fn parse_list(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with("---") && l.contains(':'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

fn install_units(dir: &Path, daemons: &[&str]) -> anyhow::Result<()> {
    let src = sh::workspace_root()?.join("zinit");
    let mut installed = vec!["redis".to_string(), "node-ready".to_string()];
    installed.extend(daemons.iter().map(|d| d.to_string()));
    for unit in &installed {
        let from = src.join(format!("{unit}.yaml"));
        let text = fs::read_to_string(&from)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", from.display()))?;
        fs::write(dir.join(format!("{unit}.yaml")), text)?;
    }
    // boot waits for what is installed.
    let mut boot = String::from(
        "# Barrier: disks and network are up.\nexec: \"true\"\noneshot: true\nafter:\n  - node-ready\n",
    );
    if daemons.contains(&"storaged") {
        boot.push_str("  - storaged\n");
    }
    boot.push_str("log: ring\n");
    fs::write(dir.join("boot.yaml"), boot)?;
    Ok(())
}

fn node_config(loops: &[String], daemons: &[&str], registrar: &str, hub: &str) -> String {
    let list = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let loops: Vec<&str> = loops.iter().map(String::as_str).collect();
    format!(
        "# Written by `cargo xtask node up`.\n\
         [system_services]\nenable = [{}]\n\n\
         [storage]\ndevices = [{}]\n\n\
         [registrar]\nurl = {registrar:?}\n# No internet here: no geoip service; the registrar uses its fallback.\ngeoip_urls = []\n\n\
         [hub]\nurl = {hub:?}\n",
        list(daemons),
        list(&loops),
    )
}

fn init_script(name: &str, dir: &Path, node_if: &str, node_ip: &str, host_ip: &str) -> String {
    let d = dir.display();
    let state_root = STATE_ROOT;
    format!(
        r#"#!/bin/sh
# PID 1 of the sandbox node until it execs zinit. Runs in fresh pid, mount, net, uts and ipc namespaces.
set -eu
# Private system directories: nothing the node writes reaches the host.
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /mnt
mount -t tmpfs -o mode=0755 tmpfs /var/cache
mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work /etc
mount -t sysfs sysfs /sys
mkdir -p /run/netns /var/run
# The node's binaries, then hide every sandbox's state (disk images, the hub's store) from the node: it reaches
# the host only through its uplink, like a real node.
mkdir -p {NODE_BIN}
mount --bind {d}/bin {NODE_BIN}
mount -t tmpfs -o mode=0700 tmpfs {state_root}
hostname zos-{name}

# The uplink arrives from the host; as on a real node it is enslaved to the bridge `zos`.
i=0
while ! ip link show {node_if} >/dev/null 2>&1; do
    i=$((i+1)); [ $i -lt 300 ] || {{ echo "uplink {node_if} never arrived"; exit 1; }}
    sleep 0.1
done
ip link set lo up
ip link set {node_if} name eth0
ip link add zos type bridge
ip link set eth0 master zos
ip link set eth0 up
ip link set zos up
ip addr add {node_ip}/24 dev zos
ip route add default via {host_ip}

export PATH={NODE_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export ZOS_CMDLINE=/etc/zos/cmdline
export HOME=/root
exec zinit init --no-kmsg -c /etc/zinit
"#
    )
}

/// Detach a command into its own session, so it outlives xtask.
fn detach(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

fn spawn_daemon(cmd: &mut Command, log: &Path) -> anyhow::Result<i32> {
    let f = fs::File::create(log)?;
    cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
    detach(cmd);
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as i32;
    std::thread::sleep(Duration::from_millis(300));
    if !alive(pid) {
        anyhow::bail!(
            "{:?} exited at once; see {}",
            cmd.get_program(),
            log.display()
        );
    }
    Ok(pid)
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `nsenter` into the node with its PATH.
fn node_command(state: &State, argv: &[&str]) -> anyhow::Result<Command> {
    let pid = state
        .pid("init_pid")
        .ok_or_else(|| anyhow::anyhow!("node {:?} is not up", state.get("name").unwrap_or("?")))?;
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &pid.to_string(), "-m", "-u", "-n", "-p", "-i", "--"])
        .args([
            "env",
            &format!(
                "PATH={NODE_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ),
        ])
        .args(["ZOS_CMDLINE=/etc/zos/cmdline"])
        .args(argv);
    Ok(cmd)
}

fn node_cmd(state: &State, argv: &[&str]) -> anyhow::Result<String> {
    sh::output(&mut node_command(state, argv)?)
}

// ------------------------------------------------------------------------------------------------------------
// down, status, logs, shell

/// Stop the node itself (zinit's ordered shutdown ends its namespaces); host-side services and disks stay.
fn stop_node(state: &State, errors: &mut Vec<String>) {
    if let Some(init) = state.pid("init_pid") {
        let _ = node_cmd(state, &["zinit", "shutdown"]);
        if wait_for(Duration::from_secs(30), || (!alive(init)).then_some(())).is_none() {
            // SAFETY: kill has no memory-safety preconditions; killing a pid namespace's init ends it.
            unsafe { libc::kill(init, libc::SIGKILL) };
            if wait_for(Duration::from_secs(10), || (!alive(init)).then_some(())).is_none() {
                errors.push(format!("the node's init {init} would not die"));
            }
        }
    }
    if let Some(pid) = state.pid("unshare_pid") {
        terminate(pid);
    }
    // The host end of the uplink normally dies with the node end.
    if let Some(link) = state.get("host_if")
        && Path::new(&format!("/sys/class/net/{link}")).exists()
        && !sh::ok(Command::new("ip").args(["link", "del", link]))
    {
        errors.push(format!("could not delete link {link}"));
    }
}

/// SIGTERM, then SIGKILL after 5 s.
fn terminate(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    if wait_for(Duration::from_secs(5), || (!alive(pid)).then_some(())).is_none() {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = wait_for(Duration::from_secs(5), || (!alive(pid)).then_some(()));
    }
}

/// Power-cycle the node: everything on its disks stays, the namespaces and tmpfs are new.
fn reboot(name: &str, wait: u64) -> anyhow::Result<()> {
    prereq::ensure_root_for("the sandbox node")?;
    let mut state = State::load(name).ok_or_else(|| anyhow::anyhow!("node {name:?} is not up"))?;
    let mut errors = Vec::new();
    stop_node(&state, &mut errors);
    if !errors.is_empty() {
        anyhow::bail!("node {name:?} did not stop: {}", errors.join("; "));
    }
    start(&mut state, wait)?;
    announce(&state)
}

/// Pack `DIR` into the host-side hub's block store and publish the flist as `REPO/NAME.fl`; print its URL.
fn publish(name: &str, args: &[String]) -> anyhow::Result<()> {
    let [dir, target] = args else {
        anyhow::bail!("usage: cargo xtask node publish [--name N] DIR REPO/NAME.fl");
    };
    let (repo, file) = target
        .split_once('/')
        .filter(|(r, f)| !r.is_empty() && f.ends_with(".fl") && !f.contains('/'))
        .ok_or_else(|| anyhow::anyhow!("{target:?}: expected REPO/NAME.fl"))?;
    let state = State::load(name).ok_or_else(|| anyhow::anyhow!("node {name:?} is not up"))?;
    if state.get("hub").is_none() {
        anyhow::bail!("node {name:?} has no hub (hub-server was not built)");
    }
    let bin = state.dir.join("bin");
    let staged = state.dir.join(format!("publish-{file}"));
    sh::run(
        Command::new(bin.join("zflist"))
            .args(["pack", "-m"])
            .arg(&staged)
            .arg("-s")
            .arg(format!("dir://{}", state.dir.join("hub-blocks").display()))
            .arg(dir),
    )?;
    let published = sh::run(
        Command::new(bin.join("hub-server"))
            .arg("publish")
            .arg("--dir")
            .arg(state.dir.join("hub"))
            .args(["--repo", repo, "--name", file])
            .arg(&staged),
    );
    let _ = fs::remove_file(&staged);
    published?;
    let (_, _, host_ip, _) = uplink(&state)?;
    println!("http://{host_ip}:8081/{repo}/{file}");
    Ok(())
}

/// Stop or start the host-side registrar (to test a node whose registrar is away).
fn registrar(name: &str, action: &str) -> anyhow::Result<()> {
    let mut state = State::load(name).ok_or_else(|| anyhow::anyhow!("node {name:?} is not up"))?;
    if state.get("registrar").is_none() {
        anyhow::bail!("node {name:?} has no registrar (registrar-server was not built)");
    }
    match action {
        "stop" => {
            if let Some(pid) = state.pid("registrar_pid") {
                terminate(pid);
            }
            println!("registrar of node {name:?} stopped");
            Ok(())
        }
        "start" => {
            state.values.remove("registrar_held");
            if state.pid("registrar_pid").is_none() {
                start_registrar(&mut state)?;
            }
            println!("registrar of node {name:?} running");
            Ok(())
        }
        other => anyhow::bail!("registrar {other:?}? stop or start"),
    }
}

fn down(name: &str) -> anyhow::Result<()> {
    let Some(state) = State::load(name) else {
        println!("node {name:?} is not up; nothing to remove");
        return Ok(());
    };
    let mut errors = Vec::new();
    stop_node(&state, &mut errors);
    for key in ["registrar_pid", "hub_pid"] {
        if let Some(pid) = state.pid(key) {
            terminate(pid);
        }
    }
    if let Some(loops) = state.get("loops") {
        for dev in loops.split(',').filter(|d| !d.is_empty()) {
            // Only a loop still backed by our own image is ours to detach.
            let backing = fs::read_to_string(format!(
                "/sys/block/{}/loop/backing_file",
                dev.trim_start_matches("/dev/")
            ))
            .unwrap_or_default();
            if !backing.trim().starts_with(&state.dir.display().to_string()) {
                continue;
            }
            let detached = wait_for(Duration::from_secs(10), || {
                sh::ok(Command::new("losetup").args(["-d", dev])).then_some(())
            });
            if detached.is_none() {
                errors.push(format!("could not detach {dev}"));
            }
        }
    }
    if let Err(e) = fs::remove_dir_all(&state.dir) {
        errors.push(format!("could not remove {}: {e}", state.dir.display()));
    }
    let _ = fs::remove_dir(STATE_ROOT);
    if errors.is_empty() {
        println!("node {name:?} is down; nothing of it is left on the host");
        Ok(())
    } else {
        anyhow::bail!("node {name:?} is down, but: {}", errors.join("; "))
    }
}

fn status(name: &str) -> anyhow::Result<()> {
    let state = State::load(name)
        .filter(|s| s.pid("init_pid").is_some())
        .ok_or_else(|| anyhow::anyhow!("node {name:?} is not up"))?;
    println!(
        "node {name:?}: up, init pid {}, address 10.232.{}.2, disks {}",
        state.get("init_pid").unwrap_or("?"),
        state.get("subnet").unwrap_or("?"),
        state.get("loops").unwrap_or("")
    );
    println!("\n$ zinit list");
    print!(
        "{}",
        node_cmd(&state, &["zinit", "list"]).unwrap_or_else(|e| format!("{e:#}\n"))
    );
    println!("\n$ zbus status");
    print!(
        "{}",
        node_cmd(&state, &["zbus", "status"]).unwrap_or_else(|e| format!("{e:#}\n"))
    );
    Ok(())
}

fn logs(name: &str, service: Option<&str>) -> anyhow::Result<()> {
    let state = State::load(name).ok_or_else(|| anyhow::anyhow!("node {name:?} is not up"))?;
    let mut argv = vec!["zinit", "log", "-s"];
    if let Some(s) = service {
        argv.push(s);
    }
    print!("{}", node_cmd(&state, &argv)?);
    Ok(())
}

fn exec(name: &str, command: &[String]) -> anyhow::Result<()> {
    if command.is_empty() {
        anyhow::bail!("usage: cargo xtask node exec [--name N] -- COMMAND [ARG...]");
    }
    let state = State::load(name).ok_or_else(|| anyhow::anyhow!("node {name:?} is not up"))?;
    let argv: Vec<&str> = command.iter().map(String::as_str).collect();
    let status = node_command(&state, &argv)?.status()?;
    if !status.success() {
        anyhow::bail!(
            "`{}` exited with {status} inside the node",
            command.join(" ")
        );
    }
    Ok(())
}

fn shell(name: &str) -> anyhow::Result<()> {
    let state = State::load(name).ok_or_else(|| anyhow::anyhow!("node {name:?} is not up"))?;
    let shell = if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    let status = node_command(&state, &[shell])?.status()?;
    if !status.success() {
        anyhow::bail!("shell exited with {status}");
    }
    Ok(())
}
