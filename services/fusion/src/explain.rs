//! The answer's explanation: the experts blended into the model's prediction (the
//! largest face, the situations), the scores and labels, and which tokens and words
//! the answer rests on.

use empathy_model::{Expansion, Expert, Lexicon, LexiconAnalysis, NEUTRAL, Prediction};
use empathy_proto::{
    EMOTION_LABELS, SENTIMENT_LABELS,
    modality::{IMAGE, SITUATION},
    v1::{Attribution, Emotions, Face, LabelScore, Sentiment, Situation, SituationResult},
};

/// Each situation with its critic score and the attention the model gave it (zero
/// when the serving version was not trained with situations).
pub(crate) fn situation_results(
    situations: Vec<Situation>,
    p: &Prediction,
) -> Vec<SituationResult> {
    situations
        .into_iter()
        .enumerate()
        .map(|(i, s)| SituationResult {
            attention: p
                .attention
                .iter()
                .find(|(name, _)| *name == format!("{SITUATION}:{i}"))
                .map_or(0.0, |(_, w)| *w),
            emotion: top_label(&s.emotions),
            text: s.text,
            critic_score: s.critic_score,
            emotions: s.emotions,
        })
        .collect()
}

/// The highest-scoring label; empty when there are none.
fn top_label(scores: &[LabelScore]) -> String {
    scores
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .map_or_else(String::new, |s| s.label.clone())
}

fn scores(labels: &[&str], values: &[f32]) -> Vec<LabelScore> {
    labels
        .iter()
        .zip(values)
        .map(|(l, s)| LabelScore {
            label: l.to_string(),
            score: *s,
        })
        .collect()
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

pub(crate) fn sentiment(p: &Prediction) -> Sentiment {
    Sentiment {
        label: SENTIMENT_LABELS[argmax(&p.sentiment)].to_string(),
        scores: scores(&SENTIMENT_LABELS, &p.sentiment),
    }
}

/// The plain-language note for an answer whose top sentiment score (calibrated by the
/// version's temperature) is below `threshold`; None when it is not.
pub(crate) fn low_confidence_note(p: &Prediction, threshold: f32) -> Option<String> {
    let top = argmax(&p.sentiment);
    let score = p.sentiment[top];
    (score < threshold).then(|| {
        format!(
            "sentiment: low confidence: the likeliest label, {}, has a calibrated score of \
             {score:.2}, below this server's threshold of {threshold:.2}; treat it as a guess",
            SENTIMENT_LABELS[top]
        )
    })
}

/// A face's expression as an expert opinion on emotions and sentiment.
pub(crate) fn face_expert(face: &Face) -> Expert {
    let mut emotions = [0.0; 7];
    for (slot, label) in emotions.iter_mut().zip(EMOTION_LABELS) {
        *slot = face
            .emotions
            .iter()
            .find(|s| s.label == label)
            .map_or(0.0, |s| s.score.clamp(0.0, 1.0));
    }
    Expert {
        name: IMAGE.to_string(),
        emotions,
        weight: 1.0,
        sentiment: true,
    }
}

/// Each situation as an expert opinion on emotions and sentiment: the emotion the
/// generator read off it (on eval/implicit-dev.jsonl that reading alone was right more
/// often than the situation's emotion words), else its emotion words. Weighted by the
/// critic's score and by how much emotion it carries; together they weigh as much as
/// one face. Speaking for sentiment too raised sentiment macro-F1 on the dev sentences,
/// the implicit test sentences and lexicon-silent tweets alike (by 0.03, within noise:
/// `empathy situations evaluate`, README "Situations").
pub(crate) fn situation_experts(
    lexicon: &Lexicon,
    expansion: Option<&Expansion>,
    situations: &[Situation],
) -> Vec<Expert> {
    let n = situations.len().max(1) as f32;
    situations
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let emotions = read_by_generator(&s.emotions)
                .unwrap_or_else(|| lexicon.analyze_with(&s.text, expansion).emotions);
            Expert {
                name: format!("{SITUATION}:{i}"),
                weight: s.critic_score.clamp(0.0, 1.0) * (1.0 - emotions[NEUTRAL]) / n,
                emotions,
                sentiment: true,
            }
        })
        .collect()
}

