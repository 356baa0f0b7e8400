//! The text modality as an empathy plugin: request validation around [`SentenceEncoder`].

use std::path::{Path, PathBuf};

use empathy_plugin_api::{Plugin, PluginError, Settings, check_request};
use empathy_proto::modality;
use empathy_proto::v1::{
    EncodeOutput, EncodeRequest, EncodeResponse, ModalityInfo, ModelRef, PluginConfig,
    encode_input::Payload,
};

use crate::encoder::{SentenceEncoder, parse_device};

pub const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Where the model lives under `PluginConfig.assets_dir`.
pub const MODEL_SUBDIR: &str = "text/all-MiniLM-L6-v2";

const DEFAULT_MAX_BATCH: usize = 256;
const DEFAULT_MAX_INPUT_CHARS: usize = 10_000;
const SETTINGS: [&str; 3] = ["model_dir", "max_batch", "max_input_chars"];

/// Request limits, from `PluginConfig.settings`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    max_batch: usize,
    max_input_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_input_chars: DEFAULT_MAX_INPUT_CHARS,
        }
    }
}

impl Limits {
    fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        let defaults = Self::default();
        Ok(Self {
            max_batch: settings.positive("max_batch", defaults.max_batch)?,
            max_input_chars: settings.positive("max_input_chars", defaults.max_input_chars)?,
        })
    }

    /// The texts of a valid request, or an error that names the offending input.
    fn validate<'r>(&self, request: &'r EncodeRequest) -> Result<Vec<&'r str>, PluginError> {
        check_request(request, modality::TEXT, self.max_batch, "inputs")?;
        request
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| match &input.payload {
                Some(Payload::Text(text)) => self.check_text(i, text),
                Some(Payload::Data(_)) => Err(PluginError::invalid_input(format!(
                    "input {i}: expected text, got binary data"
                ))),
                None => Err(PluginError::invalid_input(format!(
                    "input {i}: no text given"
                ))),
            })
            .collect()
    }

    fn check_text<'t>(&self, i: usize, text: &'t str) -> Result<&'t str, PluginError> {
        if text.trim().is_empty() {
            return Err(PluginError::invalid_input(format!(
                "input {i}: text is empty"
            )));
        }
        // Byte length bounds the character count, so most texts skip the count.
        if text.len() > self.max_input_chars {
            let chars = text.chars().count();
            if chars > self.max_input_chars {
                return Err(PluginError::invalid_input(format!(
                    "input {i}: text has {chars} characters, over the limit of {}",
                    self.max_input_chars
                )));
            }
        }
        Ok(text)
    }
}

/// The `text` modality: all-MiniLM-L6-v2 sentence embeddings.
pub struct TextPlugin {
    encoder: SentenceEncoder,
    limits: Limits,
}

impl TextPlugin {
    fn model_ref(&self) -> ModelRef {
        ModelRef {
            id: MODEL_ID.to_string(),
            version: self.encoder.version().to_string(),
        }
    }
}

impl Plugin for TextPlugin {
    fn create(config: &PluginConfig) -> Result<Self, PluginError> {
        let settings = Settings::new("text", &config.settings, &SETTINGS)?;
        let limits = Limits::from_settings(&settings)?;
        let model_dir = match settings.get("model_dir") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(&config.assets_dir).join(MODEL_SUBDIR),
        };
        let device = parse_device(&config.device)
            .map_err(|e| PluginError::unavailable(format!("device: {e:#}")))?;
        let encoder = SentenceEncoder::load(&model_dir, &device)
            .map_err(|e| PluginError::unavailable(format!("{e:#}")))?;
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
        let texts = self.limits.validate(&request)?;
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use empathy_proto::v1::EncodeInput;

    use super::*;

    fn text(t: &str) -> EncodeInput {
        EncodeInput {
            payload: Some(Payload::Text(t.to_string())),
            ..Default::default()
        }
    }

    fn request(inputs: Vec<EncodeInput>) -> EncodeRequest {
        EncodeRequest {
            modality: "text".to_string(),
            inputs,
            ..Default::default()
        }
    }

    fn rejection(limits: &Limits, request: &EncodeRequest) -> String {
        match limits.validate(request) {
            Err(e) => {
                assert_eq!(e.kind, empathy_plugin_api::ErrorKind::InvalidInput);
                e.message
            }
            Ok(texts) => panic!("accepted {texts:?}"),
        }
    }

    #[test]
    fn accepts_texts_in_order() {
        let request = request(vec![text("one"), text("two 😊")]);
        let texts = Limits::default().validate(&request).expect("valid");
        assert_eq!(texts, ["one", "two 😊"]);
    }

    #[test]
    fn rejects_other_modalities() {
        let mut request = request(vec![text("hi")]);
        request.modality = "image".to_string();
        assert!(rejection(&Limits::default(), &request).contains("\"image\""));
    }

    #[test]
    fn names_the_bad_input() {
        let limits = Limits::default();
        let mut binary = text("");
        binary.payload = Some(Payload::Data(vec![1, 2].into()));
        let cases = [
            (binary, "input 1: expected text"),
            (text("  \n\t"), "input 1: text is empty"),
            (EncodeInput::default(), "input 1: no text"),
        ];
        for (bad, expected) in cases {
            let message = rejection(&limits, &request(vec![text("fine"), bad]));
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn limits_size_in_characters_and_batch() {
        let limits = Limits {
            max_batch: 2,
            max_input_chars: 5,
        };
        // Five characters but 20 bytes: within the limit.
        assert!(limits.validate(&request(vec![text("😊😊😊😊😊")])).is_ok());
        let message = rejection(&limits, &request(vec![text("abcdef")]));
        assert!(
            message.contains("input 0") && message.contains("limit of 5"),
            "{message}"
        );
        let message = rejection(&limits, &request(vec![text("a"), text("b"), text("c")]));
        assert!(
            message.contains("batch of 3") && message.contains("limit of 2"),
            "{message}"
        );
        assert!(rejection(&limits, &request(vec![])).contains("no inputs"));
    }

    #[test]
    fn reads_limits_from_settings() {
        let values = HashMap::from([("max_batch".to_string(), "8".to_string())]);
        let settings = Settings::new("text", &values, &SETTINGS).expect("known keys");
        let limits = Limits::from_settings(&settings).expect("valid settings");
        assert_eq!(limits.max_batch, 8);
        assert_eq!(limits.max_input_chars, DEFAULT_MAX_INPUT_CHARS);
        let values = HashMap::from([("max_input_chars".to_string(), "0".to_string())]);
        let settings = Settings::new("text", &values, &SETTINGS).expect("known keys");
        assert!(Limits::from_settings(&settings).is_err());
    }
}
