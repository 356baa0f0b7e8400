//! Emotion evidence from words. Three sources, strongest first:
//! - SEEDS: a small hand-picked list of the common emotion words (ours). It is the only
//!   source for disgust, which text2emotion lacks; every disgust seed is a
//!   VADER-negative word (a unit test checks it).
//! - text2emotion 0.0.5's word list (Happy->joy, Angry->anger, Surprise->surprise,
//!   Sad->sadness, Fear->fear). It is noisy ("meeting" -> Surprise, "room" -> Fear), so
//!   a hit counts less when VADER does not know the word, and a mapping that
//!   contradicts the word's VADER polarity is dropped (no joy from a negative word, no
//!   anger/fear/sadness from a positive one). Entries are often Porter stems
//!   ("angri", "amaz"): a stem matches a word that extends it by a common suffix.
//!   Stopwords never match (text2emotion drops them before its own lookup).
//! - Optionally, an expanded lexicon (`expansion`): a word none of the above knows
//!   adds its propagated emotion at a small weight when that emotion is not neutral
//!   and confident enough.
//! - Negation (VADER's 3-word window) turns joy into sadness (at 3/4 weight) and
//!   drops the other emotions.

use std::collections::HashMap;

pub use super::emotion_index::{ANGER, DISGUST, FEAR, JOY, NEUTRAL, SADNESS, SURPRISE};
use super::emotion_words::{MIN_STEM, SEEDS, SUFFIXES};
use super::expansion::Expansion;
use super::stopwords::is_stopword;
use super::text2emotion;
use super::vader::{Vader, VaderOutput, is_negation};
use super::vader_words::booster;

/// How fast evidence saturates a score: one seed word gives 1 - e^-1.2 = 0.70.
const SATURATION: f64 = 1.2;
/// Weight of a text2emotion hit on a word VADER does not know: most such hits are
/// everyday words ("take", "thing", "watch"), so they count for little.
const UNRATED_WEIGHT: f64 = 0.1;

/// One word's contribution, for attributions.
#[derive(Debug, Clone, PartialEq)]
pub struct EmotionHit {
    pub word: String,
    pub emotion: usize,
    pub weight: f64,
}

#[derive(Debug, Clone, Default)]
pub struct EmotionEvidence {
    /// Summed evidence per emotion (neutral unused).
    pub evidence: [f64; 7],
    pub hits: Vec<EmotionHit>,
}

impl EmotionEvidence {
    /// Scores in [0, 1]: each emotion saturates on its own evidence; neutral is high
    /// when there is little evidence of any emotion.
    pub fn scores(&self) -> [f32; 7] {
        let mut out = self
            .evidence
            .map(|e| (1.0 - (-SATURATION * e).exp()) as f32);
        out[NEUTRAL] = (-SATURATION * self.total()).exp() as f32;
        out
    }

    pub fn total(&self) -> f64 {
        self.evidence[..NEUTRAL].iter().sum()
    }
}

pub struct EmotionLexicon {
    /// text2emotion words (and underscore-joined phrases) -> bit set of emotions.
    words: HashMap<String, u8>,
    seeds: HashMap<&'static str, usize>,
    max_phrase: usize,
}

impl EmotionLexicon {
    pub fn from_text2emotion(source: &str) -> anyhow::Result<EmotionLexicon> {
        let mut words: HashMap<String, u8> = HashMap::new();
        for (word, emotion) in text2emotion::parse(source)? {
            let k = match emotion.as_str() {
                "Happy" => JOY,
                "Angry" => ANGER,
                "Surprise" => SURPRISE,
                "Sad" => SADNESS,
                "Fear" => FEAR,
                _ => continue,
            };
            *words.entry(word.to_lowercase()).or_default() |= 1 << k;
        }
        anyhow::ensure!(
            words.len() > 1000,
            "the text2emotion lexicon has only {} words: is the file truncated?",
            words.len()
        );
        let max_phrase = words
            .keys()
            .map(|w| w.split('_').count())
            .max()
            .unwrap_or(1);
        let seeds = SEEDS
            .iter()
            .flat_map(|(k, list)| list.iter().map(move |w| (*w, *k)))
            .collect();
        Ok(EmotionLexicon {
            words,
            seeds,
            max_phrase,
        })
    }

    /// Distinct text2emotion words and phrases.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// text2emotion's single words (no phrases) and their emotion bit sets, sorted.
    pub fn words(&self) -> Vec<(String, u8)> {
        let mut out: Vec<(String, u8)> = self
            .words
            .iter()
            .filter(|(w, _)| !w.contains('_'))
            .map(|(w, s)| (w.clone(), *s))
            .collect();
        out.sort();
        out
    }

