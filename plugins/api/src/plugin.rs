//! The author side: the safe [`Plugin`] trait, [`export_plugin!`], and the `extern "C"`
//! glue that the macro wires into a vtable.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use empathy_proto::v1::{EncodeRequest, EncodeResponse, EncoderInfo, ModalityInfo, PluginConfig};
use prost::Message;

use crate::PluginError;
use crate::abi::{self, BytesRef, PluginBytes, PluginVTable};

/// A modality encoder. Implement it, then call [`export_plugin!`](crate::export_plugin) once in the crate
/// root of a `cdylib`; no `unsafe` needed.
pub trait Plugin: Send + Sync + Sized + 'static {
    /// Called once by the host when it loads the library.
    fn create(config: &PluginConfig) -> Result<Self, PluginError>;
    /// The modalities this plugin serves (usually one).
    fn info(&self) -> Vec<ModalityInfo>;
    /// One output per input, in order. May be called from several threads at once.
    fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, PluginError>;
}

/// Exports a [`Plugin`] type as this library's entry point:
/// `empathy_plugin_api::export_plugin!(MyEncoder);`
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        /// The entry point the empathy encoder looks up in this library.
        #[unsafe(no_mangle)]
        pub extern "C" fn empathy_plugin_entry() -> *const $crate::abi::VTableHeader {
            static VTABLE: $crate::abi::PluginVTable = $crate::__private::vtable::<$ty>();
            // A pointer to the whole vtable, typed as its header (see `abi::EntryFn`).
            (&raw const VTABLE).cast()
        }
    };
}

/// The vtable for `P`; a `const fn` so that the macro can put it in a `static`.
pub const fn vtable<P: Plugin>() -> PluginVTable {
    PluginVTable {
        header: abi::current_header(),
        create: create::<P>,
        info: info::<P>,
        encode: encode::<P>,
        destroy: destroy::<P>,
        free_bytes,
    }
}

unsafe extern "C" fn create<P: Plugin>(
    config: BytesRef,
    instance: *mut *mut c_void,
    out: *mut PluginBytes,
) -> i32 {
    reply(out, || {
        // SAFETY: the host lends `config` for the length of this call.
        let config = PluginConfig::decode(unsafe { borrow(config) }).map_err(|e| {
            PluginError::internal(format!(
                "the host sent a PluginConfig that does not decode: {e}"
            ))
        })?;
        let plugin = Box::new(P::create(&config)?);
        // SAFETY: the host passes a writable pointer; it owns the instance from here on
        // and hands it back to `destroy::<P>`.
        unsafe { instance.write(Box::into_raw(plugin).cast()) };
        Ok(Vec::new())
    })
}

unsafe extern "C" fn info<P: Plugin>(instance: *const c_void, out: *mut PluginBytes) -> i32 {
    reply(out, || {
        // SAFETY: `instance` came from `create::<P>` and lives until `destroy::<P>`.
        let plugin = unsafe { &*instance.cast::<P>() };
        let info = EncoderInfo {
            modalities: plugin.info(),
            ..EncoderInfo::default()
        };
        Ok(info.encode_to_vec())
    })
}

unsafe extern "C" fn encode<P: Plugin>(
    instance: *const c_void,
    request: BytesRef,
    out: *mut PluginBytes,
) -> i32 {
    reply(out, || {
        // SAFETY: as in `info::<P>`; `P: Sync` makes concurrent shared use sound.
        let plugin = unsafe { &*instance.cast::<P>() };
        // SAFETY: the host lends `request` for the length of this call.
        let request = EncodeRequest::decode(unsafe { borrow(request) }).map_err(|e| {
            PluginError::invalid_input(format!("the request is not a valid EncodeRequest: {e}"))
        })?;
        Ok(plugin.encode(request)?.encode_to_vec())
    })
}

unsafe extern "C" fn destroy<P: Plugin>(instance: *mut c_void) -> i32 {
    // SAFETY: `instance` came from `Box::into_raw` in `create::<P>`; the host destroys it
    // once, with no call in flight.
    let plugin = unsafe { Box::from_raw(instance.cast::<P>()) };
    match catch_unwind(AssertUnwindSafe(|| drop(plugin))) {
        Ok(()) => abi::STATUS_OK,
        Err(_) => abi::STATUS_INTERNAL,
    }
}

// Freeing a boxed byte slice cannot unwind (allocation failures abort), so this is the
// one exported function without `catch_unwind`.
unsafe extern "C" fn free_bytes(bytes: PluginBytes) {
    if bytes.ptr.is_null() {
        return;
    }
    let slice = std::ptr::slice_from_raw_parts_mut(bytes.ptr, bytes.len);
    // SAFETY: non-null `PluginBytes` only come from `into_plugin_bytes` in this library,
    // and the host frees each once.
    drop(unsafe { Box::from_raw(slice) });
}

/// Runs one exported call: a panic becomes an internal error, and the reply (on success)
/// or the error message goes to `out` in memory this library owns.
fn reply(out: *mut PluginBytes, call: impl FnOnce() -> Result<Vec<u8>, PluginError>) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(call))
        .unwrap_or_else(|payload| Err(PluginError::from_panic(&*payload)));
    let (status, bytes) = match result {
        Ok(bytes) => (abi::STATUS_OK, bytes),
        Err(err) => (err.status(), err.message.into_bytes()),
    };
    if out.is_null() {
        return abi::STATUS_INTERNAL;
    }
    // SAFETY: `out` is non-null and the host passes a writable `PluginBytes`.
    unsafe { out.write(into_plugin_bytes(bytes)) };
    status
}

fn into_plugin_bytes(bytes: Vec<u8>) -> PluginBytes {
    let len = bytes.len();
    let ptr = Box::into_raw(bytes.into_boxed_slice()).cast::<u8>();
    PluginBytes { ptr, len }
}

/// # Safety
/// `bytes` must be null or valid for reads of `len` bytes while the result is used.
unsafe fn borrow<'a>(bytes: BytesRef) -> &'a [u8] {
    if bytes.ptr.is_null() || bytes.len == 0 {
        return &[];
    }
    // SAFETY: non-null, and the caller guarantees `len` readable bytes.
    unsafe { std::slice::from_raw_parts(bytes.ptr, bytes.len) }
}
