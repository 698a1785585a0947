//! Shared helpers for the zos-flist integration tests: a source tree with every kind of content, and a
//! comparison of two trees (bytes and attributes).
#![allow(dead_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use zos_flist::BLOCK_SIZE;

/// Deterministic pseudo-random bytes (xorshift), incompressible like real binaries.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn set_mtime(p: &Path, secs: u64) {
    let f = std::fs::File::options()
        .write(true)
        .open(p)
        .or_else(|_| std::fs::File::open(p))
        .unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// Build the test tree under `root`: small files, multi-block files (exact multiple, odd size), a sparse file,
/// an empty file, nested directories, relative and absolute symlinks, a fifo, unusual permissions, distinct
/// uid/gid (when root), fixed mtimes.
pub fn build_tree(root: &Path) {
    let w = |rel: &str, data: &[u8], mode: u32, mtime: u64| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(&p, mtime);
    };
    std::fs::create_dir_all(root).unwrap();
    w("hello.txt", b"hello world\n", 0o644, 1_600_000_000);
    w("empty", b"", 0o600, 1_600_000_001);
    w("bin/tool", &noise(1, 1000), 0o4755, 1_600_000_002);
    w(
        "bin/script.sh",
        b"#!/bin/sh\necho hi\n",
        0o755,
        1_600_000_003,
    );
    w(
        "data/exact",
        &noise(2, 2 * BLOCK_SIZE),
        0o640,
        1_600_000_004,
    );
    w(
        "data/big",
        &noise(3, 3 * BLOCK_SIZE + 12345),
        0o644,
        1_600_000_005,
    );
    w(
        "data/one-byte-more",
        &noise(4, BLOCK_SIZE + 1),
        0o444,
        1_600_000_006,
    );
    // compressible, and identical blocks (dedup)
    w(
        "data/zeros-and-text",
        &[b"abc".repeat(BLOCK_SIZE / 3 + 7), vec![0; BLOCK_SIZE]].concat(),
        0o644,
        1_600_000_007,
    );
    for i in 0..40 {
        w(
            &format!("many/f{i:03}"),
            format!("file number {i}\n").repeat(i + 1).as_bytes(),
            0o644,
            1_600_000_100 + i as u64,
        );
    }
    // sparse: data, hole over several blocks, data at the end
    {
        let p = root.join("data/sparse");
        let f = std::fs::File::create(&p).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"start", 0).unwrap();
        f.write_all_at(b"middle", 2 * BLOCK_SIZE as u64 + 100)
            .unwrap();
        f.set_len(5 * BLOCK_SIZE as u64 + 77).unwrap();
        f.write_all_at(b"end", 5 * BLOCK_SIZE as u64 + 74).unwrap();
        drop(f);
        set_mtime(&p, 1_600_000_008);
    }
    std::fs::create_dir_all(root.join("deep/a/b/c/d")).unwrap();
    w("deep/a/b/c/d/leaf", b"leaf", 0o600, 1_600_000_009);
    std::fs::create_dir_all(root.join("sticky")).unwrap();
    std::fs::set_permissions(root.join("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir_all(root.join("private")).unwrap();
    w("private/secret", b"s3cret", 0o400, 1_600_000_010);
    std::fs::set_permissions(root.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("../hello.txt", root.join("bin/rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("deep/a", root.join("dir-link")).unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    if zos_testkit::is_root() {
        std::os::unix::fs::chown(root.join("hello.txt"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::chown(root.join("data/big"), Some(0), Some(4321)).unwrap();
        std::os::unix::fs::lchown(root.join("bin/rel-link"), Some(42), Some(43)).unwrap();
        // chown clears setuid: put it back
        std::os::unix::fs::chown(root.join("bin/tool"), Some(7), Some(8)).unwrap();
        std::fs::set_permissions(
            root.join("bin/tool"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
    }
    // directory mtimes last (creating entries changes them)
    for d in ["data", "bin", "many"] {
        set_mtime(&root.join(d), 1_500_000_000);
    }
}

/// Every path under `root` (relative, sorted), not following symlinks.
pub fn paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        out.push(rel);
    }
    out.sort();
    out
}

/// Which attributes to compare.
#[derive(Clone, Copy)]
pub struct Compare {
    /// uid and gid
    pub owner: bool,
    /// mtime of non-symlinks
    pub mtime: bool,
}

/// Compare two trees: same paths, types, permission bits, sizes, symlink targets, contents, and optionally
/// owners and mtimes. Panics naming the first difference.
pub fn assert_same_tree(a: &Path, b: &Path, cmp: Compare) {
    let pa = paths(a);
    let pb = paths(b);
    assert_eq!(pa, pb, "different sets of paths");
    for rel in pa {
        let (x, y) = (a.join(&rel), b.join(&rel));
        let (mx, my) = (
            std::fs::symlink_metadata(&x).unwrap(),
            std::fs::symlink_metadata(&y).unwrap(),
        );
        let what = rel.display().to_string();
        assert_eq!(mx.mode() & 0o170000, my.mode() & 0o170000, "{what}: type");
        assert_eq!(
            mx.mode() & 0o7777,
            my.mode() & 0o7777,
            "{what}: permissions"
        );
        if cmp.owner {
            assert_eq!((mx.uid(), mx.gid()), (my.uid(), my.gid()), "{what}: owner");
        }
        if mx.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&x).unwrap(),
                std::fs::read_link(&y).unwrap(),
                "{what}: link target"
            );
            continue;
        }
        if cmp.mtime {
            assert_eq!(mx.mtime(), my.mtime(), "{what}: mtime");
        }
        if mx.is_file() {
            assert_eq!(mx.len(), my.len(), "{what}: size");
            let (dx, dy) = (std::fs::read(&x).unwrap(), std::fs::read(&y).unwrap());
            assert!(dx == dy, "{what}: content differs");
        }
    }
}
