//! The storage module on real btrfs, on loop devices each test creates and removes: pools, volumes and
//! quotas, virtual disks, zdb devices, the cache, foreign filesystems, device types, concurrency, repair.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Env, GIB, MIB, mount_at, probe, sh};
use zos_api::storage::DeviceType;
use zos_storage::{CacheState, Error, StorageModule};

fn pool_path(module: &StorageModule, name: &str) -> PathBuf {
    module
        .pools()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap()
        .path
}

#[test]
fn fresh_disks_become_pools_and_a_restart_finds_the_same_pools_and_volumes() {
    if !common::prerequisites() {
        return;
    }
    let mut env = Env::new();
    let a = env.add_disk(2 * GIB, false);
    let b = env.add_disk(2 * GIB, false);
    let opts = env.options(vec![a.clone(), b.clone()], 256 * MIB);
    // Like the sandbox node, the cache path already holds a private tmpfs storaged did not make.
    std::fs::create_dir_all(env.cache_path()).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &env.cache_path(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();

    let module = StorageModule::init(opts.clone()).unwrap();
    let pools = module.pools();
    assert_eq!(pools.len(), 2, "{pools:?}");
    assert!(module.broken_devices().is_empty() && module.broken_pools().is_empty());
    for (dev, disk) in [(&a, &env.disks[0]), (&b, &env.disks[1])] {
        let (fstype, uuid) = disk.probe();
        assert_eq!(fstype.as_deref(), Some("btrfs"), "{dev:?} was formatted");
        let uuid = uuid.unwrap();
        let pool = pools.iter().find(|p| &p.device == dev).unwrap();
        // The pool's name is the filesystem UUID from the very first format, and so is its mount point.
        assert_eq!(pool.name, uuid);
        assert_eq!(pool.path, env.mount_root().join(&uuid));
        assert_eq!(pool.kind, DeviceType::Ssd);
        assert_eq!(pool.size, 2 * GIB);
    }
    // The cache is a bind mount of the zos-cache subvolume of one pool; no limited-cache flag.
    let Some(CacheState::Pool(cache_pool)) = module.cache_state() else {
        panic!("{:?}", module.cache_state())
    };
    let m = mount_at(&env.cache_path()).expect("cache mounted");
    assert_eq!(m.root, Path::new("/zos-cache"));
    assert!(!env.flags_dir().join("limited-cache").exists());
    let cache = module.cache().unwrap();
    assert_eq!(cache.usage.size, 256 * MIB);
    assert_eq!(
        Path::new(&cache.path),
        pool_path(&module, &cache_pool).join("zos-cache")
    );
    // The pool without subvolumes was unmounted; its type is recorded in .seektime.
    let other = pools.iter().find(|p| p.name != cache_pool).unwrap().clone();
    assert!(
        !module
            .pools()
            .iter()
            .find(|p| p.name == other.name)
            .unwrap()
            .mounted
    );
    assert!(mount_at(&other.path).is_none());
    assert_eq!(
        std::fs::read_to_string(pool_path(&module, &cache_pool).join(".seektime")).unwrap(),
        "ssd"
    );

    // A volume, with data.
    let vol = module.volume_create("vol1", 64 * MIB).unwrap();
    assert_eq!(vol.usage.size, 64 * MIB);
    std::fs::write(Path::new(&vol.path).join("hello"), b"world").unwrap();
    let metrics_before = module.metrics().unwrap();
    drop(module);

    // Restart: the same pools by name, the volume with its size and data, the cache still mounted.
    let module = StorageModule::init(opts.clone()).unwrap();
    let mut names: Vec<String> = module.pools().into_iter().map(|p| p.name).collect();
    let mut before: Vec<String> = pools.iter().map(|p| p.name.clone()).collect();
    names.sort();
    before.sort();
    assert_eq!(names, before);
    let again = module.volume_lookup("vol1").unwrap();
    assert_eq!(again.path, vol.path);
    assert_eq!(again.usage.size, 64 * MIB);
    assert_eq!(
        std::fs::read(Path::new(&again.path).join("hello")).unwrap(),
        b"world"
    );
    assert_eq!(
        module.cache_state(),
        Some(CacheState::Pool(cache_pool.clone()))
    );
    assert_eq!(module.metrics().unwrap(), metrics_before);
    assert_eq!(
        module
            .volume_list()
            .unwrap()
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        vec!["vol1"]
    );
    // Creating it again with the same size is idempotent; with another size it is a conflict.
    assert_eq!(module.volume_create("vol1", 64 * MIB).unwrap(), again);
    let err = module.volume_create("vol1", 65 * MIB).unwrap_err();
    assert_eq!(err.kind(), "conflict", "{err}");
    drop(module);

    // The same again after the pools were unmounted behind storaged's back (a reboot).
    common::unmount_below(&env.mount_root());
    common::unmount_below(&env.cache_path());
    let module = StorageModule::init(opts).unwrap();
    assert_eq!(module.volume_lookup("vol1").unwrap().usage.size, 64 * MIB);
    assert_eq!(module.cache_state(), Some(CacheState::Pool(cache_pool)));
    assert!(mount_at(&env.cache_path()).is_some());
}

#[test]
fn a_volume_quota_stops_writes_past_its_size() {
    if !common::prerequisites() {
        return;
    }
    let mut env = Env::new();
    let a = env.add_disk(2 * GIB, false);
    let module = StorageModule::init(env.options(vec![a], 128 * MIB)).unwrap();
    let vol = module.volume_create("quota", 32 * MIB).unwrap();
    let path = Path::new(&vol.path).join("big");

    let write = |path: &Path, mib: usize| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let chunk = vec![0xa5u8; MIB as usize];
        for _ in 0..mib {
            f.write_all(&chunk)?;
        }
        f.sync_all()
    };
    let err = write(&path, 64).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    let written = std::fs::metadata(&path).unwrap().len();
    assert!(
        written <= 32 * MIB,
        "wrote {written} bytes into a 32 MiB volume"
    );

    // Shrinking below what it uses is refused and changes nothing; growing lets writes go on.
    let err = module.volume_update("quota", MIB).unwrap_err();
    assert_eq!(err.kind(), "invalid_input", "{err}");
    assert_eq!(module.volume_lookup("quota").unwrap().usage.size, 32 * MIB);
    module.volume_update("quota", 128 * MIB).unwrap();
    assert_eq!(module.volume_lookup("quota").unwrap().usage.size, 128 * MIB);
    write(&Path::new(&vol.path).join("more"), 16).unwrap();
    // Growth that does not fit the pool is refused.
    let err = module.volume_update("quota", 3 * GIB).unwrap_err();
    assert_eq!(err.kind(), "unavailable", "{err}");
    assert_eq!(module.volume_lookup("quota").unwrap().usage.size, 128 * MIB);
}

