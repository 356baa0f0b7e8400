//! The text modality as an empathy plugin: request validation around [`SentenceEncoder`].

use std::path::{Path, PathBuf};

use empathy_plugin_api::{Plugin, PluginError, Settings, TEXT_LIMIT_SETTINGS, TextLimits};
use empathy_proto::modality;
use empathy_proto::v1::{
    EncodeOutput, EncodeRequest, EncodeResponse, ModalityInfo, ModelRef, PluginConfig,
};

use crate::config::Family;
use crate::encoder::{SentenceEncoder, parse_device};
use empathy_simd::Precision;

pub const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Where the model lives under `PluginConfig.assets_dir`.
pub const MODEL_SUBDIR: &str = "text/all-MiniLM-L6-v2";
/// The larger encoder a model version may be trained on instead (its `model_dir`).
pub const MPNET_MODEL_ID: &str = "sentence-transformers/all-mpnet-base-v2";
pub const MPNET_SUBDIR: &str = "text/all-mpnet-base-v2";
const SETTINGS: [&str; 4] = [
    "model_dir",
    "precision",
    TEXT_LIMIT_SETTINGS[0],
    TEXT_LIMIT_SETTINGS[1],
];

/// The `text` modality: all-MiniLM-L6-v2 sentence embeddings (or all-mpnet-base-v2's,
/// with `model_dir` set to it).
pub struct TextPlugin {
    encoder: SentenceEncoder,
    limits: TextLimits,
}

impl TextPlugin {
    fn model_ref(&self) -> ModelRef {
        let id = match self.encoder.family() {
            Family::Bert => MODEL_ID,
            Family::MpNet { .. } => MPNET_MODEL_ID,
        };
        ModelRef {
            id: id.to_string(),
            version: self.encoder.version().to_string(),
        }
    }
}

impl Plugin for TextPlugin {
    fn create(config: &PluginConfig) -> Result<Self, PluginError> {
        let settings = Settings::new("text", &config.settings, &SETTINGS)?;
        let limits = TextLimits::from_settings(&settings)?;
        let model_dir = match settings.get("model_dir") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(&config.assets_dir).join(MODEL_SUBDIR),
        };
        let precision = match settings.get("precision") {
            Some(value) => value.parse::<Precision>().map_err(|e| {
                PluginError::invalid_input(format!("text plugin setting precision: {e}"))
            })?,
            None => Precision::default(),
        };
        let device = parse_device(&config.device)
            .map_err(|e| PluginError::unavailable(format!("device: {e:#}")))?;
        let encoder = SentenceEncoder::load(&model_dir, &device, precision)
            .map_err(|e| PluginError::unavailable(format!("{e:#}")))?;
        tracing::info!(
            dense = match precision.bf16_unit() {
                Some(unit) if encoder.bf16() => unit,
                _ => "f32",
            },
            "text encoder loaded (dense: what multiplies in bf16, else f32)"
        );
        Ok(Self { encoder, limits })
    }

    fn info(&self) -> Vec<ModalityInfo> {
        vec![ModalityInfo {
            modality: modality::TEXT.to_string(),
            embedding_dim: u32::try_from(self.encoder.dim()).unwrap_or(u32::MAX),
            model: Some(self.model_ref()),
            max_batch: u32::try_from(self.limits.max_batch).unwrap_or(u32::MAX),
            max_input_size: self.limits.max_input_chars as u64,
            plugin: concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")).to_string(),
        }]
    }

    fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, PluginError> {
        let texts = self.limits.validate(&request, modality::TEXT)?;
        let vectors = self
            .encoder
            .encode(&texts)
            .map_err(|e| PluginError::internal(format!("{e:#}")))?;
        Ok(EncodeResponse {
            outputs: vectors
                .into_iter()
                .map(|embedding| EncodeOutput {
                    embedding,
                    ..Default::default()
                })
                .collect(),
            model: Some(self.model_ref()),
        })
    }
}