    /// The emotions text2emotion lists for a word (exact, then as a stem).
    pub fn text2emotion(&self, word: &str) -> Option<u8> {
        if let Some(set) = self.words.get(word) {
            return Some(*set);
        }
        if let Some(stem) = word.strip_suffix('y') {
            // Porter stems turn a final y into i: "angry" -> "angri".
            if let Some(set) = self.words.get(&format!("{stem}i")) {
                return Some(*set);
            }
        }
        let cuts = word.char_indices().map(|(i, _)| i).skip(MIN_STEM);
        let mut best = None;
        for cut in cuts {
            if SUFFIXES.contains(&&word[cut..])
                && let Some(set) = self.words.get(&word[..cut])
            {
                best = Some(*set);
                break;
            }
        }
        best
    }

    pub fn seed(&self, word: &str) -> Option<usize> {
        self.seeds.get(word).copied()
    }

    pub fn evidence(
        &self,
        vader: &Vader,
        out: &VaderOutput,
        expansion: Option<&Expansion>,
    ) -> EmotionEvidence {
        let words: Vec<&str> = out.tokens.iter().map(|t| clean(t)).collect();
        let mut result = EmotionEvidence::default();
        let mut i = 0;
        while i < words.len() {
            let (span, emotions, base) = self.lookup(vader, expansion, &words, i);
            if emotions != 0 {
                let weight = base * intensity(&words, i);
                let negated =
                    (i.saturating_sub(3)..i).any(|j| is_negation(words[j]) || words[j] == "no");
                let word = words[i..i + span].join(" ");
                add(&mut result, &word, emotions, weight, negated);
            }
            i += span;
        }
        let emphasis = 1.0 + 0.1 * out.exclamations.min(3) as f64;
        for e in &mut result.evidence {
            *e *= emphasis;
        }
        result
    }

    /// (tokens consumed, emotion bit set, base weight) for the word at i.
    fn lookup(
        &self,
        vader: &Vader,
        expansion: Option<&Expansion>,
        words: &[&str],
        i: usize,
    ) -> (usize, u8, f64) {
        for n in (2..=self.max_phrase.min(words.len() - i)).rev() {
            if let Some(set) = self.words.get(&words[i..i + n].join("_")) {
                return (n, *set, 0.5);
            }
        }
        let word = words[i];
        if let Some(k) = self.seed(word) {
            return (1, 1 << k, 1.0);
        }
        if word.chars().count() < 3 || is_stopword(word) {
            return (1, 0, 0.0);
        }
        let Some(mut set) = self.text2emotion(word) else {
            // The expansion only labels words VADER and text2emotion leave unrated.
            return match expansion.and_then(|x| x.emotion(word)) {
                Some((k, weight)) if vader.valence(word).is_none() => (1, 1 << k, weight),
                _ => (1, 0, 0.0),
            };
        };
        let weight = match vader.valence(word) {
            None => UNRATED_WEIGHT,
            Some(v) => {
                if v > 0.0 {
                    set &= !((1 << ANGER) | (1 << DISGUST) | (1 << FEAR) | (1 << SADNESS));
                } else if v < 0.0 {
                    set &= !(1 << JOY);
                }
                0.4 + 0.15 * v.abs().min(4.0)
            }
        };
        (1, set, weight)
    }
}

fn clean(token: &str) -> &str {
    token.trim_matches(|c: char| !c.is_alphanumeric())
}

/// Boosters in the two words before raise a word's weight, dampeners lower it.
fn intensity(words: &[&str], i: usize) -> f64 {
    let scalar: f64 = (i.saturating_sub(2)..i)
        .filter_map(|j| booster(words[j]))
        .sum();
    (1.0 + scalar).max(0.4)
}

fn add(result: &mut EmotionEvidence, word: &str, emotions: u8, weight: f64, negated: bool) {
    let ks: Vec<usize> = (0..NEUTRAL).filter(|k| emotions & (1 << k) != 0).collect();
    if ks.is_empty() {
        return;
    }
    let share = weight / ks.len() as f64;
    for k in ks {
        let (k, w) = match (negated, k) {
            (false, k) => (k, share),
            // "not happy" reads as mild sadness; "not afraid" asserts nothing.
            (true, JOY) => (SADNESS, share * 0.75),
            (true, _) => continue,
        };
        result.evidence[k] += w;
        result.hits.push(EmotionHit {
            word: word.to_string(),
            emotion: k,
            weight: w,
        });
    }
}
