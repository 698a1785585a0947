//! Helpers the generated contract code (and hand-written objects) use to decode arguments and encode results
//! with Go's conventions.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use zos_types::msgpack;

use crate::wire::{CallError, Output};

/// Check the argument count: exactly `fixed`, or at least `fixed` for a variadic method. The message is Go's.
pub fn check_arg_count(inputs: &[ByteBuf], fixed: usize, variadic: bool) -> Result<(), String> {
    let got = inputs.len();
    if got == fixed || (variadic && got > fixed) {
        Ok(())
    } else {
        Err(format!(
            "invalid number of arguments expecting {fixed} got {got}"
        ))
    }
}

/// Decode argument `index` as `T`; the message names the position and the expected type, as Go's does.
pub fn decode_arg<T: DeserializeOwned>(
    inputs: &[ByteBuf],
    index: usize,
    type_name: &str,
) -> Result<T, String> {
    let raw = inputs
        .get(index)
        .ok_or_else(|| format!("no argument found at index {index}"))?;
    msgpack::from_slice(raw)
        .map_err(|e| format!("invalid argument type [{index}] expecting {type_name} got: {e}"))
}

/// Decode the variadic tail starting at `from`.
pub fn decode_rest<T: DeserializeOwned>(
    inputs: &[ByteBuf],
    from: usize,
    type_name: &str,
) -> Result<Vec<T>, String> {
    (from..inputs.len())
        .map(|i| decode_arg(inputs, i, type_name))
        .collect()
}

/// The output of a method that returns a value (Go `(T, error)`).
///
/// On error the data still holds `T`'s zero value, as Go sends it, so Go stubs can decode it.
pub fn value_output<T: Serialize + Default>(
    result: Result<T, CallError>,
) -> Result<Output, String> {
    let (value, error) = match result {
        Ok(v) => (v, None),
        Err(e) => (T::default(), Some(e)),
    };
    let data = msgpack::to_vec(&value).map_err(|e| format!("encoding the result: {e}"))?;
    Ok(Output {
        data: Some(ByteBuf::from(data)),
        error,
    })
}

/// The output of a method that returns only an error (Go `error`): `Data` is nil.
pub fn unit_output(result: Result<(), CallError>) -> Result<Output, String> {
    Ok(Output {
        data: None,
        error: result.err(),
    })
}

/// The Go protocol error for an unknown method.
pub fn unknown_method(_method: &str) -> String {
    "not a function".to_string()
}
