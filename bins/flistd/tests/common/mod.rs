//! The world of a flistd test, all real and all private to the test: a redis-server, storaged (in-process,
//! its library) on a btrfs loop device, a hub server on loopback serving a flist packed from a test tree
//! (whose own store route is dead, so blocks come over HTTP from the hub's `/blocks`), and flistd's root in
//! a temp dir. Dropping it stops what runs in-process, kills the FUSE servers started under its root,
//! unmounts everything below its temp dir and detaches its loop device (also when the test fails).

#![allow(dead_code)]

#[path = "../../../../crates/zos-storage/tests/common/mod.rs"]
pub mod storage_env;

#[path = "../../../../crates/zos-flist/tests/common/mod.rs"]
pub mod tree;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zos_api::bus::{Broker, Client, Server};
use zos_api::flist::{FlisterClient, FlisterContract};
use zos_api::storage::StorageClient;
use zos_flistd::{FlistModule, HelperCommand, Options, Service};
use zos_testkit::RedisServer;

pub use storage_env::{Env, GIB, MIB};

/// Whether the machine can run these tests (root, FUSE, btrfs tools, redis); skips locally, fails in CI.
pub fn prerequisites() -> bool {
    storage_env::prerequisites()
        && zos_testkit::require_command("redis-server")
        && zos_testkit::prerequisite(Path::new("/dev/fuse").exists(), "/dev/fuse")
        && zos_testkit::prerequisite(
            std::fs::read_to_string("/proc/filesystems")
                .is_ok_and(|f| f.contains("overlay") && f.contains("fuse")),
            "overlay and fuse filesystems in the kernel",
        )
}

/// The helper command: this package's `flistd fuse`.
pub fn helper() -> HelperCommand {
    HelperCommand {
        program: env!("CARGO_BIN_EXE_flistd").into(),
        args: vec!["fuse".into()],
    }
}

/// A background task stopped by a oneshot (or aborted on drop).
pub struct Task {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Task {
    pub async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = (&mut self.handle).await;
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub struct World {
    pub redis: RedisServer,
    pub storaged: Option<Task>,
    pub hub: Option<Task>,
    pub hub_addr: SocketAddr,
    /// The in-process flistd, when started with [`World::serve`].
    pub flistd: Option<(Arc<FlistModule>, Task)>,
    /// The test tree packed into the flist.
    pub src: PathBuf,
    /// The flist as published (`<hub public>/test/tree.fl`).
    pub published: PathBuf,
    pub hub_public: PathBuf,
    pub root: PathBuf,
    /// Last: unmounts everything below its dir, then detaches the loop.
    pub env: Env,
}

impl World {
    /// Redis, storaged on a 2 GiB SSD loop device, the hub with the packed test tree published as
    /// `test/tree.fl`.
    pub async fn new() -> World {
        let redis = RedisServer::start();
        let mut env = Env::new();
        let disk = env.add_disk(2 * GIB, false);
        let storaged = {
            let opts = env.options(vec![disk], 128 * MIB);
            let broker = redis.url();
            let (tx, rx) = oneshot::channel();
            let handle = tokio::spawn(async move {
                zos_storage::daemon::run(opts, &broker, 4, async {
                    let _ = rx.await;
                })
                .await
                .expect("storaged");
            });
            Task {
                stop: Some(tx),
                handle,
            }
        };
        let base = env.dir.path().to_path_buf();
        let src = base.join("src");
        tree::build_tree(&src);
        // Pack into a store, then move that store where the hub serves it: the route written in the flist
        // is dead, the blocks are reachable only over HTTP.
        let packed = base.join("packed-blocks");
        let blocks = base.join("hub-blocks");
        let fl = base.join("tree.fl");
        {
            let (src, fl) = (src.clone(), fl.clone());
            let route = format!("dir://{}", packed.display());
            let rt = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                zos_flist::pack::pack(
                    &src,
                    &fl,
                    &[(0, 255, route)],
                    &zos_flist::PackOptions::default(),
                    &rt,
                    &mut |_| {},
                )
            })
            .await
            .unwrap()
            .expect("packing the test tree");
        }
        std::fs::rename(&packed, &blocks).unwrap();
        let hub_public = base.join("hub");
        let hub_layout = zos_hub::Hub::new(&hub_public).unwrap();
        hub_layout.publish_file("test", "tree.fl", &fl).unwrap();
        let published = hub_public.join("test/tree.fl");
        assert!(published.is_file());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hub_addr = listener.local_addr().unwrap();
        let hub = {
            let cfg = zos_hub::ServerConfig {
                dir: hub_public.clone(),
                blocks: Some(blocks),
                publish_token: None,
            };
            let (tx, rx) = oneshot::channel::<()>();
            let handle = tokio::spawn(async move {
                zos_hub::serve(&cfg, listener, async {
                    let _ = rx.await;
                })
                .await
                .expect("hub");
            });
            Task {
                stop: Some(tx),
                handle,
            }
        };
        let world = World {
            redis,
            storaged: Some(storaged),
            hub: Some(hub),
            hub_addr,
            flistd: None,
            src,
            published,
            hub_public,
            root: base.join("flistd"),
            env,
        };
        world.wait_storaged().await;
        world
    }

