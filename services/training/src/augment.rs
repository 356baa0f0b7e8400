//! Examples made from the training split whose label hangs on structure rather than
//! words, so the model learns what "but" and "not" do: contrasts ("A, but B" takes
//! B's polarity, whatever A's words say) and negations of positive statements ("it
//! was not great" is negative). Only training examples are used, only positive and
//! negative ones, and the labels follow from the construction alone.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use regex::Regex;

const NEGATIVE: usize = 0;
const POSITIVE: usize = 2;

/// Contrast templates: `{a}` the clause that loses, `{b}` the one that decides.
const CONTRASTS: [&str; 5] = [
    "{a}, but {b}",
    "{a}. However, {b}",
    "Although {a}, {b}",
    "{a}, yet {b}",
    "{b}, even though {a}",
];

/// A copula before a positive word ("was really great") and a liking verb ("I love").
const NEGATABLE: [&str; 2] = [
    r"(?i)\b(is|was|are|were|am|'s|'m|'re)\s+((?:so|really|very|pretty|too)\s+)?(good|great|awesome|amazing|excellent|nice|fun|happy|beautiful|perfect|wonderful|fantastic|helpful|friendly|cool|lovely|glad|excited|impressed|easy|worth it)\b",
    r"(?i)\b(I|we|you|they)\s+(really\s+)?(love|like|enjoy|recommend|appreciate)\b",
];

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Augmented {
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    /// The topic of the example whose label the new one takes.
    pub topics: Vec<usize>,
}

impl Augmented {
    fn push(&mut self, text: String, label: usize, topic: usize) {
        self.texts.push(text);
        self.labels.push(label);
        self.topics.push(topic);
    }
}

/// Up to `contrasts` contrast examples and every negation the patterns allow, from
/// the examples at `train`; seeded.
pub fn augment(
    texts: &[String],
    labels: &[usize],
    topics: &[usize],
    train: &[usize],
    contrasts: usize,
    seed: u64,
) -> anyhow::Result<Augmented> {
    let mut rng = StdRng::seed_from_u64(seed);
    let short = |i: &usize| (3..=14).contains(&texts[*i].split_whitespace().count());
    let of = |label: usize| -> Vec<usize> {
        train
            .iter()
            .copied()
            .filter(|&i| labels[i] == label)
            .filter(short)
            .collect()
    };
    let (negative, positive) = (of(NEGATIVE), of(POSITIVE));
    let mut out = Augmented::default();
    // Both clauses from one topic, so that leaving a topic out leaves out its contrasts.
    let by_topic = |pool: &[usize]| -> HashMap<usize, Vec<usize>> {
        let mut map: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in pool {
            map.entry(topics[i]).or_default().push(i);
        }
        map
    };
    let (negative_by_topic, positive_by_topic) = (by_topic(&negative), by_topic(&positive));
    for k in 0..contrasts {
        // Alternate which side wins, so "but" carries no label of its own.
        let (losing, winning) = if k % 2 == 0 {
            (&negative_by_topic, &positive)
        } else {
            (&positive_by_topic, &negative)
        };
        let Some(&b) = winning.choose(&mut rng) else {
            continue;
        };
        let Some(&a) = losing.get(&topics[b]).and_then(|p| p.choose(&mut rng)) else {
            continue;
        };
        let template = CONTRASTS[rng.random_range(0..CONTRASTS.len())];
        let text = template
            .replace("{a}", &clause(&texts[a], template.starts_with("{a}")))
            .replace("{b}", &clause(&texts[b], template.starts_with("{b}")));
        out.push(text, labels[b], topics[b]);
    }
    let patterns = NEGATABLE
        .iter()
        .map(|p| Regex::new(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shuffled = positive.clone();
    shuffled.shuffle(&mut rng);
    for i in shuffled {
        if let Some(negated) = negate(&texts[i], &patterns) {
            out.push(negated, NEGATIVE, topics[i]);
        }
    }
    Ok(out)
}

/// A sentence as a clause: end punctuation dropped, lower-cased initial unless it
/// opens the new sentence (or is "I").
fn clause(text: &str, opens: bool) -> String {
    let trimmed = text.trim().trim_end_matches(['.', '!', '?', ',', ';', ' ']);
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(first) if opens => first.to_uppercase().chain(chars).collect(),
        Some(first) if !trimmed.starts_with("I ") && !trimmed.starts_with("I'") => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => trimmed.to_string(),
    }
}

/// The text with its first negatable statement negated, if it has one and no
/// negation already (a double negative would not be negative).
fn negate(text: &str, patterns: &[Regex]) -> Option<String> {
    let lower = text.to_lowercase();
    let negated_already = ["not ", "n't", "never", "no ", "nothing"]
        .iter()
        .any(|n| lower.contains(n));
    if negated_already {
        return None;
    }
    if let Some(c) = patterns[0].captures(text) {
        let copula = c.get(1)?;
        return Some(format!(
            "{} not{}",
            &text[..copula.end()],
            &text[copula.end()..]
        ));
    }
    let c = patterns[1].captures(text)?;
    let subject = c.get(1)?;
    Some(format!(
        "{} don't{}",
        &text[..subject.end()],
        &text[subject.end()..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negates_positive_statements_once() -> anyhow::Result<()> {
        let patterns = NEGATABLE
            .iter()
            .map(|p| Regex::new(p))
            .collect::<Result<Vec<_>, _>>()?;
        assert_eq!(
            negate("The crew was really great today", &patterns).as_deref(),
            Some("The crew was not really great today")
        );
        assert_eq!(
            negate("I love the new seats", &patterns).as_deref(),
            Some("I don't love the new seats")
        );
        assert_eq!(negate("It was not great", &patterns), None);
        assert_eq!(negate("The flight left at noon", &patterns), None);
        Ok(())
    }

    #[test]
    fn contrasts_take_the_deciding_clause_label_and_balance_sides() -> anyhow::Result<()> {
        let texts: Vec<String> = [
            "The food was cold and bland.",
            "Worst airline ever, lost my bag",
            "The staff made us feel welcome!",
            "Loved every minute of the show",
        ]
        .map(String::from)
        .to_vec();
        let labels = [NEGATIVE, NEGATIVE, POSITIVE, POSITIVE];
        // Clauses are paired within a topic only.
        let apart = augment(&texts, &labels, &[0, 1, 2, 3], &[0, 1, 2, 3], 20, 7)?;
        assert!(apart.texts.is_empty());
        let out = augment(&texts, &labels, &[5; 4], &[0, 1, 2, 3], 20, 7)?;
        assert!(out.topics.iter().all(|&t| t == 5));
        let contrasts = &out.labels[..20];
        assert_eq!(contrasts.iter().filter(|&&l| l == POSITIVE).count(), 10);
        for (text, label) in out.texts.iter().zip(&out.labels).take(20) {
            let deciding = if *label == POSITIVE {
                [&texts[2], &texts[3]]
            } else {
                [&texts[0], &texts[1]]
            };
            let key = |t: &String| t.to_lowercase()[1..12].to_string();
            assert!(
                deciding
                    .iter()
                    .any(|d| text.to_lowercase().contains(&key(d))),
                "{text} -> {label}"
            );
        }
        // Neither positive has a statement the patterns can negate.
        assert_eq!(out.texts.len(), 20);
        Ok(())
    }
}
