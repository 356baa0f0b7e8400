//! The image modality plugin: face-api's Tiny Face Detector and FaceExpressionNet,
//! re-implemented on candle and loaded from the original TF.js weights.

pub mod decode;
pub mod detector;
pub mod expression;
mod layers;
mod plugin;
mod preprocess;
mod weights;

pub use plugin::{EMBEDDING_DIM, ImagePlugin, MODEL_ID, MODEL_SUBDIR};

empathy_plugin_api::export_plugin!(ImagePlugin);
