//! Lexicon features: VADER-style sentiment rules and word-level emotion evidence,
//! computed per request (cheap: hash lookups over the tokens).

mod emotion;
mod emotion_index;
mod emotion_words;
pub mod expansion;
mod stopwords;
mod text2emotion;
mod vader;
mod vader_words;

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use emotion::{EmotionEvidence, EmotionLexicon};
pub use expansion::{Expansion, ExpansionRef};
pub use stopwords::is_stopword;
use vader::{Vader, VaderOutput, normalize};

/// Length of [`LexiconAnalysis::features`].
pub const LEXICON_FEATURES: usize = 24;
/// Where [`LexiconAnalysis::emotions`] sit inside the features (fine-tuning reads a
/// stored analysis's emotions back from its features).
pub const EMOTION_FEATURES: std::ops::Range<usize> = 4..11;

/// Arousal of each emotion on Russell's circumplex (rough, ours): how activated a
/// person feeling it is, in EMOTION_LABELS order; neutral reads as calm.
const AROUSAL: [f32; 7] = [0.75, 0.35, 0.7, 0.5, -0.45, 0.8, -0.3];

/// A word that drove the analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordSignal {
    pub word: String,
    /// Signed for polarity (VADER valence / 4, clamped to [-1, 1]); emotion evidence
    /// is in (0, 1].
    pub weight: f32,
    /// "positive", "negative", or an emotion label.
    pub signal: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LexiconAnalysis {
    /// The lexicon token for fusion, each value in [-1, 1]; see `features()`.
    pub features: Vec<f32>,
    /// VADER's compound score in [-1, 1].
    pub vader_compound: f32,
    /// Each in [0, 1], EMOTION_LABELS order; neutral is high when evidence is thin.
    pub emotions: [f32; 7],
    /// The VADER compound score.
    pub valence: f32,
    /// Emotion-weighted arousal plus emphasis (exclamations, caps), in [-1, 1].
    pub arousal: f32,
    /// Strongest first.
    pub words: Vec<WordSignal>,
}

pub struct Lexicon {
    vader: Vader,
    emotions: EmotionLexicon,
}

impl Lexicon {
    /// Reads `lexicon/vader/*` and `lexicon/text2emotion/text2emotion.py` under the
    /// assets directory.
    pub fn load(assets_dir: &Path) -> anyhow::Result<Lexicon> {
        let vader = Vader::load(&assets_dir.join("lexicon/vader"))?;
        let path = assets_dir.join("lexicon/text2emotion/text2emotion.py");
        let source = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the text2emotion lexicon {}: run `empathy assets fetch`",
                path.display()
            )
        })?;
        let emotions = EmotionLexicon::from_text2emotion(&source)
            .with_context(|| format!("cannot parse {}", path.display()))?;
        Ok(Lexicon { vader, emotions })
    }

    /// Seed words of lexicon expansion: text2emotion's single words with the
    /// emotions they list (bit `k` = EMOTION_LABELS\[k\]), sorted.
    pub fn emotion_seed_words(&self) -> Vec<(String, u8)> {
        self.emotions.words()
    }

    /// Seed words of lexicon expansion: VADER's words with their mean valence,
    /// sorted.
    pub fn valence_seed_words(&self) -> Vec<(String, f64)> {
        self.vader.words()
    }

    /// Whether the lexicon already rates this lowercased word (exact or, for
    /// text2emotion, as a stem).
    pub fn covers(&self, word: &str) -> bool {
        self.vader.valence(word).is_some() || self.emotions.text2emotion(word).is_some()
    }

    /// The analysis without an expanded lexicon (what a model version trained
    /// without one expects).
    pub fn analyze(&self, text: &str) -> LexiconAnalysis {
        self.analyze_with(text, None)
    }

    /// The analysis with the expanded lexicon a model version was trained with
    /// (`FusionModel::lexicon_expansion`); expanded words add emotion evidence and
    /// show in `words` like other hits.
    pub fn analyze_with(&self, text: &str, expansion: Option<&Expansion>) -> LexiconAnalysis {
        let out = self.vader.polarity(text);
        let evidence = self.emotions.evidence(&self.vader, &out, expansion);
        let emotions = evidence.scores();
        let arousal = arousal(&emotions, &out);
        let features = features(&out, &evidence, &emotions, arousal);
        LexiconAnalysis {
            features,
            vader_compound: out.compound as f32,
            emotions,
            valence: out.compound as f32,
            arousal,
            words: word_signals(&out, &evidence),
        }
    }
}

