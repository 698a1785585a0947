//! The flistd binary as a child process (configured through zos-config, as zinit runs it), SIGKILLed with
//! live mounts and in the middle of a mount or an unmount, then started again: live mounts are kept as they
//! are, mounts whose FUSE server died too are made again, interrupted operations are undone or finished.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{MIB, World, assert_same_as_source, eventually, fs, gone};
use zos_api::bus::Client;
use zos_api::flist::MountOptions;
use zos_testkit::ChildProcess;

/// A flistd child process; SIGKILLed on drop.
struct Flistd(ChildProcess);

impl Flistd {
    fn start(w: &World, failpoint: Option<&str>) -> Flistd {
        let dir = w.env.dir.path();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[bus]\nbroker = {:?}\n\n[flist]\nroot = {:?}\nstores = [{:?}]\n\n[hub]\nurl = {:?}\nstorage = \"\"\n",
                w.redis.url(),
                w.root.display().to_string(),
                w.hub_blocks(),
                format!("http://{}", w.hub_addr),
            ),
        )
        .unwrap();
        let cmdline = dir.join("cmdline");
        std::fs::write(&cmdline, "").unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flistd"));
        cmd.env("ZOS_CONFIG", &config)
            .env("ZOS_CMDLINE", &cmdline)
            .env("RUST_LOG", "info")
            .env_remove(zos_flistd::failpoint::FAILPOINT_ENV);
        if let Some(f) = failpoint {
            cmd.env(zos_flistd::failpoint::FAILPOINT_ENV, f);
        }
        Flistd(ChildProcess::spawn("flistd", &mut cmd))
    }

    /// Wait until flistd answers its status object (it serves only after checking the recorded mounts).
    async fn ready(&mut self, w: &World) {
        let bus = Client::connect(&w.redis.url()).unwrap();
        for _ in 0..600 {
            if let Some(status) = self.0.try_wait() {
                panic!("flistd exited during start: {status}");
            }
            if bus
                .status("flist", Duration::from_millis(500))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("flistd did not serve the bus");
    }

    /// Wait for a stderr line containing `text`, printed while `call` (the operation that reaches it) runs.
    async fn wait_for_line<T: std::fmt::Debug>(
        &self,
        text: &str,
        call: &mut tokio::task::JoinHandle<T>,
    ) {
        let stopped = eventually(Duration::from_secs(120), || {
            self.0.printed(text) || call.is_finished()
        })
        .await;
        if !self.0.printed(text) {
            if stopped {
                panic!("the call ended before {text:?}: {:?}", call.await);
            }
            panic!("flistd never printed {text:?}");
        }
    }

    fn kill(&mut self) {
        self.0.kill();
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        self.0.terminate(Duration::from_secs(60))
    }
}