#[test]
fn bad_requests_fail_clearly_and_change_nothing() {
    if !common::prerequisites() {
        return;
    }
    let mut env = Env::new();
    let a = env.add_disk(GIB, false);
    let module = StorageModule::init(env.options(vec![a], 128 * MIB)).unwrap();
    let before = module.metrics().unwrap();
    for (name, reason) in [
        ("../escape", "'.'"),
        ("a/b", "'/'"),
        ("zdb-mine", "zdb prefix"),
        ("zos-cache", "reserved"),
        ("", "empty"),
        (".x", "'.'"),
    ] {
        let err = module.volume_create(name, MIB).unwrap_err();
        assert_eq!(err.kind(), "invalid_input", "{name:?}: {err}");
        assert!(err.to_string().contains(reason), "{name:?}: {err}");
        assert!(
            err.to_string().contains(&format!("{name:?}")),
            "the error names the input: {err}"
        );
    }
    let err = module.volume_create("zero", 0).unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
    let err = module.volume_create("huge", 2 * GIB).unwrap_err();
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    assert!(err.to_string().contains("huge"), "{err}");
    let err = module.disk_create("../../etc/passwd", MIB).unwrap_err();
    assert_eq!(err.kind(), "invalid_input", "{err}");
    assert_eq!(
        module.volume_lookup("nope").unwrap_err().kind(),
        "not_found"
    );
    assert_eq!(module.disk_lookup("nope").unwrap_err().kind(), "not_found");
    assert!(!module.volume_exists("nope").unwrap());
    assert_eq!(module.metrics().unwrap(), before);
    assert!(module.volume_list().unwrap().is_empty());
    assert!(module.disk_list().unwrap().is_empty());
}

