//! The FUSE mount against the real kernel: mount a packed tree, compare every byte and attribute with the
//! source, read at many offsets and sizes, read with 4 concurrent readers, refuse writes, unmount cleanly.
//! Needs root and /dev/fuse (fails in CI when missing).

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Compare, assert_same_tree, build_tree};
use zos_flist::{BLOCK_SIZE, BlockCache, Flist, MountConfig, PackOptions, store::DirStore};

fn mounted(path: &Path) -> bool {
    let want = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Unmounts (lazily, as a last resort) whatever is still mounted at the path when the test ends, even on panic.
struct UnmountGuard(PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        if mounted(&self.0) {
            let c = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    src: PathBuf,
    mnt: PathBuf,
    _guard: UnmountGuard,
    handle: Option<zos_flist::MountHandle>,
    _rt: tokio::runtime::Runtime,
    cache: Arc<BlockCache>,
}

fn fixture() -> Option<Fixture> {
    if !zos_testkit::require_root() {
        return None;
    }
    if !zos_testkit::prerequisite(Path::new("/dev/fuse").exists(), "/dev/fuse") {
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix(&zos_testkit::unique_name("zfl"))
        .tempdir()
        .unwrap();
    let (src, fl, st, mnt) = (
        dir.path().join("src"),
        dir.path().join("x.fl"),
        dir.path().join("store"),
        dir.path().join("mnt"),
    );
    build_tree(&src);
    std::fs::create_dir_all(&mnt).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let routes = vec![(0u8, 255u8, format!("dir://{}", st.display()))];
    zos_flist::pack::pack(
        &src,
        &fl,
        &routes,
        &PackOptions::default(),
        rt.handle(),
        &mut |_| {},
    )
    .unwrap();
    let flist = Arc::new(Flist::open(&fl).unwrap());
    let cache = Arc::new(
        BlockCache::new(
            dir.path().join("cache"),
            Arc::new(DirStore::new(&st)),
            rt.handle().clone(),
        )
        .unwrap(),
    );
    let guard = UnmountGuard(mnt.clone());
    let handle = zos_flist::fs::mount(flist, cache.clone(), &mnt, &MountConfig::default()).unwrap();
    assert!(mounted(&mnt), "the mount shows in mountinfo");
    Some(Fixture {
        _dir: dir,
        src,
        mnt,
        _guard: guard,
        handle: Some(handle),
        _rt: rt,
        cache,
    })
}

#[test]
fn mount_matches_the_source_tree() {
    let Some(mut f) = fixture() else { return };
    assert_same_tree(
        &f.src,
        &f.mnt,
        Compare {
            owner: true,
            mtime: true,
        },
    );
    // reads at many offsets and sizes, spanning blocks
    let data = std::fs::read(f.src.join("data/big")).unwrap();
    let file = std::fs::File::open(f.mnt.join("data/big")).unwrap();
    let bs = BLOCK_SIZE;
    let mut x: u64 = 12345;
    let mut cases = vec![
        (0, 1),
        (bs - 1, 2),
        (bs - 4096, 3 * bs),
        (data.len() - 1, 1),
        (data.len() - 100, 4096),
        (0, data.len() + 10),
    ];
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cases.push((
            (x % data.len() as u64) as usize,
            ((x >> 20) % (bs as u64 * 2)) as usize + 1,
        ));
    }
    for (off, len) in cases {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = file.read_at(&mut buf[got..], (off + got) as u64).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        let end = (off + len).min(data.len());
        assert_eq!(got, end - off, "read of {len} at {off}");
        assert!(buf[..got] == data[off..end], "content of {len} at {off}");
    }
    // read-only
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(f.mnt.join("hello.txt"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    assert!(std::fs::write(f.mnt.join("new"), b"x").is_err());
    // statfs
    let c = std::ffi::CString::new(f.mnt.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: zeroed statvfs is a valid out-parameter; c is a valid path.
    let mut sv: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut sv) }, 0);
    assert!(sv.f_blocks > 0 && sv.f_flag & libc::ST_RDONLY != 0);
    // busy while a file is open, then a clean unmount
    let mut h = f.handle.take().unwrap();
    let e = h.unmount().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}");
    assert!(mounted(&f.mnt));
    drop(file);
    h.unmount().unwrap();
    assert!(!mounted(&f.mnt), "unmounted");
}

#[test]
fn four_concurrent_readers() {
    let Some(mut f) = fixture() else { return };
    let files: Vec<PathBuf> = common::paths(&f.src)
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(f.src.join(p)).unwrap().is_file())
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (src, mnt, files) = (f.src.clone(), f.mnt.clone(), files.clone());
            std::thread::spawn(move || {
                // every reader reads the whole tree, each in a different order
                let mut order = files;
                order.rotate_left(i * 3);
                if i % 2 == 1 {
                    order.reverse();
                }
                for p in order {
                    let a = std::fs::read(src.join(&p)).unwrap();
                    let b = std::fs::read(mnt.join(&p)).unwrap();
                    assert!(a == b, "reader {i}: {} differs", p.display());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a reader failed");
    }
    let s = f.cache.stats();
    assert!(s.fetches > 0);
    f.handle.take().unwrap().unmount().unwrap();
    assert!(!mounted(&f.mnt));
}

#[test]
fn dropping_the_handle_unmounts() {
    let Some(mut f) = fixture() else { return };
    assert_eq!(
        std::fs::read(f.mnt.join("hello.txt")).unwrap(),
        b"hello world\n"
    );
    drop(f.handle.take());
    assert!(!mounted(&f.mnt));
}

#[test]
fn mount_of_a_missing_mountpoint_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let fl = t.path().join("x.fl");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let routes = vec![(
        0u8,
        255u8,
        format!("dir://{}", t.path().join("st").display()),
    )];
    zos_flist::pack::pack(
        &src,
        &fl,
        &routes,
        &PackOptions::default(),
        rt.handle(),
        &mut |_| {},
    )
    .unwrap();
    let opts = zos_flist::MountFlOptions::new(t.path().join("cache"));
    let e = zos_flist::mount_fl(&fl, &t.path().join("nope"), &opts, rt.handle())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nope") && e.contains("not a directory"), "{e}");
}
