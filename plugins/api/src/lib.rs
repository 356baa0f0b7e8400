//! The modality plugin ABI: a versioned C vtable ([`abi`]), a safe [`Plugin`] trait and
//! [`export_plugin!`] for authors, and the loader for the encoder ([`host`]).
//!
//! The README below is compiled as a test, so its worked example stays true.
#![doc = include_str!("../README.md")]

pub mod abi;
mod error;
pub mod host;
mod plugin;
mod request;
mod settings;
mod text;

/// The contract's messages, so that a plugin depends on this crate alone.
pub use empathy_proto as proto;

pub use abi::ABI_VERSION;
pub use error::{ErrorKind, PluginError};
pub use plugin::Plugin;
pub use request::check_request;
pub use settings::Settings;
pub use text::{TEXT_LIMIT_SETTINGS, TextLimits};

/// What [`export_plugin!`] expands to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::vtable;
}
