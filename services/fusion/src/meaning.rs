//! The meaning reader's part of an answer. The serving model reads a sentence
//! embedding, which says what a text is about more than which way it leans ("The food
//! wasn't bad" sits next to "The food was bad"); the reader (Gemma 3 270M, asked how
//! the speaker feels) reads negation, contrast and idiom. Its reading shifts the
//! model's sentiment where the reader is sure (it gives one answer more than SURE of
//! its probability): score = [ln p_model + WEIGHT x (ln p_reader + NEUTRAL_SHIFT for
//! neutral)] / TEMPERATURE, normalised; elsewhere the model's answer stands. SURE,
//! WEIGHT and NEUTRAL_SHIFT did best on the meaning and implicit dev sets among those
//! that kept the model's macro-F1 on 1,500 tweets of the validation split (where the
//! reader is mostly unsure, and wrong more often than the model); TEMPERATURE
//! minimised the negative log-likelihood there (README, "The meaning reader").
//!
//! In a conversation the reader reads the turns before instead (what happened, which
//! the model reads poorly: "The earliest engineer visit is on the 22nd" holds no
//! feeling word), and the answer moves by SCENE_WEIGHT x the weight the model gave
//! those turns x the reading: a reaction ("Perfect.") leans on the turns and takes
//! their feeling; a turn that says its feeling outright barely does.

use std::{path::Path, sync::Arc, time::Duration, time::Instant};

use empathy_model::{CONTEXT, Prediction};
use empathy_proto::v1::Turn;
use empathy_proto::{SENTIMENT_LABELS, v1::StageTiming};
use empathy_reader::{LABEL_WORDS, MeaningReader};
use tokio::sync::Semaphore;

const SURE: f32 = 0.5;
const WEIGHT: f32 = 2.0;
/// The reader says "neutral" less often than our labels mean it.
const NEUTRAL_SHIFT: f32 = 0.5;
/// Two sources agreeing make a sharper score than either is sure of.
const TEMPERATURE: f32 = 1.3;
/// Chosen on the hand-written dev dialogues, keeping the outright turns' accuracy
/// (README, "Conversations").
const SCENE_WEIGHT: f32 = 4.0;

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
    if reading.iter().all(|r| r.exp() <= SURE) {
        return;
    }
    let scores = std::array::from_fn(|k| {
        let shift = if SENTIMENT_LABELS[k] == "neutral" {
            NEUTRAL_SHIFT
        } else {
            0.0
        };
        let score = prediction.sentiment[k].max(1e-6).ln() + WEIGHT * (reading[k] + shift);
        score / TEMPERATURE
    });
    prediction.sentiment = normalised(scores);
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
    let scores = std::array::from_fn(|k| {
        prediction.sentiment[k].max(1e-6).ln() + SCENE_WEIGHT * context_weight * reading[k]
    });
    prediction.sentiment = normalised(scores);
}

/// Softmax of log-scores.
fn normalised(scores: [f32; 3]) -> [f32; 3] {
    let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp = scores.map(|s| (s - top).exp());
    let sum: f32 = exp.iter().sum();
    exp.map(|e| e / sum)
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
    fn the_scene_moves_a_reaction_that_leans_on_it_and_not_an_outright_turn() {
        let bad_news = [(0.8f32).ln(), (0.1f32).ln(), (0.1f32).ln()];
        let with_turns = |context: f32| {
            let mut p = prediction([0.2, 0.2, 0.6]);
            p.attention = vec![
                ("text".into(), 1.0 - context),
                ("context:0".into(), context / 2.0),
                ("context:1".into(), context / 2.0),
            ];
            p
        };
        // "Perfect." after bad news: the model let the turns weigh 0.6.
        let mut reaction = with_turns(0.6);
        let weight = context_weight(&reaction);
        assert!((weight - 0.6).abs() < 1e-6);
        mix_scene(&mut reaction, bad_news, weight);
        assert_eq!(reaction.top_sentiment(), 0, "{:?}", reaction.sentiment);
        // "Thanks, that's brilliant!" after the same: the turns weigh 0.05.
        let mut outright = with_turns(0.05);
        let weight = context_weight(&outright);
        mix_scene(&mut outright, bad_news, weight);
        assert_eq!(outright.top_sentiment(), 2, "{:?}", outright.sentiment);
        assert!((outright.sentiment.iter().sum::<f32>() - 1.0).abs() < 1e-5);
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

    #[test]
    fn an_unsure_reading_leaves_the_model_s_answer_as_it_was() {
        let model = [0.1, 0.2, 0.7];
        let mut p = prediction(model);
        // The reader leans negative, but gives no answer more than half its probability.
        mix(&mut p, [(0.45f32).ln(), (0.2f32).ln(), (0.35f32).ln()]);
        assert_eq!(p.sentiment, model);
    }
}
