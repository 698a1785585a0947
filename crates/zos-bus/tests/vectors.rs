//! The byte vectors of `../shared/spec/zbus.md` §A.7, produced by the real Go zbus v1.0.1 code path, reproduced
//! by our envelope encoder (and decoded back).

use serde_bytes::ByteBuf;
use zos_bus::codec;
use zos_bus::wire::{
    CallError, ObjectId, Output, Request, Response, Status, WorkerState, WorkerStatus,
};
use zos_types::msgpack::{from_slice, to_vec};
use zos_types::{GoDuration, GoTime};

const ID: &str = "00000000-0000-0000-0000-000000000001";

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn id_hex() -> String {
    format!("d924{}", hex::encode(ID))
}

fn obj_hex() -> &'static str {
    "a64f626a656374 82 a44e616d65 aa63616c63756c61746f72 a756657273696f6e a3312e30"
}

fn request_hex(inputs: &str, method: &str) -> Vec<u8> {
    h(&format!(
        "85 a24944 {id} a6496e70757473 {inputs} {obj} a75265706c79546f {id} a64d6574686f64 {method}",
        id = id_hex(),
        obj = obj_hex()
    ))
}

fn response_hex(data: &str, callerr: &str, protoerr: &str) -> Vec<u8> {
    h(&format!(
        "83 a24944 {id} a64f7574707574 82 a444617461 {data} a54572726f72 {callerr} a54572726f72 {protoerr}",
        id = id_hex()
    ))
}

fn request(inputs: Vec<Vec<u8>>, method: &str) -> Request {
    Request {
        id: ID.into(),
        inputs: inputs.into_iter().map(ByteBuf::from).collect(),
        object: ObjectId::new("calculator", "1.0"),
        reply_to: ID.into(),
        method: method.into(),
        deadline: None,
    }
}

fn response(output: Result<Output, String>) -> Response {
    match output {
        Ok(output) => Response {
            id: ID.into(),
            output,
            error: None,
        },
        Err(e) => Response {
            id: ID.into(),
            output: Output::default(),
            error: Some(e),
        },
    }
}

fn arg<T: serde::Serialize>(v: T) -> Vec<u8> {
    to_vec(&v).unwrap()
}

/// Encode, compare with Go's bytes, and decode Go's bytes back to the same value.
fn check_request(req: Request, go: Vec<u8>) {
    assert_eq!(hex::encode(to_vec(&req).unwrap()), hex::encode(&go));
    let back: Request = from_slice(&go).unwrap();
    assert_eq!(back.inputs, req.inputs);
    assert_eq!(back.method, req.method);
    assert_eq!(back.object, req.object);
}

fn check_response(resp: Response, go: Vec<u8>) {
    assert_eq!(hex::encode(to_vec(&resp).unwrap()), hex::encode(&go));
    let back: Response = from_slice(&go).unwrap();
    assert_eq!(back.output, resp.output);
    assert_eq!(back.error, resp.error);
}

const ADD_INPUTS: &str = "92 c409cb3ff0000000000000 c409cb4000000000000000";

#[test]
fn add_request_and_reply() {
    check_request(
        request(vec![arg(1.0f64), arg(2.0f64)], "Add"),
        request_hex(ADD_INPUTS, "a3416464"),
    );
    check_response(
        response(codec::value_output(Ok(3.0f64))),
        response_hex("c409cb4008000000000000", "c0", "c0"),
    );
}

#[test]
fn add_sub_returns_an_array() {
    check_response(
        response(codec::value_output(Ok((3.0f64, -1.0f64)))),
        response_hex("c413 92 cb4008000000000000 cbbff0000000000000", "c0", "c0"),
    );
}

#[test]
fn divide_error_keeps_the_zero_value_in_data() {
    check_request(
        request(vec![arg(1.0f64), arg(0.0f64)], "Divide"),
        request_hex(
            "92 c409cb3ff0000000000000 c409cb0000000000000000",
            "a6446976696465",
        ),
    );
    check_response(
        response(codec::value_output::<f64>(Err(CallError::msg(
            "division by zero",
        )))),
        response_hex(
            "c409cb0000000000000000",
            &format!("81 a74d657373616765 b0{}", hex::encode("division by zero")),
            "c0",
        ),
    );
}

#[test]
fn avg_takes_a_slice() {
    check_request(
        request(vec![arg(vec![10.0f64, 10.0, 10.0])], "Avg"),
        request_hex(
            "91 c41c 93 cb4024000000000000 cb4024000000000000 cb4024000000000000",
            "a3417667",
        ),
    );
    let go = from_slice::<Request>(&request_hex(
        "91 c41c 93 cb4024000000000000 cb4024000000000000 cb4024000000000000",
        "a3417667",
    ))
    .unwrap();
    let v: Vec<f64> = codec::decode_arg(&go.inputs, 0, "[]float64").unwrap();
    assert_eq!(v, vec![10.0, 10.0, 10.0]);
    check_response(
        response(codec::value_output(Ok(1.0f64))),
        response_hex("c409cb3ff0000000000000", "c0", "c0"),
    );
}

