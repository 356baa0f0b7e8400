//! A loaded model version: validates inputs against the manifest, runs the network
//! and turns its outputs into labelled predictions.

use std::path::Path;

use anyhow::{Context, ensure};
use candle_core::{D, DType, Device};
use candle_nn::VarBuilder;

use crate::batch::{BatchBuilder, ContextTurn, Example, Speaker};
use crate::checkpoint::{Manifest, read_version};
use crate::experts::{Expert, NEUTRAL, blend};
use crate::lexicon::{Expansion, LexiconAnalysis};
use crate::network::{FusionNetwork, MODALITIES};
use crate::prediction::Prediction;
use crate::typicality::Typicality;

/// Name of situation slot tokens; the attention entry is "situation:<index>".
pub const SITUATION: &str = "situation";
/// Name of previous-turn tokens; the attention entry is "context:<index>", the index
/// into the request's turns (oldest first).
pub const CONTEXT: &str = "context";

/// A previous turn of the conversation, encoded.
#[derive(Debug, Clone)]
pub struct PreviousTurn {
    pub embedding: Vec<f32>,
    pub speaker: Speaker,
}

/// One example: whatever modalities arrived. The lexicon analysis is always present.
#[derive(Debug, Clone)]
pub struct ModelInputs {
    pub text: Option<Vec<f32>>,
    pub lexicon: LexiconAnalysis,
    pub speech: Option<Vec<f32>>,
    pub image: Option<Vec<f32>>,
    /// Used in order up to the model's `max_situations`; extra ones are ignored.
    pub situations: Vec<Vec<f32>>,
    /// Previous turns, oldest first; the version reads the most recent `max_context`.
    pub context: Vec<PreviousTurn>,
    /// Opinions of modalities whose token this version was not trained on.
    pub experts: Vec<Expert>,
    /// A language plugin's reading of the words, for text in a language this
    /// version's text and lexicon tokens were not trained on; it stands in for them.
    pub reading: Option<WordsReading>,
}

/// What a language plugin (e.g. "text-zh") read off the words.
#[derive(Debug, Clone, PartialEq)]
pub struct WordsReading {
    /// The plugin's modality, named in the attention.
    pub modality: String,
    /// SENTIMENT_LABELS order.
    pub sentiment: [f32; 3],
    /// EMOTION_LABELS order.
    pub emotions: [f32; 7],
}

impl WordsReading {
    /// The reading as a prediction: valence p(positive) - p(negative), arousal from
    /// its emotions, and all the attention on the plugin.
    fn prediction(&self) -> Prediction {
        Prediction {
            sentiment: self.sentiment,
            emotions: self.emotions,
            valence: self.sentiment[2] - self.sentiment[0],
            arousal: crate::lexicon::emotion_arousal(&self.emotions),
            attention: vec![(self.modality.clone(), 1.0)],
        }
    }
}

pub struct FusionModel {
    manifest: Manifest,
    network: FusionNetwork,
    /// The expanded lexicon the version's lexicon features were computed with; kept
    /// with the weights so a request analyses its text with the matching one.
    lexicon_expansion: Option<Expansion>,
    /// How unlike its training texts a text is; None for versions saved without it.
    typicality: Option<Typicality>,
}

