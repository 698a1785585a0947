//! `zbus call MODULE OBJECT[@VERSION] METHOD [ARG…]`.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use zos_bus::{CallOptions, Client};

/// A command-line argument as JSON; a word that does not parse as JSON is a string.
pub fn parse_arg(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Decode msgpack into JSON without a contract (maps, arrays, numbers, strings; bytes as arrays).
pub fn generic_json(data: Option<&[u8]>) -> Value {
    match data {
        None => Value::Null,
        Some(bytes) => rmp_serde::from_slice::<Value>(bytes)
            .unwrap_or_else(|_| Value::String(format!("msgpack:{}", hex::encode(bytes)))),
    }
}

/// Run the subcommand.
pub async fn run(
    broker: &str,
    module: &str,
    object: &str,
    method: &str,
    args: &[String],
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let (contract, id) = super::resolve(module, object)?;
    let values: Vec<Value> = args.iter().map(|a| parse_arg(a)).collect();
    let client = Client::connect(broker)?;
    let opts = CallOptions::timeout(timeout);
    let result = match contract.as_ref() {
        Some(c) => {
            let m = c.method(method).ok_or_else(|| {
                let names: Vec<&str> = c.methods.iter().map(|m| m.name).collect();
                anyhow::anyhow!(
                    "{module}.{id} has no method {method:?}; it has: {}",
                    names.join(", ")
                )
            })?;
            let inputs = (m.encode_json_args)(&values).map_err(|e| {
                anyhow::anyhow!("{e}\nusage: zbus call {module} {id} {}", m.signature())
            })?;
            let output = client
                .request(module, &id, method, inputs, opts)
                .await
                .map_err(super::explain)?;
            (m.decode_json_output)(&output).map_err(super::explain)?
        }
        None => {
            let inputs = values
                .iter()
                .map(|v| {
                    zos_types::msgpack::to_vec(v).map_err(|e| anyhow::anyhow!("encoding {v}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let output = client
                .request(module, &id, method, inputs, opts)
                .await
                .map_err(super::explain)?;
            if let Some(e) = output.error {
                return Err(super::explain(zos_bus::Error::Call {
                    message: e.message,
                    kind: e.kind,
                }));
            }
            generic_json(output.data.as_ref().map(|d| d.as_slice()))
        }
    };
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(ExitCode::SUCCESS)
}
