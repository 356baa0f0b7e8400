//! The `text` modality: all-MiniLM-L6-v2 (or all-mpnet-base-v2) sentence embeddings on
//! candle.
//!
//! Use [`SentenceEncoder`] directly as a library, or load this crate's cdylib into the
//! encoder service as a plugin ([`TextPlugin`]).

mod attention;
mod bert;
mod config;
mod dense;
mod encoder;
mod multiply;
mod plugin;
mod relative;

pub use config::Family;
pub use empathy_simd::Precision;
pub use encoder::{SentenceEncoder, parse_device};
pub use plugin::{MODEL_ID, MODEL_SUBDIR, MPNET_MODEL_ID, MPNET_SUBDIR, TextPlugin};

empathy_plugin_api::export_plugin!(TextPlugin);
