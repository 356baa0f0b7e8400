//! The model crate: lexicon features, the attention-fusion network and its heads,
//! the checkpoint format, the sentiment corpus and its split, metrics and training.

mod batch;
pub mod checkpoint;
pub mod data;
pub mod embedding_cache;
mod experts;
pub mod lexicon;
pub mod lexicon_expansion;
pub mod lexicon_expansion_zh;
pub mod metrics;
mod model;
pub mod network;
pub mod registry;
pub mod topics;
pub mod training;

#[cfg(test)]
mod test_support;

pub use checkpoint::{Manifest, latest_version};
pub use experts::{EXPERT_SHARE_WITH_TEXT, Expert, NEUTRAL};
pub use lexicon::{Expansion, LEXICON_FEATURES, Lexicon, LexiconAnalysis, WordSignal};
pub use model::{FusionModel, ModelInputs, Prediction};
pub use training::{TextEncoder, TrainConfig, TrainReport, train_sentiment};
