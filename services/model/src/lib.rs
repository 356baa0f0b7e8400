//! The serving model: lexicon features, the attention-fusion network and its heads, the
//! checkpoint format and the registry reader: what answering a request needs, nothing
//! that trains (that is `empathy-training`).

pub mod batch;
pub mod checkpoint;
mod experts;
pub mod lexicon;
mod model;
pub mod network;
mod prediction;
pub mod registry;
pub mod typicality;
mod version_id;

/// Test helpers, also for the training and corpus crates' tests (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use batch::Speaker;
pub use checkpoint::{Calibration, Manifest, latest_version};
pub use experts::{EXPERT_SHARE_WITH_TEXT, Expert, NEUTRAL};
pub use lexicon::{Expansion, LEXICON_FEATURES, Lexicon, LexiconAnalysis, WordSignal};
pub use model::{
    CONTEXT, EMOTIONS_CORRECTED, FusionModel, MEANING_SHIFT, ModelInputs, PreviousTurn,
    WordsReading, corrected_emotions, prior_logit,
};
pub use prediction::{Prediction, top_index};
