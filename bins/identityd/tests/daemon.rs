//! The real `identityd` binary as a child process against a real redis-server: it keeps one identity across
//! SIGKILLs at any moment and restarts, prints exactly one value in the print-and-exit modes, and refuses to
//! start on a corrupt key without touching it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use zos_api::identity::IdentityManagerClient;
use zos_testkit::RedisServer;

struct Node {
    dir: tempfile::TempDir,
    redis: RedisServer,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("cmdline"),
            "BOOT_IMAGE=/x farmer_id=42 runmode=dev version=v4 secret=abc\n",
        )
        .unwrap();
        fs::write(dir.path().join("config.toml"), "").unwrap();
        fs::create_dir_all(dir.path().join("mnt")).unwrap();
        Node {
            dir,
            redis: RedisServer::start(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("identityd")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_identityd"));
        for (k, _) in std::env::vars() {
            if k.starts_with("ZOS") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("ZOS_CMDLINE", self.dir.path().join("cmdline"))
            .env("ZOS_CONFIG", self.dir.path().join("config.toml"))
            .env(
                "ZOS__STORAGE__MOUNT_ROOT",
                format!("\"{}\"", self.dir.path().join("mnt").display()),
            )
            .arg("--broker")
            .arg(self.redis.url())
            .arg("--root")
            .arg(self.root())
            .arg("--tag-info")
            .arg(self.dir.path().join("tag.info"))
            .args(args);
        cmd
    }

    fn spawn(&self) -> Child {
        self.command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn client(&self) -> IdentityManagerClient {
        IdentityManagerClient::new(zos_bus::Client::connect(&self.redis.url()).unwrap())
    }

    /// Wait until the daemon's status object answers (what zinit's `test: zbus status identityd` checks).
    async fn wait_ready(&self, child: &mut Child) {
        let bus = zos_bus::Client::connect(&self.redis.url()).unwrap();
        let guard = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.stderr.take().map(|mut e| {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                    s
                });
                panic!("identityd exited with {status} before serving: {out:?}");
            }
            if bus
                .status("identityd", Duration::from_millis(500))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < guard,
                "identityd did not serve within the hang guard"
            );
        }
    }
}

fn kill(child: &mut Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// Wait for a child to exit (the guard only prevents a hang).
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let guard = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < guard, "identityd did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn seed_on_disk(path: &Path) -> Option<Vec<u8>> {
    let data = fs::read(path).ok()?;
    let (_, seed) = zos_identity::keystore::parse_seed_file(&data)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(seed.to_vec())
}

#[tokio::test]
async fn the_identity_survives_sigkill_and_restarts() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let node = Node::new();
    let mut daemon = node.spawn();
    node.wait_ready(&mut daemon).await;
    let id = node.client();
    let node_id = id.node_id().await.unwrap();
    let public = id.public_key().await.unwrap();
    let seed_file = node.root().join("seed.txt");
    assert_eq!(
        fs::metadata(&seed_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::read(&seed_file).unwrap().len(), 39);

    // Print-and-exit modes: the value alone on stdout, in both flag spellings.
    let b64 = format!("{}\n", zos_types::go::base64_encode(&public));
    assert_eq!(stdout(&node.run(&["--id"])), b64);
    assert_eq!(
        stdout(&node.run(&["-id"])),
        b64,
        "Go's single-dash spelling, as the log shipper calls it"
    );
    assert_eq!(stdout(&node.run(&["--farm"])), "42\n");
    assert_eq!(stdout(&node.run(&["-farm"])), "42\n");
    assert_eq!(stdout(&node.run(&["--net"])), "development\n");

    // SIGKILL mid-run, restart: the same node.
    kill(&mut daemon, libc::SIGKILL);
    wait_exit(&mut daemon);
    let mut daemon = node.spawn();
    node.wait_ready(&mut daemon).await;
    assert_eq!(id.node_id().await.unwrap(), node_id);
    assert_eq!(id.public_key().await.unwrap(), public);

    // SIGTERM: a clean exit.
    kill(&mut daemon, libc::SIGTERM);
    assert!(wait_exit(&mut daemon).success());
}

#[tokio::test]
async fn killed_at_any_moment_it_keeps_one_identity() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let node = Node::new();
    let primary = node.root().join("seed.txt");
    let backup = node.root().join("seed.txt.bak");
    let mut first: Option<Vec<u8>> = None;
    // Kill the daemon at increasing moments of its start (key generation, the backup, the bus server).
    for i in 0..12u64 {
        let mut daemon = node.spawn();
        std::thread::sleep(Duration::from_millis(i * 4));
        kill(&mut daemon, libc::SIGKILL);
        wait_exit(&mut daemon);
        // Whatever is on disk is a valid key (parse panics otherwise), and once a key exists it never changes.
        for path in [&primary, &backup] {
            if let Some(seed) = seed_on_disk(path) {
                match &first {
                    None => first = Some(seed),
                    Some(f) => {
                        assert_eq!(&seed, f, "{} changed identity after a kill", path.display())
                    }
                }
            }
        }
    }
    let mut daemon = node.spawn();
    node.wait_ready(&mut daemon).await;
    let node_id = node.client().node_id().await.unwrap();
    let seed = seed_on_disk(&primary).unwrap();
    if let Some(f) = first {
        assert_eq!(
            seed, f,
            "the identity written by an interrupted start is the one served"
        );
    }
    assert_eq!(seed_on_disk(&backup).unwrap(), seed);
    assert_eq!(
        node_id,
        zos_identity::NodeKey::from_seed(&seed.try_into().unwrap()).node_id()
    );
    kill(&mut daemon, libc::SIGTERM);
    wait_exit(&mut daemon);
}

#[tokio::test]
async fn a_corrupt_key_stops_the_daemon_and_is_left_alone() {
    if !zos_testkit::require_command("redis-server") {
        return;
    }
    let node = Node::new();
    fs::create_dir_all(node.root()).unwrap();
    let seed_file = node.root().join("seed.txt");
    fs::write(&seed_file, b"\"1.0.0\"only-part-of-a-seed").unwrap();
    let out = node.command(&[]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&seed_file.display().to_string()),
        "the error names the file: {stderr}"
    );
    assert!(
        stderr.contains("refusing to create a new identity"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(
        fs::read(&seed_file).unwrap(),
        b"\"1.0.0\"only-part-of-a-seed",
        "the key file is untouched"
    );
    assert!(
        !node.root().join("seed.txt.bak").exists(),
        "no new identity was written anywhere"
    );
}
