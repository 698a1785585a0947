//! `zbus list [MODULE]`.

use std::process::ExitCode;

/// Run the subcommand.
pub fn run(module: Option<&str>) -> anyhow::Result<ExitCode> {
    let contracts: Vec<_> = zos_api::contracts()
        .into_iter()
        .filter(|c| module.is_none_or(|m| c.module == m))
        .collect();
    if contracts.is_empty() {
        anyhow::bail!(
            "no objects declared for module {:?}",
            module.unwrap_or_default()
        );
    }
    for c in contracts {
        println!("{} {}  — {}", c.module, c.object_id(), c.doc);
        for m in &c.methods {
            println!("    {:<60} {}", m.signature(), m.doc);
        }
        for s in &c.streams {
            println!(
                "    stream {:<53} {}",
                format!("{} -> {}", s.name, s.item),
                s.doc
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