/// The generator's reading in EMOTION_LABELS order; None when it sent none.
fn read_by_generator(scores: &[LabelScore]) -> Option<[f32; 7]> {
    let mut emotions = [0.0; 7];
    for (slot, label) in emotions.iter_mut().zip(EMOTION_LABELS) {
        *slot = scores
            .iter()
            .find(|s| s.label == label)?
            .score
            .clamp(0.0, 1.0);
    }
    Some(emotions)
}

/// "lexicon", or e.g. "lexicon+reader+image" when the meaning reader read the text
/// and experts were blended in.
pub(crate) fn emotion_source(base: &str, meaning_read: bool, p: &Prediction) -> String {
    let blended = |prefix: &str| {
        p.attention
            .iter()
            .any(|(name, w)| name.starts_with(prefix) && *w > 0.0)
    };
    let mut source = base.to_string();
    if meaning_read {
        source.push_str("+reader");
    }
    if blended(IMAGE) {
        source.push_str("+image");
    }
    if blended(&format!("{SITUATION}:")) {
        source.push_str("+situations");
    }
    source
}

pub(crate) fn emotions(p: &Prediction, source: &str) -> Emotions {
    Emotions {
        top: EMOTION_LABELS[argmax(&p.emotions)].to_string(),
        scores: scores(&EMOTION_LABELS, &p.emotions),
        source: source.to_string(),
    }
}

/// Which token the model attended to (a situation's with the emotion the generator
/// read off it), and which words the lexicon counted.
pub(crate) fn attributions(
    p: &Prediction,
    lexicon: &LexiconAnalysis,
    situations: &[SituationResult],
) -> Vec<Attribution> {
    let tokens = p.attention.iter().map(|(name, w)| {
        let (kind, name) = match name.split_once(':') {
            Some((kind, index)) => (kind.to_string(), index.to_string()),
            None => ("modality".to_string(), name.clone()),
        };
        let signal = match (kind.as_str(), name.parse::<usize>()) {
            (SITUATION, Ok(i)) => situations.get(i).map(|s| s.emotion.clone()),
            _ => None,
        };
        Attribution {
            kind,
            name,
            weight: *w,
            signal: signal.unwrap_or_default(),
        }
    });
    let words = lexicon.words.iter().map(|w| Attribution {
        kind: "lexicon".into(),
        name: w.word.clone(),
        weight: w.weight,
        signal: w.signal.clone(),
    });
    tokens.chain(words).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A prediction with these sentiment scores and nothing else.
    pub(crate) fn prediction(sentiment: [f32; 3]) -> Prediction {
        Prediction {
            sentiment,
            emotions: [0.0; 7],
            valence: 0.0,
            arousal: 0.0,
            attention: Vec::new(),
        }
    }

    #[test]
    fn a_top_score_below_the_threshold_is_low_confidence() {
        let unsure = prediction([0.31, 0.42, 0.27]);
        let note = low_confidence_note(&unsure, 0.5).expect("flagged");
        assert!(note.contains("neutral") && note.contains("0.42"), "{note}");
        assert!(note.contains("threshold of 0.50"), "{note}");
        assert_eq!(low_confidence_note(&unsure, 0.42), None, "not below");
        assert_eq!(low_confidence_note(&unsure, 0.0), None);
        let sure = prediction([0.05, 0.10, 0.85]);
        assert_eq!(low_confidence_note(&sure, 0.5), None);
        assert!(low_confidence_note(&sure, 0.9).is_some());
        assert!(low_confidence_note(&sure, 1.0).is_some());
    }
}
