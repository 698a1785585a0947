//! `zbus status [MODULE]`.

use std::process::ExitCode;
use std::time::Duration;

use zos_bus::{Client, Status};

fn status_json(module: &str, status: &Result<Status, String>) -> serde_json::Value {
    match status {
        Ok(s) => serde_json::json!({
            "module": module,
            "up": true,
            "objects": s.objects.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "workers": s.workers.iter().map(|w| serde_json::json!({
                "state": if w.action.is_empty() { "free" } else { "busy" },
                "action": w.action,
                "since": if w.start_time.is_zero() { serde_json::Value::Null } else { w.start_time.to_rfc3339().into() },
            })).collect::<Vec<_>>(),
            "expired": s.expired,
        }),
        Err(e) => serde_json::json!({ "module": module, "up": false, "error": e }),
    }
}

/// Run the subcommand.
pub async fn run(
    broker: &str,
    module: Option<&str>,
    json: bool,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let client = Client::connect(broker)?;
    match module {
        Some(module) => {
            let status = client
                .status(module, timeout.min(Duration::from_secs(3)))
                .await
                .map_err(|e| super::chain(&e));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status_json(module, &status))?
                );
            } else {
                match &status {
                    Ok(s) => {
                        println!("module {module}: up");
                        println!("objects:");
                        for o in &s.objects {
                            println!("  {o}");
                        }
                        println!("workers:");
                        for (i, w) in s.workers.iter().enumerate() {
                            if w.action.is_empty() {
                                println!("  {i:>3}  free");
                            } else {
                                println!(
                                    "  {i:>3}  busy since {}  {}",
                                    w.start_time.to_rfc3339(),
                                    w.action
                                );
                            }
                        }
                        if let Some(n) = s.expired.filter(|n| *n > 0) {
                            println!("requests dropped after their caller's deadline: {n}");
                        }
                    }
                    Err(e) => eprintln!("module {module}: {e}"),
                }
            }
            Ok(if status.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        None => {
            let mut modules: Vec<&str> = zos_api::contracts().iter().map(|c| c.module).collect();
            modules.sort_unstable();
            modules.dedup();
            let probes = modules.iter().map(|m| {
                let client = client.clone();
                let m = m.to_string();
                async move {
                    let status = client
                        .status(&m, timeout.min(Duration::from_secs(1)))
                        .await
                        .map_err(|e| super::chain(&e));
                    (m, status)
                }
            });
            let results = futures_join_all(probes).await;
            if json {
                let all: Vec<_> = results.iter().map(|(m, s)| status_json(m, s)).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!("{:<12} {:<6} {:<8} OBJECTS", "MODULE", "STATE", "WORKERS");
                for (m, s) in &results {
                    match s {
                        Ok(s) => {
                            let busy = s.workers.iter().filter(|w| !w.action.is_empty()).count();
                            let objects: Vec<String> =
                                s.objects.iter().map(ToString::to_string).collect();
                            println!(
                                "{m:<12} {:<6} {:<8} {}",
                                "up",
                                format!("{busy}/{}", s.workers.len()),
                                objects.join(" ")
                            );
                        }
                        Err(_) => println!("{m:<12} {:<6} {:<8} -", "down", "-"),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("status probe task"));
    }
    out
}
