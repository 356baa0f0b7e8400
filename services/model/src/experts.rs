//! Opinions the serving version was not trained to weigh: a face's expression, the
//! emotions of imagined situations. Until feedback trains their tokens (the learning
//! loop), each is blended into the answer by a fixed rule and shown in the attention,
//! so that attributions name it.

use crate::prediction::Prediction;

/// The share of all experts together next to words (typed or transcribed); without
/// words, the experts decide.
pub const EXPERT_SHARE_WITH_TEXT: f32 = 0.5;
/// Share of a uniform distribution mixed into an expert's sentiment: a face network's
/// softmax is near 1.0 for most faces, which would veto the words in a product.
const SMOOTHING: f32 = 0.1;
// EMOTION_LABELS order: anger, disgust, fear, joy, sadness, surprise, neutral.
const JOY: usize = 3;
const NEGATIVE: [usize; 4] = [0, 1, 2, 4];
pub const NEUTRAL: usize = 6;

/// One opinion on the emotions, in EMOTION_LABELS order, each in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Expert {
    /// Its name in the attention: a modality ("image") or "situation:<i>".
    pub name: String,
    pub emotions: [f32; 7],
    /// Weight relative to the other experts (e.g. a critic's score); 0 = ignore.
    pub weight: f32,
    /// Whether the emotions speak for sentiment too (a face's expression and an
    /// imagined situation's reading do; an expert may opt out).
    pub sentiment: bool,
}

impl Expert {
    /// Sentiment implied by the emotions: joy is positive; anger, disgust, fear and
    /// sadness are negative; surprise and neutral are neither.
    fn sentiment(&self) -> [f32; 3] {
        let e = &self.emotions;
        let positive = e[JOY];
        let negative: f32 = NEGATIVE.iter().map(|&i| e[i]).sum();
        let total: f32 = e.iter().sum();
        let neutral = (total - positive - negative).max(0.0);
        let sum = (positive + negative + neutral).max(f32::EPSILON);
        [negative, neutral, positive].map(|p| (1.0 - SMOOTHING) * p / sum + SMOOTHING / 3.0)
    }
}

/// Blends `experts` into `p`. `text_evidence` in [0, 1] says how much the words said
/// about emotions (0 when they were absent or matched no emotion word).
pub fn blend(p: &mut Prediction, experts: &[Expert], has_text: bool, text_evidence: f32) {
    let total: f32 = experts.iter().map(|e| e.weight.max(0.0)).sum();
    if total <= 0.0 {
        return;
    }
    let share = if has_text {
        EXPERT_SHARE_WITH_TEXT
    } else {
        1.0
    };
    let keep = 1.0 - share;
    let weight = |e: &Expert| share * e.weight.max(0.0) / total;

    // Sentiment: a weighted product of experts (geometric mean), renormalised.
    let speaking: Vec<&Expert> = experts.iter().filter(|e| e.sentiment).collect();
    let spoken: f32 = speaking.iter().map(|e| weight(e)).sum();
    if spoken > 0.0 {
        let mut log = p.sentiment.map(|s| (1.0 - spoken) * s.max(1e-6).ln());
        for e in &speaking {
            for (l, s) in log.iter_mut().zip(e.sentiment()) {
                *l += weight(e) * s.ln();
            }
        }
        let max = log.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp = log.map(|l| (l - max).exp());
        let sum: f32 = exp.iter().sum();
        p.sentiment = exp.map(|x| x / sum);
        p.valence = (1.0 - spoken) * p.valence
            + speaking
                .iter()
                .map(|e| {
                    let s = e.sentiment();
                    weight(e) * (s[2] - s[0])
                })
                .sum::<f32>();
    }

    // Emotions are scored each on its own: a weighted mean per emotion, where the
    // words count only as far as they carried emotion.
    let words = keep * text_evidence.clamp(0.0, 1.0);
    let norm = words + share;
    for (i, score) in p.emotions.iter_mut().enumerate() {
        let theirs: f32 = experts.iter().map(|e| weight(e) * e.emotions[i]).sum();
        *score = (words * *score + theirs) / norm;
    }

    for (_, w) in p.attention.iter_mut() {
        *w *= keep;
    }
    p.attention
        .extend(experts.iter().map(|e| (e.name.clone(), weight(e))));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prediction() -> Prediction {
        Prediction {
            sentiment: [0.1, 0.2, 0.7],
            emotions: [0.0, 0.0, 0.0, 0.6, 0.0, 0.0, 0.4],
            valence: 0.6,
            arousal: 0.3,
            attention: vec![("text".into(), 0.8), ("lexicon".into(), 0.2)],
        }
    }

    fn sad(name: &str, weight: f32, sentiment: bool) -> Expert {
        Expert {
            name: name.into(),
            emotions: [0.0, 0.0, 0.0, 0.0, 0.9, 0.0, 0.1],
            weight,
            sentiment,
        }
    }

    #[test]
    fn an_expert_alone_decides() {
        let mut p = prediction();
        blend(&mut p, &[sad("image", 1.0, true)], false, 0.0);
        assert!(p.sentiment[0] > 0.8, "{:?}", p.sentiment);
        assert_eq!(p.emotions, sad("image", 1.0, true).emotions);
        assert_eq!(p.attention.last(), Some(&("image".to_string(), 1.0)));
        assert!(p.attention[..2].iter().all(|(_, w)| *w == 0.0));
    }

    #[test]
    fn next_to_words_experts_share_half() {
        let mut p = prediction();
        blend(&mut p, &[sad("image", 1.0, true)], true, 1.0);
        let sum: f32 = p.sentiment.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        assert!((p.emotions[JOY] - 0.3).abs() < 1e-6 && (p.emotions[4] - 0.45).abs() < 1e-6);
        let weights: Vec<f32> = p.attention.iter().map(|(_, w)| *w).collect();
        assert_eq!(weights, [0.4, 0.1, 0.5]);
        assert!(p.valence < 0.6);
        // Unchanged without experts, or with experts of no weight.
        for experts in [vec![], vec![sad("image", 0.0, true)]] {
            let mut q = prediction();
            blend(&mut q, &experts, true, 1.0);
            assert_eq!(q, prediction());
        }
    }

    #[test]
    fn words_without_emotion_leave_emotions_to_the_experts() {
        let mut p = prediction();
        let experts = [
            sad("situation:0", 0.75, false),
            sad("situation:1", 0.25, false),
        ];
        blend(&mut p, &experts, true, 0.0);
        assert_eq!(p.emotions, experts[0].emotions);
        // Situations do not speak for sentiment.
        assert_eq!(p.sentiment, prediction().sentiment);
        let weights: Vec<f32> = p.attention.iter().map(|(_, w)| *w).collect();
        assert_eq!(weights, [0.4, 0.1, 0.375, 0.125]);
    }
}
