//! One file per subcommand.

pub mod call;
pub mod list;
pub mod listen;
pub mod status;

use zos_api::contract::ObjectContract;
use zos_bus::ObjectId;

/// Resolve `name[@version]` of `module` against the contracts: the contract (if declared) and the object id.
pub fn resolve(module: &str, object: &str) -> anyhow::Result<(Option<ObjectContract>, ObjectId)> {
    let (name, version) = match object.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (object, None),
    };
    let contract = zos_api::find_contract(module, name, version);
    let id = match (&contract, version) {
        (_, Some(v)) => ObjectId::new(name, v),
        (Some(c), None) => c.object_id(),
        (None, None) => {
            let known: Vec<String> = zos_api::contracts()
                .iter()
                .filter(|c| c.module == module)
                .map(|c| c.object_id().to_string())
                .collect();
            if known.is_empty() {
                anyhow::bail!(
                    "unknown module {module:?} and no version given: use OBJECT@VERSION (see `zbus list`)"
                );
            }
            anyhow::bail!(
                "module {module} has no object {name:?}; it declares: {} (use OBJECT@VERSION for others)",
                known.join(", ")
            );
        }
    };
    Ok((contract, id))
}

/// Turn a bus error into the sentence an operator should read.
pub fn explain(e: zos_bus::Error) -> anyhow::Error {
    match e {
        zos_bus::Error::Protocol {
            queue,
            method,
            message,
        } if message == "not a function" => {
            anyhow::anyhow!("{queue} has no method {method:?} (the server says: not a function)")
        }
        zos_bus::Error::Call {
            message,
            kind: Some(kind),
        } => anyhow::anyhow!("remote error ({kind}): {message}"),
        zos_bus::Error::Call {
            message,
            kind: None,
        } => anyhow::anyhow!("remote error: {message}"),
        other => anyhow::Error::new(other),
    }
}

/// An error and its causes as one line, `a: b: c`, without repeating a cause its parent already printed.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
