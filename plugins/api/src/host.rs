//! The host side: loads a plugin library, checks it, and calls it safely.

mod allow_list;
mod load_error;

use std::ffi::c_void;
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use empathy_proto::v1::{EncodeRequest, EncodeResponse, EncoderInfo, ModalityInfo, PluginConfig};
use libloading::Library;
use prost::Message;

pub use allow_list::{AllowList, sha256_hex};
pub use load_error::LoadError;

use crate::PluginError;
use crate::abi::{self, BytesRef, EntryFn, PluginBytes, PluginVTable, VTableHeader};

/// A loaded, started plugin. Calls may come from many threads at once.
pub struct LoadedPlugin {
    vtable: &'static PluginVTable,
    instance: NonNull<c_void>,
    info: Vec<ModalityInfo>,
    path: PathBuf,
    sha256: String,
}

// SAFETY: the instance is a `Box<P>` with `P: Plugin: Send + Sync` (the bound on
// `export_plugin!`), and the vtable is immutable static data of a never-unloaded library.
unsafe impl Send for LoadedPlugin {}
// SAFETY: as above; `info` and `encode` take the instance by shared reference only.
unsafe impl Sync for LoadedPlugin {}

impl LoadedPlugin {
    /// Hash (check allow-list), dlopen, find entry symbol, check ABI version and vtable
    /// size, call create(config), call info and cache it.
    pub fn load(
        path: &Path,
        config: &PluginConfig,
        allow: Option<&AllowList>,
    ) -> Result<LoadedPlugin, LoadError> {
        // Hash and open the resolved file: dlopen searches the library path for a bare
        // name and could open a different file from the one hashed. (A file replaced
        // between hashing and opening is not caught; keep plugin directories writable only
        // by their owner.) Messages name `path` as the caller gave it.
        let read_error = |error| LoadError::Read {
            path: path.to_owned(),
            error,
        };
        let file = std::fs::canonicalize(path).map_err(read_error)?;
        let digest = allow_list::sha256_file(&file).map_err(read_error)?;
        let sha256 = hex::encode(digest);
        if allow.is_some_and(|list| !list.allows(&digest)) {
            return Err(LoadError::NotAllowed {
                path: path.to_owned(),
                sha256,
            });
        }
        let vtable = open(&file, path)?;
        Self::start(vtable, config, path.to_owned(), sha256)
    }

    /// Creates the instance and caches its info; split from `load` so that unit tests can
    /// drive an in-process vtable.
    fn start(
        vtable: &'static PluginVTable,
        config: &PluginConfig,
        path: PathBuf,
        sha256: String,
    ) -> Result<LoadedPlugin, LoadError> {
        let config = config.encode_to_vec();
        let mut instance = std::ptr::null_mut();
        // SAFETY: `config` outlives the call, `instance` and `out` are writable.
        let created = call(vtable, |out| unsafe {
            (vtable.create)(lend(&config), &mut instance, out)
        });
        let created = created.and_then(|_| {
            NonNull::new(instance)
                .ok_or_else(|| PluginError::internal("create succeeded but returned no instance"))
        });
        let instance = match created {
            Ok(instance) => instance,
            Err(error) => return Err(LoadError::Create { path, error }),
        };
        // From here on, dropping `plugin` destroys the instance.
        let mut plugin = LoadedPlugin {
            vtable,
            instance,
            info: Vec::new(),
            path,
            sha256,
        };
        match plugin.fetch_info() {
            Ok(info) => plugin.info = info,
            Err(error) => {
                let path = plugin.path.clone();
                return Err(LoadError::Info { path, error });
            }
        }
        Ok(plugin)
    }

    /// The modalities this plugin serves, as it described them at load time.
    pub fn info(&self) -> &[ModalityInfo] {
        &self.info
    }

    /// Encodes one request; a failure (or a panic) in the plugin is an error for this
    /// request only.
    pub fn encode(&self, request: &EncodeRequest) -> Result<EncodeResponse, PluginError> {
        let bytes = request.encode_to_vec();
        // SAFETY: the instance lives as long as `self`; `bytes` outlives the call.
        let reply = call(self.vtable, |out| unsafe {
            (self.vtable.encode)(self.instance.as_ptr().cast_const(), lend(&bytes), out)
        })?;
        let response = EncodeResponse::decode(reply.bytes())
            .map_err(|e| self.broken(format!("its reply is not a valid EncodeResponse: {e}")))?;
        // The contract callers rely on: one output per input, in order.
        if response.outputs.len() != request.inputs.len() {
            return Err(self.broken(format!(
                "it returned {} outputs for {} inputs",
                response.outputs.len(),
                request.inputs.len()
            )));
        }
        Ok(response)
    }

