//! The key store on real files: every format, in-place upgrades, permissions, the backup, recovery, and
//! refusals that leave everything on disk as it was.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zos_identity::keystore::{SeedFormat, encode_seed_file, parse_seed_file};
use zos_identity::{KeySource, KeyStore, KeyStoreError, NodeKey};

const SEED: &str = "fac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e";
/// BIP-39 reference vector: entropy 7f×32.
const MNEMONIC_7F: &str = "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title";

fn seed() -> [u8; 32] {
    hex::decode(SEED).unwrap().try_into().unwrap()
}

fn v1(seed: &[u8; 32]) -> Vec<u8> {
    let mut out = b"\"1.0.0\"".to_vec();
    out.extend_from_slice(seed);
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir` with its bytes (the lock file excluded).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != ".seed.lock" {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_new_node_gets_a_key_once_and_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("modules/identityd");
    let store = KeyStore::new(&root);
    let first = store.load_or_create().unwrap();
    assert_eq!(first.source, KeySource::Generated);
    let file = fs::read(store.primary_path()).unwrap();
    assert_eq!(file.len(), 39, "\"1.0.0\" and 32 seed bytes");
    assert!(file.starts_with(b"\"1.0.0\""));
    assert_eq!(
        fs::read(store.backup_path()).unwrap(),
        file,
        "the backup is the same file"
    );
    assert_eq!(mode(&store.primary_path()), 0o600);
    assert_eq!(mode(&store.backup_path()), 0o600);
    assert_eq!(mode(&root), 0o700);

    let again = store.load_or_create().unwrap();
    assert_eq!(again.source, KeySource::Primary);
    assert_eq!(again.key.node_id(), first.key.node_id());
    assert_eq!(again.upgraded_from, None);
    assert_eq!(
        fs::read(store.primary_path()).unwrap(),
        file,
        "a current file is not rewritten"
    );
}

#[test]
fn version_1_0_0_is_read_as_is_and_its_mode_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::new(tmp.path());
    fs::write(store.primary_path(), v1(&seed())).unwrap();
    fs::set_permissions(store.primary_path(), fs::Permissions::from_mode(0o444)).unwrap();
    let loaded = store.load_or_create().unwrap();
    assert_eq!(
        loaded.key.public_key(),
        NodeKey::from_seed(&seed()).public_key()
    );
    assert_eq!(loaded.source, KeySource::Primary);
    assert_eq!(loaded.upgraded_from, None);
    assert_eq!(fs::read(store.primary_path()).unwrap(), v1(&seed()));
    assert_eq!(
        mode(&store.primary_path()),
        0o600,
        "Go wrote 0400; the file is made 0600"
    );
    assert_eq!(
        fs::read(store.backup_path()).unwrap(),
        v1(&seed()),
        "the backup is created"
    );
}

#[test]
fn legacy_raw_seeds_are_upgraded_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::new(tmp.path());
    fs::write(store.primary_path(), seed()).unwrap();
    let loaded = store.load_or_create().unwrap();
    assert_eq!(loaded.upgraded_from, Some(SeedFormat::Legacy));
    assert_eq!(
        loaded.key.public_key(),
        NodeKey::from_seed(&seed()).public_key()
    );
    assert_eq!(
        fs::read(store.primary_path()).unwrap(),
        v1(&seed()),
        "rewritten as 1.0.0 (not Go's mislabelled 1.1.0)"
    );
    assert_eq!(mode(&store.primary_path()), 0o600);
    assert_eq!(
        names(tmp.path()),
        vec![".seed.lock", "seed.txt", "seed.txt.bak"],
        "no temp file is left"
    );
    assert_eq!(store.load_or_create().unwrap().upgraded_from, None);
}

#[test]
fn version_1_1_0_mnemonics_are_read_and_upgraded() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::new(tmp.path());
    let file = format!("\"1.1.0\"{{\"mnemonic\":\"{MNEMONIC_7F}\"}}");
    fs::write(store.primary_path(), &file).unwrap();
    let loaded = store.load_or_create().unwrap();
    assert_eq!(loaded.upgraded_from, Some(SeedFormat::V1_1Mnemonic));
    assert_eq!(
        loaded.key.public_key(),
        NodeKey::from_seed(&[0x7f; 32]).public_key()
    );
    assert_eq!(fs::read(store.primary_path()).unwrap(), v1(&[0x7f; 32]));
}

#[test]
fn parse_names_what_is_wrong() {
    assert_eq!(parse_seed_file(&v1(&seed())).unwrap().0, SeedFormat::V1_0);
    assert_eq!(
        *parse_seed_file(&encode_seed_file(&seed())).unwrap().1,
        seed()
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\"1.0.0\"".iter().copied().chain([1u8; 20]).collect(), "followed by 32 seed bytes, found 20"),
        ([v1(&seed()), b"\n".to_vec()].concat(), "found 33"),
        (b"\"2.0.0\"whatever".to_vec(), "unknown seed file version 2.0.0"),
        (b"\"1.1.0\"{\"mnemonic\":\"bottom drive obey lake curtain smoke basket hold race lonely fit walk\"}".to_vec(), "holds 16 bytes"),
        (b"\"1.1.0\"{\"mnemonic\":\"zoo zoo zoo\"}".to_vec(), "invalid mnemonic"),
        (b"\"1.1.0\"not json".to_vec(), "JSON"),
        (vec![0u8; 31], "31 bytes"),
        (Vec::new(), "0 bytes"),
    ];
    for (data, expect) in cases {
        let err = parse_seed_file(&data).unwrap_err();
        assert!(err.contains(expect), "{err:?} should contain {expect:?}");
    }
}

#[test]
fn a_corrupt_key_without_a_copy_is_refused_and_left_alone() {
    for corrupt in [
        b"\"1.0.0\"truncated".to_vec(),
        vec![7u8; 10],
        b"\"9.9.9\"".iter().copied().chain([0u8; 32]).collect(),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeyStore::new(tmp.path());
        fs::write(store.primary_path(), &corrupt).unwrap();
        let before = snapshot(tmp.path());
        let err = store.load_or_create().unwrap_err();
        assert!(
            matches!(err, KeyStoreError::Unrecoverable { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&store.primary_path().display().to_string()),
            "the message names the file: {text}"
        );
        assert!(text.contains("refusing to create a new identity"), "{text}");
        assert_eq!(
            snapshot(tmp.path()),
            before,
            "nothing written, nothing removed"
        );
        // Still refused on the next start (as under zinit): never a new identity.
        assert!(store.load_or_create().is_err());
        assert_eq!(snapshot(tmp.path()), before);
    }
}

#[test]
fn a_corrupt_key_is_restored_from_the_backup_and_kept_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::new(tmp.path());
    let id = store.load_or_create().unwrap().key.node_id();
    fs::write(store.primary_path(), b"\"1.0.0\"torn write").unwrap();
    let loaded = store.load_or_create().unwrap();
    assert_eq!(loaded.source, KeySource::Backup);
    assert_eq!(loaded.key.node_id(), id);
    assert_eq!(
        fs::read(store.primary_path()).unwrap(),
        fs::read(store.backup_path()).unwrap()
    );
    let aside: Vec<String> = names(tmp.path())
        .into_iter()
        .filter(|n| n.starts_with("seed.txt.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{:?}", names(tmp.path()));
    assert_eq!(
        fs::read(tmp.path().join(&aside[0])).unwrap(),
        b"\"1.0.0\"torn write",
        "the corrupt file is kept"
    );
}

#[test]
fn a_missing_key_is_restored_from_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::new(tmp.path());
    let id = store.load_or_create().unwrap().key.node_id();
    fs::remove_file(store.primary_path()).unwrap();
    let loaded = store.load_or_create().unwrap();
    assert_eq!(
        (loaded.source, loaded.key.node_id()),
        (KeySource::Backup, id)
    );
    assert_eq!(mode(&store.primary_path()), 0o600);
}

#[test]
fn a_missing_key_with_a_corrupt_backup_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::new(tmp.path());
    fs::write(store.backup_path(), b"garbage").unwrap();
    let before = snapshot(tmp.path());
    let err = store.load_or_create().unwrap_err().to_string();
    assert!(
        err.contains(&store.backup_path().display().to_string()) && err.contains("7 bytes"),
        "{err}"
    );
    assert_eq!(snapshot(tmp.path()), before);
    assert!(!store.primary_path().exists(), "no new identity");
}

#[test]
fn a_backup_of_another_key_is_kept_aside_and_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::new(tmp.path());
    fs::write(store.primary_path(), v1(&seed())).unwrap();
    fs::write(store.backup_path(), v1(&[5; 32])).unwrap();
    let loaded = store.load_or_create().unwrap();
    assert_eq!(
        loaded.key.public_key(),
        NodeKey::from_seed(&seed()).public_key(),
        "the primary wins"
    );
    assert_eq!(fs::read(store.backup_path()).unwrap(), v1(&seed()));
    let aside: Vec<String> = names(tmp.path())
        .into_iter()
        .filter(|n| n.starts_with("seed.txt.bak.replaced-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        fs::read(tmp.path().join(&aside[0])).unwrap(),
        v1(&[5; 32]),
        "the other key is not lost"
    );
}

#[test]
fn go_pool_mirrors_are_read_for_recovery_and_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("identityd");
    let mnt = tmp.path().join("mnt");
    for pool in ["pool-a", "pool-b", "pool-empty"] {
        fs::create_dir_all(mnt.join(pool)).unwrap();
    }
    fs::write(mnt.join("pool-a/seed.txt"), v1(&seed())).unwrap();
    fs::write(mnt.join("pool-b/seed.txt"), seed()).unwrap(); // same key, legacy format
    let mirrors_before = snapshot(&mnt);
    let store = KeyStore::new(&root).with_legacy_mirrors(&mnt);
    let loaded = store.load_or_create().unwrap();
    assert_eq!(
        loaded.source,
        KeySource::Mirror(mnt.join("pool-a/seed.txt"))
    );
    assert_eq!(
        loaded.key.public_key(),
        NodeKey::from_seed(&seed()).public_key()
    );
    assert_eq!(fs::read(store.primary_path()).unwrap(), v1(&seed()));
    assert_eq!(fs::read(store.backup_path()).unwrap(), v1(&seed()));
    assert_eq!(
        snapshot(&mnt),
        mirrors_before,
        "mirrors are read, never written"
    );
    // Without a key anywhere, a new key is not mirrored to pools either.
    let other =
        KeyStore::new(tmp.path().join("other")).with_legacy_mirrors(tmp.path().join("no-such-mnt"));
    assert_eq!(other.load_or_create().unwrap().source, KeySource::Generated);
    assert_eq!(snapshot(&mnt), mirrors_before);
}

#[test]
fn disagreeing_or_corrupt_mirrors_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("identityd");
    let mnt = tmp.path().join("mnt");
    fs::create_dir_all(mnt.join("a")).unwrap();
    fs::create_dir_all(mnt.join("b")).unwrap();
    fs::write(mnt.join("a/seed.txt"), v1(&seed())).unwrap();
    fs::write(mnt.join("b/seed.txt"), v1(&[3; 32])).unwrap();
    let store = KeyStore::new(&root).with_legacy_mirrors(&mnt);
    let err = store.load_or_create().unwrap_err();
    assert!(
        matches!(err, KeyStoreError::AmbiguousMirrors { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("a/seed.txt") && text.contains("b/seed.txt"),
        "{text}"
    );
    assert!(!store.primary_path().exists() && !store.backup_path().exists());

    fs::write(mnt.join("a/seed.txt"), b"junk").unwrap();
    fs::remove_file(mnt.join("b/seed.txt")).unwrap();
    let err = store.load_or_create().unwrap_err().to_string();
    assert!(
        err.contains("a/seed.txt") && err.contains("refusing to create a new identity"),
        "{err}"
    );
    assert!(!store.primary_path().exists());
}

#[test]
fn stale_temp_files_of_a_killed_write_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KeyStore::new(tmp.path());
    store.load_or_create().unwrap();
    fs::write(tmp.path().join(".seed.txt.tmp-99999"), b"half").unwrap();
    fs::write(tmp.path().join(".seed.txt.bak.tmp-99999"), b"half").unwrap();
    store.load_or_create().unwrap();
    assert_eq!(
        names(tmp.path()),
        vec![".seed.lock", "seed.txt", "seed.txt.bak"]
    );
}

#[test]
fn an_unreadable_root_is_an_error_not_a_new_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let err = KeyStore::new(&file).load_or_create().unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}