/// The arousal of an emotion distribution (EMOTION_LABELS order): the mean of each
/// emotion's typical arousal, weighted by its score.
pub fn emotion_arousal(emotions: &[f32; 7]) -> f32 {
    let mass: f32 = emotions.iter().sum();
    emotions
        .iter()
        .zip(AROUSAL)
        .map(|(s, a)| s * a)
        .sum::<f32>()
        / mass.max(1e-6)
}

fn arousal(emotions: &[f32; 7], out: &VaderOutput) -> f32 {
    let base = emotion_arousal(emotions);
    let emphasis = 0.08 * out.exclamations.min(4) as f32 + 0.1 * out.caps_words.min(3) as f32;
    (base + emphasis).clamp(-1.0, 1.0)
}

fn scaled(count: usize, cap: usize) -> f32 {
    count.min(cap) as f32 / cap as f32
}

fn features(
    out: &VaderOutput,
    evidence: &EmotionEvidence,
    emotions: &[f32; 7],
    arousal: f32,
) -> Vec<f32> {
    let count = |f: fn(&str) -> bool| out.tokens.iter().filter(|t| f(t)).count();
    let negations = count(|t| vader::is_negation(t) || t == "no");
    let boosters = count(|t| vader_words::booster(t).is_some_and(|b| b > 0.0));
    let dampeners = count(|t| vader_words::booster(t).is_some_and(|b| b < 0.0));
    let pos_sum: f64 = out.valences.iter().filter(|v| **v > 0.0).sum();
    let neg_sum: f64 = out.valences.iter().filter(|v| **v < 0.0).sum();
    let rated = out.valences.iter().filter(|v| **v != 0.0).count();
    let n = out.tokens.len();
    let mut f = Vec::with_capacity(LEXICON_FEATURES);
    f.extend([out.pos, out.neg, out.neu, out.compound].map(|x| x as f32));
    debug_assert_eq!(f.len(), EMOTION_FEATURES.start);
    f.extend_from_slice(emotions);
    f.extend([
        arousal,
        scaled(negations, 3),
        scaled(boosters, 3),
        scaled(dampeners, 3),
        scaled(out.exclamations, 4),
        scaled(out.questions, 4),
        scaled(out.caps_words, 3),
        if out.has_but { 1.0 } else { 0.0 },
        normalize(pos_sum) as f32,
        normalize(neg_sum) as f32,
        if n == 0 { 0.0 } else { rated as f32 / n as f32 },
        (1.0 - (-evidence.total()).exp()) as f32,
        ((1.0 + n as f32).ln() / 65f32.ln()).min(1.0),
    ]);
    debug_assert_eq!(f.len(), LEXICON_FEATURES);
    f
}

fn word_signals(out: &VaderOutput, evidence: &EmotionEvidence) -> Vec<WordSignal> {
    let polarity = out
        .tokens
        .iter()
        .zip(&out.valences)
        .filter(|(_, v)| **v != 0.0)
        .map(|(word, v)| WordSignal {
            word: word.clone(),
            weight: (*v / 4.0).clamp(-1.0, 1.0) as f32,
            signal: if *v > 0.0 { "positive" } else { "negative" }.to_string(),
        });
    let emotion = evidence.hits.iter().map(|hit| WordSignal {
        word: hit.word.clone(),
        weight: hit.weight.min(1.0) as f32,
        signal: empathy_proto::EMOTION_LABELS[hit.emotion].to_string(),
    });
    let mut words: Vec<WordSignal> = polarity.chain(emotion).collect();
    words.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
    words
}

#[cfg(test)]
mod tests;