    /// The file's path, as given to [`load`](Self::load).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's sha256 digest, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    fn fetch_info(&self) -> Result<Vec<ModalityInfo>, PluginError> {
        // SAFETY: the instance lives as long as `self`; `out` is writable.
        let reply = call(self.vtable, |out| unsafe {
            (self.vtable.info)(self.instance.as_ptr().cast_const(), out)
        })?;
        let info = EncoderInfo::decode(reply.bytes())
            .map_err(|e| self.broken(format!("its info is not a valid EncoderInfo: {e}")))?;
        if info.modalities.is_empty() {
            return Err(self.broken("it serves no modality".into()));
        }
        let file = self.path.file_name().unwrap_or_default().to_string_lossy();
        Ok(info
            .modalities
            .into_iter()
            .map(|mut modality| {
                // Operators want to know which file serves a modality.
                if modality.plugin.is_empty() {
                    modality.plugin = file.to_string();
                }
                modality
            })
            .collect())
    }

    /// An error for a plugin that broke the contract (not the caller's fault).
    fn broken(&self, what: String) -> PluginError {
        PluginError::internal(format!("plugin {} is broken: {what}", self.path.display()))
    }
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        // SAFETY: the instance came from this vtable's `create`; `&mut self` means no call
        // is in flight, and it is destroyed only here.
        let status = unsafe { (self.vtable.destroy)(self.instance.as_ptr()) };
        if status != abi::STATUS_OK {
            tracing::warn!(plugin = %self.path.display(), "plugin panicked while shutting down");
        }
    }
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// "libempathy_plugin_text.so" on Linux, ".dylib" on macOS, "empathy_plugin_text.dll" on Windows.
pub fn library_file_name(crate_name: &str) -> String {
    let lib_name = crate_name.replace('-', "_");
    format!(
        "{}{lib_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Opens `file` and returns its checked vtable; errors name `path`, the caller's name for it.
fn open(file: &Path, path: &Path) -> Result<&'static PluginVTable, LoadError> {
    // SAFETY: loading a library runs its initialisers; that trust is what the allow-list
    // guards, and cannot be checked from here.
    let library = unsafe { Library::new(file) }.map_err(|error| LoadError::Open {
        path: path.to_owned(),
        error,
    })?;
    // Never unloaded, even if the checks below fail: a library may have started threads
    // or registered thread-local destructors that point into its code, and the vtable
    // handed out below is `'static`.
    let library: &'static Library = Box::leak(Box::new(library));
    // SAFETY: the ABI declares the entry symbol as an `EntryFn`.
    let symbol = unsafe { library.get::<EntryFn>(abi::ENTRY_SYMBOL) };
    let entry: EntryFn = *symbol.map_err(|error| LoadError::MissingEntry {
        path: path.to_owned(),
        error,
    })?;
    // SAFETY: the entry function takes nothing and returns a pointer to static data.
    let header_ptr = unsafe { entry() };
    // SAFETY: a non-null entry result points to a static header in a loaded library.
    let header = unsafe { header_ptr.as_ref() }.ok_or_else(|| LoadError::NullVTable {
        path: path.to_owned(),
    })?;
    check_header(path, header)?;
    // SAFETY: the header says this is a vtable of our version and size, and the
    // library is never unloaded.
    Ok(unsafe { &*header_ptr.cast::<PluginVTable>() })
}

fn check_header(path: &Path, header: &VTableHeader) -> Result<(), LoadError> {
    let expected = abi::current_header();
    if header.abi_version != expected.abi_version {
        return Err(LoadError::AbiMismatch {
            path: path.to_owned(),
            expected: expected.abi_version,
            found: header.abi_version,
        });
    }
    if header.size != expected.size {
        return Err(LoadError::VTableSize {
            path: path.to_owned(),
            expected: expected.size,
            found: header.size,
        });
    }
    Ok(())
}

/// Lends host-owned bytes to the plugin for one call.
fn lend(bytes: &[u8]) -> BytesRef {
    BytesRef {
        ptr: bytes.as_ptr(),
        len: bytes.len(),
    }
}

/// Makes one vtable call; the reply is freed by the plugin when dropped.
fn call(
    vtable: &'static PluginVTable,
    f: impl FnOnce(*mut PluginBytes) -> i32,
) -> Result<Reply, PluginError> {
    let mut out = PluginBytes::EMPTY;
    let status = f(&mut out);
    let reply = Reply { out, vtable };
    if status == abi::STATUS_OK {
        Ok(reply)
    } else {
        let message = String::from_utf8_lossy(reply.bytes()).into_owned();
        Err(PluginError::from_status(status, message))
    }
}

/// Bytes the plugin returned, handed back to its `free_bytes` on drop.
struct Reply {
    out: PluginBytes,
    vtable: &'static PluginVTable,
}

impl Reply {
    fn bytes(&self) -> &[u8] {
        if self.out.ptr.is_null() || self.out.len == 0 {
            return &[];
        }
        // SAFETY: the plugin wrote `len` readable bytes that stay alive until `drop`.
        unsafe { std::slice::from_raw_parts(self.out.ptr, self.out.len) }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        let out = std::mem::replace(&mut self.out, PluginBytes::EMPTY);
        // SAFETY: `out` came from this plugin and is freed once, by the plugin.
        unsafe { (self.vtable.free_bytes)(out) };
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
