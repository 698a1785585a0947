//! The `registrar_light` binary with its node configuration (`ZOS_CONFIG`, `ZOS_CMDLINE`) against the real
//! registrar server, identityd (library) and a real redis-server: it serves the bus at once, registers, keeps
//! its ids across SIGKILL, stops cleanly on SIGTERM, refuses bad configuration naming the setting, and
//! registers with the sandbox's configuration on a `zos` bridge in a namespace the test creates.

#[path = "../../../crates/zos-registrar-light/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use zos_api::registrar::RegistrationPhase;
use zos_testkit::{ChildProcess, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_registrar_light");

/// A registrar_light child process; SIGKILLed on drop.
struct Daemon(ChildProcess);

impl Daemon {
    fn spawn(dir: &Path, config: &str, cmdline: &str, flags: &Path) -> Daemon {
        let config_file = dir.join("config.toml");
        let cmdline_file = dir.join("cmdline");
        std::fs::write(&config_file, config).unwrap();
        std::fs::write(&cmdline_file, cmdline).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--flags-dir")
            .arg(flags)
            .env("ZOS_CONFIG", &config_file)
            .env("ZOS_CMDLINE", &cmdline_file)
            .env("RUST_LOG", "debug");
        Daemon(ChildProcess::spawn("registrar_light", &mut cmd))
    }

    /// What it logged so far.
    fn log(&mut self) -> String {
        self.0.output()
    }

    fn kill(&mut self) {
        self.0.kill();
    }

    /// SIGTERM, then the exit status (a hang guard of 30 s).
    fn terminate(&mut self) -> std::process::ExitStatus {
        self.0.terminate(Duration::from_secs(30))
    }
}

fn config(redis: &RedisServer, registrar: &str, extra: &str) -> String {
    format!(
        "[bus]\nbroker = {:?}\n\n[system_services]\nenable = [\"identityd\", \"registrar_light\"]\n\n\
         [registrar]\nurl = {registrar:?}\ngeoip_urls = []\ninterface = \"lo\"\nrequire_kvm = false\n{extra}",
        redis.url()
    )
}

#[tokio::test]
async fn serves_at_once_registers_and_keeps_its_ids_across_sigkill() {
    if !have_redis() {
        return;
    }
    let redis = RedisServer::start();
    let addr = free_addr();
    let identity = Identity::start(&redis, [11; 32], None);
    let dir = tempfile::tempdir().unwrap();
    let (_f, flags) = flags_dir();
    let cfg = config(&redis, &format!("http://{addr}"), "max_backoff_secs = 1\n");
    let cmdline = "farmer_id=1 runmode=dev version=v4\n";

    // The registrar is not there yet: the bus objects answer anyway, as zinit's test expects.
    let mut daemon = Daemon::spawn(dir.path(), &cfg, cmdline, &flags);
    let bus = bus(&redis);
    for module in ["registrar", "api-gateway"] {
        wait_for(
            &format!("{module} status"),
            Duration::from_secs(20),
            || async { bus.status(module, Duration::from_secs(1)).await.ok() },
        )
        .await;
    }
    // Before the first attempt ended the reason says so; then it names the registrar that does not answer.
    let state = registrar_client(&redis).state().await.unwrap();
    assert_eq!(state.phase, RegistrationPhase::InProgress, "{state:?}");
    assert!(!state.reason.is_empty(), "{state:?}");
    let state = wait_state(
        &redis,
        "in progress with a reason",
        Duration::from_secs(20),
        |s| s.reason.contains("no answer"),
    )
    .await;
    assert_eq!(state.phase, RegistrationPhase::InProgress, "{state:?}");
    assert!(state.reason.contains(&addr.to_string()), "{state:?}");

    let registrar = Registrar::start_on(addr).await;
    let first = wait_registered(&redis).await;
    let client = registrar_client(&redis);
    assert_eq!(client.node_id().await.unwrap(), first.node_id);
    assert_eq!(client.twin_id().await.unwrap(), first.twin_id);
    assert_eq!(
        registrar.node_of(&identity.key).unwrap().node_id,
        u64::from(first.node_id)
    );

    daemon.kill();
    let mut daemon = Daemon::spawn(dir.path(), &cfg, cmdline, &flags);
    let again = wait_registered(&redis).await;
    assert_eq!(
        (again.node_id, again.twin_id),
        (first.node_id, first.twin_id)
    );
    assert_eq!(registrar.nodes().len(), 1, "{:?}", registrar.nodes());

    let status = daemon.terminate();
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("registrar_light stopping"), "{log}");
    identity.stop().await;
}

