//! Virtual situations: SmolLM2-135M-Instruct (quantized llama on candle) imagines the
//! situations in which a person would say an utterance, a critic over sentence
//! embeddings scores them, and `SituationService.Generate` streams them.
//!
//! A request's path: service.rs (validation, limits, prompt) -> engine.rs (queue,
//! batched decoding, cleaning, critic) -> llama.rs (the forward pass).

pub mod critic;
pub mod engine;
pub mod feeling;
pub mod judge;
pub mod llama;
pub mod loader;
pub mod pmi;
pub mod prefix;
pub mod quant_matrix;
pub mod sampler;
pub mod service;
pub mod situation_text;
mod team;
pub mod train;
