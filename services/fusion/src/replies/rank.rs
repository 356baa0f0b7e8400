//! How well each reply template fits an analysed turn: what happened (the turn's
//! meaning against the template's words) and how the person feels (the analysed
//! emotions against the ones the template is meant for).

use empathy_proto::EMOTION_LABELS;

/// The weight of feeling beside meaning. Cosines between a complaint and its answer
/// spread over about 0.1-0.6 while emotion probabilities span 0-1, and the emotion
/// head often reads a plain complaint as neutral: feeling breaks near-ties. Chosen on
/// `eval/replies-dev.jsonl` only (best of 0-1 averaged over banks with and without
/// examples, with and without context; `empathy replies eval --details`).
const FEELING_WEIGHT: f32 = 0.1;
/// The share of meaning read from the turn with its context rather than alone.
const CONTEXT_SHARE: f32 = 0.5;

/// The turn as the text encoder read it: alone, and with the turns before it.
pub struct Query<'a> {
    pub alone: &'a [f32],
    pub with_context: Option<&'a [f32]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub score: f32,
    pub meaning: f32,
    pub feeling: f32,
}

/// The fit of a template (the embeddings of its text and examples, and its intended
/// emotions) to the turn, given the analysed emotion probabilities `(label, p)`.
pub fn fit(
    query: &Query,
    keys: &[Vec<f32>],
    intended: &[String],
    emotions: &[(String, f32)],
) -> Fit {
    let centre = centre(keys);
    let alone = cosine(query.alone, &centre);
    let meaning = match query.with_context {
        Some(q) => (1.0 - CONTEXT_SHARE) * alone + CONTEXT_SHARE * cosine(q, &centre),
        None => alone,
    };
    let feeling = feeling(intended, emotions);
    Fit {
        score: meaning + FEELING_WEIGHT * feeling,
        meaning,
        feeling,
    }
}

/// The template's prototype: the mean of its text's and examples' unit vectors
/// (Snell et al. 2017, prototypical networks). Against the closest example alone, a
/// turn must sit near what the examples share, not near one example's words: on
/// `eval/replies-dev.jsonl` (meaning alone, MiniLM) 0.667 against 0.576.
fn centre(keys: &[Vec<f32>]) -> Vec<f32> {
    let width = keys.first().map_or(0, Vec::len);
    let mut sum = vec![0.0; width];
    for key in keys.iter().filter(|k| k.len() == width) {
        let norm = key.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (s, x) in sum.iter_mut().zip(key) {
                *s += x / norm;
            }
        }
    }
    sum
}

/// The probability of the template's intended emotions; a template meant for any
/// emotion gets what a uniform guess would.
fn feeling(intended: &[String], emotions: &[(String, f32)]) -> f32 {
    if intended.is_empty() {
        return 1.0 / EMOTION_LABELS.len() as f32;
    }
    let p: f32 = emotions
        .iter()
        .filter(|(label, _)| intended.contains(label))
        .map(|(_, p)| p)
        .sum();
    p.min(1.0)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n > 0.0 { dot / n } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(pairs: &[(&str, f32)]) -> Vec<(String, f32)> {
        pairs.iter().map(|(l, p)| (l.to_string(), *p)).collect()
    }

    #[test]
    fn the_template_meant_for_the_felt_emotion_wins_when_the_words_tie() {
        let query = Query {
            alone: &[1.0, 0.0],
            with_context: None,
        };
        let emotions = probs(&[("anger", 0.7), ("joy", 0.1), ("neutral", 0.2)]);
        let keys = [vec![0.6, 0.8]];
        let for_anger = fit(&query, &keys, &["anger".into()], &emotions);
        let for_joy = fit(&query, &keys, &["joy".into()], &emotions);
        let for_any = fit(&query, &keys, &[], &emotions);
        assert!(for_anger.score > for_any.score && for_any.score > for_joy.score);
        assert!((for_anger.meaning - 0.6).abs() < 1e-6);
        assert!((for_anger.feeling - 0.7).abs() < 1e-6);
    }

    #[test]
    fn context_moves_meaning_towards_what_happened_before() {
        let template = [vec![0.0, 1.0]];
        let alone = Query {
            alone: &[1.0, 0.0],
            with_context: None,
        };
        let with_context = Query {
            alone: &[1.0, 0.0],
            with_context: Some(&[0.0, 1.0]),
        };
        let a = fit(&alone, &template, &[], &[]);
        let b = fit(&with_context, &template, &[], &[]);
        assert!(b.meaning > a.meaning);
    }

    #[test]
    fn the_turn_is_matched_against_what_the_examples_share() {
        let keys = [vec![1.0, 0.0], vec![0.0, 2.0]];
        let between = Query {
            alone: &[1.0, 1.0],
            with_context: None,
        };
        let on_one = Query {
            alone: &[1.0, 0.0],
            with_context: None,
        };
        // Each key counts as a unit vector, whatever its length.
        assert!((fit(&between, &keys, &[], &[]).meaning - 1.0).abs() < 1e-6);
        assert!((fit(&on_one, &keys, &[], &[]).meaning - 0.5f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn keys_of_another_width_are_left_out_and_none_mean_nothing() {
        let query = Query {
            alone: &[1.0, 0.0],
            with_context: None,
        };
        let odd = fit(&query, &[vec![1.0, 0.0], vec![1.0]], &[], &[]);
        assert!((odd.meaning - 1.0).abs() < 1e-6);
        assert_eq!(fit(&query, &[], &[], &[]).meaning, 0.0);
        assert_eq!(fit(&query, &[vec![0.0, 0.0]], &[], &[]).meaning, 0.0);
    }

    #[test]
    fn mismatched_or_zero_vectors_have_no_meaning_rather_than_nan() {
        assert_eq!(cosine(&[1.0, 0.0], &[1.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