#[test]
fn bad_configuration_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (_f, flags) = flags_dir();
    let run = |config: &str, cmdline: &str| -> String {
        let config_file = dir.path().join("config.toml");
        let cmdline_file = dir.path().join("cmdline");
        std::fs::write(&config_file, config).unwrap();
        std::fs::write(&cmdline_file, cmdline).unwrap();
        let out = Command::new(BIN)
            .arg("--flags-dir")
            .arg(&flags)
            .env("ZOS_CONFIG", &config_file)
            .env("ZOS_CMDLINE", &cmdline_file)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let base = "[bus]\nbroker = \"unix:///nonexistent/redis.sock\"\n";
    let err = run(
        &format!("{base}[registrar]\nurl = \"http://127.0.0.1:1\"\ninterface = \"\"\n"),
        "farmer_id=1",
    );
    assert!(err.contains("[registrar] interface is empty"), "{err}");
    let err = run(
        &format!("{base}[registrar]\nurl = \"ftp://registrar.example\"\n"),
        "farmer_id=1",
    );
    assert!(err.contains("ftp://registrar.example"), "{err}");
    let err = run(
        &format!("{base}[registrar]\ngeoip_urls = [\"geoip.example\"]\n"),
        "farmer_id=1",
    );
    assert!(
        err.contains("[registrar] geoip_urls: \"geoip.example\""),
        "{err}"
    );
    let err = run(
        &format!("{base}[registrar]\nupdate_secs = 0\n"),
        "farmer_id=1",
    );
    assert!(
        err.contains("[registrar] update_secs must be at least 1"),
        "{err}"
    );
    let err = run(
        &format!("{base}[registrar]\nintervall = 3\n"),
        "farmer_id=1",
    );
    assert!(err.contains("intervall"), "{err}");
    let err = run(base, "farmer_id=abc");
    assert!(err.contains("farmer_id=\"abc\""), "{err}");
}

/// The sandbox's configuration (`url`, `geoip_urls = []`, everything else default: interface `zos`, KVM
/// required, storaged enabled) in a namespace with a `zos` bridge, the registrar inside it too.
#[test]
fn registers_with_the_sandbox_configuration_on_a_zos_bridge() {
    if !zos_testkit::require_root() || !zos_testkit::require_command("ip") || !have_redis() {
        return;
    }
    let name = zos_testkit::unique_name("zrb");
    run_ip(&["netns", "add", &name]);
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(name.clone());
    let thread = std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(sandbox_body(&name));
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

fn run_ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn sandbox_body(ns: &str) {
    for args in [
        vec!["link", "set", "lo", "up"],
        vec!["link", "add", "zos", "type", "bridge"],
        vec!["link", "set", "zos", "up"],
        vec!["addr", "add", "10.232.7.2/24", "dev", "zos"],
    ] {
        let mut all = vec!["-n", ns];
        all.extend(args);
        run_ip(&all);
    }
    let redis = RedisServer::start();
    let registrar = Registrar::start().await;
    let identity = Identity::start(&redis, [12; 32], None);
    let dir = tempfile::tempdir().unwrap();
    let (_f, flags) = flags_dir();
    let config = format!(
        "[bus]\nbroker = {:?}\n\n[registrar]\nurl = {:?}\ngeoip_urls = []\n",
        redis.url(),
        registrar.url()
    );
    let cmdline = format!(
        "farmer_id={} runmode=dev version=v4 zos-debug\n",
        registrar.farm_id
    );
    // The child starts in this thread's namespace.
    let daemon = Daemon::spawn(dir.path(), &config, &cmdline, &flags);
    if Path::new("/dev/kvm").exists() {
        let state = wait_registered(&redis).await;
        // storaged is enabled but not running here: registered with 0 storage, noted in the reason.
        assert!(state.reason.contains("storaged"), "{state:?}");
        let node = registrar.node_of(&identity.key).unwrap();
        assert_eq!(node.node_id, u64::from(state.node_id));
        assert_eq!(node.farm_id, registrar.farm_id);
        assert_eq!(node.interfaces[0].name, "zos");
        assert_eq!(node.interfaces[0].ips, vec!["10.232.7.2"]);
        let account = registrar.account_of(&identity.key).unwrap();
        assert_eq!(account.relays, vec!["wss://relay.dev.grid.tf"]);
    } else {
        let state = wait_state(&redis, "failed: no kvm", Duration::from_secs(30), |s| {
            s.phase == RegistrationPhase::Failed
        })
        .await;
        assert!(state.reason.contains("/dev/kvm"), "{state:?}");
    }
    drop(daemon);
    identity.stop().await;
}
