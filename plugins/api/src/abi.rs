//! The raw C ABI between the encoder host and a plugin library.
//!
//! Plugin authors never use this module: [`export_plugin!`](crate::export_plugin) builds
//! the vtable and [`host`](crate::host) reads it. It is public so that a test fixture can
//! hand-build a wrong vtable, and so that the contract is written down in one place.
//!
//! Rules of the boundary:
//! - Only plain data crosses: integers, byte slices and function pointers. Messages are
//!   protobuf bytes of `empathy.v1` types, never Rust structs, so the two sides need not
//!   share a compiler version or an allocator.
//! - The side that allocates frees: the host owns [`BytesRef`] inputs for the length of
//!   one call; the plugin allocates every [`PluginBytes`] it returns and the host hands
//!   them back to [`PluginVTable::free_bytes`].
//! - Every function returns a status ([`STATUS_OK`] or an error code) instead of
//!   unwinding: a panic must never cross an `extern "C"` frame.

use std::ffi::c_void;

/// The version of this ABI. Bump it on any change to the types in this module; the host
/// refuses a plugin built for another version.
pub const ABI_VERSION: u32 = 1;

/// The one symbol a plugin library exports (an [`EntryFn`]).
pub const ENTRY_SYMBOL: &str = "empathy_plugin_entry";

/// The entry symbol's type. It returns a pointer to a static [`PluginVTable`], typed as
/// its header so that the host reads nothing else before it has checked the version.
pub type EntryFn = unsafe extern "C" fn() -> *const VTableHeader;

// Status codes. Plain integers, not a Rust enum: an enum holding a value it does not
// declare (a newer plugin's code) would be undefined behaviour.
pub const STATUS_OK: i32 = 0;
pub const STATUS_INVALID_INPUT: i32 = 1;
pub const STATUS_RESOURCE_EXHAUSTED: i32 = 2;
pub const STATUS_UNAVAILABLE: i32 = 3;
pub const STATUS_INTERNAL: i32 = 4;

/// The start of every vtable, of every ABI version: what the host checks first.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VTableHeader {
    pub abi_version: u32,
    /// `size_of` the whole vtable, in bytes, as the plugin was compiled.
    pub size: u32,
}

/// Bytes the host owns and lends to the plugin for the length of one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BytesRef {
    pub ptr: *const u8,
    pub len: usize,
}

/// Bytes the plugin allocated and returned; only the plugin's `free_bytes` may free them.
#[repr(C)]
#[derive(Debug)]
pub struct PluginBytes {
    pub ptr: *mut u8,
    pub len: usize,
}

impl PluginBytes {
    pub const EMPTY: PluginBytes = PluginBytes {
        ptr: std::ptr::null_mut(),
        len: 0,
    };
}

/// The functions a plugin exports, version [`ABI_VERSION`].
///
/// Each call that returns `i32` writes to `out`: on [`STATUS_OK`] the reply (if any), on
/// an error code a UTF-8 message. `instance` is the pointer `create` produced; it is
/// shared by concurrent `info`/`encode` calls and passed to `destroy` exactly once.
#[repr(C)]
pub struct PluginVTable {
    pub header: VTableHeader,
    /// `config`: a `PluginConfig`. Writes the new instance to `instance`.
    pub create: unsafe extern "C" fn(
        config: BytesRef,
        instance: *mut *mut c_void,
        out: *mut PluginBytes,
    ) -> i32,
    /// Replies with an `EncoderInfo`.
    pub info: unsafe extern "C" fn(instance: *const c_void, out: *mut PluginBytes) -> i32,
    /// `request`: an `EncodeRequest`; replies with an `EncodeResponse`.
    pub encode: unsafe extern "C" fn(
        instance: *const c_void,
        request: BytesRef,
        out: *mut PluginBytes,
    ) -> i32,
    /// Drops the instance; returns [`STATUS_INTERNAL`] if its `Drop` panicked.
    pub destroy: unsafe extern "C" fn(instance: *mut c_void) -> i32,
    /// Frees bytes this plugin returned.
    pub free_bytes: unsafe extern "C" fn(bytes: PluginBytes),
}

/// The header a correct vtable of this version carries.
pub const fn current_header() -> VTableHeader {
    VTableHeader {
        abi_version: ABI_VERSION,
        // A vtable is a handful of pointers; it cannot overflow u32.
        size: size_of::<PluginVTable>() as u32,
    }
}