    /// Wait until storaged serves the bus (it does once its pools and cache are set up).
    pub async fn wait_storaged(&self) {
        let bus = Client::connect(&self.redis.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while bus
            .status("storage", Duration::from_millis(500))
            .await
            .is_err()
        {
            assert!(
                self.storaged
                    .as_ref()
                    .is_some_and(|t| !t.handle.is_finished()),
                "storaged stopped during start"
            );
            assert!(Instant::now() < deadline, "storaged did not serve the bus");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The hub's `/blocks`.
    pub fn hub_blocks(&self) -> String {
        format!("http://{}/blocks", self.hub_addr)
    }

    /// The URL of a flist published in the test hub.
    pub fn url(&self, repo_and_name: &str) -> String {
        format!("http://{}/{repo_and_name}", self.hub_addr)
    }

    /// Publish a copy of the test flist (or any bytes) as `test/<name>`.
    pub fn publish(&self, name: &str, data: &[u8]) -> String {
        zos_hub::Hub::new(&self.hub_public)
            .unwrap()
            .publish("test", name, data)
            .unwrap();
        self.url(&format!("test/{name}"))
    }

    /// The md5 of the published test flist.
    pub fn md5(&self) -> String {
        zos_flistd::download::md5_file(&self.published).unwrap()
    }

    /// Module options for this world's root, with the hub's `/blocks` as the fallback store.
    pub fn options(&self) -> Options {
        let mut o = Options::new(&self.root, helper());
        o.fallback_stores = vec![self.hub_blocks()];
        o
    }

    /// Serve flistd in-process with `opts`.
    pub async fn serve(&mut self, opts: Options) -> Arc<FlistModule> {
        let storage = self.storage();
        let module = Arc::new(FlistModule::new(opts, storage).expect("flist module"));
        module.clean_temp();
        module.reconcile().await;
        let server = Server::new(
            FlisterContract::MODULE,
            Broker::parse(&self.redis.url()).unwrap(),
        )
        .concurrency(4)
        .register(FlisterContract::server(Arc::new(Service::new(
            module.clone(),
        ))));
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        self.flistd = Some((
            module.clone(),
            Task {
                stop: Some(tx),
                handle,
            },
        ));
        module
    }

    pub fn flist(&self) -> FlisterClient {
        FlisterClient::new(Client::connect(&self.redis.url()).unwrap())
            .with_timeout(Duration::from_secs(90))
    }

    pub fn storage(&self) -> StorageClient {
        StorageClient::new(Client::connect(&self.redis.url()).unwrap())
            .with_timeout(Duration::from_secs(60))
    }

    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.root.join("mountpoint").join(name)
    }

    pub fn ro(&self, hash: &str) -> PathBuf {
        self.root.join("ro").join(hash)
    }

    /// Mounts at or below flistd's root.
    pub fn mounts(&self) -> Vec<zos_flistd::mounts::MountEntry> {
        zos_flistd::mounts::mountinfo()
            .unwrap()
            .into_iter()
            .filter(|m| m.mount_point.starts_with(&self.root))
            .collect()
    }

    /// The mount at `path`.
    pub fn mount_at(&self, path: &Path) -> Option<zos_flistd::mounts::MountEntry> {
        let t = zos_flistd::mounts::mountinfo().unwrap();
        zos_flistd::mounts::mount_at(&t, path).cloned()
    }

    /// The pid of the FUSE server of the flist `hash` (from the mount's source).
    pub fn server_pid(&self, hash: &str) -> Option<i32> {
        self.mount_at(&self.ro(hash))
            .and_then(|m| m.source.strip_prefix("flistd:")?.parse().ok())
    }

    /// Processes whose command line mentions this world's flistd root (its FUSE servers).
    pub fn own_processes(&self) -> Vec<i32> {
        own_processes(&self.root)
    }
}

/// Processes (not zombies) whose command line mentions `root`.
pub fn own_processes(root: &Path) -> Vec<i32> {
    let want = root.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmd.split(|b| *b == 0).any(|a| a.starts_with(want)) {
            out.push(pid);
        }
    }
    out
}

/// Wait (at most `limit`) for `cond`; false when it never held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether process `pid` is gone (or a zombie).
pub fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

pub fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some((_, t)) = self.flistd.take() {
            drop(t);
        }
        self.hub.take();
        self.storaged.take();
        // The FUSE servers of this world (and only those): they would exit once unmounted, but do not wait.
        for pid in self.own_processes() {
            kill(pid);
        }
        // `env` (dropped next) unmounts everything below its dir and detaches its loop.
    }
}

/// Compare the tree at `mounted` with the test source, in a blocking thread (the FUSE server may fetch
/// blocks from the hub, which runs on this runtime).
pub async fn assert_same_as_source(src: &Path, mounted: &Path, mtime: bool) {
    let (a, b) = (src.to_path_buf(), mounted.to_path_buf());
    tokio::task::spawn_blocking(move || {
        tree::assert_same_tree(&a, &b, tree::Compare { owner: true, mtime })
    })
    .await
    .unwrap();
}

/// Run blocking file system work off the runtime.
pub async fn fs<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}
