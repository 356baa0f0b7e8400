//! Text inputs as every text plugin checks them: a batch limit, a limit on each
//! input's characters (not bytes), and no empty or binary inputs.

use empathy_proto::v1::{EncodeRequest, encode_input::Payload};

use crate::{PluginError, Settings, check_request};

const DEFAULT_MAX_BATCH: usize = 256;
const DEFAULT_MAX_INPUT_CHARS: usize = 10_000;
/// The settings [`TextLimits::from_settings`] reads.
pub const TEXT_LIMIT_SETTINGS: [&str; 2] = ["max_batch", "max_input_chars"];

/// Request limits, from `PluginConfig.settings`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLimits {
    pub max_batch: usize,
    pub max_input_chars: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_input_chars: DEFAULT_MAX_INPUT_CHARS,
        }
    }
}

impl TextLimits {
    pub fn from_settings(settings: &Settings) -> Result<Self, PluginError> {
        let defaults = Self::default();
        Ok(Self {
            max_batch: settings.positive("max_batch", defaults.max_batch)?,
            max_input_chars: settings.positive("max_input_chars", defaults.max_input_chars)?,
        })
    }

    /// The texts of a valid request for `modality`, or an error that names the
    /// offending input.
    pub fn validate<'r>(
        &self,
        request: &'r EncodeRequest,
        modality: &str,
    ) -> Result<Vec<&'r str>, PluginError> {
        check_request(request, modality, self.max_batch, "inputs")?;
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

    fn rejection(limits: &TextLimits, request: &EncodeRequest) -> String {
        match limits.validate(request, "text") {
            Err(e) => {
                assert_eq!(e.kind, crate::ErrorKind::InvalidInput);
                e.message
            }
            Ok(texts) => panic!("accepted {texts:?}"),
        }
    }

    #[test]
    fn accepts_texts_in_order() {
        let request = request(vec![text("one"), text("two 😊")]);
        let texts = TextLimits::default()
            .validate(&request, "text")
            .expect("valid");
        assert_eq!(texts, ["one", "two 😊"]);
    }

    #[test]
    fn rejects_other_modalities() {
        let mut request = request(vec![text("hi")]);
        request.modality = "image".to_string();
        assert!(rejection(&TextLimits::default(), &request).contains("\"image\""));
    }

    #[test]
    fn names_the_bad_input() {
        let limits = TextLimits::default();
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
        let limits = TextLimits {
            max_batch: 2,
            max_input_chars: 5,
        };
        // Five characters but 20 bytes: within the limit.
        assert!(
            limits
                .validate(&request(vec![text("😊😊😊😊😊")]), "text")
                .is_ok()
        );
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
        let settings = Settings::new("text", &values, &TEXT_LIMIT_SETTINGS).expect("known keys");
        let limits = TextLimits::from_settings(&settings).expect("valid settings");
        assert_eq!(limits.max_batch, 8);
        assert_eq!(limits.max_input_chars, DEFAULT_MAX_INPUT_CHARS);
        let values = HashMap::from([("max_input_chars".to_string(), "0".to_string())]);
        let settings = Settings::new("text", &values, &TEXT_LIMIT_SETTINGS).expect("known keys");
        assert!(TextLimits::from_settings(&settings).is_err());
    }
}