impl FusionModel {
    /// Loads and checks a version directory (manifest, checksum, tensor shapes).
    pub fn load(version_dir: &Path) -> anyhow::Result<FusionModel> {
        let (manifest, weights) = read_version(version_dir)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)?;
        let network = FusionNetwork::new(manifest.dims, vb).with_context(|| {
            format!(
                "model version {}: the weights do not match the manifest's dims",
                version_dir.display()
            )
        })?;
        let lexicon_expansion =
            Expansion::for_version(version_dir, manifest.lexicon_expansion.as_ref())?;
        let typicality = manifest
            .typicality
            .as_ref()
            .map(|r| Typicality::read(version_dir, r))
            .transpose()?;
        Ok(FusionModel {
            manifest,
            network,
            lexicon_expansion,
            typicality,
        })
    }

    #[cfg(test)]
    pub(crate) fn new(manifest: Manifest, network: FusionNetwork) -> FusionModel {
        FusionModel {
            manifest,
            network,
            lexicon_expansion: None,
            typicality: None,
        }
    }

    /// How unlike the version's training texts a text is, where the version knows.
    pub fn typicality(&self) -> Option<&Typicality> {
        self.typicality.as_ref()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// What to pass to `Lexicon::analyze_with` for inputs of this version.
    pub fn lexicon_expansion(&self) -> Option<&Expansion> {
        self.lexicon_expansion.as_ref()
    }

    pub fn predict(&self, batch: &[ModelInputs]) -> anyhow::Result<Vec<Prediction>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let dims = self.manifest.dims;
        let used: Vec<bool> = MODALITIES
            .iter()
            .map(|m| self.trains(m))
            .chain((0..dims.max_situations).map(|_| self.trains(SITUATION)))
            .chain((0..dims.max_context).map(|_| self.trains(CONTEXT)))
            .collect();
        let mut builder = BatchBuilder::new(dims);
        for (i, inputs) in batch.iter().enumerate() {
            self.check(inputs).with_context(|| format!("input {i}"))?;
            let example = Example {
                text: inputs.text.as_deref(),
                lexicon: &inputs.lexicon.features,
                speech: inputs.speech.as_deref(),
                image: inputs.image.as_deref(),
                situations: &inputs.situations,
                context: inputs
                    .context
                    .iter()
                    .map(|t| ContextTurn {
                        embedding: &t.embedding,
                        speaker: t.speaker,
                    })
                    .collect(),
            };
            builder.push(&example, |slot| used[slot]);
        }
        let tokens = builder.build()?;
        let out = self.network.forward(&tokens)?;
        // Calibrated: softmax(logits / T), T fitted on held-out data (1 for versions
        // without a calibration). Dividing by T > 0 never changes the top label.
        let logits = out
            .sentiment_logits
            .affine(1.0 / self.manifest.temperature(), 0.0)?;
        let sentiment = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
        let emotion_logits = out.emotion_logits.to_vec2::<f32>()?;
        let attention = out.attention.to_vec2::<f32>()?;
        let mask = tokens.mask.to_vec2::<f32>()?;
        let corrected = self.manifest.emotion_source == EMOTIONS_CORRECTED;
        let mut predictions = Vec::with_capacity(batch.len());
        for (i, inputs) in batch.iter().enumerate() {
            let sentiment = to_array::<3>(&sentiment[i])?;
            let lexicon = &inputs.lexicon;
            let emotions = if corrected {
                corrected_emotions(&to_array::<7>(&emotion_logits[i])?, &lexicon.emotions)
            } else {
                lexicon.emotions
            };
            // No data labels valence or arousal, so the affect head is never trained:
            // valence is half the trained sentiment (p(positive) - p(negative)), half
            // VADER's compound; arousal is the lexicon's.
            let mut prediction = Prediction {
                sentiment,
                emotions,
                valence: 0.5 * (sentiment[2] - sentiment[0]) + 0.5 * lexicon.valence,
                arousal: lexicon.arousal,
                attention: token_weights(&attention[i], &mask[i], &dims, inputs.context.len()),
            };
            let has_words = inputs.text.is_some() || inputs.reading.is_some();
            if let Some(reading) = &inputs.reading {
                prediction = reading.prediction();
            }
            // The text's emotions speak as far as they are not neutral.
            let text_evidence = 1.0 - prediction.emotions[NEUTRAL];
            // Experts stand in for tokens this version was not trained on.
            let experts: Vec<Expert> = inputs
                .experts
                .iter()
                .filter(|e| !self.trains(e.name.split(':').next().unwrap_or_default()))
                .cloned()
                .collect();
            blend(&mut prediction, &experts, has_words, text_evidence);
            predictions.push(prediction);
        }
        Ok(predictions)
    }

    /// Checks the inputs the version uses; the others are masked, so their widths
    /// do not matter (a new speech plugin must not break a text-trained model).
    fn check(&self, inputs: &ModelInputs) -> anyhow::Result<()> {
        let dims = &self.manifest.dims;
        let width = |name: &str, got: Option<usize>, want: usize| -> anyhow::Result<()> {
            if let Some(got) = got.filter(|_| self.trains(name)) {
                ensure!(
                    got == want,
                    "the {name} token has {got} values, model version {} expects {want}",
                    self.manifest.version
                );
            }
            Ok(())
        };
        width("text", inputs.text.as_ref().map(Vec::len), dims.text)?;
        width("lexicon", Some(inputs.lexicon.features.len()), dims.lexicon)?;
        width("speech", inputs.speech.as_ref().map(Vec::len), dims.speech)?;
        width("image", inputs.image.as_ref().map(Vec::len), dims.image)?;
        for s in &inputs.situations {
            width(SITUATION, Some(s.len()), dims.situation)?;
        }
        for t in &inputs.context {
            width(CONTEXT, Some(t.embedding.len()), dims.text)?;
        }
        let used = [
            ("text", inputs.text.as_deref()),
            ("lexicon", Some(&inputs.lexicon.features[..])),
            ("speech", inputs.speech.as_deref()),
            ("image", inputs.image.as_deref()),
        ]
        .into_iter()
        .chain(inputs.situations.iter().map(|s| (SITUATION, Some(&s[..]))))
        .chain(
            inputs
                .context
                .iter()
                .map(|t| (CONTEXT, Some(&t.embedding[..]))),
        );
        for (name, values) in used {
            if let Some(values) = values.filter(|_| self.trains(name)) {
                ensure!(
                    values.iter().all(|x| x.is_finite()),
                    "the {name} token holds NaN or infinity"
                );
            }
        }
        Ok(())
    }

    fn trains(&self, token: &str) -> bool {
        self.manifest.trained_tokens.iter().any(|t| t == token)
    }
}