fn rw(limit: u64) -> MountOptions {
    MountOptions {
        limit,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_keeps_live_mounts_and_a_restart_recovers_dead_ones() {
    if !common::prerequisites() {
        return;
    }
    let w = World::new().await;
    let hash = w.md5();
    let url = w.url("test/tree.fl");
    let flist = w.flist();
    let mut d = Flistd::start(&w, None);
    d.ready(&w).await;
    let vm = PathBuf::from(
        flist
            .mount("vm".into(), url.clone(), rw(64 * MIB))
            .await
            .unwrap(),
    );
    let app = PathBuf::from(
        flist
            .mount(
                "app".into(),
                url.clone(),
                MountOptions {
                    read_only: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
    );
    std::fs::write(vm.join("kept"), b"written by the workload").unwrap();
    let server = w.server_pid(&hash).unwrap();
    let ids = |w: &World| {
        (
            w.mount_at(&vm).map(|m| m.id),
            w.mount_at(&app).map(|m| m.id),
        )
    };
    let before = ids(&w);

    // SIGKILL: nothing serves the bus, but the mounts stay readable (their FUSE server is its own process).
    d.kill();
    let err = flist
        .clone()
        .with_timeout(Duration::from_millis(500))
        .exists("vm".into())
        .await
        .unwrap_err();
    assert!(matches!(err, zos_bus::Error::NoServer { .. }), "{err}");
    assert!(!gone(server), "the FUSE server outlives flistd");
    assert_same_as_source(&w.src, &app, true).await;
    assert_eq!(
        std::fs::read(vm.join("kept")).unwrap(),
        b"written by the workload"
    );

    // Restart: the live mounts are kept exactly as they were.
    let mut d = Flistd::start(&w, None);
    d.ready(&w).await;
    assert!(flist.exists("vm".into()).await.unwrap());
    assert!(flist.exists("app".into()).await.unwrap());
    assert_eq!(w.server_pid(&hash), Some(server), "same FUSE server");
    assert_eq!(ids(&w), before, "same mounts");
    assert_eq!(flist.hash_from_root_path("vm".into()).await.unwrap(), hash);

    // SIGKILL of flistd and of the FUSE server: the mounts break...
    d.kill();
    common::kill(server);
    assert!(eventually(Duration::from_secs(20), || gone(server)).await);
    let p = app.join("hello.txt");
    let err = fs(move || std::fs::read(p).unwrap_err()).await;
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED)
        ),
        "{err}"
    );
    // ... and the next start mounts them again (before it serves the bus), with the writes kept.
    let mut d = Flistd::start(&w, None);
    d.ready(&w).await;
    let new_server = w.server_pid(&hash).expect("a new FUSE server");
    assert_ne!(new_server, server);
    assert_same_as_source(&w.src, &app, true).await;
    assert_eq!(
        std::fs::read(vm.join("kept")).unwrap(),
        b"written by the workload"
    );
    assert_eq!(
        fs({
            let vm = vm.clone();
            move || std::fs::read(vm.join("data/big")).unwrap()
        })
        .await,
        std::fs::read(w.src.join("data/big")).unwrap()
    );

    // And they can be unmounted, leaving nothing.
    flist.unmount("vm".into()).await.unwrap();
    flist.unmount("app".into()).await.unwrap();
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
    assert!(!w.storage().volume_exists("vm".into()).await.unwrap());
    assert!(eventually(Duration::from_secs(20), || gone(new_server)).await);
    // SIGTERM stops it cleanly.
    assert!(d.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_in_the_middle_of_mount_or_unmount_is_undone_or_finished_at_restart() {
    if !common::prerequisites() {
        return;
    }
    let w = World::new().await;
    let url = w.url("test/tree.fl");
    let flist = w.flist();
    let storage = w.storage();
    // The calls interrupted by a kill never get a reply: they are abandoned, not awaited.
    let patient = flist.clone().with_timeout(Duration::from_secs(120));

    for point in ["mount:volume-created", "mount:mounted"] {
        let mut d = Flistd::start(&w, Some(point));
        d.ready(&w).await;
        let mut call = tokio::spawn({
            let patient = patient.clone();
            let url = url.clone();
            async move { patient.mount("half".into(), url, rw(32 * MIB)).await }
        });
        d.wait_for_line(&format!("failpoint {point} reached"), &mut call)
            .await;
        assert!(storage.volume_exists("half".into()).await.unwrap());
        d.kill();
        call.abort();

        // The next start undoes the interrupted mount: no mount, no directory, no volume, no record.
        let mut d = Flistd::start(&w, None);
        d.ready(&w).await;
        assert!(!flist.exists("half".into()).await.unwrap(), "{point}");
        assert!(
            !storage.volume_exists("half".into()).await.unwrap(),
            "{point}"
        );
        assert!(w.mounts().is_empty(), "{point}: {:?}", w.mounts());
        assert!(!w.mountpoint("half").exists(), "{point}");
        assert_eq!(std::fs::read_dir(w.root.join("state")).unwrap().count(), 0);
        // The caller's retry works.
        let path = flist
            .mount("half".into(), url.clone(), rw(32 * MIB))
            .await
            .unwrap();
        assert_same_as_source(&w.src, Path::new(&path), false).await;
        flist.unmount("half".into()).await.unwrap();
        d.kill();
    }

    // Killed in the middle of an unmount: the next start finishes it.
    let mut d = Flistd::start(&w, Some("unmount:detached"));
    d.ready(&w).await;
    flist
        .mount("gone".into(), url.clone(), rw(32 * MIB))
        .await
        .unwrap();
    let mut call = tokio::spawn({
        let patient = patient.clone();
        async move { patient.unmount("gone".into()).await }
    });
    d.wait_for_line("failpoint unmount:detached reached", &mut call)
        .await;
    d.kill();
    call.abort();
    assert!(storage.volume_exists("gone".into()).await.unwrap());
    let mut d = Flistd::start(&w, None);
    d.ready(&w).await;
    assert!(!flist.exists("gone".into()).await.unwrap());
    assert!(!storage.volume_exists("gone".into()).await.unwrap());
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
    assert!(storage.volume_list().await.unwrap().is_empty());
    d.kill();
}
