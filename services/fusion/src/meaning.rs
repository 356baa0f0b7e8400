//! The meaning reader's part of an answer. The serving model reads a sentence
//! embedding, which says what a text is about more than which way it leans ("The food
//! wasn't bad" sits next to "The food was bad"); the reader (Gemma 3 270M, asked how
//! the speaker feels) reads negation, contrast and idiom, and in a conversation what
//! the turns before imply. How its reading moves the answer is `empathy_reader::mix`.

use std::{path::Path, sync::Arc, time::Duration, time::Instant};

use empathy_model::{CONTEXT, Prediction};
use empathy_proto::v1::Turn;
use empathy_proto::{NEUTRAL_SENTIMENT, SENTIMENT_LABELS, v1::StageTiming};
use empathy_reader::{LABEL_WORDS, MeaningReader, mix};
use tokio::sync::Semaphore;

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

/// Shifts the model's sentiment by the reader's `reading` (SENTIMENT_LABELS order) of
/// the analysed text, if the reader is sure.
pub fn mix(prediction: &mut Prediction, reading: [f32; 3]) {
    prediction.sentiment = mix::shift_by_text(prediction.sentiment, reading, NEUTRAL_SENTIMENT);
}

/// The attention the model gave the turns before (0 without them).
pub fn context_weight(prediction: &Prediction) -> f32 {
    prediction
        .attention
        .iter()
        .filter(|(name, _)| name.split(':').next() == Some(CONTEXT))
        .map(|(_, w)| w)
        .sum()
}

/// The text the reader reads for a conversation: the turns before, oldest first.
pub fn scene(turns: &[Turn]) -> String {
    let texts: Vec<&str> = turns.iter().map(|t| t.text.trim()).collect();
    texts.join(" ")
}

/// Shifts the model's sentiment by the reader's `reading` of the turns before, as far
/// as the model let them weigh (`context_weight`).
pub fn mix_scene(prediction: &mut Prediction, reading: [f32; 3], context_weight: f32) {
    prediction.sentiment = mix::shift_by_scene(prediction.sentiment, reading, context_weight);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::tests::prediction;

    #[test]
    fn the_context_weight_is_the_attention_the_turns_before_had() {
        let mut p = prediction([0.2, 0.2, 0.6]);
        assert_eq!(context_weight(&p), 0.0);
        p.attention = vec![
            ("text".into(), 0.4),
            ("lexicon".into(), 0.2),
            ("context:0".into(), 0.1),
            ("context:1".into(), 0.3),
        ];
        assert!((context_weight(&p) - 0.4).abs() < 1e-6);
    }

    #[test]
    fn a_scene_is_the_turns_oldest_first() {
        let turn = |speaker: &str, text: &str| Turn {
            speaker: speaker.into(),
            text: text.into(),
        };
        let turns = [
            turn("user", " My order is late. "),
            turn("agent", "It ships Monday."),
        ];
        assert_eq!(scene(&turns), "My order is late. It ships Monday.");
    }
}
