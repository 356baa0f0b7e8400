//! A model directory's config.json, for the two encoder families the plugin runs:
//! BERT (all-MiniLM-L6-v2) and MPNet (all-mpnet-base-v2). They share the layer shape and
//! differ in weight names, where positions start and how attention sees them.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// "bert" or "mpnet"; absent is BERT, as transformers reads it.
    #[serde(default)]
    pub model_type: Option<String>,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default)]
    pub type_vocab_size: Option<usize>,
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    /// MPNet's learned relative-position buckets (32 for mpnet-base).
    #[serde(default)]
    pub relative_attention_num_buckets: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Bert,
    /// Positions start after the padding id (as in RoBERTa) and every layer adds a learned
    /// bias per head and bucket of relative position to the attention scores.
    MpNet {
        buckets: usize,
        first_position: usize,
    },
}

impl Config {
    pub fn family(&self) -> anyhow::Result<Family> {
        match self.model_type.as_deref() {
            None | Some("bert") => Ok(Family::Bert),
            Some("mpnet") => Ok(Family::MpNet {
                buckets: self.relative_attention_num_buckets.unwrap_or(32),
                first_position: self.pad_token_id + 1,
            }),
            Some(other) => anyhow::bail!(
                "model_type {other:?} is not an encoder this plugin runs: bert or mpnet"
            ),
        }
    }
}
