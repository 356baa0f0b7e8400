//! A modality plugin for the empathy encoder. It embeds a numeric signal, little-endian
//! f32 samples (a wearable's heart rate in beats per minute, the gaps between
//! keystrokes in seconds, ...), as [mean, standard deviation, min, max, trend].
//!
//! Make it yours: put your model in `create` (read its files from `config.assets_dir`)
//! and your embedding in `embed`; keep the checks. The README says how to build, test,
//! load and call it.

// Exporting a plugin needs no `unsafe` of your own.
#![forbid(unsafe_code)]

use empathy_plugin_api::proto::v1::{
    EncodeInput, EncodeOutput, EncodeRequest, EncodeResponse, ModalityInfo, ModelRef, PluginConfig,
    encode_input::Payload,
};
use empathy_plugin_api::{Plugin, PluginError, Settings, check_request};

/// The modality this plugin serves: what callers name in `ExtraInput.modality`.
pub const MODALITY: &str = "signal";
/// Length of each embedding.
pub const EMBEDDING_DIM: usize = 5;

pub struct Signal {
    max_batch: usize,
    max_samples: usize,
}

impl Plugin for Signal {
    /// Called once, when the encoder loads the library. Settings come from the
    /// encoder's `--setting KEY=VALUE`; an unknown key is refused, not ignored.
    fn create(config: &PluginConfig) -> Result<Self, PluginError> {
        let settings = Settings::new(MODALITY, &config.settings, &["max_batch", "max_samples"])?;
        Ok(Signal {
            max_batch: settings.positive("max_batch", 64)?,
            max_samples: settings.positive("max_samples", 100_000)?,
        })
    }

    fn info(&self) -> Vec<ModalityInfo> {
        vec![ModalityInfo {
            modality: MODALITY.into(),
            embedding_dim: EMBEDDING_DIM as u32,
            model: Some(model()),
            max_batch: self.max_batch as u32,
            max_input_size: (self.max_samples * 4) as u64,
            plugin: String::new(),
        }]
    }

    /// One output per input, in order. Called from many threads at once.
    fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, PluginError> {
        check_request(&request, MODALITY, self.max_batch, "series")?;
        let outputs = request
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let samples = samples(i, input, self.max_samples)?;
                Ok(EncodeOutput {
                    embedding: embed(&samples),
                    ..EncodeOutput::default()
                })
            })
            .collect::<Result<_, PluginError>>()?;
        Ok(EncodeResponse {
            outputs,
            model: Some(model()),
        })
    }
}

fn model() -> ModelRef {
    ModelRef {
        id: format!("{MODALITY}/summary"),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// The samples of input `i`, or an error that tells the caller what is wrong with it.
pub fn samples(i: usize, input: &EncodeInput, max: usize) -> Result<Vec<f32>, PluginError> {
    let Some(Payload::Data(bytes)) = &input.payload else {
        return Err(PluginError::invalid_input(format!(
            "input {i}: expected bytes (little-endian f32 samples), got text or nothing"
        )));
    };
    if bytes.is_empty() || bytes.len() % 4 != 0 {
        return Err(PluginError::invalid_input(format!(
            "input {i}: {} bytes is not a whole number of f32 samples (4 bytes each)",
            bytes.len()
        )));
    }
    if bytes.len() / 4 > max {
        return Err(PluginError::invalid_input(format!(
            "input {i}: {} samples is over the limit of {max} (setting max_samples)",
            bytes.len() / 4
        )));
    }
    let samples: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(at) = samples.iter().position(|s| !s.is_finite()) {
        return Err(PluginError::invalid_input(format!(
            "input {i}: sample {at} is not a finite number"
        )));
    }
    Ok(samples)
}

/// [mean, standard deviation, min, max, trend (least-squares slope per sample)].
pub fn embed(samples: &[f32]) -> Vec<f32> {
    let n = samples.len() as f32;
    let mean = samples.iter().sum::<f32>() / n;
    let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / n;
    let (min, max) = samples
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    let t_mean = (n - 1.0) / 2.0;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, s) in samples.iter().enumerate() {
        num += (t as f32 - t_mean) * (s - mean);
        den += (t as f32 - t_mean).powi(2);
    }
    let trend = if den > 0.0 { num / den } else { 0.0 };
    vec![mean, var.sqrt(), min, max, trend]
}

empathy_plugin_api::export_plugin!(Signal);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rising_series_has_its_summary_and_a_positive_trend() {
        let e = embed(&[60.0, 70.0, 80.0, 90.0]);
        assert_eq!(e.len(), EMBEDDING_DIM);
        assert_eq!((e[0], e[2], e[3]), (75.0, 60.0, 90.0));
        assert!((e[1] - 11.18).abs() < 0.01, "{e:?}");
        assert!((e[4] - 10.0).abs() < 1e-4, "{e:?}");
    }

    #[test]
    fn bad_inputs_are_refused_with_a_reason() {
        let data = |bytes: &[u8]| EncodeInput {
            payload: Some(Payload::Data(bytes.to_vec().into())),
            mime_type: String::new(),
        };
        let err = |input: &EncodeInput| samples(0, input, 2).err().map(|e| e.message);
        assert!(err(&data(&[1, 2, 3])).is_some_and(|m| m.contains("whole number")));
        assert!(err(&data(&[0; 12])).is_some_and(|m| m.contains("limit of 2")));
        assert!(err(&data(&f32::NAN.to_le_bytes())).is_some_and(|m| m.contains("finite")));
        let text = EncodeInput {
            payload: Some(Payload::Text("72".into())),
            mime_type: String::new(),
        };
        assert!(err(&text).is_some_and(|m| m.contains("expected bytes")));
        assert_eq!(
            samples(0, &data(&1.5f32.to_le_bytes()), 2).ok(),
            Some(vec![1.5])
        );
    }
}
