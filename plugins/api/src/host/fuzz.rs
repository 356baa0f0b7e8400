//! The ABI byte path under arbitrary bytes: what a host sends a plugin (a config, a
//! request) and what a plugin sends back (a status and a reply) never panic either
//! side; garbage is an error for that call.

use std::cell::RefCell;

use empathy_proto::v1::{EncodeInput, EncodeOutput, encode_input::Payload};
use proptest::prelude::*;

use super::*;
use crate::Plugin;

/// Answers each input with its length; refuses nothing.
struct Echo;

impl Plugin for Echo {
    fn create(_: &PluginConfig) -> Result<Self, PluginError> {
        Ok(Echo)
    }

    fn info(&self) -> Vec<ModalityInfo> {
        vec![ModalityInfo {
            modality: "echo".into(),
            ..ModalityInfo::default()
        }]
    }

    fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, PluginError> {
        let outputs = request.inputs.iter().map(|input| EncodeOutput {
            embedding: vec![match &input.payload {
                Some(Payload::Data(d)) => d.len() as f32,
                Some(Payload::Text(t)) => t.len() as f32,
                None => 0.0,
            }],
            ..EncodeOutput::default()
        });
        Ok(EncodeResponse {
            outputs: outputs.collect(),
            model: None,
        })
    }
}

static ECHO: PluginVTable = crate::plugin::vtable::<Echo>();

thread_local! {
    /// What the `lying` vtable's `encode` answers: a status and reply bytes.
    static LIE: RefCell<(i32, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

/// Echo's vtable, except that `encode` answers whatever `LIE` holds.
static LYING: PluginVTable = PluginVTable {
    encode: lying_encode,
    ..crate::plugin::vtable::<Echo>()
};

unsafe extern "C" fn lying_encode(
    _: *const std::ffi::c_void,
    _: BytesRef,
    out: *mut PluginBytes,
) -> i32 {
    let (status, bytes) = LIE.with(|lie| lie.borrow().clone());
    let len = bytes.len();
    let ptr = Box::into_raw(bytes.into_boxed_slice()).cast::<u8>();
    // SAFETY: the host passes a writable `PluginBytes`; the boxed slice is freed by
    // Echo's `free_bytes`, which takes exactly this shape.
    unsafe { out.write(PluginBytes { ptr, len }) };
    status
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

/// Calls a vtable function with `input` lent as bytes; returns its status and reply.
fn raw_call(input: &[u8], f: impl FnOnce(BytesRef, *mut PluginBytes) -> i32) -> (i32, Vec<u8>) {
    let reply = call(&ECHO, |out| f(lend(input), out));
    match reply {
        Ok(reply) => (abi::STATUS_OK, reply.bytes().to_vec()),
        Err(e) => (e.status(), e.message.into_bytes()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_plugin_takes_any_request_bytes(request in bytes()) {
        let plugin = LoadedPlugin::start(&ECHO, &PluginConfig::default(), "/fuzz".into(), "00".into())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        // SAFETY: the instance lives as long as `plugin`; the request outlives the call.
        let (status, reply) = raw_call(&request, |req, out| unsafe {
            (ECHO.encode)(plugin.instance.as_ptr().cast_const(), req, out)
        });
        match status {
            abi::STATUS_OK => {
                let response = EncodeResponse::decode(&reply[..]);
                prop_assert!(response.is_ok(), "an OK reply decodes");
            }
            other => prop_assert_eq!(other, abi::STATUS_INVALID_INPUT),
        }
    }

    #[test]
    fn a_plugin_takes_any_config_bytes(config in bytes()) {
        let mut instance = std::ptr::null_mut();
        // SAFETY: `config` outlives the call; `instance` and `out` are writable.
        let (status, _) = raw_call(&config, |cfg, out| unsafe {
            (ECHO.create)(cfg, &mut instance, out)
        });
        if status == abi::STATUS_OK {
            prop_assert!(!instance.is_null());
            // SAFETY: created just above by this vtable, destroyed once.
            prop_assert_eq!(unsafe { (ECHO.destroy)(instance) }, abi::STATUS_OK);
        } else {
            prop_assert!(instance.is_null());
        }
    }

    #[test]
    fn a_host_takes_any_reply(status in any::<i32>(), reply in bytes(), n in 1usize..4) {
        LIE.with(|lie| *lie.borrow_mut() = (status, reply));
        let plugin = LoadedPlugin::start(&LYING, &PluginConfig::default(), "/fuzz".into(), "00".into())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let request = EncodeRequest {
            modality: "echo".into(),
            inputs: vec![EncodeInput::default(); n],
            language: String::new(),
        };
        if let Ok(response) = plugin.encode(&request) {
            prop_assert_eq!(status, abi::STATUS_OK);
            prop_assert_eq!(response.outputs.len(), n, "one output per input, or an error");
        }
    }
}
