//! Modalities whose token the serving version was not trained on can still speak: a
//! face's expression is an expert opinion on the emotions. Until feedback trains the
//! token (the learning loop), such an expert is blended in with a fixed weight, and
//! the blend is reported in the attention so that attributions show it.

use crate::model::Prediction;

/// The weight of an expert next to words (typed or transcribed); alone, it decides.
pub const EXPERT_WEIGHT_WITH_TEXT: f32 = 0.5;
/// Share of a uniform distribution mixed into an expert's sentiment: a face network's
/// softmax is near 1.0 for most faces, which would veto the words in a product.
const SMOOTHING: f32 = 0.1;

/// One modality's opinion: emotions in EMOTION_LABELS order, each in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Expert {
    pub modality: String,
    pub emotions: [f32; 7],
}

// EMOTION_LABELS order: anger, disgust, fear, joy, sadness, surprise, neutral.
const JOY: usize = 3;
const NEGATIVE: [usize; 4] = [0, 1, 2, 4];

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

/// Blends `experts` into `p`. `has_text` says whether words were analysed.
pub fn blend(p: &mut Prediction, experts: &[Expert], has_text: bool) {
    if experts.is_empty() {
        return;
    }
    let share = if has_text {
        EXPERT_WEIGHT_WITH_TEXT
    } else {
        1.0
    };
    let each = share / experts.len() as f32;
    let keep = 1.0 - share;
    // Sentiment: a weighted product of experts (geometric mean), renormalised.
    let mut log = p.sentiment.map(|s| keep * s.max(1e-6).ln());
    for e in experts {
        for (l, s) in log.iter_mut().zip(e.sentiment()) {
            *l += each * s.max(1e-6).ln();
        }
    }
    let max = log.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp = log.map(|l| (l - max).exp());
    let total: f32 = exp.iter().sum();
    p.sentiment = exp.map(|x| x / total);
    // Emotions are scored each on its own: a weighted mean per emotion.
    for (i, score) in p.emotions.iter_mut().enumerate() {
        *score = keep * *score + experts.iter().map(|e| each * e.emotions[i]).sum::<f32>();
    }
    p.valence = keep * p.valence
        + experts
            .iter()
            .map(|e| {
                let s = e.sentiment();
                each * (s[2] - s[0])
            })
            .sum::<f32>();
    for (_, w) in p.attention.iter_mut() {
        *w *= keep;
    }
    p.attention
        .extend(experts.iter().map(|e| (e.modality.clone(), each)));
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

    fn sad_face() -> Expert {
        Expert {
            modality: "image".into(),
            emotions: [0.0, 0.0, 0.0, 0.0, 0.9, 0.0, 0.1],
        }
    }

    #[test]
    fn an_expert_alone_decides() {
        let mut p = prediction();
        blend(&mut p, &[sad_face()], false);
        assert!(p.sentiment[0] > 0.8, "{:?}", p.sentiment);
        assert_eq!(p.emotions, sad_face().emotions);
        assert_eq!(p.attention.last(), Some(&("image".to_string(), 1.0)));
        assert!(p.attention[..2].iter().all(|(_, w)| *w == 0.0));
    }

    #[test]
    fn next_to_words_an_expert_gets_half() {
        let mut p = prediction();
        blend(&mut p, &[sad_face()], true);
        let sum: f32 = p.sentiment.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        assert!((p.emotions[3] - 0.3).abs() < 1e-6 && (p.emotions[4] - 0.45).abs() < 1e-6);
        let weights: Vec<f32> = p.attention.iter().map(|(_, w)| *w).collect();
        assert_eq!(weights, [0.4, 0.1, 0.5]);
        assert!(p.valence < 0.6);
        // Unchanged without experts.
        let mut q = prediction();
        blend(&mut q, &[], true);
        assert_eq!(q, prediction());
    }
}