#[test]
fn virtual_disks_are_created_grown_written_from_an_image_and_formatted() {
    if !common::prerequisites() || !zos_testkit::require_command("mkfs.ext4") {
        return;
    }
    let mut env = Env::new();
    let a = env.add_disk(2 * GIB, false);
    let module = StorageModule::init(env.options(vec![a], 128 * MIB)).unwrap();
    let used = |m: &StorageModule| m.metrics().unwrap().iter().map(|p| p.used).sum::<u64>();
    let base = used(&module);

    // Create: a preallocated NOCOW file in the vdisks subvolume, counted by its size.
    let d = module.disk_create("vm1-root", 128 * MIB).unwrap();
    assert_eq!(d.size as u64, 128 * MIB);
    let path = PathBuf::from(&d.path);
    assert_eq!(path.parent().unwrap().file_name().unwrap(), "vdisks");
    assert!(zos_storage::vdisk::is_nocow(&path).unwrap(), "NOCOW");
    assert!(
        std::fs::metadata(&path).unwrap().blocks() * 512 >= 128 * MIB,
        "preallocated"
    );
    assert_eq!(used(&module), base + 128 * MIB);
    assert_eq!(
        module.disk_create("vm1-root", 128 * MIB).unwrap(),
        d,
        "idempotent"
    );
    assert_eq!(
        module.disk_create("vm1-root", 64 * MIB).unwrap_err().kind(),
        "conflict"
    );

    // Grow, never shrink.
    let d = module.disk_resize("vm1-root", 192 * MIB).unwrap();
    assert_eq!(d.size as u64, 192 * MIB);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 192 * MIB);
    assert_eq!(used(&module), base + 192 * MIB);
    let err = module.disk_resize("vm1-root", 64 * MIB).unwrap_err();
    assert_eq!(err.kind(), "invalid_input", "{err}");
    assert_eq!(
        module.disk_lookup("vm1-root").unwrap().size as u64,
        192 * MIB
    );
    assert_eq!(
        module.disk_resize("vm1-root", 3 * GIB).unwrap_err().kind(),
        "unavailable"
    );

    // Write an image (an ext4 filesystem with a file in it) onto the blank disk.
    let image = env.dir.path().join("image.raw");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    sh(
        "mkfs.ext4",
        &["-q", "-F", "-L", "imagefs", image.to_str().unwrap()],
    );
    let (_, image_uuid) = probe(&image);
    module.disk_write("vm1-root", &image).unwrap();
    let (fstype, uuid) = probe(&path);
    assert_eq!(fstype.as_deref(), Some("ext4"));
    assert_eq!(uuid, image_uuid);
    let disk_bytes = std::fs::read(&path).unwrap();
    let image_bytes = std::fs::read(&image).unwrap();
    assert_eq!(
        &disk_bytes[..image_bytes.len()],
        &image_bytes[..],
        "the disk starts with the image"
    );
    assert!(disk_bytes[image_bytes.len()..].iter().all(|b| *b == 0));
    // A disk that holds data is not overwritten by another image.
    let other = env.dir.path().join("other.raw");
    std::fs::File::create(&other)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    sh("mkfs.ext4", &["-q", "-F", other.to_str().unwrap()]);
    module.disk_write("vm1-root", &other).unwrap();
    assert_eq!(probe(&path).1, image_uuid);
    // An image bigger than the disk, or missing, is refused.
    module.disk_create("small", 16 * MIB).unwrap();
    let err = module.disk_write("small", &image).unwrap_err();
    assert_eq!(err.kind(), "invalid_input", "{err}");
    assert!(err.to_string().contains("bigger"), "{err}");
    assert_eq!(
        probe(Path::new(&module.disk_lookup("small").unwrap().path)).0,
        None,
        "unchanged"
    );
    assert_eq!(
        module
            .disk_write("small", Path::new("/nonexistent.raw"))
            .unwrap_err()
            .kind(),
        "invalid_input"
    );

    // Format: btrfs on a blank disk; a disk holding a filesystem is left as it is.
    module.disk_create("data", 256 * MIB).unwrap();
    module.disk_format("data").unwrap();
    let data = PathBuf::from(module.disk_lookup("data").unwrap().path);
    let (fstype, uuid) = probe(&data);
    assert_eq!(fstype.as_deref(), Some("btrfs"));
    module.disk_format("data").unwrap();
    assert_eq!(
        probe(&data).1,
        uuid,
        "formatting twice keeps the filesystem"
    );
    module.disk_format("vm1-root").unwrap();
    assert_eq!(
        probe(&path).1,
        image_uuid,
        "a disk written from an image is not reformatted"
    );

    // List, exists, delete (accounting follows).
    let names: Vec<String> = module
        .disk_list()
        .unwrap()
        .into_iter()
        .map(|d| d.path)
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(module.disk_exists("data").unwrap());
    module.disk_delete("data").unwrap();
    module.disk_delete("data").unwrap();
    assert!(!module.disk_exists("data").unwrap());
    assert!(!data.exists());
    assert_eq!(used(&module), base + 192 * MIB + 16 * MIB);
    // The vdisks subvolume is not a volume.
    assert!(module.volume_list().unwrap().is_empty());
}

