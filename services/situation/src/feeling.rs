//! The emotion a situation implies, read by the generator itself: after the utterance
//! and the situation, how likely it finds "So they felt <word>" for a word standing for
//! each of our seven labels. A small model favours some words whatever the story, so
//! each likelihood is divided by the same word's likelihood after a story that says
//! nothing (contextual calibration, Zhao et al. 2021, "Calibrate before use"), then
//! the seven are normalised.

use anyhow::{Result, ensure};
use candle_core::D;
use empathy_proto::EMOTION_LABELS;

use empathy_bpe::GgufTokenizer;

use crate::{
    llama::Model,
    pmi::{SituationPass, situation_pass, utterance_context},
    prefix::CachedPrefix,
};

/// The word that stands for each label, in EMOTION_LABELS order (anger, disgust, fear,
/// joy, sadness, surprise, neutral), as the generator would continue "So they felt".
/// (One word each: synonyms summed in, and a chat-style question listing the words,
/// both read worse on eval/implicit-dev.jsonl.)
const WORDS: [&str; 7] = [
    " angry",
    " disgusted",
    " scared",
    " happy",
    " sad",
    " surprised",
    " nothing",
];

/// The story that says nothing, for the calibration baseline.
const CONTENT_FREE: (&str, &str) = ("", "Something happened.");

pub struct FeelingReader {
    words: Vec<Vec<u32>>,
    /// " So they felt": what follows the situation in the story.
    tail: Vec<u32>,
    /// log p(word | content-free story) per label.
    baseline: [f32; 7],
}

impl FeelingReader {
    pub fn new(model: &Model, tok: &GgufTokenizer) -> Result<Self> {
        let words = WORDS
            .iter()
            .map(|w| tok.encode(w))
            .collect::<Result<Vec<_>>>()?;
        ensure!(
            words.iter().all(|w| !w.is_empty()),
            "an emotion word encodes to no token"
        );
        let mut reader = Self {
            words,
            tail: tok.encode(" So they felt")?,
            baseline: [0.0; 7],
        };
        let (utterance, situation) = CONTENT_FREE;
        let context = utterance_context(model, tok, utterance)?;
        let pass = situation_pass(model, tok, &context, None, situation, &reader.tail)?;
        reader.baseline = reader.log_probs(model, &pass)?;
        Ok(reader)
    }

    /// What `situation_pass` runs after the situation for this reader.
    pub fn tail(&self) -> &[u32] {
        &self.tail
    }

    /// The seven labels' probabilities (EMOTION_LABELS order, summing to 1) for
    /// `situation` as the reason the utterance of `context` (`utterance_context`) was
    /// said.
    pub fn read(
        &self,
        model: &Model,
        tok: &GgufTokenizer,
        context: &CachedPrefix,
        situation: &str,
    ) -> Result<[f32; 7]> {
        let pass = situation_pass(model, tok, context, None, situation, &self.tail)?;
        self.read_pass(model, &pass)
    }

    /// As `read`, from a pass already run with this reader's `tail`.
    pub fn read_pass(&self, model: &Model, pass: &SituationPass) -> Result<[f32; 7]> {
        let raw = self.log_probs(model, pass)?;
        let mut calibrated = [0.0; 7];
        for ((c, r), b) in calibrated.iter_mut().zip(raw).zip(self.baseline) {
            *c = r - b;
        }
        Ok(softmax(calibrated))
    }

    /// log p(word | the story of `pass`) per label.
    fn log_probs(&self, model: &Model, pass: &SituationPass) -> Result<[f32; 7]> {
        let next: Vec<f32> = candle_nn::ops::log_softmax(&pass.next, D::Minus1)?.to_vec1()?;
        let mut out = [0.0; 7];
        for (slot, word) in out.iter_mut().zip(&self.words) {
            *slot = match word.as_slice() {
                [one] => next
                    .get(*one as usize)
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY),
                // A word of several tokens: rerun the story's last token, then the word.
                _ => {
                    let kept = pass.story.len() - 1;
                    let cache = model.fork_cache_first(&pass.story, kept, kept + 1 + word.len())?;
                    model.log_likelihood_in(cache, &[pass.last], word)?
                }
            };
        }
        Ok(out)
    }
}

fn softmax(x: [f32; 7]) -> [f32; 7] {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp = x.map(|v| (v - max).exp());
    let sum: f32 = exp.iter().sum();
    exp.map(|e| e / sum)
}

/// The label with the highest probability.
pub fn top(p: &[f32; 7]) -> &'static str {
    let i = p
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(6, |(i, _)| i);
    EMOTION_LABELS[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Situations that state their feeling plainly are read as that feeling (among the
    /// top two: a 135M model tells anger from disgust poorly), and the reading is a
    /// distribution over the seven labels.
    #[test]
    fn reads_the_feeling_a_plain_situation_states() {
        let (model, tok) = crate::llama::tests::model(crate::llama::WeightFormat::Gguf);
        let reader = FeelingReader::new(&model, &tok).unwrap();
        let cases = [
            (
                "We won!",
                "Their team won the national final after ten years of trying, and everyone cheered and hugged.",
                "joy",
            ),
            (
                "She's gone.",
                "Their grandmother died last night after a long illness, and they cried at her bedside.",
                "sadness",
            ),
            (
                "Get out of my house!",
                "A stranger broke into their home and stole their savings, and they shouted at him in rage.",
                "anger",
            ),
        ];
        for (utterance, situation, want) in cases {
            let context = utterance_context(&model, &tok, utterance).unwrap();
            let p = reader.read(&model, &tok, &context, situation).unwrap();
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{p:?}");
            let want = EMOTION_LABELS.iter().position(|l| *l == want).unwrap();
            let above = p.iter().filter(|&&q| q > p[want]).count();
            assert!(above <= 1, "{situation}: {p:?}");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order() {
        let p = softmax([1.0, 0.0, -1.0, 3.0, 0.5, 0.0, -2.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(top(&p), "joy");
        assert!(p[0] > p[1] && p[1] > p[2]);
    }
}
