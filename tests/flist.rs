//! End to end, in the sandbox node: a directory packed with our tool is served by our hub, mounted by flistd
//! through the operator CLI over a writable overlay on a storaged volume, and reads back identical.

use std::process::Command;
use std::time::Duration;

mod common;
use common::{Node, eventually, xtask};

/// `sha256  path` of every regular file and `path -> target` of every symlink under `root`, sorted.
const MANIFEST: &str = "cd \"$0\" && { find . -type f -exec sha256sum {} + ; find . -type l -printf '%p -> %l\\n' ; } | sort";

fn manifest_on_host(root: &std::path::Path) -> String {
    let out = Command::new("sh")
        .args(["-c", MANIFEST])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_published_flist_mounts_in_the_node_and_reads_back_identical() {
    if !common::sandbox_prerequisites() || !zos_testkit::require_command("sha256sum") {
        return;
    }
    // A tree with small and multi-block files, a nested directory and symlinks.
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    std::fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    std::fs::write(root.join("etc/hostname"), "flist-e2e\n").unwrap();
    std::fs::write(root.join("etc/conf.d/empty"), "").unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 12345u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("etc/hostname", root.join("hostname-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/absolute", root.join("dangling")).unwrap();
    let expected = manifest_on_host(root);

    let node = Node::unique("f");
    let (ok, out) = node.up(&[]);
    assert!(ok, "node up failed:\n{out}");
    let (ok, out) = xtask(&[
        "node",
        "publish",
        "--name",
        &node.0,
        root.to_str().unwrap(),
        "e2e/tree.fl",
    ]);
    assert!(ok, "publish failed:\n{out}");
    let url = out
        .lines()
        .rev()
        .find(|l| l.starts_with("http://"))
        .expect("publish prints the URL")
        .trim()
        .to_string();

    // Mount through the operator CLI, writable, with a 256 MiB layer.
    let path = eventually("flistd mount", Duration::from_secs(60), || {
        node.call(&[
            "flist",
            "flist",
            "Mount",
            "e2e",
            &url,
            r#"{"ReadOnly":false,"Limit":268435456}"#,
        ])
        .and_then(|v| v.as_str().map(str::to_string).ok_or_else(|| v.to_string()))
    });

    // The merged view reads back identical to the source tree.
    let (ok, got) = node.exec(&["sh", "-c", MANIFEST, &path]);
    assert!(ok, "{got}");
    assert_eq!(
        got.trim(),
        expected.trim(),
        "the mounted flist differs from the packed tree"
    );

    // The overlay is writable, and its layer is a storaged volume named after the mount.
    let (ok, out) = node.exec(&[
        "sh",
        "-c",
        "echo written > \"$0/etc/new-file\" && cat \"$0/etc/new-file\"",
        &path,
    ]);
    assert!(ok && out.contains("written"), "{out}");
    assert_eq!(
        node.call(&["storage", "storage", "VolumeExists", "e2e"]),
        Ok(serde_json::Value::Bool(true))
    );
    assert_eq!(
        node.call(&["flist", "flist", "Exists", "e2e"]),
        Ok(serde_json::Value::Bool(true))
    );

    // Unmount cleans the mount and its volume.
    node.call(&["flist", "flist", "Unmount", "e2e"])
        .expect("unmount");
    assert_eq!(
        node.call(&["flist", "flist", "Exists", "e2e"]),
        Ok(serde_json::Value::Bool(false))
    );
    assert_eq!(
        node.call(&["storage", "storage", "VolumeExists", "e2e"]),
        Ok(serde_json::Value::Bool(false))
    );
}
