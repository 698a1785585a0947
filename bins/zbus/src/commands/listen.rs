//! `zbus listen MODULE OBJECT[@VERSION] STREAM`.

use std::process::ExitCode;

use zos_bus::Client;

/// Run the subcommand.
pub async fn run(
    broker: &str,
    module: &str,
    object: &str,
    stream: &str,
    count: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let (contract, id) = super::resolve(module, object)?;
    let decode = match contract.as_ref() {
        Some(c) => {
            let s = c.stream(stream).ok_or_else(|| {
                let names: Vec<&str> = c.streams.iter().map(|s| s.name).collect();
                anyhow::anyhow!(
                    "{module}.{id} has no stream {stream:?}; it has: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            })?;
            Some(s.decode_json)
        }
        None => None,
    };
    let client = Client::connect(broker)?;
    let mut sub = client
        .subscribe_stream::<serde_json::Value>(module, &id, stream)
        .await?;
    eprintln!("listening on {} (Ctrl-C to stop)", sub.channel());
    let mut seen = 0u64;
    while let Some(raw) = sub.recv_raw().await {
        let value = match decode {
            Some(f) => f(&raw).unwrap_or_else(|e| serde_json::json!({ "undecodable": e })),
            None => super::call::generic_json(Some(&raw)),
        };
        println!("{}", serde_json::to_string(&value)?);
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