#[test]
fn sleep_returns_only_an_error_so_data_is_nil() {
    check_request(
        request(
            vec![arg(GoDuration::from(std::time::Duration::from_secs(1)))],
            "Sleep",
        ),
        request_hex("91 c409 d3000000003b9aca00", "a5536c656570"),
    );
    check_response(
        response(codec::unit_output(Ok(()))),
        response_hex("c0", "c0", "c0"),
    );
}

#[test]
fn fail_returns_a_call_error() {
    check_request(request(vec![], "Fail"), request_hex("90", "a44661696c"));
    check_response(
        response(codec::unit_output(Err(CallError::msg("boom")))),
        response_hex("c0", "81 a74d657373616765 a4626f6f6d", "c0"),
    );
}

#[test]
fn bytes_are_bin() {
    check_response(
        response(codec::value_output(Ok(zos_types::Bytes(vec![1, 2])))),
        response_hex("c404c4020102", "c0", "c0"),
    );
}

#[test]
fn protocol_errors() {
    check_response(
        response(Err(codec::unknown_method("Nope"))),
        response_hex("c0", "c0", &format!("ae{}", hex::encode("not a function"))),
    );
    // Add(1): wrong argument count, Go's exact message.
    let go = from_slice::<Request>(&request_hex("91 c409d30000000000000001", "a3416464")).unwrap();
    let err = codec::check_arg_count(&go.inputs, 2, false).unwrap_err();
    check_response(
        response(Err(err)),
        response_hex(
            "c0",
            "c0",
            &format!(
                "d92d{}",
                hex::encode("invalid number of arguments expecting 2 got 1")
            ),
        ),
    );
    // Add("x", 2.0): a type error names the argument position, as Go does.
    let go = from_slice::<Request>(&request_hex(
        "92 c402a178 c409cb4000000000000000",
        "a3416464",
    ))
    .unwrap();
    let err = codec::decode_arg::<f64>(&go.inputs, 0, "float64").unwrap_err();
    assert!(
        err.starts_with("invalid argument type [0] expecting float64 got"),
        "{err}"
    );
    // The Go response carrying that error decodes.
    let go_resp = response_hex(
        "c0",
        "c0",
        &format!(
            "d92f{}",
            hex::encode("invalid argument type [0] expecting float64 got")
        ),
    );
    let back: Response = from_slice(&go_resp).unwrap();
    assert_eq!(
        back.error.as_deref(),
        Some("invalid argument type [0] expecting float64 got")
    );
    assert_eq!(back.output.data, None);
}

#[test]
fn go_int_arguments_decode_into_float_parameters() {
    let go = from_slice::<Request>(&request_hex(
        "92 c409d30000000000000001 c409d30000000000000002",
        "a3416464",
    ))
    .unwrap();
    let a: f64 = codec::decode_arg(&go.inputs, 0, "float64").unwrap();
    let b: f64 = codec::decode_arg(&go.inputs, 1, "float64").unwrap();
    assert_eq!(a + b, 3.0);
}

#[test]
fn deadline_is_an_extra_key_go_ignores() {
    let mut req = request(vec![], "Fail");
    req.deadline = Some(GoTime::from_unix(1_700_000_000, 0));
    let bytes = to_vec(&req).unwrap();
    // Six keys instead of five, and the Go prefix is unchanged.
    assert_eq!(bytes[0], 0x86);
    let back: Request = from_slice(&bytes).unwrap();
    assert_eq!(back.deadline, req.deadline);
}

#[test]
fn status_payload_shape() {
    let status = Status {
        objects: vec![ObjectId::new("calculator", "1.0")],
        workers: vec![WorkerStatus {
            state: WorkerState::Free,
            start_time: GoTime::default(),
            action: String::new(),
        }],
        expired: None,
    };
    let bytes = to_vec(&status).unwrap();
    let expect = format!(
        "82 a74f626a65637473 91 82 a44e616d65 aa63616c63756c61746f72 a756657273696f6e a3312e30 \
         a7576f726b657273 91 83 a55374617465 a466726565 a9{start} c70cff00000000fffffff1886e0900 a6416374696f6e a0",
        start = hex::encode("StartTime")
    );
    assert_eq!(hex::encode(&bytes), hex::encode(h(&expect)));
    let back: Status = from_slice(&bytes).unwrap();
    assert_eq!(back.workers[0].state, WorkerState::Free);
}