#[test]
fn a_foreign_filesystem_is_left_intact_and_without_a_usable_disk_the_cache_is_a_tmpfs() {
    if !common::prerequisites() || !zos_testkit::require_command("mkfs.ext4") {
        return;
    }
    let mut env = Env::new();
    let ext4 = env.add_disk(256 * MIB, false);
    let pxe = env.add_disk(256 * MIB, false);
    sh(
        "mkfs.ext4",
        &["-q", "-L", "somebodys", ext4.to_str().unwrap()],
    );
    sh("mkfs.ext4", &["-q", "-L", "ZOSPXE", pxe.to_str().unwrap()]);
    // Put a file on the foreign filesystem.
    let look = env.dir.path().join("look");
    std::fs::create_dir_all(&look).unwrap();
    nix::mount::mount(
        Some(&ext4),
        &look,
        Some("ext4"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(look.join("precious"), b"keep me").unwrap();
    nix::mount::umount(&look).unwrap();
    let (_, ext4_uuid) = probe(&ext4);
    let (_, pxe_uuid) = probe(&pxe);
    let missing = PathBuf::from(format!("/dev/{}", zos_testkit::unique_name("nodev")));

    let module = StorageModule::init(
        env.options(vec![ext4.clone(), pxe.clone(), missing.clone()], 128 * MIB),
    )
    .unwrap();
    assert!(module.pools().is_empty());
    let broken = module.broken_devices();
    assert_eq!(broken.len(), 3, "{broken:?}");
    let reason = |dev: &Path| {
        broken
            .iter()
            .find(|b| b.path == dev.display().to_string())
            .unwrap()
            .reason
            .clone()
    };
    assert!(
        reason(&ext4).contains("foreign ext4 filesystem"),
        "{}",
        reason(&ext4)
    );
    assert!(reason(&ext4).contains("somebodys"), "{}", reason(&ext4));
    assert!(reason(&pxe).contains("PXE"), "{}", reason(&pxe));
    assert!(!reason(&missing).is_empty());

    // Both devices are untouched.
    assert_eq!(probe(&ext4), (Some("ext4".into()), ext4_uuid));
    assert_eq!(probe(&pxe), (Some("ext4".into()), pxe_uuid));
    nix::mount::mount(
        Some(&ext4),
        &look,
        Some("ext4"),
        nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
    let content = std::fs::read(look.join("precious"));
    nix::mount::umount(&look).unwrap();
    assert_eq!(content.unwrap(), b"keep me");

    // No disk: the cache is a 500 MB tmpfs and the limited-cache flag is set.
    assert_eq!(module.cache_state(), Some(CacheState::Tmpfs));
    let m = mount_at(&env.cache_path()).expect("cache mounted");
    assert_eq!(
        (m.fstype.as_str(), m.source.as_str()),
        ("tmpfs", "zos-cache")
    );
    let st = nix::sys::statvfs::statvfs(&env.cache_path()).unwrap();
    assert_eq!(
        st.blocks() * st.fragment_size(),
        500_000_000u64.div_ceil(4096) * 4096
    );
    assert!(env.flags_dir().join("limited-cache").exists());
    assert_eq!(module.cache().unwrap_err().kind(), "unavailable");
    let err = module.volume_create("anything", MIB).unwrap_err();
    assert_eq!(err.kind(), "unavailable", "{err}");
    assert_eq!(module.total(DeviceType::Ssd), 0);
    drop(module);

    // A restart keeps the tmpfs it finds (daemons may already use it).
    let module = StorageModule::init(env.options(vec![ext4.clone()], 128 * MIB)).unwrap();
    assert_eq!(module.cache_state(), Some(CacheState::Tmpfs));
    assert_eq!(probe(&ext4).0.as_deref(), Some("ext4"));
}

#[test]
fn ssd_and_hdd_pools_by_the_rotational_flag() {
    if !common::prerequisites() {
        return;
    }
    let mut env = Env::new();
    let ssd = env.add_disk(GIB, false);
    let hdd = env.add_disk(3 * GIB, true);
    let opts = env.options(vec![ssd.clone(), hdd.clone()], 128 * MIB);
    let module = StorageModule::init(opts.clone()).unwrap();
    let pools = module.pools();
    let s = pools.iter().find(|p| p.device == ssd).unwrap().clone();
    let h = pools.iter().find(|p| p.device == hdd).unwrap().clone();
    assert_eq!(s.kind, DeviceType::Ssd);
    assert_eq!(h.kind, DeviceType::Hdd);
    assert_eq!(module.total(DeviceType::Ssd), GIB);
    assert_eq!(module.total(DeviceType::Hdd), 3 * GIB);
    // The cache and volumes go to the SSD, even though the HDD has more room; the HDD stays unmounted.
    assert_eq!(module.cache_state(), Some(CacheState::Pool(s.name.clone())));
    assert!(!h.mounted);
    let v = module.volume_create("fast", 256 * MIB).unwrap();
    assert!(Path::new(&v.path).starts_with(&s.path));
    let err = module.volume_create("toobig", GIB).unwrap_err();
    assert_eq!(
        err.kind(),
        "unavailable",
        "volumes never land on HDD without missing-ssd: {err}"
    );
    // zdb devices go to the HDD, one per pool.
    assert!(module.devices().unwrap().is_empty());
    let d = module.device_allocate(GIB).unwrap();
    assert_eq!(d.id, h.name);
    assert_eq!(Path::new(&d.path), h.path.join("zdb"));
    assert!(zos_storage::btrfs::is_subvolume(Path::new(&d.path)));
    assert_eq!(
        module
            .devices()
            .unwrap()
            .iter()
            .map(|d| d.id.clone())
            .collect::<Vec<_>>(),
        vec![h.name.clone()]
    );
    assert_eq!(module.device_lookup(&h.name).unwrap().path, d.path);
    assert_eq!(
        module.device_lookup(&s.name).unwrap_err().kind(),
        "not_found"
    );
    assert_eq!(
        module.device_allocate(MIB).unwrap_err().kind(),
        "unavailable"
    );
    let metrics = module.metrics().unwrap();
    assert_eq!(
        metrics.iter().find(|m| m.name == s.name).unwrap().used,
        128 * MIB + 256 * MIB
    );
    assert_eq!(
        metrics.iter().find(|m| m.name == h.name).unwrap().kind,
        DeviceType::Hdd
    );
    drop(module);

    // The recorded type wins over the flag on the next start (.seektime, as Zero-OS).
    env.disks[1].set_rotational(false);
    let module = StorageModule::init(opts).unwrap();
    assert_eq!(
        module
            .pools()
            .iter()
            .find(|p| p.device == hdd)
            .unwrap()
            .kind,
        DeviceType::Hdd
    );
    assert_eq!(
        std::fs::read_to_string(h.path.join(".seektime")).unwrap(),
        "hdd"
    );
    assert_eq!(module.devices().unwrap().len(), 1);

    // With missing-ssd, HDD pools take volumes too.
    let mut opts = env.options(vec![ssd, hdd], 128 * MIB);
    opts.missing_ssd = true;
    drop(module);
    let module = StorageModule::init(opts).unwrap();
    let v = module.volume_create("slow", GIB).unwrap();
    assert!(Path::new(&v.path).starts_with(&h.path));
}

#[test]
fn concurrent_volume_creation_is_accounted_exactly() {
    if !common::prerequisites() {
        return;
    }
    let mut env = Env::new();
    let a = env.add_disk(GIB, false);
    let cache = 128 * MIB;
    let module = Arc::new(StorageModule::init(env.options(vec![a], cache)).unwrap());
    let size = 100 * MIB;
    let fits = ((GIB - cache) / size) as usize;
    let extra = 4;
    let threads: Vec<_> = (0..fits + extra)
        .map(|i| {
            let m = module.clone();
            std::thread::spawn(move || m.volume_create(&format!("c{i}"), size))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, fits, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.kind(), "unavailable", "{r}");
    }
    let used: u64 = module.metrics().unwrap().iter().map(|p| p.used).sum();
    assert_eq!(used, cache + fits as u64 * size);
    let list = module.volume_list().unwrap();
    assert_eq!(list.len(), fits);
    assert!(list.iter().all(|v| v.usage.size == size), "{list:?}");

    // The same name from many threads: one volume.
    for v in &list {
        module.volume_delete(&v.name).unwrap();
    }
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let m = module.clone();
            std::thread::spawn(move || m.volume_create("same", size))
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert!(
        results
            .iter()
            .all(|v| v.name == "same" && v.path == results[0].path && v.usage.size == size),
        "{results:?}"
    );
    assert_eq!(module.volume_list().unwrap().len(), 1);
    let used: u64 = module.metrics().unwrap().iter().map(|p| p.used).sum();
    assert_eq!(used, cache + size);
}

#[test]
fn leftovers_of_interrupted_calls_are_repaired_at_start() {
    if !common::prerequisites() {
        return;
    }
    let mut env = Env::new();
    let a = env.add_disk(2 * GIB, false);
    let opts = env.options(vec![a], 128 * MIB);
    let module = StorageModule::init(opts.clone()).unwrap();
    module.volume_create("kept", 64 * MIB).unwrap();
    let disk = PathBuf::from(module.disk_create("half", 64 * MIB).unwrap().path);
    let pool = module.pools()[0].clone();
    let before = module.metrics().unwrap();
    drop(module);

    // What a killed storaged leaves: a staged subvolume with a quota, a partial disk file, and a disk whose
    // image write did not finish (its marker still there, some data on it).
    let staged = pool.path.join(".zos-staging/lost");
    sh("btrfs", &["subvolume", "create", staged.to_str().unwrap()]);
    sh(
        "btrfs",
        &["qgroup", "limit", "100M", staged.to_str().unwrap()],
    );
    std::fs::write(pool.path.join("vdisks/.other.partial"), b"x").unwrap();
    std::fs::write(pool.path.join("vdisks/.half.writing"), b"writing").unwrap();
    let image = env.dir.path().join("img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(128 * MIB)
        .unwrap();
    sh("mkfs.btrfs", &["-q", image.to_str().unwrap()]);
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all(&std::fs::read(&image).unwrap()[..(MIB as usize)])
        .unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 64 * MIB);
    assert_eq!(
        probe(&disk).0.as_deref(),
        Some("btrfs"),
        "the half-written disk looks formatted"
    );

    let module = StorageModule::init(opts).unwrap();
    assert!(!staged.exists(), "the staged subvolume is gone");
    assert!(!pool.path.join("vdisks/.other.partial").exists());
    assert!(!pool.path.join("vdisks/.half.writing").exists());
    assert_eq!(probe(&disk).0, None, "the half-written disk is blank again");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 64 * MIB);
    assert!(zos_storage::vdisk::is_nocow(&disk).unwrap());
    assert_eq!(module.metrics().unwrap(), before, "nothing counted twice");
    assert_eq!(
        module
            .volume_list()
            .unwrap()
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        vec!["kept"]
    );
    // No stale qgroup is left.
    let groups = zos_storage::btrfs::qgroup_show(&pool.path, true).unwrap();
    let subvolumes = zos_storage::btrfs::subvolume_list(&pool.path).unwrap();
    for id in groups.keys().filter(|id| **id != 5) {
        assert!(
            subvolumes.iter().any(|s| s.id == *id),
            "stale qgroup 0/{id}: {subvolumes:?}"
        );
    }
}

#[test]
fn the_cache_quota_follows_its_use() {
    if !common::prerequisites() {
        return;
    }
    let mut env = Env::new();
    let a = env.add_disk(2 * GIB, false);
    let unit = 64 * MIB;
    let module = StorageModule::init(env.options(vec![a], unit)).unwrap();
    assert_eq!(module.cache().unwrap().usage.size, unit);
    assert_eq!(
        module.resize_cache().unwrap(),
        None,
        "an empty cache keeps its quota"
    );
    // Fill 48 MiB of 64 (75 %): it grows by one unit.
    let file = env.cache_path().join("fill");
    let mut f = std::fs::File::create(&file).unwrap();
    let chunk = vec![0x5au8; MIB as usize];
    for _ in 0..48 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(module.resize_cache().unwrap(), Some(2 * unit));
    assert_eq!(module.cache().unwrap().usage.size, 2 * unit);
    // Empty it: back to one unit.
    std::fs::remove_file(&file).unwrap();
    sh("sync", &[]);
    assert_eq!(module.resize_cache().unwrap(), Some(unit));
    assert_eq!(module.cache().unwrap().usage.size, unit);
    let used: u64 = module.metrics().unwrap().iter().map(|p| p.used).sum();
    assert_eq!(used, unit);
}

#[test]
fn free_space_on_partitioned_disks_is_used_only_when_allowed() {
    if !common::prerequisites()
        || !zos_testkit::require_command("parted")
        || !zos_testkit::require_command("mkfs.ext4")
    {
        return;
    }
    let mut env = Env::new();
    let disk = common::LoopDisk::new(env.dir.path(), 12 * GIB, true);
    disk.set_rotational(false);
    let dev = disk.device.clone();
    env.disks.push(disk);
    let d = dev.to_str().unwrap();
    sh(
        "parted",
        &[
            "-s", d, "mklabel", "gpt", "mkpart", "primary", "ext4", "1MiB", "1GiB",
        ],
    );
    let p1 = PathBuf::from(format!("{d}p1"));
    sh("mkfs.ext4", &["-q", p1.to_str().unwrap()]);
    let count_parts = || {
        sh("parted", &["-s", "-m", d, "unit", "B", "print"])
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .count()
    };
    assert_eq!(count_parts(), 1);

    // Not allowed: the free space stays free; the ext4 partition is reported, not formatted.
    let module = StorageModule::init(env.options(vec![dev.clone()], 128 * MIB)).unwrap();
    assert_eq!(count_parts(), 1);
    assert!(module.pools().is_empty());
    assert!(
        module
            .broken_devices()
            .iter()
            .any(|b| b.path == p1.display().to_string() && b.reason.contains("ext4"))
    );
    drop(module);
    common::unmount_below(&env.cache_path());

    // Allowed: the free space (11 GiB) becomes a partition and a pool.
    let mut opts = env.options(vec![dev.clone()], 128 * MIB);
    opts.allow_partitioning = true;
    let module = StorageModule::init(opts).unwrap();
    assert_eq!(count_parts(), 2);
    let pools = module.pools();
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert_eq!(pools[0].device, PathBuf::from(format!("{d}p2")));
    assert!(pools[0].size >= 10 * GIB);
    assert_eq!(
        probe(&p1).0.as_deref(),
        Some("ext4"),
        "the existing partition is untouched"
    );
    assert!(matches!(module.cache_state(), Some(CacheState::Pool(_))));
}

#[test]
fn an_interrupted_format_is_redone_but_a_broken_filesystem_storaged_did_not_make_is_left_alone() {
    if !common::prerequisites() {
        return;
    }
    let mut env = Env::new();
    let ours = env.add_disk(GIB, false);
    let theirs = env.add_disk(GIB, false);
    let (u1, u2) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    // Two half-made filesystems: a superblock, but the trees behind it are gone (mount fails).
    for (dev, uuid) in [(&ours, &u1), (&theirs, &u2)] {
        sh("mkfs.btrfs", &["-q", "-U", uuid, dev.to_str().unwrap()]);
        let mut f = std::fs::OpenOptions::new().write(true).open(dev).unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(MIB)).unwrap();
        f.write_all(&vec![0u8; 40 * MIB as usize]).unwrap();
        f.sync_all().unwrap();
        assert_eq!(probe(dev), (Some("btrfs".into()), Some(uuid.clone())));
    }
    // storaged had recorded that it was formatting the first one when it was killed.
    std::fs::create_dir_all(env.mount_root()).unwrap();
    let marker = env
        .mount_root()
        .join(format!(".zos-formatting-{}", env.disks[0].name()));
    std::fs::write(&marker, &u1).unwrap();

    let module =
        StorageModule::init(env.options(vec![ours.clone(), theirs.clone()], 128 * MIB)).unwrap();
    let pools = module.pools();
    assert_eq!(
        pools.len(),
        1,
        "{pools:?} {:?} {:?}",
        module.broken_devices(),
        module.broken_pools()
    );
    assert_eq!(
        pools[0].name, u1,
        "the interrupted format is redone with the same uuid"
    );
    assert_eq!(pools[0].device, ours);
    assert!(!marker.exists());
    let broken = module.broken_pools();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(broken[0].label, u2);
    assert!(
        broken[0].reason.starts_with("mounting btrfs on"),
        "{}",
        broken[0].reason
    );
    assert!(
        broken[0].reason.contains(": "),
        "the reason carries the system error: {}",
        broken[0].reason
    );
    assert_eq!(
        probe(&theirs),
        (Some("btrfs".into()), Some(u2)),
        "never reformatted"
    );
}