/// `emotion_source` of a version whose emotion head corrects the lexicon's emotions
/// (trained on emotion feedback); "lexicon" before that.
pub const EMOTIONS_CORRECTED: &str = "lexicon+model";

/// The name, among a feedback record's features, of what the meaning reader added to
/// the model's sentiment log-probabilities in the corrected analysis.
pub const MEANING_SHIFT: &str = "meaning";

/// The lexicon's emotions moved by the head: sigmoid(head logit + logit(lexicon score)).
/// A head of zeros leaves the lexicon's emotions as they are, so training starts from
/// what the serving version said.
pub fn corrected_emotions(head: &[f32; 7], lexicon: &[f32; 7]) -> [f32; 7] {
    std::array::from_fn(|k| 1.0 / (1.0 + (-(head[k] + prior_logit(lexicon[k]))).exp()))
}

/// logit(p), with p kept within [0.02, 0.98] so that a lexicon score of 0 or 1 stays
/// correctable by a head of modest weights.
pub fn prior_logit(p: f32) -> f32 {
    let p = p.clamp(0.02, 0.98);
    (p / (1.0 - p)).ln()
}

fn to_array<const N: usize>(row: &[f32]) -> anyhow::Result<[f32; N]> {
    row.try_into()
        .map_err(|_| anyhow::anyhow!("expected {N} scores, got {}", row.len()))
}

/// The attention of each used token, named; `turns` previous turns were given.
fn token_weights(
    attention: &[f32],
    mask: &[f32],
    dims: &crate::network::Dims,
    turns: usize,
) -> Vec<(String, f32)> {
    let first_context = dims.context_slot(0);
    attention
        .iter()
        .zip(mask)
        .enumerate()
        .filter(|(_, (_, m))| **m > 0.0)
        .map(|(slot, (w, _))| {
            let name = match MODALITIES.get(slot) {
                Some(m) => m.to_string(),
                None if slot >= first_context => {
                    let back = slot - first_context;
                    format!("{CONTEXT}:{}", turns.saturating_sub(back + 1))
                }
                None => format!("{SITUATION}:{}", slot - MODALITIES.len()),
            };
            (name, *w)
        })
        .collect()
}

#[cfg(test)]
mod tests;
