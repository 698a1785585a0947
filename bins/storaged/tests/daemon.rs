//! The storaged binary over the real bus (a real redis-server, the generated `StorageClient`), on loop
//! devices the tests create: every method, error kinds across the bus, the Monitor stream, and SIGKILL in the
//! middle of VolumeCreate and DiskWrite (failpoints make the daemon stop at a chosen step) followed by a
//! restart that repairs.

#[path = "../../../crates/zos-storage/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Env, GIB, MIB, probe, sh};
use zos_api::storage::{DeviceType, StorageClient};
use zos_testkit::{ChildProcess, RedisServer};

/// A storaged child process; SIGKILLed on drop.
struct Daemon(ChildProcess);

impl Daemon {
    fn start(
        env: &Env,
        redis: &RedisServer,
        devices: &[PathBuf],
        failpoint: Option<&str>,
    ) -> Daemon {
        let config = env.dir.path().join("config.toml");
        let devices: Vec<String> = devices
            .iter()
            .map(|d| format!("{:?}", d.display().to_string()))
            .collect();
        std::fs::write(
            &config,
            format!(
                "[storage]\ndevices = [{}]\nmount_root = {:?}\ncache_path = {:?}\ncache_size = {}\nworkers = 4\n",
                devices.join(", "),
                env.mount_root().display().to_string(),
                env.cache_path().display().to_string(),
                128 * MIB
            ),
        )
        .unwrap();
        let cmdline = env.dir.path().join("cmdline");
        std::fs::write(&cmdline, "").unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_storaged"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--broker")
            .arg(redis.url())
            .arg("--flags-dir")
            .arg(env.flags_dir())
            .env("ZOS_CMDLINE", &cmdline)
            .env("RUST_LOG", "info")
            .env_remove(zos_storage::failpoint::FAILPOINT_ENV);
        if let Some(f) = failpoint {
            cmd.env(zos_storage::failpoint::FAILPOINT_ENV, f);
        }
        Daemon(ChildProcess::spawn("storaged", &mut cmd))
    }

    /// Wait until the module answers its status object (it serves the bus only after initialisation).
    async fn ready(&mut self, client: &StorageClient) {
        for _ in 0..300 {
            if let Some(status) = self.0.try_wait() {
                panic!("storaged exited during start: {status}");
            }
            if client
                .bus()
                .status("storage", Duration::from_millis(500))
                .await
                .is_ok()
            {
                return;
            }
        }
        panic!("storaged did not serve the bus");
    }

    /// Wait for a stderr line containing `text` (a failpoint).
    fn wait_for_line(&self, text: &str) {
        self.0
            .wait_for_line(text, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn kill(&mut self) {
        self.0.kill();
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        self.0.terminate(Duration::from_secs(60))
    }
}

fn prerequisites() -> bool {
    common::prerequisites() && zos_testkit::require_command("redis-server")
}

fn client(redis: &RedisServer) -> StorageClient {
    StorageClient::new(zos_bus::Client::connect(&redis.url()).unwrap())
        .with_timeout(Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_over_the_bus() {
    if !prerequisites() || !zos_testkit::require_command("mkfs.ext4") {
        return;
    }
    let redis = RedisServer::start();
    let mut env = Env::new();
    let ssd = env.add_disk(2 * GIB, false);
    let hdd = env.add_disk(2 * GIB, true);
    let foreign = env.add_disk(256 * MIB, false);
    sh("mkfs.ext4", &["-q", foreign.to_str().unwrap()]);
    let storage = client(&redis);
    let mut daemon = Daemon::start(
        &env,
        &redis,
        &[ssd.clone(), hdd.clone(), foreign.clone()],
        None,
    );
    daemon.ready(&storage).await;

    // Pools, totals, broken devices, metrics, the cache.
    assert_eq!(storage.total(DeviceType::Ssd).await.unwrap(), 2 * GIB);
    assert_eq!(storage.total(DeviceType::Hdd).await.unwrap(), 2 * GIB);
    let broken = storage.broken_devices().await.unwrap();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(broken[0].path, foreign.display().to_string());
    assert!(
        broken[0].reason.contains("foreign ext4"),
        "{}",
        broken[0].reason
    );
    assert!(storage.broken_pools().await.unwrap().is_empty());
    let cache = storage.cache().await.unwrap();
    assert_eq!(cache.name, "zos-cache");
    assert_eq!(cache.usage.size, 128 * MIB);
    assert!(Path::new(&cache.path).starts_with(env.mount_root()));
    assert!(common::mount_at(&env.cache_path()).is_some());
    let metrics = storage.metrics().await.unwrap();
    assert_eq!(metrics.len(), 2);
    assert_eq!(metrics.iter().map(|m| m.used).sum::<u64>(), 128 * MIB);

    // Volumes.
    let v = storage.volume_create("web".into(), 64 * MIB).await.unwrap();
    assert_eq!(v.usage.size, 64 * MIB);
    assert!(storage.volume_exists("web".into()).await.unwrap());
    assert!(!storage.volume_exists("nope".into()).await.unwrap());
    assert_eq!(
        storage.volume_lookup("web".into()).await.unwrap().path,
        v.path
    );
    storage.volume_update("web".into(), 96 * MIB).await.unwrap();
    assert_eq!(
        storage
            .volume_lookup("web".into())
            .await
            .unwrap()
            .usage
            .size,
        96 * MIB
    );
    let names: Vec<String> = storage
        .volume_list()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, vec!["web"]);
    // Errors keep their kind across the bus and name what was wrong.
    let err = storage.volume_create("../x".into(), MIB).await.unwrap_err();
    assert_eq!(err.kind(), Some("invalid_input"), "{err}");
    assert!(err.to_string().contains("\"../x\""), "{err}");
    let err = storage
        .volume_create("huge".into(), 100 * GIB)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("unavailable"), "{err}");
    let err = storage.volume_lookup("nope".into()).await.unwrap_err();
    assert_eq!(err.kind(), Some("not_found"), "{err}");
    storage.volume_delete("web".into()).await.unwrap();
    assert!(!storage.volume_exists("web".into()).await.unwrap());

    // Concurrent creates over the bus (4 workers): exactly what fits succeeds, accounted exactly.
    let size = 300 * MIB;
    let fits = ((2 * GIB - 128 * MIB) / size) as usize;
    let calls: Vec<_> = (0..fits + 3)
        .map(|i| {
            let s = storage.clone();
            tokio::spawn(async move { s.volume_create(format!("par{i}"), size).await })
        })
        .collect();
    let mut ok = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(v) => {
                assert_eq!(v.usage.size, size);
                ok += 1;
            }
            Err(e) => assert_eq!(e.kind(), Some("unavailable"), "{e}"),
        }
    }
    assert_eq!(ok, fits);
    let ssd_used = |m: &[zos_api::storage::PoolMetrics]| {
        m.iter().find(|m| m.kind == DeviceType::Ssd).unwrap().used
    };
    assert_eq!(
        ssd_used(&storage.metrics().await.unwrap()),
        128 * MIB + fits as u64 * size
    );
    for v in storage.volume_list().await.unwrap() {
        storage.volume_delete(v.name).await.unwrap();
    }
    assert_eq!(ssd_used(&storage.metrics().await.unwrap()), 128 * MIB);

    // Virtual disks.
    let d = storage.disk_create("vm-1".into(), 128 * MIB).await.unwrap();
    assert_eq!(d.size as u64, 128 * MIB);
    assert!(storage.disk_exists("vm-1".into()).await.unwrap());
    let d = storage.disk_resize("vm-1".into(), 192 * MIB).await.unwrap();
    assert_eq!(d.size as u64, 192 * MIB);
    assert_eq!(storage.disk_lookup("vm-1".into()).await.unwrap(), d);
    let image = env.dir.path().join("image.raw");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(16 * MIB)
        .unwrap();
    sh("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
    storage
        .disk_write("vm-1".into(), image.display().to_string())
        .await
        .unwrap();
    assert_eq!(probe(Path::new(&d.path)).1, probe(&image).1);
    storage.disk_create("vm-2".into(), 128 * MIB).await.unwrap();
    storage.disk_format("vm-2".into()).await.unwrap();
    assert_eq!(
        probe(Path::new(
            &storage.disk_lookup("vm-2".into()).await.unwrap().path
        ))
        .0
        .as_deref(),
        Some("btrfs")
    );
    assert_eq!(storage.disk_list().await.unwrap().len(), 2);
    storage.disk_delete("vm-2".into()).await.unwrap();
    assert_eq!(storage.disk_list().await.unwrap().len(), 1);
    let err = storage.disk_resize("vm-1".into(), MIB).await.unwrap_err();
    assert_eq!(err.kind(), Some("invalid_input"), "{err}");

    // zdb devices on the HDD pool.
    let dev = storage.device_allocate(GIB).await.unwrap();
    let hdd_pool = metrics.iter().find(|m| m.kind == DeviceType::Hdd).unwrap();
    assert_eq!(dev.id, hdd_pool.name);
    assert_eq!(storage.devices().await.unwrap().len(), 1);
    assert_eq!(
        storage.device_lookup(dev.id.clone()).await.unwrap().path,
        dev.path
    );

    // The Monitor stream reports every pool, SSD and HDD.
    let mut monitor = storage.monitor().await.unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(60), monitor.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(stats.len(), 2, "{stats:?}");
    for m in &metrics {
        let s = &stats[&m.name];
        assert!(s.total > 0, "{s:?}");
        assert_eq!(s.counters.len(), 1, "{s:?}");
    }

    // SIGTERM: a clean exit.
    assert!(daemon.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_volume_create_is_repaired_at_the_next_start() {
    if !prerequisites() {
        return;
    }
    let redis = RedisServer::start();
    let mut env = Env::new();
    let dev = env.add_disk(2 * GIB, false);
    let storage = client(&redis);
    let mut daemon = Daemon::start(&env, &redis, std::slice::from_ref(&dev), None);
    daemon.ready(&storage).await;
    storage
        .volume_create("before".into(), 64 * MIB)
        .await
        .unwrap();
    let baseline = storage.metrics().await.unwrap();
    daemon.terminate();

    for (round, point) in ["volume-create:staged", "volume-create:limited"]
        .into_iter()
        .enumerate()
    {
        let mut daemon = Daemon::start(&env, &redis, std::slice::from_ref(&dev), Some(point));
        daemon.ready(&storage).await;
        let name = format!("victim{round}");
        let call = {
            let storage = storage.with_timeout(Duration::from_secs(600));
            let name = name.clone();
            tokio::spawn(async move { storage.volume_create(name, 256 * MIB).await })
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            daemon.wait_for_line(&format!("failpoint {point} reached"));
            daemon.kill();
            tx.send(()).unwrap();
        });
        tokio::task::spawn_blocking(move || rx.recv().unwrap())
            .await
            .unwrap();
        waiter.join().unwrap();
        call.abort();

        // The half-made subvolume is there, unpublished.
        let pool = env.mount_root().join(&baseline[0].name);
        assert!(
            zos_storage::btrfs::is_subvolume(&pool.join(".zos-staging").join(&name)),
            "{point}: staged subvolume"
        );
        assert!(!pool.join(&name).exists());

        let mut daemon = Daemon::start(&env, &redis, std::slice::from_ref(&dev), None);
        daemon.ready(&storage).await;
        assert!(
            !storage.volume_exists(name.clone()).await.unwrap(),
            "{point}"
        );
        assert!(
            !pool.join(".zos-staging").join(&name).exists(),
            "{point}: repaired"
        );
        assert_eq!(
            storage.metrics().await.unwrap(),
            baseline,
            "{point}: nothing counted twice"
        );
        let groups = zos_storage::btrfs::qgroup_show(&pool, true).unwrap();
        let subvolumes = zos_storage::btrfs::subvolume_list(&pool).unwrap();
        assert!(
            groups
                .keys()
                .all(|id| *id == 5 || subvolumes.iter().any(|s| s.id == *id)),
            "{point}: stale qgroups {groups:?}"
        );
        // The call can simply be made again.
        let v = storage
            .volume_create(name.clone(), 256 * MIB)
            .await
            .unwrap();
        assert_eq!(v.usage.size, 256 * MIB);
        storage.volume_delete(name).await.unwrap();
        assert_eq!(
            storage
                .volume_lookup("before".into())
                .await
                .unwrap()
                .usage
                .size,
            64 * MIB
        );
        daemon.terminate();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_disk_write_never_leaves_a_half_written_disk() {
    if !prerequisites() {
        return;
    }
    let redis = RedisServer::start();
    let mut env = Env::new();
    let dev = env.add_disk(2 * GIB, false);
    let storage = client(&redis);
    let mut daemon = Daemon::start(
        &env,
        &redis,
        std::slice::from_ref(&dev),
        Some("disk-write:partial"),
    );
    daemon.ready(&storage).await;
    let disk = storage.disk_create("vm".into(), 256 * MIB).await.unwrap();
    let image = env.dir.path().join("image.raw");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(128 * MIB)
        .unwrap();
    sh("mkfs.btrfs", &["-q", image.to_str().unwrap()]);
    let call = {
        let storage = storage.with_timeout(Duration::from_secs(600));
        let image = image.display().to_string();
        tokio::spawn(async move { storage.disk_write("vm".into(), image).await })
    };
    let waiter = std::thread::spawn(move || {
        daemon.wait_for_line("failpoint disk-write:partial reached");
        daemon.kill();
    });
    tokio::task::spawn_blocking(move || waiter.join().unwrap())
        .await
        .unwrap();
    call.abort();
    // Killed after the first chunk: the superblock is there, the rest is not.
    assert_eq!(
        probe(Path::new(&disk.path)).0.as_deref(),
        Some("btrfs"),
        "the killed write left a filesystem signature"
    );

    let mut daemon = Daemon::start(&env, &redis, std::slice::from_ref(&dev), None);
    daemon.ready(&storage).await;
    assert_eq!(
        probe(Path::new(&disk.path)).0,
        None,
        "the half-written disk was blanked"
    );
    assert_eq!(
        storage.disk_lookup("vm".into()).await.unwrap().size as u64,
        256 * MIB
    );
    storage
        .disk_write("vm".into(), image.display().to_string())
        .await
        .unwrap();
    let written = std::fs::read(&disk.path).unwrap();
    let source = std::fs::read(&image).unwrap();
    assert_eq!(
        &written[..source.len()],
        &source[..],
        "the retried write is complete"
    );
    daemon.terminate();
}
