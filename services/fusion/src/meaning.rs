//! The meaning reader's part of an answer. The serving model reads a sentence
//! embedding, which says what a text is about more than which way it leans ("The food
//! wasn't bad" sits next to "The food was bad"); the reader (Gemma 3 270M, asked how
//! the speaker feels) reads negation, contrast and idiom. Its reading shifts the
//! model's sentiment: score = [ln p_model + WEIGHT x (ln p_reader + NEUTRAL_SHIFT for
//! neutral)] / TEMPERATURE, normalised. WEIGHT and NEUTRAL_SHIFT are the pair that did
//! best on the meaning and implicit dev sets among those that kept the model's macro-F1
//! on 1,500 tweets of the validation split; TEMPERATURE minimised the negative
//! log-likelihood there (README, "The meaning reader").

use std::{path::Path, sync::Arc, time::Duration, time::Instant};

use empathy_model::Prediction;
use empathy_proto::{SENTIMENT_LABELS, v1::StageTiming};
use empathy_reader::{LABEL_WORDS, MeaningReader};
use tokio::sync::Semaphore;

const WEIGHT: f32 = 1.5;
/// The reader says "neutral" less often than our labels mean it.
const NEUTRAL_SHIFT: f32 = 0.5;
/// Two sources agreeing make a sharper score than either is sure of.
const TEMPERATURE: f32 = 1.2;

pub struct Meaning {
    reader: Arc<MeaningReader>,
    /// Readings run one at a time: each already uses every compute thread. A reading
    /// holds its turn until it ends, even when its caller gave up waiting, so readings
    /// past their deadline never pile up on the CPU.
    turn: Arc<Semaphore>,
}

impl Meaning {
    /// The reader at `<assets>/reader/...`, or None (logged) when it was not fetched.
    pub fn load(assets: &Path) -> anyhow::Result<Option<Meaning>> {
        let path = assets.join(empathy_reader::MODEL_FILE);
        if !path.exists() {
            tracing::warn!(
                path = %path.display(),
                "no meaning reader (run `empathy assets fetch`): sentiment is the model's alone"
            );
            return Ok(None);
        }
        let reader = MeaningReader::load(&path)?;
        Ok(Some(Meaning {
            reader: Arc::new(reader),
            turn: Arc::new(Semaphore::new(1)),
        }))
    }

    /// The reader's log-probabilities for `text` in SENTIMENT_LABELS order, or a note
    /// saying why there are none (the deadline passed, or the reader failed); and how
    /// long it took.
    pub async fn read(
        &self,
        text: &str,
        deadline: Duration,
    ) -> (Result<[f32; 3], String>, StageTiming) {
        let started = Instant::now();
        let reading = self.read_within(text, deadline).await;
        let timing = StageTiming {
            stage: "meaning".into(),
            ms: started.elapsed().as_secs_f32() * 1000.0,
        };
        (reading, timing)
    }

    async fn read_within(&self, text: &str, deadline: Duration) -> Result<[f32; 3], String> {
        let reading = tokio::time::timeout(deadline, async {
            let turn = Arc::clone(&self.turn);
            let turn = turn.acquire_owned().await.map_err(|e| e.to_string())?;
            let reader = Arc::clone(&self.reader);
            let text = text.to_string();
            tokio::task::spawn_blocking(move || {
                let reading = reader.read(&text);
                drop(turn);
                reading
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{e:#}"))
        })
        .await
        .map_err(|_| format!("the meaning reader did not answer within {deadline:?}"))?;
        let read = reading.map_err(|e| {
            tracing::warn!(error = %e, "the meaning reader failed");
            format!("the meaning reader failed: {e}")
        })?;
        Ok(SENTIMENT_LABELS.map(|label| {
            let k = LABEL_WORDS.iter().position(|w| *w == label).unwrap_or(0);
            read[k]
        }))
    }
}

/// Shifts the model's sentiment by the reader's `reading` (SENTIMENT_LABELS order).
pub fn mix(prediction: &mut Prediction, reading: [f32; 3]) {
    let mut scores = [0f32; 3];
    for (k, label) in SENTIMENT_LABELS.iter().enumerate() {
        let shift = if *label == "neutral" {
            NEUTRAL_SHIFT
        } else {
            0.0
        };
        let score = prediction.sentiment[k].max(1e-6).ln() + WEIGHT * (reading[k] + shift);
        scores[k] = score / TEMPERATURE;
    }
    let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp = scores.map(|s| (s - top).exp());
    let sum: f32 = exp.iter().sum();
    prediction.sentiment = exp.map(|e| e / sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::prediction;

    #[test]
    fn a_sure_reader_overrules_an_unsure_model_and_scores_stay_a_distribution() {
        // The model leans negative (0.5); the reader is sure it is positive.
        let mut p = prediction([0.5, 0.2, 0.3]);
        mix(&mut p, [(0.05f32).ln(), (0.05f32).ln(), (0.9f32).ln()]);
        assert_eq!(p.top_sentiment(), 2, "{:?}", p.sentiment);
        assert!((p.sentiment.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_reading_that_leans_nowhere_keeps_the_model_s_order_a_little_softer() {
        let model = [0.1, 0.2, 0.7];
        let mut p = prediction(model);
        let even = -1.2f32;
        mix(&mut p, [even, even - NEUTRAL_SHIFT, even]);
        let s = p.sentiment;
        assert!(s[0] < s[1] && s[1] < s[2], "{s:?}");
        assert!(s[2] < 0.7 && s[2] > 0.5, "{s:?}");
    }
}
