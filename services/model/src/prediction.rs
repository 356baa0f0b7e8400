//! What a model version answers for one example.

#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Softmax over SENTIMENT_LABELS of the logits divided by the version's
    /// temperature (calibrated; see `checkpoint::Calibration`).
    pub sentiment: [f32; 3],
    /// Each in [0, 1], EMOTION_LABELS order.
    pub emotions: [f32; 7],
    pub valence: f32,
    pub arousal: f32,
    /// ("text", w), ("lexicon", w), ("situation:0", w), ...: the tokens used, summing
    /// to one. Inputs the version was not trained on are left out (masked).
    pub attention: Vec<(String, f32)>,
}

impl Prediction {
    /// Index into SENTIMENT_LABELS of the likeliest sentiment.
    pub fn top_sentiment(&self) -> usize {
        top_index(&self.sentiment)
    }
}

/// Index of the largest score (the first of equals; 0 for none).
pub fn top_index(scores: &[f32]) -> usize {
    (0..scores.len()).fold(0, |best, k| if scores[k] > scores[best] { k } else { best })
}
