//! `cargo xtask bench flist`: pack throughput and mounted-flist read throughput against the local disk.

/// Run the flist benchmark.
pub fn run() -> anyhow::Result<()> {
    anyhow::bail!("the flist benchmark is not written yet")
}
