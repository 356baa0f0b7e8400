//! Why a plugin did not load, in words an operator can act on.

use std::path::PathBuf;

use crate::PluginError;
use crate::abi::ENTRY_SYMBOL;

// Each message carries its cause inline (no `#[source]`), so one line of log says it
// all and error chains don't repeat it.
/// Why [`LoadedPlugin::load`](super::LoadedPlugin::load) (or an allow-list) failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error(
        "invalid sha256 digest {digest:?} in the plugin allow-list: {reason} (expected 64 hex digits)"
    )]
    BadDigest { digest: String, reason: String },

    #[error("refusing to load plugin {}: its sha256 {sha256} is not on the allow-list", path.display())]
    NotAllowed { path: PathBuf, sha256: String },

    #[error("cannot load plugin {} as a shared library: {error}", path.display())]
    Open {
        path: PathBuf,
        error: libloading::Error,
    },

    #[error("{} is not an empathy plugin: it does not export `{ENTRY_SYMBOL}` ({error})", path.display())]
    MissingEntry {
        path: PathBuf,
        error: libloading::Error,
    },

    #[error("plugin {}: `{ENTRY_SYMBOL}` returned no vtable (a null pointer)", path.display())]
    NullVTable { path: PathBuf },

    #[error(
        "plugin {} was built for plugin ABI version {found}, but this encoder expects version {expected}; rebuild it against a matching empathy-plugin-api",
        path.display()
    )]
    AbiMismatch {
        path: PathBuf,
        expected: u32,
        found: u32,
    },

    #[error(
        "plugin {} has a {found}-byte vtable, but this encoder expects {expected} bytes for the same ABI version; rebuild it against a matching empathy-plugin-api",
        path.display()
    )]
    VTableSize {
        path: PathBuf,
        expected: u32,
        found: u32,
    },

    #[error("plugin {} failed to start: {error}", path.display())]
    Create { path: PathBuf, error: PluginError },

    #[error("plugin {} did not describe its modalities: {error}", path.display())]
    Info { path: PathBuf, error: PluginError },
}
