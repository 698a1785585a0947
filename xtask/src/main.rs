//! Developer tasks, one entry point: `cargo xtask <task>`.
//!
//! - `cargo xtask test`: install what the tests need (Debian packages, cargo-nextest), then run every test of
//!   the workspace plus the formatting check. `.ci/run` calls exactly this.
//! - `cargo xtask node up|down|status|logs|shell`: the sandbox node (see `node.rs`).
//! - `cargo xtask bench bus|flist`: benchmarks that print ratios against a baseline measured in the same run.

use std::process::ExitCode;

mod node;
mod prereq;
mod sh;

const USAGE: &str = "\
usage: cargo xtask <task>

  test [-- <nextest args>]    install prerequisites, run all tests (what CI runs)
  node up [--name N] [--no-registrar]
                              boot a sandbox node (namespaces, our zinit as PID 1, loop disks,
                              a host-side registrar and hub); prints how to inspect it
  node down [--name N]        stop it and remove everything it made
  node status|logs|shell [--name N]
  node exec [--name N] -- CMD run a command inside the node
  node reboot [--name N]      power-cycle the node (its disks, identity and registrar stay)
  node registrar stop|start   stop or start the host-side registrar
  node publish DIR REPO/NAME.fl
                              pack DIR into the node's hub and print the flist's URL
  bench bus [--quick]         bus round trip vs the raw Redis floor
  bench flist                 flist pack/mount throughput vs the local disk
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("node") => node::main(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("-h") | Some("--help") | Some("help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown task {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask test`.
fn test(extra: &[String]) -> anyhow::Result<()> {
    prereq::ensure_root_for("the test suite (loop devices, namespaces, mounts)")?;
    prereq::ensure_packages(prereq::TEST_PACKAGES)?;
    prereq::ensure_nextest()?;
    let root = sh::workspace_root()?;
    sh::run(
        sh::cargo()
            .args(["fmt", "--all", "--", "--check"])
            .current_dir(&root),
    )
    .map_err(|e| anyhow::anyhow!("{e:#}\nformatting differs: run `cargo fmt --all`"))?;
    let mut nextest = sh::cargo();
    nextest
        .args(["nextest", "run", "--workspace", "--no-fail-fast"])
        .args(extra)
        .current_dir(&root);
    sh::run(&mut nextest)?;
    sh::run(
        sh::cargo()
            .args(["test", "--workspace", "--doc"])
            .current_dir(&root),
    )?;
    println!("all tests passed");
    Ok(())
}

/// `cargo xtask bench <what>`.
fn bench(args: &[String]) -> anyhow::Result<()> {
    let what = args
        .first()
        .map(String::as_str)
        .ok_or_else(|| anyhow::anyhow!("bench what? bus or flist\n\n{USAGE}"))?;
    if !["bus", "flist"].contains(&what) {
        anyhow::bail!("unknown benchmark {what:?} (bus or flist)");
    }
    prereq::ensure_packages(prereq::TEST_PACKAGES)?;
    let root = sh::workspace_root()?;
    let mut cmd = sh::cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "zos-bench", "--"])
        .args(args)
        .current_dir(&root);
    sh::run(&mut cmd)
}
